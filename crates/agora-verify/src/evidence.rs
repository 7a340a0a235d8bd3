//! Evidence of fraud: a signed receipt together with what proved it wrong.
//!
//! A receipt is signed over its result digest and fuel count, so once a quorum or a referee
//! establishes a different result, the receipt itself is proof that its provider lied. An
//! [`Evidence`] record names that receipt (by the hash of its full signed encoding), what it
//! claimed, what was proven instead and under which policy. Its canonical hash
//! ([`Evidence::hash`]) is what the ledger's slash transaction records, and the ledger refuses
//! to slash twice on the same hash, so each fault is punished once.

use agora_core::{AccountId, ChainId, EnvelopeError, Hash, SignedReceipt, canonical};
use serde::{Deserialize, Serialize};

use crate::bisect::LossReason;
use crate::policy::VerifyPolicy;
use crate::quorum::RunResult;

const EVIDENCE_TAG: &str = "agora/evidence/v1";

/// What established the correct result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proof {
    /// A quorum of other replicas agreed on `accepted`.
    Quorum {
        /// The accepted result.
        accepted: RunResult,
        /// The providers whose receipts formed the quorum.
        agreeing: Vec<AccountId>,
    },
    /// The market re-executed the job and got `result`.
    Referee {
        /// The referee's result.
        result: RunResult,
    },
    /// Bisection over checkpoints: from the agreed state before `step`, the referee's run of
    /// that one step gave `referee_state`, not the provider's `claimed_state`.
    Bisection {
        /// The step re-run.
        step: u64,
        /// The state both parties agreed on before it.
        agreed_state: Hash,
        /// What the provider committed to after it (`None`: its trace had ended).
        claimed_state: Option<Hash>,
        /// What the referee computed (`None`: the job had already finished).
        referee_state: Option<Hash>,
    },
    /// The provider lost the bisection game without a re-execution: it answered with a
    /// state its own commitment does not contain, or not at all.
    Forfeit {
        /// Why it lost.
        reason: LossReason,
    },
}

/// Self-contained proof that a provider signed a wrong result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The order the receipt was for.
    pub order_id: Hash,
    /// The provider that signed it.
    pub provider: AccountId,
    /// The signed receipt's id: the hash of its full canonical encoding, signature included.
    pub receipt: Hash,
    /// What the receipt claimed.
    pub claimed: RunResult,
    /// What proved it wrong.
    pub proof: Proof,
    /// The order's verification policy.
    pub policy: VerifyPolicy,
}

/// Why evidence could not be made: it would not prove a fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    /// The receipt's signature or chain does not check.
    #[error("the receipt does not verify: {0}")]
    BadReceipt(#[from] EnvelopeError),
    /// The receipt is signed by someone other than the provider it names.
    #[error("the receipt names provider {named} but is signed by {signer}")]
    SignerIsNotProvider {
        /// The provider in the receipt.
        named: AccountId,
        /// Who signed it.
        signer: AccountId,
    },
    /// The proof agrees with the receipt.
    #[error("the proof agrees with the receipt; that is a verified result, not a fault")]
    NotAFault,
    /// A quorum proof that names no voters, or names the accused among them.
    #[error("a quorum proof must name the agreeing providers, and not the accused one")]
    BadQuorum,
}

impl Evidence {
    /// Evidence against the provider of `receipt`, checked: the receipt verifies on `chain`,
    /// is signed by the provider it names, and `proof` contradicts it.
    pub fn from_receipt(
        receipt: &SignedReceipt,
        chain: &ChainId,
        proof: Proof,
        policy: VerifyPolicy,
    ) -> Result<Evidence, EvidenceError> {
        receipt.verify(chain)?;
        if !receipt.signer_is_provider() {
            return Err(EvidenceError::SignerIsNotProvider {
                named: receipt.body.provider,
                signer: receipt.signer,
            });
        }
        let evidence = Evidence {
            order_id: receipt.body.order_id,
            provider: receipt.body.provider,
            receipt: receipt.id(),
            claimed: RunResult {
                digest: receipt.body.result_digest,
                fuel: receipt.body.fuel_used,
            },
            proof,
            policy,
        };
        evidence.check()?;
        Ok(evidence)
    }

