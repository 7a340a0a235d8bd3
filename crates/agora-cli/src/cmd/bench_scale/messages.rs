//! Counting the messages a run costs: the market node's counters from its `/metrics`
//! (HTTP requests received, p2p messages sent and received) and each provider's from the
//! `stats.json` it rewrites every two seconds (a provider has no HTTP endpoint).
//!
//! Each message is counted once: a p2p message where it was sent, an HTTP request where
//! it was received (the market; buyers and providers send no HTTP to anyone else).
//! First-time gossip deliveries are counted where they arrive, to show the fan-out;
//! gossipsub's own duplicate re-transmissions are not visible to the application.

use std::collections::HashMap;
use std::path::Path;

use agora_provider::StatsFile;
use serde::Serialize;

/// A node's message counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Counts {
    /// HTTP requests received.
    pub http_requests: f64,
    /// p2p messages sent: gossip published and requests.
    pub p2p_sent: f64,
    /// Gossip published.
    pub gossip_published: f64,
    /// Gossip received for the first time.
    pub gossip_received: f64,
    /// p2p requests received.
    pub requests_received: f64,
}

impl Counts {
    /// The market node's counts, from its metrics text.
    pub fn of_market(metrics: &str) -> Counts {
        let p2p = |kind: &str| sample(metrics, "agora_p2p_messages_total", Some(("kind", kind)));
        Counts {
            http_requests: sample(metrics, "agora_http_requests_total", None),
            p2p_sent: p2p("gossip_published") + p2p("rpc_sent") + p2p("chunk_requests_sent"),
            gossip_published: p2p("gossip_published"),
            gossip_received: p2p("gossip_received"),
            requests_received: p2p("rpc_received") + p2p("chunk_requests_served"),
        }
    }

    /// A provider's counts, from its stats file.
    pub fn of_provider(file: &StatsFile) -> Counts {
        let net = &file.net;
        Counts {
            http_requests: 0.0,
            p2p_sent: net.sent() as f64,
            gossip_published: net.gossip_published as f64,
            gossip_received: net.gossip_received as f64,
            requests_received: (net.rpc_received + net.chunk_requests_served) as f64,
        }
    }

    /// `self − before`, field by field.
    pub fn since(&self, before: &Counts) -> Counts {
        Counts {
            http_requests: self.http_requests - before.http_requests,
            p2p_sent: self.p2p_sent - before.p2p_sent,
            gossip_published: self.gossip_published - before.gossip_published,
            gossip_received: self.gossip_received - before.gossip_received,
            requests_received: self.requests_received - before.requests_received,
        }
    }

    /// `self + other`, field by field.
    pub fn plus(&self, other: &Counts) -> Counts {
        Counts {
            http_requests: self.http_requests + other.http_requests,
            p2p_sent: self.p2p_sent + other.p2p_sent,
            gossip_published: self.gossip_published + other.gossip_published,
            gossip_received: self.gossip_received + other.gossip_received,
            requests_received: self.requests_received + other.requests_received,
        }
    }
}

/// The providers' counts over a run, across restarts: a provider process counts from
/// zero, so the last figures read from each process are kept by process id, and a
/// process killed without warning loses only what it counted after its last rewrite.
#[derive(Debug, Default)]
pub struct ProviderTally {
    /// Per provider index, per process id: the latest counts read.
    latest: HashMap<(usize, u32), Counts>,
}

impl ProviderTally {
    /// Reads provider `index`'s stats file (in `data_dir`), if there is one yet.
    pub fn read(&mut self, index: usize, data_dir: &Path) {
        if let Ok(file) = StatsFile::read(data_dir) {
            self.latest
                .insert((index, file.pid), Counts::of_provider(&file));
        }
    }

    /// The sum over every provider process seen.
    pub fn total(&self) -> Counts {
        self.latest
            .values()
            .fold(Counts::default(), |sum, c| sum.plus(c))
    }
}

/// The value of the sample `name` (with the label `key="value"` if given) in a Prometheus
/// text exposition; 0 when it is absent (a counter nobody bumped yet is not printed).
pub fn sample(text: &str, name: &str, label: Option<(&str, &str)>) -> f64 {
    let wanted = label.map(|(k, v)| format!("{k}=\"{v}\""));
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, labels) = match series.split_once('{') {
                Some((metric, labels)) => (metric, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let labels_match = match &wanted {
                Some(pair) => labels.split(',').any(|l| l == pair),
                None => labels.is_empty(),
            };
            labels_match.then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP agora_http_requests HTTP API requests received\n\
        # TYPE agora_http_requests counter\n\
        agora_http_requests_total 42\n\
        agora_p2p_messages_total{kind=\"gossip_published\"} 7\n\
        agora_p2p_messages_total{kind=\"rpc_sent\"} 3\n\
        agora_orders{state=\"running\"} 2\n\
        # EOF\n";

    #[test]
    fn samples_are_found_by_name_and_label() {
        assert_eq!(sample(TEXT, "agora_http_requests_total", None), 42.0);
        assert_eq!(
            sample(TEXT, "agora_p2p_messages_total", Some(("kind", "rpc_sent"))),
            3.0
        );
        assert_eq!(
            sample(TEXT, "agora_orders", Some(("state", "running"))),
            2.0
        );
        assert_eq!(
            sample(TEXT, "agora_orders", Some(("state", "matched"))),
            0.0
        );
        assert_eq!(sample(TEXT, "agora_missing_total", None), 0.0);
    }

    #[test]
    fn market_counts_add_up_what_it_sent() {
        let counts = Counts::of_market(TEXT);
        assert_eq!(counts.http_requests, 42.0);
        assert_eq!(counts.p2p_sent, 10.0);
        assert_eq!(counts.since(&counts), Counts::default());
    }
}
