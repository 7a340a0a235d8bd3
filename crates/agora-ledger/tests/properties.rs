//! Property tests over long random sequences of valid and invalid transactions.
//!
//! - Conservation holds after every transaction.
//! - A refused transaction leaves the state, and its root, exactly as they were.
//! - The incrementally maintained state root always equals one computed from nothing.
//! - Blocks built from the same sequence replay to the same state root.
//! - The unsigned entry point for simulations applies exactly the signed path's rules.
//! - Compute vouchers (mint, transfer, redeem, expire) are part of every random sequence:
//!   their backing is counted by conservation, and each series' outstanding CU always equals
//!   the sum of its holdings (no unit is created or spent twice).

use agora_core::{AccountId, Amount, ChainId, Hash, Keypair, Price, Signed};
use agora_ledger::{
    BlockContext, ChainTip, DevKeys, Genesis, LedgerError, Replayer, State, Tx, TxBody,
    VoucherQuote, VoucherTerms, apply, apply_unsigned, build_block,
};
use proptest::prelude::*;

const USERS: usize = 4;

/// How an action's envelope is made: mostly right, sometimes deliberately wrong.
#[derive(Clone, Debug)]
enum Envelope {
    Good,
    ReusedNonce,
    SkippedNonce,
    WrongChain,
    BadSignature,
}

#[derive(Clone, Debug)]
enum Action {
    Transfer {
        from: usize,
        to: usize,
        amount: u64,
    },
    Open {
        buyer: usize,
        order: u8,
        amount: u64,
        deadline_in: u64,
    },
    Release {
        signer: usize,
        order: u8,
        payouts: Vec<(usize, u64)>,
    },
    Refund {
        signer: usize,
        order: u8,
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
    Burn {
        signer: usize,
        order: u8,
        amount: u64,
    },
    Slash {
        signer: usize,
        provider: usize,
        amount: u64,
        evidence: u8,
        beneficiary: usize,
    },
    MintVoucher {
        buyer: usize,
        series: usize,
        cu: u64,
        quote: Quote,
    },
    TransferVoucher {
        from: usize,
        to: usize,
        series: usize,
        cu: u64,
    },
    RedeemVoucher {
        holder: usize,
        series: usize,
        cu: u64,
        order: u8,
        deadline_in: u64,
    },
    ExpireVoucher {
        signer: usize,
        holder: usize,
        series: usize,
    },
}

/// How a mint's price quote is made: mostly by the market and fresh.
#[derive(Clone, Debug)]
enum Quote {
    Good,
    Stale,
    NotByMarket,
}

/// The voucher series the random sequences use: a spot `cpu` voucher, a forward `cpu`
/// purchase whose window opens later, and a short-lived GPU one. Indices past the end name
/// a series nobody can mint (a wrong class for the holder's units).
fn series_terms(genesis_ms: u64, index: usize) -> VoucherTerms {
    let (class, price, from, until) = match index {
        0 => ("cpu", 3, 0, 40_000),
        1 => ("cpu", 5, 3_000, 60_000),
        2 => ("gpu:A100", 7, 0, 2_500),
        _ => ("gpu:H100", 3, 0, 40_000),
    };
    VoucherTerms {
        class: class.into(),
        price_per_cu: Price(price),
        redeem_from_ms: genesis_ms + from,
        expires_ms: genesis_ms + until,
    }
}

fn voucher_cu() -> impl Strategy<Value = u64> {
    prop_oneof![1 => Just(0u64), 8 => 1u64..400, 1 => Just(u64::MAX)]
}

/// Spends are mostly small, so they often fit what was minted.
fn spend_cu() -> impl Strategy<Value = u64> {
    prop_oneof![1 => Just(0u64), 8 => 1u64..40, 1 => 40u64..1_000, 1 => Just(u64::MAX)]
}

/// Signer indices: 0..USERS are users, USERS is the market authority, USERS+1 the treasury.
fn signer() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 0..USERS, 2 => Just(USERS), 1 => Just(USERS + 1)]
}

/// Mostly the market authority: the only one whose releases and slashes go through.
fn authority() -> impl Strategy<Value = usize> {
    prop_oneof![3 => Just(USERS), 1 => signer()]
}

fn small_amount() -> impl Strategy<Value = u64> {
    prop_oneof![1 => Just(0u64), 8 => 1u64..800, 1 => Just(u64::MAX)]
}

