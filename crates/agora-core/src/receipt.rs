//! Execution receipts: a provider's signed statement of what it ran and what came out.
//!
//! A receipt binds the provider to a result digest and a fuel count for one order. The
//! market settles from it, and because it is signed, a receipt whose digest a quorum or a
//! referee later proves wrong is self-contained evidence of fraud.

use serde::{Deserialize, Serialize};

use crate::envelope::{Domain, Signed};
use crate::hash::Hash;
use crate::identity::AccountId;
use crate::money::Fuel;

/// What a provider claims about one run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The order (or task of an order) that was run.
    pub order_id: Hash,
    /// The provider that ran it; must equal the envelope's signer.
    pub provider: AccountId,
    /// Content hash of the module that was run.
    pub module: Hash,
    /// The executor's canonical result digest.
    pub result_digest: Hash,
    /// Fuel the run consumed (the bill is price × fuel).
    pub fuel_used: Fuel,
    /// Wall-clock milliseconds the run took on the provider (informative only).
    pub wall_ms: u64,
    /// For a job run under the checkpoint ABI (`docs/checkpoint-abi.md`): the Merkle root over
    /// its step hashes and the number of steps, which a dispute bisects over. `None` for an
    /// ordinary job.
    #[serde(default)]
    pub checkpoint: Option<StepCommitment>,
    /// For a container job: what the job's cgroup measured and the calibration that turned
    /// its CPU time into fuel (`docs/container-metering.md`). `None` for a WASM job, whose
    /// fuel the executor counts exactly.
    #[serde(default)]
    pub metering: Option<ContainerMetering>,
}

/// A container run's measured resource use and the calibration its bill rests on:
/// `fuel_used = cpu_ns × fuel_per_cpu_second / 10⁹`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerMetering {
    /// CPU time of every process in the job's cgroup, in nanoseconds.
    pub cpu_ns: u64,
    /// The cgroup's peak memory, in bytes.
    pub peak_memory_bytes: u64,
    /// Wall-clock milliseconds from start to exit.
    pub wall_ms: u64,
    /// The provider's calibration: fuel one second of its CPU time is worth, measured at
    /// start and published in its ask.
    pub fuel_per_cpu_second: u64,
}

impl ContainerMetering {
    /// The fuel `cpu_ns` of CPU time is worth at `fuel_per_cpu_second` (saturating).
    pub fn fuel(cpu_ns: u64, fuel_per_cpu_second: u64) -> Fuel {
        let fuel = u128::from(cpu_ns) * u128::from(fuel_per_cpu_second) / 1_000_000_000;
        Fuel(u64::try_from(fuel).unwrap_or(u64::MAX))
    }
}

/// What a receipt of a checkpointed job commits to: the root of the Merkle tree over the
/// job's step hashes (`agora_verify::checkpoint::StepTree::root`) and how many steps it has.
/// A dispute over the result bisects over these commitments to the one step the referee
/// re-executes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepCommitment {
    /// The Merkle root over the step hashes; it binds the number of steps.
    pub root: Hash,
    /// The number of steps the run took (calls of `agora_step`).
    pub steps: u64,
}

impl Domain for Receipt {
    const TAG: &'static str = "agora/receipt/v1";
}

/// A receipt signed by its provider.
pub type SignedReceipt = Signed<Receipt>;

impl SignedReceipt {
    /// Whether the signer is the provider the receipt names, so one provider cannot
    /// file a receipt in another's name.
    pub fn signer_is_provider(&self) -> bool {
        self.signer == self.body.provider
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChainId, Keypair};

    fn receipt(provider: AccountId) -> Receipt {
        Receipt {
            order_id: Hash::of(b"order"),
            provider,
            module: Hash::of(b"module"),
            result_digest: Hash::of(b"result"),
            fuel_used: Fuel(42),
            wall_ms: 3,
            checkpoint: None,
            metering: None,
        }
    }

    #[test]
    fn a_receipt_filed_in_another_providers_name_is_detected() {
        let chain = ChainId::new("test");
        let honest = Keypair::from_seed("p1");
        let other = Keypair::from_seed("p2");
        let own = Signed::sign(&honest, &chain, 0, receipt(honest.account()));
        assert!(own.verify(&chain).is_ok() && own.signer_is_provider());
        let forged = Signed::sign(&other, &chain, 0, receipt(honest.account()));
        assert!(forged.verify(&chain).is_ok());
        assert!(!forged.signer_is_provider());
    }

    #[test]
    fn the_checkpoint_commitment_is_signed() {
        let chain = ChainId::new("test");
        let key = Keypair::from_seed("p1");
        let mut body = receipt(key.account());
        body.checkpoint = Some(StepCommitment {
            root: Hash::of(b"root"),
            steps: 1_000,
        });
        let signed = Signed::sign(&key, &chain, 0, body.clone());
        assert!(signed.verify(&chain).is_ok());
        let mut tampered = signed.clone();
        tampered.body.checkpoint = Some(StepCommitment {
            root: Hash::of(b"root"),
            steps: 999,
        });
        assert!(tampered.verify(&chain).is_err());
        let json = serde_json::to_string(&body).unwrap();
        assert_eq!(serde_json::from_str::<Receipt>(&json).unwrap(), body);
    }
}
