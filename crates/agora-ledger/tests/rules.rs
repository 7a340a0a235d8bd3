//! Scenario tests for each rule: who may sign what, the exact fee and slash arithmetic,
//! unbonding maturity, and the typed error each refusal returns.

use agora_core::{AccountId, Amount, Hash, Keypair, Signed};
use agora_ledger::{
    BlockContext, DevKeys, Effects, EscrowStatus, Event, Genesis, LedgerError, State, TxBody, apply,
};

struct Chain {
    genesis: Genesis,
    keys: DevKeys,
    state: State,
    height: u64,
    now_ms: u64,
}

impl Chain {
    fn new() -> Chain {
        let (mut genesis, keys) = Genesis::dev("rules", 1_000, 3, Amount(1_000_000));
        genesis.params.fee_bps = 250; // 2.5 %
        genesis.params.slash_beneficiary_bps = 3_000; // 30 %
        genesis.params.unbonding_period_blocks = 5;
        let state = genesis.initial_state().unwrap();
        Chain {
            genesis,
            keys,
            state,
            height: 1,
            now_ms: 1_000,
        }
    }

    fn user(&self, i: usize) -> Keypair {
        self.keys.users[i].clone()
    }

    fn submit(&mut self, key: &Keypair, body: TxBody) -> Result<Effects, LedgerError> {
        let nonce = self.state.next_nonce(&key.account());
        let tx = Signed::sign(key, &self.genesis.chain_id, nonce, body);
        let ctx = BlockContext {
            chain_id: &self.genesis.chain_id,
            params: &self.genesis.params,
            height: self.height,
            timestamp_ms: self.now_ms,
        };
        let before = self.state.clone();
        let result = apply(&mut self.state, &tx, &ctx);
        if result.is_err() {
            assert_eq!(
                self.state, before,
                "a refused transaction changed the state"
            );
        }
        self.state.check_conservation().unwrap();
        result
    }

    fn balance(&self, id: &AccountId) -> Amount {
        self.state.balance(id)
    }
}

fn order(n: u8) -> Hash {
    Hash::of(&[n])
}

#[test]
fn transfer_moves_balance_and_refuses_overdraft_and_zero() {
    let mut c = Chain::new();
    let (a, b) = (c.user(0), c.user(1));
    c.submit(
        &a,
        TxBody::Transfer {
            to: b.account(),
            amount: Amount(400),
        },
    )
    .unwrap();
    assert_eq!(c.balance(&a.account()), Amount(999_600));
    assert_eq!(c.balance(&b.account()), Amount(1_000_400));
    assert!(matches!(
        c.submit(
            &a,
            TxBody::Transfer {
                to: b.account(),
                amount: Amount(2_000_000)
            }
        ),
        Err(LedgerError::InsufficientBalance { .. })
    ));
    assert!(matches!(
        c.submit(
            &a,
            TxBody::Transfer {
                to: b.account(),
                amount: Amount(0)
            }
        ),
        Err(LedgerError::ZeroAmount { .. })
    ));
}

