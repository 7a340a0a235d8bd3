//! A throwaway rootfs made of one static busybox, for [`probe`](crate::probe()), tests and
//! benchmarks. Real jobs get their rootfs from agora-oci, which pre-creates the same mount
//! points.

use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;

/// The directories every rootfs must have: the executor mounts onto them and the rootfs is
/// read-only, so the runtime could not create them.
pub const MOUNT_POINTS: [&str; 6] = ["proc", "dev", "sys", "tmp", "input", "output"];

/// Where Debian's `busybox-static` puts the binary.
pub const DEFAULT_BUSYBOX: &str = "/bin/busybox";

/// The busybox to use: `$AGORA_BUSYBOX` when set (hosts without busybox-static, where one
/// is carried in), else [`DEFAULT_BUSYBOX`].
pub fn default_busybox() -> std::path::PathBuf {
    std::env::var_os("AGORA_BUSYBOX")
        .map(Into::into)
        .unwrap_or_else(|| DEFAULT_BUSYBOX.into())
}

/// Applets linked when `busybox --list` cannot be asked.
const FALLBACK_APPLETS: [&str; 12] = [
    "sh", "true", "false", "echo", "cat", "ls", "dd", "head", "tail", "sleep", "id", "unshare",
];

/// Builds a rootfs in `dest` (created if missing): `/bin/busybox` copied from `busybox`,
/// `/bin/<applet>` symlinks for every applet, and the [`MOUNT_POINTS`]. `busybox` must be
/// statically linked, since the rootfs has no libraries.
pub fn busybox_rootfs(dest: &Path, busybox: &Path) -> io::Result<()> {
    let bin = dest.join("bin");
    fs::create_dir_all(&bin)?;
    fs::copy(busybox, bin.join("busybox"))?;
    for applet in applets(busybox) {
        if applet != "busybox" {
            let link = bin.join(&applet);
            if !link.exists() {
                std::os::unix::fs::symlink("busybox", link)?;
            }
        }
    }
    for dir in MOUNT_POINTS.iter().chain(&["etc", "root"]) {
        fs::create_dir_all(dest.join(dir))?;
    }
    fs::write(dest.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    fs::write(dest.join("etc/group"), "root:x:0:\n")?;
    Ok(())
}

fn applets(busybox: &Path) -> Vec<String> {
    let listed = Command::new(busybox)
        .arg("--list")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    match listed {
        Some(text) => text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.contains('/'))
            .map(str::to_owned)
            .collect(),
        None => FALLBACK_APPLETS.iter().map(|s| s.to_string()).collect(),
    }
}
