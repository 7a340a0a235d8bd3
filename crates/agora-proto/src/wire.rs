//! Peer-to-peer messages between the market node and provider agents (over `agora-net`).
//!
//! - Providers gossip their [`AskOffer`]s on the `asks` topic, signed, and re-publish
//!   them periodically; a fresh ask also tells the market the provider is alive.
//! - The market hands a matched order to its provider with a [`ToProvider::Assign`]
//!   request carrying a market-signed [`Assignment`] (which embeds the buyer-signed order,
//!   so the provider can check that the buyer really asked for it).
//! - While it runs, the provider sends signed [`Heartbeat`]s; when done, a [`Delivery`]
//!   (outputs by content hash plus the signed receipt) or a signed [`JobFailure`]. The
//!   market fetches output blobs from the provider by hash and re-checks them.
//!
//! Every message is the canonical encoding of one of the enums here. The transport
//! authenticates the sending peer (its peer id is its agora key), and each payload is
//! signed as well, so a message forwarded by a third party still proves who wrote it.

use agora_core::{AccountId, Domain, Fuel, Hash, Price, Signed, SignedReceipt};
use agora_market::{Ask, AskId};
use serde::{Deserialize, Serialize};

use crate::order::SignedOrder;

/// A provider's standing offer, signed by the provider it names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AskOffer {
    /// The ask; `ask.provider` must equal the envelope's signer.
    pub ask: Ask,
    /// Jobs the provider is running now (informative; the market keeps its own count).
    pub running: u32,
}

impl Domain for AskOffer {
    const TAG: &'static str = "agora/ask/v1";
}

/// The market's instruction to run a matched order, signed by the market authority.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The order's id (derivable from `order`; repeated so logs need not decode it).
    pub order_id: Hash,
    /// The buyer-signed order.
    pub order: SignedOrder,
    /// The provider the order was matched to.
    pub provider: AccountId,
    /// The price per compute unit the provider will be paid.
    pub price: Price,
    /// Which attempt this is (0 for the first; reassignments count up).
    pub attempt: u32,
    /// How often the market expects a heartbeat, in ms.
    pub heartbeat_ms: u64,
}

impl Domain for Assignment {
    const TAG: &'static str = "agora/assignment/v1";
}

/// A provider's "still running this order", signed by the provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The order being run.
    pub order_id: Hash,
    /// The provider running it.
    pub provider: AccountId,
    /// Milliseconds since the provider started the run.
    pub elapsed_ms: u64,
}

impl Domain for Heartbeat {
    const TAG: &'static str = "agora/heartbeat/v1";
}

/// One file the job wrote to `/output`, by content hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutputRef {
    /// Its name under `/output`.
    pub name: String,
    /// Its blake3 hash (the blob to fetch).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub hash: Hash,
    /// Its size in bytes.
    pub size: u64,
}

/// A captured stream as the executor returned it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    /// The bytes kept (at most the job's cap).
    pub data: Vec<u8>,
    /// How many bytes the job wrote in all.
    pub total_bytes: u64,
    /// Whether `data` was cut short.
    pub truncated: bool,
}

/// A finished run: what came out, and the provider's signed receipt for it. The market
/// recomputes the result digest from these fields and the fetched output blobs and
/// refuses the delivery unless it equals the receipt's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The provider's receipt; its `order_id`, `provider` and digest bind everything else.
    pub receipt: SignedReceipt,
    /// The job's exit code.
    pub exit_code: i32,
    /// What it wrote to stdout.
    pub stdout: Stream,
    /// What it wrote to stderr.
    pub stderr: Stream,
    /// Its output files, fetchable from the provider by hash.
    pub outputs: Vec<OutputRef>,
    /// Compute units the run used (informative; the bill uses the receipt's fuel).
    pub fuel_used: Fuel,
}

/// The most bytes of each stream's tail a [`JobFailure`] carries; the market refuses a
/// report with more.
pub const FAILURE_TAIL_BYTES: usize = 2048;

/// Why a provider could not produce a result for an order, signed by the provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFailure {
    /// The order.
    pub order_id: Hash,
    /// The provider reporting.
    pub provider: AccountId,
    /// The executor's typed failure, in words (e.g. "out of fuel after 2.0 CU").
    pub reason: String,
    /// The failure's type as a short code (`out_of_fuel`, `memory_limit`, `tar_slip`, …;
    /// `host` for this provider's own trouble), for programs that act on it.
    pub kind: String,
    /// Whether the failure is the job's own (a trap, malformed module, out of fuel): any
    /// provider would fail the same way, so the order is refunded rather than reassigned.
    pub deterministic: bool,
    /// Fuel burnt before the failure.
    pub fuel_used: Fuel,
    /// The last bytes (at most [`FAILURE_TAIL_BYTES`]) the job wrote to stdout before it
    /// failed, as text; empty when it wrote nothing or never ran.
    pub stdout_tail: String,
    /// The same for stderr: usually where the job said what went wrong.
    pub stderr_tail: String,
}

