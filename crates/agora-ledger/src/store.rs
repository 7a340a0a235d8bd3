//! Durable storage on redb: one atomic write transaction per block.
//!
//! # Layout
//!
//! One file, `ledger.redb`, in the data directory, with these tables:
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | `"genesis"`, `"burned"`, `"format"` | canonical encodings |
//! | `headers` | height | canonical [`BlockHeader`] |
//! | `bodies` | height | canonical `Vec<Tx>` |
//! | `accounts` / `stakes` | account id | canonical [`Account`] / [`Stake`] |
//! | `escrows` | order id | canonical [`Escrow`] |
//! | `evidence` | evidence hash | empty |
//! | `voucher_series` | series id | canonical [`VoucherSeries`] |
//! | `voucher_holdings` | [`crate::voucher::holding_key`] | canonical [`VoucherHolding`] |
//!
//! The voucher tables appear with the first block written by a build that knows vouchers;
//! a ledger created before reads as having none.
//!
//! A block's header, its transactions, every state entry it changed and the burnt total
//! are written in one redb write transaction committed with `Durability::Immediate`, so
//! after a crash the file holds either the whole block or none of it. The head is simply
//! the last key of `headers`; there is no separate pointer that could disagree.
//!
//! # Trust
//!
//! [`Ledger::open`] loads the stored state and checks that its recomputed root equals the
//! head header's state root, so a damaged state table is caught on open. [`verify`]
//! trusts no stored state at all: it replays every block from genesis.

use std::path::{Path, PathBuf};

use agora_core::{AccountId, Amount, ChainId, Hash, Keypair, canonical};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Serialize, de::DeserializeOwned};

use crate::block::{
    Block, BlockHeader, BuildError, ChainTip, CheckedBatch, CheckedBlock, KeyCache,
    build_checked_block,
};
use crate::genesis::{Genesis, GenesisError, Params};
use crate::replay::{AuditError, Replayer};
use crate::settlement::{BlockOutcome, Settlement};
use crate::state::{Account, Changes, Escrow, Stake, State, Supply};
use crate::tx::Tx;
use crate::voucher::{VoucherHolding, VoucherSeries};

/// The ledger file's name inside a data directory.
pub const LEDGER_FILE: &str = "ledger.redb";
const FORMAT: &[u8] = b"agora-ledger/1";

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const HEADERS: TableDefinition<u64, &[u8]> = TableDefinition::new("headers");
const BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("bodies");
const ACCOUNTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("accounts");
const ESCROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("escrows");
const STAKES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("stakes");
const EVIDENCE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("evidence");
const VOUCHER_SERIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("voucher_series");
const VOUCHER_HOLDINGS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("voucher_holdings");

/// What went wrong reading or writing a ledger directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file-system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// `create` on a directory that already holds a ledger.
    #[error("{0} already holds a ledger; open it instead, or pick an empty directory")]
    AlreadyExists(PathBuf),
    /// `open` on a directory without a ledger.
    #[error("no ledger at {0}; create one first (e.g. `agora ledger init --data-dir DIR`)")]
    NotFound(PathBuf),
    /// Another process holds the ledger file.
    #[error("the ledger at {0} is open in another process; stop it first")]
    Locked(PathBuf),
    /// The embedded database failed.
    #[error("ledger database: {0}")]
    Db(#[from] redb::Error),
    /// Stored bytes that do not decode.
    #[error("stored {what} is corrupt: {detail}")]
    Corrupt {
        /// What was being read.
        what: String,
        /// Why it did not decode.
        detail: String,
    },
    /// The stored state does not match the head block's state root.
    #[error(
        "stored state root {stored} does not match block {height}'s state root {header}; run `agora ledger verify`"
    )]
    StateMismatch {
        /// The head height.
        height: u64,
        /// Recomputed from the stored state.
        stored: Hash,
        /// Committed in the head header.
        header: Hash,
    },
    /// The genesis is invalid.
    #[error("genesis: {0}")]
    Genesis(#[from] GenesisError),
    /// The block could not be built.
    #[error("cannot build block: {0}")]
    Build(#[from] BuildError),
}

fn db_err<E: Into<redb::Error>>(path: &Path) -> impl FnOnce(E) -> StoreError + '_ {
    move |err| match err.into() {
        redb::Error::DatabaseAlreadyOpen => StoreError::Locked(path.to_owned()),
        other => StoreError::Db(other),
    }
}

fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    what: impl FnOnce() -> String,
) -> Result<T, StoreError> {
    canonical::decode(bytes).map_err(|e| StoreError::Corrupt {
        what: what(),
        detail: e.to_string(),
    })
}

/// The embedded ledger: the pure state machine plus a redb file.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    db: Database,
    genesis: Genesis,
    state: State,
    tip: ChainTip,
    head: Option<BlockHeader>,
    keys: KeyCache,
}

impl Ledger {
    /// Creates a ledger for `genesis` in `dir` (created if missing).
    pub fn create(dir: &Path, genesis: Genesis) -> Result<Ledger, StoreError> {
        let mut state = genesis.initial_state()?;
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            action: "create directory",
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(LEDGER_FILE);
        if path.exists() {
            return Err(StoreError::AlreadyExists(dir.to_owned()));
        }
        let db = Database::create(&path).map_err(db_err(&path))?;
        let txn = db.begin_write().map_err(db_err(&path))?;
        {
            let mut meta = txn.open_table(META).map_err(db_err(&path))?;
            meta.insert("format", FORMAT).map_err(db_err(&path))?;
            meta.insert("genesis", canonical::encode(&genesis).as_slice())
                .map_err(db_err(&path))?;
            for table in [HEADERS, BODIES] {
                txn.open_table(table).map_err(db_err(&path))?;
            }
            for table in [ESCROWS, STAKES, EVIDENCE, VOUCHER_SERIES, VOUCHER_HOLDINGS] {
                txn.open_table(table).map_err(db_err(&path))?;
            }
        }
        write_changes(&txn, &state.take_changes(), &path)?;
        {
            let mut accounts = txn.open_table(ACCOUNTS).map_err(db_err(&path))?;
            for (id, account) in state.accounts() {
                accounts
                    .insert(
                        id.as_bytes().as_slice(),
                        canonical::encode(account).as_slice(),
                    )
                    .map_err(db_err(&path))?;
            }
        }
        txn.commit().map_err(db_err(&path))?;
        let tip = ChainTip::genesis(&genesis);
        Ok(Ledger {
            path,
            db,
            genesis,
            state,
            tip,
            head: None,
            keys: KeyCache::new(),
        })
    }

    /// Opens the ledger in `dir` at its last committed block.
    pub fn open(dir: &Path) -> Result<Ledger, StoreError> {
        let path = dir.join(LEDGER_FILE);
        if !path.exists() {
            return Err(StoreError::NotFound(dir.to_owned()));
        }
        let db = Database::open(&path).map_err(db_err(&path))?;
        let (genesis, mut state, head) = load(&db, &path)?;
        let (height, expected, tip) = match &head {
            Some(h) => (h.height, h.state_root, ChainTip::after(h)),
            None => {
                let mut initial = genesis.initial_state()?;
                (0, initial.state_root(), ChainTip::genesis(&genesis))
            }
        };
        let stored = state.state_root();
        if stored != expected {
            return Err(StoreError::StateMismatch {
                height,
                stored,
                header: expected,
            });
        }
        Ok(Ledger {
            path,
            db,
            genesis,
            state,
            tip,
            head,
            keys: KeyCache::new(),
        })
    }

    /// Builds, seals and durably commits the next block from `txs` (see
    /// [`crate::block::build_checked_block`]). Refused transactions are reported, not
    /// committed.
    pub fn produce_block(
        &mut self,
        txs: Vec<Tx>,
        timestamp_ms: u64,
        producer: &Keypair,
    ) -> Result<BlockOutcome, StoreError> {
        let batch = CheckedBatch::with_keys(txs, &self.genesis.chain_id, &mut self.keys);
        self.produce_checked_block(batch, timestamp_ms, producer)
    }

