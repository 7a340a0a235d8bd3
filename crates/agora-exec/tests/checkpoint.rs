//! The checkpoint ABI on real wasmtime: the sample job `examples/jobs/life.wasm` (1,000
//! steps), driven step by step, restored from snapshots, and disputed through the bisection
//! game with the executor as referee; small WAT modules for the ABI's refusals and for the
//! virtual WASI state (clock, random, stdout, /output) surviving a restore.

mod common;

use std::time::Duration;

use agora_core::{AccountId, Amount, ChainId, Fuel, Hash, Keypair, Receipt, Signed};
use agora_exec::checkpoint::{AbiViolation, CheckpointError, StatePreimage, Trace};
use agora_exec::{Executor, JobSpec, Limits, WasmExecutor, WasmModule};
use agora_verify::bisect::{Bisection, Commitment, Opening, Party, Progress, Verdict, max_rounds};
use agora_verify::checkpoint::StepStatus;
use agora_verify::dispute::{
    Challenge, ChallengeRules, Instruction, ResultClaim, Ruling, settle_dispute,
};
use agora_verify::evidence::Proof;
use agora_verify::policy::VerifyPolicy;
use agora_verify::quorum::RunResult;

const STEPS: u64 = 1_000;

fn life_module() -> WasmModule {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/jobs/life.wasm");
    WasmModule::new(std::fs::read(path).expect("examples/jobs/life.wasm is committed"))
}

/// `life 1000 1 7`: 1,000 steps of one generation each.
fn life_job() -> JobSpec {
    let mut job = JobSpec::new(Hash::of(b"life-order"), life_module());
    job.args = vec![STEPS.to_string(), "1".into(), "7".into()];
    job.limits = Limits {
        wall_timeout: Duration::from_secs(120),
        ..Limits::default()
    };
    job
}

/// A small deterministic sequence for picking steps, so a failure names its inputs.
fn picks(seed: u64, count: usize, below: u64) -> Vec<u64> {
    let mut x = seed;
    (0..count)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            1 + (x >> 33) % below
        })
        .collect()
}

#[test]
fn the_sample_job_runs_checkpointed_with_the_ordinary_digest_and_a_repeatable_trace() {
    let executor = common::executor();
    let job = life_job();
    let ordinary = executor.run(&job).expect("life runs as an ordinary job");
    assert_eq!(ordinary.exit_code, 0, "{}", ordinary.stderr.text());
    let first = executor
        .run_checkpointed(&job)
        .expect("life runs checkpointed");
    assert_eq!(first.outcome.digest, ordinary.digest);
    assert_eq!(first.outcome.stdout.data, ordinary.stdout.data);
    assert_eq!(first.outcome.outputs, ordinary.outputs);
    assert_eq!(first.trace.steps(), STEPS);
    // The ordinary `_start` loop costs a few instructions more than the host's calls.
    let (c, o) = (first.outcome.fuel_used.0, ordinary.fuel_used.0);
    assert!(
        c <= o && o - c < o / 1_000,
        "checkpointed {c} vs ordinary {o}"
    );
    let again = executor.run_checkpointed(&job).expect("and again");
    assert_eq!(again.trace.step_hashes, first.trace.step_hashes);
    assert_eq!(again.trace.initial_state, first.trace.initial_state);
    assert_eq!(again.trace.commitment(), first.trace.commitment());
    assert_eq!(again.outcome.fuel_used, first.outcome.fuel_used);
    let mut distinct = first.trace.step_hashes.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len() as u64,
        STEPS,
        "every step has its own state hash"
    );
    // Another executor (fresh engine, fresh cache) agrees too.
    let other = common::executor()
        .run_checkpointed(&job)
        .expect("runs elsewhere");
    assert_eq!(other.trace.commitment(), first.trace.commitment());
    assert_eq!(
        executor.checkpoint_initial_state(&job).unwrap(),
        first.trace.initial_state
    );
}

