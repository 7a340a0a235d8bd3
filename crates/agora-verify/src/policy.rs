//! Verification policies, chosen per order, and their CLI forms.
//!
//! | form | policy |
//! |---|---|
//! | `none` | accept the signed receipt; reputation only |
//! | `replicate:N:Q` | run on N distinct providers, accept the result with Q votes (Q > N/2) |
//! | `spot:P` | one provider; re-run by an independent one with probability P, a decimal in (0, 1] |
//! | `adaptive` or `adaptive:FLOOR:FULL_UNTIL` | replicate fully until a provider has FULL_UNTIL consecutive verified results, then audit with probability max(1/count, FLOOR) |
//! | `challenge:WINDOW` or `challenge` | hold the result for WINDOW (`30s`, `5m`, `1h`, `500ms`) in which any staked party may challenge |
//!
//! Probabilities are stored as integer parts per million so every node decides the same.
//! `Display` prints the canonical form and `FromStr` reads it back, so a policy survives a
//! round trip through the CLI, JSON and the ledger unchanged.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Parts per million: probability 1.
pub const PPM: u32 = 1_000_000;
/// The most replicas one order may ask for; beyond this replication costs more than it buys.
pub const MAX_REPLICAS: u32 = 16;
/// The adaptive audit floor by default: 5 %, so a long-trusted provider costs 1.05 runs.
pub const DEFAULT_ADAPTIVE_FLOOR_PPM: u32 = 50_000;
/// Consecutive verified results before adaptive stops replicating every job by default: 10,
/// the point after which the target counts wrong results.
pub const DEFAULT_ADAPTIVE_FULL_UNTIL: u32 = 10;
/// The challenge window by default: 10 minutes, long enough for a watcher to re-run a job.
pub const DEFAULT_CHALLENGE_WINDOW_MS: u64 = 600_000;
/// The longest challenge window: a week. Longer windows only hold the provider's pay longer.
pub const MAX_CHALLENGE_WINDOW_MS: u64 = 7 * DAY_MS;

const SECOND_MS: u64 = 1_000;
const MINUTE_MS: u64 = 60 * SECOND_MS;
const HOUR_MS: u64 = 60 * MINUTE_MS;
const DAY_MS: u64 = 24 * HOUR_MS;

/// The valid forms, quoted in every parse error.
pub const POLICY_FORMS: &str =
    "none | replicate:N:Q | spot:P | adaptive[:FLOOR:FULL_UNTIL] | challenge[:WINDOW]";

/// One paragraph for the CLI's `--verify` help.
pub const POLICY_HELP: &str = "Verification policy: `none` accepts the provider's signed \
receipt (reputation only); `replicate:N:Q` runs the job on N distinct providers and accepts the \
result that Q of them agree on (Q > N/2; disagreeing providers are slashed; without a quorum \
more providers are added, then the buyer is refunded); `spot:P` runs once and has an independent \
provider re-run it with probability P (e.g. spot:0.2), drawn from a value revealed only after \
the receipt is recorded; `adaptive` (the default; `adaptive:FLOOR:FULL_UNTIL`, default \
adaptive:0.05:10) replicates every job of a provider with fewer than FULL_UNTIL consecutive \
verified results, then audits with probability max(1/count, FLOOR); `challenge:WINDOW` (e.g. \
challenge:30s) holds the result for WINDOW in which any staked party may challenge with a bond. \
A bid's stake must satisfy S >= C/p - R (C: the job's compute cost, p: the audit probability, \
R: what the job pays), so cheating never pays.";

