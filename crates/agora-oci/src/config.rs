//! The image config (`Entrypoint`, `Cmd`, `Env`, `WorkingDir`, `User`) and how a job's
//! overrides combine with it into the process to run, with `docker run` semantics.

use serde::Deserialize;

use crate::ImageError;
use crate::digest::Digest;

/// `PATH` given to a process whose image and overrides set none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What an image says about the process it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `Entrypoint`: the program and its fixed leading arguments.
    pub entrypoint: Vec<String>,
    /// `Cmd`: default arguments after the entrypoint (or the program, without one).
    pub cmd: Vec<String>,
    /// `Env` as ordered `(key, value)` pairs.
    pub env: Vec<(String, String)>,
    /// `WorkingDir`, if set.
    pub working_dir: Option<String>,
    /// `User` resolved to numeric `(uid, gid)`; `None` means root (0, 0).
    pub user: Option<(u32, u32)>,
}

/// A job's changes to the image's process, each optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Replaces the image's `Entrypoint` and, like `docker run --entrypoint`, clears its `Cmd`.
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's `Cmd` (the arguments after the entrypoint).
    pub args: Option<Vec<String>>,
    /// Set after the image's env: a key already present gets the new value in place, others append.
    pub env: Vec<(String, String)>,
    /// Replaces `WorkingDir`; must be absolute.
    pub working_dir: Option<String>,
}

/// The process a runtime should start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Program and arguments; never empty.
    pub argv: Vec<String>,
    /// Environment, ordered, keys unique.
    pub env: Vec<(String, String)>,
    /// Absolute working directory inside the container.
    pub cwd: String,
    /// Numeric `(uid, gid)` to run as.
    pub user: (u32, u32),
}

impl ImageConfig {
    /// The process to run: `argv = entrypoint ++ cmd` after overrides, env merged by key
    /// (adding Docker's default `PATH` if none is set), `cwd` = override, else `WorkingDir`, else `/`.
    pub fn process(&self, overrides: &Overrides) -> Result<Process, ImageError> {
        let (entrypoint, cmd) = match &overrides.entrypoint {
            Some(entrypoint) => (entrypoint.clone(), Vec::new()),
            None => (self.entrypoint.clone(), self.cmd.clone()),
        };
        let cmd = overrides.args.clone().unwrap_or(cmd);
        let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
        if argv.is_empty() || argv[0].is_empty() {
            return Err(ImageError::NoEntrypoint);
        }
        check_strings("argument", &argv)?;
        Ok(Process {
            argv,
            env: self.merged_env(&overrides.env)?,
            cwd: self.cwd(overrides)?,
            user: self.user.unwrap_or((0, 0)),
        })
    }

    fn merged_env(&self, extra: &[(String, String)]) -> Result<Vec<(String, String)>, ImageError> {
        let mut env = self.env.clone();
        for (key, value) in extra {
            if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
                return Err(ImageError::BadOverride(format!(
                    "env key {key:?} must be non-empty without '=' or NUL"
                )));
            }
            match env.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = value.clone(),
                None => env.push((key.clone(), value.clone())),
            }
        }
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        Ok(env)
    }

    fn cwd(&self, overrides: &Overrides) -> Result<String, ImageError> {
        if let Some(dir) = &overrides.working_dir {
            if !dir.starts_with('/') || dir.contains('\0') {
                return Err(ImageError::BadOverride(format!(
                    "working dir {dir:?} must be an absolute path"
                )));
            }
            return Ok(dir.clone());
        }
        Ok(match self.working_dir.as_deref() {
            None | Some("") => "/".into(),
            Some(dir) if dir.starts_with('/') => dir.into(),
            Some(dir) => format!("/{dir}"), // Docker resolves a relative WorkingDir against `/`
        })
    }
}

fn check_strings(what: &str, items: &[String]) -> Result<(), ImageError> {
    match items.iter().find(|s| s.contains('\0')) {
        Some(bad) => Err(ImageError::BadOverride(format!(
            "{what} {bad:?} contains NUL"
        ))),
        None => Ok(()),
    }
}

/// The parts of an image config file the loader uses, user not yet resolved.
#[derive(Debug, Clone)]
pub(crate) struct RawConfig {
    /// The process settings, `user` left `None`.
    pub image: ImageConfig,
    /// `User` as written (`""` and absent both become `None`).
    pub user_spec: Option<String>,
    /// `rootfs.diff_ids`, bottom layer first.
    pub diff_ids: Vec<Digest>,
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Option<ContainerConfig>,
    rootfs: RootFs,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ContainerConfig {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: String,
    diff_ids: Vec<String>,
}

impl RawConfig {
    /// Parses an image config JSON document.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        let file: ConfigFile = crate::archive::parse_json(bytes, "image config")?;
        if file.rootfs.kind != "layers" {
            return Err(ImageError::bad_archive(format!(
                "config rootfs.type is {:?}, not \"layers\"",
                file.rootfs.kind
            )));
        }
        let diff_ids = file
            .rootfs
            .diff_ids
            .iter()
            .map(|d| Digest::parse(d))
            .collect::<Result<_, _>>()?;
        let c = file.config.unwrap_or_default();
        let env = c
            .env
            .unwrap_or_default()
            .iter()
            .map(|kv| split_env(kv))
            .collect();
        let image = ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env,
            working_dir: c.working_dir.filter(|d| !d.is_empty()),
            user: None,
        };
        Ok(Self {
            image,
            user_spec: c.user.filter(|u| !u.is_empty()),
            diff_ids,
        })
    }
}

