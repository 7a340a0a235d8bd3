//! The seed corpus: a few real, valid inputs per target, so the fuzzer starts from
//! messages that decode and verify and mutates from there. `cargo test` checks them and,
//! with `AGORA_FUZZ_WRITE_SEEDS=1`, writes them to `fuzz/seeds/<target>/<name>`.

use std::collections::{BTreeMap, BTreeSet};

use agora_core::{
    AccountId, Amount, ChainId, ContainerMetering, Fuel, Hash, Keypair, Price, Receipt, Signature,
    Signed, StepCommitment, canonical,
};
use agora_ledger::TxBody;
use agora_market::{
    Ask, AskId, AttributeConstraint, Demand, GpuDemand, GpuGroup, Requirements, ResourceClass,
    Resources,
};
use agora_net::wire::{ChunkRequest, ChunkResponse, RpcReply};
use agora_proto::api::{CancelRequest, ChallengeRequest, SubmitOrder, SubmitTx};
use agora_proto::wire::{AbortJob, Bid, Heartbeat, JobFailure, OutputRef, Stream};
use agora_proto::{
    AskOffer, Assignment, CancelOrder, ChallengeResult, Delivery, InputRef, JobSpec, MarketReply,
    OciJob, OrderRequest, ProviderReply, ToMarket, ToProvider, VerifyPolicy, Workload, hexed,
    signed_order_id,
};
use agora_verify::evidence::{Evidence, Proof};
use agora_verify::quorum::RunResult;

use crate::ledger_tx;

/// One seed: target, file name, bytes.
pub type Seed = (&'static str, &'static str, Vec<u8>);

fn chain() -> ChainId {
    ChainId::new("agora-fuzz")
}

fn buyer() -> Keypair {
    Keypair::from_seed("agora-fuzz/buyer")
}

fn provider() -> Keypair {
    Keypair::from_seed("agora-fuzz/provider")
}

fn market() -> Keypair {
    Keypair::from_seed("agora-fuzz/market")
}

/// A two-input order with a GPU demand, requirements and a replicated policy.
pub fn order_request() -> OrderRequest {
    OrderRequest {
        job: JobSpec {
            module: Hash::of(b"module"),
            module_size: 6,
            inputs: vec![
                InputRef {
                    name: "scene.txt".into(),
                    hash: Hash::of(b"scene"),
                    size: 5,
                    sealed: false,
                },
                InputRef {
                    name: "weights.bin".into(),
                    hash: Hash::of(b"weights"),
                    size: 7,
                    sealed: false,
                },
            ],
            args: vec!["--tile".into(), "3".into()],
            env: vec![("MODE".into(), "fast".into())],
            memory_bytes: 64 << 20,
            workload: Workload::Wasm,
        },
        demand: Demand {
            cpu_millis: 1000,
            memory_bytes: 64 << 20,
            disk_bytes: 0,
            gpu: Some(GpuDemand {
                model: Some("A100".into()),
                min_vram_bytes: 40 << 30,
                count: 1,
            }),
        },
        requirements: Requirements {
            arch: Some("x86_64".into()),
            features: BTreeSet::from(["wasm".to_string()]),
            attributes: vec![AttributeConstraint::equals("region", "eu")],
            distinct_by: Some("operator".into()),
            ..Requirements::default()
        },
        max_price: Price(1_000),
        fuel_budget: Fuel::compute_units(2),
        deadline_ms: 1_000_000,
        escrow: Amount(6_000),
        replicas: 3,
        verify: VerifyPolicy::Replicate { n: 3, quorum: 2 },
        label: "tile 3".into(),
        task: Some(agora_proto::TaskRef {
            job: "render".into(),
            index: 3,
            of: 8,
        }),
        auction: agora_market::MatchTerms::Sealed {
            window_ms: 5_000,
            rule: agora_market::PricingRule::UniformKPlusOne,
        },
    }
}

fn signed_order() -> agora_proto::SignedOrder {
    Signed::sign(&buyer(), &chain(), 7, order_request())
}

fn ask() -> Ask {
    let provider = provider().account();
    Ask {
        id: AskId::named(&provider, "box-1"),
        provider,
        capacity: Resources {
            cpu_millis: 8000,
            memory_bytes: 16 << 30,
            disk_bytes: 100 << 30,
            gpus: vec![GpuGroup {
                model: "A100".into(),
                vram_bytes: 80 << 30,
                count: 2,
            }],
        },
        arch: "x86_64".into(),
        features: BTreeSet::from(["wasm".to_string(), "gpu".to_string()]),
        attributes: BTreeMap::from([("region".to_string(), "eu".to_string())]),
        prices: BTreeMap::from([
            (ResourceClass::cpu(), Price(1_000)),
            (ResourceClass::gpu("A100"), Price(50_000)),
        ]),
        min_job: Fuel(1),
        max_job: Fuel::compute_units(1_000),
        expires_ms: 2_000_000,
    }
}