/// How an order's result is checked before the provider is paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum VerifyPolicy {
    /// Accept the signed receipt; reputation only.
    None,
    /// Run on `n` distinct providers; accept the result that reaches `quorum` votes.
    Replicate {
        /// Providers run up front, 1..=[`MAX_REPLICAS`].
        n: u32,
        /// Votes needed, a strict majority of `n`.
        quorum: u32,
    },
    /// One provider; an independent re-run with probability `p_ppm` / 10⁶.
    Spot {
        /// Audit probability in parts per million, 1..=10⁶.
        p_ppm: u32,
    },
    /// Full replication for new providers, sampling for trusted ones.
    Adaptive {
        /// The lowest audit probability, in ppm ([`DEFAULT_ADAPTIVE_FLOOR_PPM`]).
        floor_ppm: u32,
        /// Consecutive verified results below which every job is replicated
        /// ([`DEFAULT_ADAPTIVE_FULL_UNTIL`]).
        full_until: u32,
    },
    /// Optimistic acceptance with a challenge window.
    Challenge {
        /// How long after the receipt is recorded a challenge may be filed
        /// ([`DEFAULT_CHALLENGE_WINDOW_MS`]).
        window_ms: u64,
    },
}

impl VerifyPolicy {
    /// What an order gets when it names no policy: adaptive with the documented defaults,
    /// because it verifies new providers fully and trusted ones for a few percent.
    pub const DEFAULT: VerifyPolicy = VerifyPolicy::Adaptive {
        floor_ppm: DEFAULT_ADAPTIVE_FLOOR_PPM,
        full_until: DEFAULT_ADAPTIVE_FULL_UNTIL,
    };

    /// The policy's kind as one lowercase word, for JSON fields and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            VerifyPolicy::None => "none",
            VerifyPolicy::Replicate { .. } => "replicate",
            VerifyPolicy::Spot { .. } => "spot",
            VerifyPolicy::Adaptive { .. } => "adaptive",
            VerifyPolicy::Challenge { .. } => "challenge",
        }
    }

    /// The challenge window, for the policy that has one.
    pub fn challenge_window_ms(&self) -> Option<u64> {
        match self {
            VerifyPolicy::Challenge { window_ms } => Some(*window_ms),
            _ => None,
        }
    }

    /// Checks the parameters, so a policy built in code is held to the same rules as one
    /// parsed from the CLI.
    pub fn validate(&self) -> Result<(), PolicyError> {
        match *self {
            VerifyPolicy::None => Ok(()),
            VerifyPolicy::Replicate { n, quorum } => validate_replicate(n, quorum),
            VerifyPolicy::Spot { p_ppm } => validate_ppm(p_ppm),
            VerifyPolicy::Adaptive { floor_ppm, .. } => validate_ppm(floor_ppm),
            VerifyPolicy::Challenge { window_ms } => validate_window(window_ms),
        }
    }
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        VerifyPolicy::DEFAULT
    }
}

fn validate_replicate(n: u32, quorum: u32) -> Result<(), PolicyError> {
    if n == 0 {
        return Err(PolicyError::NoReplicas { quorum });
    }
    if n > MAX_REPLICAS {
        return Err(PolicyError::TooManyReplicas { n, quorum });
    }
    if quorum > n {
        return Err(PolicyError::QuorumAboveReplicas { n, quorum });
    }
    let majority = n / 2 + 1;
    if quorum < majority {
        return Err(PolicyError::QuorumNotMajority {
            n,
            quorum,
            majority,
        });
    }
    Ok(())
}

fn validate_ppm(ppm: u32) -> Result<(), PolicyError> {
    if ppm == 0 || ppm > PPM {
        return Err(PolicyError::BadProbability {
            given: format_ppm(ppm),
        });
    }
    Ok(())
}

fn validate_window(window_ms: u64) -> Result<(), PolicyError> {
    if window_ms == 0 || window_ms > MAX_CHALLENGE_WINDOW_MS {
        return Err(PolicyError::BadWindow {
            given: format_duration(window_ms),
        });
    }
    Ok(())
}

