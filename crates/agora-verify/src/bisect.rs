//! The bisection game over checkpointed step hashes: from two different traces to the one
//! step the referee must re-run.
//!
//! The claimant (the provider) and the challenger each commit to a [`Commitment`]: the
//! Merkle root over their step hashes and the number of steps. Step 0 is the job's initial
//! state, which the referee computes itself from the module and inputs, so it is agreed by
//! construction. At the opening both parties also reveal their state at step
//! `m = min(steps)` with a proof, which must differ — otherwise there is nothing to bisect
//! (see [`Bisection::open`] for the one exception).
//!
//! Each round the referee asks for the state at the midpoint of `[agreed, disputed]`; both
//! answer with the hash and an inclusion proof against their own root. A proof that does not
//! check loses on the spot, as does silence past the round's deadline. Equal answers move
//! `agreed` up, different ones move `disputed` down, so after at most ⌈log₂ m⌉ rounds the
//! interval is one step wide: the parties agree on state `i − 1` and differ on state `i`.
//! The referee then re-executes only step `i` from the agreed state and reports the hash it
//! computed ([`Bisection::referee`]); whoever claimed something else lied.
//!
//! When every state after the first divergence differs (the usual case: a wrong state
//! propagates), `i` is the first differing step. If a trace re-converges, bisection still
//! ends at *a* step where an agreed state is followed by different claims, which is all the
//! referee needs.

use agora_core::Hash;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{InclusionProof, verify_inclusion};

/// A side of the dispute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Party {
    /// The provider whose result is challenged.
    Claimant,
    /// The staked party that challenged it.
    Challenger,
}

/// What a party committed to before the dispute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commitment {
    /// [`StepTree::root`](crate::checkpoint::StepTree::root) over its step hashes.
    pub root: Hash,
    /// How many steps its trace has.
    pub steps: u64,
}

impl From<agora_core::StepCommitment> for Commitment {
    /// What a checkpointed receipt signed (`Receipt::checkpoint`) is what the party committed to.
    fn from(signed: agora_core::StepCommitment) -> Commitment {
        Commitment {
            root: signed.root,
            steps: signed.steps,
        }
    }
}

/// A state hash with its proof against the answering party's root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The state hash claimed for the asked step.
    pub state: Hash,
    /// Its inclusion proof at leaf `step − 1`.
    pub proof: InclusionProof,
}

/// Everything needed to start a dispute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opening {
    /// The job's state before step 1, as the referee computes it.
    pub initial_state: Hash,
    /// The provider's commitment.
    pub claimant: Commitment,
    /// The challenger's commitment.
    pub challenger: Commitment,
    /// The provider's state at step `min(steps)`.
    pub claimant_end: Answer,
    /// The challenger's state at step `min(steps)`.
    pub challenger_end: Answer,
}

/// Why a party lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LossReason {
    /// It committed to a trace with no steps; every job takes at least one.
    EmptyTrace,
    /// Its answer for `step` did not prove against its own root.
    BadProof {
        /// The step asked.
        step: u64,
    },
    /// It did not answer for `step` by the deadline.
    Timeout {
        /// The step asked.
        step: u64,
    },
    /// The referee re-ran `step` and got something other than what it claimed.
    ReExecution {
        /// The step re-run.
        step: u64,
    },
}

/// How the dispute ended. At least one side lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Why the claimant lost, if it did.
    pub claimant_lost: Option<LossReason>,
    /// Why the challenger lost, if it did.
    pub challenger_lost: Option<LossReason>,
    /// Rounds of questions it took.
    pub rounds: u32,
}

impl Verdict {
    /// Whether `party` lost.
    pub fn lost(&self, party: Party) -> bool {
        match party {
            Party::Claimant => self.claimant_lost.is_some(),
            Party::Challenger => self.challenger_lost.is_some(),
        }
    }
}

/// The one step the referee must re-execute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefereeTask {
    /// The step to run (1-based).
    pub step: u64,
    /// The agreed state before it: the referee restores this state and runs `agora_step`
    /// once. The parties supply the state itself; its hash must equal this.
    pub from_state: Hash,
    /// What the claimant says comes out; `None` when its trace ended before this step.
    pub claimant: Option<Hash>,
    /// What the challenger says comes out; `None` when its trace ended before this step.
    pub challenger: Option<Hash>,
}

