//! Participants sending their own transactions, on a real anvil: a buyer whose key the
//! market does not hold opens its escrow on chain itself and the market takes it over only
//! when it is identical to the order; a provider bonds itself, publishes its address and
//! is assigned and paid; the bad cases (escrow mismatches, a provider without stake, an
//! address claimed twice, settling twice) are refused and change nothing. Every case
//! checks that the contract holds exactly what it accounts for.

mod common;

use agora_core::{Amount, Hash, Keypair, Signed};
use agora_evm::contracts::TestToken;
use agora_evm::settlement::fund_gas;
use agora_evm::{EvmError, Participant, ParticipantError, evm_address, evm_signer};
use agora_ledger::{Effects, EscrowStatus, LedgerError, Settlement, TxBody};
use alloy::primitives::U256;
use alloy::sol_types::SolCall;
use common::{Evm, Harness};

/// Gas and `tokens` minted (held, not deposited) for an outsider's derived EVM key.
fn fund_outsider(e: &Evm, key: &Keypair, tokens: u64) {
    let chain = e.evm.chain().clone();
    let token = e.evm.token();
    let signer = evm_signer(key);
    e.evm
        .block_on(async move {
            fund_gas(&chain, signer.address()).await?;
            let nonce = chain.nonce(signer.address()).await?;
            let mint = TestToken::mintCall {
                to: signer.address(),
                amount: U256::from(tokens),
            };
            chain
                .transact(&signer, Some(token), mint.abi_encode().into(), nonce)
                .await
        })
        .unwrap();
}

fn participant(e: &Evm, key: &Keypair) -> Participant {
    let (rpc, market) = (e.anvil.endpoint(), e.evm.market().to_string());
    let key = key.clone();
    e.evm
        .block_on(async move { Participant::connect(&rpc, &market, &key).await })
        .unwrap()
}

/// Signs `body` with `key`'s next nonce and submits it alone; the contract's totals must
/// match the tokens it holds afterwards. (The shared harness also sums the dev users'
/// balances, which leaves out the outsiders here.)
fn submit(e: &mut Evm, key: &Keypair, body: TxBody) -> Result<Effects, LedgerError> {
    let nonce = e.evm.account(&key.account()).unwrap().next_nonce;
    let tx = Signed::sign(key, e.evm.chain_id(), nonce, body);
    let now = e.now_ms();
    let producer = e.keys.producer.clone();
    let mut outcome = e.evm.submit(vec![tx], now, &producer).unwrap();
    assert_conserved(e);
    match outcome.rejected.pop() {
        Some(rejected) => Err(rejected.error),
        None => Ok(outcome.included.pop().expect("one included").1),
    }
}

/// balances + escrowed + staked + burnt equals the tokens the contract holds.
fn assert_conserved(e: &Evm) -> u128 {
    let supply = e.evm.supply().unwrap();
    assert!(
        supply.conserved(),
        "the contract's tokens and totals disagree"
    );
    supply.accounted()
}

