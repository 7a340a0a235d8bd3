//! Shared harness: the same scenario runs against the embedded ledger and against the EVM
//! backend on a real anvil, through the `Settlement` trait only.
#![allow(dead_code)]

use agora_core::{AccountId, Amount, Keypair, Signed};
use agora_evm::{Anvil, EvmConfig, EvmSettlement};
use agora_ledger::{DevKeys, Effects, Genesis, Ledger, LedgerError, Settlement, TxBody};

/// What every backend under test offers besides `Settlement`: a clock and block production
/// the test controls, and the conservation total.
pub trait Harness {
    type S: Settlement;
    fn settlement(&mut self) -> &mut Self::S;
    fn keys(&self) -> &DevKeys;
    /// The time the next transaction is judged at, ms.
    fn now_ms(&mut self) -> u64;
    /// Moves time forward by `ms` and the height by at least `blocks`.
    fn advance(&mut self, ms: u64, blocks: u64);
    /// balances + escrow + stakes + burnt over everything, and whether the backend's own
    /// conservation check holds.
    fn total(&mut self) -> (u128, bool);
    fn name(&self) -> &'static str;
}

/// Rules of the scenario tests (tests/rules.rs of agora-ledger uses the same values).
pub fn genesis(users: usize) -> (Genesis, DevKeys) {
    genesis_with(users, 5)
}

pub fn genesis_with(users: usize, unbonding_period_blocks: u64) -> (Genesis, DevKeys) {
    let (mut genesis, keys) = Genesis::dev("evm-rules", 1_000, users, Amount(1_000_000));
    genesis.params.fee_bps = 250;
    genesis.params.slash_beneficiary_bps = 3_000;
    genesis.params.unbonding_period_blocks = unbonding_period_blocks;
    (genesis, keys)
}

/// Signs `body` with `key`'s next nonce and submits it alone.
pub fn submit<H: Harness>(h: &mut H, key: &Keypair, body: TxBody) -> Result<Effects, LedgerError> {
    let nonce = h.settlement().account(&key.account()).unwrap().next_nonce;
    let chain_id = h.settlement().chain_id().clone();
    let tx = Signed::sign(key, &chain_id, nonce, body);
    submit_signed(h, tx)
}

pub fn submit_signed<H: Harness>(h: &mut H, tx: agora_ledger::Tx) -> Result<Effects, LedgerError> {
    let now = h.now_ms();
    let producer = h.keys().producer.clone();
    let before = h.total().0;
    let mut outcome = h
        .settlement()
        .submit(vec![tx], now, &producer)
        .unwrap_or_else(|e| panic!("backend failed: {e}"));
    let (after, ok) = h.total();
    assert!(ok, "{}: the backend's conservation check failed", h.name());
    assert_eq!(before, after, "{}: tokens were created or lost", h.name());
    match outcome.rejected.pop() {
        Some(rejected) => Err(rejected.error),
        None => Ok(outcome.included.pop().expect("one included").1),
    }
}

pub fn balance<H: Harness>(h: &mut H, id: &AccountId) -> Amount {
    h.settlement().account(id).unwrap().balance
}

// ------------------------------------------------------------------ embedded ledger

pub struct Embedded {
    ledger: Ledger,
    keys: DevKeys,
    now_ms: u64,
    _dir: tempfile::TempDir,
}

impl Embedded {
    pub fn new(users: usize) -> Embedded {
        Embedded::with_unbonding(users, 5)
    }

    pub fn with_unbonding(users: usize, unbonding_period_blocks: u64) -> Embedded {
        let (genesis, keys) = genesis_with(users, unbonding_period_blocks);
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::create(dir.path(), genesis).unwrap();
        Embedded {
            ledger,
            keys,
            now_ms: 1_000,
            _dir: dir,
        }
    }
}