    /// Like [`Ledger::produce_block`] for a batch whose signatures were already checked,
    /// e.g. on other threads while the previous block was committing.
    pub fn produce_checked_block(
        &mut self,
        batch: CheckedBatch,
        timestamp_ms: u64,
        producer: &Keypair,
    ) -> Result<BlockOutcome, StoreError> {
        let built = build_checked_block(
            &mut self.state,
            &self.genesis,
            &self.tip,
            batch,
            timestamp_ms,
            producer,
        )?;
        let changes = self.state.take_changes();
        if let Err(err) = self.commit_block(&built.block, &changes) {
            // Memory ran ahead of disk; go back to what is durably stored.
            let (_, state, _) = load(&self.db, &self.path)?;
            self.state = state;
            return Err(err);
        }
        let header = built.block.header;
        let hash = header.hash();
        self.tip = ChainTip::after(&header);
        self.head = Some(header.clone());
        Ok(BlockOutcome {
            header,
            hash,
            included: built.ids.into_iter().zip(built.effects).collect(),
            rejected: built.rejected,
        })
    }

    fn commit_block(&self, block: &Block, changes: &Changes) -> Result<(), StoreError> {
        let path = &self.path;
        let txn = self.db.begin_write().map_err(db_err(path))?;
        {
            let height = block.header.height;
            let mut headers = txn.open_table(HEADERS).map_err(db_err(path))?;
            headers
                .insert(height, canonical::encode(&block.header).as_slice())
                .map_err(db_err(path))?;
            let mut bodies = txn.open_table(BODIES).map_err(db_err(path))?;
            bodies
                .insert(height, canonical::encode(&block.txs).as_slice())
                .map_err(db_err(path))?;
        }
        write_changes(&txn, changes, path)?;
        txn.commit().map_err(db_err(path))?;
        Ok(())
    }

    /// The stored block at `height` (1 is the first block), if any.
    pub fn block(&self, height: u64) -> Result<Option<Block>, StoreError> {
        read_block(&self.db, &self.path, height)
    }

    /// The current state (in memory, equal to the stored one).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The last block's height (0 before the first block).
    pub fn height(&self) -> u64 {
        self.tip.height
    }

    /// The last block's header, if any block was produced.
    pub fn head(&self) -> Option<&BlockHeader> {
        self.head.as_ref()
    }

    /// What the next block builds on.
    pub fn tip(&self) -> &ChainTip {
        &self.tip
    }

    /// The chain's genesis.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The current state root.
    pub fn state_root(&mut self) -> Hash {
        self.state.state_root()
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Settlement for Ledger {
    type Error = StoreError;

    fn chain_id(&self) -> &ChainId {
        &self.genesis.chain_id
    }

    fn params(&self) -> &Params {
        &self.genesis.params
    }

    fn height(&self) -> u64 {
        self.tip.height
    }

    fn account(&self, id: &AccountId) -> Result<Account, StoreError> {
        Ok(self.state.account(id))
    }

    fn escrow(&self, order_id: &Hash) -> Result<Option<Escrow>, StoreError> {
        Ok(self.state.escrow(order_id).copied())
    }

    fn stake(&self, id: &AccountId) -> Result<Option<Stake>, StoreError> {
        Ok(self.state.stake(id).cloned())
    }

    fn submit(
        &mut self,
        txs: Vec<Tx>,
        timestamp_ms: u64,
        submitter: &Keypair,
    ) -> Result<BlockOutcome, StoreError> {
        self.produce_block(txs, timestamp_ms, submitter)
    }
}

fn write_changes(
    txn: &redb::WriteTransaction,
    changes: &Changes,
    path: &Path,
) -> Result<(), StoreError> {
    write_entries(
        txn,
        ACCOUNTS,
        changes
            .accounts
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_ref())),
        path,
    )?;
    write_entries(
        txn,
        ESCROWS,
        changes
            .escrows
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_ref())),
        path,
    )?;
    write_entries(
        txn,
        STAKES,
        changes
            .stakes
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_ref())),
        path,
    )?;
    write_entries(
        txn,
        EVIDENCE,
        changes.evidence.iter().map(|k| (k.as_bytes(), Some(&()))),
        path,
    )?;
    write_entries(
        txn,
        VOUCHER_SERIES,
        changes
            .voucher_series
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_ref())),
        path,
    )?;
    write_entries(
        txn,
        VOUCHER_HOLDINGS,
        changes
            .voucher_holdings
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_ref())),
        path,
    )?;
    let mut meta = txn.open_table(META).map_err(db_err(path))?;
    meta.insert("burned", canonical::encode(&changes.burned).as_slice())
        .map_err(db_err(path))?;
    Ok(())
}