    /// Whether the proof contradicts the claim. Checks what can be checked from the record
    /// alone; re-running the job or the step is the auditor's part.
    pub fn check(&self) -> Result<(), EvidenceError> {
        match &self.proof {
            Proof::Quorum { accepted, agreeing } => {
                if agreeing.is_empty() || agreeing.contains(&self.provider) {
                    return Err(EvidenceError::BadQuorum);
                }
                if *accepted == self.claimed {
                    return Err(EvidenceError::NotAFault);
                }
            }
            Proof::Referee { result } if *result == self.claimed => {
                return Err(EvidenceError::NotAFault);
            }
            Proof::Referee { .. } => {}
            Proof::Bisection {
                claimed_state,
                referee_state,
                ..
            } if claimed_state == referee_state => return Err(EvidenceError::NotAFault),
            Proof::Bisection { .. } | Proof::Forfeit { .. } => {}
        }
        Ok(())
    }

    /// The canonical hash the slash transaction records.
    pub fn hash(&self) -> Hash {
        Hash::tagged(EVIDENCE_TAG, &[&canonical::encode(self)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::{Fuel, Keypair, Receipt, Signed};

    fn signed(key: &Keypair, chain: &ChainId, digest: &[u8]) -> SignedReceipt {
        let body = Receipt {
            order_id: Hash::of(b"order"),
            provider: key.account(),
            module: Hash::of(b"module"),
            result_digest: Hash::of(digest),
            fuel_used: Fuel(100),
            wall_ms: 1,
            checkpoint: None,
            metering: None,
        };
        Signed::sign(key, chain, 0, body)
    }

    fn referee(digest: &[u8]) -> Proof {
        Proof::Referee {
            result: RunResult {
                digest: Hash::of(digest),
                fuel: Fuel(100),
            },
        }
    }

    #[test]
    fn a_wrong_receipt_becomes_evidence_with_a_stable_hash() {
        let chain = ChainId::new("test");
        let key = Keypair::from_seed("cheater");
        let receipt = signed(&key, &chain, b"wrong");
        let policy = VerifyPolicy::Spot { p_ppm: 200_000 };
        let evidence = Evidence::from_receipt(&receipt, &chain, referee(b"right"), policy).unwrap();
        assert_eq!(evidence.receipt, receipt.id());
        assert_eq!(evidence.hash(), evidence.clone().hash());
        let other_policy = Evidence {
            policy: VerifyPolicy::None,
            ..evidence.clone()
        };
        assert_ne!(other_policy.hash(), evidence.hash());
    }

    #[test]
    fn a_correct_receipt_is_not_evidence() {
        let chain = ChainId::new("test");
        let key = Keypair::from_seed("honest");
        let receipt = signed(&key, &chain, b"right");
        let result =
            Evidence::from_receipt(&receipt, &chain, referee(b"right"), VerifyPolicy::None);
        assert_eq!(result, Err(EvidenceError::NotAFault));
    }

    #[test]
    fn a_receipt_from_another_chain_or_signer_is_refused() {
        let chain = ChainId::new("test");
        let key = Keypair::from_seed("p");
        let receipt = signed(&key, &chain, b"wrong");
        let other = ChainId::new("other");
        assert!(matches!(
            Evidence::from_receipt(&receipt, &other, referee(b"x"), VerifyPolicy::None),
            Err(EvidenceError::BadReceipt(_))
        ));
        let framer = Keypair::from_seed("framer");
        let mut body = receipt.body.clone();
        body.provider = Keypair::from_seed("victim").account();
        let framed = Signed::sign(&framer, &chain, 0, body);
        assert!(matches!(
            Evidence::from_receipt(&framed, &chain, referee(b"x"), VerifyPolicy::None),
            Err(EvidenceError::SignerIsNotProvider { .. })
        ));
    }

    #[test]
    fn a_quorum_proof_must_name_others() {
        let chain = ChainId::new("test");
        let key = Keypair::from_seed("p");
        let receipt = signed(&key, &chain, b"wrong");
        let accepted = RunResult {
            digest: Hash::of(b"right"),
            fuel: Fuel(100),
        };
        let self_vote = Proof::Quorum {
            accepted,
            agreeing: vec![key.account()],
        };
        assert_eq!(
            Evidence::from_receipt(&receipt, &chain, self_vote, VerifyPolicy::None),
            Err(EvidenceError::BadQuorum)
        );
    }
}
