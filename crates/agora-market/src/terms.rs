//! How an order is matched, as the buyer signs it ([`MatchTerms`]), and the Dutch clock.
//!
//! - `instant`: matched at once against the standing asks (the default).
//! - `sealed:WINDOW[:first|uniform]`: a sealed-bid reverse auction. Providers bid during
//!   `WINDOW`; at its end the lowest qualifying bid wins, paid its own bid (`first`, the
//!   default) or the next-best bid (`uniform`, the (k+1)-th price).
//! - `dutch:FROM..TO/DURATION[xSTEPS]`: a procurement ("reverse") Dutch auction. The price
//!   the buyer offers per CU **rises** from `FROM` to `TO` in `STEPS` equal steps (default
//!   [`DEFAULT_DUTCH_STEPS`]) spread evenly over `DURATION`; the first provider to accept
//!   the price of the current step wins at that price.
//!
//! Why the clock rises: the buyer pays the provider the clock price. A clock descending
//! from the buyer's ceiling would be accepted at its opening price by every rational
//! provider (a higher price is always better for the seller), so it would discover
//! nothing and the buyer would pay its ceiling. A rising clock is first accepted by the
//! provider whose floor it reaches first, the cheapest one, at no more than one step
//! above that floor. See docs/auctions.md.
//!
//! [`dutch_tick`] is a pure function of the terms, the time the clock started and now.

use std::fmt;
use std::str::FromStr;

use agora_core::Price;
use serde::{Deserialize, Serialize};

use crate::order::PricingRule;

/// Steps of a Dutch clock when the terms do not say.
pub const DEFAULT_DUTCH_STEPS: u32 = 10;
/// The most steps a Dutch clock may have.
pub const MAX_DUTCH_STEPS: u32 = 10_000;
/// The shortest auction window or clock, ms: below this the network round trip decides.
pub const MIN_AUCTION_MS: u64 = 100;
/// The longest auction window or clock, ms.
pub const MAX_AUCTION_MS: u64 = 3_600_000;

/// How an order is matched. Part of the buyer-signed order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MatchTerms {
    /// Matched at once against standing asks.
    #[default]
    Instant,
    /// A sealed-bid reverse auction open for `window_ms` after the market accepts the order.
    Sealed {
        /// How long bids are taken, ms.
        window_ms: u64,
        /// How winners are paid.
        rule: PricingRule,
    },
    /// A rising-price (procurement) Dutch clock.
    Dutch(DutchSchedule),
}

/// A Dutch clock's published schedule: `steps` prices from `from` up to `to`, each held
/// for `duration_ms / steps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DutchSchedule {
    /// The opening (lowest) price per CU.
    pub from: Price,
    /// The last (highest) price per CU; at most the order's cap.
    pub to: Price,
    /// How long the whole clock runs, ms.
    pub duration_ms: u64,
    /// How many prices it offers (at least 2).
    pub steps: u32,
}

/// Where a Dutch clock stands at some instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DutchTick {
    /// The clock offers `price` at step `step` (0-based) until `until_ms`.
    Open {
        /// The current step.
        step: u32,
        /// Its price.
        price: Price,
        /// When the next step (or the end) comes, Unix ms.
        until_ms: u64,
    },
    /// Every step has passed without an acceptance.
    Ended,
}