fn write_entries<'a, V: Serialize + 'a>(
    txn: &redb::WriteTransaction,
    table: TableDefinition<&[u8], &[u8]>,
    entries: impl Iterator<Item = (&'a [u8; 32], Option<&'a V>)>,
    path: &Path,
) -> Result<(), StoreError> {
    let mut table = txn.open_table(table).map_err(db_err(path))?;
    for (key, value) in entries {
        match value {
            Some(v) => table
                .insert(key.as_slice(), canonical::encode(v).as_slice())
                .map(drop),
            None => table.remove(key.as_slice()).map(drop),
        }
        .map_err(db_err(path))?;
    }
    Ok(())
}

/// Everything stored about the chain's current state: genesis, state, head header.
fn load(
    db_handle: &Database,
    path: &Path,
) -> Result<(Genesis, State, Option<BlockHeader>), StoreError> {
    let txn = db_handle.begin_read().map_err(db_err(path))?;
    let meta = txn.open_table(META).map_err(db_err(path))?;
    let genesis: Genesis = read_meta(&meta, "genesis", path)?;
    let burned: Amount = read_meta(&meta, "burned", path)?;
    let accounts = read_entries::<Account>(&txn, ACCOUNTS, "account", path)?;
    let escrows = read_entries::<Escrow>(&txn, ESCROWS, "escrow", path)?;
    let stakes = read_entries::<Stake>(&txn, STAKES, "stake", path)?;
    let evidence = read_entries::<()>(&txn, EVIDENCE, "evidence", path)?;
    let voucher_series =
        read_entries::<VoucherSeries>(&txn, VOUCHER_SERIES, "voucher series", path)?;
    let voucher_holdings =
        read_entries::<VoucherHolding>(&txn, VOUCHER_HOLDINGS, "voucher holding", path)?;
    let state = State::from_parts(
        accounts
            .into_iter()
            .map(|(k, v)| (AccountId::from_bytes(k), v)),
        escrows.into_iter().map(|(k, v)| (Hash(k), v)),
        stakes
            .into_iter()
            .map(|(k, v)| (AccountId::from_bytes(k), v)),
        evidence.into_iter().map(|(k, ())| Hash(k)),
        genesis.supply()?,
        burned,
    )
    .with_vouchers(
        voucher_series.into_iter().map(|(k, v)| (Hash(k), v)),
        voucher_holdings.into_iter().map(|(k, v)| (Hash(k), v)),
    );
    let headers = txn.open_table(HEADERS).map_err(db_err(path))?;
    let head = match headers.last().map_err(db_err(path))? {
        Some((height, bytes)) => {
            let height = height.value();
            Some(decode(bytes.value(), || {
                format!("header of block {height}")
            })?)
        }
        None => None,
    };
    Ok((genesis, state, head))
}

fn read_meta<T: DeserializeOwned>(
    meta: &redb::ReadOnlyTable<&str, &[u8]>,
    key: &str,
    path: &Path,
) -> Result<T, StoreError> {
    let value = meta
        .get(key)
        .map_err(db_err(path))?
        .ok_or_else(|| StoreError::Corrupt {
            what: format!("meta entry {key:?}"),
            detail: "missing".into(),
        })?;
    decode(value.value(), || format!("meta entry {key:?}"))
}

fn read_entries<V: DeserializeOwned>(
    txn: &redb::ReadTransaction,
    table: TableDefinition<&[u8], &[u8]>,
    what: &str,
    path: &Path,
) -> Result<Vec<([u8; 32], V)>, StoreError> {
    let table = match txn.open_table(table) {
        Ok(table) => table,
        // A ledger written before this table existed simply has no entries in it.
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(db_err(path)(e)),
    };
    let mut out = Vec::new();
    for entry in table.iter().map_err(db_err(path))? {
        let (key, value) = entry.map_err(db_err(path))?;
        let key: [u8; 32] = key.value().try_into().map_err(|_| StoreError::Corrupt {
            what: format!("{what} key"),
            detail: "not 32 bytes".into(),
        })?;
        out.push((key, decode(value.value(), || format!("{what} entry"))?));
    }
    Ok(out)
}