/// Where the dispute stands: what the referee waits for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Progress {
    /// Waiting for answers about `step` by `deadline_ms`.
    Waiting {
        /// The step asked.
        step: u64,
        /// The last moment (inclusive) an answer is accepted.
        deadline_ms: u64,
        /// Whether the claimant still owes an answer.
        claimant_owes: bool,
        /// Whether the challenger still owes an answer.
        challenger_owes: bool,
    },
    /// Bisection is done; the referee must run one step.
    NeedsReferee(RefereeTask),
    /// Decided.
    Decided(Verdict),
}

/// A call that does not fit the dispute's current state. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BisectError {
    /// Both parties revealed the same final state and trace length: they agree.
    #[error("both parties commit to the same {steps}-step trace end; there is nothing to dispute")]
    NoDisagreement {
        /// The shared step count.
        steps: u64,
    },
    /// An answer while no question is open.
    #[error("no question is open: the dispute {0}")]
    NotAsking(&'static str),
    /// An answer from a party that does not owe one.
    #[error("{0:?} has already answered this round (or was not asked)")]
    NotOwed(Party),
    /// A referee result while the parties are still being asked, or after the verdict.
    #[error("the referee is not needed now: the dispute {0}")]
    NotAwaitingReferee(&'static str),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Question {
    step: u64,
    deadline_ms: u64,
    claimant: Option<Hash>,
    challenger: Option<Hash>,
    claimant_owes: bool,
    challenger_owes: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    Asking(Question),
    AwaitingReferee(RefereeTask),
    Decided(Verdict),
}

/// The dispute state machine. Pure: the caller passes the time and the referee's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bisection {
    claimant: Commitment,
    challenger: Commitment,
    agreed_step: u64,
    agreed_state: Hash,
    disputed_step: u64,
    disputed: (Hash, Hash),
    round_ms: u64,
    rounds: u32,
    phase: Phase,
}

/// The most rounds a dispute over traces of up to `steps` steps takes: ⌈log₂ steps⌉.
pub fn max_rounds(steps: u64) -> u32 {
    match steps {
        0 | 1 => 0,
        n => 64 - (n - 1).leading_zeros(),
    }
}

impl Bisection {
    /// Starts a dispute at `now_ms`; each question may be answered for `round_ms`.
    ///
    /// A party with an empty trace, or whose end state does not prove, has lost before any
    /// round. If the two end states are equal but the traces have different lengths, one
    /// party stopped early or ran on after the end (the state hash includes the step's
    /// done flag, so this cannot both be honest): the longer party is asked for its next
    /// state and the referee runs that one step.
    pub fn open(opening: Opening, now_ms: u64, round_ms: u64) -> Result<Bisection, BisectError> {
        let Opening {
            initial_state,
            claimant,
            challenger,
            claimant_end,
            challenger_end,
        } = opening;
        let end = claimant.steps.min(challenger.steps);
        let mut dispute = Bisection {
            claimant,
            challenger,
            agreed_step: 0,
            agreed_state: initial_state,
            disputed_step: end,
            disputed: (claimant_end.state, challenger_end.state),
            round_ms,
            rounds: 0,
            phase: Phase::Decided(Verdict {
                claimant_lost: None,
                challenger_lost: None,
                rounds: 0,
            }),
        };
        if let Some(verdict) = dispute.opening_fault(&claimant_end, &challenger_end) {
            dispute.phase = Phase::Decided(verdict);
            return Ok(dispute);
        }
        if claimant_end.state == challenger_end.state {
            if claimant.steps == challenger.steps {
                return Err(BisectError::NoDisagreement { steps: end });
            }
            dispute.agreed_step = end;
            dispute.agreed_state = claimant_end.state;
            dispute.ask_past_shorter_end(now_ms);
            return Ok(dispute);
        }
        dispute.next_question(now_ms);
        Ok(dispute)
    }

