//! Money and metering, in integers only.
//!
//! - [`Amount`]: a quantity of the native token in base units. 1 AGR = 10⁹ base units.
//!   All arithmetic is checked; nothing here ever touches a float.
//! - [`Price`]: base units per compute unit.
//! - [`Fuel`]: wasmtime fuel under the pinned cost table. 1 compute unit (CU) = 10⁹ fuel.
//!
//! A bill is `price × fuel / 10⁹`, computed in 128 bits and rounded *down*, so a buyer
//! never pays for a fraction of a base unit that was not fully used.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Base units in one AGR.
pub const BASE_UNITS_PER_AGR: u64 = 1_000_000_000;
/// Fuel in one compute unit.
pub const FUEL_PER_COMPUTE_UNIT: u64 = 1_000_000_000;
/// The token's ticker, used in human output.
pub const TICKER: &str = "AGR";

/// A quantity of AGR in base units.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Amount(pub u64);

/// Arithmetic on amounts that would leave the representable range, or text that is not an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// A sum exceeded the largest representable amount.
    #[error("amount overflow")]
    Overflow,
    /// A difference would have gone below zero.
    #[error("amount underflow: {have} is less than {need}")]
    Underflow {
        /// What there was.
        have: Amount,
        /// What was asked for.
        need: Amount,
    },
    /// Text that is not an amount.
    #[error("invalid amount {0:?}: expected e.g. `12.5`, `12.5 AGR` or `1500u` (base units)")]
    Parse(String),
}

impl Amount {
    /// Zero.
    pub const ZERO: Amount = Amount(0);

    /// `agr` whole tokens.
    pub const fn agr(agr: u64) -> Amount {
        Amount(agr * BASE_UNITS_PER_AGR)
    }

    /// The base-unit count.
    pub const fn base_units(self) -> u64 {
        self.0
    }

    /// `self + other`, or an error on overflow.
    pub fn checked_add(self, other: Amount) -> Result<Amount, AmountError> {
        self.0
            .checked_add(other.0)
            .map(Amount)
            .ok_or(AmountError::Overflow)
    }

    /// `self - other`, or an error if `other` is larger.
    pub fn checked_sub(self, other: Amount) -> Result<Amount, AmountError> {
        self.0
            .checked_sub(other.0)
            .map(Amount)
            .ok_or(AmountError::Underflow {
                have: self,
                need: other,
            })
    }

    /// `self × bps / 10 000`, rounded down: the share of an amount in basis points.
    pub fn basis_points(self, bps: u16) -> Amount {
        Amount(((self.0 as u128 * bps as u128) / 10_000) as u64)
    }

    /// Whether this is zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Sums amounts, failing on overflow.
    pub fn sum<I: IntoIterator<Item = Amount>>(items: I) -> Result<Amount, AmountError> {
        items
            .into_iter()
            .try_fold(Amount::ZERO, |acc, a| acc.checked_add(a))
    }
}

impl fmt::Display for Amount {
    /// `12.5 AGR`; whole amounts print without decimals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / BASE_UNITS_PER_AGR;
        let frac = self.0 % BASE_UNITS_PER_AGR;
        if frac == 0 {
            write!(f, "{whole} {TICKER}")
        } else {
            let digits = format!("{frac:09}");
            write!(f, "{whole}.{} {TICKER}", digits.trim_end_matches('0'))
        }
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({})", self)
    }
}

impl FromStr for Amount {
    type Err = AmountError;
    /// Accepts `12`, `12.5`, `12.5 AGR` (tokens) or `1500u` (base units).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || AmountError::Parse(s.to_owned());
        let text = s.trim();
        if let Some(units) = text.strip_suffix('u') {
            return units.trim().parse::<u64>().map(Amount).map_err(|_| err());
        }
        let text = text.strip_suffix(TICKER).unwrap_or(text).trim();
        let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
        if whole.is_empty() && frac.is_empty()
            || frac.len() > 9
            || !whole.chars().all(|c| c.is_ascii_digit())
            || !frac.chars().all(|c| c.is_ascii_digit())
        {
            return Err(err());
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| err())?
        };
        let frac: u64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<9}").parse().map_err(|_| err())?
        };
        whole
            .checked_mul(BASE_UNITS_PER_AGR)
            .and_then(|w| w.checked_add(frac))
            .map(Amount)
            .ok_or_else(err)
    }
}

