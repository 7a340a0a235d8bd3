//! Deliberately faulty providers, for test networks only: [`FaultMode`] and
//! [`FaultPlan`] (`agora node provider --faulty MODE[:RATE]`).
//!
//! Verification (replication, spot audits, challenges, slashing) has to be tested against
//! providers that really cheat, over the real wire, with real signatures. A faulty agent is
//! an honest agent with one deliberate deviation per job it misbehaves on:
//!
//! | mode | what it does | what the market sees |
//! |---|---|---|
//! | `wrong-output` | runs the job, then mixes a tag of its own account and the order into the first output file (into stdout when there is none) and signs the receipt over that | a well-formed delivery whose outputs match its receipt, with a digest no honest provider — and no other faulty one — produces |
//! | `skip-work` | runs nothing, fetches nothing; delivers exit 0, a one-line stdout unique to it, no outputs and a made-up fuel count (5–50 % of the budget), signed | the same as `wrong-output`, at once |
//! | `silent` | runs the job honestly and delivers the signed receipt, but never stores the outputs for the market to fetch, and heartbeats no more | the output fetch fails, the attempt fails and the order is reassigned (a job with no output files loses nothing by it: its stdout travels in the delivery) |
//! | `crash` | heartbeats for a while (about 2.5 heartbeat intervals), then exits the whole process with [`CRASH_EXIT_CODE`] before delivering | the connection drops mid-job; the order is reassigned |
//!
//! `RATE` in (0, 1] is the share of jobs misbehaved on; which ones is drawn
//! deterministically from the provider's account and the order id
//! ([`FaultPlan::strikes`]), so a test can tell in advance which orders a provider cheats
//! on, and two providers with the same rate cheat on different orders.
//!
//! The agent refuses to start with a fault mode on a market whose genesis does not set
//! `allow_faulty_providers` (see [`ProviderError::FaultsNotAllowed`](crate::ProviderError)).

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use agora_core::{AccountId, Fuel, Hash};
use agora_exec::{Captured, ModuleSource, Outcome, result_digest};
use agora_proto::wire::Assignment;

/// The exit code of a provider process that crashed on purpose (`--faulty crash`).
pub const CRASH_EXIT_CODE: i32 = 86;

/// How many heartbeat intervals a `crash` job lives: the first heartbeat goes at once,
/// so the market hears three before the process dies.
const CRASH_AFTER_BEATS: f64 = 2.5;

/// The valid forms of a fault flag, for error messages and help.
pub const FAULT_FORMS: &str = "wrong-output, skip-work, silent or crash, optionally followed by :RATE, the share of jobs to misbehave on in (0, 1] (e.g. wrong-output, silent:0.25, crash:50%)";

/// How a faulty provider misbehaves on a job it cheats on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultMode {
    /// Run the job, then corrupt the result in a way unique to this provider and sign the
    /// receipt over the corrupted digest.
    WrongOutput,
    /// Run nothing; deliver a plausible-looking signed result.
    SkipWork,
    /// Deliver the signed receipt, then go silent: no heartbeats, outputs never served.
    Silent,
    /// Exit the whole process mid-job, after some heartbeats, without delivering.
    Crash,
}

impl FaultMode {
    /// Every mode, in the order the docs list them.
    pub const ALL: [FaultMode; 4] = [
        FaultMode::WrongOutput,
        FaultMode::SkipWork,
        FaultMode::Silent,
        FaultMode::Crash,
    ];

    /// The flag's spelling: `wrong-output`, `skip-work`, `silent`, `crash`.
    pub fn name(self) -> &'static str {
        match self {
            FaultMode::WrongOutput => "wrong-output",
            FaultMode::SkipWork => "skip-work",
            FaultMode::Silent => "silent",
            FaultMode::Crash => "crash",
        }
    }

    /// Whether the market ends up with a signed receipt for a result no honest provider
    /// computes (proof of fraud), as opposed to no result at all.
    pub fn signs_a_wrong_digest(self) -> bool {
        matches!(self, FaultMode::WrongOutput | FaultMode::SkipWork)
    }
}

