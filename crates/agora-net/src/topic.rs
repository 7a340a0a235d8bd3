//! The gossip topics of the market.

use std::fmt;

use libp2p::gossipsub::{IdentTopic, TopicHash};

/// A gossip topic. Every node subscribes to all of them; payloads are opaque bytes
/// (canonically encoded signed messages) that the application validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Providers' standing offers.
    Asks,
    /// Buyers' orders.
    Orders,
    /// Providers' bids on orders.
    Bids,
    /// Receipts and result announcements.
    Results,
}

impl Topic {
    /// Every topic, in a fixed order.
    pub const ALL: [Topic; 4] = [Topic::Asks, Topic::Orders, Topic::Bids, Topic::Results];

    /// The short name, as used in logs.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Asks => "asks",
            Topic::Orders => "orders",
            Topic::Bids => "bids",
            Topic::Results => "results",
        }
    }

    /// The gossipsub topic. Versioned so that an incompatible message format can live
    /// beside this one during an upgrade.
    pub(crate) fn ident(self) -> IdentTopic {
        IdentTopic::new(format!("agora/{}/1", self.name()))
    }

    pub(crate) fn hash(self) -> TopicHash {
        self.ident().hash()
    }

    /// The topic whose gossipsub hash is `hash`, if it is one of ours.
    pub(crate) fn from_hash(hash: &TopicHash) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| &t.hash() == hash)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_distinct_and_map_back() {
        for topic in Topic::ALL {
            assert_eq!(Topic::from_hash(&topic.hash()), Some(topic));
        }
        assert_eq!(Topic::from_hash(&IdentTopic::new("other").hash()), None);
    }
}
