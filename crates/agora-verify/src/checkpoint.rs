//! Checkpoints: the hash of a job's state after each step, and a Merkle tree over them that a
//! receipt commits to.
//!
//! Under the checkpoint convention (see `docs/verification.md`) the host calls the job's
//! exported `agora_step` until it reports done, and after each step hashes the job's whole
//! state — linear memory, globals, the virtual WASI state, the fuel used so far and whether
//! the job said it was done — into one [`StateDigest::hash`]. Step `s` (1-based) is leaf `s − 1` of the tree.
//!
//! The tree is domain-separated three ways: leaves (which also bind their index, so a state
//! proven at one step cannot be passed off at another), inner nodes, and the root (which
//! binds the number of leaves, so an inclusion proof is checked against the exact shape the
//! committer built). An odd node at the end of a level is carried up unchanged rather than
//! paired with itself, as in the ledger's transaction tree.

use agora_core::{Fuel, Hash};
use serde::{Deserialize, Serialize};

const LEAF_TAG: &str = "agora/checkpoint-leaf/v1";
const NODE_TAG: &str = "agora/checkpoint-node/v1";
const ROOT_TAG: &str = "agora/checkpoint-root/v1";
const STATE_TAG: &str = "agora/checkpoint-state/v1";

/// What `agora_step` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepStatus {
    /// `0`: call again.
    More,
    /// `1`: the job is finished; its outputs are final.
    Done,
}

/// The parts of a job's state the host hashes after each step. The executor hashes each part
/// (memory can be large; it hashes it incrementally); this type fixes how they combine, so a
/// provider, a challenger and the referee all compute the same step hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDigest {
    /// The step just completed, 1-based.
    pub step: u64,
    /// What the step returned. Part of the hash so that two traces of different lengths
    /// differ at the shorter one's last step.
    pub status: StepStatus,
    /// Fuel consumed from the start of the job to the end of this step, so a trace that
    /// over-reports compute units diverges from the honest one like a wrong state does.
    pub fuel: Fuel,
    /// blake3 of linear memory, all pages, in order.
    pub memory: Hash,
    /// blake3 of the globals' values in index order, each as 8 little-endian bytes.
    pub globals: Hash,
    /// blake3 of the virtual WASI state's canonical encoding (clock, random stream position,
    /// file-system contents, stdout/stderr so far).
    pub wasi: Hash,
}

impl StateDigest {
    /// The step hash: the leaf value committed for this step.
    pub fn hash(&self) -> Hash {
        let status = [match self.status {
            StepStatus::More => 0u8,
            StepStatus::Done => 1u8,
        }];
        Hash::tagged(
            STATE_TAG,
            &[
                &self.step.to_le_bytes(),
                &status,
                &self.fuel.0.to_le_bytes(),
                self.memory.as_bytes(),
                self.globals.as_bytes(),
                self.wasi.as_bytes(),
            ],
        )
    }
}

/// The sibling hashes from a leaf up to the root, bottom first. Levels where the node was
/// carried up without a sibling contribute nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// Sibling hashes, leaf level first.
    pub siblings: Vec<Hash>,
}

/// A Merkle tree over a job's step hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepTree {
    /// `levels[0]` are the leaf hashes; the last level has one node (or none when empty).
    levels: Vec<Vec<Hash>>,
}

impl StepTree {
    /// Builds the tree over `step_hashes`, step 1 first.
    pub fn new(step_hashes: &[Hash]) -> StepTree {
        let leaves: Vec<Hash> = step_hashes
            .iter()
            .enumerate()
            .map(|(index, state)| leaf_hash(index as u64, state))
            .collect();
        let mut levels = vec![leaves];
        while let Some(top) = levels.last().filter(|level| level.len() > 1) {
            let next = top.chunks(2).map(combine).collect();
            levels.push(next);
        }
        StepTree { levels }
    }

    /// The number of leaves (steps).
    pub fn len(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.levels[0].is_empty()
    }

    /// The root a receipt commits to; it binds the number of steps.
    pub fn root(&self) -> Hash {
        let top = self
            .levels
            .last()
            .and_then(|level| level.first())
            .copied()
            .unwrap_or(Hash::ZERO);
        root_hash(self.len(), &top)
    }

    /// The proof that leaf `index` (step `index + 1`) is in the tree, or `None` past the end.
    pub fn prove(&self, index: u64) -> Option<InclusionProof> {
        let mut position = usize::try_from(index).ok()?;
        if position >= self.levels[0].len() {
            return None;
        }
        let mut siblings = Vec::new();
        for level in &self.levels[..self.levels.len() - 1] {
            if let Some(sibling) = level.get(position ^ 1) {
                siblings.push(*sibling);
            }
            position /= 2;
        }
        Some(InclusionProof { siblings })
    }
}