#[test]
fn restoring_the_state_before_a_step_and_running_it_reproduces_the_step() {
    let executor = common::executor();
    let job = life_job();
    let run = executor.run_checkpointed(&job).unwrap();
    let mut sampled: Vec<u64> = picks(11, 6, STEPS);
    sampled.extend([1, 2, STEPS]);
    sampled.sort();
    sampled.dedup();
    // One pass: snapshot the state before each sampled step.
    let mut session = executor.checkpoint_session(&job).unwrap();
    let mut preimages = Vec::new();
    for &i in &sampled {
        while session.steps_done() < i - 1 {
            session.step().unwrap();
        }
        let preimage = session.snapshot().unwrap();
        assert_eq!(preimage.hash(), run.trace.state(i - 1).unwrap(), "step {i}");
        preimages.push(preimage);
    }
    for (&i, preimage) in sampled.iter().zip(&preimages) {
        let from = run.trace.state(i - 1).unwrap();
        let computed = executor
            .referee_step(&job, i, from, Some(preimage))
            .unwrap_or_else(|e| panic!("step {i}: {e}"));
        assert_eq!(computed, run.trace.state(i), "step {i}");
    }
    // Step 1 needs no preimage: the referee instantiates the job itself.
    assert_eq!(
        executor
            .referee_step(&job, 1, run.trace.initial_state, None)
            .unwrap(),
        run.trace.state(1)
    );
    // After the last step the job is done: there is no step 1001.
    let last = executor.checkpoint_preimage(&job, STEPS).unwrap();
    assert_eq!(last.status, StepStatus::Done);
    assert_eq!(
        executor
            .referee_step(
                &job,
                STEPS + 1,
                run.trace.state(STEPS).unwrap(),
                Some(&last)
            )
            .unwrap(),
        None
    );
    // A preimage survives serialization (it is what a party sends the referee).
    let bytes = agora_core::canonical::encode(&preimages[0]);
    let decoded: StatePreimage = agora_core::canonical::decode(&bytes).unwrap();
    assert_eq!(decoded, preimages[0]);
}

/// A trace whose state is corrupted from step `k` on: honest to `k − 1`, then the job run on
/// from a tampered copy of state `k − 1` (one more byte on stdout, as a provider that
/// skipped or altered work would leave a different state behind).
struct Tampered {
    trace: Trace,
    result: RunResult,
}

fn tampered(executor: &WasmExecutor, job: &JobSpec, honest: &Trace, k: u64) -> Tampered {
    let mut preimage = executor.checkpoint_preimage(job, k - 1).unwrap();
    preimage.wasi.stdout.extend_from_slice(b"!");
    preimage.wasi.stdout_total += 1;
    let mut session = executor.restore_session(job, &preimage).unwrap();
    let mut hashes: Vec<Hash> = honest.step_hashes[..(k - 1) as usize].to_vec();
    while session.status() == StepStatus::More {
        session.step().unwrap();
        hashes.push(session.state_hash());
    }
    let outcome = session.finish().unwrap();
    Tampered {
        trace: Trace::new(honest.initial_state, hashes),
        result: RunResult {
            digest: outcome.digest,
            fuel: outcome.fuel_used,
        },
    }
}

fn commitment(trace: &Trace) -> Commitment {
    Commitment::from(trace.commitment())
}

struct Played {
    verdict: Verdict,
    step: u64,
    proof: Proof,
}

/// Plays the whole game: both parties answer from their traces, the honest party supplies
/// the agreed preimage, and the executor is the referee.
fn play(executor: &WasmExecutor, job: &JobSpec, claimant: &Trace, challenger: &Trace) -> Played {
    let end = claimant.steps().min(challenger.steps());
    let opening = Opening {
        initial_state: executor.checkpoint_initial_state(job).unwrap(),
        claimant: commitment(claimant),
        challenger: commitment(challenger),
        claimant_end: claimant.answer(end).unwrap(),
        challenger_end: challenger.answer(end).unwrap(),
    };
    let mut dispute = Bisection::open(opening, 0, 60_000).unwrap();
    let mut now = 0;
    loop {
        now += 1;
        match dispute.progress() {
            Progress::Waiting { step, .. } => {
                dispute
                    .answer(Party::Claimant, claimant.answer(step).unwrap(), now)
                    .unwrap();
                dispute
                    .answer(Party::Challenger, challenger.answer(step).unwrap(), now)
                    .unwrap();
            }
            Progress::NeedsReferee(task) => {
                let preimage = (task.step > 1)
                    .then(|| executor.checkpoint_preimage(job, task.step - 1).unwrap());
                let computed = executor
                    .referee_step(job, task.step, task.from_state, preimage.as_ref())
                    .unwrap();
                let verdict = dispute.referee(computed).unwrap();
                return Played {
                    verdict,
                    step: task.step,
                    proof: Proof::Bisection {
                        step: task.step,
                        agreed_state: task.from_state,
                        claimed_state: task.claimant,
                        referee_state: computed,
                    },
                };
            }
            Progress::Decided(verdict) => panic!("decided without the referee: {verdict:?}"),
        }
    }
}

