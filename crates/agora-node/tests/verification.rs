//! Verification on the market node end to end: real agora-net providers (some lying with
//! a consistent wrong result), real executor runs, signed receipts, and the real ledger
//! that pays, refunds and slashes.

mod common;

use std::time::Duration;

use agora_core::{Amount, ChainId, Hash, Price};
use agora_proto::{OrderState, OrderView, VerifyPolicy};
use common::*;

/// What honest providers ask per CU.
const PRICE: Price = Price(10_000_000_000);
/// The buyer's cap per CU.
const CAP: Price = Price(20_000_000_000);
/// Stake each provider bonds: enough for every policy's deterrent at this cap.
const STAKE: Amount = Amount::agr(500);

struct Net {
    _dir: tempfile::TempDir,
    node: agora_node::RunningMarket,
    api: Api,
    keys: agora_ledger::DevKeys,
    chain: ChainId,
    providers: Vec<FakeProvider>,
}

/// A market with one provider per `(behavior, price)`, each staked with [`STAKE`].
async fn network(providers: &[(Behavior, Price)]) -> Net {
    let dir = tempfile::tempdir().unwrap();
    let node = start(config(dir.path())).await;
    let api = Api::new(&node);
    let keys = keys();
    let chain = ChainId::new(node.chain_id());
    let mut started = Vec::new();
    for (i, (behavior, price)) in providers.iter().enumerate() {
        let key = keys.users[2 + i].clone();
        bond(&api, &key, STAKE).await;
        started.push(FakeProvider::start(&node, key, *price, *behavior).await);
    }
    api.wait_providers(providers.len()).await;
    // The engine reads stakes from the ledger as providers gossip; wait until it has.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Net {
        _dir: dir,
        node,
        api,
        keys,
        chain,
        providers: started,
    }
}

impl Net {
    async fn run(&self, policy: &str, salt: u64) -> OrderView {
        let module = upload_hello(&self.api).await;
        let buyer = &self.keys.users[0];
        let nonce = self.api.account(&buyer.account()).await.next_nonce;
        let policy: VerifyPolicy = policy.parse().unwrap();
        let (order, escrow) = order_verified_by(
            buyer,
            &self.chain,
            &module,
            (salt, nonce),
            now_ms() + 60_000,
            policy,
            CAP,
        );
        let (status, body) = self.api.submit(&order, &escrow).await;
        assert_eq!(status, 201, "{body}");
        let id: Hash = body["order_id"].as_str().unwrap().parse().unwrap();
        self.api.wait_final(&id, Duration::from_secs(20)).await
    }

    fn account(&self, i: usize) -> agora_core::AccountId {
        self.providers[i].account()
    }

    async fn stake(&self, i: usize) -> Amount {
        self.api.account(&self.account(i)).await.stake
    }
}

