//! Adversarial and fault tests of the contracts and the EVM backend, on a real anvil:
//! double settlement, over-release, unassigned payees, slashing without stake, early
//! withdrawal, reentrancy through a hostile token, overflowing amounts, a frozen RPC, a
//! restarted chain and a reorg. Every case checks that no token was created or lost.

mod common;

use std::time::Duration;

use agora_core::{Amount, Hash, Keypair, Signed};
use agora_evm::contracts::AgoraMarket::{self, AgoraMarketErrors};
use agora_evm::contracts::{
    HostileToken, MarketConfig, hostile_token_creation_code, market_creation_code,
};
use agora_evm::{AnvilOptions, ChainError, EvmError, evm_signer};
use agora_ledger::{EscrowStatus, LedgerError, Settlement, TxBody};
use alloy::primitives::{Address, Bytes, FixedBytes, U256};
use alloy::rpc::types::TransactionReceipt;
use alloy::sol_types::{SolCall, SolError, SolInterface};
use common::{Evm, Harness, balance, submit};

fn order(n: u8) -> Hash {
    Hash::of(&[n, 0xe7])
}

/// Sends `data` to `to` from `key`'s EVM key with its current nonce.
fn send(
    e: &Evm,
    key: &Keypair,
    to: Address,
    data: Vec<u8>,
) -> Result<TransactionReceipt, ChainError> {
    let chain = e.evm.chain().clone();
    let signer = evm_signer(key);
    e.evm.block_on(async move {
        let nonce = chain.nonce(signer.address()).await?;
        chain
            .transact(&signer, Some(to), Bytes::from(data), nonce)
            .await
            .map(|(_, r)| r)
    })
}

fn view<C: SolCall>(e: &Evm, to: Address, call: C) -> C::Return {
    let chain = e.evm.chain().clone();
    let data = e
        .evm
        .block_on(async move { chain.call(to, call.abi_encode().into()).await })
        .unwrap();
    C::abi_decode_returns(&data).unwrap()
}

/// The contract error a reverted call carries.
fn contract_error(result: Result<TransactionReceipt, ChainError>) -> AgoraMarketErrors {
    match result {
        Err(ChainError::Reverted {
            data: Some(data), ..
        }) => AgoraMarketErrors::abi_decode(&data).unwrap(),
        other => panic!("expected a revert with a contract error, got {other:?}"),
    }
}

fn skipped(receipt: &TransactionReceipt) -> Vec<(u64, [u8; 4])> {
    receipt
        .inner
        .logs()
        .iter()
        .filter_map(|l| l.log_decode::<AgoraMarket::OpSkipped>().ok())
        .map(|l| (l.inner.data.index.to::<u64>(), l.inner.data.reason.0))
        .collect()
}

fn op(
    kind: u8,
    order_id: Hash,
    providers: Vec<Address>,
    payouts: Vec<(Address, u64)>,
) -> AgoraMarket::Op {
    AgoraMarket::Op {
        kind,
        orderId: FixedBytes(order_id.0),
        amount: 0,
        providers,
        payouts: payouts
            .into_iter()
            .map(|(payee, gross)| AgoraMarket::Payout { payee, gross })
            .collect(),
    }
}

fn settle_batch(e: &Evm, ops: Vec<AgoraMarket::Op>) -> Result<TransactionReceipt, ChainError> {
    let nonce = view(e, e.evm.market(), AgoraMarket::authorityNonceCall {});
    let data = AgoraMarket::settleBatchCall {
        firstNonce: nonce,
        ops,
    }
    .abi_encode();
    send(e, &e.keys.market.clone(), e.evm.market(), data)
}

/// Conservation: the contract holds exactly what it accounts for, and the total is `expected`.
fn assert_conserved(e: &mut Evm, expected: u128) {
    let (total, ok) = e.total();
    assert!(ok, "the contract's tokens and accounts disagree");
    assert_eq!(total, expected, "tokens were created or lost");
}

const SUPPLY: u128 = 3 * 1_000_000;

