//! Blocks: building one from a batch of transactions, and replaying one to check it.
//!
//! Both directions are pure functions of the state, the genesis and the block, so the
//! producer and every auditor run exactly the same code.
//!
//! # Signatures
//!
//! Transaction signatures are checked in batches ([`verify_signatures`]): the batch is
//! split across the available cores and each part is checked with one ed25519 batch
//! equation; a part that fails is re-checked one signature at a time (strict ed25519) to
//! find the bad ones. Signers' decompressed public keys can be kept in a [`KeyCache`]
//! across blocks. Batch checking uses random linear combinations without the cofactor,
//! so a signature crafted with a small-order component could, rarely, pass a batch that a
//! strict single check rejects, or the other way round. Honest keys never produce one; if
//! the producer ever sealed one, `verify` would report that block, never accept a wrong state.

use std::collections::HashMap;

use agora_core::identity::{PreparedKey, SignatureError, verify_batch_prepared};
use agora_core::{AccountId, ChainId, Hash, Keypair, Signature, canonical};
use serde::{Deserialize, Serialize};

use crate::genesis::Genesis;
use crate::machine::{BlockContext, Effects, LedgerError, SignatureChecked, apply_verified};
use crate::merkle::merkle_root;
use crate::state::State;
use crate::tx::Tx;

/// The domain tag of block-header signatures.
pub const HEADER_TAG: &str = "agora/block-header/v1";

/// Below this many signatures, splitting a batch over threads costs more than it saves.
const PARALLEL_THRESHOLD: usize = 128;

/// A block header; the producer's signature covers every other field and the chain id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    /// 1 for the first block after genesis.
    pub height: u64,
    /// The previous block's hash ([`Genesis::hash`] for block 1).
    pub prev_hash: Hash,
    /// The Merkle root of the block's transaction ids, in order.
    pub tx_root: Hash,
    /// The state root after applying the block.
    pub state_root: Hash,
    /// Milliseconds since the Unix epoch; never below the previous block's.
    pub timestamp_ms: u64,
    /// Who sealed it: the genesis `block_producer`.
    pub producer: AccountId,
    /// The producer's ed25519 signature over [`BlockHeader::signing_bytes`].
    pub signature: Signature,
}

impl BlockHeader {
    /// The bytes the producer signs: the tag, the chain id and every field but the signature.
    pub fn signing_bytes(&self, chain_id: &ChainId) -> Vec<u8> {
        canonical::encode(&(
            HEADER_TAG,
            chain_id,
            self.height,
            self.prev_hash,
            self.tx_root,
            self.state_root,
            self.timestamp_ms,
            self.producer,
        ))
    }

    /// The block's hash: over the whole header, signature included. Transactions are
    /// covered through the transaction root.
    pub fn hash(&self) -> Hash {
        Hash::tagged("agora/block/v1", &[&canonical::encode(self)])
    }
}

/// A header and its transactions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The header.
    pub header: BlockHeader,
    /// The transactions, in the order they were applied.
    pub txs: Vec<Tx>,
}

/// What the next block builds on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainTip {
    /// The last block's height (0 at genesis).
    pub height: u64,
    /// The last block's hash (the genesis hash at genesis).
    pub hash: Hash,
    /// The last block's timestamp (the genesis timestamp at genesis).
    pub timestamp_ms: u64,
}

impl ChainTip {
    /// The tip before any block.
    pub fn genesis(genesis: &Genesis) -> ChainTip {
        ChainTip {
            height: 0,
            hash: genesis.hash(),
            timestamp_ms: genesis.timestamp_ms,
        }
    }

    /// The tip after `header`.
    pub fn after(header: &BlockHeader) -> ChainTip {
        ChainTip {
            height: header.height,
            hash: header.hash(),
            timestamp_ms: header.timestamp_ms,
        }
    }
}

/// A transaction left out of a block, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// Its position in the batch the block was built from.
    pub index: usize,
    /// Its id.
    pub id: Hash,
    /// Why it was refused.
    pub error: LedgerError,
}

