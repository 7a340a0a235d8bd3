//! A whole market in one process: the ledger, the matching engine, and provider workers
//! on their own threads, wired the way the networked market node will wire them.
//!
//! The market side owns the ledger (it is the block producer and the market authority)
//! and the order book. Providers are threads with their own keys: they receive an
//! assignment, run it in the sandboxed executor, and answer with their outputs and a
//! signed receipt. The market checks the receipt (signature, signer, digest over the
//! delivered outputs, fuel within budget) before it pays anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use agora_core::{
    AccountId, Amount, ChainId, Fuel, Hash, Keypair, Price, Receipt, Signed, SignedReceipt,
};
use agora_exec::{Executor, Outcome, WasmExecutor, WasmModule, result_digest};
use agora_ledger::{BlockOutcome, DevKeys, Genesis, Ledger, Tx, TxBody};
use agora_market::{
    Ask, AskId, Demand, Market, MatchOutcome, Order, OrderId, ReleaseReason, ReputationEvent,
    Requirements, ResourceClass, Resources, Winner,
};
use anyhow::{Context, bail};

/// What each provider starts with and bonds.
pub const PROVIDER_FUNDS: Amount = Amount::agr(1_000);
/// What each provider bonds as stake.
pub const PROVIDER_STAKE: Amount = Amount::agr(100);
/// The buyer's starting balance.
pub const BUYER_FUNDS: Amount = Amount::agr(1_000);
/// The cpu one job reserves on its provider (one core); each provider offers one core, so
/// the engine's capacity accounting decides who is free.
const JOB_CPU_MILLIS: u64 = 1_000;
/// How long an order may take before anyone can refund its escrow.
const ORDER_DEADLINE_MS: u64 = 10 * 60 * 1_000;

/// A job handed to a provider.
struct Assignment {
    order_id: Hash,
    module: WasmModule,
    args: Vec<String>,
    fuel_budget: Fuel,
}

/// A provider's answer: outputs plus a signed receipt, or why it could not run the job.
pub struct Delivery {
    /// Which order.
    pub order_id: Hash,
    /// The provider's account.
    pub provider: AccountId,
    /// The run and its receipt, or the executor's error.
    pub result: Result<(SignedReceipt, Outcome), String>,
}

/// A provider worker: its key and the channel it takes assignments on.
struct ProviderWorker {
    account: AccountId,
    assignments: Sender<Assignment>,
    thread: JoinHandle<()>,
}

/// An order that is matched and running.
pub struct InFlight {
    /// The buyer's task index.
    pub task: usize,
    /// The winning provider and price.
    pub winner: Winner,
    /// The escrowed budget.
    pub escrow: Amount,
    /// The fuel budget.
    pub fuel_budget: Fuel,
    /// When the escrow was opened.
    pub opened: Instant,
}

/// How an order ended.
pub struct Settled {
    /// Provider paid (none when refunded).
    pub provider: Option<AccountId>,
    /// Price per CU.
    pub price: Option<Price>,
    /// Fuel billed.
    pub fuel: Fuel,
    /// What the buyer paid, fee included.
    pub cost: Amount,
    /// Escrow open → settled, in ms.
    pub latency_ms: f64,
    /// `settled`, or why it was refunded.
    pub outcome: String,
}

/// The market, its ledger and its providers.
pub struct LocalMarket {
    chain: ChainId,
    keys: DevKeys,
    ledger: Ledger,
    market: Market,
    workers: Vec<ProviderWorker>,
    deliveries: Receiver<Delivery>,
    last_timestamp_ms: u64,
}

impl LocalMarket {
    /// A fresh chain in `data_dir` with a funded buyer and `providers` funded providers
    /// whose workers run jobs with `executor`.
    pub fn start(
        data_dir: &Path,
        providers: usize,
        executor: Arc<WasmExecutor>,
    ) -> anyhow::Result<Self> {
        let now = wall_clock_ms();
        let (mut genesis, keys) = Genesis::dev("agora-demo", now, providers + 1, PROVIDER_FUNDS);
        genesis.allocations[0].1 = BUYER_FUNDS;
        let chain = genesis.chain_id.clone();
        let ledger = Ledger::create(data_dir, genesis).context("creating the demo ledger")?;
        let (deliver, deliveries) = mpsc::channel();
        let workers = keys.users[1..]
            .iter()
            .map(|key| {
                spawn_provider(
                    key.clone(),
                    chain.clone(),
                    executor.clone(),
                    deliver.clone(),
                )
            })
            .collect();
        Ok(LocalMarket {
            chain,
            keys,
            ledger,
            market: Market::default(),
            workers,
            deliveries,
            last_timestamp_ms: now,
        })
    }