    fn opening_fault(&self, claimant_end: &Answer, challenger_end: &Answer) -> Option<Verdict> {
        let end = self.disputed_step;
        let empty =
            |commitment: &Commitment| (commitment.steps == 0).then_some(LossReason::EmptyTrace);
        let (mut claimant_lost, mut challenger_lost) =
            (empty(&self.claimant), empty(&self.challenger));
        // With an empty trace on either side there is no common end to check the other's
        // proof at; the empty side has lost either way.
        if claimant_lost.is_none() && challenger_lost.is_none() {
            let bad_proof = |commitment: &Commitment, answer: &Answer| {
                (!proves(commitment, end, answer)).then_some(LossReason::BadProof { step: end })
            };
            claimant_lost = bad_proof(&self.claimant, claimant_end);
            challenger_lost = bad_proof(&self.challenger, challenger_end);
        }
        (claimant_lost.is_some() || challenger_lost.is_some()).then_some(Verdict {
            claimant_lost,
            challenger_lost,
            rounds: 0,
        })
    }

    fn ask_past_shorter_end(&mut self, now_ms: u64) {
        let step = self.agreed_step + 1;
        self.disputed_step = step;
        let claimant_owes = self.claimant.steps >= step;
        let challenger_owes = self.challenger.steps >= step;
        self.ask(step, now_ms, claimant_owes, challenger_owes);
    }

    fn ask(&mut self, step: u64, now_ms: u64, claimant_owes: bool, challenger_owes: bool) {
        self.rounds += 1;
        self.phase = Phase::Asking(Question {
            step,
            deadline_ms: now_ms.saturating_add(self.round_ms),
            claimant: None,
            challenger: None,
            claimant_owes,
            challenger_owes,
        });
    }

    /// Asks the midpoint, or hands the last step to the referee when the interval is one
    /// step wide.
    fn next_question(&mut self, now_ms: u64) {
        let width = self.disputed_step - self.agreed_step;
        if width <= 1 {
            self.phase = Phase::AwaitingReferee(RefereeTask {
                step: self.disputed_step,
                from_state: self.agreed_state,
                claimant: Some(self.disputed.0),
                challenger: Some(self.disputed.1),
            });
            return;
        }
        let middle = self.agreed_step + width / 2;
        self.ask(middle, now_ms, true, true);
    }

    /// Where the dispute stands.
    pub fn progress(&self) -> Progress {
        match &self.phase {
            Phase::Asking(q) => Progress::Waiting {
                step: q.step,
                deadline_ms: q.deadline_ms,
                claimant_owes: q.claimant_owes,
                challenger_owes: q.challenger_owes,
            },
            Phase::AwaitingReferee(task) => Progress::NeedsReferee(*task),
            Phase::Decided(verdict) => Progress::Decided(*verdict),
        }
    }

    /// Questions asked so far.
    pub fn rounds(&self) -> u32 {
        self.rounds
    }

    /// The current interval `(agreed step, disputed step)`.
    pub fn interval(&self) -> (u64, u64) {
        (self.agreed_step, self.disputed_step)
    }

    /// `party` answers the open question at `now_ms`. A late answer is a timeout; a proof
    /// that does not check loses at once.
    pub fn answer(
        &mut self,
        party: Party,
        answer: Answer,
        now_ms: u64,
    ) -> Result<Progress, BisectError> {
        if matches!(self.phase, Phase::Decided(_)) {
            return Err(BisectError::NotAsking(self.phase_name()));
        }
        if let Progress::Decided(verdict) = self.expire(now_ms) {
            return Ok(Progress::Decided(verdict));
        }
        let commitment = self.commitment(party);
        let Phase::Asking(question) = &mut self.phase else {
            return Err(BisectError::NotAsking(self.phase_name()));
        };
        let owes = match party {
            Party::Claimant => &mut question.claimant_owes,
            Party::Challenger => &mut question.challenger_owes,
        };
        if !*owes {
            return Err(BisectError::NotOwed(party));
        }
        if !proves(&commitment, question.step, &answer) {
            let step = question.step;
            return Ok(self.decide_single(party, LossReason::BadProof { step }));
        }
        *owes = false;
        match party {
            Party::Claimant => question.claimant = Some(answer.state),
            Party::Challenger => question.challenger = Some(answer.state),
        }
        if !question.claimant_owes && !question.challenger_owes {
            let question = question.clone();
            self.close_round(&question, now_ms);
        }
        Ok(self.progress())
    }