/// Why match terms are malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TermsError {
    /// Not one of the forms.
    #[error(
        "match terms {0:?} are none of: instant, sealed:WINDOW[:first|uniform] (e.g. sealed:5s), dutch:FROM..TO/DURATION[xSTEPS] (e.g. dutch:10..200/10s or dutch:10..200/10sx20)"
    )]
    Malformed(String),
    /// A window or clock duration out of range.
    #[error(
        "duration {given:?} is not between {MIN_AUCTION_MS} ms and {MAX_AUCTION_MS} ms (write it like 500ms, 5s, 2m)"
    )]
    BadDuration {
        /// What was given.
        given: String,
    },
    /// A Dutch clock that does not rise.
    #[error(
        "the Dutch clock must rise: it starts at {from} and ends at {to}, but FROM must be below TO. The buyer pays the clock price, so a falling clock would be accepted at its opening price by every provider; a rising one is taken first by the cheapest provider (docs/auctions.md)"
    )]
    NotRising {
        /// The opening price.
        from: Price,
        /// The closing price.
        to: Price,
    },
    /// Too few or too many steps.
    #[error("a Dutch clock needs from 2 to {MAX_DUTCH_STEPS} steps, not {0}")]
    BadSteps(u32),
    /// A step shorter than the shortest window.
    #[error(
        "{steps} steps over {duration_ms} ms leave {step_ms} ms per step; each step needs at least {MIN_AUCTION_MS} ms"
    )]
    StepTooShort {
        /// Steps asked for.
        steps: u32,
        /// The clock's duration.
        duration_ms: u64,
        /// What each step would get.
        step_ms: u64,
    },
    /// A Dutch clock that ends above the order's price cap.
    #[error(
        "the Dutch clock ends at {to} per CU, above the order's cap {cap}; end it at or below the cap"
    )]
    AboveCap {
        /// The clock's last price.
        to: Price,
        /// The order's cap.
        cap: Price,
    },
}

impl MatchTerms {
    /// Whether the order is matched at once.
    pub fn is_instant(&self) -> bool {
        *self == MatchTerms::Instant
    }

    /// How long the auction runs once opened, ms (0 for instant matching).
    pub fn duration_ms(&self) -> u64 {
        match self {
            MatchTerms::Instant => 0,
            MatchTerms::Sealed { window_ms, .. } => *window_ms,
            MatchTerms::Dutch(schedule) => schedule.duration_ms,
        }
    }

    /// Checks the terms on their own and against the order's price cap.
    pub fn validate(&self, cap: Price) -> Result<(), TermsError> {
        match self {
            MatchTerms::Instant => Ok(()),
            MatchTerms::Sealed { window_ms, .. } => check_duration(*window_ms),
            MatchTerms::Dutch(schedule) => {
                schedule.validate()?;
                if schedule.to > cap {
                    return Err(TermsError::AboveCap {
                        to: schedule.to,
                        cap,
                    });
                }
                Ok(())
            }
        }
    }
}

impl DutchSchedule {
    /// Checks that the clock rises, has a sane number of steps, and that each lasts long
    /// enough for an acceptance to arrive.
    pub fn validate(&self) -> Result<(), TermsError> {
        if self.from >= self.to {
            return Err(TermsError::NotRising {
                from: self.from,
                to: self.to,
            });
        }
        if !(2..=MAX_DUTCH_STEPS).contains(&self.steps) {
            return Err(TermsError::BadSteps(self.steps));
        }
        check_duration(self.duration_ms)?;
        let step_ms = self.step_ms();
        if step_ms < MIN_AUCTION_MS {
            return Err(TermsError::StepTooShort {
                steps: self.steps,
                duration_ms: self.duration_ms,
                step_ms,
            });
        }
        Ok(())
    }

    /// How long each step lasts, ms.
    pub fn step_ms(&self) -> u64 {
        self.duration_ms / u64::from(self.steps.max(1))
    }

    /// The price of step `step` (clamped to the last): `from` rising linearly to `to`,
    /// rounded down, so step 0 is `from` and the last step is `to`.
    pub fn price_of(&self, step: u32) -> Price {
        let last = u128::from(self.steps.saturating_sub(1).max(1));
        let step = u128::from(step).min(last);
        let rise = u128::from(self.to.0.saturating_sub(self.from.0));
        let add = (rise * step / last) as u64;
        Price(self.from.0.saturating_add(add))
    }

    /// The first step whose price is at least `floor`, if any.
    pub fn first_step_at_least(&self, floor: Price) -> Option<u32> {
        (0..self.steps).find(|&s| self.price_of(s) >= floor)
    }

    /// The largest gap between two consecutive prices: how far above a provider's floor
    /// the clock can be when it first reaches it.
    pub fn max_step_rise(&self) -> Price {
        (1..self.steps)
            .map(|s| Price(self.price_of(s).0 - self.price_of(s - 1).0))
            .max()
            .unwrap_or(Price(0))
    }
}