    /// The buyer's account.
    pub fn buyer(&self) -> AccountId {
        self.keys.users[0].account()
    }

    /// The treasury's account.
    pub fn treasury(&self) -> AccountId {
        self.keys.treasury.account()
    }

    /// The provider accounts, in order.
    pub fn providers(&self) -> Vec<AccountId> {
        self.workers.iter().map(|w| w.account).collect()
    }

    /// The ledger's current state.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Providers bond stake (one block) and post one ask each, priced `base_price` and up.
    pub fn onboard_providers(&mut self, base_price: Price) -> anyhow::Result<()> {
        let bonds = self.keys.users[1..]
            .iter()
            .map(|key| {
                self.sign(
                    key,
                    TxBody::Bond {
                        amount: PROVIDER_STAKE,
                    },
                )
            })
            .collect();
        self.commit(bonds).context("bonding provider stake")?;
        let now = self.tick();
        for (i, worker) in self.workers.iter().enumerate() {
            self.market.set_stake(worker.account, PROVIDER_STAKE);
            let region = if i % 2 == 0 { "eu" } else { "us" };
            // Prices step by 10% so the cheapest free provider visibly wins first.
            let price = Price(base_price.0 + base_price.0 * i as u64 / 10);
            self.market
                .upsert_ask(provider_ask(worker.account, region, price, now), now)
                .with_context(|| format!("posting provider {i}'s ask"))?;
        }
        Ok(())
    }

    /// Locks the budget for `task` in escrow (one block) and matches it at once. Returns
    /// the running order, or the refund when nothing can serve it.
    pub fn submit(
        &mut self,
        task: usize,
        order_id: Hash,
        module: &WasmModule,
        args: &[String],
        fuel_budget: Fuel,
        cap: Price,
    ) -> anyhow::Result<Result<InFlight, Settled>> {
        let opened = Instant::now();
        let escrow = cap
            .max_cost(fuel_budget)
            .context("job budget overflows an amount")?;
        let now = self.tick();
        let buyer = self.keys.users[0].clone();
        let open = TxBody::OpenEscrow {
            order_id,
            amount: escrow,
            deadline_ms: now + ORDER_DEADLINE_MS,
        };
        let tx = self.sign(&buyer, open);
        self.commit(vec![tx]).context("opening escrow")?;
        let order = buyer_order(
            order_id,
            buyer.account(),
            fuel_budget,
            cap,
            now + ORDER_DEADLINE_MS,
        );
        match self
            .market
            .submit_order(order, now)
            .context("submitting the order")?
        {
            MatchOutcome::Filled(fill) => {
                let winner = fill
                    .winners
                    .into_iter()
                    .next()
                    .context("a fill with no winner")?;
                let worker = self.worker(&winner.provider)?;
                let assignment = Assignment {
                    order_id,
                    module: module.clone(),
                    args: args.to_vec(),
                    fuel_budget,
                };
                worker
                    .assignments
                    .send(assignment)
                    .context("provider worker stopped")?;
                Ok(Ok(InFlight {
                    task,
                    winner,
                    escrow,
                    fuel_budget,
                    opened,
                }))
            }
            MatchOutcome::NoMatch(why) => {
                let refund = self.refund(order_id, opened, format!("refunded: {why}"))?;
                Ok(Err(refund))
            }
        }
    }

    /// Waits for the next provider delivery.
    pub fn next_delivery(&self) -> anyhow::Result<Delivery> {
        self.deliveries
            .recv()
            .context("every provider worker stopped")
    }

