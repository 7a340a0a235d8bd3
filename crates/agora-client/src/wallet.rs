//! Wallet files: one ed25519 secret key and the account it controls, as JSON.
//!
//! Every participant signs with a key from such a file: buyers (`agora job`), provider
//! agents and the market authority. A wallet is written with owner-only permissions
//! (0600) through a temporary file renamed into place, so a crash never leaves half a
//! key and the secret is never world-readable; it is never overwritten unless asked.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use agora_core::{AccountId, Keypair};
use serde::{Deserialize, Serialize};

/// The wallet format version this build reads and writes.
pub const WALLET_VERSION: u32 = 1;

/// The on-disk wallet format.
#[derive(Serialize, Deserialize)]
struct WalletRecord {
    version: u32,
    account: AccountId,
    secret_key: String,
}

/// Why a wallet could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// The file (or its directory) could not be read or written.
    #[error("{}: {source} (create a wallet with `agora wallet new`)", .path.display())]
    Io {
        /// The wallet path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A wallet is already there.
    #[error(
        "{} already exists; refusing to overwrite a key (pass --force to replace it)",
        .0.display()
    )]
    Exists(PathBuf),
    /// The file is not a wallet, or a damaged one.
    #[error("{}: not an agora wallet file: {detail}", .path.display())]
    Malformed {
        /// The wallet path.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
}

impl WalletError {
    fn io(path: &Path, source: std::io::Error) -> WalletError {
        WalletError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn malformed(path: &Path, detail: impl Into<String>) -> WalletError {
        WalletError::Malformed {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }
}

/// Writes `key` to `path` with mode 0600, refusing to replace a wallet unless `force`.
pub fn write_wallet(path: &Path, key: &Keypair, force: bool) -> Result<(), WalletError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| WalletError::io(dir, e))?;
    }
    if path.exists() && !force {
        return Err(WalletError::Exists(path.to_path_buf()));
    }
    let record = WalletRecord {
        version: WALLET_VERSION,
        account: key.account(),
        secret_key: hex::encode(key.secret_bytes()),
    };
    let body = serde_json::to_vec_pretty(&record)
        .map_err(|e| WalletError::malformed(path, e.to_string()))?;
    let tmp = path.with_extension("json.tmp");
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(|e| WalletError::io(&tmp, e))?;
    file.write_all(&body)
        .and_then(|()| file.sync_all())
        .map_err(|e| WalletError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| WalletError::io(path, e))
}

/// Reads the key in a wallet file, checking that it matches the account it names.
pub fn load_wallet(path: &Path) -> Result<Keypair, WalletError> {
    let text = fs::read_to_string(path).map_err(|e| WalletError::io(path, e))?;
    let record: WalletRecord =
        serde_json::from_str(&text).map_err(|e| WalletError::malformed(path, e.to_string()))?;
    if record.version != WALLET_VERSION {
        return Err(WalletError::malformed(
            path,
            format!(
                "unsupported wallet version {} (this build reads {WALLET_VERSION})",
                record.version
            ),
        ));
    }
    let mut secret = [0u8; 32];
    hex::decode_to_slice(record.secret_key.trim(), &mut secret)
        .map_err(|_| WalletError::malformed(path, "secret_key must be 64 hex digits"))?;
    let key = Keypair::from_secret(secret);
    if key.account() != record.account {
        return Err(WalletError::malformed(
            path,
            format!(
                "the secret key does not belong to account {} (the file is corrupt)",
                record.account
            ),
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_wallet_loads_back_and_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/wallet.json");
        let key = Keypair::from_secret([7; 32]);
        write_wallet(&path, &key, false).expect("write");
        assert_eq!(load_wallet(&path).expect("load").account(), key.account());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            write_wallet(&path, &Keypair::from_secret([8; 32]), false),
            Err(WalletError::Exists(_))
        ));
        assert_eq!(load_wallet(&path).expect("load").account(), key.account());
    }

    #[test]
    fn damaged_wallets_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wallet.json");
        let key = Keypair::from_secret([7; 32]);
        write_wallet(&path, &key, false).expect("write");
        let text = fs::read_to_string(&path).expect("read");
        let other = Keypair::from_secret([9; 32]).account().to_string();
        fs::write(&path, text.replace(&key.account().to_string(), &other)).expect("write");
        let err = load_wallet(&path).expect_err("mismatched account");
        assert!(err.to_string().contains("does not belong"), "{err}");
        fs::write(&path, "{}").expect("write");
        assert!(matches!(
            load_wallet(&path),
            Err(WalletError::Malformed { .. })
        ));
        assert!(matches!(
            load_wallet(&dir.path().join("missing.json")),
            Err(WalletError::Io { .. })
        ));
    }
}