fn open(e: &mut Evm, buyer: &Keypair, id: Hash, amount: u64) {
    let deadline = e.now_ms() + 600_000;
    submit(
        e,
        buyer,
        TxBody::OpenEscrow {
            order_id: id,
            amount: Amount(amount),
            deadline_ms: deadline,
        },
    )
    .unwrap();
}

#[test]
fn settling_twice_pays_once_and_skips_without_reverting_the_batch() {
    let Some(mut e) = common::evm(3, 0) else {
        return;
    };
    let (buyer, provider) = (e.keys.users[0].clone(), e.keys.users[1].clone());
    let p = e.evm.address_of(&provider.account()).unwrap();
    open(&mut e, &buyer, order(1), 1_000);
    open(&mut e, &buyer, order(2), 1_000);
    let before = balance(&mut e, &provider.account());
    // Order 1 settled twice in one batch, order 2 once after it: the duplicate is skipped,
    // order 2 still settles.
    let receipt = settle_batch(
        &e,
        vec![
            op(3, order(1), vec![p], vec![]),
            op(0, order(1), vec![p], vec![(p, 1_000)]),
            op(0, order(1), vec![p], vec![(p, 1_000)]),
            op(3, order(2), vec![p], vec![]),
            op(0, order(2), vec![p], vec![(p, 400)]),
            op(1, order(2), vec![], vec![]),
        ],
    )
    .unwrap();
    assert_eq!(
        skipped(&receipt),
        vec![(2, AgoraMarket::EscrowClosed::SELECTOR)]
    );
    // 2.5 % fee per line: 1_000 → 975, 400 → 390.
    assert_eq!(balance(&mut e, &provider.account()).0 - before.0, 975 + 390);
    assert_eq!(
        e.evm.escrow(&order(2)).unwrap().unwrap().status,
        EscrowStatus::Refunded
    );
    assert_conserved(&mut e, SUPPLY);
    // The same batch again: everything skipped, nothing paid, nonce unchanged.
    let nonce = view(&e, e.evm.market(), AgoraMarket::authorityNonceCall {});
    let receipt = settle_batch(&e, vec![op(0, order(1), vec![p], vec![(p, 1_000)])]).unwrap();
    assert_eq!(skipped(&receipt).len(), 1);
    assert_eq!(
        view(&e, e.evm.market(), AgoraMarket::authorityNonceCall {}),
        nonce
    );
    // Through the backend (whose cached authority nonce the raw calls above made stale):
    // a second release is refused with the ledger's error.
    let market = e.keys.market.clone();
    assert!(matches!(
        submit(
            &mut e,
            &market,
            TxBody::ReleaseEscrow {
                order_id: order(1),
                payouts: vec![(provider.account(), Amount(1))]
            }
        ),
        Err(LedgerError::EscrowClosed {
            status: EscrowStatus::Released,
            ..
        })
    ));
    assert_conserved(&mut e, SUPPLY);
}

#[test]
fn settling_above_the_escrow_or_with_overflowing_lines_is_skipped() {
    let Some(mut e) = common::evm(3, 0) else {
        return;
    };
    let (buyer, provider) = (e.keys.users[0].clone(), e.keys.users[1].clone());
    let p = e.evm.address_of(&provider.account()).unwrap();
    open(&mut e, &buyer, order(1), 1_000);
    let receipt = settle_batch(
        &e,
        vec![
            op(3, order(1), vec![p], vec![]),
            op(0, order(1), vec![p], vec![(p, 1_001)]),
            // Two lines whose sum overflows 64 bits must not wrap around to a small number.
            op(0, order(1), vec![p], vec![(p, u64::MAX), (p, 2)]),
        ],
    )
    .unwrap();
    assert_eq!(
        skipped(&receipt),
        vec![
            (1, AgoraMarket::ReleaseExceedsEscrow::SELECTOR),
            (2, AgoraMarket::ReleaseExceedsEscrow::SELECTOR)
        ]
    );
    let escrow = e.evm.escrow(&order(1)).unwrap().unwrap();
    assert_eq!(
        (escrow.remaining, escrow.status),
        (Amount(1_000), EscrowStatus::Open)
    );
    // Through the backend: the ledger's own error, with the amounts.
    let market = e.keys.market.clone();
    assert!(matches!(
        submit(
            &mut e,
            &market,
            TxBody::ReleaseEscrow {
                order_id: order(1),
                payouts: vec![(provider.account(), Amount(1_001))]
            }
        ),
        Err(LedgerError::ReleaseExceedsEscrow {
            remaining: Amount(1_000),
            requested: Amount(1_001),
            ..
        })
    ));
    assert_conserved(&mut e, SUPPLY);
}