/// The same order for a container: an image with overrides instead of a module.
fn container_order_request() -> OrderRequest {
    let mut order = order_request();
    order.job.workload = Workload::Oci(OciJob {
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
        working_dir: Some("/work".into()),
        network: false,
        deterministic: true,
        max_unpacked_bytes: 1 << 30,
    });
    order
}

fn receipt(checkpoint: bool) -> agora_core::SignedReceipt {
    let key = provider();
    let body = Receipt {
        order_id: signed_order_id(&signed_order()),
        provider: key.account(),
        module: Hash::of(b"module"),
        result_digest: Hash::of(b"result"),
        fuel_used: Fuel(123_456_789),
        wall_ms: 42,
        checkpoint: checkpoint.then(|| StepCommitment {
            root: Hash::of(b"steps"),
            steps: 16,
        }),
        // A container run's cgroup figures ride on the plain receipt seed.
        metering: (!checkpoint).then_some(ContainerMetering {
            cpu_ns: 1_500_000_000,
            peak_memory_bytes: 64 << 20,
            wall_ms: 1_600,
            fuel_per_cpu_second: 19_000_000_000,
        }),
    };
    Signed::sign(&key, &chain(), 0, body)
}

/// Transactions of every kind, signed by the dev chain's keys the ledger target uses.
fn txs() -> Vec<(&'static str, agora_ledger::Tx)> {
    let signers = ledger_tx::signers();
    let (market, user0, user1) = (&signers[0], &signers[1], &signers[2]);
    let chain = ChainId::new("agora-fuzz");
    let order = ledger_tx::setup_order();
    let sign = |key: &Keypair, nonce, body| Signed::sign(key, &chain, nonce, body);
    vec![
        (
            "transfer",
            sign(
                user0,
                1,
                TxBody::Transfer {
                    to: user1.account(),
                    amount: Amount::agr(5),
                },
            ),
        ),
        (
            "open-escrow",
            sign(
                user0,
                1,
                TxBody::OpenEscrow {
                    order_id: signed_order_id(&signed_order()),
                    amount: Amount(6_000),
                    deadline_ms: 2_000_000,
                },
            ),
        ),
        (
            "release-escrow",
            sign(
                market,
                0,
                TxBody::ReleaseEscrow {
                    order_id: order,
                    payouts: vec![(user1.account(), Amount::agr(3))],
                },
            ),
        ),
        (
            "refund-escrow",
            sign(user1, 2, TxBody::RefundEscrow { order_id: order }),
        ),
        (
            "burn-escrow",
            sign(
                market,
                0,
                TxBody::BurnEscrow {
                    order_id: order,
                    amount: Amount::agr(1),
                },
            ),
        ),
        ("withdraw", sign(user1, 2, TxBody::Withdraw)),
        (
            "slash",
            sign(
                market,
                0,
                TxBody::Slash {
                    provider: user1.account(),
                    amount: Amount::agr(20),
                    evidence: Hash::of(b"evidence"),
                    reason: "wrong digest".into(),
                    beneficiary: user0.account(),
                },
            ),
        ),
    ]
}

/// A signature that batch verification accepts for the identity point as public key
/// (`R` = the base point, `s` = 1), which nobody holds a key for: strict verification
/// refuses it, and so must every path that checks signatures.
pub fn weak_key_forgery() -> Signed<JobFailure> {
    let mut signer = [0u8; 32];
    signer[0] = 1;
    let mut signature = [0u8; 64];
    signature[0] = 0x58;
    signature[1..32].fill(0x66);
    signature[32] = 1;
    Signed {
        signer: AccountId::from_bytes(signer),
        chain_id: chain(),
        nonce: 0,
        body: job_failure(AccountId::from_bytes(signer)),
        signature: Signature(signature),
    }
}

