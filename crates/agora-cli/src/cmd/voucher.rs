//! `agora voucher`: compute vouchers — buy CU ahead at today's index price, send them to
//! another account, spend them on a job, list them, refund expired ones.
//!
//! Every command is a signed ledger transaction through `agora_client` (see
//! docs/vouchers.md): `mint` fetches the market's signed quote and locks the backing,
//! `send` and `expire` go to `POST /v1/txs`, and `redeem` submits a WASM job whose escrow
//! is the redeemed units' backing instead of the buyer's balance, then follows it to the
//! end like `agora job run`. Results go to stdout (JSON with `--json`).

use std::path::PathBuf;
use std::process::ExitCode;

use agora_client::buyer::now_ms;
use agora_client::spec::parse_duration_ms;
use agora_client::{Buyer, DEFAULT_MARKET_URL, JobRequest, JobSummary, MarketClient};
use agora_core::{AccountId, Hash, Price, Signed};
use agora_ledger::{TxBody, VoucherTerms};
use agora_proto::api::VoucherView;
use anyhow::{Context, bail};
use serde_json::json;

use crate::cmd::wallet::{WalletFile, load_wallet};

/// Exit code of a voucher-paid job that was refunded, as `agora job run`.
const EXIT_REFUNDED: u8 = 2;

/// Arguments of `agora voucher`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: VoucherCommand,
}

#[derive(clap::Subcommand)]
enum VoucherCommand {
    /// Show the price the market would lock a voucher at now; nothing is signed.
    Quote(QuoteArgs),
    /// Buy CU ahead: lock CU × the market's index price from the balance as a voucher.
    Mint(MintArgs),
    /// Send voucher units to another account.
    Send(SendArgs),
    /// Spend voucher units on a WASM job and follow it until it settles or is refunded.
    /// Exit code: 0 settled with exit 0, 1 the job exited non-zero, 2 refunded.
    Redeem(RedeemArgs),
    /// List an account's vouchers (this wallet's by default).
    List(ListArgs),
    /// Refund an expired voucher's units to their holder (anyone may).
    Expire(ExpireArgs),
}

/// Where the market is, who signs, and how to print.
#[derive(clap::Args)]
struct Conn {
    /// The market node's HTTP URL.
    #[arg(long, env = "AGORA_MARKET", default_value = DEFAULT_MARKET_URL)]
    market: String,
    #[command(flatten)]
    wallet: WalletFile,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// The series' window.
#[derive(clap::Args)]
struct Window {
    /// The resource class the CU buy: `cpu` (WASM and container jobs) or `gpu:<model>`.
    #[arg(long, default_value = "cpu")]
    class: String,
    /// Forward purchase: the units become redeemable this long from now, e.g. "1h"
    /// [default: at once].
    #[arg(long, value_parser = parse_duration_ms)]
    starts_in: Option<u64>,
    /// The units expire (and are refundable) this long after the window opens, e.g.
    /// "168h" [default: the market's, 7 days].
    #[arg(long, value_parser = parse_duration_ms)]
    expires_in: Option<u64>,
}

impl Window {
    fn bounds(&self) -> (Option<u64>, Option<u64>) {
        let now = now_ms();
        let from = self.starts_in.map(|d| now.saturating_add(d));
        let until = self
            .expires_in
            .map(|d| from.unwrap_or(now).saturating_add(d));
        (from, until)
    }
}

#[derive(clap::Args)]
struct QuoteArgs {
    #[command(flatten)]
    window: Window,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
struct MintArgs {
    /// How many compute units to buy.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    cu: u64,
    #[command(flatten)]
    window: Window,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
struct SendArgs {
    /// The series id (from `agora voucher list`).
    #[arg(long)]
    series: Hash,
    /// The recipient's account id.
    #[arg(long)]
    to: AccountId,
    /// How many CU to send.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    cu: u64,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
struct RedeemArgs {
    /// The series id to pay with (from `agora voucher list`).
    #[arg(long)]
    series: Hash,
    /// The WASI module to run.
    module: PathBuf,
    /// Fuel budget in compute units; the CU redeemed are what its worst case costs at the
    /// voucher's price [default: 1].
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_cu: u64,
    /// How the result is checked (see `agora job run --help`).
    #[arg(long, value_name = "POLICY")]
    verify: Option<agora_proto::VerifyPolicy>,
    /// Time allowed from submission to settlement, e.g. "90s".
    #[arg(long, value_parser = parse_duration_ms)]
    deadline: Option<u64>,
    /// Arguments for the job, after `--`.
    #[arg(last = true)]
    args: Vec<String>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
struct ListArgs {
    /// Whose vouchers [default: this wallet's].
    #[arg(long)]
    account: Option<AccountId>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
struct ExpireArgs {
    /// The expired series.
    #[arg(long)]
    series: Hash,
    /// Whose units to refund [default: this wallet's].
    #[arg(long)]
    holder: Option<AccountId>,
    #[command(flatten)]
    conn: Conn,
}

/// Runs `agora voucher`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match args.command {
            VoucherCommand::Quote(a) => quote(a).await,
            VoucherCommand::Mint(a) => mint(a).await,
            VoucherCommand::Send(a) => send(a).await,
            VoucherCommand::Redeem(a) => redeem(a).await,
            VoucherCommand::List(a) => list(a).await,
            VoucherCommand::Expire(a) => expire(a).await,
        }
    })
}

impl Conn {
    fn key(&self) -> anyhow::Result<agora_core::Keypair> {
        load_wallet(&self.wallet.path()?)
    }

