//! The risk-adjusted quote: what an order would cost before any money moves.
//!
//! [`Market::quote_candidates`] lists every provider that qualifies for an order now (the
//! reference matcher's full scan, best effective price first, one entry per provider), and
//! [`quote`] turns them into expectations:
//!
//! - the **expected price and cost** if the first choices all deliver;
//! - the **probability of success**: each attempt on candidate `i` succeeds with its
//!   reputation score `pᵢ`; attempts walk down the ranked list (a failed provider is never
//!   asked again, as the node reassigns) until the order has the results it needs, or it
//!   has used up its failures, or the list ends;
//! - the **expected total**: the bill summed over the paths that end in a settled order
//!   (failed attempts are not billed and a refunded order pays nothing), and the same
//!   divided by the success probability, which is what a buyer whose order completes
//!   should expect to pay;
//! - the verification overhead and the reference cloud's cost, passed through from the
//!   caller (they come from `agora-verify` and the node's configuration).
//!
//! Pure and integer: probabilities are carried as parts per 10⁹ in 128-bit integers, and
//! every amount is rounded up.

use agora_core::{AccountId, Amount, Fuel, Price};
use serde::{Deserialize, Serialize};

use crate::market::Market;
use crate::order::Order;
use crate::reference::qualifying_candidates;
use crate::resources::ResourceClass;

/// Probability 1 in the DP's fixed point.
const ONE: u128 = 1_000_000_000;
/// Parts per million.
const PPM: u128 = 1_000_000;
/// The most candidates a quote lists and walks: beyond a few dozen, more change nothing.
pub const MAX_QUOTE_CANDIDATES: usize = 64;

/// One provider that qualifies for the order now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteCandidate {
    /// The provider.
    pub provider: AccountId,
    /// The resource class its ask prices the order in.
    pub class: ResourceClass,
    /// Its asked price per CU.
    pub price: Price,
    /// The price after the reputation and stake discount, which ranks the candidates.
    pub effective: Price,
    /// Its reputation score, ppm: the probability an attempt on it succeeds.
    pub success_ppm: u32,
    /// How much the score rests on evidence rather than the prior, ppm.
    pub confidence_ppm: u32,
    /// Its bonded stake.
    pub stake: Amount,
}

impl Market {
    /// Every provider that qualifies for `order` at `now_ms`, best first, one entry each
    /// (its best-ranked ask), at most [`MAX_QUOTE_CANDIDATES`]. Reserves nothing.
    pub fn quote_candidates(&self, order: &Order, now_ms: u64) -> Vec<QuoteCandidate> {
        let classes = order.demand.classes(self.book.classes.keys());
        let policy = &self.config.reputation;
        let mut seen = std::collections::BTreeSet::new();
        qualifying_candidates(self, order, &classes, now_ms)
            .into_iter()
            .filter(|c| seen.insert(c.provider))
            .take(MAX_QUOTE_CANDIDATES)
            .map(|c| {
                let state = self.providers.get(c.provider);
                let reputation = state.reputation.at(now_ms, policy);
                QuoteCandidate {
                    provider: state.account,
                    class: classes[c.class].clone(),
                    price: c.price,
                    effective: c.effective,
                    success_ppm: reputation.score_ppm,
                    confidence_ppm: reputation.confidence_ppm,
                    stake: state.stake,
                }
            })
            .collect()
    }
}

/// What the order asks for, as the quote needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteTerms {
    /// The fuel budget (the quote assumes the job uses all of it).
    pub fuel: Fuel,
    /// The buyer's price cap per CU.
    pub cap: Price,
    /// Results from distinct providers the buyer pays for (N of `replicate:N:Q`, else 1).
    pub runs: u32,
    /// Failed attempts after which the order is refunded (the node's `max_attempts`).
    pub max_failures: u32,
    /// Runs executed per run billed, ppm, under the order's policy (10⁶: none).
    pub verification_runs_ppm: u64,
    /// The reference cloud's price per CU, if known.
    pub reference_price: Option<Price>,
}