/// A policy string that is not one of [`POLICY_FORMS`], or whose numbers are out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not a policy name at all.
    #[error("unknown verification policy {0:?}; expected {POLICY_FORMS}, e.g. replicate:3:2")]
    UnknownKind(String),
    /// The right name with the wrong shape.
    #[error("verification policy {given:?} is malformed; expected {expected}")]
    Malformed {
        /// As given.
        given: String,
        /// The shape it should have, with an example.
        expected: &'static str,
    },
    /// `replicate:0:Q`.
    #[error("replicate:0:{quorum} runs on no provider; N must be at least 1, e.g. replicate:3:2")]
    NoReplicas {
        /// The quorum given.
        quorum: u32,
    },
    /// More replicas than [`MAX_REPLICAS`].
    #[error("replicate:{n}:{quorum} asks for {n} providers; at most {MAX_REPLICAS} are allowed")]
    TooManyReplicas {
        /// Replicas given.
        n: u32,
        /// Quorum given.
        quorum: u32,
    },
    /// Q > N.
    #[error(
        "replicate:{n}:{quorum} needs {quorum} votes from {n} providers; Q must be at most N, e.g. replicate:3:2"
    )]
    QuorumAboveReplicas {
        /// Replicas given.
        n: u32,
        /// Quorum given.
        quorum: u32,
    },
    /// Q ≤ N/2: two different results could both reach the quorum.
    #[error(
        "replicate:{n}:{quorum}: the quorum must be a strict majority of N so two different results can never both reach it; use Q >= {majority}, e.g. replicate:{n}:{majority}"
    )]
    QuorumNotMajority {
        /// Replicas given.
        n: u32,
        /// Quorum given.
        quorum: u32,
        /// The smallest valid quorum for `n`.
        majority: u32,
    },
    /// A probability outside (0, 1] or finer than one part per million.
    #[error(
        "probability {given:?} must be a decimal in (0, 1] with at most 6 decimal places, e.g. spot:0.2"
    )]
    BadProbability {
        /// As given.
        given: String,
    },
    /// A challenge window that is zero, too long or has no unit.
    #[error(
        "challenge window {given:?} must be a positive duration of at most 7d with a unit (ms, s, m, h, d), e.g. challenge:30s"
    )]
    BadWindow {
        /// As given.
        given: String,
    },
}

impl FromStr for VerifyPolicy {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim().to_ascii_lowercase();
        let mut parts = text.split(':');
        let kind = parts.next().unwrap_or_default();
        let args: Vec<&str> = parts.collect();
        let policy = match kind {
            "none" => parse_none(&text, &args)?,
            "replicate" => parse_replicate(&text, &args)?,
            "spot" => parse_spot(&text, &args)?,
            "adaptive" => parse_adaptive(&text, &args)?,
            "challenge" => parse_challenge(&text, &args)?,
            _ => return Err(PolicyError::UnknownKind(s.trim().to_owned())),
        };
        policy.validate()?;
        Ok(policy)
    }
}

fn malformed(given: &str, expected: &'static str) -> PolicyError {
    PolicyError::Malformed {
        given: given.to_owned(),
        expected,
    }
}

fn parse_none(text: &str, args: &[&str]) -> Result<VerifyPolicy, PolicyError> {
    match args {
        [] => Ok(VerifyPolicy::None),
        _ => Err(malformed(text, "`none` with no arguments")),
    }
}

fn parse_replicate(text: &str, args: &[&str]) -> Result<VerifyPolicy, PolicyError> {
    const EXPECTED: &str = "replicate:N:Q with whole numbers, e.g. replicate:3:2";
    let [n, quorum] = args else {
        return Err(malformed(text, EXPECTED));
    };
    let n = n.parse().map_err(|_| malformed(text, EXPECTED))?;
    let quorum = quorum.parse().map_err(|_| malformed(text, EXPECTED))?;
    Ok(VerifyPolicy::Replicate { n, quorum })
}

fn parse_spot(text: &str, args: &[&str]) -> Result<VerifyPolicy, PolicyError> {
    let [p] = args else {
        return Err(malformed(
            text,
            "spot:P with P a decimal in (0, 1], e.g. spot:0.2",
        ));
    };
    Ok(VerifyPolicy::Spot {
        p_ppm: parse_ppm(p)?,
    })
}

fn parse_adaptive(text: &str, args: &[&str]) -> Result<VerifyPolicy, PolicyError> {
    const EXPECTED: &str = "`adaptive` or adaptive:FLOOR:FULL_UNTIL, e.g. adaptive:0.05:10";
    match args {
        [] => Ok(VerifyPolicy::DEFAULT),
        [floor, full_until] => Ok(VerifyPolicy::Adaptive {
            floor_ppm: parse_ppm(floor)?,
            full_until: full_until.parse().map_err(|_| malformed(text, EXPECTED))?,
        }),
        _ => Err(malformed(text, EXPECTED)),
    }
}