#[test]
fn release_takes_the_fee_per_payout_line_rounding_down() {
    let mut c = Chain::new();
    let (buyer, p1, p2) = (c.user(0), c.user(1), c.user(2));
    let market = c.keys.market.clone();
    let treasury = c.keys.treasury.account();
    c.submit(
        &buyer,
        TxBody::OpenEscrow {
            order_id: order(1),
            amount: Amount(10_000),
            deadline_ms: 5_000,
        },
    )
    .unwrap();
    // 2.5 % of 1_001 is 25.025 → 25; of 3_999 is 99.975 → 99.
    let effects = c
        .submit(
            &market,
            TxBody::ReleaseEscrow {
                order_id: order(1),
                payouts: vec![(p1.account(), Amount(1_001)), (p2.account(), Amount(3_999))],
            },
        )
        .unwrap();
    assert_eq!(
        effects.events[0],
        Event::EscrowReleased {
            order_id: order(1),
            payee: p1.account(),
            net: Amount(976),
            fee: Amount(25)
        }
    );
    assert_eq!(c.balance(&p1.account()), Amount(1_000_976));
    assert_eq!(c.balance(&p2.account()), Amount(1_003_900));
    assert_eq!(c.balance(&treasury), Amount(124));
    let escrow = *c.state.escrow(&order(1)).unwrap();
    assert_eq!(
        (escrow.remaining, escrow.released, escrow.status),
        (Amount(5_000), Amount(5_000), EscrowStatus::Open)
    );
    // Never beyond what is locked.
    assert!(matches!(
        c.submit(
            &market,
            TxBody::ReleaseEscrow {
                order_id: order(1),
                payouts: vec![(p1.account(), Amount(5_001))]
            }
        ),
        Err(LedgerError::ReleaseExceedsEscrow {
            remaining: Amount(5_000),
            requested: Amount(5_001),
            ..
        })
    ));
    c.submit(
        &market,
        TxBody::ReleaseEscrow {
            order_id: order(1),
            payouts: vec![(p1.account(), Amount(5_000))],
        },
    )
    .unwrap();
    assert_eq!(
        c.state.escrow(&order(1)).unwrap().status,
        EscrowStatus::Released
    );
    // A double release finds the escrow closed.
    assert!(matches!(
        c.submit(
            &market,
            TxBody::ReleaseEscrow {
                order_id: order(1),
                payouts: vec![(p1.account(), Amount(1))]
            }
        ),
        Err(LedgerError::EscrowClosed {
            status: EscrowStatus::Released,
            ..
        })
    ));
}

#[test]
fn only_the_market_releases_and_only_the_buyer_funds() {
    let mut c = Chain::new();
    let (buyer, provider) = (c.user(0), c.user(1));
    c.submit(
        &buyer,
        TxBody::OpenEscrow {
            order_id: order(2),
            amount: Amount(100),
            deadline_ms: 5_000,
        },
    )
    .unwrap();
    assert_eq!(c.balance(&buyer.account()), Amount(999_900));
    assert!(matches!(
        c.submit(
            &provider,
            TxBody::ReleaseEscrow {
                order_id: order(2),
                payouts: vec![(provider.account(), Amount(100))]
            }
        ),
        Err(LedgerError::Unauthorized {
            action: "release escrow",
            ..
        })
    ));
    assert!(matches!(
        c.submit(
            &buyer,
            TxBody::OpenEscrow {
                order_id: order(2),
                amount: Amount(1),
                deadline_ms: 5_000
            }
        ),
        Err(LedgerError::EscrowExists(_))
    ));
    assert!(matches!(
        c.submit(
            &c.keys.market.clone(),
            TxBody::ReleaseEscrow {
                order_id: order(9),
                payouts: vec![(provider.account(), Amount(1))]
            }
        ),
        Err(LedgerError::UnknownEscrow(_))
    ));
    assert!(matches!(
        c.submit(
            &buyer,
            TxBody::OpenEscrow {
                order_id: order(3),
                amount: Amount(1),
                deadline_ms: 1_000
            }
        ),
        Err(LedgerError::DeadlineNotInFuture { .. })
    ));
}

#[test]
fn refunds_by_market_anytime_by_anyone_after_the_deadline() {
    let mut c = Chain::new();
    let (buyer, stranger) = (c.user(0), c.user(1));
    let market = c.keys.market.clone();
    c.submit(
        &buyer,
        TxBody::OpenEscrow {
            order_id: order(1),
            amount: Amount(700),
            deadline_ms: 3_000,
        },
    )
    .unwrap();
    c.submit(
        &buyer,
        TxBody::OpenEscrow {
            order_id: order(2),
            amount: Amount(300),
            deadline_ms: 3_000,
        },
    )
    .unwrap();
    assert!(matches!(
        c.submit(&stranger, TxBody::RefundEscrow { order_id: order(1) }),
        Err(LedgerError::DeadlineNotReached {
            deadline_ms: 3_000,
            now_ms: 1_000
        })
    ));
    c.submit(&market, TxBody::RefundEscrow { order_id: order(2) })
        .unwrap();
    c.now_ms = 3_000;
    let effects = c
        .submit(&stranger, TxBody::RefundEscrow { order_id: order(1) })
        .unwrap();
    assert_eq!(
        effects.events,
        vec![Event::EscrowRefunded {
            order_id: order(1),
            buyer: buyer.account(),
            amount: Amount(700)
        }]
    );
    assert_eq!(c.balance(&buyer.account()), Amount(1_000_000));
    assert!(matches!(
        c.submit(&market, TxBody::RefundEscrow { order_id: order(1) }),
        Err(LedgerError::EscrowClosed {
            status: EscrowStatus::Refunded,
            ..
        })
    ));
}