/// The root of a tree over `step_hashes`, without keeping the tree.
pub fn step_root(step_hashes: &[Hash]) -> Hash {
    StepTree::new(step_hashes).root()
}

/// Whether `proof` shows that `state` is leaf `index` of the tree with `len` leaves whose
/// root is `root`. Any extra or missing sibling fails.
pub fn verify_inclusion(
    root: Hash,
    len: u64,
    index: u64,
    state: Hash,
    proof: &InclusionProof,
) -> bool {
    if index >= len {
        return false;
    }
    let mut node = leaf_hash(index, &state);
    let mut position = index;
    let mut width = len;
    let mut siblings = proof.siblings.iter();
    while width > 1 {
        let has_sibling = position % 2 == 1 || position + 1 < width;
        if has_sibling {
            let Some(sibling) = siblings.next() else {
                return false;
            };
            node = if position % 2 == 1 {
                node_hash(sibling, &node)
            } else {
                node_hash(&node, sibling)
            };
        }
        position /= 2;
        width = width.div_ceil(2);
    }
    siblings.next().is_none() && root_hash(len, &node) == root
}

fn leaf_hash(index: u64, state: &Hash) -> Hash {
    Hash::tagged(LEAF_TAG, &[&index.to_le_bytes(), state.as_bytes()])
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Hash::tagged(NODE_TAG, &[left.as_bytes(), right.as_bytes()])
}

fn root_hash(len: u64, top: &Hash) -> Hash {
    Hash::tagged(ROOT_TAG, &[&len.to_le_bytes(), top.as_bytes()])
}

fn combine(pair: &[Hash]) -> Hash {
    match pair {
        [left, right] => node_hash(left, right),
        // A lone node at the end of a level is carried up as it is.
        [single] => *single,
        _ => Hash::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(n: u64) -> Vec<Hash> {
        (0..n).map(|i| Hash::of(&i.to_le_bytes())).collect()
    }

    #[test]
    fn every_leaf_proves_for_many_shapes() {
        for n in 1..=33 {
            let hashes = steps(n);
            let tree = StepTree::new(&hashes);
            for (i, h) in hashes.iter().enumerate() {
                let proof = tree.prove(i as u64).unwrap();
                assert!(
                    verify_inclusion(tree.root(), n, i as u64, *h, &proof),
                    "n={n} i={i}"
                );
            }
            assert!(tree.prove(n).is_none());
        }
    }

    #[test]
    fn proofs_do_not_transfer() {
        let hashes = steps(10);
        let tree = StepTree::new(&hashes);
        let proof = tree.prove(3).unwrap();
        assert!(!verify_inclusion(tree.root(), 10, 3, hashes[4], &proof));
        assert!(!verify_inclusion(tree.root(), 10, 4, hashes[3], &proof));
        assert!(!verify_inclusion(tree.root(), 11, 3, hashes[3], &proof));
        let mut padded = proof.clone();
        padded.siblings.push(Hash::ZERO);
        assert!(!verify_inclusion(tree.root(), 10, 3, hashes[3], &padded));
        let mut short = proof;
        short.siblings.pop();
        assert!(!verify_inclusion(tree.root(), 10, 3, hashes[3], &short));
    }

    #[test]
    fn the_root_binds_length_and_order() {
        let base = step_root(&steps(5));
        let mut swapped = steps(5);
        swapped.swap(0, 1);
        assert_ne!(step_root(&swapped), base);
        assert_ne!(step_root(&steps(4)), base);
        assert_ne!(step_root(&[]), step_root(&steps(1)));
        let three = steps(3);
        assert_ne!(
            step_root(&three),
            step_root(&[three[0], three[1], three[2], three[2]])
        );
    }

    #[test]
    fn the_status_is_part_of_the_state_hash() {
        let state = StateDigest {
            step: 7,
            status: StepStatus::More,
            fuel: Fuel(1_000),
            memory: Hash::of(b"m"),
            globals: Hash::of(b"g"),
            wasi: Hash::of(b"w"),
        };
        let done = StateDigest {
            status: StepStatus::Done,
            ..state
        };
        assert_ne!(state.hash(), done.hash());
        assert_ne!(state.hash(), StateDigest { step: 8, ..state }.hash());
        let padded = StateDigest {
            fuel: Fuel(1_001),
            ..state
        };
        assert_ne!(state.hash(), padded.hash());
    }
}