fn settle(claimed: RunResult, challenged: RunResult, played: &Played) -> Settled {
    let chain = ChainId::new("checkpoint-test");
    let provider = Keypair::from_seed("provider");
    let receipt = Signed::sign(
        &provider,
        &chain,
        0,
        Receipt {
            order_id: Hash::of(b"life-order"),
            provider: provider.account(),
            module: life_module().hash(),
            result_digest: claimed.digest,
            fuel_used: claimed.fuel,
            wall_ms: 1,
            checkpoint: None,
            metering: None,
        },
    );
    let claim = ResultClaim {
        order_id: Hash::of(b"life-order"),
        provider: provider.account(),
        receipt: receipt.id(),
        result: claimed,
        recorded_ms: 1_000,
        at_stake: Amount::agr(10),
    };
    let challenge = Challenge {
        challenger: AccountId::from_bytes([7; 32]),
        result: challenged,
        bond: Amount::agr(2),
        filed_ms: 2_000,
    };
    let resolution = settle_dispute(
        &VerifyPolicy::Challenge { window_ms: 60_000 },
        &claim,
        &challenge,
        Ruling::from_verdict(&played.verdict),
        played.proof.clone(),
        &ChallengeRules::default(),
    )
    .unwrap();
    assert!(resolution.settlement.conserves());
    Settled {
        ruling: resolution.ruling,
        instructions: resolution.settlement.instructions,
        provider: provider.account(),
        challenger: challenge.challenger,
    }
}

struct Settled {
    ruling: Ruling,
    instructions: Vec<Instruction>,
    provider: AccountId,
    challenger: AccountId,
}

#[test]
fn bisection_with_the_real_referee_finds_the_first_corrupted_step_and_settles_both_ways() {
    let executor = common::executor();
    let job = life_job();
    let run = executor.run_checkpointed(&job).unwrap();
    let honest = RunResult {
        digest: run.outcome.digest,
        fuel: run.outcome.fuel_used,
    };
    let mut ks = picks(2026, 2, STEPS);
    ks.push(1);
    for (n, &k) in ks.iter().enumerate() {
        let bad = tampered(&executor, &job, &run.trace, k);
        assert_ne!(
            bad.result, honest,
            "k = {k}: the tampered run ends differently"
        );
        assert_eq!(bad.trace.steps(), STEPS);
        // Alternate who lies; each lie is caught at exactly step k.
        let provider_lies = n % 2 == 0;
        let (claimant, challenger) = if provider_lies {
            (&bad.trace, &run.trace)
        } else {
            (&run.trace, &bad.trace)
        };
        let played = play(&executor, &job, claimant, challenger);
        assert_eq!(
            played.step, k,
            "the referee re-ran the first corrupted step"
        );
        assert!(
            played.verdict.rounds <= max_rounds(STEPS),
            "k = {k}: {} rounds > ⌈log₂ {STEPS}⌉ = {}",
            played.verdict.rounds,
            max_rounds(STEPS)
        );
        assert_eq!(
            played.verdict.lost(Party::Claimant),
            provider_lies,
            "k = {k}"
        );
        assert_eq!(
            played.verdict.lost(Party::Challenger),
            !provider_lies,
            "k = {k}"
        );
        let (claimed, challenged) = if provider_lies {
            (bad.result, honest)
        } else {
            (honest, bad.result)
        };
        let settled = settle(claimed, challenged, &played);
        if provider_lies {
            // Against a wrong result the challenge wins: bond back, provider slashed.
            assert_eq!(settled.ruling, Ruling::ChallengerRight);
            assert!(settled.instructions.contains(&Instruction::Refund {
                to: settled.challenger,
                amount: Amount::agr(2)
            }));
            assert!(settled.instructions.iter().any(|i| matches!(
                i,
                Instruction::Slash { provider, beneficiary: Some(b), .. }
                    if *provider == settled.provider && *b == settled.challenger
            )));
        } else {
            // Against an honest result the challenger loses its bond; nobody is slashed.
            assert_eq!(settled.ruling, Ruling::ProviderRight);
            assert!(settled.instructions.contains(&Instruction::Pay {
                to: settled.provider,
                amount: Amount::agr(1)
            }));
            assert!(
                !settled
                    .instructions
                    .iter()
                    .any(|i| matches!(i, Instruction::Slash { .. }))
            );
        }
    }
}

