//! The ledger's rules, run through the `Settlement` trait against both backends: the
//! embedded ledger and the `AgoraMarket` contract on a real anvil. Every submission checks
//! that no token was created or lost (see `common::submit_signed`).

mod common;

use agora_core::{Amount, Hash, Signed};
use agora_ledger::{EscrowStatus, Event, LedgerError, Settlement, TxBody};
use common::{Harness, balance, submit, submit_signed};

fn order(n: u8) -> Hash {
    Hash::of(&[n])
}

/// Transfers, escrow with the per-line fee, refunds by deadline, stake and slashing.
fn rules<H: Harness>(h: &mut H) {
    let keys = h.keys().clone();
    let (a, b, c) = (
        keys.users[0].clone(),
        keys.users[1].clone(),
        keys.users[2].clone(),
    );
    let market = keys.market.clone();
    let treasury = keys.treasury.account();
    let name = h.name();

    // Transfers move balance; overdraft and zero are refused.
    submit(
        h,
        &a,
        TxBody::Transfer {
            to: b.account(),
            amount: Amount(400),
        },
    )
    .unwrap();
    assert_eq!(balance(h, &a.account()), Amount(999_600), "{name}");
    assert_eq!(balance(h, &b.account()), Amount(1_000_400), "{name}");
    assert!(
        matches!(
            submit(
                h,
                &a,
                TxBody::Transfer {
                    to: b.account(),
                    amount: Amount(2_000_000)
                }
            ),
            Err(LedgerError::InsufficientBalance { .. })
        ),
        "{name}"
    );
    assert!(
        matches!(
            submit(
                h,
                &a,
                TxBody::Transfer {
                    to: b.account(),
                    amount: Amount(0)
                }
            ),
            Err(LedgerError::ZeroAmount { .. })
        ),
        "{name}"
    );

    // Escrow: the fee per payout line, rounding down; never beyond what is locked; closed
    // after a full release, so a second settlement is refused.
    let deadline = h.now_ms() + 60_000;
    submit(
        h,
        &a,
        TxBody::OpenEscrow {
            order_id: order(1),
            amount: Amount(10_000),
            deadline_ms: deadline,
        },
    )
    .unwrap();
    assert!(
        matches!(
            submit(
                h,
                &a,
                TxBody::OpenEscrow {
                    order_id: order(1),
                    amount: Amount(1),
                    deadline_ms: deadline
                }
            ),
            Err(LedgerError::EscrowExists(_))
        ),
        "{name}"
    );
    assert!(
        matches!(
            submit(
                h,
                &b,
                TxBody::ReleaseEscrow {
                    order_id: order(1),
                    payouts: vec![(b.account(), Amount(100))]
                }
            ),
            Err(LedgerError::Unauthorized { .. })
        ),
        "{name}"
    );
    let (b0, c0) = (balance(h, &b.account()), balance(h, &c.account()));
    let effects = submit(
        h,
        &market,
        TxBody::ReleaseEscrow {
            order_id: order(1),
            payouts: vec![(b.account(), Amount(1_001)), (c.account(), Amount(3_999))],
        },
    )
    .unwrap();
    assert_eq!(
        effects.events[0],
        Event::EscrowReleased {
            order_id: order(1),
            payee: b.account(),
            net: Amount(976),
            fee: Amount(25)
        },
        "{name}"
    );
    assert_eq!(balance(h, &b.account()).0 - b0.0, 976, "{name}");
    assert_eq!(balance(h, &c.account()).0 - c0.0, 3_900, "{name}");
    assert_eq!(balance(h, &treasury), Amount(124), "{name}");
    let escrow = h.settlement().escrow(&order(1)).unwrap().unwrap();
    assert_eq!(
        (escrow.remaining, escrow.released, escrow.status),
        (Amount(5_000), Amount(5_000), EscrowStatus::Open),
        "{name}"
    );
    assert!(
        matches!(
            submit(
                h,
                &market,
                TxBody::ReleaseEscrow {
                    order_id: order(1),
                    payouts: vec![(b.account(), Amount(5_001))]
                }
            ),
            Err(LedgerError::ReleaseExceedsEscrow {
                remaining: Amount(5_000),
                requested: Amount(5_001),
                ..
            })
        ),
        "{name}"
    );
    submit(
        h,
        &market,
        TxBody::ReleaseEscrow {
            order_id: order(1),
            payouts: vec![(b.account(), Amount(5_000))],
        },
    )
    .unwrap();
    assert_eq!(
        h.settlement().escrow(&order(1)).unwrap().unwrap().status,
        EscrowStatus::Released,
        "{name}"
    );
    assert!(
        matches!(
            submit(
                h,
                &market,
                TxBody::ReleaseEscrow {
                    order_id: order(1),
                    payouts: vec![(b.account(), Amount(1))]
                }
            ),
            Err(LedgerError::EscrowClosed {
                status: EscrowStatus::Released,
                ..
            })
        ),
        "{name}"
    );
    assert!(
        matches!(
            submit(
                h,
                &market,
                TxBody::ReleaseEscrow {
                    order_id: order(9),
                    payouts: vec![(b.account(), Amount(1))]
                }
            ),
            Err(LedgerError::UnknownEscrow(_))
        ),
        "{name}"
    );

    // Refunds: the market at any time, anyone once the deadline has passed.
    let deadline = h.now_ms() + 30_000;
    submit(
        h,
        &a,
        TxBody::OpenEscrow {
            order_id: order(2),
            amount: Amount(700),
            deadline_ms: deadline,
        },
    )
    .unwrap();
    submit(
        h,
        &a,
        TxBody::OpenEscrow {
            order_id: order(3),
            amount: Amount(300),
            deadline_ms: deadline,
        },
    )
    .unwrap();
    assert!(
        matches!(
            submit(h, &c, TxBody::RefundEscrow { order_id: order(2) }),
            Err(LedgerError::DeadlineNotReached { .. })
        ),
        "{name}"
    );
    submit(h, &market, TxBody::RefundEscrow { order_id: order(3) }).unwrap();
    let a0 = balance(h, &a.account());
    h.advance(31_000, 1);
    let effects = submit(h, &c, TxBody::RefundEscrow { order_id: order(2) }).unwrap();
    assert_eq!(
        effects.events,
        vec![Event::EscrowRefunded {
            order_id: order(2),
            buyer: a.account(),
            amount: Amount(700)
        }],
        "{name}"
    );
    assert_eq!(balance(h, &a.account()).0 - a0.0, 700, "{name}");
    assert!(
        matches!(
            submit(h, &market, TxBody::RefundEscrow { order_id: order(2) }),
            Err(LedgerError::EscrowClosed {
                status: EscrowStatus::Refunded,
                ..
            })
        ),
        "{name}"
    );

    // Burning part of an escrow (a forfeited challenge bond) is the market's, and counted.
    let deadline = h.now_ms() + 60_000;
    submit(
        h,
        &a,
        TxBody::OpenEscrow {
            order_id: order(4),
            amount: Amount(1_000),
            deadline_ms: deadline,
        },
    )
    .unwrap();
    assert!(
        matches!(
            submit(
                h,
                &c,
                TxBody::BurnEscrow {
                    order_id: order(4),
                    amount: Amount(10)
                }
            ),
            Err(LedgerError::Unauthorized { .. })
        ),
        "{name}"
    );
    assert!(
        matches!(
            submit(
                h,
                &market,
                TxBody::BurnEscrow {
                    order_id: order(4),
                    amount: Amount(1_001)
                }
            ),
            Err(LedgerError::ReleaseExceedsEscrow { .. })
        ),
        "{name}"
    );
    submit(
        h,
        &market,
        TxBody::ReleaseEscrow {
            order_id: order(4),
            payouts: vec![(c.account(), Amount(500))],
        },
    )
    .unwrap();
    submit(
        h,
        &market,
        TxBody::BurnEscrow {
            order_id: order(4),
            amount: Amount(500),
        },
    )
    .unwrap();
    assert_eq!(
        h.settlement().escrow(&order(4)).unwrap().unwrap().status,
        EscrowStatus::Released,
        "{name}"
    );

    // Stake: unbonding matures after the period and stays slashable until then.
    submit(
        h,
        &c,
        TxBody::Bond {
            amount: Amount(1_000),
        },
    )
    .unwrap();
    assert!(
        matches!(
            submit(
                h,
                &c,
                TxBody::Unbond {
                    amount: Amount(1_001)
                }
            ),
            Err(LedgerError::UnbondExceedsBonded { .. })
        ),
        "{name}"
    );
    assert!(
        matches!(
            submit(h, &c, TxBody::Withdraw),
            Err(LedgerError::NothingToWithdraw(_))
        ),
        "{name}"
    );
    submit(
        h,
        &c,
        TxBody::Unbond {
            amount: Amount(600),
        },
    )
    .unwrap();
    assert!(
        matches!(
            submit(h, &c, TxBody::Withdraw),
            Err(LedgerError::UnbondingNotMatured { .. })
        ),
        "{name}"
    );
    let slash = |amount, evidence: &[u8]| TxBody::Slash {
        provider: c.account(),
        amount: Amount(amount),
        evidence: Hash::of(evidence),
        reason: "wrong digest".into(),
        beneficiary: b.account(),
    };
    assert!(
        matches!(
            submit(h, &b, slash(10, b"e0")),
            Err(LedgerError::Unauthorized { .. })
        ),
        "{name}"
    );
    assert!(
        matches!(
            submit(h, &market, slash(1_001, b"e0")),
            Err(LedgerError::SlashExceedsStake { .. })
        ),
        "{name}"
    );
    let b0 = balance(h, &b.account());
    // 700 takes the 400 bonded, then 300 of the unbonding entry; 30 % to the beneficiary.
    let effects = submit(h, &market, slash(700, b"fraud")).unwrap();
    assert!(
        matches!(
            &effects.events[0],
            Event::Slashed {
                reward: Amount(210),
                burned: Amount(490),
                ..
            }
        ),
        "{name}"
    );
    assert_eq!(balance(h, &b.account()).0 - b0.0, 210, "{name}");
    assert!(
        matches!(
            submit(h, &market, slash(1, b"fraud")),
            Err(LedgerError::EvidenceAlreadyUsed(_))
        ),
        "{name}"
    );
    let long = TxBody::Slash {
        provider: c.account(),
        amount: Amount(1),
        evidence: Hash::of(b"e2"),
        reason: "x".repeat(300),
        beneficiary: b.account(),
    };
    assert!(
        matches!(
            submit(h, &market, long),
            Err(LedgerError::ReasonTooLong { len: 300, .. })
        ),
        "{name}"
    );
    let stake = h.settlement().stake(&c.account()).unwrap().unwrap();
    assert_eq!(
        (stake.bonded, stake.unbonding[0].amount),
        (Amount(0), Amount(300)),
        "{name}"
    );
    h.advance(0, 6);
    let c0 = balance(h, &c.account());
    submit(h, &c, TxBody::Withdraw).unwrap();
    assert_eq!(balance(h, &c.account()).0 - c0.0, 300, "{name}");
    assert!(
        h.settlement().stake(&c.account()).unwrap().is_none(),
        "{name}"
    );

    // A replayed envelope meets a used nonce.
    let nonce = h.settlement().account(&a.account()).unwrap().next_nonce;
    let chain_id = h.settlement().chain_id().clone();
    let tx = Signed::sign(
        &a,
        &chain_id,
        nonce,
        TxBody::Transfer {
            to: b.account(),
            amount: Amount(5),
        },
    );
    submit_signed(h, tx.clone()).unwrap();
    assert!(
        matches!(submit_signed(h, tx), Err(LedgerError::NonceReused { .. })),
        "{name}"
    );
    let mut forged = Signed::sign(
        &a,
        &chain_id,
        nonce + 1,
        TxBody::Transfer {
            to: b.account(),
            amount: Amount(5),
        },
    );
    forged.body = TxBody::Transfer {
        to: b.account(),
        amount: Amount(500_000),
    };
    assert!(
        matches!(
            submit_signed(h, forged),
            Err(LedgerError::BadSignature { .. })
        ),
        "{name}"
    );
}

#[test]
fn rules_hold_on_the_embedded_ledger() {
    rules(&mut common::Embedded::new(3));
}

#[test]
fn rules_hold_on_the_evm_contract() {
    let Some(mut evm) = common::evm(3, 0) else {
        return;
    };
    rules(&mut evm);
}
