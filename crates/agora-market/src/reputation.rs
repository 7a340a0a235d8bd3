//! Reputation: a provider's score, derived only from recorded events.
//!
//! The model is a Beta posterior kept in integers. Each event adds a weight (in
//! micro-events, 10⁶ = one event) to a *success* or a *failure* tally:
//!
//! | event | tally | default weight |
//! |---|---|---|
//! | verified completion | success | 1 |
//! | failure | failure | 1 |
//! | timeout | failure | 1 |
//! | proven fault | failure | 10 |
//!
//! ```text
//! score      = (prior_s + S) / (prior_s + prior_f + S + F)      in ppm, rounded down
//! confidence = (S + F) / (S + F + confidence_events)            in ppm, rounded down
//! ```
//!
//! A newcomer has the prior's score (½ by default) and zero confidence. Tallies decay in
//! whole epochs (1 h by default): at each epoch boundary they are multiplied by
//! `retain_per_epoch_ppb / 10⁹` (a half-life of two weeks by default), so old behaviour fades
//! and a reformed provider can recover. Decay is computed by exact integer exponentiation,
//! so the score is a pure function of the event sequence and `now_ms`, identical on every
//! node. Events stamped earlier than the provider's latest recorded epoch count at that
//! epoch (tallies never decay backwards).

use serde::{Deserialize, Serialize};

use crate::error::MarketError;

/// Parts per million: scores and confidences are in `0..=PPM`.
pub const PPM: u32 = 1_000_000;
/// One event's weight in micro-events.
pub const EVENT: u64 = 1_000_000;
const DECAY_SCALE: u128 = 1_000_000_000;

/// Something a provider did that bears on its reputation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReputationEvent {
    /// A job completed and its result was verified.
    VerifiedCompletion,
    /// A job failed (trap, crash, refused).
    Failure,
    /// A job missed its deadline.
    Timeout,
    /// A wrong result was proven (fraud proof or lost challenge).
    ProvenFault,
}

/// The reputation model's parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReputationPolicy {
    /// Length of a decay epoch in ms.
    pub epoch_ms: u64,
    /// Share of the tallies kept per epoch, in parts per billion.
    pub retain_per_epoch_ppb: u32,
    /// Prior successes (micro-events).
    pub prior_successes: u64,
    /// Prior failures (micro-events).
    pub prior_failures: u64,
    /// Weight of a failure (micro-events).
    pub failure_weight: u64,
    /// Weight of a timeout (micro-events).
    pub timeout_weight: u64,
    /// Weight of a proven fault (micro-events).
    pub fault_weight: u64,
    /// Events at which confidence reaches ½ (micro-events).
    pub confidence_events: u64,
}

impl Default for ReputationPolicy {
    fn default() -> Self {
        ReputationPolicy {
            epoch_ms: 3_600_000,
            // 2^(-1/336): half-life of 336 one-hour epochs = 14 days.
            retain_per_epoch_ppb: 997_939_188,
            prior_successes: EVENT,
            prior_failures: EVENT,
            failure_weight: EVENT,
            timeout_weight: EVENT,
            fault_weight: 10 * EVENT,
            confidence_events: 10 * EVENT,
        }
    }
}

impl ReputationPolicy {
    /// Rejects parameters that make scores undefined.
    pub fn validate(&self) -> Result<(), MarketError> {
        let bad = |why: &str| Err(MarketError::InvalidConfig(format!("reputation: {why}")));
        if self.epoch_ms == 0 {
            return bad("epoch_ms must be positive");
        }
        if u128::from(self.retain_per_epoch_ppb) > DECAY_SCALE {
            return bad("retain_per_epoch_ppb must be at most 10^9");
        }
        if self.prior_successes == 0 || self.prior_failures == 0 {
            return bad("both priors must be positive so a newcomer's score is defined");
        }
        if self.confidence_events == 0 {
            return bad("confidence_events must be positive");
        }
        Ok(())
    }