fn amount() -> impl Strategy<Value = u64> {
    prop_oneof![1 => Just(0u64), 6 => 1u64..2_000, 2 => 1_000u64..20_000, 1 => Just(u64::MAX)]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0..USERS, 0..USERS + 2, amount()).prop_map(|(from, to, amount)| Action::Transfer { from, to, amount }),
        2 => (0..USERS, 0u8..6, amount(), prop_oneof![1 => Just(0u64), 9 => 1u64..3_000]).prop_map(|(buyer, order, amount, deadline_in)| Action::Open { buyer, order, amount, deadline_in }),
        2 => (authority(), 0u8..6, prop::collection::vec((0..USERS + 2, small_amount()), 0..4)).prop_map(|(signer, order, payouts)| Action::Release { signer, order, payouts }),
        1 => (signer(), 0u8..6).prop_map(|(signer, order)| Action::Refund { signer, order }),
        2 => (0..USERS, amount()).prop_map(|(who, amount)| Action::Bond { who, amount }),
        2 => (0..USERS, amount()).prop_map(|(who, amount)| Action::Unbond { who, amount }),
        1 => (0..USERS).prop_map(|who| Action::Withdraw { who }),
        1 => (authority(), 0u8..6, small_amount()).prop_map(|(signer, order, amount)| Action::Burn { signer, order, amount }),
        1 => (authority(), 0..USERS, small_amount(), 0u8..4, 0..USERS + 2).prop_map(|(signer, provider, amount, evidence, beneficiary)| Action::Slash { signer, provider, amount, evidence, beneficiary }),
        3 => (0..USERS, 0usize..3, voucher_cu(), prop_oneof![8 => Just(Quote::Good), 1 => Just(Quote::Stale), 1 => Just(Quote::NotByMarket)]).prop_map(|(buyer, series, cu, quote)| Action::MintVoucher { buyer, series, cu, quote }),
        3 => (0..USERS, 0..USERS + 2, 0usize..3, spend_cu()).prop_map(|(from, to, series, cu)| Action::TransferVoucher { from, to, series, cu }),
        3 => (0..USERS, 0usize..4, spend_cu(), 0u8..10, prop_oneof![1 => Just(0u64), 9 => 1u64..3_000]).prop_map(|(holder, series, cu, order, deadline_in)| Action::RedeemVoucher { holder, series, cu, order, deadline_in }),
        1 => (signer(), 0..USERS + 2, 0usize..4).prop_map(|(signer, holder, series)| Action::ExpireVoucher { signer, holder, series }),
    ]
}

fn envelope() -> impl Strategy<Value = Envelope> {
    prop_oneof![
        20 => Just(Envelope::Good),
        1 => Just(Envelope::ReusedNonce),
        1 => Just(Envelope::SkippedNonce),
        1 => Just(Envelope::WrongChain),
        1 => Just(Envelope::BadSignature),
    ]
}

/// A step: an action, its envelope, and how far the clock and height move before it.
fn step() -> impl Strategy<Value = (Action, Envelope, u64, u64)> {
    (action(), envelope(), 0u64..400, 0u64..2)
}

struct World {
    genesis: Genesis,
    keys: DevKeys,
}

impl World {
    fn new() -> World {
        let (mut genesis, keys) = Genesis::dev("prop", 1_000, USERS, Amount(10_000));
        genesis.params.unbonding_period_blocks = 3;
        genesis.params.fee_bps = 250;
        genesis.params.slash_beneficiary_bps = 3_000;
        World { genesis, keys }
    }

    fn key(&self, index: usize) -> &Keypair {
        match index {
            i if i < USERS => &self.keys.users[i],
            i if i == USERS => &self.keys.market,
            _ => &self.keys.treasury,
        }
    }

    fn account(&self, index: usize) -> AccountId {
        self.key(index).account()
    }

    fn order(&self, n: u8) -> Hash {
        Hash::of(&[b'o', n])
    }