#[test]
fn a_buyer_opens_its_own_escrow_and_the_market_takes_over_only_an_identical_one() {
    let Some(mut e) = common::evm(2, 50) else {
        return;
    };
    let buyer = Keypair::from_seed("outside buyer");
    let provider = e.keys.users[0].clone();
    fund_outsider(&e, &buyer, 10_000);
    let p = participant(&e, &buyer);
    let deadline = e.now_ms() + 600_000;
    let id = Hash::of(b"buyer's own order");

    // No escrow yet: nothing to take over.
    assert!(
        e.evm
            .adopt_escrow(id, buyer.account(), Amount(1_000), deadline)
            .unwrap()
            .is_none()
    );
    // Opened by the buyer itself: approve + deposit of the shortfall, then openEscrow.
    let opened = e.evm.block_on(p.open_escrow(id, 1_000, deadline)).unwrap();
    assert!(opened.block.is_some());
    assert_eq!(opened.buyer, evm_address(&buyer));
    // A retry sends nothing and reports the same escrow.
    let again = e.evm.block_on(p.open_escrow(id, 1_000, deadline)).unwrap();
    assert_eq!(again.block, None);
    let before = assert_conserved(&e);

    // Mismatches are refused, naming the part that differs, and change nothing.
    for (amount, deadline_ms, field) in
        [(999, deadline, "amount"), (1_000, deadline + 1, "deadline")]
    {
        let refused = e
            .evm
            .adopt_escrow(id, buyer.account(), Amount(amount), deadline_ms);
        assert!(
            matches!(&refused, Err(EvmError::EscrowMismatch { field: f, .. }) if f.starts_with(field)),
            "{field}: {refused:?}"
        );
    }
    // Another account whose address the market knows cannot claim the buyer's escrow.
    let refused = e
        .evm
        .adopt_escrow(id, provider.account(), Amount(1_000), deadline);
    assert!(
        matches!(
            &refused,
            Err(EvmError::EscrowMismatch { field: "buyer", .. })
        ),
        "{refused:?}"
    );
    // The identical one is taken over.
    let escrow = e
        .evm
        .adopt_escrow(id, buyer.account(), Amount(1_000), deadline)
        .unwrap()
        .unwrap();
    assert_eq!(escrow.buyer, buyer.account());
    assert_eq!(escrow.status, EscrowStatus::Open);
    assert_eq!(e.evm.escrow(&id).unwrap().unwrap().buyer, buyer.account());

    // The market settles it: the provider is paid, the rest refunded to the opener; a
    // second settlement is refused and pays nothing.
    submit(&mut e, &provider, TxBody::Bond { amount: Amount(50) }).unwrap();
    let market = e.keys.market.clone();
    let release = TxBody::ReleaseEscrow {
        order_id: id,
        payouts: vec![(provider.account(), Amount(400))],
    };
    submit(&mut e, &market, release.clone()).unwrap();
    submit(&mut e, &market, TxBody::RefundEscrow { order_id: id }).unwrap();
    assert_eq!(e.evm.block_on(p.balance()).unwrap(), 600);
    let twice = submit(&mut e, &market, release);
    assert!(
        matches!(twice, Err(LedgerError::EscrowClosed { .. })),
        "{twice:?}"
    );
    assert_eq!(e.evm.block_on(p.balance()).unwrap(), 600);
    assert_eq!(assert_conserved(&e), before);

    // A settled escrow cannot be taken over again.
    let refused = e
        .evm
        .adopt_escrow(id, buyer.account(), Amount(1_000), deadline);
    assert!(matches!(
        refused,
        Err(EvmError::EscrowMismatch {
            field: "status",
            ..
        })
    ));
}

#[test]
fn a_buyer_without_funds_or_with_a_taken_order_id_is_told_and_nothing_is_sent() {
    let Some(e) = common::evm(1, 1) else {
        return;
    };
    let poor = Keypair::from_seed("poor buyer");
    fund_outsider(&e, &poor, 10);
    let p = participant(&e, &poor);
    let deadline = e.evm.block_on(e.evm.chain().head()).unwrap().1 * 1000 + 600_000;
    let refused = e
        .evm
        .block_on(p.open_escrow(Hash::of(b"too dear"), 1_000, deadline));
    assert!(
        matches!(
            refused,
            Err(ParticipantError::InsufficientFunds {
                need: 1_000,
                in_market: 0,
                ..
            })
        ),
        "{refused:?}"
    );
    // An order id someone else already used on chain is reported, not overwritten.
    let first = Keypair::from_seed("first opener");
    fund_outsider(&e, &first, 1_000);
    let id = Hash::of(b"contested id");
    e.evm
        .block_on(participant(&e, &first).open_escrow(id, 5, deadline))
        .unwrap();
    let taken = e.evm.block_on(p.open_escrow(id, 5, deadline));
    assert!(
        matches!(taken, Err(ParticipantError::EscrowTaken { .. })),
        "{taken:?}"
    );
    assert_eq!(e.evm.block_on(p.balance()).unwrap(), 0);
    assert_conserved(&e);
}

