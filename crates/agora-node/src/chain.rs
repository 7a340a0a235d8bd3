//! The block producer: one thread owns the [`Books`] (the embedded [`Ledger`] by default,
//! or the EVM contract with `--settlement evm`); everyone else talks to it through a
//! [`Chain`] handle.
//!
//! Callers send transactions and await their inclusion. The thread takes whatever is
//! pending when it is free, builds ONE block from all of it and commits it (one redb
//! fsync), then answers every caller: group commit, so throughput grows with concurrency
//! while the latency of a lone transaction stays one fsync. The fsync happens on this
//! dedicated thread, never on the async runtime.
//!
//! The market's own transactions (releases and refunds) are sent as bodies; the thread
//! signs them with the market key and the next nonces, which only it tracks. Before
//! signing, each is checked against the escrow it touches (open, enough left), so one bad
//! request cannot refuse itself in the block and thereby skip the nonces of the market
//! transactions after it. If the ledger refuses one anyway, the market transactions that
//! only failed on the resulting nonce gap go into the next block.
//!
//! Reads run on the same thread between blocks, so they see a committed state and never
//! race a block: [`Chain::account`], [`Chain::escrow`], [`Chain::stake`] on either backend,
//! [`Chain::query`] for what only the embedded ledger has (blocks, full tables, replay),
//! which on the EVM backend answers [`ChainError::OnEvm`] naming the chain to read instead.

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agora_core::{AccountId, Amount, ChainId, Hash, Keypair, Signed};
use agora_ledger::{Account, Escrow, EscrowStatus, Ledger, LedgerError, Stake, Tx, TxBody};
use agora_proto::api::SettlementInfo;
use tokio::sync::{oneshot, watch};

use crate::books::Books;

/// Most transactions one block takes; more wait for the next block.
pub const MAX_BLOCK_TXS: usize = 4_096;
/// Rounds a market transaction is retried after a nonce gap caused by another refusal.
const NONCE_RETRIES: u32 = 3;

/// One operation for the ledger.
#[derive(Clone, Debug)]
pub enum LedgerOp {
    /// A transaction signed by someone else (a buyer's escrow, a provider's bond).
    External(Tx),
    /// A body the market key signs (release, refund).
    Market(TxBody),
}

/// Where a transaction landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inclusion {
    /// The transaction's id.
    pub tx_id: Hash,
    /// The block that holds it.
    pub height: u64,
}

/// Why a submission did not land.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ChainError {
    /// The ledger (or the pre-check for market transactions) refused it; nothing changed.
    #[error("{0}")]
    Refused(String),
    /// The backend failed the batch: the embedded ledger could not store the block
    /// (nothing changed), or the EVM chain could not be reached or answered wrongly (what
    /// was confirmed before the failure stands; callers re-read the escrow).
    #[error("the settlement backend failed the batch: {0}")]
    Store(String),
    /// The producer thread is gone.
    #[error("the block producer has stopped")]
    Stopped,
    /// The settlement backend could not be read (an unreachable EVM node, an account with
    /// no known EVM address); nothing changed.
    #[error("the settlement backend could not be read: {0}")]
    Read(String),
    /// Blocks, full escrow and stake tables and the ledger audit exist on the embedded
    /// ledger only; this market settles on an EVM chain.
    #[error(
        "this market settles on EVM chain {evm_chain_id} ({rpc_url}), contract {contract}: read blocks, escrows, stakes and events from that chain (the embedded ledger's views do not exist here)"
    )]
    OnEvm {
        /// The chain's JSON-RPC endpoint.
        rpc_url: String,
        /// The EVM chain id.
        evm_chain_id: u64,
        /// The `AgoraMarket` contract.
        contract: String,
    },
}

/// The chain's progress, published after every block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainProgress {
    /// Height of the last block.
    pub height: u64,
    /// Blocks produced by this process.
    pub blocks: u64,
    /// Transactions included by this process.
    pub txs: u64,
}

type Query = Box<dyn FnOnce(&mut Books) + Send>;
type Reply = oneshot::Sender<Result<Vec<Inclusion>, ChainError>>;