    fn body(&self, action: &Action, now_ms: u64) -> (usize, TxBody) {
        match action.clone() {
            Action::Transfer { from, to, amount } => (
                from,
                TxBody::Transfer {
                    to: self.account(to),
                    amount: Amount(amount),
                },
            ),
            Action::Open {
                buyer,
                order,
                amount,
                deadline_in,
            } => (
                buyer,
                TxBody::OpenEscrow {
                    order_id: self.order(order),
                    amount: Amount(amount),
                    deadline_ms: now_ms.saturating_add(deadline_in),
                },
            ),
            Action::Release {
                signer,
                order,
                payouts,
            } => (
                signer,
                TxBody::ReleaseEscrow {
                    order_id: self.order(order),
                    payouts: payouts
                        .iter()
                        .map(|(p, a)| (self.account(*p), Amount(*a)))
                        .collect(),
                },
            ),
            Action::Refund { signer, order } => (
                signer,
                TxBody::RefundEscrow {
                    order_id: self.order(order),
                },
            ),
            Action::Bond { who, amount } => (
                who,
                TxBody::Bond {
                    amount: Amount(amount),
                },
            ),
            Action::Unbond { who, amount } => (
                who,
                TxBody::Unbond {
                    amount: Amount(amount),
                },
            ),
            Action::Withdraw { who } => (who, TxBody::Withdraw),
            Action::Burn {
                signer,
                order,
                amount,
            } => (
                signer,
                TxBody::BurnEscrow {
                    order_id: self.order(order),
                    amount: Amount(amount),
                },
            ),
            Action::Slash {
                signer,
                provider,
                amount,
                evidence,
                beneficiary,
            } => (
                signer,
                TxBody::Slash {
                    provider: self.account(provider),
                    amount: Amount(amount),
                    evidence: Hash::of(&[b'e', evidence]),
                    reason: "proptest".into(),
                    beneficiary: self.account(beneficiary),
                },
            ),
            Action::MintVoucher {
                buyer,
                series,
                cu,
                quote,
            } => {
                let (by, valid_until_ms) = match quote {
                    Quote::Good => (&self.keys.market, now_ms + 100),
                    Quote::Stale => (&self.keys.market, now_ms.saturating_sub(1)),
                    Quote::NotByMarket => (&self.keys.users[buyer], now_ms + 100),
                };
                let quote = VoucherQuote {
                    terms: self.terms(series),
                    valid_until_ms,
                };
                (
                    buyer,
                    TxBody::MintVoucher {
                        quote: Signed::sign(by, &self.genesis.chain_id, 0, quote),
                        cu,
                    },
                )
            }
            Action::TransferVoucher {
                from,
                to,
                series,
                cu,
            } => (
                from,
                TxBody::TransferVoucher {
                    to: self.account(to),
                    series: self.terms(series).series_id(),
                    cu,
                },
            ),
            Action::RedeemVoucher {
                holder,
                series,
                cu,
                order,
                deadline_in,
            } => (
                holder,
                TxBody::RedeemVoucher {
                    terms: self.terms(series),
                    cu,
                    order_id: self.order(order),
                    deadline_ms: now_ms.saturating_add(deadline_in),
                },
            ),
            Action::ExpireVoucher {
                signer,
                holder,
                series,
            } => (
                signer,
                TxBody::ExpireVoucher {
                    holder: self.account(holder),
                    series: self.terms(series).series_id(),
                },
            ),
        }
    }

    fn terms(&self, series: usize) -> VoucherTerms {
        series_terms(self.genesis.timestamp_ms, series)
    }

    fn tx(&self, state: &State, action: &Action, envelope: &Envelope, now_ms: u64) -> Tx {
        let (signer, body) = self.body(action, now_ms);
        let key = self.key(signer);
        let next = state.next_nonce(&key.account());
        let chain = &self.genesis.chain_id;
        match envelope {
            Envelope::Good => Signed::sign(key, chain, next, body),
            Envelope::ReusedNonce => Signed::sign(key, chain, next.wrapping_sub(1), body),
            Envelope::SkippedNonce => Signed::sign(key, chain, next + 1, body),
            Envelope::WrongChain => Signed::sign(key, &ChainId::new("elsewhere"), next, body),
            Envelope::BadSignature => {
                let mut tx = Signed::sign(key, chain, next, body);
                tx.signature.0[5] ^= 0x20;
                tx
            }
        }
    }
}

