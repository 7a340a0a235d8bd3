//! JSON records only the market node's HTTP API uses (the shared ones live in
//! `agora_proto::api`): blob uploads, health, blocks and the ledger audit.

use agora_core::{AccountId, Hash};
use agora_ledger::{Block, Supply, TxBody};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `PUT /v1/blobs/{hash}`: what was stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BlobStored {
    /// The blob's blake3 hash (hex).
    #[schema(value_type = String)]
    pub hash: Hash,
    /// Its size in bytes.
    pub size: u64,
}

/// `GET /health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the node answers.
    pub status: String,
    /// The ledger height.
    pub height: u64,
}

/// One transaction of a block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TxView {
    /// Its id.
    #[schema(value_type = String)]
    pub id: Hash,
    /// Who signed it.
    #[schema(value_type = String)]
    pub signer: AccountId,
    /// The signer's nonce.
    pub nonce: u64,
    /// Its kind (`open-escrow`, `release-escrow`, ...).
    pub kind: String,
    /// Its body.
    #[schema(value_type = Object)]
    pub body: TxBody,
}

/// `GET /v1/blocks/{height}`: a block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BlockView {
    /// Its height.
    pub height: u64,
    /// Its hash.
    #[schema(value_type = String)]
    pub hash: Hash,
    /// The previous block's hash.
    #[schema(value_type = String)]
    pub prev_hash: Hash,
    /// Merkle root of its transaction ids.
    #[schema(value_type = String)]
    pub tx_root: Hash,
    /// The state root after it.
    #[schema(value_type = String)]
    pub state_root: Hash,
    /// Unix ms.
    pub timestamp_ms: u64,
    /// Who sealed it.
    #[schema(value_type = String)]
    pub producer: AccountId,
    /// Its transactions.
    pub txs: Vec<TxView>,
}

impl From<&Block> for BlockView {
    fn from(block: &Block) -> BlockView {
        let h = &block.header;
        BlockView {
            height: h.height,
            hash: h.hash(),
            prev_hash: h.prev_hash,
            tx_root: h.tx_root,
            state_root: h.state_root,
            timestamp_ms: h.timestamp_ms,
            producer: h.producer,
            txs: block
                .txs
                .iter()
                .map(|tx| TxView {
                    id: tx.id(),
                    signer: tx.signer,
                    nonce: tx.nonce,
                    kind: tx.body.kind().to_string(),
                    body: tx.body.clone(),
                })
                .collect(),
        }
    }
}

/// `GET /v1/ledger/verify`: the chain replayed from genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LedgerCheck {
    /// Whether every block replayed (signatures, links, roots, rules, conservation).
    pub verified: bool,
    /// Whether the supply adds up after the last block.
    pub conservation: bool,
    /// The height replayed to.
    pub height: u64,
    /// The state root replayed.
    #[schema(value_type = Option<String>)]
    pub state_root: Option<Hash>,
    /// Transactions replayed.
    pub txs: u64,
    /// Where the supply sits.
    #[schema(value_type = Option<Object>)]
    pub supply: Option<Supply>,
    /// The first problem found.
    pub error: Option<String>,
}