#[test]
fn a_trace_with_memory_corrupted_mid_job_is_caught_at_that_step() {
    let executor = common::executor();
    let job = life_job();
    let run = executor.run_checkpointed(&job).unwrap();
    let k = picks(99, 1, STEPS)[0];
    let mut preimage = executor.checkpoint_preimage(&job, k - 1).unwrap();
    let last = preimage.memory.len() - 1;
    preimage.memory[last] ^= 0x5a;
    let mut session = executor.restore_session(&job, &preimage).unwrap();
    let mut hashes = run.trace.step_hashes[..(k - 1) as usize].to_vec();
    while session.status() == StepStatus::More {
        session.step().unwrap();
        hashes.push(session.state_hash());
    }
    let bad = Trace::new(run.trace.initial_state, hashes);
    let played = play(&executor, &job, &bad, &run.trace);
    assert_eq!(played.step, k);
    assert!(played.verdict.rounds <= max_rounds(STEPS));
    assert!(played.verdict.lost(Party::Claimant) && !played.verdict.lost(Party::Challenger));
}

#[test]
fn hostile_preimages_get_typed_errors() {
    let executor = common::executor();
    let job = life_job();
    let good = executor.checkpoint_preimage(&job, 3).unwrap();
    let agreed = good.hash();
    let referee =
        |p: &StatePreimage, step: u64, from: Hash| executor.referee_step(&job, step, from, Some(p));
    // The right state, the wrong agreed hash.
    assert!(matches!(
        referee(&good, 4, Hash::of(b"something else")),
        Err(CheckpointError::PreimageMismatch { .. })
    ));
    // A changed byte no longer hashes to the agreed state.
    let mut flipped = good.clone();
    flipped.memory[100] ^= 1;
    assert!(matches!(
        referee(&flipped, 4, agreed),
        Err(CheckpointError::PreimageMismatch { .. })
    ));
    // A preimage that claims a different fuel count, or lies about its own hash.
    let mut fuel = good.clone();
    fuel.fuel = Fuel(fuel.fuel.0 + 1);
    assert!(
        matches!(referee(&fuel, 4, fuel.hash()), Ok(Some(_))),
        "a consistent but different state restores; it just is not the agreed one"
    );
    assert!(matches!(
        referee(&fuel, 4, agreed),
        Err(CheckpointError::PreimageMismatch { .. })
    ));
    let bad = |p: StatePreimage, step: u64| {
        let err = referee(&p, step, agreed).unwrap_err();
        assert!(matches!(err, CheckpointError::BadPreimage(_)), "{err}");
    };
    bad(good.clone(), 5);
    let mut ragged = good.clone();
    ragged.memory.pop();
    bad(ragged, 4);
    // Over the job's memory limit (checked before anything grows).
    let mut huge = good.clone();
    huge.memory.resize(2 << 20, 0);
    let mut small = job.clone();
    small.limits.memory_bytes = 1 << 20;
    let err = executor
        .referee_step(&small, 4, agreed, Some(&huge))
        .unwrap_err();
    assert!(matches!(err, CheckpointError::BadPreimage(_)), "{err}");
    let mut globals = good.clone();
    globals.globals.clear();
    bad(globals, 4);
    let mut wide = good.clone();
    wide.globals[0].bytes = vec![0xff; 8];
    bad(wide, 4);
    let mut escape = good.clone();
    escape
        .wasi
        .outputs
        .push(agora_exec::checkpoint::OutputEntry::File {
            path: "../escaped".into(),
            data: b"x".to_vec(),
        });
    bad(escape, 4);
    let mut stdout = good.clone();
    stdout.wasi.stdout_total = 0;
    stdout.wasi.stdout = b"more than the total".to_vec();
    bad(stdout, 4);
    let mut clock = good.clone();
    clock.wasi.clock_ns = 0;
    clock.wasi.exit_code = Some(3);
    bad(clock, 4);
    assert!(matches!(
        executor.referee_step(&job, 0, agreed, Some(&good)),
        Err(CheckpointError::StepOutOfRange { .. })
    ));
    assert!(matches!(
        executor.referee_step(&job, 4, agreed, None),
        Err(CheckpointError::MissingPreimage { step: 4 })
    ));
    assert!(matches!(
        executor.checkpoint_preimage(&job, STEPS + 1),
        Err(CheckpointError::StepOutOfRange { .. })
    ));
    // And the honest preimage still works after all that.
    assert!(referee(&good, 4, agreed).unwrap().is_some());
}