fn expected_envelope_error(
    envelope: &Envelope,
    next_nonce: u64,
) -> Option<fn(&LedgerError) -> bool> {
    match envelope {
        Envelope::Good => None,
        Envelope::ReusedNonce if next_nonce == 0 => {
            Some(|e| matches!(e, LedgerError::NonceSkipped { .. }))
        }
        Envelope::ReusedNonce => Some(|e| matches!(e, LedgerError::NonceReused { .. })),
        Envelope::SkippedNonce => Some(|e| matches!(e, LedgerError::NonceSkipped { .. })),
        Envelope::WrongChain => Some(|e| matches!(e, LedgerError::WrongChain { .. })),
        Envelope::BadSignature => Some(|e| matches!(e, LedgerError::BadSignature { .. })),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn conservation_and_atomicity_over_random_sequences(steps in prop::collection::vec(step(), 1..400)) {
        let world = World::new();
        let mut state = world.genesis.initial_state().unwrap();
        let (mut height, mut now) = (1u64, world.genesis.timestamp_ms);
        let (mut applied, mut refused) = (0, 0);
        for (action, envelope, dt, dh) in &steps {
            now += dt;
            height += dh;
            let ctx = BlockContext { chain_id: &world.genesis.chain_id, params: &world.genesis.params, height, timestamp_ms: now };
            let tx = world.tx(&state, action, envelope, now);
            let signer_nonce = state.next_nonce(&tx.signer);
            let before = state.clone();
            let root_before = state.state_root();
            match apply(&mut state, &tx, &ctx) {
                Ok(effects) => {
                    applied += 1;
                    prop_assert!(expected_envelope_error(envelope, signer_nonce).is_none(), "{envelope:?} was accepted");
                    prop_assert!(!effects.events.is_empty());
                    prop_assert_eq!(state.next_nonce(&tx.signer), signer_nonce + 1);
                }
                Err(error) => {
                    refused += 1;
                    if let Some(is_expected) = expected_envelope_error(envelope, signer_nonce) {
                        prop_assert!(is_expected(&error), "{envelope:?} gave {error:?}");
                    }
                    prop_assert!(state == before, "refused tx changed the state: {error}");
                    prop_assert_eq!(state.state_root(), root_before, "refused tx changed the root: {}", error);
                }
            }
            prop_assert!(state.check_conservation().is_ok(), "{:?}", state.check_conservation());
            prop_assert_eq!(state.state_root(), state.recompute_state_root());
            check_voucher_units(&state)?;
        }
        prop_assert_eq!(applied + refused, steps.len());
    }

    #[test]
    fn blocks_replay_to_the_same_root(steps in prop::collection::vec(step(), 1..200), per_block in 1usize..40) {
        let world = World::new();
        let mut state = world.genesis.initial_state().unwrap();
        let mut tip = ChainTip::genesis(&world.genesis);
        let mut blocks = Vec::new();
        let mut now = world.genesis.timestamp_ms;
        for chunk in steps.chunks(per_block) {
            now += chunk.iter().map(|s| s.2).sum::<u64>();
            // Sign against a scratch copy so nonces line up within the block, like a mempool.
            let mut scratch = state.clone();
            let ctx = BlockContext { chain_id: &world.genesis.chain_id, params: &world.genesis.params, height: tip.height + 1, timestamp_ms: now };
            let txs: Vec<Tx> = chunk.iter().map(|(action, envelope, _, _)| {
                let tx = world.tx(&scratch, action, envelope, now);
                let _ = apply(&mut scratch, &tx, &ctx);
                tx
            }).collect();
            let built = build_block(&mut state, &world.genesis, &tip, txs, now, &world.keys.producer).unwrap();
            prop_assert_eq!(&state, &scratch, "block building and one-by-one apply disagree");
            tip = ChainTip::after(&built.block.header);
            blocks.push(built.block);
        }
        let mut first = Replayer::new(world.genesis.clone()).unwrap();
        let mut second = Replayer::new(world.genesis.clone()).unwrap();
        for block in &blocks {
            first.push(block).unwrap();
            second.push(block).unwrap();
        }
        prop_assert_eq!(first.state_root(), state.state_root());
        prop_assert_eq!(second.state_root(), state.recompute_state_root());
        prop_assert_eq!(first.tip(), &tip);
    }

    /// `apply_unsigned` (the simulation's entry point) and `apply` with a good envelope must
    /// agree on every body: the same result or the same error, and the same state after.
    #[test]
    fn unsigned_bodies_follow_the_signed_rules(steps in prop::collection::vec((action(), 0u64..400, 0u64..2), 1..300)) {
        let world = World::new();
        let mut signed = world.genesis.initial_state().unwrap();
        let mut unsigned = signed.clone();
        let (mut height, mut now) = (1u64, world.genesis.timestamp_ms);
        for (action, dt, dh) in &steps {
            now += dt;
            height += dh;
            let ctx = BlockContext { chain_id: &world.genesis.chain_id, params: &world.genesis.params, height, timestamp_ms: now };
            let tx = world.tx(&signed, action, &Envelope::Good, now);
            let by_signature = apply(&mut signed, &tx, &ctx);
            let by_body = apply_unsigned(&mut unsigned, tx.signer, &tx.body, &ctx);
            prop_assert_eq!(&by_signature, &by_body);
            prop_assert!(signed == unsigned, "states diverged after {:?}", action);
        }
        prop_assert_eq!(signed.state_root(), unsigned.state_root());
    }
}

/// Every series' outstanding CU is exactly what its holders hold: no unit appears from
/// nowhere or is spent twice.
fn check_voucher_units(state: &State) -> Result<(), TestCaseError> {
    for (id, series) in state.all_voucher_series() {
        let held: u128 = state
            .voucher_holdings()
            .filter(|h| &h.series == id)
            .map(|h| u128::from(h.cu))
            .sum();
        prop_assert_eq!(held, u128::from(series.outstanding_cu), "series {}", id);
    }
    Ok(())
}
