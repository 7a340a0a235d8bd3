//! Scenario tests for compute vouchers: the whole life of a series (mint at a market
//! quote, transfer, redeem into an order escrow that settles, expire with a refund), a
//! forward purchase's delivery window, and the typed refusal for each bad input — every
//! one of which must leave the state exactly as it was.

use agora_core::{AccountId, Amount, ChainId, Hash, Keypair, Price, Signed};
use agora_ledger::{
    BlockContext, DevKeys, Effects, EscrowStatus, Event, Genesis, LedgerError, State, TxBody,
    VoucherQuote, VoucherTerms, apply,
};

struct Chain {
    genesis: Genesis,
    keys: DevKeys,
    state: State,
    now_ms: u64,
}

impl Chain {
    fn new() -> Chain {
        let (mut genesis, keys) = Genesis::dev("vouchers", 1_000, 3, Amount(100_000));
        genesis.params.fee_bps = 250;
        let state = genesis.initial_state().unwrap();
        Chain {
            genesis,
            keys,
            state,
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
            height: 1,
            timestamp_ms: self.now_ms,
        };
        let before = self.state.clone();
        let root_before = self.state.recompute_state_root();
        let result = apply(&mut self.state, &tx, &ctx);
        if result.is_err() {
            assert_eq!(
                self.state, before,
                "a refused transaction changed the state"
            );
            assert_eq!(self.state.recompute_state_root(), root_before);
        }
        self.state.check_conservation().unwrap();
        result
    }

    fn quote(&self, terms: &VoucherTerms, by: &Keypair, chain: &ChainId) -> TxBody {
        let quote = VoucherQuote {
            terms: terms.clone(),
            valid_until_ms: self.now_ms + 500,
        };
        TxBody::MintVoucher {
            quote: Signed::sign(by, chain, 0, quote),
            cu: 0,
        }
    }

    fn mint(&self, terms: &VoucherTerms, cu: u64) -> TxBody {
        match self.quote(terms, &self.keys.market, &self.genesis.chain_id) {
            TxBody::MintVoucher { quote, .. } => TxBody::MintVoucher { quote, cu },
            _ => unreachable!(),
        }
    }

    fn balance(&self, id: &AccountId) -> Amount {
        self.state.balance(id)
    }
}

fn cpu(price: u64, from: u64, until: u64) -> VoucherTerms {
    VoucherTerms {
        class: "cpu".into(),
        price_per_cu: Price(price),
        redeem_from_ms: from,
        expires_ms: until,
    }
}

fn redeem(terms: &VoucherTerms, cu: u64, order: u8, deadline_ms: u64) -> TxBody {
    TxBody::RedeemVoucher {
        terms: terms.clone(),
        cu,
        order_id: Hash::of(&[b'o', order]),
        deadline_ms,
    }
}