/// A sealed block with what it did and what it refused.
#[derive(Clone, Debug)]
pub struct BuiltBlock {
    /// The block, ready to store.
    pub block: Block,
    /// The ids of its transactions, in order.
    pub ids: Vec<Hash>,
    /// Effects of each included transaction, in block order.
    pub effects: Vec<Effects>,
    /// Transactions that were refused and left out.
    pub rejected: Vec<Rejected>,
}

/// Why a block could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The sealing key is not the genesis block producer.
    #[error("key {found} is not this chain's block producer {expected}")]
    WrongProducer {
        /// The genesis block producer.
        expected: AccountId,
        /// The key offered.
        found: AccountId,
    },
    /// A timestamp below the previous block's.
    #[error("block timestamp {found} ms is before the previous block's {previous} ms")]
    TimestampRegressed {
        /// The previous block's timestamp.
        previous: u64,
        /// The offered timestamp.
        found: u64,
    },
    /// The chain reached the last representable height.
    #[error("the chain has reached the largest block height")]
    HeightOverflow,
}

/// Why a stored block does not replay. The caller knows the height.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The header's height is not the next one.
    #[error("header says height {found}, expected {expected}")]
    HeightMismatch {
        /// The next height.
        expected: u64,
        /// The header's.
        found: u64,
    },
    /// The header does not link to the previous block.
    #[error("previous-block hash {found} does not match the previous block {expected}")]
    PrevHashMismatch {
        /// The previous block's actual hash.
        expected: Hash,
        /// The header's.
        found: Hash,
    },
    /// The timestamp goes backwards.
    #[error("timestamp {found} ms is before the previous block's {previous} ms")]
    TimestampRegressed {
        /// The previous block's.
        previous: u64,
        /// The header's.
        found: u64,
    },
    /// Sealed by someone other than the block producer.
    #[error("block sealed by {found}, but the block producer is {expected}")]
    WrongProducer {
        /// The genesis block producer.
        expected: AccountId,
        /// The header's.
        found: AccountId,
    },
    /// The header signature is bad.
    #[error("block header signature is invalid: {0}")]
    BadHeaderSignature(SignatureError),
    /// The transactions do not hash to the header's root.
    #[error("transaction root {computed} does not match the header's {header}")]
    TxRootMismatch {
        /// In the header.
        header: Hash,
        /// Recomputed from the stored transactions.
        computed: Hash,
    },
    /// A transaction in the block is refused by the rules.
    #[error("transaction {index} ({id}) is invalid: {error}")]
    InvalidTx {
        /// Its position in the block.
        index: usize,
        /// Its id.
        id: Hash,
        /// Why.
        error: Box<LedgerError>,
    },
    /// The state after the block is not what the header commits to.
    #[error("state root {computed} after replay does not match the header's {header}")]
    StateRootMismatch {
        /// In the header.
        header: Hash,
        /// Recomputed by replay.
        computed: Hash,
    },
}

/// Transactions whose ids, chain ids and signatures were checked, ready to go into a
/// block. Checking needs no state, so a producer can check the next batch (on other
/// cores) while the previous block is being applied and committed.
#[derive(Clone, Debug)]
pub struct CheckedBatch {
    chain_id: ChainId,
    txs: Vec<Tx>,
    ids: Vec<Hash>,
    checks: Vec<Result<(), LedgerError>>,
}

impl CheckedBatch {
    /// Computes the ids and checks the chain ids and signatures of `txs` for `chain_id`.
    pub fn new(txs: Vec<Tx>, chain_id: &ChainId) -> CheckedBatch {
        CheckedBatch::with_keys(txs, chain_id, &mut KeyCache::new())
    }

    /// [`CheckedBatch::new`], reusing and extending a cache of signers' keys.
    pub fn with_keys(txs: Vec<Tx>, chain_id: &ChainId, cache: &mut KeyCache) -> CheckedBatch {
        let (ids, checks) = check_txs(&txs, chain_id, cache);
        CheckedBatch {
            chain_id: chain_id.clone(),
            txs,
            ids,
            checks,
        }
    }

    /// How many transactions it holds.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// The chain it was checked for.
    pub fn chain_id(&self) -> &ChainId {
        &self.chain_id
    }