#[test]
fn unbonding_matures_after_the_period_and_stays_slashable() {
    let mut c = Chain::new();
    let p = c.user(0);
    c.submit(
        &p,
        TxBody::Bond {
            amount: Amount(1_000),
        },
    )
    .unwrap();
    assert!(matches!(
        c.submit(
            &p,
            TxBody::Unbond {
                amount: Amount(1_001)
            }
        ),
        Err(LedgerError::UnbondExceedsBonded { .. })
    ));
    assert!(matches!(
        c.submit(&p, TxBody::Withdraw),
        Err(LedgerError::NothingToWithdraw(_))
    ));
    c.submit(
        &p,
        TxBody::Unbond {
            amount: Amount(600),
        },
    )
    .unwrap(); // matures at 1 + 5 = 6
    c.height = 5;
    assert!(matches!(
        c.submit(&p, TxBody::Withdraw),
        Err(LedgerError::UnbondingNotMatured {
            matures_at_height: 6,
            height: 5,
            ..
        })
    ));
    // Slashing 700 takes the 400 bonded, then 300 of the unbonding entry.
    let challenger = c.user(1).account();
    let market = c.keys.market.clone();
    let effects = c
        .submit(
            &market,
            TxBody::Slash {
                provider: p.account(),
                amount: Amount(700),
                evidence: Hash::of(b"fraud"),
                reason: "wrong digest".into(),
                beneficiary: challenger,
            },
        )
        .unwrap();
    assert!(matches!(
        &effects.events[0],
        Event::Slashed {
            reward: Amount(210),
            burned: Amount(490),
            ..
        }
    ));
    assert_eq!(c.state.burned(), Amount(490));
    assert_eq!(c.balance(&challenger), Amount(1_000_210));
    let stake = c.state.stake(&p.account()).unwrap().clone();
    assert_eq!(
        (stake.bonded, stake.unbonding[0].amount),
        (Amount(0), Amount(300))
    );
    c.height = 6;
    c.submit(&p, TxBody::Withdraw).unwrap();
    assert_eq!(c.balance(&p.account()), Amount(999_300));
    assert!(c.state.stake(&p.account()).is_none());
}

#[test]
fn slashing_is_the_markets_bounded_once_per_evidence() {
    let mut c = Chain::new();
    let (p, other) = (c.user(0), c.user(1));
    let market = c.keys.market.clone();
    c.submit(
        &p,
        TxBody::Bond {
            amount: Amount(100),
        },
    )
    .unwrap();
    let slash = |amount, evidence: &[u8]| TxBody::Slash {
        provider: p.account(),
        amount: Amount(amount),
        evidence: Hash::of(evidence),
        reason: "fault".into(),
        beneficiary: other.account(),
    };
    assert!(matches!(
        c.submit(&other, slash(10, b"e1")),
        Err(LedgerError::Unauthorized { .. })
    ));
    assert!(matches!(
        c.submit(&market, slash(101, b"e1")),
        Err(LedgerError::SlashExceedsStake { .. })
    ));
    c.submit(&market, slash(10, b"e1")).unwrap();
    assert!(matches!(
        c.submit(&market, slash(10, b"e1")),
        Err(LedgerError::EvidenceAlreadyUsed(_))
    ));
    let long = TxBody::Slash {
        provider: p.account(),
        amount: Amount(1),
        evidence: Hash::of(b"e2"),
        reason: "x".repeat(300),
        beneficiary: other.account(),
    };
    assert!(matches!(
        c.submit(&market, long),
        Err(LedgerError::ReasonTooLong { len: 300, .. })
    ));
}

