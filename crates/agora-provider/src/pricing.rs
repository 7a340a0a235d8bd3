//! How the agent prices its asks: a fixed price, or the market's spot index clamped to a
//! floor and a ceiling.
//!
//! Everything here is pure: the agent fetches `GET /v1/index` and hands the JSON to
//! [`IndexSignal::from_index_json`], then asks [`PricingStrategy::price`] for the price.

use agora_core::Price;
use agora_market::{PriceIndex, ResourceClass};
use serde::{Deserialize, Serialize};

/// The one-minute window of the spot index, the one the agent follows.
pub const FOLLOW_WINDOW_MS: u64 = 60_000;

/// How the agent sets its price per compute unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PricingStrategy {
    /// Always this price.
    Fixed(Price),
    /// The index's one-minute VWAP (or, when nothing cleared, its best ask), kept within
    /// `[floor, ceiling]`.
    FollowIndex {
        /// The least the provider accepts.
        floor: Price,
        /// The most it asks.
        ceiling: Price,
    },
}

/// Why a strategy cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    /// A zero price would give work away.
    #[error("a price of zero gives the work away; set --price (or --floor) above zero")]
    Zero,
    /// The band is upside down.
    #[error("floor {floor} is above ceiling {ceiling}; pass --floor at most --ceiling")]
    Inverted {
        /// The floor given.
        floor: Price,
        /// The ceiling given.
        ceiling: Price,
    },
}

/// What the spot index says about one resource class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexSignal {
    /// The volume-weighted average price cleared over the last minute.
    pub vwap_1m: Option<Price>,
    /// The cheapest live ask with free capacity.
    pub best_ask: Option<Price>,
}

impl PricingStrategy {
    /// Checks the strategy can produce a positive price.
    pub fn validate(&self) -> Result<(), PricingError> {
        match *self {
            PricingStrategy::Fixed(price) if price.0 == 0 => Err(PricingError::Zero),
            PricingStrategy::FollowIndex { floor, .. } if floor.0 == 0 => Err(PricingError::Zero),
            PricingStrategy::FollowIndex { floor, ceiling } if floor > ceiling => {
                Err(PricingError::Inverted { floor, ceiling })
            }
            _ => Ok(()),
        }
    }

    /// Whether the strategy needs the market's index.
    pub fn follows_index(&self) -> bool {
        matches!(self, PricingStrategy::FollowIndex { .. })
    }

    /// The price to ask given what the index says. With no signal at all the floor is
    /// asked: an empty market is won by the cheapest offer, and the trades it clears are
    /// what give the index (and so this strategy) something to follow.
    pub fn price(&self, signal: IndexSignal) -> Price {
        match *self {
            PricingStrategy::Fixed(price) => price,
            PricingStrategy::FollowIndex { floor, ceiling } => signal
                .vwap_1m
                .or(signal.best_ask)
                .unwrap_or(floor)
                .clamp(floor, ceiling.max(floor)),
        }
    }
}

impl IndexSignal {
    /// The signal for `class` in an index snapshot.
    pub fn from_index(index: &PriceIndex) -> IndexSignal {
        IndexSignal {
            vwap_1m: index
                .windows
                .iter()
                .find(|w| w.window_ms == FOLLOW_WINDOW_MS)
                .and_then(|w| w.vwap),
            best_ask: index.best_ask,
        }
    }

    /// The signal for `class` in the JSON of `GET /v1/index`. The body is a list of
    /// [`PriceIndex`] records, possibly wrapped in an object; the first record anywhere in
    /// it for `class` is used. Anything else gives an empty signal (the strategy then
    /// falls back to its floor) rather than an error: a missing index must not stop a
    /// provider from offering work.
    pub fn from_index_json(body: &serde_json::Value, class: &ResourceClass) -> IndexSignal {
        find_index(body, class)
            .map(|index| IndexSignal::from_index(&index))
            .unwrap_or_default()
    }
}