    /// Settles a delivery: checks the receipt, pays the provider price × fuel (capped by
    /// the escrow, market fee to the treasury), refunds the rest, in one block. A bad or
    /// failed delivery is refunded and counted against the provider's reputation.
    pub fn settle(&mut self, flight: &InFlight, delivery: &Delivery) -> anyhow::Result<Settled> {
        let checked = delivery
            .result
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|(receipt, outcome)| self.check_receipt(flight, delivery, receipt, outcome));
        let match_id = flight.winner.match_id;
        let now = self.tick();
        let fuel = match checked {
            Ok(fuel) => fuel,
            Err(reason) => {
                self.market.release(&match_id, ReleaseReason::Failed)?;
                self.market
                    .record_event(delivery.provider, ReputationEvent::Failure, now);
                return self.refund(
                    delivery.order_id,
                    flight.opened,
                    format!("refunded: {reason}"),
                );
            }
        };
        let cost = flight
            .winner
            .price
            .cost(fuel)
            .context("bill overflows")?
            .min(flight.escrow);
        let market_key = self.keys.market.clone();
        let mut txs = Vec::with_capacity(2);
        if !cost.is_zero() {
            let release = TxBody::ReleaseEscrow {
                order_id: delivery.order_id,
                payouts: vec![(delivery.provider, cost)],
            };
            txs.push(self.sign(&market_key, release));
        }
        if cost < flight.escrow {
            let refund = TxBody::RefundEscrow {
                order_id: delivery.order_id,
            };
            txs.push(signed_after(
                &market_key,
                &self.chain,
                &txs,
                self.nonce(&market_key),
                refund,
            ));
        }
        self.commit(txs).context("settling")?;
        self.market.complete(&match_id)?;
        self.market
            .record_event(delivery.provider, ReputationEvent::VerifiedCompletion, now);
        Ok(Settled {
            provider: Some(delivery.provider),
            price: Some(flight.winner.price),
            fuel,
            cost,
            latency_ms: flight.opened.elapsed().as_secs_f64() * 1e3,
            outcome: "settled".into(),
        })
    }

    /// Checks a provider's receipt against what it delivered; returns the fuel to bill.
    fn check_receipt(
        &self,
        flight: &InFlight,
        delivery: &Delivery,
        receipt: &SignedReceipt,
        outcome: &Outcome,
    ) -> Result<Fuel, String> {
        receipt
            .verify(&self.chain)
            .map_err(|e| format!("receipt rejected: {e}"))?;
        let body = &receipt.body;
        if !receipt.signer_is_provider() || body.provider != flight.winner.provider {
            return Err("receipt not signed by the matched provider".into());
        }
        if body.order_id != delivery.order_id {
            return Err("receipt names another order".into());
        }
        let delivered = result_digest(
            outcome.exit_code,
            &outcome.stdout.data,
            &outcome.stderr.data,
            &outcome.outputs,
        );
        if delivered != body.result_digest {
            return Err("delivered outputs do not match the receipt's digest".into());
        }
        if body.fuel_used > flight.fuel_budget {
            return Err("receipt claims more fuel than the budget".into());
        }
        Ok(body.fuel_used)
    }

    fn refund(
        &mut self,
        order_id: Hash,
        opened: Instant,
        outcome: String,
    ) -> anyhow::Result<Settled> {
        let market_key = self.keys.market.clone();
        let tx = self.sign(&market_key, TxBody::RefundEscrow { order_id });
        self.commit(vec![tx]).context("refunding escrow")?;
        Ok(Settled {
            provider: None,
            price: None,
            fuel: Fuel(0),
            cost: Amount::ZERO,
            latency_ms: opened.elapsed().as_secs_f64() * 1e3,
            outcome,
        })
    }

    /// Stops the provider workers and closes the ledger.
    pub fn shut_down(self) {
        let LocalMarket {
            workers, ledger, ..
        } = self;
        for worker in workers {
            drop(worker.assignments);
            // A worker that panicked has nothing left to clean up.
            let _ = worker.thread.join();
        }
        drop(ledger);
    }

    fn worker(&self, provider: &AccountId) -> anyhow::Result<&ProviderWorker> {
        self.workers
            .iter()
            .find(|w| &w.account == provider)
            .context("matched an unknown provider")
    }

    fn nonce(&self, key: &Keypair) -> u64 {
        self.ledger.state().next_nonce(&key.account())
    }

    fn sign(&self, key: &Keypair, body: TxBody) -> Tx {
        Signed::sign(key, &self.chain, self.nonce(key), body)
    }

    /// Produces one block from `txs`; any refusal is a bug in the demo, so it is an error.
    fn commit(&mut self, txs: Vec<Tx>) -> anyhow::Result<BlockOutcome> {
        let timestamp = self.tick();
        let outcome = self
            .ledger
            .produce_block(txs, timestamp, &self.keys.producer)?;
        if let Some(rejected) = outcome.rejected.first() {
            bail!("the ledger refused a transaction: {}", rejected.error);
        }
        Ok(outcome)
    }

    /// The wall clock in ms, never going backwards (block timestamps may not regress).
    fn tick(&mut self) -> u64 {
        self.last_timestamp_ms = self.last_timestamp_ms.max(wall_clock_ms());
        self.last_timestamp_ms
    }
}

