//! `agora wallet`: create and show the key that signs a participant's transactions.
//!
//! A wallet is a JSON file holding one ed25519 secret key and the account id it
//! controls. It is created with owner-only permissions (0600) and never overwritten
//! unless `--force` is given, so a typo cannot destroy funds.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agora_core::{AccountId, Keypair};
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Subcommands of `agora wallet`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a new key and write it to a wallet file (mode 0600).
    New {
        #[command(flatten)]
        file: WalletFile,
        /// Replace an existing wallet file (its key is lost).
        #[arg(long)]
        force: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the account id of a wallet file.
    Show {
        #[command(flatten)]
        file: WalletFile,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Where the wallet file lives.
#[derive(clap::Args)]
pub struct WalletFile {
    /// Wallet file path [default: $AGORA_HOME/wallet.json, AGORA_HOME defaulting to ~/.agora].
    #[arg(long, env = "AGORA_WALLET")]
    pub wallet: Option<PathBuf>,
}

impl WalletFile {
    /// The wallet path, resolving the default.
    pub fn path(&self) -> anyhow::Result<PathBuf> {
        if let Some(path) = &self.wallet {
            return Ok(path.clone());
        }
        let home = match std::env::var_os("AGORA_HOME") {
            Some(dir) => PathBuf::from(dir),
            None => std::env::home_dir()
                .context("no home directory; pass --wallet PATH or set AGORA_HOME")?
                .join(".agora"),
        };
        Ok(home.join("wallet.json"))
    }
}

/// The on-disk wallet format.
#[derive(Serialize, Deserialize)]
struct WalletRecord {
    version: u32,
    account: AccountId,
    secret_key: String,
}

const WALLET_VERSION: u32 = 1;

/// Runs `agora wallet`.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::New { file, force, json } => {
            let path = file.path()?;
            let key = Keypair::generate().context("reading the OS random source")?;
            write_wallet(&path, &key, force)?;
            report(&path, &key.account(), json, "created")
        }
        Command::Show { file, json } => {
            let path = file.path()?;
            let key = load_wallet(&path)?;
            report(&path, &key.account(), json, "wallet")
        }
    }
}

fn report(path: &Path, account: &AccountId, json: bool, verb: &str) -> anyhow::Result<ExitCode> {
    if json {
        let out = serde_json::json!({ "account": account, "path": path });
        println!("{out}");
    } else {
        println!("{verb} {}\naccount {account}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `key` to `path` with mode 0600, refusing to replace a wallet unless `force`.
pub fn write_wallet(path: &Path, key: &Keypair, force: bool) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() && !force {
        bail!(
            "{} already exists; refusing to overwrite a key (pass --force to replace it)",
            path.display()
        );
    }
    let record = WalletRecord {
        version: WALLET_VERSION,
        account: key.account(),
        secret_key: hex::encode(key.secret_bytes()),
    };
    let body = serde_json::to_vec_pretty(&record)?;
    // Write a 0600 temporary file beside the target and rename it into place, so a
    // crash never leaves a half-written wallet and the secret is never world-readable.
    let tmp = path.with_extension("json.tmp");
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(&body)?;
    file.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Reads the key in a wallet file, checking that it matches the account it names.
pub fn load_wallet(path: &Path) -> anyhow::Result<Keypair> {
    let text = fs::read_to_string(path).with_context(|| {
        format!(
            "reading wallet {} (create one with `agora wallet new`)",
            path.display()
        )
    })?;
    let record: WalletRecord = serde_json::from_str(&text)
        .with_context(|| format!("{} is not an agora wallet file", path.display()))?;
    if record.version != WALLET_VERSION {
        bail!(
            "{}: unsupported wallet version {}",
            path.display(),
            record.version
        );
    }
    let mut secret = [0u8; 32];
    hex::decode_to_slice(record.secret_key.trim(), &mut secret)
        .with_context(|| format!("{}: secret_key must be 64 hex digits", path.display()))?;
    let key = Keypair::from_secret(secret);
    if key.account() != record.account {
        bail!(
            "{}: the secret key does not belong to account {} (the file is corrupt)",
            path.display(),
            record.account
        );
    }
    Ok(key)
}
