//! The auction record (`TxBody::RecordAuction`): the market authority puts a closed
//! auction's evidence on the ledger for an existing escrow, and nothing moves; anyone else,
//! an unknown escrow or oversized terms are refused and leave the state as it was.

use agora_core::{Amount, Hash, Keypair, Price, Signed};
use agora_ledger::{BlockContext, DevKeys, Effects, Genesis, LedgerError, State, TxBody, apply};

struct Chain {
    genesis: Genesis,
    keys: DevKeys,
    state: State,
}

impl Chain {
    fn new() -> Chain {
        let (genesis, keys) = Genesis::dev("auctions", 1_000, 2, Amount(100_000));
        let state = genesis.initial_state().unwrap();
        Chain {
            genesis,
            keys,
            state,
        }
    }

    fn submit(&mut self, key: &Keypair, body: TxBody) -> Result<Effects, LedgerError> {
        let nonce = self.state.next_nonce(&key.account());
        let tx = Signed::sign(key, &self.genesis.chain_id, nonce, body);
        let ctx = BlockContext {
            chain_id: &self.genesis.chain_id,
            params: &self.genesis.params,
            height: 1,
            timestamp_ms: 1_000,
        };
        let before = self.state.clone();
        let result = apply(&mut self.state, &tx, &ctx);
        if result.is_err() {
            assert_eq!(self.state, before, "a refused record changed the state");
        }
        self.state.check_conservation().unwrap();
        result
    }
}

fn record(order_id: Hash, terms: &str, winner: &Keypair) -> TxBody {
    TxBody::RecordAuction {
        order_id,
        terms: terms.to_string(),
        bids: 3,
        bids_digest: Hash::of(b"three signed bids"),
        winner: Some((winner.account(), Price(20))),
    }
}

#[test]
fn the_market_records_an_auction_and_nothing_moves() {
    let mut chain = Chain::new();
    let buyer = chain.keys.users[0].clone();
    let provider = chain.keys.users[1].clone();
    let market = chain.keys.market.clone();
    let order = Hash::of(b"an auctioned order");
    chain
        .submit(
            &buyer,
            TxBody::OpenEscrow {
                order_id: order,
                amount: Amount(5_000),
                deadline_ms: 60_000,
            },
        )
        .unwrap();
    let before = chain.state.clone();
    let effects = chain
        .submit(&market, record(order, "sealed:5s:first", &provider))
        .unwrap();
    assert!(effects.events.is_empty());
    for account in [buyer.account(), provider.account(), market.account()] {
        assert_eq!(chain.state.balance(&account), before.balance(&account));
    }
    assert_eq!(chain.state.escrow(&order), before.escrow(&order));
}

#[test]
fn bad_records_are_refused_and_change_nothing() {
    let mut chain = Chain::new();
    let buyer = chain.keys.users[0].clone();
    let provider = chain.keys.users[1].clone();
    let market = chain.keys.market.clone();
    let order = Hash::of(b"an auctioned order");
    // No escrow for the order.
    assert_eq!(
        chain.submit(&market, record(order, "sealed:5s:first", &provider)),
        Err(LedgerError::UnknownEscrow(order))
    );
    chain
        .submit(
            &buyer,
            TxBody::OpenEscrow {
                order_id: order,
                amount: Amount(5_000),
                deadline_ms: 60_000,
            },
        )
        .unwrap();
    // Not the market.
    assert!(matches!(
        chain.submit(&provider, record(order, "sealed:5s:first", &provider)),
        Err(LedgerError::Unauthorized { .. })
    ));
    // Terms too long to be terms.
    let long = "x".repeat(agora_ledger::MAX_REASON_BYTES + 1);
    assert!(matches!(
        chain.submit(&market, record(order, &long, &provider)),
        Err(LedgerError::ReasonTooLong { .. })
    ));
}
