//! `agora wallet`: create and show the key that signs a participant's transactions.
//!
//! A wallet is a JSON file holding one ed25519 secret key and the account id it
//! controls (format and checks: `agora_client::wallet`). It is created with owner-only
//! permissions (0600) and never overwritten unless `--force` is given, so a typo cannot
//! destroy funds.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agora_core::{AccountId, Keypair};
use anyhow::Context;

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
        outln!("{out}");
    } else {
        outln!("{verb} {}\naccount {account}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `key` to `path` with mode 0600, refusing to replace a wallet unless `force`.
pub fn write_wallet(path: &Path, key: &Keypair, force: bool) -> anyhow::Result<()> {
    Ok(agora_client::wallet::write_wallet(path, key, force)?)
}

/// Reads the key in a wallet file, checking that it matches the account it names.
pub fn load_wallet(path: &Path) -> anyhow::Result<Keypair> {
    Ok(agora_client::wallet::load_wallet(path)?)
}