    /// Each transaction's signature check, in order.
    pub fn checks(&self) -> &[Result<(), LedgerError>] {
        &self.checks
    }
}

/// Checks every transaction's chain id and signature, in batches across cores. The
/// result has one entry per transaction, in order.
pub fn verify_signatures(txs: &[Tx], chain_id: &ChainId) -> Vec<Result<(), LedgerError>> {
    check_txs(txs, chain_id, &mut KeyCache::new()).1
}

/// Decompressed public keys of recent signers, so repeat signers skip that part of
/// signature checking. Only a cache: results never depend on what it holds.
#[derive(Clone, Debug, Default)]
pub struct KeyCache {
    keys: HashMap<AccountId, PreparedKey>,
}

/// Entries a [`KeyCache`] holds before it starts over (about 64 MiB at most).
const KEY_CACHE_LIMIT: usize = 1 << 19;

impl KeyCache {
    /// An empty cache.
    pub fn new() -> KeyCache {
        KeyCache::default()
    }

    fn insert_all(&mut self, keys: Vec<(AccountId, PreparedKey)>) {
        if self.keys.len() + keys.len() > KEY_CACHE_LIMIT {
            self.keys.clear();
        }
        self.keys.extend(keys);
    }
}

/// What checking a list of transactions produced.
struct Checked {
    ids: Vec<Hash>,
    checks: Vec<Result<(), LedgerError>>,
    new_keys: Vec<(AccountId, PreparedKey)>,
}

/// Ids and signature checks of `txs`, split across the available cores, learning new
/// signers' keys into `cache`.
fn check_txs(
    txs: &[Tx],
    chain_id: &ChainId,
    cache: &mut KeyCache,
) -> (Vec<Hash>, Vec<Result<(), LedgerError>>) {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 16);
    let checked = if threads == 1 || txs.len() < PARALLEL_THRESHOLD {
        check_chunk(txs, chain_id, cache)
    } else {
        let chunk = txs.len().div_ceil(threads);
        let known = &*cache;
        std::thread::scope(|scope| {
            let handles: Vec<_> = txs
                .chunks(chunk)
                .map(|part| scope.spawn(move || check_chunk(part, chain_id, known)))
                .collect();
            let mut all = Checked {
                ids: Vec::with_capacity(txs.len()),
                checks: Vec::with_capacity(txs.len()),
                new_keys: Vec::new(),
            };
            for (handle, part) in handles.into_iter().zip(txs.chunks(chunk)) {
                // A checker thread only panics on a bug; re-check that part here instead.
                let part = handle
                    .join()
                    .unwrap_or_else(|_| check_chunk(part, chain_id, known));
                all.ids.extend(part.ids);
                all.checks.extend(part.checks);
                all.new_keys.extend(part.new_keys);
            }
            all
        })
    };
    cache.insert_all(checked.new_keys);
    (checked.ids, checked.checks)
}

fn check_chunk(txs: &[Tx], chain_id: &ChainId, cache: &KeyCache) -> Checked {
    let ids = txs.iter().map(Tx::id).collect();
    let mut new_keys = Vec::new();
    let mut results: Vec<Result<(), LedgerError>> = Vec::with_capacity(txs.len());
    let mut candidates = Vec::with_capacity(txs.len());
    let mut keys = Vec::with_capacity(txs.len());
    for (i, tx) in txs.iter().enumerate() {
        if tx.check_chain(chain_id).is_err() {
            results.push(Err(LedgerError::WrongChain {
                expected: chain_id.clone(),
                found: tx.chain_id.clone(),
            }));
            continue;
        }
        let key = match cache.keys.get(&tx.signer) {
            Some(key) => Ok(*key),
            None => tx
                .signer
                .prepare()
                .inspect(|key| new_keys.push((tx.signer, *key))),
        };
        match key {
            Ok(key) => {
                results.push(Ok(()));
                candidates.push(i);
                keys.push(key);
            }
            Err(source) => results.push(Err(LedgerError::BadSignature {
                signer: tx.signer,
                source,
            })),
        }
    }
    let messages: Vec<Vec<u8>> = candidates.iter().map(|&i| txs[i].signing_bytes()).collect();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let signatures: Vec<Signature> = candidates.iter().map(|&i| txs[i].signature).collect();
    if verify_batch_prepared(&refs, &signatures, &keys).is_err() {
        for (k, &i) in candidates.iter().enumerate() {
            results[i] = keys[k].verify(refs[k], &signatures[k]).map_err(|source| {
                LedgerError::BadSignature {
                    signer: txs[i].signer,
                    source,
                }
            });
        }
    }
    Checked {
        ids,
        checks: results,
        new_keys,
    }
}