#[test]
fn only_assigned_staked_providers_can_be_paid() {
    let Some(mut e) = common::evm(3, 100) else {
        return;
    };
    let (buyer, staked, other) = (
        e.keys.users[0].clone(),
        e.keys.users[1].clone(),
        e.keys.users[2].clone(),
    );
    open(&mut e, &buyer, order(1), 1_000);
    // Below the minimum stake: no assignment.
    let refused = e.evm.assign(order(1), &[staked.account()]);
    assert!(
        matches!(refused, Err(EvmError::AssignmentRefused(detail)) if detail.contains("StakeBelowMinimum"))
    );
    submit(
        &mut e,
        &staked,
        TxBody::Bond {
            amount: Amount(100),
        },
    )
    .unwrap();
    e.evm.assign(order(1), &[staked.account()]).unwrap();
    // Paying anyone else is refused by the contract (the ledger's rules know no
    // assignment, so this is the contract's own check), and pays nothing.
    let market = e.keys.market.clone();
    let before = balance(&mut e, &other.account());
    let refused = submit(
        &mut e,
        &market,
        TxBody::ReleaseEscrow {
            order_id: order(1),
            payouts: vec![(other.account(), Amount(500))],
        },
    );
    assert!(
        matches!(refused, Err(LedgerError::Unauthorized { action, .. }) if action.contains("not assigned"))
    );
    assert_eq!(balance(&mut e, &other.account()), before);
    // A second assignment cannot redirect it.
    let o = e.evm.address_of(&other.account()).unwrap();
    let receipt = settle_batch(&e, vec![op(3, order(1), vec![o], vec![])]).unwrap();
    assert_eq!(
        skipped(&receipt),
        vec![(0, AgoraMarket::AlreadyAssigned::SELECTOR)]
    );
    // The assigned provider is paid.
    submit(
        &mut e,
        &market,
        TxBody::ReleaseEscrow {
            order_id: order(1),
            payouts: vec![(staked.account(), Amount(500))],
        },
    )
    .unwrap();
    // Only the authority settles at all.
    let s = e.evm.address_of(&staked.account()).unwrap();
    let data = AgoraMarket::settleBatchCall {
        firstNonce: 0,
        ops: vec![op(0, order(1), vec![s], vec![(s, 1)])],
    }
    .abi_encode();
    assert!(matches!(
        contract_error(send(&e, &other, e.evm.market(), data)),
        AgoraMarketErrors::Unauthorized(_)
    ));
    assert_conserved(&mut e, SUPPLY);
}

#[test]
fn slashing_needs_stake_and_withdrawing_waits_for_unbonding() {
    let Some(mut e) = common::evm(3, 0) else {
        return;
    };
    let (provider, challenger) = (e.keys.users[0].clone(), e.keys.users[1].clone());
    let market = e.keys.market.clone();
    let slash = |amount, evidence: &[u8]| TxBody::Slash {
        provider: provider.account(),
        amount: Amount(amount),
        evidence: Hash::of(evidence),
        reason: "fault".into(),
        beneficiary: challenger.account(),
    };
    assert!(matches!(
        submit(&mut e, &market, slash(1, b"e1")),
        Err(LedgerError::SlashExceedsStake { .. })
    ));
    // The contract refuses it on its own too.
    let p = e.evm.address_of(&provider.account()).unwrap();
    let c = e.evm.address_of(&challenger.account()).unwrap();
    let nonce = view(&e, e.evm.market(), AgoraMarket::authorityNonceCall {});
    let data = AgoraMarket::slashCall {
        nonce,
        provider: p,
        amount: 1,
        evidence: FixedBytes([1; 32]),
        beneficiary: c,
        reason: "x".into(),
    }
    .abi_encode();
    assert!(matches!(
        contract_error(send(&e, &market, e.evm.market(), data)),
        AgoraMarketErrors::SlashExceedsStake(_)
    ));

    submit(
        &mut e,
        &provider,
        TxBody::Bond {
            amount: Amount(1_000),
        },
    )
    .unwrap();
    submit(
        &mut e,
        &provider,
        TxBody::Unbond {
            amount: Amount(1_000),
        },
    )
    .unwrap();
    // Withdrawing during unbonding: refused by the contract directly as well.
    let data = AgoraMarket::withdrawStakeCall {}.abi_encode();
    assert!(matches!(
        contract_error(send(&e, &provider, e.evm.market(), data.clone())),
        AgoraMarketErrors::UnbondingNotMatured(_)
    ));
    // Unbonding stake is still slashable.
    submit(&mut e, &market, slash(100, b"e2")).unwrap();
    e.advance(0, 5);
    let before = balance(&mut e, &provider.account());
    send(&e, &provider, e.evm.market(), data).unwrap();
    assert_eq!(balance(&mut e, &provider.account()).0 - before.0, 900);
    assert_conserved(&mut e, SUPPLY);
}

