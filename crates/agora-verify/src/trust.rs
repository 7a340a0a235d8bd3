//! Who the market stops offering work to after a proven fault, and for how long.
//!
//! A provider whose signed result was proven wrong (a quorum or the referee disagreed, and
//! it was slashed) has shown it will cheat. Adaptive sampling already stops trusting it
//! (its run of verified results starts again at 0), but that alone only makes each job it
//! wins cost a second run: a cheater that undercuts everyone keeps winning first runs and
//! keeps being re-run. A [`SuspensionRule`] takes it out of matching for a while instead:
//! `base` after its first proven fault, doubling with each further one up to `max`, so a
//! provider that keeps cheating after each suspension wins O(log t) jobs over a time t.
//! While suspended it is never trusted ([`SuspensionRule::trusted_history`]), even where
//! the market lets it run an order because no other provider can.
//!
//! Pure: the time of the fault and `now_ms` are arguments.

use serde::{Deserialize, Serialize};

use crate::sampling::ProviderHistory;

/// A provider's proven faults, as far as the market remembers them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// Results of its proven wrong (each slashed with evidence).
    pub proven_faults: u32,
    /// When the last one was proven (Unix ms); meaningless while `proven_faults` is 0.
    pub last_fault_ms: u64,
}

impl FaultRecord {
    /// Records a fault proven at `now_ms`.
    pub fn record(&mut self, now_ms: u64) {
        self.proven_faults = self.proven_faults.saturating_add(1);
        self.last_fault_ms = self.last_fault_ms.max(now_ms);
    }
}

/// How long a proven fault keeps a provider out of matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspensionRule {
    /// Suspension after the first proven fault, ms; 0 turns suspension off.
    pub base_ms: u64,
    /// The longest suspension, however many faults, ms.
    pub max_ms: u64,
}

impl SuspensionRule {
    /// 15 minutes after the first fault, doubling up to 7 days.
    pub const DEFAULT: SuspensionRule = SuspensionRule {
        base_ms: 15 * 60 * 1_000,
        max_ms: 7 * 24 * 60 * 60 * 1_000,
    };

    /// Suspension length after `faults` proven faults: `base · 2^(faults − 1)`, at most
    /// `max` (and never less than `base`); 0 without faults.
    pub fn length_ms(&self, faults: u32) -> u64 {
        if faults == 0 || self.base_ms == 0 {
            return 0;
        }
        let doublings = (faults - 1).min(63);
        let length = self.base_ms.saturating_mul(1u64 << doublings);
        length.min(self.max_ms.max(self.base_ms))
    }

    /// Until when (Unix ms, exclusive) `record` keeps its provider suspended; `None` if it
    /// has no proven fault or suspension is off.
    pub fn until_ms(&self, record: &FaultRecord) -> Option<u64> {
        let length = self.length_ms(record.proven_faults);
        (length > 0).then(|| record.last_fault_ms.saturating_add(length))
    }

    /// Whether `record` keeps its provider out of matching at `now_ms`.
    pub fn is_suspended(&self, record: &FaultRecord, now_ms: u64) -> bool {
        self.until_ms(record).is_some_and(|until| now_ms < until)
    }

    /// The history sampling may trust at `now_ms`: `history` itself, or none at all while
    /// the provider is suspended (so every job it runs meanwhile is replicated).
    pub fn trusted_history(
        &self,
        history: ProviderHistory,
        record: &FaultRecord,
        now_ms: u64,
    ) -> ProviderHistory {
        if self.is_suspended(record, now_ms) {
            ProviderHistory::default()
        } else {
            history
        }
    }
}

impl Default for SuspensionRule {
    fn default() -> SuspensionRule {
        SuspensionRule::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: u64 = 60_000;

    fn faulted(faults: u32, at: u64) -> FaultRecord {
        FaultRecord {
            proven_faults: faults,
            last_fault_ms: at,
        }
    }

    #[test]
    fn suspension_doubles_with_each_fault_up_to_the_cap() {
        let rule = SuspensionRule::DEFAULT;
        assert_eq!(rule.length_ms(0), 0);
        assert_eq!(rule.length_ms(1), 15 * MINUTE);
        assert_eq!(rule.length_ms(2), 30 * MINUTE);
        assert_eq!(rule.length_ms(3), 60 * MINUTE);
        assert_eq!(rule.length_ms(20), rule.max_ms);
        assert_eq!(rule.length_ms(u32::MAX), rule.max_ms);
    }

    #[test]
    fn a_provider_is_suspended_from_its_fault_until_the_length_has_passed() {
        let rule = SuspensionRule::DEFAULT;
        let record = faulted(1, 1_000);
        assert!(!rule.is_suspended(&FaultRecord::default(), 0));
        assert!(rule.is_suspended(&record, 1_000));
        assert!(rule.is_suspended(&record, 1_000 + 15 * MINUTE - 1));
        assert!(!rule.is_suspended(&record, 1_000 + 15 * MINUTE));
    }

    #[test]
    fn a_zero_base_turns_suspension_off() {
        let off = SuspensionRule {
            base_ms: 0,
            max_ms: 0,
        };
        assert!(!off.is_suspended(&faulted(5, 10), 10));
        assert_eq!(off.until_ms(&faulted(5, 10)), None);
    }

    #[test]
    fn recording_counts_and_keeps_the_latest_time() {
        let mut record = FaultRecord::default();
        record.record(500);
        record.record(300);
        assert_eq!(record, faulted(2, 500));
    }

    #[test]
    fn a_suspended_provider_is_not_trusted() {
        let rule = SuspensionRule::DEFAULT;
        let trusted = ProviderHistory {
            consecutive_verified: 500,
        };
        let record = faulted(1, 0);
        assert_eq!(
            rule.trusted_history(trusted, &record, 1)
                .consecutive_verified,
            0
        );
        assert_eq!(
            rule.trusted_history(trusted, &record, rule.length_ms(1)),
            trusted
        );
    }
}
