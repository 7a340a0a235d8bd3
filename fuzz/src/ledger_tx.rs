//! Ledger transactions (`agora_ledger::Tx`), as `POST /v1/txs` and the order, cancel and
//! challenge bodies carry them, and what the state machine does with them.
//!
//! A decoded transaction is applied twice to a small dev chain that already holds an
//! escrow and a stake: as received (its signature almost never checks, so it must be
//! refused and change nothing), and re-signed by one of the chain's keys with that key's
//! next nonce, so that every kind of body reaches the rules. Either way conservation holds,
//! a refused transaction changes nothing, and replaying an accepted one is refused.

use std::sync::LazyLock;

use agora_core::{Amount, Hash, Keypair, Signed};
use agora_ledger::state::State;
use agora_ledger::{BlockContext, DevKeys, Genesis, Tx, TxBody, apply};
use agora_proto::hexed;

use crate::common::{round_trip, tamper, tamper_spot, verify_any};

/// The timestamp of the block every fuzzed transaction lands in.
pub const NOW_MS: u64 = 1_000_000;
/// The escrow that the setup opens (user 0 buys), for release, refund and burn bodies.
pub fn setup_order() -> Hash {
    Hash::of(b"agora-fuzz order")
}

struct Chain {
    genesis: Genesis,
    keys: DevKeys,
    state: State,
}

static CHAIN: LazyLock<Chain> = LazyLock::new(|| {
    let (genesis, keys) = Genesis::dev("agora-fuzz", 0, 3, Amount::agr(1_000));
    let mut state = genesis.initial_state().expect("the dev genesis is valid");
    // The setup block comes before the escrow's deadline; the fuzzed one after it, so
    // anyone may refund it there.
    let ctx = BlockContext {
        timestamp_ms: NOW_MS / 4,
        height: 1,
        ..context(&genesis)
    };
    let setup = [
        (
            &keys.users[0],
            TxBody::OpenEscrow {
                order_id: setup_order(),
                amount: Amount::agr(10),
                deadline_ms: NOW_MS / 2,
            },
        ),
        (
            &keys.users[1],
            TxBody::Bond {
                amount: Amount::agr(100),
            },
        ),
        (
            &keys.users[1],
            TxBody::Unbond {
                amount: Amount::agr(10),
            },
        ),
    ];
    for (key, body) in setup {
        let nonce = state.next_nonce(&key.account());
        let tx = Signed::sign(key, &genesis.chain_id, nonce, body);
        apply(&mut state, &tx, &ctx).expect("the setup transactions apply");
    }
    Chain {
        genesis,
        keys,
        state,
    }
});

fn context(genesis: &Genesis) -> BlockContext<'_> {
    BlockContext {
        chain_id: &genesis.chain_id,
        params: &genesis.params,
        height: 5,
        timestamp_ms: NOW_MS,
    }
}

/// The keys a fuzzed body is re-signed with: the market authority, the funded users and
/// the treasury.
pub fn signers() -> Vec<Keypair> {
    let keys = &CHAIN.keys;
    let mut all = vec![keys.market.clone()];
    all.extend(keys.users.iter().cloned());
    all.push(keys.treasury.clone());
    all
}

/// Applies `tx` to a copy of the dev chain's state and checks the invariants.
fn apply_checked(state: &mut State, tx: &Tx, genesis: &Genesis) -> bool {
    let before = state.recompute_state_root();
    let nonce = state.next_nonce(&tx.signer);
    let result = apply(state, tx, &context(genesis));
    state
        .check_conservation()
        .unwrap_or_else(|e| panic!("conservation broken by {}: {e}", tx.body.kind()));
    match result {
        Ok(_) => {
            assert_eq!(state.next_nonce(&tx.signer), nonce + 1, "nonce not bumped");
            true
        }
        Err(_) => {
            assert_eq!(
                state.recompute_state_root(),
                before,
                "a refused {} changed the state",
                tx.body.kind()
            );
            false
        }
    }
}

/// See the module docs.
pub fn check(data: &[u8]) {
    let Some(tx) = round_trip::<Tx>(data) else {
        return;
    };
    let _ = tx.body.kind();
    verify_any(&tx);
    let back: Tx = hexed::decode(&hexed::encode(&tx), "ledger transaction")
        .expect("the hex form of a decoded transaction decodes");
    assert_eq!(back, tx);
    let (spot, mask) = tamper_spot(data);
    tamper(&tx, spot, mask);

    let chain = &*CHAIN;
    let mut state = chain.state.clone();
    apply_checked(&mut state, &tx, &chain.genesis);

    let signers = signers();
    let key = &signers[usize::from(data[data.len() / 2]) % signers.len()];
    let mut state = chain.state.clone();
    let nonce = state.next_nonce(&key.account());
    let resigned = Signed::sign(key, &chain.genesis.chain_id, nonce, tx.body.clone());
    if apply_checked(&mut state, &resigned, &chain.genesis) {
        assert!(
            !apply_checked(&mut state, &resigned, &chain.genesis),
            "a replayed {} was accepted",
            resigned.body.kind()
        );
    }
}