#[test]
fn overflowing_amounts_are_refused() {
    let Some(mut e) = common::evm(3, 0) else {
        return;
    };
    let user = e.keys.users[0].clone();
    let token = e.evm.token();
    let market = e.evm.market();
    let huge = U256::from(u64::MAX) + U256::from(1u8);
    let a = e.evm.address_of(&user.account()).unwrap();
    send(
        &e,
        &user,
        token,
        agora_evm::contracts::TestToken::mintCall {
            to: a,
            amount: huge,
        }
        .abi_encode(),
    )
    .unwrap();
    send(
        &e,
        &user,
        token,
        agora_evm::contracts::TestToken::approveCall {
            spender: market,
            value: huge,
        }
        .abi_encode(),
    )
    .unwrap();
    let deposit = AgoraMarket::depositCall { amount: huge }.abi_encode();
    assert!(matches!(
        contract_error(send(&e, &user, market, deposit)),
        AgoraMarketErrors::Overflow(_)
    ));
    // Short of 2^64 in total, but not in sum with what the market already holds.
    let deposit = AgoraMarket::depositCall {
        amount: U256::from(u64::MAX - 10),
    }
    .abi_encode();
    assert!(matches!(
        contract_error(send(&e, &user, market, deposit)),
        AgoraMarketErrors::Overflow(_)
    ));
    let deadline = e.now_ms() + 60_000;
    assert!(matches!(
        submit(
            &mut e,
            &user,
            TxBody::OpenEscrow {
                order_id: order(1),
                amount: Amount(u64::MAX),
                deadline_ms: deadline
            }
        ),
        Err(LedgerError::InsufficientBalance { .. })
    ));
    let open = AgoraMarket::openEscrowCall {
        orderId: FixedBytes([9; 32]),
        amount: u64::MAX,
        deadlineMs: deadline,
    }
    .abi_encode();
    assert!(matches!(
        contract_error(send(&e, &user, market, open)),
        AgoraMarketErrors::InsufficientBalance(_)
    ));
    let far = AgoraMarket::openEscrowCall {
        orderId: FixedBytes([9; 32]),
        amount: 1,
        deadlineMs: u64::MAX,
    }
    .abi_encode();
    assert!(matches!(
        contract_error(send(&e, &user, market, far)),
        AgoraMarketErrors::Overflow(_)
    ));
    assert_conserved(&mut e, SUPPLY);
}

