//! Differential property test: random sequences of ledger transactions applied to the
//! embedded ledger and to the EVM backend on anvil must be accepted or refused alike (same
//! `LedgerError` variant) and leave the same balances, escrows and stakes, with conservation
//! holding after every step.

mod common;

use agora_core::{Amount, Hash, Keypair};
use agora_ledger::{LedgerError, Settlement, TxBody};
use common::{Embedded, Harness, submit};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Transfer {
        from: usize,
        to: usize,
        amount: u64,
    },
    Open {
        buyer: usize,
        order: u8,
        amount: u64,
    },
    Release {
        order: u8,
        payees: Vec<(usize, u64)>,
    },
    Refund {
        by_market: bool,
        signer: usize,
        order: u8,
    },
    Burn {
        order: u8,
        amount: u64,
    },
    Bond {
        who: usize,
        amount: u64,
    },
    Unbond {
        who: usize,
        amount: u64,
    },
    Withdraw {
        who: usize,
    },
    Slash {
        who: usize,
        amount: u64,
        evidence: u8,
        beneficiary: usize,
    },
}

const USERS: usize = 3;

fn amount() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..3, 1u64..2_000, Just(1_000_000), Just(u64::MAX)]
}

fn op() -> impl Strategy<Value = Op> {
    let user = 0..USERS;
    let order = 0u8..4;
    prop_oneof![
        (user.clone(), user.clone(), amount()).prop_map(|(from, to, amount)| Op::Transfer {
            from,
            to,
            amount
        }),
        (user.clone(), order.clone(), amount()).prop_map(|(buyer, order, amount)| Op::Open {
            buyer,
            order,
            amount
        }),
        (
            order.clone(),
            prop::collection::vec((user.clone(), amount()), 0..3)
        )
            .prop_map(|(order, payees)| Op::Release { order, payees }),
        (any::<bool>(), user.clone(), order.clone()).prop_map(|(by_market, signer, order)| {
            Op::Refund {
                by_market,
                signer,
                order,
            }
        }),
        (order.clone(), amount()).prop_map(|(order, amount)| Op::Burn { order, amount }),
        (user.clone(), amount()).prop_map(|(who, amount)| Op::Bond { who, amount }),
        (user.clone(), amount()).prop_map(|(who, amount)| Op::Unbond { who, amount }),
        user.clone().prop_map(|who| Op::Withdraw { who }),
        (user.clone(), amount(), 0u8..3, user).prop_map(|(who, amount, evidence, beneficiary)| {
            Op::Slash {
                who,
                amount,
                evidence,
                beneficiary,
            }
        }),
    ]
}

fn order_id(n: u8) -> Hash {
    Hash::of(&[n, 0xd1])
}

/// The signer and body of `op` on `h`.
fn body<H: Harness>(h: &mut H, op: &Op) -> (Keypair, TxBody) {
    let keys = h.keys().clone();
    let user = |i: usize| keys.users[i].clone();
    let deadline = h.now_ms() + 3_600_000;
    match op {
        Op::Transfer { from, to, amount } => (
            user(*from),
            TxBody::Transfer {
                to: user(*to).account(),
                amount: Amount(*amount),
            },
        ),
        Op::Open {
            buyer,
            order,
            amount,
        } => (
            user(*buyer),
            TxBody::OpenEscrow {
                order_id: order_id(*order),
                amount: Amount(*amount),
                deadline_ms: deadline,
            },
        ),
        Op::Release { order, payees } => (
            keys.market.clone(),
            TxBody::ReleaseEscrow {
                order_id: order_id(*order),
                payouts: payees
                    .iter()
                    .map(|(p, a)| (user(*p).account(), Amount(*a)))
                    .collect(),
            },
        ),
        Op::Refund {
            by_market,
            signer,
            order,
        } => (
            if *by_market {
                keys.market.clone()
            } else {
                user(*signer)
            },
            TxBody::RefundEscrow {
                order_id: order_id(*order),
            },
        ),
        Op::Burn { order, amount } => (
            keys.market.clone(),
            TxBody::BurnEscrow {
                order_id: order_id(*order),
                amount: Amount(*amount),
            },
        ),
        Op::Bond { who, amount } => (
            user(*who),
            TxBody::Bond {
                amount: Amount(*amount),
            },
        ),
        Op::Unbond { who, amount } => (
            user(*who),
            TxBody::Unbond {
                amount: Amount(*amount),
            },
        ),
        Op::Withdraw { who } => (user(*who), TxBody::Withdraw),
        Op::Slash {
            who,
            amount,
            evidence,
            beneficiary,
        } => (
            keys.market.clone(),
            TxBody::Slash {
                provider: user(*who).account(),
                amount: Amount(*amount),
                evidence: Hash::of(&[*evidence]),
                reason: "fault".into(),
                beneficiary: user(*beneficiary).account(),
            },
        ),
    }
}

/// Everything both backends must agree on (unbonding heights aside: block heights advance
/// differently on the two, and the period is 0 here so every entry is mature at once).
fn snapshot<H: Harness>(h: &mut H) -> Vec<String> {
    let keys = h.keys().clone();
    let mut out = Vec::new();
    for k in keys.users.iter().chain([&keys.treasury]) {
        let account = h.settlement().account(&k.account()).unwrap();
        let stake = h.settlement().stake(&k.account()).unwrap().map(|s| {
            (
                s.bonded,
                s.unbonding.iter().map(|u| u.amount.0).sum::<u64>(),
            )
        });
        out.push(format!("{} {:?} {:?}", k.account(), account.balance, stake));
    }
    for n in 0..4 {
        // Deadlines differ: each backend's clock is its own.
        let escrow = h
            .settlement()
            .escrow(&order_id(n))
            .unwrap()
            .map(|e| (e.buyer, e.locked, e.remaining, e.released, e.status));
        out.push(format!("{n} {escrow:?}"));
    }
    out
}

fn variant(result: &Result<agora_ledger::Effects, LedgerError>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(e) => format!("{e:?}")
            .split([' ', '(', '{'])
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn both_backends_accept_refuse_and_end_alike(ops in prop::collection::vec(op(), 1..14)) {
        let Some(mut evm) = common::evm_with(USERS, 0, 0) else { return Ok(()) };
        let mut embedded: Embedded = Embedded::with_unbonding(USERS, 0);
        for op in &ops {
            let (key, b) = body(&mut embedded, op);
            let expected = submit(&mut embedded, &key, b);
            let (key, b) = body(&mut evm, op);
            let got = submit(&mut evm, &key, b);
            if let (Op::Open { order, .. }, Ok(_)) = (op, &got) {
                // The ledger has no assignment step; as a market would when matching, the
                // order is assigned (to every user, so any later release may pay any).
                let everyone: Vec<_> = evm.keys.users.iter().map(|k| k.account()).collect();
                evm.evm.assign(order_id(*order), &everyone).unwrap();
            }
            prop_assert_eq!(variant(&expected), variant(&got), "{:?}: embedded {:?}, evm {:?}", op, expected, got);
            prop_assert_eq!(snapshot(&mut embedded), snapshot(&mut evm), "after {:?}", op);
        }
    }
}