impl fmt::Display for FaultMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultMode {
    type Err = FaultParseError;

    /// Case-insensitive; `_` may stand for `-` (`wrong_output`, `WrongOutput` too).
    fn from_str(text: &str) -> Result<FaultMode, FaultParseError> {
        let folded: String = text
            .trim()
            .chars()
            .filter(|c| !matches!(c, '-' | '_'))
            .flat_map(char::to_lowercase)
            .collect();
        FaultMode::ALL
            .into_iter()
            .find(|mode| mode.name().replace('-', "") == folded)
            .ok_or_else(|| FaultParseError::UnknownMode {
                given: text.to_string(),
            })
    }
}

/// Parts per million in one whole: a rate of 1.
const PPM: u32 = 1_000_000;

/// A fault mode and the share of jobs it applies to: what `--faulty MODE[:RATE]` parses to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FaultPlan {
    /// How to misbehave.
    pub mode: FaultMode,
    /// The share of jobs to misbehave on, in millionths (1 000 000 = every job).
    rate_ppm: u32,
}

impl FaultPlan {
    /// Misbehave on every job.
    pub fn always(mode: FaultMode) -> FaultPlan {
        FaultPlan {
            mode,
            rate_ppm: PPM,
        }
    }

    /// Misbehave on a share `rate` in (0, 1] of the jobs (to the nearest millionth).
    pub fn with_rate(mode: FaultMode, rate: f64) -> Result<FaultPlan, FaultParseError> {
        let ppm = (rate * f64::from(PPM)).round();
        if !(rate > 0.0 && rate <= 1.0) || ppm < 1.0 {
            return Err(FaultParseError::BadRate {
                given: rate.to_string(),
            });
        }
        Ok(FaultPlan {
            mode,
            rate_ppm: ppm as u32,
        })
    }

    /// The share of jobs misbehaved on, in (0, 1].
    pub fn rate(&self) -> f64 {
        f64::from(self.rate_ppm) / f64::from(PPM)
    }

    /// Whether `provider` misbehaves on `order_id`: always at rate 1, otherwise when a
    /// hash of both, read as a number below one million, falls under the rate. Pure, so
    /// tests and the demo can tell in advance which orders a faulty provider cheats on.
    pub fn strikes(&self, provider: &AccountId, order_id: &Hash) -> bool {
        if self.rate_ppm >= PPM {
            return true;
        }
        let draw = Hash::tagged(
            "agora/fault/draw/v1",
            &[provider.as_bytes(), order_id.as_bytes()],
        );
        let mut first = [0u8; 8];
        first.copy_from_slice(&draw.as_bytes()[..8]);
        (u64::from_le_bytes(first) % u64::from(PPM)) < u64::from(self.rate_ppm)
    }

    /// The mode to apply to `order_id`, if `provider` misbehaves on it.
    pub fn for_order(&self, provider: &AccountId, order_id: &Hash) -> Option<FaultMode> {
        self.strikes(provider, order_id).then_some(self.mode)
    }
}

impl From<FaultMode> for FaultPlan {
    fn from(mode: FaultMode) -> FaultPlan {
        FaultPlan::always(mode)
    }
}

impl fmt::Display for FaultPlan {
    /// `MODE` at rate 1, else `MODE:RATE`: what [`FromStr`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rate_ppm >= PPM {
            write!(f, "{}", self.mode)
        } else {
            write!(f, "{}:{}", self.mode, self.rate())
        }
    }
}

impl FromStr for FaultPlan {
    type Err = FaultParseError;