#[test]
fn a_buyer_reclaims_an_unsettled_escrow_after_its_deadline() {
    let Some(mut e) = common::evm(3, 0) else {
        return;
    };
    let buyer = e.keys.users[0].clone();
    let deadline = e.now_ms() + 10_000;
    submit(
        &mut e,
        &buyer,
        TxBody::OpenEscrow {
            order_id: order(1),
            amount: Amount(5_000),
            deadline_ms: deadline,
        },
    )
    .unwrap();
    assert!(matches!(
        submit(&mut e, &buyer, TxBody::RefundEscrow { order_id: order(1) }),
        Err(LedgerError::DeadlineNotReached { .. })
    ));
    e.advance(11_000, 1);
    let before = balance(&mut e, &buyer.account());
    submit(&mut e, &buyer, TxBody::RefundEscrow { order_id: order(1) }).unwrap();
    assert_eq!(balance(&mut e, &buyer.account()).0 - before.0, 5_000);
    // And out of the contract entirely: withdrawals are never paused.
    let data = AgoraMarket::withdrawCall { amount: 5_000 }.abi_encode();
    send(&e, &buyer, e.evm.market(), data).unwrap();
    assert_conserved(&mut e, SUPPLY - 5_000);
}

#[test]
fn a_hostile_token_cannot_reenter_and_skimming_is_not_credited() {
    let Some(e) = common::evm(1, 0) else { return };
    let deployer = evm_signer(&e.keys.market);
    let chain = e.evm.chain().clone();
    let (token, market) = e.evm.block_on(async {
        let mut nonce = chain.nonce(deployer.address()).await.unwrap();
        let (_, r) = chain
            .transact(&deployer, None, hostile_token_creation_code(), nonce)
            .await
            .unwrap();
        nonce += 1;
        let token = r.contract_address.unwrap();
        let config = MarketConfig {
            token,
            authority: deployer.address(),
            treasury: Address::repeat_byte(0x77),
            fee_bps: 250,
            slash_beneficiary_bps: 3_000,
            unbonding_period_blocks: 5,
            min_stake: 0,
        };
        let (_, r) = chain
            .transact(&deployer, None, market_creation_code(&config), nonce)
            .await
            .unwrap();
        (token, r.contract_address.unwrap())
    });
    let attacker = e.keys.users[0].clone();
    let call = |data: Vec<u8>| send(&e, &attacker, token, data).unwrap();
    let execute = |to: Address, data: Vec<u8>| {
        call(
            HostileToken::executeCall {
                to,
                data: data.into(),
            }
            .abi_encode(),
        );
    };
    // The token contract itself is the attacking account: it holds tokens and a balance in
    // the market, and every transfer touching the market calls back into `withdraw`.
    call(
        HostileToken::mintCall {
            to: token,
            amount: U256::from(1_000u64),
        }
        .abi_encode(),
    );
    execute(
        token,
        HostileToken::approveCall {
            spender: market,
            value: U256::from(1_000u64),
        }
        .abi_encode(),
    );
    let attack = AgoraMarket::withdrawCall { amount: 500 }.abi_encode();
    call(
        HostileToken::armCall {
            target_: market,
            attack_: attack.into(),
            skimBps_: 0,
        }
        .abi_encode(),
    );
    execute(
        market,
        AgoraMarket::depositCall {
            amount: U256::from(1_000u64),
        }
        .abi_encode(),
    );
    execute(
        market,
        AgoraMarket::withdrawCall { amount: 400 }.abi_encode(),
    );
    assert_eq!(
        view(&e, token, HostileToken::reentryAttemptsCall {}),
        U256::from(2u8)
    );
    assert!(
        !view(&e, token, HostileToken::reentrySucceededCall {}),
        "a reentrant call went through"
    );
    assert_eq!(view(&e, market, AgoraMarket::balanceOfCall(token)), 600);
    let held = |e: &Evm| view(e, token, HostileToken::balanceOfCall { account: market });
    let accounted = |e: &Evm| {
        let t = view(e, market, AgoraMarket::totalsCall {});
        U256::from(
            u128::from(t.balances)
                + u128::from(t.escrowed)
                + u128::from(t.staked)
                + u128::from(t.burnt),
        )
    };
    assert_eq!(held(&e), U256::from(600u64));
    assert_eq!(held(&e), accounted(&e));

    // A skimming token: 10 % of 1_000 never arrives, and is not credited.
    call(
        HostileToken::armCall {
            target_: market,
            attack_: Bytes::new(),
            skimBps_: 1_000,
        }
        .abi_encode(),
    );
    let a = evm_signer(&attacker).address();
    call(
        HostileToken::mintCall {
            to: a,
            amount: U256::from(1_000u64),
        }
        .abi_encode(),
    );
    call(
        HostileToken::approveCall {
            spender: market,
            value: U256::from(1_000u64),
        }
        .abi_encode(),
    );
    send(
        &e,
        &attacker,
        market,
        AgoraMarket::depositCall {
            amount: U256::from(1_000u64),
        }
        .abi_encode(),
    )
    .unwrap();
    assert_eq!(view(&e, market, AgoraMarket::balanceOfCall(a)), 900);
    assert_eq!(held(&e), accounted(&e));
}