/// The answer: expectations for the order against the candidates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// Compute units of the fuel budget, rounded up.
    pub compute_units: u64,
    /// The mean price per CU of the first choices, rounded up; `None` without enough
    /// candidates.
    pub expected_price: Option<Price>,
    /// What the first choices bill for the whole budget, if they all deliver.
    pub expected_cost: Option<Amount>,
    /// Runs executed per run billed, ppm (from the terms).
    pub verification_runs_ppm: u64,
    /// Results the buyer pays for.
    pub runs: u32,
    /// The probability the order settles, ppm.
    pub success_ppm: u32,
    /// Attempts expected (failed ones included), ppm of one attempt.
    pub expected_attempts_ppm: u64,
    /// The expected bill, with a refunded order counting as zero.
    pub expected_total: Amount,
    /// The expected bill given that the order settles; `None` when it cannot.
    pub expected_total_if_settled: Option<Amount>,
    /// The escrow the order locks: the cap for the whole budget, once per run paid.
    pub worst_case: Amount,
    /// One run of the same compute units at the reference cloud price.
    pub reference_cost: Option<Amount>,
}

/// A state of the walk: results in, failures so far.
#[derive(Clone, Copy, Default)]
struct Mass {
    /// Probability of being here, in units of 1/[`ONE`].
    prob: u128,
    /// E[bill so far · 1{here}], in base units / [`ONE`].
    bill: u128,
}

/// The quote for `terms` against `candidates` (best first, as
/// [`Market::quote_candidates`] gives them).
pub fn quote(candidates: &[QuoteCandidate], terms: &QuoteTerms) -> Quote {
    let runs = terms.runs.max(1);
    let cost_of = |price: Price| price.max_cost(terms.fuel).unwrap_or(Amount(u64::MAX));
    let firsts = candidates.get(..runs as usize);
    let expected_cost = firsts.map(|c| {
        Amount(
            c.iter()
                .fold(0u64, |sum, c| sum.saturating_add(cost_of(c.price).0)),
        )
    });
    let expected_price = firsts.map(|c| {
        let sum: u128 = c.iter().map(|c| u128::from(c.price.0)).sum();
        Price(u64::try_from(sum.div_ceil(u128::from(runs))).unwrap_or(u64::MAX))
    });
    let walk = walk(candidates, runs, terms.max_failures.max(1), &cost_of);
    let expected_total = ceil_amount(walk.settled.bill, ONE);
    let expected_total_if_settled =
        (walk.settled.prob > 0).then(|| ceil_amount(walk.settled.bill, walk.settled.prob));
    Quote {
        compute_units: terms.fuel.0.div_ceil(agora_core::FUEL_PER_COMPUTE_UNIT),
        expected_price,
        expected_cost,
        verification_runs_ppm: terms.verification_runs_ppm,
        runs,
        success_ppm: u32::try_from(walk.settled.prob * PPM / ONE).unwrap_or(u32::MAX),
        expected_attempts_ppm: u64::try_from(walk.attempts * PPM / ONE).unwrap_or(u64::MAX),
        expected_total,
        expected_total_if_settled,
        worst_case: Amount(cost_of(terms.cap).0.saturating_mul(u64::from(runs))),
        reference_cost: terms.reference_price.map(cost_of),
    }
}

/// What the walk down the candidate list adds up to.
struct Walk {
    /// Probability and bill of the paths that settle.
    settled: Mass,
    /// Expected attempts, in units of 1/[`ONE`].
    attempts: u128,
}