#[test]
fn replays_and_forgeries_are_refused() {
    let mut c = Chain::new();
    let (a, b) = (c.user(0), c.user(1));
    let body = TxBody::Transfer {
        to: b.account(),
        amount: Amount(5),
    };
    let tx = Signed::sign(&a, &c.genesis.chain_id, 0, body.clone());
    let ctx = BlockContext {
        chain_id: &c.genesis.chain_id,
        params: &c.genesis.params,
        height: 1,
        timestamp_ms: 1_000,
    };
    apply(&mut c.state, &tx, &ctx).unwrap();
    assert!(matches!(
        apply(&mut c.state, &tx, &ctx),
        Err(LedgerError::NonceReused {
            expected: 1,
            found: 0,
            ..
        })
    ));
    let skipped = Signed::sign(&a, &c.genesis.chain_id, 5, body.clone());
    assert!(matches!(
        apply(&mut c.state, &skipped, &ctx),
        Err(LedgerError::NonceSkipped {
            expected: 1,
            found: 5,
            ..
        })
    ));
    let mut forged = Signed::sign(&a, &c.genesis.chain_id, 1, body.clone());
    forged.body = TxBody::Transfer {
        to: b.account(),
        amount: Amount(500_000),
    };
    assert!(matches!(
        apply(&mut c.state, &forged, &ctx),
        Err(LedgerError::BadSignature { .. })
    ));
    let elsewhere = Signed::sign(&a, &agora_core::ChainId::new("other"), 1, body);
    assert!(matches!(
        apply(&mut c.state, &elsewhere, &ctx),
        Err(LedgerError::WrongChain { .. })
    ));
}

#[test]
fn genesis_round_trips_through_json_and_validates() {
    let (genesis, _) = Genesis::dev("json", 7, 2, Amount(5));
    let text = serde_json::to_string_pretty(&genesis).unwrap();
    let back: Genesis = serde_json::from_str(&text).unwrap();
    assert_eq!(back, genesis);
    assert_eq!(back.hash(), genesis.hash());
    let mut bad = genesis.clone();
    bad.params.fee_bps = 10_001;
    assert!(bad.validate().is_err());
    let mut dup = genesis;
    dup.allocations.push(dup.allocations[0]);
    assert!(dup.validate().is_err());
}

#[test]
fn burning_escrow_is_the_markets_bounded_and_counted_as_burnt() {
    let mut c = Chain::new();
    let (bonder, stranger) = (c.user(0), c.user(1));
    let market = c.keys.market.clone();
    c.submit(
        &bonder,
        TxBody::OpenEscrow {
            order_id: order(9),
            amount: Amount(1_000),
            deadline_ms: 5_000,
        },
    )
    .unwrap();
    let burn = |amount| TxBody::BurnEscrow {
        order_id: order(9),
        amount: Amount(amount),
    };
    assert!(matches!(
        c.submit(&stranger, burn(10)),
        Err(LedgerError::Unauthorized { .. })
    ));
    assert!(matches!(
        c.submit(&market, burn(0)),
        Err(LedgerError::ZeroAmount { .. })
    ));
    assert!(matches!(
        c.submit(&market, burn(1_001)),
        Err(LedgerError::ReleaseExceedsEscrow { .. })
    ));
    // A forfeited bond: half to the provider, the rest burnt.
    c.submit(
        &market,
        TxBody::ReleaseEscrow {
            order_id: order(9),
            payouts: vec![(stranger.account(), Amount(500))],
        },
    )
    .unwrap();
    let effects = c.submit(&market, burn(500)).unwrap();
    assert_eq!(
        effects.events,
        vec![Event::EscrowBurned {
            order_id: order(9),
            amount: Amount(500)
        }]
    );
    assert_eq!(c.state.burned(), Amount(500));
    let escrow = c.state.escrow(&order(9)).unwrap();
    assert_eq!(escrow.status, EscrowStatus::Released);
    assert!(c.submit(&market, burn(1)).is_err(), "nothing left to burn");
}