#[test]
fn a_frozen_rpc_delays_settlement_and_it_lands_once_after() {
    let Some(mut e) = common::evm(3, 0) else {
        return;
    };
    let (buyer, provider) = (e.keys.users[0].clone(), e.keys.users[1].clone());
    open(&mut e, &buyer, order(1), 1_000);
    let market = e.keys.market.clone();
    let before = balance(&mut e, &provider.account());
    e.anvil.pause();
    let pid = e.anvil.pid();
    let resumer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(2_500));
        // SAFETY: kill(2) sending SIGCONT to the anvil child this test started.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) };
    });
    let started = std::time::Instant::now();
    submit(
        &mut e,
        &market,
        TxBody::ReleaseEscrow {
            order_id: order(1),
            payouts: vec![(provider.account(), Amount(1_000))],
        },
    )
    .unwrap();
    resumer.join().unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the submission did not wait for the node"
    );
    assert_eq!(balance(&mut e, &provider.account()).0 - before.0, 975);
    assert_eq!(
        e.evm.escrow(&order(1)).unwrap().unwrap().status,
        EscrowStatus::Released
    );
    assert_conserved(&mut e, SUPPLY);
}

#[test]
fn a_restarted_chain_is_detected_and_a_lost_settlement_resubmitted() {
    let Some(mut e) = common::evm(3, 0) else {
        return;
    };
    let (buyer, provider) = (e.keys.users[0].clone(), e.keys.users[1].clone());
    open(&mut e, &buyer, order(1), 1_000);
    let before = balance(&mut e, &provider.account());
    // The state as saved before the batch (`anvil_dumpState`).
    let dump = e.rpc("anvil_dumpState", serde_json::json!([]));
    let market = e.keys.market.clone();
    submit(
        &mut e,
        &market,
        TxBody::ReleaseEscrow {
            order_id: order(1),
            payouts: vec![(provider.account(), Amount(1_000))],
        },
    )
    .unwrap();

    // The chain crashes and comes back empty: reported, nothing sent.
    e.anvil.restart(&AnvilOptions::default()).unwrap();
    let refused = e.evm.submit(vec![], 0, &market);
    assert!(
        matches!(refused, Err(EvmError::NoContract { .. })),
        "{refused:?}"
    );
    // Its operator loads the state saved before the batch: the settlement is gone...
    e.rpc("anvil_loadState", serde_json::json!([dump]));
    assert_eq!(
        e.evm.escrow(&order(1)).unwrap().unwrap().status,
        EscrowStatus::Open
    );
    // ...and the next check rebroadcasts the very same signed transaction, once.
    assert_eq!(e.evm.recheck_reorgs().unwrap(), 1);
    assert_eq!(
        e.evm.escrow(&order(1)).unwrap().unwrap().status,
        EscrowStatus::Released
    );
    assert_eq!(e.evm.recheck_reorgs().unwrap(), 0, "resubmitted twice");
    assert_eq!(balance(&mut e, &provider.account()).0 - before.0, 975);
    assert_conserved(&mut e, SUPPLY);
}