impl Harness for Embedded {
    type S = Ledger;
    fn settlement(&mut self) -> &mut Ledger {
        &mut self.ledger
    }
    fn keys(&self) -> &DevKeys {
        &self.keys
    }
    fn now_ms(&mut self) -> u64 {
        self.now_ms
    }
    fn advance(&mut self, ms: u64, blocks: u64) {
        self.now_ms += ms;
        for _ in 0..blocks {
            let producer = self.keys.producer.clone();
            self.ledger.submit(vec![], self.now_ms, &producer).unwrap();
        }
    }
    fn total(&mut self) -> (u128, bool) {
        let state = self.ledger.state();
        let s = state.supply();
        let total = u128::from(s.balances.0)
            + u128::from(s.escrow.0)
            + u128::from(s.stakes.0)
            + u128::from(s.burned.0);
        (total, state.check_conservation().is_ok())
    }
    fn name(&self) -> &'static str {
        "embedded"
    }
}

// ------------------------------------------------------------------ EVM on anvil

pub struct Evm {
    pub evm: EvmSettlement,
    pub keys: DevKeys,
    pub anvil: Anvil,
}

/// A fresh anvil with the market deployed and the dev users funded, or `None` (with the
/// reason printed) when no anvil binary is installed.
pub fn evm(users: usize, min_stake: u64) -> Option<Evm> {
    evm_with(users, min_stake, 5)
}

/// As [`evm`], with the unbonding period given.
pub fn evm_with(users: usize, min_stake: u64, unbonding_period_blocks: u64) -> Option<Evm> {
    let anvil = match Anvil::spawn() {
        Ok(anvil) => anvil,
        Err(agora_evm::AnvilError::NotFound) => {
            eprintln!("skipped: {}", agora_evm::AnvilError::NotFound);
            return None;
        }
        Err(e) => panic!("{e}"),
    };
    let (genesis, keys) = genesis_with(users, unbonding_period_blocks);
    let funded: Vec<(&Keypair, Amount)> =
        keys.users.iter().map(|k| (k, Amount(1_000_000))).collect();
    let deployment = EvmSettlement::deploy_dev(
        &anvil.endpoint(),
        &genesis.params,
        &keys.market,
        &keys.treasury,
        min_stake,
        &funded,
    )
    .unwrap();
    let config = EvmConfig::new(
        anvil.endpoint(),
        deployment.market,
        genesis.chain_id.clone(),
        genesis.params.clone(),
    );
    let mut evm = EvmSettlement::connect(config, &keys.market).unwrap();
    for user in &keys.users {
        evm.add_key(user);
    }
    evm.add_key(&keys.treasury);
    Some(Evm { evm, keys, anvil })
}

impl Evm {
    /// A raw anvil RPC call.
    pub fn rpc(&self, method: &'static str, params: serde_json::Value) -> serde_json::Value {
        let chain = self.evm.chain().clone();
        self.evm
            .block_on(async move { chain.raw::<_, serde_json::Value>(method, params).await })
            .unwrap()
    }
}

impl Harness for Evm {
    type S = EvmSettlement;
    fn settlement(&mut self) -> &mut EvmSettlement {
        &mut self.evm
    }
    fn keys(&self) -> &DevKeys {
        &self.keys
    }
    fn now_ms(&mut self) -> u64 {
        let chain = self.evm.chain().clone();
        let (_, ts) = self
            .evm
            .block_on(async move { chain.head().await })
            .unwrap();
        ts * 1000
    }
    fn advance(&mut self, ms: u64, blocks: u64) {
        if ms > 0 {
            self.rpc("evm_increaseTime", serde_json::json!([ms.div_ceil(1000)]));
        }
        self.rpc("anvil_mine", serde_json::json!([blocks.max(1)]));
    }
    fn total(&mut self) -> (u128, bool) {
        let supply = self.evm.supply().unwrap();
        // The contract's running totals must match the accounts it holds, too.
        let mut balances = 0u128;
        let ids: Vec<AccountId> = self
            .keys
            .users
            .iter()
            .chain([&self.keys.treasury, &self.keys.market])
            .map(|k| k.account())
            .collect();
        for id in ids {
            balances += u128::from(self.evm.account(&id).unwrap().balance.0);
        }
        (
            supply.accounted(),
            supply.conserved() && balances == u128::from(supply.balances),
        )
    }
    fn name(&self) -> &'static str {
        "evm"
    }
}