#[test]
fn a_voucher_is_minted_sent_redeemed_and_settles_like_an_escrow() {
    let mut c = Chain::new();
    let (alice, bob) = (c.user(0), c.user(1));
    let provider = c.user(2).account();
    let terms = cpu(40, 1_000, 10_000);
    let series = terms.series_id();

    c.submit(&alice, c.mint(&terms, 100)).unwrap();
    assert_eq!(c.balance(&alice.account()), Amount(100_000 - 4_000));
    assert_eq!(c.state.voucher_units(&alice.account(), &series), 100);
    assert_eq!(c.state.supply().vouchers, Amount(4_000));

    // A second mint at the same terms joins the same series: units are fungible.
    c.submit(&bob, c.mint(&terms, 10)).unwrap();
    c.submit(
        &alice,
        TxBody::TransferVoucher {
            to: bob.account(),
            series,
            cu: 30,
        },
    )
    .unwrap();
    assert_eq!(c.state.voucher_units(&bob.account(), &series), 40);
    assert_eq!(c.state.voucher_series(&series).unwrap().outstanding_cu, 110);

    // Bob spends 25 CU on an order: 1 000 of backing becomes its escrow, Bob its buyer.
    c.now_ms = 2_000;
    let effects = c.submit(&bob, redeem(&terms, 25, 1, 5_000)).unwrap();
    assert!(matches!(
        effects.events[0],
        Event::VoucherRedeemed { cu: 25, .. }
    ));
    let order_id = Hash::of(&[b'o', 1]);
    let escrow = *c.state.escrow(&order_id).unwrap();
    assert_eq!(
        (escrow.buyer, escrow.locked),
        (bob.account(), Amount(1_000))
    );
    assert_eq!(c.state.supply().vouchers, Amount(85 * 40));

    // The provider used 20 CU: paid 800 gross; the unused 200 goes back to Bob's balance.
    let market = c.keys.market.clone();
    c.submit(
        &market,
        TxBody::ReleaseEscrow {
            order_id,
            payouts: vec![(provider, Amount(800))],
        },
    )
    .unwrap();
    let bob_before = c.balance(&bob.account());
    c.submit(&market, TxBody::RefundEscrow { order_id })
        .unwrap();
    assert_eq!(
        c.balance(&bob.account()),
        bob_before.checked_add(Amount(200)).unwrap()
    );
    assert_eq!(
        c.state.escrow(&order_id).unwrap().status,
        EscrowStatus::Refunded
    );
    assert_eq!(c.balance(&provider), Amount(100_000 + 780));

    // After expiry anyone refunds each holder's rest at the locked price.
    c.now_ms = 10_000;
    let alice_before = c.balance(&alice.account());
    c.submit(
        &c.user(2),
        TxBody::ExpireVoucher {
            holder: alice.account(),
            series,
        },
    )
    .unwrap();
    assert_eq!(
        c.balance(&alice.account()),
        alice_before.checked_add(Amount(70 * 40)).unwrap()
    );
    assert_eq!(c.state.voucher_units(&alice.account(), &series), 0);
    c.submit(
        &bob,
        TxBody::ExpireVoucher {
            holder: bob.account(),
            series,
        },
    )
    .unwrap();
    assert_eq!(c.state.supply().vouchers, Amount::ZERO);
}

#[test]
fn units_cannot_be_spent_twice_or_sent_beyond_what_is_held() {
    let mut c = Chain::new();
    let alice = c.user(0);
    let terms = cpu(10, 1_000, 10_000);
    let series = terms.series_id();
    c.submit(&alice, c.mint(&terms, 5)).unwrap();
    c.submit(&alice, redeem(&terms, 5, 1, 9_000)).unwrap();
    assert!(matches!(
        c.submit(&alice, redeem(&terms, 5, 2, 9_000)),
        Err(LedgerError::InsufficientVouchers {
            have: 0,
            need: 5,
            ..
        })
    ));
    c.submit(&alice, c.mint(&terms, 5)).unwrap();
    assert!(matches!(
        c.submit(
            &alice,
            TxBody::TransferVoucher {
                to: c.user(1).account(),
                series,
                cu: 6
            }
        ),
        Err(LedgerError::InsufficientVouchers {
            have: 5,
            need: 6,
            ..
        })
    ));
    // The same order id cannot get a second escrow from a voucher.
    assert!(matches!(
        c.submit(&alice, redeem(&terms, 1, 1, 9_000)),
        Err(LedgerError::EscrowExists(_))
    ));
    assert!(matches!(
        c.submit(&alice, redeem(&terms, 0, 3, 9_000)),
        Err(LedgerError::ZeroAmount { .. })
    ));
}

#[test]
fn units_of_one_class_do_not_redeem_as_another() {
    let mut c = Chain::new();
    let alice = c.user(0);
    let terms = cpu(10, 1_000, 10_000);
    c.submit(&alice, c.mint(&terms, 5)).unwrap();
    let gpu = VoucherTerms {
        class: "gpu:A100".into(),
        ..terms.clone()
    };
    assert!(matches!(
        c.submit(&alice, redeem(&gpu, 5, 1, 9_000)),
        Err(LedgerError::UnknownVoucherSeries(id)) if id == gpu.series_id()
    ));
    // Once a GPU series exists, holding none of it is the refusal.
    c.submit(&c.user(1), c.mint(&gpu, 1)).unwrap();
    assert!(matches!(
        c.submit(&alice, redeem(&gpu, 5, 1, 9_000)),
        Err(LedgerError::InsufficientVouchers { have: 0, .. })
    ));
    // A cheaper price is another series too: no minting at 10 and spending at 20.
    let dearer = cpu(20, 1_000, 10_000);
    assert!(matches!(
        c.submit(&alice, redeem(&dearer, 5, 1, 9_000)),
        Err(LedgerError::UnknownVoucherSeries(_))
    ));
}