    /// `MODE` or `MODE:RATE`, RATE a decimal in (0, 1] or a percentage (`25%`).
    fn from_str(text: &str) -> Result<FaultPlan, FaultParseError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(FaultParseError::Empty);
        }
        let (mode, rate) = match text.split_once(':') {
            Some((mode, rate)) => (mode, Some(rate.trim())),
            None => (text, None),
        };
        let mode: FaultMode = mode.parse()?;
        let Some(rate) = rate else {
            return Ok(FaultPlan::always(mode));
        };
        let bad = || FaultParseError::BadRate {
            given: rate.to_string(),
        };
        let value = match rate.strip_suffix('%') {
            Some(percent) => percent.trim().parse::<f64>().map_err(|_| bad())? / 100.0,
            None => rate.parse::<f64>().map_err(|_| bad())?,
        };
        FaultPlan::with_rate(mode, value).map_err(|_| bad())
    }
}

/// Why a fault flag does not parse; each says what would.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FaultParseError {
    /// Nothing given.
    #[error("no fault mode given; expected {FAULT_FORMS}")]
    Empty,
    /// Not one of the modes.
    #[error("unknown fault mode {given:?}; expected {FAULT_FORMS}")]
    UnknownMode {
        /// What was given.
        given: String,
    },
    /// The rate is not a share in (0, 1].
    #[error(
        "fault rate {given:?} is not a share of jobs in (0, 1]; write e.g. silent:0.25 or silent:25% (or no rate: every job)"
    )]
    BadRate {
        /// What was given.
        given: String,
    },
}

/// A tag unique to this provider and order: what a faulty result carries so that two
/// faulty providers never deliver the same wrong result.
fn tag(what: &str, provider: &AccountId, order_id: &Hash) -> Hash {
    Hash::tagged(what, &[provider.as_bytes(), order_id.as_bytes()])
}

/// `wrong-output`: corrupts an honest outcome in place — appends a line naming this
/// provider's tag to the first output file (by name), or to stdout when there is no
/// output file — and recomputes the digest, so the delivered outputs match the receipt.
pub(crate) fn corrupt(outcome: &mut Outcome, provider: &AccountId, order_id: &Hash) {
    let tag = tag("agora/fault/wrong-output/v1", provider, order_id);
    let line = format!("{}\n", tag);
    let first = outcome
        .outputs
        .iter_mut()
        .min_by(|a, b| a.name.cmp(&b.name));
    match first {
        Some(file) => {
            file.data.extend_from_slice(line.as_bytes());
            file.size = file.data.len() as u64;
            file.hash = Hash::of(&file.data);
        }
        None => {
            outcome.stdout.data.extend_from_slice(line.as_bytes());
            outcome.stdout.total_bytes += line.len() as u64;
        }
    }
    outcome.digest = result_digest(
        outcome.exit_code,
        &outcome.stdout.data,
        &outcome.stderr.data,
        &outcome.outputs,
    );
}

/// `skip-work`: the result a provider that ran nothing makes up for `assignment` — exit
/// 0, one line of stdout unique to it, no outputs, and 5–50 % of the fuel budget (at
/// least 1 fuel), with a wall time to match (1 CU ≈ 1 s).
pub(crate) fn made_up(assignment: &Assignment, provider: &AccountId) -> Outcome {
    let order = &assignment.order.body;
    let tag = tag("agora/fault/skip-work/v1", provider, &assignment.order_id);
    let stdout = format!("{}\n", tag).into_bytes();
    let budget = order.fuel_budget.0.max(1);
    let share = 5 + u64::from(tag.as_bytes()[0]) % 46;
    let fuel = Fuel(
        (u128::from(budget) * u128::from(share) / 100)
            .clamp(1, u128::from(budget))
            .try_into()
            .unwrap_or(budget),
    );
    let wall_time = Duration::from_micros(fuel.0 / 1_000).max(Duration::from_millis(1));
    let stdout = Captured::new("stdout", stdout.clone(), stdout.len() as u64);
    let stderr = Captured::new("stderr", Vec::new(), 0);
    let digest = result_digest(0, &stdout.data, &stderr.data, &[]);
    Outcome {
        job_id: assignment.order_id,
        module_hash: order.job.module,
        exit_code: 0,
        stdout,
        stderr,
        outputs: Vec::new(),
        fuel_used: fuel,
        compute_units: fuel.as_compute_units_f64(),
        wall_time,
        peak_memory_bytes: 1 << 16,
        module_source: ModuleSource::DiskCache,
        digest,
    }
}