#[test]
fn a_reorg_that_drops_a_settlement_is_detected_and_resubmitted() {
    let Some(mut e) = common::evm(3, 0) else {
        return;
    };
    let (buyer, provider) = (e.keys.users[0].clone(), e.keys.users[1].clone());
    open(&mut e, &buyer, order(1), 1_000);
    open(&mut e, &buyer, order(2), 1_000);
    let snapshot = e.rpc("evm_snapshot", serde_json::json!([]));
    let market = e.keys.market.clone();
    let before = balance(&mut e, &provider.account());
    submit(
        &mut e,
        &market,
        TxBody::ReleaseEscrow {
            order_id: order(1),
            payouts: vec![(provider.account(), Amount(1_000))],
        },
    )
    .unwrap();
    // The block with the settlement is reorged away, and others are mined in its place.
    assert_eq!(
        e.rpc("evm_revert", serde_json::json!([snapshot])),
        serde_json::json!(true)
    );
    e.advance(0, 2);
    assert_eq!(
        e.evm.escrow(&order(1)).unwrap().unwrap().status,
        EscrowStatus::Open
    );
    // The next submission first restores order 1's settlement (a transaction signed
    // against the reorged state would meet the restored nonce, so heal first).
    let producer = e.keys.producer.clone();
    let healed = e.evm.submit(vec![], 0, &producer).unwrap();
    assert!(healed.included.is_empty() && healed.rejected.is_empty());
    assert_eq!(
        e.evm.escrow(&order(1)).unwrap().unwrap().status,
        EscrowStatus::Released
    );
    submit(
        &mut e,
        &market,
        TxBody::ReleaseEscrow {
            order_id: order(2),
            payouts: vec![(provider.account(), Amount(1_000))],
        },
    )
    .unwrap();
    assert_eq!(
        e.evm.escrow(&order(1)).unwrap().unwrap().status,
        EscrowStatus::Released
    );
    assert_eq!(
        e.evm.escrow(&order(2)).unwrap().unwrap().status,
        EscrowStatus::Released
    );
    assert_eq!(
        balance(&mut e, &provider.account()).0 - before.0,
        2 * 975,
        "paid once per order"
    );
    assert_conserved(&mut e, SUPPLY);
}

#[test]
fn a_release_and_its_refund_settle_as_one_operation_and_count_as_two() {
    let Some(mut e) = common::evm(3, 0) else {
        return;
    };
    let (buyer, provider) = (e.keys.users[0].clone(), e.keys.users[1].clone());
    open(&mut e, &buyer, order(1), 1_000);
    open(&mut e, &buyer, order(2), 1_000);
    let market = e.keys.market.clone();
    let chain_id = e.evm.chain_id().clone();
    let nonce = e.evm.account(&market.account()).unwrap().next_nonce;
    let (b0, p0) = (
        balance(&mut e, &buyer.account()),
        balance(&mut e, &provider.account()),
    );
    let txs = vec![
        Signed::sign(
            &market,
            &chain_id,
            nonce,
            TxBody::ReleaseEscrow {
                order_id: order(1),
                payouts: vec![(provider.account(), Amount(700))],
            },
        ),
        Signed::sign(
            &market,
            &chain_id,
            nonce + 1,
            TxBody::RefundEscrow { order_id: order(1) },
        ),
        // Released in full: its refund is refused by the rules, and not coalesced.
        Signed::sign(
            &market,
            &chain_id,
            nonce + 2,
            TxBody::ReleaseEscrow {
                order_id: order(2),
                payouts: vec![(provider.account(), Amount(1_000))],
            },
        ),
        Signed::sign(
            &market,
            &chain_id,
            nonce + 3,
            TxBody::RefundEscrow { order_id: order(2) },
        ),
    ];
    let producer = e.keys.producer.clone();
    let outcome = e.evm.submit(txs, 0, &producer).unwrap();
    assert_eq!(outcome.included.len(), 3);
    assert_eq!(outcome.rejected.len(), 1);
    assert!(matches!(
        outcome.rejected[0].error,
        LedgerError::EscrowClosed { .. }
    ));
    assert_eq!(
        e.evm.last_receipts().len(),
        1,
        "one EVM transaction for the whole batch"
    );
    assert_eq!(
        e.evm.account(&market.account()).unwrap().next_nonce,
        nonce + 3
    );
    assert_eq!(balance(&mut e, &buyer.account()).0 - b0.0, 300);
    assert_eq!(balance(&mut e, &provider.account()).0 - p0.0, 683 + 975);
    assert_eq!(
        e.evm.escrow(&order(1)).unwrap().unwrap().status,
        EscrowStatus::Refunded
    );
    assert_conserved(&mut e, SUPPLY);
}