struct Submission {
    ops: Vec<LedgerOp>,
    reply: Reply,
    retries: u32,
}

enum Request {
    Submit(Submission),
    Query(Query),
    Stop,
}

/// A handle to the block producer. Cheap to clone.
#[derive(Clone)]
pub struct Chain {
    requests: std_mpsc::Sender<Request>,
    progress: watch::Receiver<ChainProgress>,
    chain_id: ChainId,
    settlement: SettlementInfo,
}

/// Keys and timing for the producer thread.
pub struct Producer {
    /// Seals blocks.
    pub producer: Keypair,
    /// Signs market transactions.
    pub market: Keypair,
    /// How long to gather transactions after the first one arrives.
    pub block_interval: Duration,
}

impl Chain {
    /// Starts the producer thread over `books`.
    pub fn start(books: Books, keys: Producer) -> std::io::Result<(Chain, JoinHandle<()>)> {
        let (requests, inbox) = std_mpsc::channel();
        let chain_id = books.chain_id();
        let settlement = books.info();
        let last_timestamp_ms = match &books {
            Books::Embedded(ledger) => ledger.tip().timestamp_ms,
            Books::Evm(_) => 0,
        };
        let (progress_tx, progress) = watch::channel(ChainProgress {
            height: books.height(),
            ..ChainProgress::default()
        });
        let thread = std::thread::Builder::new()
            .name("agora-block-producer".into())
            .spawn(move || {
                let mut worker = Worker {
                    last_timestamp_ms,
                    books,
                    keys,
                    progress: progress_tx,
                    pending_retries: Vec::new(),
                };
                worker.run(inbox);
            })?;
        Ok((
            Chain {
                requests,
                progress,
                chain_id,
                settlement,
            },
            thread,
        ))
    }

    /// The chain every signature must name.
    pub fn chain_id(&self) -> &ChainId {
        &self.chain_id
    }

    /// Where the money is kept.
    pub fn settlement(&self) -> &SettlementInfo {
        &self.settlement
    }

    /// The latest progress (height, counts).
    pub fn progress(&self) -> ChainProgress {
        *self.progress.borrow()
    }

    /// Includes `ops` in the next block and waits until it is durably committed. Either
    /// every op lands, or the first refusal is returned (ops before it in the same
    /// submission may have landed; callers re-read the ledger in that case).
    pub async fn submit(&self, ops: Vec<LedgerOp>) -> Result<Vec<Inclusion>, ChainError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Submit(Submission {
                ops,
                reply,
                retries: 0,
            }))
            .map_err(|_| ChainError::Stopped)?;
        answer.await.map_err(|_| ChainError::Stopped)?
    }

    /// Runs `read` over the embedded ledger on the producer thread between blocks and
    /// returns its answer; on the EVM backend, [`ChainError::OnEvm`] (these views live on
    /// the chain there).
    pub async fn query<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut Ledger) -> T + Send + 'static,
    ) -> Result<T, ChainError> {
        if let SettlementInfo::Evm {
            rpc_url,
            evm_chain_id,
            contract,
            ..
        } = &self.settlement
        {
            return Err(ChainError::OnEvm {
                rpc_url: rpc_url.clone(),
                evm_chain_id: *evm_chain_id,
                contract: contract.clone(),
            });
        }
        self.read(move |books| books.ledger().map(read))
            .await?
            .ok_or(ChainError::Stopped)
    }

    /// Runs `read` over either backend on the producer thread between blocks.
    pub async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut Books) -> T + Send + 'static,
    ) -> Result<T, ChainError> {
        let (reply, answer) = oneshot::channel();
        let job: Query = Box::new(move |books| {
            let _ = reply.send(read(books));
        });
        self.requests
            .send(Request::Query(job))
            .map_err(|_| ChainError::Stopped)?;
        answer.await.map_err(|_| ChainError::Stopped)
    }

    /// An account's balance and next nonce, on either backend.
    pub async fn account(&self, id: AccountId) -> Result<Account, ChainError> {
        self.read(move |books| books.account(&id))
            .await?
            .map_err(ChainError::Read)
    }

    /// An order's escrow, on either backend.
    pub async fn escrow(&self, order_id: Hash) -> Result<Option<Escrow>, ChainError> {
        self.read(move |books| books.escrow(&order_id))
            .await?
            .map_err(ChainError::Read)
    }

    /// A provider's stake, on either backend.
    pub async fn stake(&self, id: AccountId) -> Result<Option<Stake>, ChainError> {
        self.read(move |books| books.stake(&id))
            .await?
            .map_err(ChainError::Read)
    }

    /// Asks the thread to finish what is queued and stop.
    pub fn stop(&self) {
        let _ = self.requests.send(Request::Stop);
    }
}