fn parse_challenge(text: &str, args: &[&str]) -> Result<VerifyPolicy, PolicyError> {
    match args {
        [] => Ok(VerifyPolicy::Challenge {
            window_ms: DEFAULT_CHALLENGE_WINDOW_MS,
        }),
        [window] => Ok(VerifyPolicy::Challenge {
            window_ms: parse_duration_ms(window)?,
        }),
        _ => Err(malformed(text, "challenge:WINDOW, e.g. challenge:30s")),
    }
}

/// Reads a decimal probability such as `0.2` or `1` as parts per million, exactly: a value
/// that needs more than six decimals is refused rather than rounded, so what the buyer typed
/// is what every node decides with.
pub fn parse_ppm(text: &str) -> Result<u32, PolicyError> {
    let bad = || PolicyError::BadProbability {
        given: text.to_owned(),
    };
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits_only = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() && frac.is_empty() || frac.len() > 6 || !digits_only(whole) {
        return Err(bad());
    }
    if !digits_only(frac) || whole.len() > 1 {
        return Err(bad());
    }
    let whole: u32 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let frac: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().map_err(|_| bad())?
    };
    let ppm = whole * PPM + frac;
    validate_ppm(ppm).map_err(|_| bad())?;
    Ok(ppm)
}

/// Prints parts per million as the shortest decimal that reads back exactly: `0.2`, `1`.
pub fn format_ppm(ppm: u32) -> String {
    let whole = ppm / PPM;
    let frac = ppm % PPM;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Reads a duration with a unit (`500ms`, `30s`, `5m`, `1h`, `2d`) as milliseconds. A unit is
/// required because a bare `30` is as likely meant as seconds as milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, PolicyError> {
    let bad = || PolicyError::BadWindow {
        given: text.to_owned(),
    };
    let window_ms = agora_core::duration::parse_ms(text).ok_or_else(bad)?;
    validate_window(window_ms).map_err(|_| bad())?;
    Ok(window_ms)
}

/// Prints milliseconds in the largest unit that divides them exactly: `30s`, `5m`, `1500ms`.
pub fn format_duration(ms: u64) -> String {
    agora_core::duration::format_ms(ms)
}

impl fmt::Display for VerifyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            VerifyPolicy::None => f.write_str("none"),
            VerifyPolicy::Replicate { n, quorum } => write!(f, "replicate:{n}:{quorum}"),
            VerifyPolicy::Spot { p_ppm } => write!(f, "spot:{}", format_ppm(p_ppm)),
            VerifyPolicy::DEFAULT => f.write_str("adaptive"),
            VerifyPolicy::Adaptive {
                floor_ppm,
                full_until,
            } => write!(f, "adaptive:{}:{full_until}", format_ppm(floor_ppm)),
            VerifyPolicy::Challenge { window_ms } => {
                write!(f, "challenge:{}", format_duration(window_ms))
            }
        }
    }
}