#[test]
fn expired_units_only_refund_and_not_before_expiry() {
    let mut c = Chain::new();
    let (alice, bob) = (c.user(0), c.user(1));
    let terms = cpu(10, 1_000, 3_000);
    let series = terms.series_id();
    c.submit(&alice, c.mint(&terms, 5)).unwrap();
    let expire = TxBody::ExpireVoucher {
        holder: alice.account(),
        series,
    };
    assert!(matches!(
        c.submit(&bob, expire.clone()),
        Err(LedgerError::VoucherNotExpired { .. })
    ));
    c.now_ms = 3_000;
    assert!(matches!(
        c.submit(&alice, redeem(&terms, 1, 1, 9_000)),
        Err(LedgerError::VoucherExpired { .. })
    ));
    assert!(matches!(
        c.submit(
            &alice,
            TxBody::TransferVoucher {
                to: bob.account(),
                series,
                cu: 1
            }
        ),
        Err(LedgerError::VoucherExpired { .. })
    ));
    c.submit(&bob, expire.clone()).unwrap();
    assert_eq!(c.balance(&alice.account()), Amount(100_000));
    assert!(matches!(
        c.submit(&bob, expire),
        Err(LedgerError::InsufficientVouchers { have: 0, .. })
    ));
}

#[test]
fn a_forward_purchase_redeems_only_inside_its_delivery_window() {
    let mut c = Chain::new();
    let alice = c.user(0);
    let terms = cpu(10, 5_000, 8_000);
    c.submit(&alice, c.mint(&terms, 5)).unwrap();
    assert!(matches!(
        c.submit(&alice, redeem(&terms, 1, 1, 9_000)),
        Err(LedgerError::VoucherNotYetRedeemable {
            redeem_from_ms: 5_000,
            ..
        })
    ));
    c.now_ms = 5_000;
    c.submit(&alice, redeem(&terms, 1, 1, 9_000)).unwrap();
}

#[test]
fn only_a_fresh_market_quote_for_sane_terms_mints() {
    let mut c = Chain::new();
    let alice = c.user(0);
    let terms = cpu(10, 1_000, 10_000);
    let chain = c.genesis.chain_id.clone();
    // Signed by the buyer itself: a self-vouched price.
    let mut own = c.quote(&terms, &alice, &chain);
    if let TxBody::MintVoucher { cu, .. } = &mut own {
        *cu = 5;
    }
    assert!(matches!(
        c.submit(&alice, own),
        Err(LedgerError::QuoteNotByMarket { .. })
    ));
    // Signed by the market for another chain.
    let mut elsewhere = c.quote(&terms, &c.keys.market.clone(), &ChainId::new("elsewhere"));
    if let TxBody::MintVoucher { cu, .. } = &mut elsewhere {
        *cu = 5;
    }
    assert!(matches!(
        c.submit(&alice, elsewhere),
        Err(LedgerError::QuoteInvalid(_))
    ));
    // A forged quote: the market's name, tampered terms.
    let mut forged = c.mint(&terms, 5);
    if let TxBody::MintVoucher { quote, .. } = &mut forged {
        quote.body.terms.price_per_cu = Price(1);
    }
    assert!(matches!(
        c.submit(&alice, forged),
        Err(LedgerError::QuoteInvalid(_))
    ));
    // A stale one.
    let stale = c.mint(&terms, 5);
    c.now_ms += 501;
    assert!(matches!(
        c.submit(&alice, stale),
        Err(LedgerError::QuoteExpired { .. })
    ));
    // Terms with no future, a zero price, an odd class.
    for bad in [
        cpu(10, 1_000, c.now_ms),
        cpu(0, 1_000, 10_000),
        cpu(10, 9_000, 8_000),
    ] {
        assert!(matches!(
            c.submit(&alice, c.mint(&bad, 5)),
            Err(LedgerError::BadVoucherTerms { .. })
        ));
    }
    let odd = VoucherTerms {
        class: "cpu\n".into(),
        ..terms.clone()
    };
    assert!(matches!(
        c.submit(&alice, c.mint(&odd, 5)),
        Err(LedgerError::BadVoucherClass(_))
    ));
    // More than the balance can back; an overflowing count.
    assert!(matches!(
        c.submit(&alice, c.mint(&terms, 10_001)),
        Err(LedgerError::InsufficientBalance { .. })
    ));
    assert!(matches!(
        c.submit(&alice, c.mint(&terms, u64::MAX)),
        Err(LedgerError::Overflow(_))
    ));
    assert_eq!(c.balance(&alice.account()), Amount(100_000));
}