/// Depth-first search for a `PriceIndex`-shaped object naming `class`.
fn find_index(value: &serde_json::Value, class: &ResourceClass) -> Option<PriceIndex> {
    match value {
        serde_json::Value::Array(items) => items.iter().find_map(|v| find_index(v, class)),
        serde_json::Value::Object(map) => {
            if map.contains_key("class")
                && let Ok(index) = serde_json::from_value::<PriceIndex>(value.clone())
                && &index.class == class
            {
                return Some(index);
            }
            map.values().find_map(|v| find_index(v, class))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::Fuel;
    use agora_market::WindowStats;
    use proptest::prelude::*;

    const BAND: PricingStrategy = PricingStrategy::FollowIndex {
        floor: Price(100),
        ceiling: Price(200),
    };

    fn signal(vwap: Option<u64>, best: Option<u64>) -> IndexSignal {
        IndexSignal {
            vwap_1m: vwap.map(Price),
            best_ask: best.map(Price),
        }
    }

    #[test]
    fn fixed_ignores_the_index() {
        let fixed = PricingStrategy::Fixed(Price(7));
        assert_eq!(fixed.price(signal(Some(1000), Some(3))), Price(7));
    }

    #[test]
    fn follow_prefers_vwap_then_best_ask_then_floor() {
        assert_eq!(BAND.price(signal(Some(150), Some(120))), Price(150));
        assert_eq!(BAND.price(signal(None, Some(120))), Price(120));
        assert_eq!(BAND.price(signal(None, None)), Price(100));
    }

    #[test]
    fn follow_is_clamped_to_the_band() {
        assert_eq!(BAND.price(signal(Some(10), None)), Price(100));
        assert_eq!(BAND.price(signal(Some(10_000), None)), Price(200));
        assert_eq!(BAND.price(signal(None, Some(1))), Price(100));
    }

    #[test]
    fn bad_strategies_are_refused() {
        assert_eq!(
            PricingStrategy::Fixed(Price(0)).validate(),
            Err(PricingError::Zero)
        );
        let inverted = PricingStrategy::FollowIndex {
            floor: Price(5),
            ceiling: Price(4),
        };
        assert!(matches!(
            inverted.validate(),
            Err(PricingError::Inverted { .. })
        ));
        assert_eq!(BAND.validate(), Ok(()));
    }

    fn index(class: ResourceClass, vwap: Option<u64>, best: Option<u64>) -> PriceIndex {
        PriceIndex {
            class,
            at_ms: 1,
            windows: vec![
                WindowStats {
                    window_ms: FOLLOW_WINDOW_MS,
                    vwap: vwap.map(Price),
                    volume: Fuel(10),
                    trades: 1,
                },
                WindowStats {
                    window_ms: 3_600_000,
                    vwap: Some(Price(999)),
                    volume: Fuel(10),
                    trades: 1,
                },
            ],
            best_ask: best.map(Price),
            depth_asks: 1,
            levels: vec![],
        }
    }

    #[test]
    fn index_json_is_found_bare_or_wrapped() {
        let cpu = ResourceClass::cpu();
        let list = vec![
            index(ResourceClass::gpu("A100"), Some(5000), None),
            index(cpu.clone(), Some(140), Some(130)),
        ];
        let bare = serde_json::to_value(&list).unwrap();
        assert_eq!(
            IndexSignal::from_index_json(&bare, &cpu),
            signal(Some(140), Some(130))
        );
        let wrapped = serde_json::json!({ "at_ms": 5, "classes": bare });
        assert_eq!(
            IndexSignal::from_index_json(&wrapped, &cpu),
            signal(Some(140), Some(130))
        );
        let nothing = serde_json::json!({ "error": "x" });
        assert_eq!(
            IndexSignal::from_index_json(&nothing, &cpu),
            IndexSignal::default()
        );
    }

    proptest! {
        #[test]
        fn followed_price_stays_in_band(
            floor in 1u64..1_000_000,
            width in 0u64..1_000_000,
            vwap in proptest::option::of(0u64..u64::MAX),
            best in proptest::option::of(0u64..u64::MAX),
        ) {
            let strategy = PricingStrategy::FollowIndex { floor: Price(floor), ceiling: Price(floor + width) };
            let price = strategy.price(signal(vwap, best));
            prop_assert!(price >= Price(floor) && price <= Price(floor + width));
            if let Some(v) = vwap {
                prop_assert_eq!(price, Price(v.clamp(floor, floor + width)));
            }
        }
    }
}