fn read_block(db_handle: &Database, path: &Path, height: u64) -> Result<Option<Block>, StoreError> {
    let txn = db_handle.begin_read().map_err(db_err(path))?;
    let headers = txn.open_table(HEADERS).map_err(db_err(path))?;
    let bodies = txn.open_table(BODIES).map_err(db_err(path))?;
    let Some(header) = headers.get(height).map_err(db_err(path))? else {
        return Ok(None);
    };
    let header = decode(header.value(), || format!("header of block {height}"))?;
    let body = bodies
        .get(height)
        .map_err(db_err(path))?
        .ok_or_else(|| StoreError::Corrupt {
            what: format!("transactions of block {height}"),
            detail: "missing".into(),
        })?;
    let txs = decode(body.value(), || format!("transactions of block {height}"))?;
    Ok(Some(Block { header, txs }))
}

/// The summary of a successful audit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The chain id.
    pub chain_id: ChainId,
    /// The last block's height.
    pub height: u64,
    /// The last block's hash (the genesis hash if there is none).
    pub head_hash: Hash,
    /// The replayed state root.
    pub state_root: Hash,
    /// Where the supply sits.
    pub supply: Supply,
    /// Blocks replayed.
    pub blocks: u64,
    /// Transactions replayed.
    pub txs: u64,
}

/// Why an audit failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The directory could not be read at all.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The first block that does not check out.
    #[error("block {height} is bad: {fault}")]
    BadBlock {
        /// Its height.
        height: u64,
        /// What is wrong.
        fault: BlockFault,
    },
    /// Every block checks out but the stored state differs from the replayed one.
    #[error(
        "stored state at height {height} differs from the state replayed from genesis ({detail})"
    )]
    StoredStateDiffers {
        /// The head height.
        height: u64,
        /// Which part differs.
        detail: String,
    },
}

