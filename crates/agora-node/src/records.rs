//! Durable order records (`orders.redb` in the data directory).
//!
//! The ledger is the source of truth for money; these records hold what the ledger does
//! not: the buyer's signed order (to reassign it after a restart), its history and its
//! result. One writer thread owns the database and commits whatever is queued in ONE
//! write transaction (one fsync), the same group commit as the block producer, so
//! persisting a state change costs the caller no disk wait unless it asks for one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use agora_core::{AccountId, Amount, Hash, Price, canonical};
use agora_proto::api::JobResult;
use agora_proto::{OrderEvent, OrderState, SignedOrder};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::error::NodeError;
use crate::verification::VerificationRecord;

/// The records file in the data directory.
pub const RECORDS_FILE: &str = "orders.redb";

const ORDERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("orders");

/// Everything the node remembers about one order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    /// The buyer-signed order.
    pub order: SignedOrder,
    /// Where it is.
    pub state: OrderState,
    /// The block holding its escrow (0 while the escrow is not yet included).
    pub escrow_height: u64,
    /// The provider it is (or was last) assigned to.
    pub provider: Option<AccountId>,
    /// The price per CU that provider is paid.
    pub price: Option<Price>,
    /// What the buyer paid, fee included.
    pub cost: Amount,
    /// What went back to the buyer.
    pub refunded: Amount,
    /// Assignments so far.
    pub attempts: u32,
    /// Providers that already failed it (not offered it again).
    pub tried: Vec<AccountId>,
    /// Unix ms it was accepted.
    pub created_ms: u64,
    /// Unix ms it reached a final state.
    pub finished_ms: Option<u64>,
    /// Why it was refunded.
    pub refund_reason: Option<String>,
    /// Its history.
    pub events: Vec<OrderEvent>,
    /// Its result, once settled.
    pub result: Option<JobResult>,
    /// How its result is being checked: the policy's flow, every run, the slashes.
    pub verification: VerificationRecord,
}

impl OrderRecord {
    /// The order's id.
    pub fn id(&self) -> Hash {
        agora_proto::signed_order_id(&self.order)
    }
}

enum Write {
    Put(Hash, Vec<u8>),
    Delete(Hash),
}

/// Who waits for a write to be durable, if anyone.
type Waiter = Option<oneshot::Sender<Result<(), String>>>;

enum Message {
    Write(Write, Waiter),
    Stop,
}

/// A handle to the records writer. Cheap to clone.
#[derive(Clone)]
pub struct RecordStore {
    writes: std_mpsc::Sender<Message>,
}

impl RecordStore {
    /// Opens (or creates) the records in `dir`, returns every stored record and starts
    /// the writer thread.
    pub fn open(dir: &Path) -> Result<(RecordStore, Vec<OrderRecord>, JoinHandle<()>), NodeError> {
        let path = dir.join(RECORDS_FILE);
        let records_err = |detail: String| NodeError::Records {
            path: path.clone(),
            detail,
        };
        let db = Database::create(&path).map_err(|e| records_err(e.to_string()))?;
        let records = load_all(&db).map_err(records_err)?;
        let (writes, inbox) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("agora-order-records".into())
            .spawn(move || write_loop(db, path, inbox))
            .map_err(|source| NodeError::Io {
                action: "start the records writer for",
                path: dir.to_owned(),
                source,
            })?;
        Ok((RecordStore { writes }, records, thread))
    }

    /// Queues `record` to be stored; returns at once.
    pub fn save(&self, record: &OrderRecord) {
        let _ = self.writes.send(Message::Write(
            Write::Put(record.id(), canonical::encode(record)),
            None,
        ));
    }

    /// Stores `record` and waits until it is durable.
    pub async fn save_durably(&self, record: &OrderRecord) -> Result<(), String> {
        self.wait(Write::Put(record.id(), canonical::encode(record)))
            .await
    }

    /// Deletes the record of `id` and waits until that is durable.
    pub async fn delete(&self, id: Hash) -> Result<(), String> {
        self.wait(Write::Delete(id)).await
    }

    async fn wait(&self, write: Write) -> Result<(), String> {
        let (done, answer) = oneshot::channel();
        self.writes
            .send(Message::Write(write, Some(done)))
            .map_err(|_| "the records writer has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the records writer has stopped".to_string())?
    }

    /// Asks the writer to store what is queued and stop.
    pub fn stop(&self) {
        let _ = self.writes.send(Message::Stop);
    }
}

fn load_all(db: &Database) -> Result<Vec<OrderRecord>, String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    txn.open_table(ORDERS).map_err(|e| e.to_string())?;
    txn.commit().map_err(|e| e.to_string())?;
    let read = db.begin_read().map_err(|e| e.to_string())?;
    let table = read.open_table(ORDERS).map_err(|e| e.to_string())?;
    let mut records = Vec::new();
    for entry in table.iter().map_err(|e| e.to_string())? {
        let (key, value) = entry.map_err(|e| e.to_string())?;
        let record: OrderRecord = canonical::decode(value.value())
            .map_err(|e| format!("record {} does not decode ({e})", hex::encode(key.value())))?;
        records.push(record);
    }
    Ok(records)
}

fn write_loop(db: Database, path: PathBuf, inbox: std_mpsc::Receiver<Message>) {
    loop {
        let Ok(first) = inbox.recv() else { return };
        let mut stop = false;
        let mut batch = Vec::new();
        let mut take = |message: Message, batch: &mut Vec<_>| match message {
            Message::Write(write, done) => batch.push((write, done)),
            Message::Stop => stop = true,
        };
        take(first, &mut batch);
        while let Ok(message) = inbox.try_recv() {
            take(message, &mut batch);
        }
        if !batch.is_empty() {
            commit(&db, &path, batch);
        }
        if stop {
            return;
        }
    }
}

/// Writes a batch in one transaction; later writes of the same id win.
fn commit(db: &Database, path: &Path, batch: Vec<(Write, Waiter)>) {
    let mut latest: HashMap<Hash, Option<Vec<u8>>> = HashMap::new();
    let mut waiters = Vec::new();
    for (write, done) in batch {
        match write {
            Write::Put(id, bytes) => latest.insert(id, Some(bytes)),
            Write::Delete(id) => latest.insert(id, None),
        };
        waiters.extend(done);
    }
    let result = write_txn(db, &latest).map_err(|e| {
        tracing::error!("order records in {}: {e}", path.display());
        e
    });
    for done in waiters {
        let _ = done.send(result.clone());
    }
}

fn write_txn(db: &Database, latest: &HashMap<Hash, Option<Vec<u8>>>) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut table = txn.open_table(ORDERS).map_err(|e| e.to_string())?;
        for (id, bytes) in latest {
            let key = id.as_bytes().as_slice();
            match bytes {
                Some(bytes) => {
                    table
                        .insert(key, bytes.as_slice())
                        .map_err(|e| e.to_string())?;
                }
                None => {
                    table.remove(key).map_err(|e| e.to_string())?;
                }
            }
        }
    }
    txn.commit().map_err(|e| e.to_string())
}
