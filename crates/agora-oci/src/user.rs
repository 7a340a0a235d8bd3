//! Resolving the config's `User` (`uid`, `uid:gid`, `name`, `name:group`) to numbers.
//!
//! Numbers are taken as they are. Names are looked up in the image's own `/etc/passwd` and
//! `/etc/group` inside the assembled rootfs, read without following symlinks (a hostile image
//! could point `/etc/passwd` at the host's); a name with no entry is [`ImageError::UnknownUser`].
//! A user given without a group gets its passwd entry's primary group, or 0 when it has no
//! entry (Docker does the same).

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::ImageError;

/// Largest `/etc/passwd` or `/etc/group` read.
const MAX_DB_BYTES: u64 = 4 << 20;

/// Resolves `spec` against the rootfs at `rootfs`; `None` stays `None` (root).
pub(crate) fn resolve(rootfs: &Path, spec: Option<&str>) -> Result<Option<(u32, u32)>, ImageError> {
    let Some(spec) = spec else { return Ok(None) };
    let unknown = || ImageError::UnknownUser(spec.to_owned());
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = if user.parse::<u32>().is_err() || group.is_none() {
        read_db(rootfs, "passwd")
    } else {
        None
    };
    let entry = passwd.as_deref().and_then(|db| find_user(db, user));
    let uid = match user.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => entry.ok_or_else(unknown)?.0,
    };
    let gid = match group {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => read_db(rootfs, "group")
                .as_deref()
                .and_then(|db| find_group(db, g))
                .ok_or_else(unknown)?,
        },
        None => entry.map_or(0, |(_, gid)| gid),
    };
    Ok(Some((uid, gid)))
}

/// `(uid, gid)` of the passwd line whose name (or uid) is `user`.
fn find_user(db: &str, user: &str) -> Option<(u32, u32)> {
    db.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        let (uid, gid) = (f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?);
        (f[0] == user || f[2] == user).then_some((uid, gid))
    })
}

/// The gid of the group line named `group`.
fn find_group(db: &str, group: &str) -> Option<u32> {
    db.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f[0] == group).then(|| f.get(2)?.parse().ok()).flatten()
    })
}

/// Reads `rootfs/etc/<name>` if `etc` is a real directory and the file is not a symlink.
fn read_db(rootfs: &Path, name: &str) -> Option<String> {
    let etc = rootfs.join("etc");
    if !fs::symlink_metadata(&etc).ok()?.is_dir() {
        return None;
    }
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(etc.join(name))
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(MAX_DB_BYTES).read_to_string(&mut text).ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        dir
    }

    #[test]
    fn numbers_and_names() {
        let r = rootfs();
        assert_eq!(resolve(r.path(), None).unwrap(), None);
        assert_eq!(resolve(r.path(), Some("7:8")).unwrap(), Some((7, 8)));
        assert_eq!(resolve(r.path(), Some("1000")).unwrap(), Some((1000, 1001)));
        assert_eq!(resolve(r.path(), Some("4242")).unwrap(), Some((4242, 0)));
        assert_eq!(resolve(r.path(), Some("app")).unwrap(), Some((1000, 1001)));
        assert_eq!(
            resolve(r.path(), Some("app:staff")).unwrap(),
            Some((1000, 50))
        );
        assert_eq!(
            resolve(r.path(), Some("nobody")).unwrap_err().kind(),
            "unknown_user"
        );
        assert_eq!(
            resolve(r.path(), Some("1:nogroup")).unwrap_err().kind(),
            "unknown_user"
        );
    }

    #[test]
    fn passwd_symlink_is_not_followed() {
        let r = tempfile::tempdir().unwrap();
        fs::create_dir(r.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", r.path().join("etc/passwd")).unwrap();
        assert_eq!(
            resolve(r.path(), Some("root")).unwrap_err().kind(),
            "unknown_user"
        );
    }
}