struct Worker {
    books: Books,
    keys: Producer,
    progress: watch::Sender<ChainProgress>,
    last_timestamp_ms: u64,
    pending_retries: Vec<Submission>,
}

impl Worker {
    fn run(&mut self, inbox: std_mpsc::Receiver<Request>) {
        loop {
            let mut batch = std::mem::take(&mut self.pending_retries);
            let mut stop = false;
            if batch.is_empty() {
                match inbox.recv() {
                    Ok(request) => stop |= self.take(request, &mut batch),
                    Err(_) => return,
                }
            }
            if !batch.is_empty() && !self.keys.block_interval.is_zero() {
                let until = Instant::now() + self.keys.block_interval;
                while let Some(left) = until.checked_duration_since(Instant::now()) {
                    match inbox.recv_timeout(left) {
                        Ok(request) => stop |= self.take(request, &mut batch),
                        Err(_) => break,
                    }
                }
            }
            let mut count: usize = batch.iter().map(|s| s.ops.len()).sum();
            while count < MAX_BLOCK_TXS {
                match inbox.try_recv() {
                    Ok(request) => {
                        stop |= self.take(request, &mut batch);
                        count = batch.iter().map(|s| s.ops.len()).sum();
                    }
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.produce(batch);
            }
            if stop && self.pending_retries.is_empty() {
                return;
            }
        }
    }

    /// Files a request: queries run at once, submissions join the batch. Returns whether
    /// it asked to stop.
    fn take(&mut self, request: Request, batch: &mut Vec<Submission>) -> bool {
        match request {
            Request::Submit(s) => batch.push(s),
            Request::Query(q) => q(&mut self.books),
            Request::Stop => return true,
        }
        false
    }

    fn produce(&mut self, batch: Vec<Submission>) {
        let market = self.keys.market.account();
        let chain_id = self.books.chain_id();
        let mut next_nonce = match self.books.account(&market) {
            Ok(account) => account.next_nonce,
            Err(err) => {
                for submission in batch {
                    let _ = submission.reply.send(Err(ChainError::Read(err.clone())));
                }
                return;
            }
        };
        let mut view = EscrowView::default();
        let mut txs = Vec::new();
        // For each submission kept: its reply and the range of its txs in the block.
        let mut kept: Vec<(Submission, std::ops::Range<usize>)> = Vec::new();
        for submission in batch {
            let start = txs.len();
            let mut local = view.clone();
            let mut signed = Vec::with_capacity(submission.ops.len());
            let mut refused = None;
            for op in &submission.ops {
                match op {
                    LedgerOp::External(tx) => {
                        let admitted = self
                            .books
                            .can_carry(tx, &market)
                            .and_then(|()| local.admit_external(&self.books, tx));
                        if let Err(why) = admitted {
                            refused = Some(why);
                            break;
                        }
                        signed.push(tx.clone());
                    }
                    LedgerOp::Market(body) => {
                        let nonce = next_nonce + signed_by(&signed, &market);
                        let tx = Signed::sign(&self.keys.market, &chain_id, nonce, body.clone());
                        let admitted = self
                            .books
                            .can_carry(&tx, &market)
                            .and_then(|()| local.admit(&self.books, body));
                        if let Err(why) = admitted {
                            refused = Some(why);
                            break;
                        }
                        signed.push(tx);
                    }
                }
            }
            if let Some(why) = refused {
                let _ = submission.reply.send(Err(ChainError::Refused(why)));
                continue;
            }
            next_nonce += signed_by(&signed, &market);
            view = local;
            txs.extend(signed);
            kept.push((submission, start..txs.len()));
        }
        if txs.is_empty() {
            return;
        }
        let ids: Vec<Hash> = txs.iter().map(Signed::id).collect();
        let timestamp = self.tick();
        let outcome = match self.books.submit(txs, timestamp, &self.keys.producer) {
            Ok(outcome) => outcome,
            Err(err) => {
                tracing::error!("block production failed: {err}");
                for (submission, _) in kept {
                    let _ = submission.reply.send(Err(ChainError::Store(err.clone())));
                }
                return;
            }
        };
        let height = outcome.header.height;
        let rejected: HashMap<usize, LedgerError> = outcome
            .rejected
            .into_iter()
            .map(|r| (r.index, r.error))
            .collect();
        let included = ids.len() - rejected.len();
        self.progress.send_modify(|p| {
            p.height = height;
            p.blocks += 1;
            p.txs += included as u64;
        });
        for (submission, range) in kept {
            let first_refusal = range.clone().find_map(|i| rejected.get(&i));
            match first_refusal {
                None => {
                    let inclusions = range
                        .map(|i| Inclusion {
                            tx_id: ids[i],
                            height,
                        })
                        .collect();
                    let _ = submission.reply.send(Ok(inclusions));
                }
                Some(err)
                    if is_market_nonce_gap(err, &market) && submission.retries < NONCE_RETRIES =>
                {
                    tracing::warn!(
                        "market transaction hit a nonce gap ({err}); retrying in the next block"
                    );
                    self.pending_retries.push(Submission {
                        retries: submission.retries + 1,
                        ..submission
                    });
                }
                Some(err) => {
                    let _ = submission
                        .reply
                        .send(Err(ChainError::Refused(err.to_string())));
                }
            }
        }
    }

    /// The block timestamp: the wall clock, never going backwards.
    fn tick(&mut self) -> u64 {
        self.last_timestamp_ms = self.last_timestamp_ms.max(crate::clock::now_ms());
        self.last_timestamp_ms
    }
}

/// How many of `txs` `signer` signed.
fn signed_by(txs: &[Tx], signer: &AccountId) -> u64 {
    txs.iter().filter(|tx| &tx.signer == signer).count() as u64
}

fn is_market_nonce_gap(err: &LedgerError, market: &AccountId) -> bool {
    matches!(err, LedgerError::NonceSkipped { signer, .. } | LedgerError::NonceReused { signer, .. } if signer == market)
}

/// What the accounts and escrows touched by this block will look like, so market
/// transactions are checked before they are signed, and others' transactions that would
/// certainly be refused (wrong nonce, balance short, escrow id taken) are answered
/// without producing a block: a refused request leaves the ledger exactly as it was.
#[derive(Clone, Default)]
struct EscrowView {
    touched: HashMap<Hash, (Amount, bool)>,
    nonces: HashMap<AccountId, u64>,
    spent: HashMap<AccountId, Amount>,
}

impl EscrowView {
    /// Checks a transaction signed by someone else and records its nonce and spending.
    fn admit_external(&mut self, books: &Books, tx: &Tx) -> Result<(), String> {
        let signer = tx.signer;
        let account = books.account(&signer)?;
        let expected = self
            .nonces
            .get(&signer)
            .copied()
            .unwrap_or(account.next_nonce);
        let found = tx.nonce;
        if found < expected {
            return Err(LedgerError::NonceReused {
                signer,
                expected,
                found,
            }
            .to_string());
        }
        if found > expected {
            return Err(LedgerError::NonceSkipped {
                signer,
                expected,
                found,
            }
            .to_string());
        }
        let spends = match &tx.body {
            TxBody::Transfer { amount, .. } | TxBody::Bond { amount } => *amount,
            TxBody::OpenEscrow {
                order_id, amount, ..
            } => {
                if self.touched.contains_key(order_id) || books.escrow(order_id)?.is_some() {
                    return Err(format!(
                        "order {order_id} already has an escrow; order ids are used once"
                    ));
                }
                self.touched.insert(*order_id, (*amount, true));
                *amount
            }
            // What the mint locks; the ledger itself checks the quote and the terms.
            TxBody::MintVoucher { quote, cu } => {
                quote.body.terms.backing(*cu).unwrap_or(Amount(u64::MAX))
            }
            // A redemption opens an escrow out of voucher backing, not out of the balance.
            TxBody::RedeemVoucher {
                terms,
                cu,
                order_id,
                ..
            } => {
                if self.touched.contains_key(order_id) || books.escrow(order_id)?.is_some() {
                    return Err(format!(
                        "order {order_id} already has an escrow; order ids are used once"
                    ));
                }
                let amount = terms.backing(*cu).unwrap_or(Amount(u64::MAX));
                self.touched.insert(*order_id, (amount, true));
                Amount::ZERO
            }
            _ => Amount::ZERO,
        };
        let spent = self.spent.get(&signer).copied().unwrap_or(Amount::ZERO);
        let need = spent.checked_add(spends).map_err(|e| e.to_string())?;
        let have = account.balance;
        if need > have {
            return Err(LedgerError::InsufficientBalance {
                account: signer,
                have,
                need,
            }
            .to_string());
        }
        self.spent.insert(signer, need);
        self.nonces.insert(signer, expected + 1);
        Ok(())
    }