/// Builds and seals the block after `tip` from `txs`: see [`build_checked_block`].
pub fn build_block(
    state: &mut State,
    genesis: &Genesis,
    tip: &ChainTip,
    txs: Vec<Tx>,
    timestamp_ms: u64,
    producer: &Keypair,
) -> Result<BuiltBlock, BuildError> {
    let batch = CheckedBatch::new(txs, &genesis.chain_id);
    build_checked_block(state, genesis, tip, batch, timestamp_ms, producer)
}

/// Builds and seals the block after `tip`: applies the batch's valid transactions in
/// order (a refused one changes nothing and is reported in [`BuiltBlock::rejected`]),
/// and signs the header with `producer`. A batch checked for another chain is re-checked.
///
/// On success `state` is the state after the block. On error it is untouched.
pub fn build_checked_block(
    state: &mut State,
    genesis: &Genesis,
    tip: &ChainTip,
    batch: CheckedBatch,
    timestamp_ms: u64,
    producer: &Keypair,
) -> Result<BuiltBlock, BuildError> {
    let expected = genesis.params.block_producer;
    if producer.account() != expected {
        return Err(BuildError::WrongProducer {
            expected,
            found: producer.account(),
        });
    }
    if timestamp_ms < tip.timestamp_ms {
        return Err(BuildError::TimestampRegressed {
            previous: tip.timestamp_ms,
            found: timestamp_ms,
        });
    }
    let height = tip
        .height
        .checked_add(1)
        .ok_or(BuildError::HeightOverflow)?;
    let batch = if batch.chain_id == genesis.chain_id {
        batch
    } else {
        CheckedBatch::new(batch.txs, &genesis.chain_id)
    };
    let ctx = BlockContext {
        chain_id: &genesis.chain_id,
        params: &genesis.params,
        height,
        timestamp_ms,
    };
    let mut included = Vec::with_capacity(batch.txs.len());
    let mut ids = Vec::with_capacity(batch.txs.len());
    let mut effects = Vec::with_capacity(batch.txs.len());
    let mut rejected = Vec::new();
    let rows = batch.txs.into_iter().zip(batch.ids).zip(batch.checks);
    for (index, ((tx, id), check)) in rows.enumerate() {
        match check.and_then(|()| apply_verified(state, SignatureChecked::vouch(&tx), &ctx)) {
            Ok(effect) => {
                effects.push(effect);
                included.push(tx);
                ids.push(id);
            }
            Err(error) => rejected.push(Rejected { index, id, error }),
        }
    }
    let mut header = BlockHeader {
        height,
        prev_hash: tip.hash,
        tx_root: merkle_root(&ids),
        state_root: state.state_root(),
        timestamp_ms,
        producer: producer.account(),
        signature: Signature([0; 64]),
    };
    header.signature = producer.sign(&header.signing_bytes(&genesis.chain_id));
    Ok(BuiltBlock {
        block: Block {
            header,
            txs: included,
        },
        ids,
        effects,
        rejected,
    })
}

/// A block with its transactions' ids and signature checks already computed, so an
/// auditor can check the next block on other cores while replaying this one.
#[derive(Clone, Debug)]
pub struct CheckedBlock {
    block: Block,
    chain_id: ChainId,
    ids: Vec<Hash>,
    checks: Vec<Result<(), LedgerError>>,
}

