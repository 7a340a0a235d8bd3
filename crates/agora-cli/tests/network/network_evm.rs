//! The market on the EVM backend (`agora node market --settlement evm`), with real
//! processes: a devnet (`LocalNetConfig::settle_on_evm`) starts anvil, deploys the
//! `AgoraMarket` contract and a test token, funds the dev users on it and starts the
//! market node and provider agents settling there. The same rules as on the embedded
//! ledger, read back from the chain itself (an independent connection to the contract,
//! not the market's API):
//!
//! - a job settles: its escrow on the contract is released for what the order cost and
//!   closed (the rest refunded), the provider is paid less the fee, the treasury gets the fee, and the contract's tokens
//!   equal its totals; the node's `/v1/info` names the chain and contract, and its
//!   embedded-ledger views (`/v1/blocks`) answer `settled_on_evm` naming them;
//! - a provider returning wrong output under `replicate:3:2` is slashed on the contract;
//! - a wrong result held under `challenge:WINDOW` is challenged: the challenger opens its
//!   bond on chain from its own key, the market takes the identical bond over (refusing a
//!   different one and a missing one), slashes the provider with the challenger as
//!   beneficiary, and refunds the buyer and the bond on the contract; a bogus challenge
//!   of an honest result loses its bond (half to the provider, the rest burnt);
//! - a cancelled order is refunded on the contract, every unit back to the buyer;
//! - the parties send their own transactions: the buyer client opens each escrow on chain
//!   from its own key, providers bond on chain and publish `evm.address` in their asks, the
//!   node holds no participant key (an account's own transaction sent to it is refused),
//!   and an order whose on-chain escrow differs from it (`escrow_mismatch`) or that has
//!   none (`escrow_refused`) is refused and changes nothing.
//!
//! Each test prints `skipped: …` and passes only when no anvil binary exists
//! (`cd contracts && npm ci --ignore-scripts` installs it; CI does). Each is bounded by
//! [`TEST_LIMIT`].

use std::time::Duration;

use crate::common_net::{TestNet, job, one_job_per_provider};
use agora_core::{AccountId, Amount, ChainId, Fuel, Hash};
use agora_devnet::{FaultMode, FaultPlan, LocalNetConfig};
use agora_evm::{Anvil, EvmConfig, EvmSettlement};
use agora_ledger::{DevKeys, EscrowStatus, Genesis, Settlement};
use agora_proto::api::SettlementInfo;
use agora_proto::{OrderState, VerifyPolicy};

/// Each test's whole run, network start to the last check.
const TEST_LIMIT: Duration = Duration::from_secs(90);

/// What the chain says about the accounts and orders a test looks at.
#[derive(Debug)]
struct OnChain {
    balances: Vec<Amount>,
    stakes: Vec<Amount>,
    escrows: Vec<Option<agora_ledger::Escrow>>,
    conserved: bool,
    burnt: u64,
}

/// Reads `accounts` and `orders` straight from the contract the network settles on.
async fn read_chain(t: &TestNet, accounts: Vec<AccountId>, orders: Vec<Hash>) -> OnChain {
    let evm = t.net.evm.as_ref().expect("an EVM network");
    let (rpc_url, market) = (evm.rpc_url.clone(), evm.market);
    let users = t.net.buyer_keys.len() + t.net.providers.len();
    // The EVM client runs (and drops) its own runtime: off this one.
    tokio::task::spawn_blocking(move || {
        let keys = DevKeys::new(users);
        let (genesis, _) = Genesis::dev("agora-devnet", 0, users, Amount::ZERO);
        let config = EvmConfig::new(
            rpc_url,
            market,
            ChainId::new("agora-devnet"),
            genesis.params,
        );
        let mut chain = EvmSettlement::connect(config, &keys.market).expect("connects");
        for user in &keys.users {
            chain.add_key(user);
        }
        let supply = chain.supply().expect("the contract's totals");
        OnChain {
            balances: accounts
                .iter()
                .map(|a| chain.account(a).expect("an account").balance)
                .collect(),
            stakes: accounts
                .iter()
                .map(|a| {
                    chain
                        .stake(a)
                        .expect("a stake")
                        .map_or(Amount::ZERO, |s| s.total().expect("no overflow"))
                })
                .collect(),
            escrows: orders
                .iter()
                .map(|o| chain.escrow(o).expect("an escrow read"))
                .collect(),
            conserved: supply.conserved(),
            burnt: supply.burnt,
        }
    })
    .await
    .expect("the chain read")
}