    fn current(&self, books: &Books, order_id: &Hash) -> Result<Option<(Amount, bool)>, String> {
        if let Some(seen) = self.touched.get(order_id) {
            return Ok(Some(*seen));
        }
        Ok(books
            .escrow(order_id)?
            .map(|e| (e.remaining, e.status == EscrowStatus::Open)))
    }

    /// Checks `body` against the escrow it touches and records its effect.
    fn admit(&mut self, books: &Books, body: &TxBody) -> Result<(), String> {
        match body {
            TxBody::ReleaseEscrow { order_id, payouts } => {
                let (remaining, open) = self
                    .current(books, order_id)?
                    .ok_or_else(|| format!("no escrow for order {order_id}"))?;
                if !open {
                    return Err(format!("the escrow of order {order_id} is already closed"));
                }
                let total = Amount::sum(payouts.iter().map(|(_, a)| *a))
                    .map_err(|e| format!("payouts overflow: {e}"))?;
                let left = remaining.checked_sub(total).map_err(|_| {
                    format!("payouts of {total} exceed the {remaining} left in escrow {order_id}")
                })?;
                self.touched.insert(*order_id, (left, !left.is_zero()));
            }
            TxBody::RefundEscrow { order_id } => {
                let (_, open) = self
                    .current(books, order_id)?
                    .ok_or_else(|| format!("no escrow for order {order_id}"))?;
                if !open {
                    return Err(format!("the escrow of order {order_id} is already closed"));
                }
                self.touched.insert(*order_id, (Amount::ZERO, false));
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_ledger::{DevKeys, Genesis};
    use proptest::prelude::*;

    const USERS: usize = 40;

    fn start(dir: &std::path::Path) -> (Chain, DevKeys) {
        let (genesis, keys) = Genesis::dev("chain-test", 1, USERS, Amount::agr(1_000));
        let ledger = Ledger::create(dir, genesis).unwrap();
        let producer = Producer {
            producer: keys.producer.clone(),
            market: keys.market.clone(),
            block_interval: Duration::ZERO,
        };
        (
            Chain::start(Books::Embedded(ledger), producer).unwrap().0,
            keys,
        )
    }

    fn escrow(key: &Keypair, chain: &Chain, nonce: u64, order: u8, amount: u64) -> LedgerOp {
        LedgerOp::External(Signed::sign(
            key,
            chain.chain_id(),
            nonce,
            TxBody::OpenEscrow {
                order_id: Hash::of(&[order]),
                amount: Amount(amount),
                deadline_ms: u64::MAX,
            },
        ))
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn concurrent_submissions_share_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let (chain, keys) = start(dir.path());
        runtime().block_on(async {
            let mut tasks = Vec::new();
            for key in keys.users.clone() {
                let chain = chain.clone();
                tasks.push(tokio::spawn(async move {
                    let to = Keypair::from_seed("payee").account();
                    let tx = Signed::sign(
                        &key,
                        chain.chain_id(),
                        0,
                        TxBody::Transfer {
                            to,
                            amount: Amount(5),
                        },
                    );
                    chain.submit(vec![LedgerOp::External(tx)]).await
                }));
            }
            for task in tasks {
                assert!(task.await.unwrap().is_ok());
            }
        });
        let progress = chain.progress();
        assert_eq!(progress.txs, USERS as u64);
        assert!(
            progress.blocks < USERS as u64 / 2,
            "group commit batched {progress:?}"
        );
        chain.stop();
    }

    #[test]
    fn a_doomed_transaction_makes_no_block() {
        let dir = tempfile::tempdir().unwrap();
        let (chain, keys) = start(dir.path());
        runtime().block_on(async {
            let skipped = escrow(&keys.users[0], &chain, 3, 1, 10);
            let err = chain.submit(vec![skipped]).await.unwrap_err();
            assert!(err.to_string().contains("skips ahead"), "{err}");
            let broke = escrow(&keys.users[0], &chain, 0, 1, u64::MAX);
            assert!(chain.submit(vec![broke]).await.is_err());
            assert!(
                chain
                    .submit(vec![escrow(&keys.users[0], &chain, 0, 1, 10)])
                    .await
                    .is_ok()
            );
            let again = escrow(&keys.users[1], &chain, 0, 1, 10);
            assert!(
                chain
                    .submit(vec![again])
                    .await
                    .unwrap_err()
                    .to_string()
                    .contains("already has an escrow")
            );
        });
        assert_eq!(
            chain.progress().height,
            1,
            "only the good escrow made a block"
        );
        chain.stop();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        /// Whatever mix of releases and refunds is thrown at a few escrows at once, each
        /// either lands or is refused up front: no escrow is paid beyond what it holds,
        /// the market's nonces never gap, and the ledger stays conserved.
        #[test]
        fn market_operations_never_overdraw_or_gap(ops in proptest::collection::vec((0u8..3, proptest::option::of(1u64..60)), 1..24)) {
            let dir = tempfile::tempdir().unwrap();
            let (chain, keys) = start(dir.path());
            let payee = keys.users[5].account();
            let outcomes = runtime().block_on(async {
                for order in 0..3u8 {
                    chain.submit(vec![escrow(&keys.users[usize::from(order)], &chain, 0, order, 100)]).await.unwrap();
                }
                let mut tasks = Vec::new();
                for (order, release) in ops.clone() {
                    let chain = chain.clone();
                    let order_id = Hash::of(&[order]);
                    let body = match release {
                        Some(amount) => TxBody::ReleaseEscrow { order_id, payouts: vec![(payee, Amount(amount))] },
                        None => TxBody::RefundEscrow { order_id },
                    };
                    tasks.push(tokio::spawn(async move { chain.submit(vec![LedgerOp::Market(body)]).await }));
                }
                let mut outcomes = Vec::new();
                for task in tasks {
                    outcomes.push(task.await.unwrap());
                }
                let market = keys.market.account();
                let (conserved, nonce, remaining) = chain.query(move |ledger| {
                    let state = ledger.state();
                    let remaining: Vec<Amount> = (0..3u8).map(|o| state.escrow(&Hash::of(&[o])).unwrap().remaining).collect();
                    (state.check_conservation().is_ok(), state.next_nonce(&market), remaining)
                }).await.unwrap();
                (outcomes, conserved, nonce, remaining)
            });
            let (outcomes, conserved, nonce, remaining) = outcomes;
            prop_assert!(conserved);
            let landed = outcomes.iter().filter(|o| o.is_ok()).count() as u64;
            prop_assert_eq!(nonce, landed, "every landed market tx used exactly one nonce");
            for outcome in &outcomes {
                if let Err(e) = outcome {
                    prop_assert!(matches!(e, ChainError::Refused(_)), "{}", e);
                    prop_assert!(!e.to_string().contains("nonce"), "no nonce gap reached a caller: {}", e);
                }
            }
            for left in remaining {
                prop_assert!(left.0 <= 100);
            }
            chain.stop();
        }
    }
}