    fn close_round(&mut self, question: &Question, now_ms: u64) {
        if question.step > self.claimant.steps.min(self.challenger.steps) {
            // The one-step question past the shorter trace's end: straight to the referee.
            self.phase = Phase::AwaitingReferee(RefereeTask {
                step: question.step,
                from_state: self.agreed_state,
                claimant: question.claimant,
                challenger: question.challenger,
            });
            return;
        }
        match (question.claimant, question.challenger) {
            (Some(ours), Some(theirs)) if ours == theirs => {
                self.agreed_step = question.step;
                self.agreed_state = ours;
            }
            (Some(ours), Some(theirs)) => {
                self.disputed_step = question.step;
                self.disputed = (ours, theirs);
            }
            // Both owed an answer and both gave one, so this does not happen.
            _ => {}
        }
        self.next_question(now_ms);
    }

    /// Applies the deadline at `now_ms`: whoever still owes an answer after it loses.
    pub fn expire(&mut self, now_ms: u64) -> Progress {
        if let Phase::Asking(question) = &self.phase
            && now_ms > question.deadline_ms
        {
            let timeout = LossReason::Timeout {
                step: question.step,
            };
            let verdict = Verdict {
                claimant_lost: question.claimant_owes.then_some(timeout),
                challenger_lost: question.challenger_owes.then_some(timeout),
                rounds: self.rounds,
            };
            self.phase = Phase::Decided(verdict);
        }
        self.progress()
    }

    /// The referee re-ran the step of [`Progress::NeedsReferee`] from the agreed state and
    /// got `computed` (`None`: the job had already finished, so there is no such step).
    /// Whoever claimed something else loses; if both did, both lose.
    pub fn referee(&mut self, computed: Option<Hash>) -> Result<Verdict, BisectError> {
        let Phase::AwaitingReferee(task) = &self.phase else {
            return Err(BisectError::NotAwaitingReferee(self.phase_name()));
        };
        let wrong = LossReason::ReExecution { step: task.step };
        let verdict = Verdict {
            claimant_lost: (task.claimant != computed).then_some(wrong),
            challenger_lost: (task.challenger != computed).then_some(wrong),
            rounds: self.rounds,
        };
        self.phase = Phase::Decided(verdict);
        Ok(verdict)
    }

    fn decide_single(&mut self, loser: Party, reason: LossReason) -> Progress {
        let verdict = Verdict {
            claimant_lost: (loser == Party::Claimant).then_some(reason),
            challenger_lost: (loser == Party::Challenger).then_some(reason),
            rounds: self.rounds,
        };
        self.phase = Phase::Decided(verdict);
        self.progress()
    }

    fn commitment(&self, party: Party) -> Commitment {
        match party {
            Party::Claimant => self.claimant,
            Party::Challenger => self.challenger,
        }
    }

    fn phase_name(&self) -> &'static str {
        match self.phase {
            Phase::Asking(_) => "is waiting for answers",
            Phase::AwaitingReferee(_) => "is waiting for the referee",
            Phase::Decided(_) => "is decided",
        }
    }
}