/// The walk down the ranked list: states are (results in, failures so far); each
/// candidate is tried once by every path still going.
fn walk(
    candidates: &[QuoteCandidate],
    runs: u32,
    max_failures: u32,
    cost_of: &impl Fn(Price) -> Amount,
) -> Walk {
    let (runs, fails) = (runs as usize, max_failures as usize);
    // live[s][f]: s results in (< runs), f failures (< max_failures).
    let mut live = vec![vec![Mass::default(); fails]; runs];
    live[0][0].prob = ONE;
    let mut settled = Mass::default();
    let mut attempts = 0u128;
    for candidate in candidates {
        let p = u128::from(candidate.success_ppm.min(PPM as u32)) * ONE / PPM;
        let cost = u128::from(cost_of(candidate.price).0);
        let mut next = vec![vec![Mass::default(); fails]; runs];
        for (s, row) in live.iter().enumerate() {
            for (f, here) in row.iter().enumerate().filter(|(_, m)| m.prob > 0) {
                attempts += here.prob;
                let billed = here.bill.saturating_add(here.prob.saturating_mul(cost));
                let won = Mass {
                    prob: here.prob * p / ONE,
                    bill: billed.saturating_mul(p) / ONE,
                };
                let lost = Mass {
                    prob: here.prob - won.prob,
                    bill: here.bill.saturating_mul(ONE - p) / ONE,
                };
                if s + 1 == runs {
                    add(&mut settled, won);
                } else {
                    add(&mut next[s + 1][f], won);
                }
                // Paths that use up their failures are refunded and pay nothing.
                if f + 1 < fails {
                    add(&mut next[s][f + 1], lost);
                }
            }
        }
        live = next;
    }
    Walk { settled, attempts }
}

fn add(into: &mut Mass, more: Mass) {
    into.prob += more.prob;
    into.bill = into.bill.saturating_add(more.bill);
}