impl CheckedBlock {
    /// Computes the ids and checks the signatures of `block`'s transactions for `chain_id`.
    pub fn new(block: Block, chain_id: &ChainId) -> CheckedBlock {
        CheckedBlock::with_keys(block, chain_id, &mut KeyCache::new())
    }

    /// [`CheckedBlock::new`], reusing and extending a cache of signers' keys.
    pub fn with_keys(block: Block, chain_id: &ChainId, cache: &mut KeyCache) -> CheckedBlock {
        let (ids, checks) = check_txs(&block.txs, chain_id, cache);
        CheckedBlock {
            block,
            chain_id: chain_id.clone(),
            ids,
            checks,
        }
    }

    /// The block.
    pub fn block(&self) -> &Block {
        &self.block
    }
}

/// Replays `block` on top of `tip`, checking the header's links and signature, the
/// transaction root, every transaction signature, every rule, and the state root, all
/// recomputed. On success returns the new tip; on error `state` may be partly updated and
/// must be discarded.
pub fn replay_block(
    state: &mut State,
    genesis: &Genesis,
    tip: &ChainTip,
    block: &Block,
) -> Result<ChainTip, ReplayError> {
    let (ids, checks) = check_txs(&block.txs, &genesis.chain_id, &mut KeyCache::new());
    replay_with(state, genesis, tip, block, &ids, &checks)
}

/// [`replay_block`] for a block whose signatures were checked beforehand. A block
/// checked for another chain is re-checked.
pub fn replay_checked_block(
    state: &mut State,
    genesis: &Genesis,
    tip: &ChainTip,
    checked: &CheckedBlock,
) -> Result<ChainTip, ReplayError> {
    if checked.chain_id != genesis.chain_id {
        return replay_block(state, genesis, tip, &checked.block);
    }
    replay_with(
        state,
        genesis,
        tip,
        &checked.block,
        &checked.ids,
        &checked.checks,
    )
}

fn replay_with(
    state: &mut State,
    genesis: &Genesis,
    tip: &ChainTip,
    block: &Block,
    ids: &[Hash],
    checks: &[Result<(), LedgerError>],
) -> Result<ChainTip, ReplayError> {
    let header = &block.header;
    check_header(genesis, tip, header)?;
    let computed = merkle_root(ids);
    if computed != header.tx_root {
        return Err(ReplayError::TxRootMismatch {
            header: header.tx_root,
            computed,
        });
    }
    let ctx = BlockContext {
        chain_id: &genesis.chain_id,
        params: &genesis.params,
        height: header.height,
        timestamp_ms: header.timestamp_ms,
    };
    for (index, (tx, check)) in block.txs.iter().zip(checks).enumerate() {
        check
            .clone()
            .and_then(|()| apply_verified(state, SignatureChecked::vouch(tx), &ctx))
            .map_err(|error| ReplayError::InvalidTx {
                index,
                id: ids[index],
                error: Box::new(error),
            })?;
    }
    let computed = state.state_root();
    if computed != header.state_root {
        return Err(ReplayError::StateRootMismatch {
            header: header.state_root,
            computed,
        });
    }
    Ok(ChainTip::after(header))
}

fn check_header(
    genesis: &Genesis,
    tip: &ChainTip,
    header: &BlockHeader,
) -> Result<(), ReplayError> {
    let expected_height = tip.height.saturating_add(1);
    if header.height != expected_height {
        return Err(ReplayError::HeightMismatch {
            expected: expected_height,
            found: header.height,
        });
    }
    if header.prev_hash != tip.hash {
        return Err(ReplayError::PrevHashMismatch {
            expected: tip.hash,
            found: header.prev_hash,
        });
    }
    if header.timestamp_ms < tip.timestamp_ms {
        return Err(ReplayError::TimestampRegressed {
            previous: tip.timestamp_ms,
            found: header.timestamp_ms,
        });
    }
    let expected = genesis.params.block_producer;
    if header.producer != expected {
        return Err(ReplayError::WrongProducer {
            expected,
            found: header.producer,
        });
    }
    header
        .producer
        .verify(&header.signing_bytes(&genesis.chain_id), &header.signature)
        .map_err(ReplayError::BadHeaderSignature)
}