/// A network settling on a fresh anvil, or `None` (printing why) without an anvil binary.
async fn evm_net(providers: usize, configure: impl FnOnce(&mut LocalNetConfig)) -> Option<TestNet> {
    if Anvil::find_binary().is_none() {
        eprintln!(
            "skipped: no anvil binary (install it with `cd contracts && npm ci --ignore-scripts`, or set AGORA_ANVIL)"
        );
        return None;
    }
    Some(
        TestNet::start(providers, |c: &mut LocalNetConfig| {
            one_job_per_provider(c);
            c.settle_on_evm = true;
            configure(c);
        })
        .await,
    )
}

fn tile_job(verify: VerifyPolicy) -> agora_client::JobRequest {
    let args: Vec<String> = ["32", "24", "0", "24", "2"].map(String::from).to_vec();
    let mut request = job("pathtrace", &args);
    request.fuel_budget = Fuel::compute_units(5);
    request.verify = verify;
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_settles_on_the_contract() {
    let Some(t) = evm_net(2, |_| {}).await else {
        return;
    };
    tokio::time::timeout(TEST_LIMIT, async {
        let info = t.client.info().await.expect("/v1/info");
        let evm = t.net.evm.as_ref().unwrap();
        let Some(SettlementInfo::Evm {
            contract, rpc_url, ..
        }) = info.settlement.as_deref()
        else {
            panic!("the market does not say it settles on EVM: {info:?}");
        };
        assert_eq!(
            contract.to_lowercase(),
            evm.market.to_string().to_lowercase()
        );
        assert_eq!(rpc_url, &evm.rpc_url);

        let buyer = t.buyer.account();
        let treasury = info.treasury;
        let providers = t.provider_accounts();
        let mut who = vec![buyer, treasury];
        who.extend(&providers);
        let before = read_chain(&t, who.clone(), vec![]).await;

        let submitted = t
            .buyer
            .submit_job(&tile_job(VerifyPolicy::None))
            .await
            .unwrap_or_else(|e| panic!("submit: {e}\n{}", t.logs()));
        let view = t
            .wait_final(&submitted.order_id, Duration::from_secs(40))
            .await;
        assert_eq!(view.state, OrderState::Settled, "{view:#?}\n{}", t.logs());
        let paid = view.provider.expect("a settled order names its provider");

        let after = read_chain(&t, who.clone(), vec![submitted.order_id]).await;
        let escrow = after.escrows[0].expect("the escrow is on the contract");
        // Released for the cost, the rest refunded in the same settlement: closed.
        assert_ne!(escrow.status, EscrowStatus::Open, "{escrow:?}");
        assert_eq!(escrow.released, view.cost, "{escrow:?} vs {view:#?}");
        assert!(escrow.remaining.is_zero(), "{escrow:?}");
        assert!(!view.cost.is_zero());
        let fee = Amount(view.cost.0 * u64::from(info.fee_bps) / 10_000);
        let spent = before.balances[0].0 - after.balances[0].0;
        assert_eq!(
            spent, view.cost.0,
            "the buyer paid what the order cost, on chain"
        );
        assert_eq!(
            after.balances[1].0 - before.balances[1].0,
            fee.0,
            "treasury fee"
        );
        let index = 2 + providers.iter().position(|p| *p == paid).unwrap();
        assert_eq!(
            after.balances[index].0 - before.balances[index].0,
            view.cost.0 - fee.0,
            "the provider is paid the cost less the fee, on chain"
        );
        assert!(after.conserved, "the contract's tokens equal its totals");

        // The embedded ledger's views say where to look instead.
        let url = format!("{}/v1/blocks", t.net.http_url);
        let response = t.http.get(&url).send().await.expect("GET /v1/blocks");
        assert_eq!(response.status().as_u16(), 404);
        let body: serde_json::Value = response.json().await.expect("a JSON error");
        assert_eq!(body["error"], "settled_on_evm", "{body}");
        let message = body["message"].as_str().unwrap_or_default().to_lowercase();
        assert!(message.contains(&contract.to_lowercase()), "{message}");
    })
    .await
    .unwrap_or_else(|_| panic!("not done within {TEST_LIMIT:?}\n{}", t.logs()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_output_provider_is_slashed_on_the_contract() {
    let plan: FaultPlan = "wrong-output".parse().expect("a fault plan");
    assert_eq!(plan.mode, FaultMode::WrongOutput);
    let Some(t) = evm_net(3, |c| c.faulty = vec![(0, plan)]).await else {
        return;
    };
    tokio::time::timeout(TEST_LIMIT, async {
        let liar = t.net.provider_account(0).unwrap();
        let before = read_chain(&t, vec![liar], vec![]).await;
        assert!(
            !before.stakes[0].is_zero(),
            "the faulty provider bonded on chain"
        );
        let policy: VerifyPolicy = "replicate:3:2".parse().unwrap();
        let submitted = t
            .buyer
            .submit_job(&tile_job(policy))
            .await
            .unwrap_or_else(|e| panic!("submit: {e}\n{}", t.logs()));
        let view = t
            .wait_final(&submitted.order_id, Duration::from_secs(60))
            .await;
        assert_eq!(view.state, OrderState::Settled, "{view:#?}\n{}", t.logs());
        let slashes = &view.verification.slashes;
        let slashed = Amount(
            slashes
                .iter()
                .filter(|s| s.provider == liar)
                .map(|s| s.amount.0)
                .sum(),
        );
        assert!(
            !slashed.is_zero(),
            "the liar is slashed: {slashes:?}\n{}",
            t.logs()
        );
        let after = read_chain(&t, vec![liar], vec![submitted.order_id]).await;
        assert_eq!(
            before.stakes[0].0 - after.stakes[0].0,
            slashed.0,
            "the contract holds the slash the market reported"
        );
        assert!(after.burnt > before.burnt, "part of a slash is burnt");
        assert!(after.conserved);
    })
    .await
    .unwrap_or_else(|_| panic!("not done within {TEST_LIMIT:?}\n{}", t.logs()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_order_is_refunded_on_the_contract() {
    let Some(t) = evm_net(1, |_| {}).await else {
        return;
    };
    tokio::time::timeout(TEST_LIMIT, async {
        let buyer = t.buyer.account();
        let before = read_chain(&t, vec![buyer], vec![]).await;
        // Runs for longer than this test needs.
        let mut request = job("montecarlo", &["40000000".into(), "3".into()]);
        request.fuel_budget = Fuel::compute_units(40);
        let submitted = t
            .buyer
            .submit_job(&request)
            .await
            .unwrap_or_else(|e| panic!("submit: {e}\n{}", t.logs()));
        let id = submitted.order_id;
        let locked = read_chain(&t, vec![buyer], vec![id]).await;
        let escrow = locked.escrows[0].expect("the escrow is open on chain");
        assert_eq!(escrow.status, EscrowStatus::Open);
        assert_eq!(before.balances[0].0 - locked.balances[0].0, escrow.locked.0);
        t.wait_order(&id, Duration::from_secs(20), "running", |v| {
            v.state == OrderState::Running
        })
        .await;
        let cancelled = t
            .buyer
            .cancel(&id)
            .await
            .unwrap_or_else(|e| panic!("cancel: {e}\n{}", t.logs()));
        assert_eq!(cancelled.state, OrderState::Refunded, "{cancelled:#?}");
        let after = read_chain(&t, vec![buyer], vec![id]).await;
        let escrow = after.escrows[0].expect("the escrow stays on chain");
        assert_eq!(escrow.status, EscrowStatus::Refunded, "{escrow:?}");
        assert_eq!(after.balances[0], before.balances[0], "every unit back");
        assert!(after.conserved);
    })
    .await
    .unwrap_or_else(|_| panic!("not done within {TEST_LIMIT:?}\n{}", t.logs()));
}

/// The parties act for themselves and the market checks what they did: providers bonded
/// on chain and publish the address they are paid at, the node holds no participant's
/// key (an account's own transaction sent to it is refused), and an order whose escrow
/// on chain differs from it, or that has none, is refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_send_their_own_transactions_and_the_market_checks_them() {
    let Some(t) = evm_net(1, |_| {}).await else {
        return;
    };
    tokio::time::timeout(TEST_LIMIT, async {
        let info = t.client.info().await.expect("/v1/info");
        let Some(SettlementInfo::Evm {
            rpc_url, contract, ..
        }) = info.settlement.as_deref()
        else {
            panic!("not an EVM market: {info:?}");
        };
        // The provider's signed ask carries its derived address; it bonded on chain.
        let provider = t.provider_accounts()[0];
        let keys = DevKeys::new(t.net.buyer_keys.len() + t.net.providers.len());
        let provider_key = keys
            .users
            .iter()
            .find(|k| k.account() == provider)
            .expect("the provider's dev key");
        let asks = t.client.asks().await.expect("/v1/asks");
        let published = asks
            .iter()
            .find(|a| a.provider == provider)
            .and_then(|a| a.attributes.get("evm.address"))
            .unwrap_or_else(|| panic!("no evm.address in {asks:?}"));
        assert_eq!(
            published.to_lowercase(),
            agora_evm::evm_address(provider_key)
                .to_string()
                .to_lowercase()
        );
        let staked = read_chain(&t, vec![provider], vec![]).await;
        assert!(!staked.stakes[0].is_zero(), "the provider bonded on chain");

        // An account's own transaction sent to the node is refused: it holds no keys.
        let buyer_key = t.net.buyer_keys[0].clone();
        let chain = ChainId::new(info.chain_id.clone());
        let bond: agora_ledger::Tx = agora_core::Signed::sign(
            &buyer_key,
            &chain,
            0,
            agora_ledger::TxBody::Bond { amount: Amount(1) },
        );
        let refused = t.client.submit_tx(&bond).await.expect_err("refused");
        assert!(refused.to_string().contains("sends its own"), "{refused}");

        // An account the market never met has no address it could read: a typed 404 that
        // says where the money is, not an internal error.
        let stranger = agora_core::Keypair::from_seed("a stranger").account();
        let unknown = t.client.account(&stranger).await.expect_err("unknown");
        assert_eq!(unknown.api_code(), Some("unknown_account"), "{unknown}");
        assert!(unknown.to_string().contains(contract.as_str()), "{unknown}");

        // An order whose escrow the buyer opened on chain with another amount.
        let request = tile_job(VerifyPolicy::None);
        let spec = t.buyer.upload_job(&request).await.expect("upload");
        let body = request
            .order_request(spec.clone(), agora_client::buyer::now_ms())
            .expect("an order");
        let order = t.buyer.sign_order(body);
        let id = agora_proto::signed_order_id(&order);
        let participant = agora_evm::Participant::connect(rpc_url, contract, &buyer_key)
            .await
            .expect("the buyer's own chain connection");
        participant
            .open_escrow(id, order.body.escrow.0 - 1, order.body.deadline_ms)
            .await
            .expect("an escrow opened by the buyer");
        let before = read_chain(&t, vec![t.buyer.account()], vec![id]).await;
        let mismatch = t
            .client
            .submit_order(&order, &t.buyer.escrow_for(&order, 0))
            .await
            .expect_err("an escrow that differs from the order");
        assert_eq!(mismatch.api_code(), Some("escrow_mismatch"), "{mismatch}");
        assert!(mismatch.to_string().contains("amount"), "{mismatch}");
        // An order with no escrow on chain at all.
        let body = request
            .order_request(spec, agora_client::buyer::now_ms())
            .expect("an order");
        let unescrowed = t.buyer.sign_order(body);
        let missing = t
            .client
            .submit_order(&unescrowed, &t.buyer.escrow_for(&unescrowed, 0))
            .await
            .expect_err("no escrow on chain");
        assert_eq!(missing.api_code(), Some("escrow_refused"), "{missing}");
        // Nothing moved: the mismatched escrow is still the buyer's, open, untouched.
        let after = read_chain(&t, vec![t.buyer.account()], vec![id]).await;
        assert_eq!(after.balances, before.balances);
        let escrow = after.escrows[0].expect("still on chain");
        assert_eq!(escrow.status, EscrowStatus::Open);
        assert_eq!(escrow.remaining, escrow.locked);
        assert!(after.conserved);
        let orders = t.buyer.client().order(&id).await;
        assert!(orders.is_err(), "the refused order is not recorded");
    })
    .await
    .unwrap_or_else(|_| panic!("not done within {TEST_LIMIT:?}\n{}", t.logs()));
}

/// What an honest run of `order` gives: the market's referee runs exactly this.
async fn honest_result(order: &agora_proto::SignedOrder) -> agora_verify::quorum::RunResult {
    let id = agora_proto::signed_order_id(order);
    let body = order.body.clone();
    tokio::task::spawn_blocking(move || {
        use agora_exec::Executor;
        let executor =
            agora_exec::WasmExecutor::new(agora_exec::ExecConfig::default()).expect("executor");
        let bytes = std::fs::read(crate::common_net::sample("pathtrace")).expect("the sample");
        let checkpointed = agora_exec::checkpoint::is_checkpointed(&bytes);
        let mut spec = executor.job(id, agora_exec::WasmModule::new(bytes));
        spec.args = body.job.args.clone();
        spec.env = body.job.env.clone();
        spec.limits.fuel = body.fuel_budget;
        spec.limits.memory_bytes = body.job.memory_bytes;
        let outcome = if checkpointed {
            executor.run_checkpointed(&spec).expect("a run").outcome
        } else {
            executor.run(&spec).expect("a run")
        };
        agora_verify::quorum::RunResult {
            digest: outcome.digest,
            fuel: outcome.fuel_used,
        }
    })
    .await
    .expect("the honest run")
}

/// Submits a `challenge:20s` tile job from the first buyer (its escrow opened on chain by
/// its own key) and waits until the market holds its result open for challenges.
async fn held_order(
    t: &TestNet,
    (rpc_url, contract): (&str, &str),
) -> (agora_proto::SignedOrder, agora_proto::OrderView) {
    let request = tile_job("challenge:20s".parse().unwrap());
    let spec = t.buyer.upload_job(&request).await.expect("upload");
    let body = request
        .order_request(spec, agora_client::buyer::now_ms())
        .expect("an order");
    let order = t.buyer.sign_order(body);
    let id = agora_proto::signed_order_id(&order);
    agora_client::evm::open_escrow_on_chain(rpc_url, contract, &t.net.buyer_keys[0], &order)
        .await
        .expect("the buyer's escrow on chain");
    t.client
        .submit_order(&order, &t.buyer.escrow_for(&order, 0))
        .await
        .unwrap_or_else(|e| panic!("submit: {e}\n{}", t.logs()));
    let held = t
        .wait_order(&id, Duration::from_secs(40), "held for challenges", |v| {
            v.verification.challenge_until_ms.is_some() || v.state.is_final()
        })
        .await;
    assert!(!held.state.is_final(), "{held:#?}\n{}", t.logs());
    (order, held)
}

/// Files `challenger`'s signed challenge to order `id` claiming `result`, its bond an
/// `OpenEscrow` of `bond` until `deadline_ms`; answers the status and JSON body.
async fn file_challenge(
    t: &TestNet,
    challenger: &agora_core::Keypair,
    id: Hash,
    result: agora_verify::quorum::RunResult,
    (bond, deadline_ms): (Amount, u64),
) -> (u16, serde_json::Value) {
    let chain = ChainId::new(t.info.chain_id.clone());
    let challenge = agora_core::Signed::sign(
        challenger,
        &chain,
        0,
        agora_proto::ChallengeResult {
            order_id: id,
            result_digest: result.digest,
            fuel_used: result.fuel,
        },
    );
    let bond_tx: agora_ledger::Tx = agora_core::Signed::sign(
        challenger,
        &chain,
        0,
        agora_ledger::TxBody::OpenEscrow {
            order_id: agora_proto::challenge_bond_id(&id, &challenger.account()),
            amount: bond,
            deadline_ms,
        },
    );
    let request = agora_proto::api::ChallengeRequest {
        challenge: agora_proto::hexed::encode(&challenge),
        bond_tx: agora_proto::hexed::encode(&bond_tx),
    };
    let url = format!("{}/v1/orders/{id}/challenge", t.net.http_url);
    let response = t
        .http
        .post(&url)
        .json(&request)
        .send()
        .await
        .expect("POST challenge");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

/// A challenge on an EVM market: the challenger opens its bond on chain from its own key,
/// the market takes the identical escrow over (refusing one that differs, and a challenge
/// with no bond on chain), re-executes the job, slashes the provider whose signed result
/// was wrong with the challenger as beneficiary, refunds the buyer in full and the
/// challenger its bond, all on the contract, whose tokens still equal its totals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenged_wrong_result_is_slashed_on_the_contract() {
    let plan: FaultPlan = "wrong-output".parse().expect("a fault plan");
    let Some(t) = evm_net(1, |c| {
        c.buyers = 2;
        c.faulty = vec![(0, plan)];
    })
    .await
    else {
        return;
    };
    tokio::time::timeout(TEST_LIMIT, async {
        let Some(SettlementInfo::Evm {
            rpc_url, contract, ..
        }) = t.info.settlement.as_deref()
        else {
            panic!("not an EVM market: {:?}", t.info);
        };
        let liar = t.net.provider_account(0).unwrap();
        let buyer_key = t.net.buyer_keys[0].clone();
        let challenger = t.net.buyer_keys[1].clone();
        let who = vec![buyer_key.account(), challenger.account(), liar];
        let before = read_chain(&t, who.clone(), vec![]).await;

        let (order, held) = held_order(&t, (rpc_url, contract)).await;
        let id = agora_proto::signed_order_id(&order);
        let honest = honest_result(&order).await;
        assert_ne!(
            held.result.as_ref().map(|r| r.digest),
            Some(honest.digest),
            "the faulty provider's held result is wrong"
        );

        let bond = Amount::agr(2);
        let deadline_ms = agora_client::buyer::now_ms() + 120_000;
        // No bond on chain yet: refused, nothing recorded.
        let (status, body) = file_challenge(&t, &challenger, id, honest, (bond, deadline_ms)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("escrow_refused")),
            "{body}"
        );
        agora_client::evm::open_bond_on_chain(
            rpc_url,
            contract,
            &challenger,
            &id,
            bond,
            deadline_ms,
        )
        .await
        .expect("the challenger's bond on chain");
        let bonded = read_chain(&t, who.clone(), vec![]).await;
        assert_eq!(before.balances[1].0 - bonded.balances[1].0, bond.0);
        // A challenge naming another bond than the one on chain: refused, nothing moved.
        let (status, body) = file_challenge(
            &t,
            &challenger,
            id,
            honest,
            (Amount(bond.0 + 1), deadline_ms),
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("escrow_mismatch")),
            "{body}"
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("amount"),
            "{body}"
        );
        // The identical bond: taken over, and the market re-executes the job as referee.
        let (status, body) = file_challenge(&t, &challenger, id, honest, (bond, deadline_ms)).await;
        assert_eq!(status, 200, "{body}\n{}", t.logs());

        let view = t.wait_final(&id, Duration::from_secs(40)).await;
        assert_eq!(view.state, OrderState::Refunded, "{view:#?}\n{}", t.logs());
        let v = &view.verification;
        assert_eq!(v.ruling.as_deref(), Some("challenger right"), "{v:#?}");
        assert_eq!(v.challenger, Some(challenger.account()));
        assert_eq!(v.slashes.len(), 1, "{v:#?}");
        let slashed = v.slashes[0].amount;
        assert!(!slashed.is_zero());

        let bond_id = agora_proto::challenge_bond_id(&id, &challenger.account());
        let after = read_chain(&t, who.clone(), vec![id, bond_id]).await;
        assert_eq!(
            after.balances[0], before.balances[0],
            "the buyer paid nothing for a wrong result"
        );
        assert_eq!(
            after.balances[1].0,
            before.balances[1].0 + slashed.0 / 2,
            "the challenger's bond back, plus the beneficiary's half of the slash"
        );
        assert_eq!(before.stakes[2].0 - after.stakes[2].0, slashed.0);
        let escrow = after.escrows[1].expect("the bond stays on chain");
        assert_eq!(escrow.status, EscrowStatus::Refunded, "{escrow:?}");
        assert!(
            after.burnt > before.burnt,
            "the other half of the slash is burnt"
        );
        assert!(after.conserved, "the contract's tokens equal its totals");
    })
    .await
    .unwrap_or_else(|_| panic!("not done within {TEST_LIMIT:?}\n{}", t.logs()));
}

/// A challenge against an honest result on an EVM market loses the bond as on the embedded
/// ledger: half of it is released to the provider (less the market fee) and the rest burnt,
/// with the contract's own operations; the provider is paid as usual and keeps its stake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_against_an_honest_result_loses_the_bond_on_the_contract() {
    let Some(t) = evm_net(1, |c| c.buyers = 2).await else {
        return;
    };
    tokio::time::timeout(TEST_LIMIT, async {
        let Some(SettlementInfo::Evm {
            rpc_url, contract, ..
        }) = t.info.settlement.as_deref()
        else {
            panic!("not an EVM market: {:?}", t.info);
        };
        let provider = t.net.provider_account(0).unwrap();
        let challenger = t.net.buyer_keys[1].clone();
        let treasury = t.info.treasury;
        let who = vec![challenger.account(), provider, treasury];
        let before = read_chain(&t, who.clone(), vec![]).await;

        let (order, _) = held_order(&t, (rpc_url, contract)).await;
        let id = agora_proto::signed_order_id(&order);
        let honest = honest_result(&order).await;
        let bogus = agora_verify::quorum::RunResult {
            digest: Hash::of(b"my own result"),
            fuel: honest.fuel,
        };
        let bond = Amount::agr(2);
        let deadline_ms = agora_client::buyer::now_ms() + 120_000;
        agora_client::evm::open_bond_on_chain(
            rpc_url,
            contract,
            &challenger,
            &id,
            bond,
            deadline_ms,
        )
        .await
        .expect("the challenger's bond on chain");
        let (status, body) = file_challenge(&t, &challenger, id, bogus, (bond, deadline_ms)).await;
        assert_eq!(status, 200, "{body}\n{}", t.logs());

        let view = t.wait_final(&id, Duration::from_secs(40)).await;
        assert_eq!(view.state, OrderState::Settled, "{view:#?}\n{}", t.logs());
        let v = &view.verification;
        assert_eq!(v.ruling.as_deref(), Some("provider right"), "{v:#?}");
        assert!(v.slashes.is_empty(), "{v:#?}");

        let bond_id = agora_proto::challenge_bond_id(&id, &challenger.account());
        let after = read_chain(&t, who.clone(), vec![bond_id]).await;
        assert_eq!(
            before.balances[0].0 - after.balances[0].0,
            bond.0,
            "the challenger lost its whole bond"
        );
        assert_eq!(
            after.stakes[1], before.stakes[1],
            "the provider keeps its stake"
        );
        let escrow = after.escrows[0].expect("the bond stays on chain");
        assert_eq!(escrow.released.0, bond.0 / 2, "{escrow:?}");
        assert!(escrow.remaining.is_zero(), "{escrow:?}");
        assert_ne!(escrow.status, EscrowStatus::Open, "{escrow:?}");
        assert_eq!(
            after.burnt - before.burnt,
            bond.0 - bond.0 / 2,
            "the rest is burnt"
        );
        // The provider and the treasury got the released half between them, plus the job.
        let gained = (after.balances[1].0 - before.balances[1].0)
            + (after.balances[2].0 - before.balances[2].0);
        assert_eq!(gained, bond.0 / 2 + view.cost.0, "{view:#?}");
        assert!(after.conserved, "the contract's tokens equal its totals");
    })
    .await
    .unwrap_or_else(|_| panic!("not done within {TEST_LIMIT:?}\n{}", t.logs()));
}
