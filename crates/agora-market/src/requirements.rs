//! What an order requires of a provider beyond raw capacity: architecture, features,
//! attribute rules, reputation, stake, replicas and distinctness.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use agora_core::Amount;
use serde::{Deserialize, Serialize};

use crate::error::MarketError;
use crate::reputation::PPM;

/// A rule on one attribute of a provider's ask.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttributeRule {
    /// The attribute must be present and equal to this value.
    Equals(String),
    /// The attribute must be present and one of these values.
    OneOf(BTreeSet<String>),
    /// The attribute must not equal this value (an absent attribute passes).
    Not(String),
}

/// `key` must satisfy `rule`, e.g. `region = eu`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeConstraint {
    /// The attribute name, e.g. `region`.
    pub key: String,
    /// The rule on its value.
    pub rule: AttributeRule,
}

impl AttributeConstraint {
    /// `key = value`.
    pub fn equals(key: &str, value: &str) -> AttributeConstraint {
        AttributeConstraint {
            key: key.into(),
            rule: AttributeRule::Equals(value.into()),
        }
    }

    /// `key ∈ {values}`.
    pub fn one_of(key: &str, values: &[&str]) -> AttributeConstraint {
        let values = values.iter().map(|v| (*v).to_owned()).collect();
        AttributeConstraint {
            key: key.into(),
            rule: AttributeRule::OneOf(values),
        }
    }

    /// `key ≠ value`.
    pub fn not(key: &str, value: &str) -> AttributeConstraint {
        AttributeConstraint {
            key: key.into(),
            rule: AttributeRule::Not(value.into()),
        }
    }

    /// Whether an ask with these attributes satisfies the rule.
    pub fn admits(&self, attributes: &BTreeMap<String, String>) -> bool {
        let value = attributes.get(&self.key);
        match &self.rule {
            AttributeRule::Equals(want) => value == Some(want),
            AttributeRule::OneOf(set) => value.is_some_and(|v| set.contains(v)),
            AttributeRule::Not(banned) => value != Some(banned),
        }
    }
}

impl fmt::Display for AttributeConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            AttributeRule::Equals(v) => write!(f, "{}={v}", self.key),
            AttributeRule::OneOf(set) => {
                let list: Vec<&str> = set.iter().map(String::as_str).collect();
                write!(f, "{}∈{{{}}}", self.key, list.join(","))
            }
            AttributeRule::Not(v) => write!(f, "{}≠{v}", self.key),
        }
    }
}

/// Everything an order requires of the providers that run it, beyond capacity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirements {
    /// Required CPU architecture, if any.
    pub arch: Option<String>,
    /// Features every provider must have, e.g. `wasm`.
    pub features: BTreeSet<String>,
    /// Attribute rules, all of which must hold.
    pub attributes: Vec<AttributeConstraint>,
    /// Minimum reputation score, in parts per million (0 = no minimum).
    pub min_reputation_ppm: u32,
    /// Minimum provider stake.
    pub min_stake: Amount,
    /// Number of distinct providers to run the job on.
    pub replicas: u16,
    /// If set, the replicas' providers must also differ in this attribute (e.g. `operator`
    /// or `region`); providers without the attribute cannot serve such an order.
    pub distinct_by: Option<String>,
}

impl Default for Requirements {
    fn default() -> Self {
        Requirements {
            arch: None,
            features: BTreeSet::new(),
            attributes: Vec::new(),
            min_reputation_ppm: 0,
            min_stake: Amount::ZERO,
            replicas: 1,
            distinct_by: None,
        }
    }
}

impl Requirements {
    /// Rejects requirements that no set of providers could ever meet.
    pub(crate) fn validate(&self, max_replicas: u16) -> Result<(), MarketError> {
        if self.replicas == 0 || self.replicas > max_replicas {
            return Err(MarketError::InvalidReplicas {
                replicas: self.replicas,
                max: max_replicas,
            });
        }
        if self.min_reputation_ppm > PPM {
            return Err(contradiction(format!(
                "min_reputation_ppm {} exceeds the maximum score {PPM}",
                self.min_reputation_ppm
            )));
        }
        if self.arch.as_deref() == Some("") {
            return Err(contradiction("arch is empty; omit it or name one".into()));
        }
        self.check_attribute_consistency()
    }