    fn weight(&self, event: ReputationEvent) -> (u64, u64) {
        match event {
            ReputationEvent::VerifiedCompletion => (EVENT, 0),
            ReputationEvent::Failure => (0, self.failure_weight),
            ReputationEvent::Timeout => (0, self.timeout_weight),
            ReputationEvent::ProvenFault => (0, self.fault_weight),
        }
    }
}

/// A provider's reputation at some moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reputation {
    /// Score in ppm (10⁶ = perfect).
    pub score_ppm: u32,
    /// How much evidence backs the score, in ppm.
    pub confidence_ppm: u32,
    /// Decayed success tally, micro-events.
    pub successes: u64,
    /// Decayed failure tally, micro-events.
    pub failures: u64,
    /// Events ever recorded (not decayed).
    pub events: u64,
}

/// The decayed tallies of one provider; the only reputation state the market keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReputationRecord {
    epoch: u64,
    successes: u64,
    failures: u64,
    events: u64,
}

impl ReputationRecord {
    /// Adds `event`, observed at `now_ms`.
    pub fn record(&mut self, event: ReputationEvent, now_ms: u64, policy: &ReputationPolicy) {
        let (s, f) = self.decayed(now_ms, policy);
        let (ws, wf) = policy.weight(event);
        self.epoch = self.epoch.max(now_ms / policy.epoch_ms);
        self.successes = s.saturating_add(ws);
        self.failures = f.saturating_add(wf);
        self.events = self.events.saturating_add(1);
    }

    /// The reputation at `now_ms`.
    pub fn at(&self, now_ms: u64, policy: &ReputationPolicy) -> Reputation {
        let (s, f) = self.decayed(now_ms, policy);
        let evidence = u128::from(s) + u128::from(f);
        let confidence =
            evidence * u128::from(PPM) / (evidence + u128::from(policy.confidence_events));
        Reputation {
            score_ppm: score(s, f, policy),
            confidence_ppm: confidence as u32,
            successes: s,
            failures: f,
            events: self.events,
        }
    }

    /// Just the score, with a fast path for providers without history.
    pub fn score_ppm(&self, now_ms: u64, policy: &ReputationPolicy) -> u32 {
        if self.events == 0 {
            return score(0, 0, policy);
        }
        let (s, f) = self.decayed(now_ms, policy);
        score(s, f, policy)
    }

    /// An upper bound on the score at any time from now on, until the next event.
    ///
    /// Decay scales both tallies by the same factor d ∈ [0, 1], and
    /// `(a + s·d) / (b + n·d)` is monotone in d, so as tallies decay the score moves
    /// monotonically from its value at the latest epoch towards the prior. The larger of
    /// the two bounds it (up to integer rounding, which the pricing bound absorbs). The
    /// matcher's index sorts asks by a price bound derived from this.
    pub fn score_bound_ppm(&self, policy: &ReputationPolicy) -> u32 {
        score(self.successes, self.failures, policy).max(score(0, 0, policy))
    }

    fn decayed(&self, now_ms: u64, policy: &ReputationPolicy) -> (u64, u64) {
        let epochs = (now_ms / policy.epoch_ms).saturating_sub(self.epoch);
        if epochs == 0 {
            return (self.successes, self.failures);
        }
        let keep = retained(policy.retain_per_epoch_ppb, epochs);
        let decay = |v: u64| (u128::from(v) * keep / DECAY_SCALE) as u64;
        (decay(self.successes), decay(self.failures))
    }
}

fn score(s: u64, f: u64, policy: &ReputationPolicy) -> u32 {
    let good = u128::from(policy.prior_successes) + u128::from(s);
    let all = good + u128::from(policy.prior_failures) + u128::from(f);
    (good * u128::from(PPM) / all) as u32
}

