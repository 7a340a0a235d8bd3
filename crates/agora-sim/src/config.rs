//! What a simulation run is: the population, the workload, the verification policies buyers
//! choose, the stake rule under test, and the seed. Every field has a documented default
//! ([`SimConfig::default`]); [`SimConfig::validate`] refuses combinations that cannot run.

use agora_verify::VerifyPolicy;
use serde::{Deserialize, Serialize};

/// Parts per million: probability and share 1.
pub const PPM: u32 = 1_000_000;

/// How a provider behaves. Honest providers run every job; the others return a wrong
/// result (and skip the job's cost) by their strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Runs every job and reports the right result.
    Honest,
    /// Cheats on every job.
    Always,
    /// Cheats on a job with probability [`SimConfig::rarely_q_ppm`].
    Rarely,
    /// Cheats only on jobs of at least [`SimConfig::high_value_cu`] compute units.
    HighValue,
    /// Cheats on every job, and returns its ring's wrong result when it is asked to check a
    /// ring partner's job, so an audit that lands inside the ring agrees with the lie.
    Colluding,
    /// Honest until it has [`SimConfig::trust_after`] consecutive verified results, then
    /// cheats on every job.
    AfterTrust,
}

impl Behaviour {
    /// Every behaviour, in report order.
    pub const ALL: [Behaviour; 6] = [
        Behaviour::Honest,
        Behaviour::Always,
        Behaviour::Rarely,
        Behaviour::HighValue,
        Behaviour::Colluding,
        Behaviour::AfterTrust,
    ];

    /// The behaviour's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Behaviour::Honest => "honest",
            Behaviour::Always => "always",
            Behaviour::Rarely => "rarely",
            Behaviour::HighValue => "high_value",
            Behaviour::Colluding => "colluding",
            Behaviour::AfterTrust => "after_trust",
        }
    }
}

/// Everything a run depends on. Two runs with equal configs produce byte-identical reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimConfig {
    /// The seed every random draw derives from.
    pub seed: u64,
    /// Providers online at the start.
    pub providers: u32,
    /// Jobs submitted in the run.
    pub jobs: u64,
    /// Distinct buyers; each keeps one verification policy.
    pub buyers: u32,
    /// Mean job arrivals per simulated second (Poisson, with an hourly demand cycle of
    /// ±50 %). The default, 100 for 10,000 providers, keeps about a third of the market's
    /// slots busy on average and half at the peak; [`SimConfig::scaled`] keeps that ratio.
    pub arrivals_per_s: u32,
    /// Share of providers per cheating behaviour, ppm, in the order `always, rarely,
    /// high_value, colluding, after_trust`; the rest are honest.
    pub cheater_ppm: [u32; 5],
    /// `rarely`'s cheating probability per job, ppm.
    pub rarely_q_ppm: u32,
    /// The size, in compute units, from which `high_value` cheats.
    pub high_value_cu: u64,
    /// Consecutive verified results after which `after_trust` starts cheating.
    pub trust_after: u32,
    /// Providers per colluding ring.
    pub ring_size: u32,
    /// Whether cheaters price at the bottom of the market (they win first runs), instead of
    /// spread over the same price range as honest providers.
    pub cheaters_cheapest: bool,
    /// Buyers' policies and their weights.
    pub policies: Vec<(VerifyPolicy, u32)>,
    /// The stake a proven fault costs, as a multiple (ppm) of the rule's S = C/p − R for the
    /// job (C: its compute cost at the market's reference cost, R: what it pays, p: the
    /// policy's detection probability). 10⁶ is the rule exactly; the sweep varies it.
    pub stake_ratio_ppm: u32,
    /// Share of online providers that go offline per simulated minute, ppm.
    pub leave_per_min_ppm: u32,
    /// Share of offline providers that restart per simulated minute, ppm.
    pub restart_per_min_ppm: u32,
    /// New providers that join per simulated minute, ppm of the starting population.
    pub join_per_min_ppm: u32,
    /// Regions providers and buyers live in (the simulated network's latency matrix).
    pub regions: u32,
    /// Whether adaptive draws its audits by the value at risk, as the market node does
    /// (`Flow::on_result_at_risk` with R = the run's worst-case bill, C = R, S = the
    /// provider's bonded stake); otherwise by the policy alone (`Flow::on_result`).
    pub sample_at_risk: bool,
    /// Whether a proven fault takes the provider out of matching for a while, as the market
    /// node does (`SuspensionRule::DEFAULT`: 15 minutes, doubling per fault up to 7 days).
    pub suspension: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            providers: 10_000,
            jobs: 1_000_000,
            buyers: 1_000,
            arrivals_per_s: 100,
            cheater_ppm: [20_000, 20_000, 20_000, 20_000, 20_000],
            rarely_q_ppm: 50_000,
            high_value_cu: 200,
            trust_after: 50,
            ring_size: 5,
            cheaters_cheapest: false,
            policies: vec![
                (VerifyPolicy::None, 1),
                (VerifyPolicy::Spot { p_ppm: 50_000 }, 1),
                (VerifyPolicy::Spot { p_ppm: 200_000 }, 1),
                (VerifyPolicy::Replicate { n: 3, quorum: 2 }, 1),
                (VerifyPolicy::DEFAULT, 4),
            ],
            stake_ratio_ppm: PPM,
            leave_per_min_ppm: 10_000,
            restart_per_min_ppm: 200_000,
            join_per_min_ppm: 1_000,
            regions: 3,
            sample_at_risk: true,
            suspension: true,
        }
    }
}