    /// Intersects the allowed values per key; an empty intersection is a contradiction.
    fn check_attribute_consistency(&self) -> Result<(), MarketError> {
        let mut allowed: BTreeMap<&str, Option<BTreeSet<&str>>> = BTreeMap::new();
        let mut banned: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for c in &self.attributes {
            let narrowed: BTreeSet<&str> = match &c.rule {
                AttributeRule::Equals(v) => [v.as_str()].into(),
                AttributeRule::OneOf(set) => set.iter().map(String::as_str).collect(),
                AttributeRule::Not(v) => {
                    banned.entry(&c.key).or_default().insert(v);
                    continue;
                }
            };
            let slot = allowed.entry(&c.key).or_insert(None);
            *slot = Some(match slot.take() {
                None => narrowed,
                Some(prev) => prev.intersection(&narrowed).copied().collect(),
            });
        }
        for (key, set) in &allowed {
            let mut set = set.clone().unwrap_or_default();
            if let Some(ban) = banned.get(key) {
                set.retain(|v| !ban.contains(v));
            }
            if set.is_empty() {
                return Err(contradiction(format!(
                    "no value of `{key}` satisfies every rule on it"
                )));
            }
        }
        Ok(())
    }
}

fn contradiction(detail: String) -> MarketError {
    MarketError::ContradictoryConstraints { detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(attributes: Vec<AttributeConstraint>) -> Requirements {
        Requirements {
            attributes,
            ..Requirements::default()
        }
    }

    #[test]
    fn rules_admit_as_documented() {
        let attrs: BTreeMap<String, String> = [("region".into(), "eu".into())].into();
        assert!(AttributeConstraint::equals("region", "eu").admits(&attrs));
        assert!(!AttributeConstraint::equals("region", "us").admits(&attrs));
        assert!(AttributeConstraint::one_of("region", &["us", "eu"]).admits(&attrs));
        assert!(!AttributeConstraint::not("region", "eu").admits(&attrs));
        assert!(AttributeConstraint::not("tier", "spot").admits(&attrs));
        assert!(!AttributeConstraint::equals("tier", "gold").admits(&attrs));
    }

    #[test]
    fn contradictions_are_caught() {
        let bad = [
            vec![
                AttributeConstraint::equals("r", "eu"),
                AttributeConstraint::equals("r", "us"),
            ],
            vec![
                AttributeConstraint::equals("r", "eu"),
                AttributeConstraint::not("r", "eu"),
            ],
            vec![AttributeConstraint::one_of("r", &[])],
            vec![
                AttributeConstraint::one_of("r", &["a", "b"]),
                AttributeConstraint::not("r", "a"),
                AttributeConstraint::not("r", "b"),
            ],
        ];
        for attrs in bad {
            assert!(
                matches!(
                    with(attrs.clone()).validate(8),
                    Err(MarketError::ContradictoryConstraints { .. })
                ),
                "{attrs:?}"
            );
        }
        let fine = vec![
            AttributeConstraint::one_of("r", &["a", "b"]),
            AttributeConstraint::not("r", "a"),
        ];
        assert!(with(fine).validate(8).is_ok());
        assert!(
            with(vec![AttributeConstraint::not("r", "a")])
                .validate(8)
                .is_ok()
        );
    }

    #[test]
    fn replicas_are_bounded() {
        let zero = Requirements {
            replicas: 0,
            ..Requirements::default()
        };
        assert!(matches!(
            zero.validate(8),
            Err(MarketError::InvalidReplicas { .. })
        ));
        let many = Requirements {
            replicas: 9,
            ..Requirements::default()
        };
        assert!(matches!(
            many.validate(8),
            Err(MarketError::InvalidReplicas { .. })
        ));
    }
}