/// What is wrong with a stored block.
#[derive(Debug, thiserror::Error)]
pub enum BlockFault {
    /// Its bytes do not decode.
    #[error("stored bytes do not decode: {0}")]
    Undecodable(String),
    /// A header without its transactions.
    #[error("its transactions are missing")]
    MissingBody,
    /// Transactions stored for a height that has no header.
    #[error("transactions are stored but its header is missing")]
    MissingHeader,
    /// It breaks a rule or a commitment.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Replays the ledger in `dir` from genesis, checking every header signature and link,
/// transaction root, transaction signature, rule, state root and conservation, then
/// compares the replayed state with the stored one. Stored state is never trusted.
pub fn verify(dir: &Path) -> Result<VerifyReport, VerifyError> {
    let path = dir.join(LEDGER_FILE);
    if !path.exists() {
        return Err(StoreError::NotFound(dir.to_owned()).into());
    }
    let db_handle = Database::open(&path).map_err(db_err(&path))?;
    let txn = db_handle.begin_read().map_err(db_err(&path))?;
    let meta = txn.open_table(META).map_err(db_err(&path))?;
    let genesis: Genesis = read_meta(&meta, "genesis", &path)?;
    let mut replayer = Replayer::new(genesis).map_err(StoreError::from)?;
    drop((meta, txn));
    let chain_id = replayer.genesis().chain_id.clone();
    let mut blocks = 0;
    // A reader thread decodes and signature-checks the next blocks while this one
    // replays; it stops when the channel closes.
    std::thread::scope(|scope| {
        let (send, received) = std::sync::mpsc::sync_channel(2);
        let (db_ref, path_ref, chain_ref) = (&db_handle, path.as_path(), &chain_id);
        scope.spawn(move || read_checked_blocks(db_ref, path_ref, chain_ref, &send));
        for item in received {
            let checked = item?;
            let height = replayer.tip().height.saturating_add(1);
            replayer
                .push_checked(&checked)
                .map_err(|e| VerifyError::BadBlock {
                    height,
                    fault: BlockFault::Audit(e),
                })?;
            blocks += 1;
        }
        Ok::<(), VerifyError>(())
    })?;
    let height = replayer.tip().height;
    let (_, stored, _) = load(&db_handle, &path)?;
    if &stored != replayer.state() {
        return Err(VerifyError::StoredStateDiffers {
            height,
            detail: state_difference(&stored, replayer.state()),
        });
    }
    Ok(VerifyReport {
        chain_id: replayer.genesis().chain_id.clone(),
        height,
        head_hash: replayer.tip().hash,
        state_root: replayer.state_root(),
        supply: replayer.state().supply(),
        blocks,
        txs: replayer.txs(),
    })
}

/// Sends every stored block, decoded and checked, in height order; the first problem is
/// sent as an error and ends the stream.
fn read_checked_blocks(
    db_handle: &Database,
    path: &Path,
    chain_id: &ChainId,
    send: &std::sync::mpsc::SyncSender<Result<CheckedBlock, VerifyError>>,
) {
    if let Err(err) = stream_blocks(db_handle, path, chain_id, send) {
        // The receiver may have stopped already; then nobody needs the error.
        let _ = send.send(Err(err));
    }
}

fn stream_blocks(
    db_handle: &Database,
    path: &Path,
    chain_id: &ChainId,
    send: &std::sync::mpsc::SyncSender<Result<CheckedBlock, VerifyError>>,
) -> Result<(), VerifyError> {
    let txn = db_handle.begin_read().map_err(db_err(path))?;
    let headers = txn.open_table(HEADERS).map_err(db_err(path))?;
    let bodies = txn.open_table(BODIES).map_err(db_err(path))?;
    let mut height = 0u64;
    let mut keys = KeyCache::new();
    for entry in headers.iter().map_err(db_err(path))? {
        let (key, header_bytes) = entry.map_err(db_err(path))?;
        height += 1;
        let bad = |fault: BlockFault| VerifyError::BadBlock { height, fault };
        if key.value() != height {
            return Err(bad(BlockFault::MissingHeader));
        }
        let header = canonical::decode(header_bytes.value())
            .map_err(|e| bad(BlockFault::Undecodable(format!("header: {e}"))))?;
        let body = bodies
            .get(height)
            .map_err(db_err(path))?
            .ok_or_else(|| bad(BlockFault::MissingBody))?;
        let txs = canonical::decode(body.value())
            .map_err(|e| bad(BlockFault::Undecodable(format!("transactions: {e}"))))?;
        if send
            .send(Ok(CheckedBlock::with_keys(
                Block { header, txs },
                chain_id,
                &mut keys,
            )))
            .is_err()
        {
            return Ok(());
        }
    }
    if let Some((extra, _)) = bodies.last().map_err(db_err(path))?
        && extra.value() > height
    {
        return Err(VerifyError::BadBlock {
            height: extra.value(),
            fault: BlockFault::MissingHeader,
        });
    }
    Ok(())
}

fn state_difference(stored: &State, replayed: &State) -> String {
    if !stored.accounts().eq(replayed.accounts()) {
        "accounts".into()
    } else if !stored.escrows().eq(replayed.escrows()) {
        "escrows".into()
    } else if !stored.stakes().eq(replayed.stakes()) {
        "stakes".into()
    } else if !stored.used_evidence().eq(replayed.used_evidence()) {
        "slashing evidence".into()
    } else if !stored
        .all_voucher_series()
        .eq(replayed.all_voucher_series())
    {
        "voucher series".into()
    } else if !stored.voucher_holdings().eq(replayed.voucher_holdings()) {
        "voucher holdings".into()
    } else {
        format!(
            "burned {} vs replayed {}",
            stored.burned(),
            replayed.burned()
        )
    }
}

/// Reading a stored block at a height, for display tools, without loading the state.
pub fn read_stored_block(dir: &Path, height: u64) -> Result<Option<Block>, StoreError> {
    let path = dir.join(LEDGER_FILE);
    if !path.exists() {
        return Err(StoreError::NotFound(dir.to_owned()));
    }
    let db_handle = Database::open(&path).map_err(db_err(&path))?;
    read_block(&db_handle, &path, height)
}

/// Helpers for tests that damage a ledger on purpose. Not for production use.
#[cfg(any(test, feature = "test-util"))]
pub mod testing {
    use super::*;

    /// Which stored record to damage.
    #[derive(Clone, Copy, Debug)]
    pub enum Record {
        /// A block header.
        Header,
        /// A block's transaction list.
        Body,
    }

    /// The stored length of a record.
    pub fn record_len(
        dir: &Path,
        record: Record,
        height: u64,
    ) -> Result<Option<usize>, StoreError> {
        let path = dir.join(LEDGER_FILE);
        let db_handle = Database::open(&path).map_err(db_err(&path))?;
        let txn = db_handle.begin_read().map_err(db_err(&path))?;
        let table = txn.open_table(table_of(record)).map_err(db_err(&path))?;
        Ok(table
            .get(height)
            .map_err(db_err(&path))?
            .map(|v| v.value().len()))
    }