/// `(ppb / 10⁹)^epochs` scaled by 10⁹, by square-and-multiply with rounding down at
/// each step (the same steps on every node, hence the same result).
fn retained(ppb: u32, mut epochs: u64) -> u128 {
    let mut base = u128::from(ppb);
    let mut acc = DECAY_SCALE;
    while epochs > 0 && acc > 0 {
        if epochs & 1 == 1 {
            acc = acc * base / DECAY_SCALE;
        }
        base = base * base / DECAY_SCALE;
        epochs >>= 1;
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOUR: u64 = 3_600_000;

    #[test]
    fn newcomer_has_the_prior_and_no_confidence() {
        let rep = ReputationRecord::default().at(0, &ReputationPolicy::default());
        assert_eq!(rep.score_ppm, PPM / 2);
        assert_eq!(rep.confidence_ppm, 0);
    }

    #[test]
    fn completions_raise_and_faults_sink() {
        let policy = ReputationPolicy::default();
        let mut good = ReputationRecord::default();
        for _ in 0..20 {
            good.record(ReputationEvent::VerifiedCompletion, 0, &policy);
        }
        let mut bad = good.clone();
        bad.record(ReputationEvent::ProvenFault, 0, &policy);
        let (g, b) = (good.at(0, &policy), bad.at(0, &policy));
        assert!(g.score_ppm > 900_000, "{g:?}");
        assert!(b.score_ppm < g.score_ppm - 200_000, "{b:?}");
        assert_eq!(g.confidence_ppm, 666_666);
    }

    #[test]
    fn tallies_halve_after_the_half_life() {
        let policy = ReputationPolicy::default();
        let mut r = ReputationRecord::default();
        r.record(ReputationEvent::VerifiedCompletion, 0, &policy);
        let later = r.at(336 * HOUR, &policy);
        assert!((499_000..=500_000).contains(&later.successes), "{later:?}");
        // Decay is by whole epochs: no change within one.
        assert_eq!(r.at(HOUR - 1, &policy).successes, EVENT);
    }

    #[test]
    fn decay_to_nothing_returns_to_the_prior() {
        let policy = ReputationPolicy::default();
        let mut r = ReputationRecord::default();
        r.record(ReputationEvent::ProvenFault, 0, &policy);
        assert_eq!(r.score_ppm(u64::MAX, &policy), PPM / 2);
    }

    proptest! {
        #[test]
        fn score_is_a_pure_function_of_events_and_time(
            events in proptest::collection::vec((0u8..4, 0u64..1_000), 0..30),
            query in 0u64..2_000,
        ) {
            let policy = ReputationPolicy::default();
            let build = || {
                let mut r = ReputationRecord::default();
                for (kind, hour) in &events {
                    let event = [ReputationEvent::VerifiedCompletion, ReputationEvent::Failure,
                        ReputationEvent::Timeout, ReputationEvent::ProvenFault][*kind as usize];
                    r.record(event, hour * HOUR, &policy);
                }
                r
            };
            let (a, b) = (build(), build());
            prop_assert_eq!(a.at(query * HOUR, &policy), b.at(query * HOUR, &policy));
            let rep = a.at(query * HOUR, &policy);
            prop_assert!(rep.score_ppm <= PPM && rep.confidence_ppm < PPM);
            prop_assert_eq!(rep.score_ppm, a.score_ppm(query * HOUR, &policy));
        }

        #[test]
        fn one_more_completion_never_hurts(n in 0usize..20, faults in 0usize..5) {
            let policy = ReputationPolicy::default();
            let mut r = ReputationRecord::default();
            for _ in 0..faults { r.record(ReputationEvent::Failure, 0, &policy); }
            for _ in 0..n { r.record(ReputationEvent::VerifiedCompletion, 0, &policy); }
            let before = r.score_ppm(0, &policy);
            r.record(ReputationEvent::VerifiedCompletion, 0, &policy);
            prop_assert!(r.score_ppm(0, &policy) >= before);
        }
    }
}