fn ceil_amount(numerator: u128, denominator: u128) -> Amount {
    Amount(u64::try_from(numerator.div_ceil(denominator.max(1))).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::Keypair;
    use proptest::prelude::*;

    fn candidate(seed: u8, price: u64, success_ppm: u32) -> QuoteCandidate {
        QuoteCandidate {
            provider: Keypair::from_seed(&format!("p{seed}")).account(),
            class: ResourceClass::cpu(),
            price: Price(price),
            effective: Price(price),
            success_ppm,
            confidence_ppm: 0,
            stake: Amount::ZERO,
        }
    }

    fn terms(cu: u64, runs: u32) -> QuoteTerms {
        QuoteTerms {
            fuel: Fuel::compute_units(cu),
            cap: Price(1_000),
            runs,
            max_failures: 3,
            verification_runs_ppm: 1_000_000,
            reference_price: Some(Price(12)),
        }
    }

    #[test]
    fn reliable_providers_cost_exactly_their_asks() {
        let cands = [candidate(1, 100, 1_000_000), candidate(2, 200, 1_000_000)];
        let q = quote(&cands, &terms(10, 1));
        assert_eq!(q.compute_units, 10);
        assert_eq!(q.expected_price, Some(Price(100)));
        assert_eq!(q.expected_cost, Some(Amount(1_000)));
        assert_eq!(q.success_ppm, 1_000_000);
        assert_eq!(q.expected_attempts_ppm, 1_000_000);
        assert_eq!(q.expected_total, Amount(1_000));
        assert_eq!(q.expected_total_if_settled, Some(Amount(1_000)));
        assert_eq!(q.worst_case, Amount(10_000));
        assert_eq!(q.reference_cost, Some(Amount(120)));
        let both = quote(&cands, &terms(10, 2));
        assert_eq!(both.expected_price, Some(Price(150)));
        assert_eq!(both.expected_total, Amount(3_000));
        assert_eq!(both.worst_case, Amount(20_000));
    }

    #[test]
    fn a_coin_flip_provider_then_a_reliable_one() {
        // Half the time the first delivers (100 per CU), else the second (200).
        let cands = [candidate(1, 100, 500_000), candidate(2, 200, 1_000_000)];
        let q = quote(&cands, &terms(10, 1));
        assert_eq!(q.success_ppm, 1_000_000);
        assert_eq!(q.expected_attempts_ppm, 1_500_000);
        assert_eq!(q.expected_total, Amount(1_500));
        // Alone, the coin flip settles half the time and pays 1 000 when it does.
        let alone = quote(&cands[..1], &terms(10, 1));
        assert_eq!(alone.success_ppm, 500_000);
        assert_eq!(alone.expected_total, Amount(500));
        assert_eq!(alone.expected_total_if_settled, Some(Amount(1_000)));
    }

    #[test]
    fn failures_run_out_before_candidates_do() {
        let cands: Vec<_> = (0..6).map(|i| candidate(i, 100, 0)).collect();
        let mut t = terms(1, 1);
        t.max_failures = 2;
        let q = quote(&cands, &t);
        assert_eq!(q.success_ppm, 0);
        assert_eq!(q.expected_attempts_ppm, 2_000_000);
        assert_eq!(q.expected_total, Amount::ZERO);
        assert_eq!(q.expected_total_if_settled, None);
    }

    #[test]
    fn no_candidates_no_expectations() {
        let q = quote(&[], &terms(5, 1));
        assert_eq!(q.expected_price, None);
        assert_eq!(q.expected_cost, None);
        assert_eq!(q.success_ppm, 0);
        assert_eq!(q.worst_case, Amount(5_000));
        let short = quote(&[candidate(1, 100, 1_000_000)], &terms(5, 2));
        assert_eq!(short.expected_price, None);
        assert_eq!(short.success_ppm, 0);
    }

    fn candidates() -> impl Strategy<Value = Vec<QuoteCandidate>> {
        proptest::collection::vec((1u64..=1_000, 0u32..=1_000_000), 0..8).prop_map(|v| {
            let mut c: Vec<_> = v
                .into_iter()
                .enumerate()
                .map(|(i, (price, p))| candidate(i as u8, price, p))
                .collect();
            c.sort_by_key(|c| c.price);
            c
        })
    }

    proptest! {
        #[test]
        fn expectations_stay_between_the_cheapest_ask_and_the_escrow(
            cands in candidates(),
            cu in 1u64..1_000,
            runs in 1u32..4,
            max_failures in 1u32..5,
        ) {
            let t = QuoteTerms { max_failures, ..terms(cu, runs) };
            let q = quote(&cands, &t);
            prop_assert!(q.success_ppm <= 1_000_000);
            prop_assert!(q.expected_total <= q.worst_case);
            if let Some(if_settled) = q.expected_total_if_settled {
                let cheapest = cands.iter().map(|c| c.price).min().unwrap();
                let most = cands.iter().map(|c| c.price).max().unwrap();
                // Rounding of the fixed point may shave a unit per run off the lower bound.
                prop_assert!(if_settled.0 + u64::from(runs) >= cheapest.max_cost(t.fuel).unwrap().0 * u64::from(runs));
                prop_assert!(if_settled.0 <= most.max_cost(t.fuel).unwrap().0 * u64::from(runs) + 1);
                prop_assert!(if_settled >= q.expected_total);
            }
            if let (Some(price), Some(cost)) = (q.expected_price, q.expected_cost) {
                prop_assert!(price.0 * cu * u64::from(runs) >= cost.0);
            }
            // Attempts: at least one, at most the candidates.
            prop_assert!(q.expected_attempts_ppm <= cands.len() as u64 * 1_000_000);
            if cands.is_empty() {
                prop_assert_eq!(q.success_ppm, 0);
            }
        }

        #[test]
        fn a_more_reliable_first_choice_never_lowers_success(
            mut cands in candidates(),
            extra in 0u32..1_000_000,
        ) {
            prop_assume!(!cands.is_empty());
            let before = quote(&cands, &terms(1, 1)).success_ppm;
            cands[0].success_ppm = cands[0].success_ppm.saturating_add(extra).min(1_000_000);
            // The fixed point truncates by at most a part per million.
            prop_assert!(quote(&cands, &terms(1, 1)).success_ppm + 1 >= before);
        }

        #[test]
        fn reliable_candidates_settle_first_time(
            prices in proptest::collection::vec(1u64..=1_000, 1..6),
            runs in 1u32..4,
        ) {
            let mut cands: Vec<_> = prices.iter().enumerate().map(|(i, &p)| candidate(i as u8, p, 1_000_000)).collect();
            cands.sort_by_key(|c| c.price);
            let q = quote(&cands, &terms(7, runs));
            if cands.len() >= runs as usize {
                prop_assert_eq!(q.success_ppm, 1_000_000);
                prop_assert_eq!(q.expected_attempts_ppm, u64::from(runs) * 1_000_000);
                prop_assert_eq!(Some(q.expected_total), q.expected_cost);
            } else {
                prop_assert_eq!(q.success_ppm, 0);
            }
        }
    }
}