fn job_failure(provider: AccountId) -> JobFailure {
    JobFailure {
        order_id: Hash::of(b"order"),
        provider,
        reason: "out of fuel after 2.0 CU".into(),
        kind: "out_of_fuel".into(),
        deterministic: true,
        fuel_used: Fuel::compute_units(2),
        stdout_tail: "step 1 of 3\n".into(),
        stderr_tail: "ran out of fuel in step 2\n".into(),
    }
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn enveloped(payload: Vec<u8>) -> Vec<u8> {
    let mut out = vec![9, 0, 0x40];
    out.extend(payload);
    out
}

fn e<T: serde::Serialize>(value: &T) -> Vec<u8> {
    canonical::encode(value)
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(value).expect("seeds serialize")
}

/// Every seed.
pub fn all() -> Vec<Seed> {
    let order = signed_order();
    let failure = Signed::sign(&provider(), &chain(), 3, job_failure(provider().account()));
    let offer = Signed::sign(
        &provider(),
        &chain(),
        1,
        AskOffer {
            ask: ask(),
            running: 2,
        },
    );
    let assignment = Signed::sign(
        &market(),
        &chain(),
        4,
        Assignment {
            order_id: signed_order_id(&order),
            order: order.clone(),
            provider: provider().account(),
            price: Price(900),
            attempt: 0,
            heartbeat_ms: 5_000,
        },
    );
    let abort = Signed::sign(
        &market(),
        &chain(),
        5,
        AbortJob {
            order_id: signed_order_id(&order),
            reason: "reassigned".into(),
        },
    );
    let heartbeat = Signed::sign(
        &provider(),
        &chain(),
        6,
        Heartbeat {
            order_id: signed_order_id(&order),
            provider: provider().account(),
            elapsed_ms: 1_500,
        },
    );
    let bid = Signed::sign(
        &provider(),
        &chain(),
        7,
        Bid {
            order_id: signed_order_id(&order),
            provider: provider().account(),
            ask: AskId::named(&provider().account(), "box-1"),
            price: Price(800),
        },
    );
    let accept = Signed::sign(
        &provider(),
        &chain(),
        8,
        agora_proto::DutchAccept {
            order_id: signed_order_id(&order),
            provider: provider().account(),
            ask: AskId::named(&provider().account(), "box-1"),
            step: 3,
            price: Price(700),
        },
    );
    let delivery = ToMarket::Deliver(Box::new(Delivery {
        receipt: receipt(false),
        exit_code: 0,
        stdout: Stream {
            data: b"done\n".to_vec(),
            total_bytes: 5,
            truncated: false,
        },
        stderr: Stream::default(),
        outputs: vec![OutputRef {
            name: "tile.png".into(),
            hash: Hash::of(b"png"),
            size: 3,
        }],
        fuel_used: Fuel(123_456_789),
    }));
    let evidence = Evidence {
        order_id: signed_order_id(&order),
        provider: provider().account(),
        receipt: receipt(false).id(),
        claimed: RunResult {
            digest: Hash::of(b"result"),
            fuel: Fuel(123_456_789),
        },
        proof: Proof::Quorum {
            accepted: RunResult {
                digest: Hash::of(b"right"),
                fuel: Fuel(123_456_789),
            },
            agreeing: vec![buyer().account(), market().account()],
        },
        policy: VerifyPolicy::Replicate { n: 3, quorum: 2 },
    };
    let cancel = Signed::sign(
        &buyer(),
        &chain(),
        8,
        CancelOrder {
            order_id: signed_order_id(&order),
        },
    );
    let challenge = Signed::sign(
        &buyer(),
        &chain(),
        9,
        ChallengeResult {
            order_id: signed_order_id(&order),
            result_digest: Hash::of(b"right"),
            fuel_used: Fuel(123_456_789),
        },
    );
    let txs = txs();
    let escrow_tx = txs[1].1.clone();
    let stored = crate::blob_request::stored_blobs();
    let chunk = ChunkRequest {
        hash: Hash::of(&stored[2]),
        offset: 4096,
        len: 1024,
    };

    let mut seeds: Vec<Seed> = vec![
        ("envelope", "job-failure", enveloped(e(&failure))),
        ("envelope", "weak-key", enveloped(e(&weak_key_forgery()))),
        ("gossip_ask", "ask", e(&offer)),
        ("receipt", "receipt", e(&receipt(false))),
        ("receipt", "checkpointed", e(&receipt(true))),
        ("receipt", "evidence", e(&evidence)),
        (
            "rpc_to_market",
            "heartbeat",
            e(&ToMarket::Heartbeat(heartbeat)),
        ),
        ("rpc_to_market", "deliver", e(&delivery)),
        ("rpc_to_market", "failed", e(&ToMarket::Failed(failure))),
        ("rpc_to_market", "bid", e(&ToMarket::Bid(bid))),
        ("rpc_to_market", "accept", e(&ToMarket::Accept(accept))),
        (
            "rpc_to_market",
            "rejected",
            e(&MarketReply::Rejected {
                reason: "late".into(),
            }),
        ),
        (
            "rpc_to_provider",
            "assign",
            e(&ToProvider::Assign(assignment)),
        ),
        ("rpc_to_provider", "abort", e(&ToProvider::Abort(abort))),
        (
            "rpc_to_provider",
            "declined",
            e(&ProviderReply::Declined {
                reason: "busy".into(),
            }),
        ),
        ("signed_order", "order", e(&order)),
        ("signed_order", "body", e(&order_request())),
        ("signed_order", "container-body", e(&container_order_request())),
        ("blob_request", "chunk-request", e(&chunk)),
        (
            "blob_request",
            "frame",
            framed(&e(&ChunkRequest {
                hash: Hash::of(&stored[1]),
                offset: 0,
                len: 64,
            })),
        ),
        (
            "blob_request",
            "chunk",
            e(&ChunkResponse::Chunk {
                total: 12,
                data: stored[1].clone(),
            }),
        ),
        (
            "blob_request",
            "rpc-reply",
            e(&RpcReply::Ok(b"ok".to_vec())),
        ),
        (
            "text_forms",
            "hash",
            Hash::of(b"blob").to_string().into_bytes(),
        ),
        (
            "text_forms",
            "account",
            buyer().account().to_string().into_bytes(),
        ),
        (
            "sealed_blob",
            "sealed",
            agora_seal::seal(
                &agora_seal::DataKey::from_bytes(crate::sealed_blob::FUZZ_KEY),
                buyer().account(),
                b"private input, two segments would be larger",
            )
            .expect("seal"),
        ),
        (
            "sealed_blob",
            "access-header",
            agora_seal::BlobAccess::header(
                &buyer(),
                &crate::sealed_blob::chain(),
                "GET",
                crate::sealed_blob::ACCESS_PATH,
                Some(Hash::of(b"order")),
                0,
            )
            .into_bytes(),
        ),
        ("text_forms", "amount", b"12.5 AGR".to_vec()),
        ("text_forms", "price", b"0.000001 AGR/CU".to_vec()),
        ("text_forms", "policy", b"challenge:30s".to_vec()),
        ("text_forms", "size", b"256 MiB".to_vec()),
        (
            "api_json",
            "submit-order",
            json(&SubmitOrder {
                order: hexed::encode(&order),
                escrow_tx: hexed::encode(&escrow_tx),
            }),
        ),
        (
            "api_json",
            "submit-tx",
            json(&SubmitTx {
                tx: hexed::encode(&txs[0].1),
            }),
        ),
        (
            "api_json",
            "cancel",
            json(&CancelRequest {
                cancel: hexed::encode(&cancel),
            }),
        ),
        (
            "api_json",
            "challenge",
            json(&ChallengeRequest {
                challenge: hexed::encode(&challenge),
                bond_tx: hexed::encode(&escrow_tx),
            }),
        ),
        ("job_spec", "single", JOB_SPEC_SINGLE.as_bytes().to_vec()),
        ("job_spec", "tasks", JOB_SPEC_TASKS.as_bytes().to_vec()),
    ];
    for (name, tx) in txs {
        seeds.push(("ledger_tx", name, e(&tx)));
    }
    seeds
}

const JOB_SPEC_SINGLE: &str = r#"module = "render.wasm"
args = ["--width", "64"]
max_price = "0.02 AGR"
max_cu = 2
memory = "64 MiB"
deadline = "90s"
verify = "replicate:3:2"
replicas = 3
region = "eu"
label = "one tile"

[inputs]
scene = "scene.txt"

[env]
MODE = "fast"
"#;

const JOB_SPEC_TASKS: &str = r#"name = "render"
concurrency = 4
module = "render.wasm"
fuel = 1000000
verify = "spot:0.25"

[inputs]
scene = "scene.txt"

[[tasks]]
args = ["--tile", "0"]

[[tasks]]
args = ["--tile", "1"]
max_price = 20000000
inputs = { extra = "extra.bin" }
deadline = 120
"#;

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds")
    }

    #[test]
    fn seeds_pass_their_checks() {
        for (target, name, bytes) in all() {
            let check = crate::TARGETS
                .iter()
                .find(|(t, _)| *t == target)
                .unwrap_or_else(|| panic!("no target {target}"))
                .1;
            eprintln!("{target}/{name}");
            check(&bytes);
        }
    }

    #[test]
    fn valid_seeds_decode_and_verify() {
        assert!(signed_order().verify(&chain()).is_ok());
        assert_eq!(signed_order().body.check_shape(), Ok(()));
        assert!(weak_key_forgery().verify(&chain()).is_err());
    }

    /// The committed corpus files pass too (they may predate a wire change).
    #[test]
    fn committed_seeds_pass_their_checks() {
        for (target, check) in crate::TARGETS {
            let Ok(entries) = std::fs::read_dir(dir().join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                check(&std::fs::read(&path).unwrap());
            }
        }
    }

    /// `AGORA_FUZZ_WRITE_SEEDS=1 cargo test write_seeds` rewrites `fuzz/seeds/`.
    #[test]
    fn write_seeds() {
        if std::env::var_os("AGORA_FUZZ_WRITE_SEEDS").is_none() {
            return;
        }
        for (target, name, bytes) in all() {
            let dir = dir().join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}