/// Signs `body` with the nonce after those `key` already used in `earlier`.
fn signed_after(key: &Keypair, chain: &ChainId, earlier: &[Tx], next: u64, body: TxBody) -> Tx {
    let used = earlier
        .iter()
        .filter(|tx| tx.signer == key.account())
        .count() as u64;
    Signed::sign(key, chain, next + used, body)
}

fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn provider_ask(provider: AccountId, region: &str, price: Price, now: u64) -> Ask {
    Ask {
        id: AskId::named(&provider, "demo"),
        provider,
        capacity: Resources {
            cpu_millis: JOB_CPU_MILLIS,
            memory_bytes: 1 << 30,
            disk_bytes: 1 << 30,
            gpus: Vec::new(),
        },
        arch: std::env::consts::ARCH.into(),
        features: BTreeSet::from(["wasm".to_string()]),
        attributes: BTreeMap::from([("region".to_string(), region.to_string())]),
        prices: BTreeMap::from([(ResourceClass::cpu(), price)]),
        min_job: Fuel(1),
        max_job: Fuel::compute_units(1_000),
        expires_ms: now + 3_600_000,
    }
}

fn buyer_order(
    order_id: Hash,
    buyer: AccountId,
    fuel: Fuel,
    cap: Price,
    deadline_ms: u64,
) -> Order {
    Order {
        id: OrderId(order_id),
        buyer,
        demand: Demand {
            cpu_millis: JOB_CPU_MILLIS,
            memory_bytes: 256 << 20,
            disk_bytes: 64 << 20,
            gpu: None,
        },
        requirements: Requirements {
            features: BTreeSet::from(["wasm".to_string()]),
            min_stake: PROVIDER_STAKE,
            ..Requirements::default()
        },
        fuel,
        cap,
        deadline_ms,
    }
}

/// Starts a provider worker thread: it runs each assignment and signs a receipt for it.
fn spawn_provider(
    key: Keypair,
    chain: ChainId,
    executor: Arc<WasmExecutor>,
    deliver: Sender<Delivery>,
) -> ProviderWorker {
    let (assignments, inbox) = mpsc::channel::<Assignment>();
    let account = key.account();
    let thread = std::thread::spawn(move || {
        for (nonce, job) in inbox.into_iter().enumerate() {
            let result = run_assignment(&key, &chain, nonce as u64, &executor, &job);
            if deliver
                .send(Delivery {
                    order_id: job.order_id,
                    provider: account,
                    result,
                })
                .is_err()
            {
                break;
            }
        }
    });
    ProviderWorker {
        account,
        assignments,
        thread,
    }
}

fn run_assignment(
    key: &Keypair,
    chain: &ChainId,
    nonce: u64,
    executor: &WasmExecutor,
    job: &Assignment,
) -> Result<(SignedReceipt, Outcome), String> {
    let mut spec = executor.job(job.order_id, job.module.clone());
    spec.args = job.args.clone();
    spec.limits.fuel = job.fuel_budget;
    let outcome = executor.run(&spec).map_err(|e| e.to_string())?;
    let receipt = Receipt {
        order_id: job.order_id,
        provider: key.account(),
        module: outcome.module_hash,
        result_digest: outcome.digest,
        fuel_used: outcome.fuel_used,
        wall_ms: outcome.wall_time.as_millis() as u64,
    };
    Ok((Signed::sign(key, chain, nonce, receipt), outcome))
}