/// Where the clock that started at `opened_ms` stands at `now_ms`. Before it starts it is
/// at step 0.
pub fn dutch_tick(schedule: &DutchSchedule, opened_ms: u64, now_ms: u64) -> DutchTick {
    let step_ms = schedule.step_ms().max(1);
    let elapsed = now_ms.saturating_sub(opened_ms);
    let step = elapsed / step_ms;
    if step >= u64::from(schedule.steps) {
        return DutchTick::Ended;
    }
    let step = step as u32;
    DutchTick::Open {
        step,
        price: schedule.price_of(step),
        until_ms: opened_ms.saturating_add(step_ms.saturating_mul(u64::from(step) + 1)),
    }
}

fn check_duration(ms: u64) -> Result<(), TermsError> {
    if (MIN_AUCTION_MS..=MAX_AUCTION_MS).contains(&ms) {
        Ok(())
    } else {
        Err(TermsError::BadDuration {
            given: format_duration(ms),
        })
    }
}

/// Parses `500ms`, `5s`, `2m` within the bounds auctions allow.
fn parse_duration(text: &str) -> Result<u64, TermsError> {
    let bad = || TermsError::BadDuration {
        given: text.to_owned(),
    };
    let ms = agora_core::duration::parse_ms(text).ok_or_else(bad)?;
    check_duration(ms).map_err(|_| bad())?;
    Ok(ms)
}

/// Prints ms in the largest unit that divides them exactly.
fn format_duration(ms: u64) -> String {
    agora_core::duration::format_ms(ms)
}

impl FromStr for MatchTerms {
    type Err = TermsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim().to_ascii_lowercase();
        let malformed = || TermsError::Malformed(s.trim().to_owned());
        let (kind, rest) = text.split_once(':').unwrap_or((text.as_str(), ""));
        let terms = match kind {
            "instant" if rest.is_empty() => MatchTerms::Instant,
            "sealed" => {
                let (window, rule) = rest.split_once(':').unwrap_or((rest, "first"));
                let rule = match rule {
                    "first" => PricingRule::FirstPrice,
                    "uniform" => PricingRule::UniformKPlusOne,
                    _ => return Err(malformed()),
                };
                MatchTerms::Sealed {
                    window_ms: parse_duration(window)?,
                    rule,
                }
            }
            "dutch" => {
                let (prices, clock) = rest.split_once('/').ok_or_else(malformed)?;
                let (from, to) = prices.split_once("..").ok_or_else(malformed)?;
                let price = |p: &str| p.parse::<u64>().map(Price).map_err(|_| malformed());
                let (duration, steps) = match clock.split_once('x') {
                    Some((d, n)) => (d, n.parse::<u32>().map_err(|_| malformed())?),
                    None => (clock, DEFAULT_DUTCH_STEPS),
                };
                let schedule = DutchSchedule {
                    from: price(from)?,
                    to: price(to)?,
                    duration_ms: parse_duration(duration)?,
                    steps,
                };
                schedule.validate()?;
                MatchTerms::Dutch(schedule)
            }
            _ => return Err(malformed()),
        };
        Ok(terms)
    }
}