impl JobFailure {
    /// Refuses tails longer than [`FAILURE_TAIL_BYTES`], so a report stays small.
    pub fn check_shape(&self) -> Result<(), String> {
        if self.kind.len() > 64
            || !self
                .kind
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            return Err(format!(
                "the failure kind {:?} is not a short snake_case code",
                self.kind
            ));
        }
        for (name, tail) in [("stdout", &self.stdout_tail), ("stderr", &self.stderr_tail)] {
            if tail.len() > FAILURE_TAIL_BYTES {
                return Err(format!(
                    "the failure report's {name} tail is {} bytes; at most {FAILURE_TAIL_BYTES} are allowed",
                    tail.len()
                ));
            }
        }
        Ok(())
    }

    /// The tails as lines to append to a reason a buyer reads; empty when there are none.
    pub fn tails_text(&self) -> String {
        let mut text = String::new();
        for (name, tail) in [("stdout", &self.stdout_tail), ("stderr", &self.stderr_tail)] {
            if !tail.is_empty() {
                text.push_str(&format!(
                    "\n--- {name} (last {} bytes) ---\n{tail}",
                    tail.len()
                ));
                if !tail.ends_with('\n') {
                    text.push('\n');
                }
            }
        }
        text
    }
}

impl Domain for JobFailure {
    // v2: the stdout/stderr tails joined the signed body.
    const TAG: &'static str = "agora/job-failure/v2";
}

/// A provider's sealed bid in a reverse auction, signed by the provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    /// The order bid on.
    pub order_id: Hash,
    /// The bidder.
    pub provider: AccountId,
    /// The bidder's ask whose machine would run the job.
    pub ask: AskId,
    /// Its price per compute unit (at most the order's cap).
    pub price: Price,
}

impl Domain for Bid {
    // v2: the ask whose capacity is offered joined the signed body.
    const TAG: &'static str = "agora/bid/v2";
}

/// A provider's acceptance of a Dutch clock's current price, signed by the provider.
/// It names the step as well as the price, so an acceptance meant for a step that has
/// passed is refused rather than taken at a different price.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DutchAccept {
    /// The order whose clock is accepted.
    pub order_id: Hash,
    /// The provider accepting.
    pub provider: AccountId,
    /// The provider's ask whose machine would run the job.
    pub ask: AskId,
    /// The clock step accepted (0-based).
    pub step: u32,
    /// That step's price per compute unit.
    pub price: Price,
}

impl Domain for DutchAccept {
    const TAG: &'static str = "agora/dutch-accept/v1";
}

/// The market's announcement of an order open for bids or acceptances, gossiped on the
/// `orders` topic and signed by the market authority. The order's own (buyer-signed)
/// terms say which kind of auction it is; `opened_ms` fixes the Dutch clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuctionNotice {
    /// The order's id.
    pub order_id: Hash,
    /// The buyer-signed order, with its auction terms.
    pub order: SignedOrder,
    /// When the market opened the auction (the Dutch clock's step 0), Unix ms.
    pub opened_ms: u64,
    /// When bids stop being taken (the window's or the clock's end), Unix ms.
    pub closes_ms: u64,
}

impl Domain for AuctionNotice {
    const TAG: &'static str = "agora/auction-notice/v1";
}

/// Requests a provider agent serves.
// One message per assignment, decoded once and moved into its handler: boxing the large
// variant would add an allocation per message and save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToProvider {
    /// Run this order.
    Assign(Signed<Assignment>),
    /// Stop running this order (reassigned or refunded); signed by the market authority.
    Abort(Signed<AbortJob>),
}

/// The market's "stop running this order".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortJob {
    /// The order to stop.
    pub order_id: Hash,
    /// Why, in words.
    pub reason: String,
}

impl Domain for AbortJob {
    const TAG: &'static str = "agora/abort-job/v1";
}

/// A provider agent's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProviderReply {
    /// Taken; results follow as a [`ToMarket`] request.
    Accepted,
    /// Refused, with the reason (capacity, bad signature, unknown blob...).
    Declined {
        /// Why.
        reason: String,
    },
}

/// Requests the market node serves from providers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToMarket {
    /// Still running.
    Heartbeat(Signed<Heartbeat>),
    /// Finished; outputs and receipt.
    Deliver(Box<Delivery>),
    /// Could not run it.
    Failed(Signed<JobFailure>),
    /// A sealed bid in a reverse auction. Sent to the market alone (never gossiped, so
    /// other bidders cannot see it before the close).
    Bid(Signed<Bid>),
    /// The acceptance of a Dutch clock's current price.
    Accept(Signed<DutchAccept>),
}

/// The market's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MarketReply {
    /// Recorded.
    Ok,
    /// Refused, with the reason.
    Rejected {
        /// Why.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use agora_core::{AccountId, Fuel, Hash};

    use super::{FAILURE_TAIL_BYTES, JobFailure};

    fn failure(stdout_tail: &str, stderr_tail: &str) -> JobFailure {
        JobFailure {
            kind: "trap".into(),
            order_id: Hash::of(b"order"),
            provider: AccountId::from_bytes([7; 32]),
            reason: "job trapped: unreachable".into(),
            deterministic: true,
            fuel_used: Fuel(12),
            stdout_tail: stdout_tail.into(),
            stderr_tail: stderr_tail.into(),
        }
    }

    #[test]
    fn tails_over_the_bound_are_refused() {
        let at_limit = "e".repeat(FAILURE_TAIL_BYTES);
        assert_eq!(failure("", &at_limit).check_shape(), Ok(()));
        let over = at_limit + "!";
        let err = failure(&over, "").check_shape().unwrap_err();
        assert!(err.contains("stdout tail is 2049 bytes"), "{err}");
    }

    #[test]
    fn tails_read_as_labelled_blocks_and_vanish_when_empty() {
        assert_eq!(failure("", "").tails_text(), "");
        assert_eq!(
            failure("partial\n", "boom").tails_text(),
            "\n--- stdout (last 8 bytes) ---\npartial\n\n--- stderr (last 4 bytes) ---\nboom\n"
        );
    }
}