/// A small checkpointed module: `agora_step` reads the clock, draws 8 random bytes and
/// writes them to stdout; the last of `$n` steps also creates /output/out.txt.
fn wasi_stepper(steps: u32) -> WasmModule {
    common::module(&format!(
        r#"
  (global $i (export "i") (mut i32) (i32.const 0))
  (global $acc (export "acc") (mut i64) (i64.const 0))
  (data (i32.const 300) "out.txt")
  (func $step (export "agora_step") (result i32)
    (local $err i32)
    (drop (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 64)))
    (drop (call $random_get (i32.const 72) (i32.const 8)))
    (global.set $acc (i64.add (global.get $acc)
      (i64.xor (i64.load (i32.const 64)) (i64.load (i32.const 72)))))
    (i32.store (i32.const 0) (i32.const 72))
    (i32.store (i32.const 4) (i32.const 8))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (global.set $i (i32.add (global.get $i) (i32.const 1)))
    (if (i32.lt_u (global.get $i) (i32.const {steps})) (then (return (i32.const 0))))
    (local.set $err (call $path_open (i32.const 4) (i32.const 0) (i32.const 300) (i32.const 7)
      (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 48)))
    (if (local.get $err) (then (call $proc_exit (local.get $err))))
    (i64.store (i32.const 80) (global.get $acc))
    (i32.store (i32.const 0) (i32.const 80))
    (drop (call $fd_write (i32.load (i32.const 48)) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.const 1))
  (func (export "_start") (loop (br_if 0 (i32.eqz (call $step)))))
"#
    ))
}

#[test]
fn clock_random_stdout_and_outputs_are_part_of_the_state_and_survive_a_restore() {
    let executor = common::executor();
    let job = common::job(wasi_stepper(40), "wasi-stepper");
    let ordinary = executor.run(&job).unwrap();
    let run = executor.run_checkpointed(&job).unwrap();
    assert_eq!(run.outcome.digest, ordinary.digest);
    assert_eq!(run.outcome.stdout.data.len(), 40 * 8);
    assert_eq!(run.outcome.outputs.len(), 1);
    let mut session = executor.checkpoint_session(&job).unwrap();
    for i in 1..=40 {
        let before = session.snapshot().unwrap();
        assert_eq!(before.hash(), run.trace.state(i - 1).unwrap());
        assert_eq!(
            executor
                .referee_step(&job, i, before.hash(), Some(&before))
                .unwrap(),
            run.trace.state(i),
            "step {i}"
        );
        session.step().unwrap();
    }
    let done = session.snapshot().unwrap();
    assert_eq!(done.wasi.outputs.len(), 1);
    assert!(
        done.wasi.clock_ns > 0,
        "{:?}",
        (
            done.wasi.clock_ns,
            done.wasi.secure_random_drawn,
            done.wasi.insecure_random_drawn
        )
    );
    assert!(
        done.wasi.secure_random_drawn + done.wasi.insecure_random_drawn >= 40 * 8,
        "{:?}",
        (
            done.wasi.secure_random_drawn,
            done.wasi.insecure_random_drawn
        )
    );
    // The restored outputs are what the job wrote, and a Done state has no next step.
    assert_eq!(
        executor
            .referee_step(&job, 41, done.hash(), Some(&done))
            .unwrap(),
        None
    );
}

fn abi_error(body: &str) -> CheckpointError {
    let executor = common::executor();
    let job = common::job(common::module(body), "abi");
    executor.run_checkpointed(&job).unwrap_err()
}

const START: &str = r#"(func (export "_start") (loop (br_if 0 (i32.eqz (call $step)))))"#;