impl TryFrom<String> for VerifyPolicy {
    type Error = PolicyError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<VerifyPolicy> for String {
    fn from(policy: VerifyPolicy) -> String {
        policy.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<VerifyPolicy, PolicyError> {
        text.parse()
    }

    #[test]
    fn parses_every_cli_form() {
        assert_eq!(parse("none"), Ok(VerifyPolicy::None));
        assert_eq!(
            parse("replicate:3:2"),
            Ok(VerifyPolicy::Replicate { n: 3, quorum: 2 })
        );
        assert_eq!(parse("spot:0.2"), Ok(VerifyPolicy::Spot { p_ppm: 200_000 }));
        assert_eq!(parse("spot:1"), Ok(VerifyPolicy::Spot { p_ppm: PPM }));
        assert_eq!(parse("spot:.5"), Ok(VerifyPolicy::Spot { p_ppm: 500_000 }));
        assert_eq!(parse("adaptive"), Ok(VerifyPolicy::DEFAULT));
        assert_eq!(
            parse("adaptive:0.01:20"),
            Ok(VerifyPolicy::Adaptive {
                floor_ppm: 10_000,
                full_until: 20
            })
        );
        assert_eq!(
            parse("challenge:30s"),
            Ok(VerifyPolicy::Challenge { window_ms: 30_000 })
        );
        assert_eq!(
            parse("challenge"),
            Ok(VerifyPolicy::Challenge {
                window_ms: DEFAULT_CHALLENGE_WINDOW_MS
            })
        );
        assert_eq!(
            parse(" Replicate:5:3 "),
            Ok(VerifyPolicy::Replicate { n: 5, quorum: 3 })
        );
    }

    #[test]
    fn refuses_bad_forms_with_the_reason() {
        assert!(matches!(
            parse("replicate:2:3"),
            Err(PolicyError::QuorumAboveReplicas { n: 2, quorum: 3 })
        ));
        assert!(matches!(
            parse("replicate:0:0"),
            Err(PolicyError::NoReplicas { .. })
        ));
        assert!(matches!(
            parse("replicate:4:2"),
            Err(PolicyError::QuorumNotMajority { majority: 3, .. })
        ));
        assert!(matches!(
            parse("replicate:17:9"),
            Err(PolicyError::TooManyReplicas { .. })
        ));
        assert!(matches!(
            parse("replicate:3"),
            Err(PolicyError::Malformed { .. })
        ));
        for p in ["0", "0.0", "1.5", "2", "-0.1", "0.0000001", "", "abc", "01"] {
            assert!(
                matches!(
                    parse(&format!("spot:{p}")),
                    Err(PolicyError::BadProbability { .. })
                ),
                "spot:{p}"
            );
        }
        for w in ["30", "0s", "8d", "s", "10y", "99999999999999999999ms"] {
            assert!(
                matches!(
                    parse(&format!("challenge:{w}")),
                    Err(PolicyError::BadWindow { .. })
                ),
                "challenge:{w}"
            );
        }
        assert!(matches!(
            parse("trust-me"),
            Err(PolicyError::UnknownKind(_))
        ));
        assert!(matches!(
            parse("none:1"),
            Err(PolicyError::Malformed { .. })
        ));
    }

    #[test]
    fn errors_show_a_valid_form() {
        let message = parse("replicate:2:3").unwrap_err().to_string();
        assert!(message.contains("replicate:3:2"), "{message}");
        let message = parse("spot:1.5").unwrap_err().to_string();
        assert!(message.contains("spot:0.2"), "{message}");
        let message = parse("challenge:30").unwrap_err().to_string();
        assert!(message.contains("challenge:30s"), "{message}");
    }

    #[test]
    fn displays_canonical_forms() {
        assert_eq!(VerifyPolicy::DEFAULT.to_string(), "adaptive");
        assert_eq!(
            VerifyPolicy::Spot { p_ppm: 200_000 }.to_string(),
            "spot:0.2"
        );
        assert_eq!(
            VerifyPolicy::Challenge { window_ms: 1_500 }.to_string(),
            "challenge:1500ms"
        );
        assert_eq!(
            VerifyPolicy::Challenge { window_ms: 300_000 }.to_string(),
            "challenge:5m"
        );
    }

    #[test]
    fn serde_uses_the_cli_form() {
        let json = serde_json::to_string(&VerifyPolicy::Replicate { n: 3, quorum: 2 }).unwrap();
        assert_eq!(json, "\"replicate:3:2\"");
        let back: VerifyPolicy = serde_json::from_str("\"spot:0.25\"").unwrap();
        assert_eq!(back, VerifyPolicy::Spot { p_ppm: 250_000 });
        assert!(serde_json::from_str::<VerifyPolicy>("\"replicate:1:2\"").is_err());
    }

    #[test]
    fn help_names_the_default_and_the_formula() {
        assert!(POLICY_HELP.contains(&VerifyPolicy::DEFAULT.to_string()));
        assert!(POLICY_HELP.contains("S >= C/p - R"));
    }
}