    fn client(&self) -> anyhow::Result<MarketClient> {
        Ok(MarketClient::new(&self.market)?)
    }

    /// Signs `body` with this wallet's next ledger nonce and submits it.
    async fn submit(&self, body: TxBody) -> anyhow::Result<agora_proto::api::TxIncluded> {
        let key = self.key()?;
        let client = self.client()?;
        let info = client.info().await?;
        let nonce = client.account(&key.account()).await?.next_nonce;
        let chain = agora_core::ChainId::new(info.chain_id);
        let tx = Signed::sign(&key, &chain, nonce, body);
        Ok(client.submit_tx(&tx).await?)
    }
}

async fn quote(args: QuoteArgs) -> anyhow::Result<ExitCode> {
    let (from, until) = args.window.bounds();
    let (view, _) = args
        .conn
        .client()?
        .voucher_quote(&args.window.class, from, until)
        .await?;
    if args.conn.json {
        outln!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        let now = now_ms();
        outln!(
            "{} at {}, redeemable from {} until {} (series {}); the quote is valid {}",
            view.class,
            Price(view.price_per_cu),
            relative(view.redeem_from_ms, now),
            relative(view.expires_ms, now),
            view.series,
            relative(view.valid_until_ms, now).replacen("in ", "for ", 1)
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn mint(args: MintArgs) -> anyhow::Result<ExitCode> {
    let (from, until) = args.window.bounds();
    let (view, quote) = args
        .conn
        .client()?
        .voucher_quote(&args.window.class, from, until)
        .await?;
    let backing = quote
        .body
        .terms
        .backing(args.cu)
        .context("that many CU at this price do not fit in an amount")?;
    let included = args
        .conn
        .submit(TxBody::MintVoucher { quote, cu: args.cu })
        .await?;
    if args.conn.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "series": view.series,
                "class": view.class,
                "cu": args.cu,
                "price_per_cu": view.price_per_cu,
                "backing": backing,
                "redeem_from_ms": view.redeem_from_ms,
                "expires_ms": view.expires_ms,
                "tx_id": included.tx_id,
                "height": included.height,
            }))?
        );
    } else {
        outln!(
            "minted {} CU of {} at {} (locked {backing}) in block {}\nseries {}",
            args.cu,
            view.class,
            Price(view.price_per_cu),
            included.height,
            view.series
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    let included = args
        .conn
        .submit(TxBody::TransferVoucher {
            to: args.to,
            series: args.series,
            cu: args.cu,
        })
        .await?;
    if args.conn.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "series": args.series, "to": args.to, "cu": args.cu,
                "tx_id": included.tx_id, "height": included.height,
            }))?
        );
    } else {
        outln!(
            "sent {} CU of series {} to {} in block {}",
            args.cu,
            args.series,
            args.to,
            included.height
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The terms of `series` as `account` holds it, or why it cannot be used.
pub(crate) async fn held_terms(
    client: &MarketClient,
    account: &AccountId,
    series: &Hash,
) -> anyhow::Result<VoucherTerms> {
    let held = client.vouchers(account).await?;
    let Some(line) = held.iter().find(|v| &v.series == series) else {
        bail!(
            "account {account} holds no units of voucher series {series}; `agora voucher list` shows what it holds"
        );
    };
    Ok(VoucherTerms {
        class: line.class.clone(),
        price_per_cu: agora_core::Price(line.price_per_cu),
        redeem_from_ms: line.redeem_from_ms,
        expires_ms: line.expires_ms,
    })
}

async fn redeem(args: RedeemArgs) -> anyhow::Result<ExitCode> {
    let key = args.conn.key()?;
    let buyer = Buyer::connect(key, &args.conn.market).await?;
    let terms = held_terms(buyer.client(), &buyer.account(), &args.series).await?;
    let mut request = JobRequest::new(&args.module);
    request.args = args.args.clone();
    request.fuel_budget = agora_core::Fuel(
        args.max_cu
            .saturating_mul(agora_core::FUEL_PER_COMPUTE_UNIT),
    );
    request.max_price = terms.price_per_cu;
    if let Some(policy) = args.verify {
        request.verify = policy;
    }
    if let Some(deadline) = args.deadline {
        request.deadline_in_ms = deadline;
    }
    let job = buyer.upload_job(&request).await?;
    let body = request.order_request(job, now_ms())?;
    let (submitted, cu) = buyer.submit_with_voucher(body, &terms).await?;
    if !args.conn.json {
        eprintln!(
            "order {} paid with {cu} CU of voucher series {}",
            submitted.order_id, args.series
        );
    }
    let view = buyer.wait(&submitted.order_id, |_| {}).await?;
    let summary = JobSummary::from_view(&view, Vec::new());
    if args.conn.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "series": args.series,
                "cu_redeemed": cu,
                "job": summary,
            }))?
        );
    } else {
        outln!(
            "order {} {}: cost {}, refunded to the balance {}",
            summary.order_id,
            serde_json::to_value(summary.state)?.as_str().unwrap_or("?"),
            summary.cost,
            summary.refunded
        );
        if let Some(stdout) = &summary.stdout {
            out!("{stdout}");
        }
    }
    Ok(match (summary.state, summary.exit_code) {
        (agora_proto::OrderState::Settled, Some(0)) => ExitCode::SUCCESS,
        (agora_proto::OrderState::Settled, _) => ExitCode::from(1),
        _ => ExitCode::from(EXIT_REFUNDED),
    })
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let account = match args.account {
        Some(account) => account,
        None => args.conn.key()?.account(),
    };
    let held = args.conn.client()?.vouchers(&account).await?;
    if args.conn.json {
        outln!("{}", serde_json::to_string_pretty(&held)?);
    } else if held.is_empty() {
        outln!("{account} holds no vouchers");
    } else {
        let now = now_ms();
        outln!(
            "{:<64}  {:<10} {:>10} {:>18} {:>14} {:>14}  status",
            "series",
            "class",
            "cu",
            "price",
            "redeemable",
            "expires"
        );
        for VoucherView {
            series,
            class,
            price_per_cu,
            redeem_from_ms,
            expires_ms,
            cu,
            status,
            ..
        } in &held
        {
            outln!(
                "{series}  {class:<10} {cu:>10} {:>18} {:>14} {:>14}  {status}",
                Price(*price_per_cu).to_string(),
                relative(*redeem_from_ms, now),
                relative(*expires_ms, now)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn expire(args: ExpireArgs) -> anyhow::Result<ExitCode> {
    let holder = match args.holder {
        Some(holder) => holder,
        None => args.conn.key()?.account(),
    };
    let included = args
        .conn
        .submit(TxBody::ExpireVoucher {
            holder,
            series: args.series,
        })
        .await?;
    if args.conn.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "series": args.series, "holder": holder,
                "tx_id": included.tx_id, "height": included.height,
            }))?
        );
    } else {
        outln!(
            "refunded {holder}'s units of series {} in block {}",
            args.series,
            included.height
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `at_ms` relative to `now_ms` for people: "now", "in 6d 23h", "5m ago" (the JSON output
/// keeps the exact Unix milliseconds).
fn relative(at_ms: u64, now_ms: u64) -> String {
    let (span, future) = if at_ms >= now_ms {
        (at_ms - now_ms, true)
    } else {
        (now_ms - at_ms, false)
    };
    let secs = span / 1000;
    let text = match secs {
        0 => return "now".to_string(),
        1..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86_400, secs % 86_400 / 3600),
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::relative;

    #[test]
    fn times_read_relative_to_now() {
        let now = 1_000_000_000;
        assert_eq!(relative(now + 400, now), "now");
        assert_eq!(relative(now + 59_000, now), "in 59s");
        assert_eq!(relative(now - 300_000, now), "5m ago");
        assert_eq!(relative(now + 7 * 86_400_000, now), "in 7d 0h");
        assert_eq!(relative(now + 3_660_000, now), "in 1h 1m");
    }
}
