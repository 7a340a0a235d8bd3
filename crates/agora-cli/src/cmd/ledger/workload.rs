//! Synthetic transaction streams for the benchmark and the crash test, on a dev chain.
//!
//! Randomness comes from a seeded splitmix64, so a run is reproducible from its seed.

use agora_core::{Amount, Hash, Keypair, Signed};
use agora_ledger::{BlockContext, DevKeys, Genesis, State, Tx, TxBody, apply};

/// A tiny deterministic generator (splitmix64); plenty for picking accounts and amounts.
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Signs transactions for dev keys, tracking each signer's next nonce across a batch.
pub struct Signer<'a> {
    chain: &'a agora_core::ChainId,
    nonces: std::collections::BTreeMap<agora_core::AccountId, u64>,
}

impl<'a> Signer<'a> {
    /// A signer for `chain` that starts each account at its nonce in `state`.
    pub fn new(chain: &'a agora_core::ChainId) -> Signer<'a> {
        Signer {
            chain,
            nonces: Default::default(),
        }
    }

    /// Signs `body` with `key` at its next nonce (from `state` the first time).
    pub fn sign(&mut self, state: &State, key: &Keypair, body: TxBody) -> Tx {
        let id = key.account();
        let nonce = self
            .nonces
            .entry(id)
            .or_insert_with(|| state.next_nonce(&id));
        let tx = Signed::sign(key, self.chain, *nonce, body);
        *nonce += 1;
        tx
    }
}

/// `count` transfers of 1–1000 base units between random dev users.
pub fn transfers(
    state: &State,
    keys: &DevKeys,
    chain: &agora_core::ChainId,
    count: usize,
    rng: &mut SplitMix,
) -> Vec<Tx> {
    let mut signer = Signer::new(chain);
    let n = keys.users.len() as u64;
    (0..count)
        .map(|_| {
            let from = &keys.users[rng.below(n) as usize];
            let to = keys.users[rng.below(n) as usize].account();
            let amount = Amount(1 + rng.below(1000));
            signer.sign(state, from, TxBody::Transfer { to, amount })
        })
        .collect()
}

/// A mixed batch exercising every transaction kind, including some that must be refused
/// (overdrafts, early withdrawals, refunds before the deadline). Each transaction is
/// simulated on a scratch copy of the state as it is made, like a mempool would, so later
/// ones from the same signer carry the right nonce even when an earlier one is refused.
/// For the crash test.
pub fn mixed(
    state: &State,
    keys: &DevKeys,
    genesis: &Genesis,
    height: u64,
    timestamp_ms: u64,
    count: usize,
    rng: &mut SplitMix,
) -> Vec<Tx> {
    let ctx = BlockContext {
        chain_id: &genesis.chain_id,
        params: &genesis.params,
        height,
        timestamp_ms,
    };
    let mut scratch = state.clone();
    let n = keys.users.len() as u64;
    let mut txs = Vec::with_capacity(count);
    for i in 0..count {
        let user = &keys.users[rng.below(n) as usize];
        let other = keys.users[rng.below(n) as usize].account();
        let fresh_order = Hash::tagged(
            "agora/stress-order",
            &[&height.to_le_bytes(), &(i as u64).to_le_bytes()],
        );
        let amount = Amount(1 + rng.below(5_000));
        let (key, body) = match rng.below(10) {
            0..=3 => (user, TxBody::Transfer { to: other, amount }),
            4 => (
                user,
                TxBody::OpenEscrow {
                    order_id: fresh_order,
                    amount,
                    deadline_ms: timestamp_ms + 1 + rng.below(5_000),
                },
            ),
            5 => {
                let open = open_escrow(&scratch, rng);
                let half = Amount(open.map_or(1, |(_, e)| e.remaining.0.div_ceil(2)));
                let order_id = open.map_or(fresh_order, |(id, _)| id);
                (
                    &keys.market,
                    TxBody::ReleaseEscrow {
                        order_id,
                        payouts: vec![(other, half)],
                    },
                )
            }
            6 => {
                let order_id = open_escrow(&scratch, rng).map_or(fresh_order, |(id, _)| id);
                (
                    if rng.below(2) == 0 {
                        &keys.market
                    } else {
                        user
                    },
                    TxBody::RefundEscrow { order_id },
                )
            }
            7 => (user, TxBody::Bond { amount }),
            8 if rng.below(2) == 0 => (
                user,
                TxBody::Unbond {
                    amount: Amount(1 + rng.below(2_000)),
                },
            ),
            8 => (user, TxBody::Withdraw),
            _ => (
                &keys.market,
                TxBody::Slash {
                    provider: keys.users[rng.below(n) as usize].account(),
                    amount: Amount(1 + rng.below(500)),
                    evidence: fresh_order,
                    reason: "stress test fault".into(),
                    beneficiary: other,
                },
            ),
        };
        let tx = Signed::sign(
            key,
            &genesis.chain_id,
            scratch.next_nonce(&key.account()),
            body,
        );
        // Refused ones stay in the batch on purpose: the producer must skip them.
        let _ = apply(&mut scratch, &tx, &ctx);
        txs.push(tx);
    }
    txs
}

fn open_escrow(state: &State, rng: &mut SplitMix) -> Option<(Hash, agora_ledger::Escrow)> {
    let open: Vec<_> = state
        .escrows()
        .filter(|(_, e)| e.status == agora_ledger::EscrowStatus::Open)
        .take(64)
        .collect();
    if open.is_empty() {
        return None;
    }
    let (id, escrow) = open[rng.below(open.len() as u64) as usize];
    Some((*id, *escrow))
}
