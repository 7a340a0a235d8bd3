//! The spot price index: per resource class, the volume-weighted average of cleared prices
//! over sliding windows, plus the book's best ask and depth.
//!
//! Trades are aggregated into one-second buckets, so windows slide in whole seconds and
//! memory stays bounded by the longest window (3 600 buckets per class for 1 h) however
//! many orders clear. Volume is the fuel each winner was matched for; the average is
//! `Σ price × fuel / Σ fuel`, rounded down, in 128-bit integers.

use std::collections::{BTreeMap, VecDeque};

use agora_core::{Fuel, Price};
use serde::{Deserialize, Serialize};

use crate::resources::ResourceClass;

/// Bucket width.
pub const BUCKET_MS: u64 = 1_000;
/// The windows every index reports: one minute and one hour.
pub const WINDOWS_MS: [u64; 2] = [60_000, 3_600_000];

/// Cleared trades in one window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowStats {
    /// The window's length.
    pub window_ms: u64,
    /// Volume-weighted average price, if anything cleared.
    pub vwap: Option<Price>,
    /// Fuel cleared (saturating).
    pub volume: Fuel,
    /// Winners cleared.
    pub trades: u64,
}

/// One price level of the book.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepthLevel {
    /// The ask price.
    pub price: Price,
    /// Live asks at that price.
    pub asks: u32,
}

/// A snapshot of one class's market.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceIndex {
    /// The class.
    pub class: ResourceClass,
    /// When the snapshot was taken.
    pub at_ms: u64,
    /// One entry per window in [`WINDOWS_MS`].
    pub windows: Vec<WindowStats>,
    /// The lowest price of a live ask with free capacity.
    pub best_ask: Option<Price>,
    /// Live asks with free capacity in the class.
    pub depth_asks: u32,
    /// The lowest price levels (up to ten), best first.
    pub levels: Vec<DepthLevel>,
}

#[derive(Clone, Debug, Default)]
struct Bucket {
    second: u64,
    notional: u128,
    volume: u128,
    trades: u64,
}

/// Cleared trades per class.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tape {
    classes: BTreeMap<ResourceClass, VecDeque<Bucket>>,
}

impl Tape {
    /// Records one winner's clearing.
    pub fn record(&mut self, class: &ResourceClass, price: Price, fuel: Fuel, now_ms: u64) {
        let buckets = match self.classes.get_mut(class) {
            Some(b) => b,
            None => self.classes.entry(class.clone()).or_default(),
        };
        let second = now_ms / BUCKET_MS;
        match buckets.back_mut() {
            Some(last) if last.second >= second => add(last, price, fuel),
            _ => {
                let mut bucket = Bucket {
                    second,
                    ..Bucket::default()
                };
                add(&mut bucket, price, fuel);
                buckets.push_back(bucket);
            }
        }
        prune(buckets, now_ms);
    }

    /// The windows' statistics at `now_ms`.
    pub fn windows(&self, class: &ResourceClass, now_ms: u64) -> Vec<WindowStats> {
        let buckets = self.classes.get(class);
        WINDOWS_MS
            .iter()
            .map(|&window_ms| window(buckets, window_ms, now_ms))
            .collect()
    }
}

fn add(bucket: &mut Bucket, price: Price, fuel: Fuel) {
    bucket.notional += u128::from(price.0) * u128::from(fuel.0);
    bucket.volume += u128::from(fuel.0);
    bucket.trades += 1;
}

fn prune(buckets: &mut VecDeque<Bucket>, now_ms: u64) {
    let longest = WINDOWS_MS.iter().max().copied().unwrap_or(0);
    let oldest = first_second(longest, now_ms);
    while buckets.front().is_some_and(|b| b.second < oldest) {
        buckets.pop_front();
    }
}

/// The first one-second bucket inside a window ending at `now_ms`.
fn first_second(window_ms: u64, now_ms: u64) -> u64 {
    (now_ms / BUCKET_MS + 1).saturating_sub(window_ms / BUCKET_MS)
}

fn window(buckets: Option<&VecDeque<Bucket>>, window_ms: u64, now_ms: u64) -> WindowStats {
    let from = first_second(window_ms, now_ms);
    let to = now_ms / BUCKET_MS;
    let (mut notional, mut volume, mut trades) = (0u128, 0u128, 0u64);
    for b in buckets
        .into_iter()
        .flatten()
        .filter(|b| b.second >= from && b.second <= to)
    {
        notional += b.notional;
        volume += b.volume;
        trades += b.trades;
    }
    WindowStats {
        window_ms,
        // A volume-weighted mean of u64 prices is itself at most u64::MAX.
        vwap: (volume > 0).then(|| Price((notional / volume) as u64)),
        volume: Fuel(u64::try_from(volume).unwrap_or(u64::MAX)),
        trades,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_weighted_over_sliding_windows() {
        let cpu = ResourceClass::cpu();
        let mut tape = Tape::default();
        tape.record(&cpu, Price(100), Fuel(3), 0);
        tape.record(&cpu, Price(200), Fuel(1), 30_000);
        let w = tape.windows(&cpu, 30_000);
        assert_eq!(w[0].vwap, Some(Price(125)));
        assert_eq!(w[0].trades, 2);
        // At 70 s the first trade has left the 1-minute window but not the hour.
        let w = tape.windows(&cpu, 70_000);
        assert_eq!(w[0].vwap, Some(Price(200)));
        assert_eq!(w[1].vwap, Some(Price(125)));
        // After an hour and a minute everything is gone.
        let w = tape.windows(&cpu, 3_700_000);
        assert_eq!(w[1].vwap, None);
        assert_eq!(tape.windows(&ResourceClass::gpu("A100"), 0)[0].trades, 0);
    }

    #[test]
    fn memory_is_bounded_by_the_longest_window() {
        let cpu = ResourceClass::cpu();
        let mut tape = Tape::default();
        for s in 0..10_000u64 {
            tape.record(&cpu, Price(1), Fuel(1), s * 1_000);
        }
        assert!(tape.classes[&cpu].len() <= 3_600);
    }
}