/// `K=V` → `(K, V)`; an entry without `=` is a key with an empty value.
fn split_env(kv: &str) -> (String, String) {
    match kv.split_once('=') {
        Some((k, v)) => (k.to_owned(), v.to_owned()),
        None => (kv.to_owned(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: s(&["/bin/app"]),
            cmd: s(&["--serve"]),
            env: vec![("A".into(), "1".into()), ("PATH".into(), "/bin".into())],
            working_dir: Some("/work".into()),
            user: Some((1000, 1000)),
        }
    }

    #[test]
    fn no_overrides_is_entrypoint_then_cmd() {
        let p = image().process(&Overrides::default()).unwrap();
        assert_eq!(p.argv, s(&["/bin/app", "--serve"]));
        assert_eq!(p.cwd, "/work");
        assert_eq!(p.user, (1000, 1000));
        assert_eq!(p.env, image().env);
    }

    #[test]
    fn args_replace_cmd_only() {
        let o = Overrides {
            args: Some(s(&["x", "y"])),
            ..Default::default()
        };
        assert_eq!(
            image().process(&o).unwrap().argv,
            s(&["/bin/app", "x", "y"])
        );
    }

    #[test]
    fn entrypoint_override_clears_cmd() {
        let o = Overrides {
            entrypoint: Some(s(&["/bin/sh"])),
            ..Default::default()
        };
        assert_eq!(image().process(&o).unwrap().argv, s(&["/bin/sh"]));
        let o = Overrides {
            entrypoint: Some(s(&["/bin/sh", "-c"])),
            args: Some(s(&["echo"])),
            ..Default::default()
        };
        assert_eq!(
            image().process(&o).unwrap().argv,
            s(&["/bin/sh", "-c", "echo"])
        );
    }

    #[test]
    fn env_overrides_by_key_and_appends() {
        let o = Overrides {
            env: vec![("A".into(), "2".into()), ("B".into(), "3".into())],
            ..Default::default()
        };
        let env = image().process(&o).unwrap().env;
        assert_eq!(
            env,
            vec![
                ("A".into(), "2".into()),
                ("PATH".into(), "/bin".into()),
                ("B".into(), "3".into())
            ]
        );
        let o = Overrides {
            env: vec![("A=B".into(), "x".into())],
            ..Default::default()
        };
        assert_eq!(image().process(&o).unwrap_err().kind(), "bad_override");
    }

    #[test]
    fn default_path_and_cwd() {
        let img = ImageConfig {
            cmd: s(&["run"]),
            ..Default::default()
        };
        let p = img.process(&Overrides::default()).unwrap();
        assert_eq!(p.env, vec![("PATH".to_string(), DEFAULT_PATH.to_string())]);
        assert_eq!(p.cwd, "/");
        assert_eq!(p.user, (0, 0));
        let o = Overrides {
            working_dir: Some("/out".into()),
            ..Default::default()
        };
        assert_eq!(img.process(&o).unwrap().cwd, "/out");
        let o = Overrides {
            working_dir: Some("rel".into()),
            ..Default::default()
        };
        assert_eq!(img.process(&o).unwrap_err().kind(), "bad_override");
    }

    #[test]
    fn nothing_to_run_is_a_typed_error() {
        let err = ImageConfig::default()
            .process(&Overrides::default())
            .unwrap_err();
        assert_eq!(err.kind(), "no_entrypoint");
        let o = Overrides {
            entrypoint: Some(vec![]),
            ..Default::default()
        };
        assert_eq!(image().process(&o).unwrap_err().kind(), "no_entrypoint");
    }

    #[test]
    fn parses_docker_config_json() {
        let json = br#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":null,"Cmd":["sh"],
            "Env":["PATH=/usr/bin","EMPTY="],"WorkingDir":"","User":"1000:1000"},
            "rootfs":{"type":"layers","diff_ids":["sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"]}}"#;
        let raw = RawConfig::parse(json).unwrap();
        assert_eq!(raw.image.cmd, s(&["sh"]));
        assert!(raw.image.entrypoint.is_empty());
        assert_eq!(raw.image.env[1], ("EMPTY".into(), String::new()));
        assert_eq!(raw.image.working_dir, None);
        assert_eq!(raw.user_spec.as_deref(), Some("1000:1000"));
        assert_eq!(raw.diff_ids.len(), 1);
        assert_eq!(RawConfig::parse(b"{").unwrap_err().kind(), "bad_archive");
    }
}