/// A price: base units per compute unit.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Price(pub u64);

impl Price {
    /// The bill for `fuel` at this price, rounded down; `None` only if it would not fit in
    /// an [`Amount`].
    pub fn cost(self, fuel: Fuel) -> Option<Amount> {
        let cost = self.0 as u128 * fuel.0 as u128 / FUEL_PER_COMPUTE_UNIT as u128;
        u64::try_from(cost).ok().map(Amount)
    }

    /// The most this price can cost for a budget of `fuel`, rounded up: what a buyer
    /// must lock in escrow so that any honest bill fits.
    pub fn max_cost(self, fuel: Fuel) -> Option<Amount> {
        let cost = (self.0 as u128 * fuel.0 as u128).div_ceil(FUEL_PER_COMPUTE_UNIT as u128);
        u64::try_from(cost).ok().map(Amount)
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/CU", Amount(self.0))
    }
}

impl fmt::Debug for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Price({self})")
    }
}

impl FromStr for Price {
    type Err = AmountError;
    /// Same forms as [`Amount`], with an optional `/CU` suffix.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let text = text.strip_suffix("/CU").unwrap_or(text);
        text.parse::<Amount>().map(|a| Price(a.0))
    }
}

/// wasmtime fuel consumed or budgeted.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Fuel(pub u64);

impl Fuel {
    /// Fuel for `cu` whole compute units.
    pub const fn compute_units(cu: u64) -> Fuel {
        Fuel(cu * FUEL_PER_COMPUTE_UNIT)
    }

    /// Compute units as a decimal, for display only (never for billing).
    pub fn as_compute_units_f64(self) -> f64 {
        self.0 as f64 / FUEL_PER_COMPUTE_UNIT as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_humanly() {
        assert_eq!(Amount::agr(12).to_string(), "12 AGR");
        assert_eq!(Amount(12_500_000_000).to_string(), "12.5 AGR");
        assert_eq!(Amount(1).to_string(), "0.000000001 AGR");
    }

    #[test]
    fn parses_forms() {
        assert_eq!("12.5".parse::<Amount>().unwrap(), Amount(12_500_000_000));
        assert_eq!(
            "12.5 AGR".parse::<Amount>().unwrap(),
            Amount(12_500_000_000)
        );
        assert_eq!("1500u".parse::<Amount>().unwrap(), Amount(1500));
        assert_eq!(".5".parse::<Amount>().unwrap(), Amount(500_000_000));
        for bad in [
            "",
            "abc",
            "1.2.3",
            "-1",
            "1.0000000001",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<Amount>().is_err(), "{bad}");
        }
        assert_eq!("0.002/CU".parse::<Price>().unwrap(), Price(2_000_000));
    }

    #[test]
    fn checked_math() {
        assert!(Amount(u64::MAX).checked_add(Amount(1)).is_err());
        assert!(Amount(1).checked_sub(Amount(2)).is_err());
        assert_eq!(Amount(10_000).basis_points(250), Amount(250));
    }

    #[test]
    fn billing_rounds_down_and_escrow_rounds_up() {
        let p = Price(3);
        assert_eq!(p.cost(Fuel(500_000_000)), Some(Amount(1)));
        assert_eq!(p.max_cost(Fuel(500_000_000)), Some(Amount(2)));
        assert_eq!(Price(u64::MAX).cost(Fuel(u64::MAX)), None);
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(units in any::<u64>()) {
            let a = Amount(units);
            prop_assert_eq!(a.to_string().parse::<Amount>().unwrap(), a);
        }

        #[test]
        fn cost_never_exceeds_max_cost(price in any::<u32>(), fuel in any::<u64>()) {
            let p = Price(price as u64);
            if let (Some(c), Some(m)) = (p.cost(Fuel(fuel)), p.max_cost(Fuel(fuel))) {
                prop_assert!(c <= m);
            }
        }
    }
}
