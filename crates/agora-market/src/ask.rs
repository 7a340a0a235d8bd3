//! Asks: a provider's standing offer of one machine's capacity at a price per class.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use agora_core::{AccountId, Fuel, Hash, Price};
use serde::{Deserialize, Serialize};

use crate::error::MarketError;
use crate::market::Limits;
use crate::resources::{ResourceClass, Resources};

/// Names an ask. Providers choose it; [`AskId::named`] derives one from the provider and a
/// machine name so that re-announcing the same machine updates the same ask.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AskId(pub Hash);

impl AskId {
    /// The id of `provider`'s ask for the machine called `name`.
    pub fn named(provider: &AccountId, name: &str) -> AskId {
        AskId(Hash::tagged(
            "agora/market/ask-id/v1",
            &[provider.as_bytes(), name.as_bytes()],
        ))
    }
}

impl fmt::Display for AskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ask:{}", self.0.short())
    }
}

impl fmt::Debug for AskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AskId({})", self.0.short())
    }
}

/// A provider's standing offer: one machine's capacity, its prices and its terms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ask {
    /// The ask's id; an upsert with a known id updates that ask.
    pub id: AskId,
    /// Who offers it and is paid for it.
    pub provider: AccountId,
    /// Total capacity; matches reserve slices of it.
    pub capacity: Resources,
    /// CPU architecture, e.g. `x86_64` or `aarch64`.
    pub arch: String,
    /// Capabilities such as `wasm`, `oci`, `gpu`.
    pub features: BTreeSet<String>,
    /// Free-form labels such as `region`, `operator`, `tier`.
    pub attributes: BTreeMap<String, String>,
    /// Price per compute unit for each class this machine serves.
    pub prices: BTreeMap<ResourceClass, Price>,
    /// Smallest job accepted, in fuel.
    pub min_job: Fuel,
    /// Largest job accepted, in fuel.
    pub max_job: Fuel,
    /// When the offer lapses (ms since the epoch used by the caller).
    pub expires_ms: u64,
}

impl Ask {
    /// Checks the ask on its own; the market adds checks that need its state.
    pub(crate) fn validate(&self, limits: &Limits, now_ms: u64) -> Result<(), MarketError> {
        limits.check_capacity(&self.capacity)?;
        let invalid = |detail: String| MarketError::InvalidAsk {
            ask: self.id,
            detail,
        };
        if self.arch.is_empty() {
            return Err(invalid(
                "arch is empty; name the CPU architecture, e.g. x86_64".into(),
            ));
        }
        if self.max_job.0 == 0 {
            return Err(MarketError::ZeroFuel {
                what: "ask max_job".into(),
            });
        }
        if self.min_job > self.max_job {
            return Err(invalid(format!(
                "min_job {} exceeds max_job {}",
                self.min_job.0, self.max_job.0
            )));
        }
        if self.prices.is_empty() {
            return Err(invalid(
                "no prices; quote at least one class (`cpu` or `gpu:<model>`)".into(),
            ));
        }
        for (class, price) in &self.prices {
            self.check_price(class, *price).map_err(invalid)?;
        }
        if self.expires_ms <= now_ms {
            return Err(MarketError::InThePast {
                what: "ask expiry".into(),
                at_ms: self.expires_ms,
                now_ms,
            });
        }
        Ok(())
    }

    fn check_price(&self, class: &ResourceClass, price: Price) -> Result<(), String> {
        if price.0 == 0 {
            return Err(format!("price for {class} is 0; quote a positive price"));
        }
        if let Some(model) = class.gpu_model()
            && !self.capacity.gpus.iter().any(|g| g.model == model)
        {
            return Err(format!("quotes {class} but has no {model} GPU"));
        }
        Ok(())
    }
}