    /// XORs byte `offset` of a stored record with `mask` (non-zero), in place.
    pub fn flip_byte(
        dir: &Path,
        record: Record,
        height: u64,
        offset: usize,
        mask: u8,
    ) -> Result<(), StoreError> {
        let path = dir.join(LEDGER_FILE);
        let db_handle = Database::open(&path).map_err(db_err(&path))?;
        let txn = db_handle.begin_write().map_err(db_err(&path))?;
        {
            let mut table = txn.open_table(table_of(record)).map_err(db_err(&path))?;
            let mut bytes = table
                .get(height)
                .map_err(db_err(&path))?
                .map(|v| v.value().to_vec())
                .ok_or_else(|| StoreError::Corrupt {
                    what: format!("block {height}"),
                    detail: "missing".into(),
                })?;
            if let Some(byte) = bytes.get_mut(offset) {
                *byte ^= mask;
            }
            table
                .insert(height, bytes.as_slice())
                .map_err(db_err(&path))?;
        }
        txn.commit().map_err(db_err(&path))?;
        Ok(())
    }

    /// Overwrites an account's stored entry without touching any block, as a disk fault or
    /// an attacker with file access would.
    pub fn overwrite_account(
        dir: &Path,
        id: &AccountId,
        account: Account,
    ) -> Result<(), StoreError> {
        let path = dir.join(LEDGER_FILE);
        let db_handle = Database::open(&path).map_err(db_err(&path))?;
        let txn = db_handle.begin_write().map_err(db_err(&path))?;
        {
            let mut table = txn.open_table(ACCOUNTS).map_err(db_err(&path))?;
            table
                .insert(
                    id.as_bytes().as_slice(),
                    canonical::encode(&account).as_slice(),
                )
                .map_err(db_err(&path))?;
        }
        txn.commit().map_err(db_err(&path))?;
        Ok(())
    }

    fn table_of(record: Record) -> TableDefinition<'static, u64, &'static [u8]> {
        match record {
            Record::Header => HEADERS,
            Record::Body => BODIES,
        }
    }
}

#[cfg(test)]
mod tests {
    use agora_core::Signed;

    use super::testing::{Record, flip_byte, record_len};
    use super::*;
    use crate::genesis::DevKeys;
    use crate::tx::TxBody;

    fn dev_chain(dir: &Path) -> (Ledger, DevKeys) {
        let (genesis, keys) = Genesis::dev("store-test", 1_000, 4, Amount(1_000_000));
        (Ledger::create(dir, genesis).unwrap(), keys)
    }

    fn transfers(ledger: &Ledger, keys: &DevKeys, n: u64) -> Vec<Tx> {
        let from = &keys.users[0];
        let start = ledger.state().next_nonce(&from.account());
        (0..n)
            .map(|i| {
                let to = keys.users[1 + (i as usize % 3)].account();
                let body = TxBody::Transfer {
                    to,
                    amount: Amount(10 + i),
                };
                Signed::sign(from, &ledger.genesis().chain_id, start + i, body)
            })
            .collect()
    }

    fn chain_of(dir: &Path, blocks: u64) -> (Ledger, DevKeys) {
        let (mut ledger, keys) = dev_chain(dir);
        for h in 1..=blocks {
            let txs = transfers(&ledger, &keys, 5);
            ledger
                .produce_block(txs, 1_000 + h, &keys.producer)
                .unwrap();
        }
        (ledger, keys)
    }

    #[test]
    fn blocks_survive_reopen_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let (mut ledger, keys) = chain_of(dir.path(), 3);
        let mut bad = transfers(&ledger, &keys, 2);
        let skipping = TxBody::Transfer {
            to: keys.users[2].account(),
            amount: Amount(1),
        };
        bad[1] = Signed::sign(
            &keys.users[0],
            &ledger.genesis().chain_id,
            bad[1].nonce + 7,
            skipping,
        );
        let outcome = ledger.produce_block(bad, 2_000, &keys.producer).unwrap();
        assert_eq!((outcome.included.len(), outcome.rejected.len()), (1, 1));
        assert!(matches!(
            outcome.rejected[0].error,
            crate::LedgerError::NonceSkipped { .. }
        ));
        let root = ledger.state_root();
        let state = ledger.state().clone();
        drop(ledger);