fn stdout(view: &OrderView) -> &str {
    view.result.as_ref().map_or("", |r| r.stdout.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicate_pays_the_quorum_and_slashes_the_provider_that_disagreed() {
    let net = network(&[
        (Behavior::Honest, PRICE),
        (Behavior::WrongResult, PRICE),
        (Behavior::Honest, PRICE),
    ])
    .await;
    let buyer = net.keys.users[0].account();
    let before = net.api.account(&buyer).await.balance;
    let view = net.run("replicate:3:2", 1).await;
    assert_eq!(view.state, OrderState::Settled, "{view:#?}");
    assert_eq!(
        stdout(&view),
        "hello agora\n",
        "the honest result is delivered"
    );
    let v = &view.verification;
    assert_eq!(
        (v.policy.as_str(), v.status.as_str()),
        ("replicate:3:2", "verified")
    );
    assert_eq!(v.runs.len(), 3, "{v:#?}");
    let liar = net.account(1);
    for run in &v.runs {
        assert_eq!(run.agreed, Some(run.provider != liar), "{run:?}");
        assert_eq!(
            run.paid.is_zero(),
            run.provider == liar,
            "only agreeing runs are paid"
        );
    }
    assert_eq!(v.slashes.len(), 1, "{v:#?}");
    assert_eq!(v.slashes[0].provider, liar);
    assert_eq!(
        net.stake(1).await,
        STAKE.checked_sub(v.slashes[0].amount).unwrap()
    );
    assert_eq!(
        net.stake(0).await,
        STAKE,
        "honest providers keep their stake"
    );
    assert_eq!(net.stake(2).await, STAKE);
    let paid: u64 = v.runs.iter().map(|r| r.paid.0).sum();
    assert_eq!(
        view.cost.0, paid,
        "the buyer pays exactly the agreeing runs"
    );
    assert_eq!(
        net.api.account(&buyer).await.balance.0,
        before.0 - view.cost.0
    );
    // The evidence record re-hashes to what the ledger's slash names.
    let record = hex::decode(&v.slashes[0].evidence_record).unwrap();
    let evidence: agora_verify::Evidence = agora_core::canonical::decode(&record).unwrap();
    assert_eq!(evidence.hash(), v.slashes[0].evidence);
    assert_eq!(evidence.provider, liar);
    evidence
        .check()
        .expect("the evidence contradicts the receipt");
    let liar_view = net.api.get(&format!("/v1/providers/{liar}")).await.1;
    assert_eq!(liar_view["slashed"], 1, "{liar_view}");
    drop(net.node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_spot_audit_catches_a_cheat_and_the_buyer_pays_one_run_at_its_price() {
    // The cheater asks least, so it wins the first run; spot:1 always audits.
    let cheap = Price(PRICE.0 / 2);
    let net = network(&[
        (Behavior::WrongResult, cheap),
        (Behavior::Honest, PRICE),
        (Behavior::Honest, PRICE),
    ])
    .await;
    let fund = net.keys.market.account();
    let fund_before = net.api.account(&fund).await.balance;
    let view = net.run("spot:1", 2).await;
    assert_eq!(view.state, OrderState::Settled, "{view:#?}");
    assert_eq!(
        stdout(&view),
        "hello agora\n",
        "the re-run's correct result is delivered"
    );
    let v = &view.verification;
    assert_eq!(v.audited, Some(true));
    assert!(v.audit_seed_signature.is_some());
    assert_eq!(v.runs.len(), 3, "cheat, audit, tie-breaker: {v:#?}");
    assert_eq!(v.runs[0].provider, net.account(0));
    assert_eq!(v.slashes.len(), 1);
    assert_eq!(v.slashes[0].provider, net.account(0));
    let fuel = view.result.as_ref().unwrap().fuel_used;
    assert_eq!(
        view.cost,
        cheap.cost(fuel).unwrap(),
        "no extra charge: one run at the price the order matched"
    );
    let fund_after = net.api.account(&fund).await.balance;
    assert!(
        fund_after.0 > fund_before.0,
        "the fund paid the audits and took the slash's beneficiary share"
    );
    assert_eq!(net.stake(1).await, STAKE);
    assert_eq!(net.stake(2).await, STAKE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adaptive_replicates_new_providers_and_counts_their_trust() {
    // The replica asks more than the first run, so the view must not show its price.
    let replica_price = Price(PRICE.0 * 3 / 2);
    let net = network(&[(Behavior::Honest, PRICE), (Behavior::Honest, replica_price)]).await;
    let view = net.run("adaptive", 3).await;
    assert_eq!(view.state, OrderState::Settled, "{view:#?}");
    assert_eq!(
        (view.provider, view.price),
        (Some(net.account(0)), Some(PRICE)),
        "the order shows the paid provider with the price its run matched at"
    );
    let v = &view.verification;
    assert_eq!((v.status.as_str(), v.runs.len()), ("verified", 2), "{v:#?}");
    assert_eq!(
        v.fuel_executed.0,
        2 * view.result.as_ref().unwrap().fuel_used.0
    );
    assert_eq!(
        view.cost,
        PRICE.cost(view.result.as_ref().unwrap().fuel_used).unwrap()
    );
    for i in 0..2 {
        let p = net
            .api
            .get(&format!("/v1/providers/{}", net.account(i)))
            .await
            .1;
        assert_eq!(p["consecutive_verified"], 1, "{p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sampling_policy_accepts_unchecked_when_no_independent_provider_exists() {
    let net = network(&[(Behavior::Honest, PRICE)]).await;
    let view = net.run("spot:1", 4).await;
    assert_eq!(view.state, OrderState::Settled, "{view:#?}");
    assert_eq!(view.verification.status, "unchecked");
    assert!(
        view.events
            .iter()
            .any(|e| e.detail.contains("no independent provider")),
        "{:#?}",
        view.events
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_challenge_window_holds_the_result_then_settles_it() {
    let net = network(&[(Behavior::Honest, PRICE)]).await;
    let started = std::time::Instant::now();
    let view = net.run("challenge:1500ms", 5).await;
    assert_eq!(view.state, OrderState::Settled, "{view:#?}");
    assert!(
        started.elapsed() >= Duration::from_millis(1_500),
        "held for the window"
    );
    assert!(view.verification.challenge_until_ms.is_some());
    assert_eq!(view.verification.status, "unchecked");
}

/// What an honest run of the hello module gives for order `id` (off the async runtime:
/// the executor blocks).
async fn truth(id: Hash, budget: agora_core::Fuel) -> agora_verify::quorum::RunResult {
    tokio::task::spawn_blocking(move || truth_now(id, budget))
        .await
        .unwrap()
}

fn truth_now(id: Hash, budget: agora_core::Fuel) -> agora_verify::quorum::RunResult {
    use agora_exec::{ExecConfig, Executor, WasmExecutor, WasmModule};
    let executor = WasmExecutor::new(ExecConfig::default()).unwrap();
    let mut spec = executor.job(id, WasmModule::new(hello_module()));
    spec.limits.fuel = budget;
    spec.limits.memory_bytes = 64 << 20;
    let outcome = executor.run(&spec).unwrap();
    agora_verify::quorum::RunResult {
        digest: outcome.digest,
        fuel: outcome.fuel_used,
    }
}

impl Net {
    /// Submits a `challenge:WINDOW` order and waits until its result is held.
    async fn held(&self, window: &str, salt: u64) -> (Hash, OrderView) {
        let module = upload_hello(&self.api).await;
        let buyer = &self.keys.users[0];
        let nonce = self.api.account(&buyer.account()).await.next_nonce;
        let (order, escrow) = order_verified_by(
            buyer,
            &self.chain,
            &module,
            (salt, nonce),
            now_ms() + 60_000,
            window.parse().unwrap(),
            CAP,
        );
        let (status, body) = self.api.submit(&order, &escrow).await;
        assert_eq!(status, 201, "{body}");
        let id: Hash = body["order_id"].as_str().unwrap().parse().unwrap();
        for _ in 0..400 {
            let view = self.api.order(&id).await;
            if view.verification.challenge_until_ms.is_some() {
                return (id, view);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the result was never held");
    }

    /// Files a challenge by dev user `who` claiming `result`, bonded with `bond`.
    async fn challenge(
        &self,
        who: &agora_core::Keypair,
        id: Hash,
        result: agora_verify::quorum::RunResult,
        bond: Amount,
    ) -> (u16, serde_json::Value) {
        let challenge = agora_core::Signed::sign(
            who,
            &self.chain,
            0,
            agora_proto::ChallengeResult {
                order_id: id,
                result_digest: result.digest,
                fuel_used: result.fuel,
            },
        );
        let nonce = self.api.account(&who.account()).await.next_nonce;
        let bond_tx = agora_core::Signed::sign(
            who,
            &self.chain,
            nonce,
            agora_ledger::TxBody::OpenEscrow {
                order_id: agora_proto::challenge_bond_id(&id, &who.account()),
                amount: bond,
                deadline_ms: now_ms() + 120_000,
            },
        );
        let request = agora_proto::api::ChallengeRequest {
            challenge: agora_proto::hexed::encode(&challenge),
            bond_tx: agora_proto::hexed::encode(&bond_tx),
        };
        self.api
            .post(&format!("/v1/orders/{id}/challenge"), &request)
            .await
    }
}

const BOND: Amount = Amount::agr(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_challenge_against_an_honest_result_loses_the_bond() {
    let net = network(&[(Behavior::Honest, PRICE)]).await;
    let challenger = net.keys.users[1].clone();
    let before = net.api.account(&challenger.account()).await.balance;
    let (id, held) = net.held("challenge:5s", 10).await;
    assert_eq!(held.state, OrderState::Verifying);
    let honest = truth(id, held_budget()).await;
    let bogus = agora_verify::quorum::RunResult {
        digest: Hash::of(b"my own result"),
        fuel: honest.fuel,
    };
    let (status, body) = net.challenge(&challenger, id, bogus, BOND).await;
    assert_eq!(status, 200, "{body}");
    let view = net.api.wait_final(&id, Duration::from_secs(20)).await;
    assert_eq!(view.state, OrderState::Settled, "{view:#?}");
    let v = &view.verification;
    assert_eq!(v.ruling.as_deref(), Some("provider right"), "{v:#?}");
    assert_eq!(v.challenger, Some(challenger.account()));
    assert!(v.slashes.is_empty());
    assert_eq!(
        net.stake(0).await,
        STAKE,
        "the honest provider keeps its stake"
    );
    let after = net.api.account(&challenger.account()).await.balance;
    assert_eq!(
        after.0,
        before.0 - BOND.0,
        "the challenger lost its whole bond"
    );
    assert_eq!(view.result.as_ref().unwrap().digest, honest.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_challenge_against_a_wrong_result_wins_and_slashes() {
    let net = network(&[(Behavior::WrongResult, PRICE)]).await;
    let challenger = net.keys.users[1].clone();
    let buyer = net.keys.users[0].account();
    let before = net.api.account(&challenger.account()).await.balance;
    let buyer_before = net.api.account(&buyer).await.balance;
    let (id, _) = net.held("challenge:5s", 11).await;
    let honest = truth(id, held_budget()).await;
    // A second challenge by the provider itself, or a late one, is refused: see below.
    let (status, body) = net.challenge(&challenger, id, honest, BOND).await;
    assert_eq!(status, 200, "{body}");
    let view = net.api.wait_final(&id, Duration::from_secs(20)).await;
    assert_eq!(view.state, OrderState::Refunded, "{view:#?}");
    let v = &view.verification;
    assert_eq!(v.ruling.as_deref(), Some("challenger right"), "{v:#?}");
    assert_eq!(v.slashes.len(), 1);
    let slashed = v.slashes[0].amount;
    assert_eq!(net.stake(0).await, STAKE.checked_sub(slashed).unwrap());
    let after = net.api.account(&challenger.account()).await.balance;
    assert_eq!(
        after.0,
        before.0 + slashed.0 / 2,
        "bond back, plus the beneficiary's half of the slash"
    );
    assert_eq!(
        net.api.account(&buyer).await.balance,
        buyer_before,
        "the buyer paid nothing for a wrong result"
    );
    let record = hex::decode(&v.slashes[0].evidence_record).unwrap();
    let evidence: agora_verify::Evidence = agora_core::canonical::decode(&record).unwrap();
    assert_eq!(evidence.hash(), v.slashes[0].evidence);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_challenges_are_refused_and_change_nothing() {
    let net = network(&[(Behavior::Honest, PRICE)]).await;
    let (id, _) = net.held("challenge:5s", 12).await;
    let honest = truth(id, held_budget()).await;
    let challenger = net.keys.users[1].clone();
    let before = net.api.account(&challenger.account()).await;
    // The provider's own result: nothing to dispute.
    let (status, body) = net.challenge(&challenger, id, honest, BOND).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("equals"),
        "{body}"
    );
    // A bond below the minimum.
    let other = agora_verify::quorum::RunResult {
        digest: Hash::of(b"x"),
        fuel: honest.fuel,
    };
    let (status, body) = net.challenge(&challenger, id, other, Amount(1)).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("bond"), "{body}");
    // The provider challenging itself.
    let provider = net.keys.users[2].clone();
    let (status, body) = net.challenge(&provider, id, other, BOND).await;
    assert_eq!(status, 409, "{body}");
    // Nothing moved, and the order settles when the window closes.
    assert_eq!(net.api.account(&challenger.account()).await, before);
    let view = net.api.wait_final(&id, Duration::from_secs(20)).await;
    assert_eq!(view.state, OrderState::Settled);
    // After the window: nothing is held any more.
    let (status, _) = net.challenge(&challenger, id, other, BOND).await;
    assert_eq!(status, 409);
}

fn held_budget() -> agora_core::Fuel {
    agora_core::Fuel::compute_units(1)
}