impl fmt::Display for MatchTerms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MatchTerms::Instant => f.write_str("instant"),
            MatchTerms::Sealed { window_ms, rule } => {
                let rule = match rule {
                    PricingRule::FirstPrice => "first",
                    PricingRule::UniformKPlusOne => "uniform",
                };
                write!(f, "sealed:{}:{rule}", format_duration(*window_ms))
            }
            MatchTerms::Dutch(s) => write!(
                f,
                "dutch:{}..{}/{}x{}",
                s.from.0,
                s.to.0,
                format_duration(s.duration_ms),
                s.steps
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dutch(from: u64, to: u64, duration_ms: u64, steps: u32) -> DutchSchedule {
        DutchSchedule {
            from: Price(from),
            to: Price(to),
            duration_ms,
            steps,
        }
    }

    #[test]
    fn text_forms_parse_and_print_back() {
        for (text, terms) in [
            ("instant", MatchTerms::Instant),
            (
                "sealed:5s",
                MatchTerms::Sealed {
                    window_ms: 5_000,
                    rule: PricingRule::FirstPrice,
                },
            ),
            (
                "sealed:500ms:uniform",
                MatchTerms::Sealed {
                    window_ms: 500,
                    rule: PricingRule::UniformKPlusOne,
                },
            ),
            (
                "dutch:10..200/10s",
                MatchTerms::Dutch(dutch(10, 200, 10_000, DEFAULT_DUTCH_STEPS)),
            ),
            (
                "dutch:10..200/2mx40",
                MatchTerms::Dutch(dutch(10, 200, 120_000, 40)),
            ),
        ] {
            let parsed: MatchTerms = text.parse().unwrap();
            assert_eq!(parsed, terms, "{text}");
            assert_eq!(parsed.to_string().parse::<MatchTerms>().unwrap(), terms);
        }
    }

    #[test]
    fn bad_terms_say_what_is_wrong() {
        let err = "dutch:200..10/10s".parse::<MatchTerms>().unwrap_err();
        assert_eq!(
            err,
            TermsError::NotRising {
                from: Price(200),
                to: Price(10)
            }
        );
        assert!(err.to_string().contains("must rise"), "{err}");
        assert!(matches!(
            "dutch:5..5/10s".parse::<MatchTerms>(),
            Err(TermsError::NotRising { .. })
        ));
        assert!(matches!(
            "sealed:5".parse::<MatchTerms>(),
            Err(TermsError::BadDuration { .. })
        ));
        assert!(matches!(
            "sealed:2h".parse::<MatchTerms>(),
            Err(TermsError::BadDuration { .. })
        ));
        assert!(matches!(
            "sealed:5s:third".parse::<MatchTerms>(),
            Err(TermsError::Malformed(_))
        ));
        assert!(matches!(
            "dutch:1..9/1sx1".parse::<MatchTerms>(),
            Err(TermsError::BadSteps(1))
        ));
        assert!(matches!(
            "dutch:1..900/1sx100".parse::<MatchTerms>(),
            Err(TermsError::StepTooShort { .. })
        ));
        assert!(matches!(
            "auction".parse::<MatchTerms>(),
            Err(TermsError::Malformed(_))
        ));
        let above = MatchTerms::Dutch(dutch(1, 50, 1_000, 2)).validate(Price(40));
        assert_eq!(
            above,
            Err(TermsError::AboveCap {
                to: Price(50),
                cap: Price(40)
            })
        );
    }

    #[test]
    fn the_clock_rises_step_by_step_and_ends() {
        let s = dutch(10, 100, 1_000, 10);
        assert_eq!(
            dutch_tick(&s, 5_000, 5_000),
            DutchTick::Open {
                step: 0,
                price: Price(10),
                until_ms: 5_100
            }
        );
        assert_eq!(
            dutch_tick(&s, 5_000, 5_150),
            DutchTick::Open {
                step: 1,
                price: Price(20),
                until_ms: 5_200
            }
        );
        assert_eq!(
            dutch_tick(&s, 5_000, 5_999),
            DutchTick::Open {
                step: 9,
                price: Price(100),
                until_ms: 6_000
            }
        );
        assert_eq!(dutch_tick(&s, 5_000, 6_000), DutchTick::Ended);
        assert_eq!(s.first_step_at_least(Price(35)), Some(3));
        assert_eq!(s.first_step_at_least(Price(101)), None);
        assert_eq!(s.max_step_rise(), Price(10));
    }

    proptest! {
        /// The clock never falls, starts at FROM, ends at TO, and the first step at or
        /// above any floor in range is within one step rise of it.
        #[test]
        fn the_clock_is_monotone_and_within_a_step_of_any_floor(
            from in 1u64..1_000, rise in 1u64..10_000, steps in 2u32..200, floor in 0u64..12_000,
        ) {
            let s = dutch(from, from + rise, u64::from(steps) * 100, steps);
            prop_assert_eq!(s.price_of(0), Price(from));
            prop_assert_eq!(s.price_of(steps - 1), Price(from + rise));
            for step in 1..steps {
                prop_assert!(s.price_of(step) >= s.price_of(step - 1));
            }
            match s.first_step_at_least(Price(floor)) {
                Some(step) => {
                    let price = s.price_of(step);
                    prop_assert!(price.0 >= floor);
                    prop_assert!(step == 0 || price.0 - floor <= s.max_step_rise().0);
                }
                None => prop_assert!(floor > from + rise),
            }
        }
    }
}