/// `crash`: lets `work` run (and the heartbeats go on) for about
/// [`CRASH_AFTER_BEATS`] heartbeat intervals of `heartbeat`, then exits the process with
/// [`CRASH_EXIT_CODE`] whether or not the work finished: nothing is delivered, no
/// shutdown message is sent, `provider.json` is left behind — as a crash would.
pub(crate) async fn crash_during<F: Future>(
    work: F,
    heartbeat: Duration,
    order: &str,
) -> F::Output {
    let after = heartbeat.mul_f64(CRASH_AFTER_BEATS);
    let until = tokio::time::Instant::now() + after;
    let _ = tokio::time::timeout_at(until, work).await;
    tokio::time::sleep_until(until).await;
    tracing::error!(
        order,
        code = CRASH_EXIT_CODE,
        "faulty provider (--faulty crash): exiting mid-job on purpose"
    );
    std::process::exit(CRASH_EXIT_CODE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::Keypair;
    use agora_exec::OutputFile;

    #[test]
    fn modes_parse_in_every_spelling() {
        for mode in FaultMode::ALL {
            assert_eq!(mode.name().parse::<FaultMode>(), Ok(mode));
            assert_eq!(mode.name().to_uppercase().parse::<FaultMode>(), Ok(mode));
            assert_eq!(mode.name().replace('-', "_").parse::<FaultMode>(), Ok(mode));
            assert_eq!(format!("{mode:?}").parse::<FaultMode>(), Ok(mode));
            assert_eq!(
                mode.to_string().parse::<FaultPlan>(),
                Ok(FaultPlan::always(mode))
            );
        }
    }

    #[test]
    fn rates_parse_as_shares_or_percentages() {
        let plan: FaultPlan = "silent:0.25".parse().unwrap();
        assert_eq!(plan.mode, FaultMode::Silent);
        assert_eq!(plan.rate(), 0.25);
        assert_eq!("silent:25%".parse::<FaultPlan>(), Ok(plan));
        assert_eq!(" Silent : 0.25 ".parse::<FaultPlan>(), Ok(plan));
        assert_eq!(plan.to_string(), "silent:0.25");
        assert_eq!(plan.to_string().parse::<FaultPlan>(), Ok(plan));
        assert_eq!(
            "crash:1".parse::<FaultPlan>(),
            Ok(FaultPlan::always(FaultMode::Crash))
        );
        assert_eq!(FaultPlan::always(FaultMode::Crash).to_string(), "crash");
    }

    #[test]
    fn bad_flags_say_what_would_parse() {
        for bad in [
            "",
            "  ",
            "lie",
            "wrong-output:0",
            "wrong-output:1.5",
            "silent:-1",
            "silent:x",
            "silent:",
            "silent:NaN",
            "crash:0%",
            "crash:0.0000001",
        ] {
            let err = bad.parse::<FaultPlan>().unwrap_err();
            let text = err.to_string();
            match err {
                FaultParseError::Empty | FaultParseError::UnknownMode { .. } => {
                    assert!(
                        text.contains("wrong-output, skip-work, silent or crash"),
                        "{text}"
                    )
                }
                FaultParseError::BadRate { .. } => assert!(text.contains("(0, 1]"), "{text}"),
            }
        }
        assert!(matches!(
            "lie:0.5".parse::<FaultPlan>(),
            Err(FaultParseError::UnknownMode { given }) if given == "lie"
        ));
        assert!(FaultPlan::with_rate(FaultMode::Silent, 0.0).is_err());
        assert!(FaultPlan::with_rate(FaultMode::Silent, f64::INFINITY).is_err());
    }

    #[test]
    fn the_draw_is_deterministic_and_near_the_rate() {
        let plan = FaultPlan::with_rate(FaultMode::WrongOutput, 0.3).unwrap();
        let a = Keypair::from_seed("a").account();
        let b = Keypair::from_seed("b").account();
        let orders: Vec<Hash> = (0..2_000u32).map(|i| Hash::of(&i.to_le_bytes())).collect();
        let hits_a: Vec<bool> = orders.iter().map(|o| plan.strikes(&a, o)).collect();
        let again: Vec<bool> = orders.iter().map(|o| plan.strikes(&a, o)).collect();
        assert_eq!(hits_a, again);
        let share = hits_a.iter().filter(|h| **h).count() as f64 / orders.len() as f64;
        assert!((0.25..0.35).contains(&share), "{share}");
        let hits_b: Vec<bool> = orders.iter().map(|o| plan.strikes(&b, o)).collect();
        assert_ne!(hits_a, hits_b, "providers cheat on different orders");
        let always = FaultPlan::always(FaultMode::Crash);
        assert!(orders.iter().all(|o| always.strikes(&a, o)));
        assert_eq!(always.for_order(&a, &orders[0]), Some(FaultMode::Crash));
    }

    fn outcome(outputs: Vec<OutputFile>) -> Outcome {
        let stdout = Captured::new("stdout", b"42\n".to_vec(), 3);
        let stderr = Captured::new("stderr", Vec::new(), 0);
        let digest = result_digest(0, &stdout.data, &stderr.data, &outputs);
        Outcome {
            job_id: Hash::of(b"order"),
            module_hash: Hash::of(b"module"),
            exit_code: 0,
            stdout,
            stderr,
            outputs,
            fuel_used: Fuel(1_000),
            compute_units: 0.0,
            wall_time: Duration::from_millis(1),
            peak_memory_bytes: 0,
            module_source: ModuleSource::Compiled,
            digest,
        }
    }

    fn file(name: &str, data: &[u8]) -> OutputFile {
        OutputFile {
            name: name.into(),
            size: data.len() as u64,
            hash: Hash::of(data),
            data: data.to_vec(),
        }
    }

    #[test]
    fn wrong_outputs_are_self_consistent_and_never_agree() {
        let order = Hash::of(b"order");
        let (a, b) = (
            Keypair::from_seed("a").account(),
            Keypair::from_seed("b").account(),
        );
        for outputs in [vec![], vec![file("z", b"zz"), file("a", b"aa")]] {
            let honest = outcome(outputs);
            let mut wrong_a = honest.clone();
            corrupt(&mut wrong_a, &a, &order);
            let mut wrong_b = honest.clone();
            corrupt(&mut wrong_b, &b, &order);
            assert_ne!(wrong_a.digest, honest.digest);
            assert_ne!(wrong_a.digest, wrong_b.digest);
            for wrong in [&wrong_a, &wrong_b] {
                assert_eq!(
                    wrong.digest,
                    result_digest(
                        wrong.exit_code,
                        &wrong.stdout.data,
                        &wrong.stderr.data,
                        &wrong.outputs
                    )
                );
                for f in &wrong.outputs {
                    assert_eq!(f.hash, Hash::of(&f.data));
                    assert_eq!(f.size, f.data.len() as u64);
                }
            }
            if !honest.outputs.is_empty() {
                // The first output by name is the one changed; stdout looks honest.
                assert_eq!(wrong_a.stdout, honest.stdout);
                assert_ne!(wrong_a.outputs[1], honest.outputs[1]);
                assert_eq!(wrong_a.outputs[0], honest.outputs[0]);
            }
        }
    }
}