/// Whether `answer` proves a state at `step` (leaf `step − 1`) of `commitment`'s tree.
fn proves(commitment: &Commitment, step: u64, answer: &Answer) -> bool {
    step >= 1
        && verify_inclusion(
            commitment.root,
            commitment.steps,
            step - 1,
            answer.state,
            &answer.proof,
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::StepTree;

    struct Trace {
        hashes: Vec<Hash>,
        tree: StepTree,
    }

    impl Trace {
        fn new(hashes: Vec<Hash>) -> Trace {
            let tree = StepTree::new(&hashes);
            Trace { hashes, tree }
        }
        fn commitment(&self) -> Commitment {
            Commitment {
                root: self.tree.root(),
                steps: self.tree.len(),
            }
        }
        fn answer(&self, step: u64) -> Answer {
            Answer {
                state: self.hashes[step as usize - 1],
                proof: self.tree.prove(step - 1).unwrap(),
            }
        }
    }

    fn honest(n: u64) -> Vec<Hash> {
        (1..=n).map(|i| Hash::of(&i.to_le_bytes())).collect()
    }

    fn diverging(n: u64, from: u64) -> Vec<Hash> {
        (1..=n)
            .map(|i| {
                if i < from {
                    Hash::of(&i.to_le_bytes())
                } else {
                    Hash::of(&(i + 1_000_000).to_le_bytes())
                }
            })
            .collect()
    }

    fn open(claimant: &Trace, challenger: &Trace) -> Bisection {
        let end = claimant.hashes.len().min(challenger.hashes.len()) as u64;
        Bisection::open(
            Opening {
                initial_state: Hash::of(b"initial"),
                claimant: claimant.commitment(),
                challenger: challenger.commitment(),
                claimant_end: claimant.answer(end),
                challenger_end: challenger.answer(end),
            },
            0,
            1_000,
        )
        .unwrap()
    }

    fn play(dispute: &mut Bisection, claimant: &Trace, challenger: &Trace) -> RefereeTask {
        loop {
            match dispute.progress() {
                Progress::Waiting { step, .. } => {
                    dispute
                        .answer(Party::Claimant, claimant.answer(step), 0)
                        .unwrap();
                    dispute
                        .answer(Party::Challenger, challenger.answer(step), 0)
                        .unwrap();
                }
                Progress::NeedsReferee(task) => return task,
                Progress::Decided(v) => panic!("decided early: {v:?}"),
            }
        }
    }

    #[test]
    fn finds_the_first_differing_step_of_a_1000_step_job() {
        let claimant = Trace::new(diverging(1_000, 377));
        let challenger = Trace::new(honest(1_000));
        let mut dispute = open(&claimant, &challenger);
        let task = play(&mut dispute, &claimant, &challenger);
        assert_eq!(task.step, 377);
        assert_eq!(task.from_state, challenger.hashes[375]);
        assert!(dispute.rounds() <= max_rounds(1_000));
        let verdict = dispute.referee(Some(challenger.hashes[376])).unwrap();
        assert_eq!(
            verdict.claimant_lost,
            Some(LossReason::ReExecution { step: 377 })
        );
        assert!(!verdict.lost(Party::Challenger));
    }

    #[test]
    fn divergence_at_step_one_starts_from_the_initial_state() {
        let claimant = Trace::new(honest(8));
        let challenger = Trace::new(diverging(8, 1));
        let mut dispute = open(&claimant, &challenger);
        let task = play(&mut dispute, &claimant, &challenger);
        assert_eq!((task.step, task.from_state), (1, Hash::of(b"initial")));
    }

    #[test]
    fn a_forged_answer_loses_immediately() {
        let claimant = Trace::new(diverging(64, 40));
        let challenger = Trace::new(honest(64));
        let mut dispute = open(&claimant, &challenger);
        let Progress::Waiting { step, .. } = dispute.progress() else {
            panic!("expected a question");
        };
        let mut forged = claimant.answer(step);
        forged.state = Hash::of(b"not in the claimant's tree");
        let progress = dispute.answer(Party::Claimant, forged, 0).unwrap();
        assert!(matches!(
            progress,
            Progress::Decided(Verdict {
                claimant_lost: Some(LossReason::BadProof { .. }),
                challenger_lost: None,
                ..
            })
        ));
    }

    #[test]
    fn silence_past_the_deadline_loses() {
        let claimant = Trace::new(diverging(64, 40));
        let challenger = Trace::new(honest(64));
        let mut dispute = open(&claimant, &challenger);
        let Progress::Waiting {
            step, deadline_ms, ..
        } = dispute.progress()
        else {
            panic!("expected a question");
        };
        dispute
            .answer(Party::Challenger, challenger.answer(step), deadline_ms)
            .unwrap();
        let progress = dispute.expire(deadline_ms + 1);
        assert!(matches!(
            progress,
            Progress::Decided(Verdict {
                claimant_lost: Some(LossReason::Timeout { .. }),
                challenger_lost: None,
                ..
            })
        ));
        assert!(matches!(
            dispute.answer(Party::Claimant, claimant.answer(step), 0),
            Err(BisectError::NotAsking(_))
        ));
    }

    #[test]
    fn a_late_answer_is_a_timeout() {
        let claimant = Trace::new(diverging(16, 3));
        let challenger = Trace::new(honest(16));
        let mut dispute = open(&claimant, &challenger);
        let Progress::Waiting {
            step, deadline_ms, ..
        } = dispute.progress()
        else {
            panic!("expected a question");
        };
        let progress = dispute
            .answer(Party::Claimant, claimant.answer(step), deadline_ms + 1)
            .unwrap();
        assert!(matches!(
            progress,
            Progress::Decided(Verdict {
                claimant_lost: Some(LossReason::Timeout { .. }),
                challenger_lost: Some(LossReason::Timeout { .. }),
                ..
            })
        ));
    }

    #[test]
    fn a_trace_that_stops_early_is_caught_past_its_end() {
        let full = honest(10);
        let claimant = Trace::new(full[..6].to_vec());
        let challenger = Trace::new(full.clone());
        let mut dispute = open(&claimant, &challenger);
        assert_eq!(
            dispute.progress(),
            Progress::Waiting {
                step: 7,
                deadline_ms: 1_000,
                claimant_owes: false,
                challenger_owes: true,
            }
        );
        dispute
            .answer(Party::Challenger, challenger.answer(7), 10)
            .unwrap();
        let task = match dispute.progress() {
            Progress::NeedsReferee(task) => task,
            other => panic!("{other:?}"),
        };
        assert_eq!((task.claimant, task.challenger), (None, Some(full[6])));
        let verdict = dispute.referee(Some(full[6])).unwrap();
        assert!(verdict.lost(Party::Claimant) && !verdict.lost(Party::Challenger));
    }

    #[test]
    fn agreeing_traces_are_not_a_dispute() {
        let a = Trace::new(honest(5));
        let b = Trace::new(honest(5));
        let result = Bisection::open(
            Opening {
                initial_state: Hash::ZERO,
                claimant: a.commitment(),
                challenger: b.commitment(),
                claimant_end: a.answer(5),
                challenger_end: b.answer(5),
            },
            0,
            10,
        );
        assert_eq!(result, Err(BisectError::NoDisagreement { steps: 5 }));
    }

    #[test]
    fn an_empty_trace_loses_at_the_opening() {
        let good = Trace::new(honest(4));
        let dispute = Bisection::open(
            Opening {
                initial_state: Hash::ZERO,
                claimant: Commitment {
                    root: StepTree::new(&[]).root(),
                    steps: 0,
                },
                challenger: good.commitment(),
                claimant_end: Answer {
                    state: Hash::ZERO,
                    proof: InclusionProof::default(),
                },
                challenger_end: good.answer(1),
            },
            0,
            10,
        )
        .unwrap();
        assert!(matches!(
            dispute.progress(),
            Progress::Decided(Verdict {
                claimant_lost: Some(LossReason::EmptyTrace),
                challenger_lost: None,
                ..
            })
        ));
    }

    #[test]
    fn max_rounds_is_ceil_log2() {
        let expected = [
            (1, 0),
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 3),
            (1_000, 10),
            (1_024, 10),
        ];
        for (steps, rounds) in expected {
            assert_eq!(max_rounds(steps), rounds, "{steps}");
        }
    }

    #[test]
    fn the_referee_is_asked_once() {
        let claimant = Trace::new(diverging(2, 2));
        let challenger = Trace::new(honest(2));
        let mut dispute = open(&claimant, &challenger);
        play(&mut dispute, &claimant, &challenger);
        dispute.referee(Some(Hash::ZERO)).unwrap();
        assert!(matches!(
            dispute.referee(None),
            Err(BisectError::NotAwaitingReferee(_))
        ));
    }
}