#[test]
fn modules_that_break_the_abi_are_refused_with_typed_errors() {
    let hidden = abi_error(&format!(
        r#"(global $g (mut i32) (i32.const 0))
           (func $step (export "agora_step") (result i32) (global.set $g (i32.const 1)) (i32.const 1))
           {START}"#
    ));
    assert!(
        matches!(
            hidden,
            CheckpointError::Abi(AbiViolation::HiddenMutableGlobal { index: 0 })
        ),
        "{hidden}"
    );
    let table = abi_error(&format!(
        r#"(table 2 funcref)
           (func $step (export "agora_step") (result i32)
             (table.set (i32.const 0) (ref.null func)) (i32.const 1))
           {START}"#
    ));
    assert!(
        matches!(
            table,
            CheckpointError::Abi(AbiViolation::TableMutation {
                op: "table.set",
                ..
            })
        ),
        "{table}"
    );
    let grow = abi_error(&format!(
        r#"(table 2 funcref)
           (func $step (export "agora_step") (result i32)
             (drop (table.grow (ref.null func) (i32.const 1))) (i32.const 1))
           {START}"#
    ));
    assert!(matches!(
        grow,
        CheckpointError::Abi(AbiViolation::TableMutation {
            op: "table.grow",
            ..
        })
    ));
    let signature = abi_error(
        r#"(func (export "agora_step") (param i32) (result i32) (i32.const 1))
           (func (export "_start"))"#,
    );
    assert!(matches!(
        signature,
        CheckpointError::Abi(AbiViolation::BadStepSignature)
    ));
    let plain = abi_error(r#"(func (export "_start"))"#);
    assert!(matches!(plain, CheckpointError::NotCheckpointed));
    let seven = abi_error(&format!(
        r#"(func $step (export "agora_step") (result i32) (i32.const 7)) {START}"#
    ));
    assert!(
        matches!(seven, CheckpointError::BadStepReturn { step: 1, value: 7 }),
        "{seven}"
    );
    // Opening a file in a step that is not the last changes the descriptor table.
    let opens = abi_error(&format!(
        r#"(global $i (export "i") (mut i32) (i32.const 0))
           (data (i32.const 300) "x.txt")
           (func $step (export "agora_step") (result i32)
             (drop (call $path_open (i32.const 4) (i32.const 0) (i32.const 300) (i32.const 5)
               (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 48)))
             (global.set $i (i32.add (global.get $i) (i32.const 1)))
             (i32.ge_u (global.get $i) (i32.const 3)))
           {START}"#
    ));
    assert!(
        matches!(
            opens,
            CheckpointError::DescriptorChanged {
                step: 1,
                call: "path_open"
            }
        ),
        "{opens}"
    );
    // A trap in a step fails the job as an ordinary run would.
    let trap = abi_error(&format!(
        r#"(func $step (export "agora_step") (result i32) unreachable) {START}"#
    ));
    assert!(
        matches!(&trap, CheckpointError::Exec(e) if e.kind() == "trap"),
        "{trap}"
    );
    // And as an ExecError, ABI violations read as malformed modules.
    let as_exec: agora_exec::ExecError = hidden.into();
    assert_eq!(as_exec.kind(), "malformed_module");
    assert!(agora_exec::checkpoint::is_checkpointed(
        life_module().bytes()
    ));
    assert!(!agora_exec::checkpoint::is_checkpointed(
        common::cat_module().bytes()
    ));
    assert!(!agora_exec::checkpoint::is_checkpointed(b"not wasm"));
}

#[test]
fn proc_exit_in_a_step_ends_the_job_with_its_code() {
    let executor = common::executor();
    let job = common::job(
        common::module(&format!(
            r#"(global $i (export "i") (mut i32) (i32.const 0))
               (func $step (export "agora_step") (result i32)
                 (global.set $i (i32.add (global.get $i) (i32.const 1)))
                 (if (i32.eq (global.get $i) (i32.const 5)) (then (call $proc_exit (i32.const 3))))
                 (i32.const 0))
               {START}"#
        )),
        "exits",
    );
    let ordinary = executor.run(&job).unwrap();
    let run = executor.run_checkpointed(&job).unwrap();
    assert_eq!((run.outcome.exit_code, ordinary.exit_code), (3, 3));
    assert_eq!(run.outcome.digest, ordinary.digest);
    assert_eq!(run.trace.steps(), 5);
    assert_eq!(run.trace.receipt_commitment(), Some(run.trace.commitment()));
}

#[test]
fn a_job_that_exits_in_initialize_has_no_steps_and_commits_to_none() {
    let executor = common::executor();
    let mut job = life_job();
    job.args = vec!["0".into()];
    let ordinary = executor.run(&job).unwrap();
    let run = executor.run_checkpointed(&job).unwrap();
    assert_eq!((ordinary.exit_code, run.outcome.exit_code), (2, 2));
    assert!(run.outcome.stderr.text().starts_with("usage: life"));
    assert_eq!(run.outcome.digest, ordinary.digest);
    assert_eq!(run.trace.steps(), 0);
    assert_eq!(run.trace.receipt_commitment(), None);
}