        let mut reopened = Ledger::open(dir.path()).unwrap();
        assert_eq!(reopened.height(), 4);
        assert_eq!(reopened.state(), &state);
        assert_eq!(reopened.state_root(), root);
        assert_eq!(reopened.block(4).unwrap().unwrap().txs.len(), 1);
        drop(reopened);

        let report = verify(dir.path()).unwrap();
        assert_eq!(
            (report.height, report.txs, report.state_root),
            (4, 16, root)
        );
    }

    #[test]
    fn wrong_producer_and_backwards_time_are_refused_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut ledger, keys) = chain_of(dir.path(), 1);
        let txs = transfers(&ledger, &keys, 1);
        assert!(matches!(
            ledger.produce_block(txs.clone(), 5_000, &keys.market),
            Err(StoreError::Build(BuildError::WrongProducer { .. }))
        ));
        assert!(matches!(
            ledger.produce_block(txs, 10, &keys.producer),
            Err(StoreError::Build(BuildError::TimestampRegressed { .. }))
        ));
        assert_eq!(ledger.height(), 1);
    }

    #[test]
    fn create_refuses_an_existing_ledger_and_open_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, _) = dev_chain(dir.path());
        drop(ledger);
        let (genesis, _) = Genesis::dev("again", 1, 1, Amount(1));
        assert!(matches!(
            Ledger::create(dir.path(), genesis),
            Err(StoreError::AlreadyExists(_))
        ));
        assert!(matches!(
            Ledger::open(&dir.path().join("none")),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn a_doctored_state_table_is_caught_on_open_and_by_verify() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, keys) = chain_of(dir.path(), 2);
        let victim = keys.users[1].account();
        let mut account = ledger.state().account(&victim);
        drop(ledger);
        account.balance = Amount(account.balance.0 + 1_000);
        super::testing::overwrite_account(dir.path(), &victim, account).unwrap();
        assert!(matches!(
            Ledger::open(dir.path()),
            Err(StoreError::StateMismatch { height: 2, .. })
        ));
        assert!(matches!(
            verify(dir.path()),
            Err(VerifyError::StoredStateDiffers { height: 2, .. })
        ));
    }

    #[test]
    fn settlement_trait_drives_the_ledger() {
        fn pay<S: Settlement>(
            backend: &mut S,
            from: &Keypair,
            to: AccountId,
            producer: &Keypair,
        ) -> BlockOutcome {
            let nonce = backend.account(&from.account()).unwrap().next_nonce;
            let tx = Signed::sign(
                from,
                backend.chain_id(),
                nonce,
                TxBody::Transfer {
                    to,
                    amount: Amount(9),
                },
            );
            backend.submit(vec![tx], 5_000, producer).unwrap()
        }
        let dir = tempfile::tempdir().unwrap();
        let (mut ledger, keys) = dev_chain(dir.path());
        let to = keys.users[3].account();
        let outcome = pay(&mut ledger, &keys.users[0], to, &keys.producer);
        assert_eq!(outcome.included.len(), 1);
        assert_eq!(Settlement::height(&ledger), 1);
        assert_eq!(
            Settlement::account(&ledger, &to).unwrap().balance,
            Amount(1_000_009)
        );
    }

    #[test]
    fn any_flipped_byte_fails_verify_at_its_height() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, _) = chain_of(dir.path(), 4);
        drop(ledger);
        let pristine = std::fs::read(dir.path().join(LEDGER_FILE)).unwrap();
        for record in [Record::Header, Record::Body] {
            for height in 1..=4u64 {
                let len = record_len(dir.path(), record, height).unwrap().unwrap();
                for offset in [0, len / 3, len / 2, len - 1] {
                    std::fs::write(dir.path().join(LEDGER_FILE), &pristine).unwrap();
                    flip_byte(dir.path(), record, height, offset, 0x04).unwrap();
                    match verify(dir.path()) {
                        Err(VerifyError::BadBlock { height: bad, .. }) => {
                            assert_eq!(bad, height, "{record:?} offset {offset}")
                        }
                        other => panic!("{record:?} {height} offset {offset}: {other:?}"),
                    }
                }
            }
        }
    }
}