/// A configuration that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A count that must be positive is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// Cheater shares that add up to more than everyone.
    #[error("cheater shares add up to {0} ppm, more than all providers (10^6); lower them")]
    TooManyCheaters(u64),
    /// A probability above 1.
    #[error("{what} is {ppm} ppm; a probability is at most 10^6 ppm")]
    BadProbability {
        /// Which field.
        what: &'static str,
        /// Its value.
        ppm: u32,
    },
    /// A policy the verification core refuses.
    #[error("policy {policy}: {reason}")]
    BadPolicy {
        /// The policy.
        policy: String,
        /// Why.
        reason: String,
    },
    /// Replication that needs more providers than exist.
    #[error("{policy} needs {needed} distinct providers but the run has {providers}")]
    TooFewProviders {
        /// The policy.
        policy: String,
        /// Providers needed.
        needed: u32,
        /// Providers configured.
        providers: u32,
    },
}

impl SimConfig {
    /// The default configuration for `providers` providers and `jobs` jobs, with the arrival
    /// rate scaled to the population (1 job per second per 100 providers).
    pub fn scaled(providers: u32, jobs: u64, seed: u64) -> SimConfig {
        SimConfig {
            seed,
            providers,
            jobs,
            buyers: (providers / 10).max(10),
            arrivals_per_s: (providers / 100).max(1),
            ..SimConfig::default()
        }
    }

    /// Refuses a configuration that cannot run, saying which field is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("providers", u64::from(self.providers)),
            ("jobs", self.jobs),
            ("buyers", u64::from(self.buyers)),
            ("arrivals_per_s", u64::from(self.arrivals_per_s)),
            ("ring_size", u64::from(self.ring_size)),
            ("regions", u64::from(self.regions)),
            ("policies", self.policies.len() as u64),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Zero(name));
        }
        let cheaters: u64 = self.cheater_ppm.iter().map(|&p| u64::from(p)).sum();
        if cheaters > u64::from(PPM) {
            return Err(ConfigError::TooManyCheaters(cheaters));
        }
        for (what, ppm) in [
            ("rarely_q_ppm", self.rarely_q_ppm),
            ("leave_per_min_ppm", self.leave_per_min_ppm),
            ("restart_per_min_ppm", self.restart_per_min_ppm),
        ] {
            if ppm > PPM {
                return Err(ConfigError::BadProbability { what, ppm });
            }
        }
        for (policy, _) in &self.policies {
            policy.validate().map_err(|e| ConfigError::BadPolicy {
                policy: policy.to_string(),
                reason: e.to_string(),
            })?;
            let needed = match policy {
                VerifyPolicy::Replicate { n, .. } => n + 2,
                _ => 4,
            };
            if self.providers < needed {
                return Err(ConfigError::TooFewProviders {
                    policy: policy.to_string(),
                    needed,
                    providers: self.providers,
                });
            }
        }
        if self.policies.iter().all(|(_, w)| *w == 0) {
            return Err(ConfigError::Zero("the sum of policy weights"));
        }
        Ok(())
    }

    /// The share of providers with `behaviour`, ppm.
    pub fn share_ppm(&self, behaviour: Behaviour) -> u32 {
        match behaviour {
            Behaviour::Honest => PPM.saturating_sub(self.cheater_ppm.iter().sum::<u32>().min(PPM)),
            Behaviour::Always => self.cheater_ppm[0],
            Behaviour::Rarely => self.cheater_ppm[1],
            Behaviour::HighValue => self.cheater_ppm[2],
            Behaviour::Colluding => self.cheater_ppm[3],
            Behaviour::AfterTrust => self.cheater_ppm[4],
        }
    }
}