#[test]
fn a_provider_bonds_itself_and_only_a_staked_published_provider_is_assigned() {
    let Some(mut e) = common::evm(1, 100) else {
        return;
    };
    let buyer = e.keys.users[0].clone();
    let staked = Keypair::from_seed("self-bonding provider");
    let unstaked = Keypair::from_seed("provider without stake");
    fund_outsider(&e, &staked, 1_000);
    fund_outsider(&e, &unstaked, 1_000);
    let p = participant(&e, &staked);
    assert_eq!(e.evm.block_on(p.min_stake()).unwrap(), 100);
    // Bonds up to the target from its own key (depositing the shortfall), once.
    assert_eq!(e.evm.block_on(p.bond_to(150)).unwrap(), Some(150));
    assert_eq!(e.evm.block_on(p.bond_to(150)).unwrap(), None);
    assert_eq!(e.evm.block_on(p.bonded()).unwrap(), 150);

    // The market learns both addresses from their (signed) asks.
    e.evm
        .register_published(staked.account(), evm_address(&staked))
        .unwrap();
    e.evm
        .register_published(unstaked.account(), evm_address(&unstaked))
        .unwrap();
    // An address already someone else's is refused.
    let claimed = e
        .evm
        .register_published(unstaked.account(), evm_address(&staked));
    assert!(
        matches!(claimed, Err(EvmError::AddressTaken { .. })),
        "{claimed:?}"
    );
    assert_eq!(
        e.evm.stake(&staked.account()).unwrap().unwrap().bonded,
        Amount(150)
    );

    let deadline = e.now_ms() + 600_000;
    for n in [1u8, 2] {
        submit(
            &mut e,
            &buyer,
            TxBody::OpenEscrow {
                order_id: Hash::of(&[n]),
                amount: Amount(1_000),
                deadline_ms: deadline,
            },
        )
        .unwrap();
    }
    let before = assert_conserved(&e);
    // The provider without stake is not assigned, and so cannot be paid.
    let refused = e.evm.assign(Hash::of(&[1]), &[unstaked.account()]);
    assert!(
        matches!(&refused, Err(EvmError::AssignmentRefused(d)) if d.contains("StakeBelowMinimum")),
        "{refused:?}"
    );
    // The staked one is, and is paid at its published address.
    e.evm.assign(Hash::of(&[2]), &[staked.account()]).unwrap();
    let market = e.keys.market.clone();
    submit(
        &mut e,
        &market,
        TxBody::ReleaseEscrow {
            order_id: Hash::of(&[2]),
            payouts: vec![(staked.account(), Amount(1_000))],
        },
    )
    .unwrap();
    // 1 000 gross less the 2.5 % fee (bonding deposited only the 150 it locked).
    assert_eq!(e.evm.block_on(p.balance()).unwrap(), 975);
    assert_eq!(assert_conserved(&e), before);
}

#[test]
fn the_verification_fund_pays_audits_from_the_authoritys_share_of_slashes_only() {
    let Some(mut e) = common::evm(2, 1) else {
        return;
    };
    let (cheat, auditor) = (e.keys.users[0].clone(), e.keys.users[1].clone());
    let market = e.keys.market.clone();
    submit(
        &mut e,
        &cheat,
        TxBody::Bond {
            amount: Amount(1_000),
        },
    )
    .unwrap();
    // Nothing in the fund yet: an audit payment is refused up front and pays nothing.
    let pay = |amount| TxBody::Transfer {
        to: auditor.account(),
        amount: Amount(amount),
    };
    let empty = submit(&mut e, &market, pay(10));
    assert!(
        matches!(empty, Err(LedgerError::InsufficientBalance { .. })),
        "{empty:?}"
    );
    // A slash gives the fund its share (30 % here), which then pays an audit.
    submit(
        &mut e,
        &market,
        TxBody::Slash {
            provider: cheat.account(),
            amount: Amount(1_000),
            evidence: Hash::of(b"wrong output"),
            reason: "wrong output".into(),
            beneficiary: market.account(),
        },
    )
    .unwrap();
    assert_eq!(
        e.evm.account(&market.account()).unwrap().balance,
        Amount(300)
    );
    let before = e.evm.account(&auditor.account()).unwrap().balance;
    submit(&mut e, &market, pay(120)).unwrap();
    assert_eq!(
        e.evm.account(&auditor.account()).unwrap().balance,
        Amount(before.0 + 120)
    );
    // Never more than the fund holds.
    let over = submit(&mut e, &market, pay(181));
    assert!(
        matches!(over, Err(LedgerError::InsufficientBalance { .. })),
        "{over:?}"
    );
    assert_eq!(
        e.evm.account(&market.account()).unwrap().balance,
        Amount(180)
    );
}
