//! What a buyer signs: the job, its requirements, its price cap and its budget.
//!
//! An order's id is derived from the buyer, the chain, the envelope nonce and the body
//! ([`order_id`]), so the buyer can sign the escrow transaction that names the order
//! before the market has seen it, and the market can check that the two belong together.
//! The nonce is the buyer's free choice (a random salt): two otherwise identical orders
//! get different ids, and a replayed order has the id of one the market already knows.

use agora_core::{AccountId, Amount, ChainId, Domain, Fuel, Hash, Price, Signed, canonical};
use agora_market::{Demand, MatchTerms, Requirements, TermsError};
use agora_verify::VerifyPolicy;
use serde::{Deserialize, Serialize};

/// Most inputs one job may name.
pub const MAX_INPUTS: usize = 64;
/// Most arguments plus environment entries one job may carry.
pub const MAX_ARGS: usize = 256;
/// Most bytes of arguments, environment and names together.
pub const MAX_ARG_BYTES: usize = 64 * 1024;
/// Longest label a buyer may attach.
pub const MAX_LABEL_BYTES: usize = 200;

/// The input name of the tar blob that seeds the job's writable scratch root `/`.
pub const WORKDIR_INPUT: &str = "/";
/// The input name of the blob the job reads on stdin.
pub const STDIN_INPUT: &str = "/dev/stdin";

/// A blob the job reads. Its name says where the job sees it (see [`InputRef::kind`]):
///
/// - `NAME`: a file at `/input/NAME`;
/// - `NAME/`: a directory input, a tar archive unpacked read-only at `/input/NAME`;
/// - `/` ([`WORKDIR_INPUT`]): a tar archive seeding the writable scratch root;
/// - `/dev/stdin` ([`STDIN_INPUT`]): the job's stdin.
///
/// The kind lives in the name, rather than in a new field, so that orders signed before
/// directory inputs existed still decode and hash the same: the names that mean the new
/// kinds all contain a `/`, which the shape check refused until then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRef {
    /// Where the job sees the blob (see above).
    pub name: String,
    /// The blob's blake3 content hash.
    pub hash: Hash,
    /// Its size in bytes.
    pub size: u64,
    /// Whether the blob is sealed (`agora-seal`): its hash and size are the ciphertext's,
    /// and each provider assigned to the order gets its data key from the buyer's key grant
    /// (docs/privacy.md). An order with a sealed input is private: its outputs, stdout and
    /// stderr come back sealed to the buyer.
    #[serde(default)]
    pub sealed: bool,
}

/// What an input is, from its name (see [`InputRef`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind<'a> {
    /// A file at `/input/NAME`.
    File(&'a str),
    /// A tar archive unpacked read-only at `/input/NAME`.
    Tree(&'a str),
    /// A tar archive seeding the job's writable scratch root `/`.
    Workdir,
    /// The job's stdin.
    Stdin,
}

impl<'a> InputKind<'a> {
    /// What the input occupies: its name under `/input`, or the reserved name.
    fn slot(&self) -> &'a str {
        match self {
            InputKind::File(name) | InputKind::Tree(name) => name,
            InputKind::Workdir => WORKDIR_INPUT,
            InputKind::Stdin => STDIN_INPUT,
        }
    }
}

impl InputRef {
    /// What this input is, or `None` when its name is none of the forms [`InputRef`] lists.
    pub fn kind(&self) -> Option<InputKind<'_>> {
        input_kind(&self.name)
    }
}

/// The kind an input name stands for (see [`InputRef`]), or `None` if it is malformed.
pub fn input_kind(name: &str) -> Option<InputKind<'_>> {
    let plain = |n: &str| {
        !n.is_empty() && !n.contains(['/', '\\', '\0']) && n != "." && n != ".." && n.len() <= 255
    };
    match name {
        WORKDIR_INPUT => Some(InputKind::Workdir),
        STDIN_INPUT => Some(InputKind::Stdin),
        _ => match name.strip_suffix('/') {
            Some(dir) if plain(dir) => Some(InputKind::Tree(dir)),
            Some(_) => None,
            None if plain(name) => Some(InputKind::File(name)),
            None => None,
        },
    }
}

/// The largest unpacked image an order may name ([`OciJob::max_unpacked_bytes`]).
pub const MAX_IMAGE_UNPACKED_BYTES: u64 = 64 << 30;

/// What kind of code a job runs, and how.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Workload {
    /// A WASI preview-1 command module under the deterministic WASM profile.
    #[default]
    Wasm,
    /// An OCI container image (an `oci-archive` or `docker save` tarball) run under an
    /// OCI runtime on the provider (docs/containers.md).
    Oci(OciJob),
}

impl Workload {
    /// The provider feature an ask must list to take this workload (`wasm` or `oci`).
    pub fn feature(&self) -> &'static str {
        match self {
            Workload::Wasm => "wasm",
            Workload::Oci(_) => "oci",
        }
    }

    /// The container settings, for an OCI job.
    pub fn oci(&self) -> Option<&OciJob> {
        match self {
            Workload::Wasm => None,
            Workload::Oci(oci) => Some(oci),
        }
    }
}

/// How to run an OCI image. The job's `args` replace the image's `Cmd` when non-empty
/// (as `docker run IMAGE ARGS…` does) and its `env` is laid over the image's `Env`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciJob {
    /// Replaces the image's `Entrypoint` when set.
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's `WorkingDir` when set (an absolute path).
    pub working_dir: Option<String>,
    /// Whether the job may use the network. A provider runs it with a network only if its
    /// own policy allows that too; otherwise the container has a loopback device alone.
    pub network: bool,
    /// The buyer's statement that the image gives byte-identical results for the same
    /// inputs, so replicas and spot checks can compare digests. A non-deterministic
    /// image can only be ordered with verification `none`.
    pub deterministic: bool,
    /// The largest unpacked image the buyer allows; a provider refuses a larger one.
    pub max_unpacked_bytes: u64,
}

/// The workload: everything a provider needs to run the job, by content hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The content hash of the code: the WASI command module, or the OCI image archive.
    pub module: Hash,
    /// Its size in bytes.
    pub module_size: u64,
    /// Input blobs.
    pub inputs: Vec<InputRef>,
    /// Command-line arguments after the program name.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// The job's memory limit in bytes (linear memory, or the container's cgroup limit).
    pub memory_bytes: u64,
    /// What kind of code `module` is.
    #[serde(default)]
    pub workload: Workload,
}

/// Places a task within a multi-task job, so the results can be gathered under one name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskRef {
    /// The job's name, chosen by the buyer (e.g. the spec file's `name`).
    pub job: String,
    /// This task's index within the job.
    pub index: u32,
    /// How many tasks the job has.
    pub of: u32,
}

/// A buyer's order, signed by the buyer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    /// What to run.
    pub job: JobSpec,
    /// What the job needs from a provider's machine.
    pub demand: Demand,
    /// Constraints on who may run it.
    pub requirements: Requirements,
    /// The most the buyer pays per compute unit.
    pub max_price: Price,
    /// The fuel the job may burn; the run is stopped beyond it.
    pub fuel_budget: Fuel,
    /// Unix ms by which the order must be settled; after it anyone may refund the escrow.
    pub deadline_ms: u64,
    /// The escrow the buyer locks: at least `max_price.max_cost(fuel_budget)`.
    pub escrow: Amount,
    /// Distinct providers to run it on (1 unless the buyer asks for replicas).
    pub replicas: u32,
    /// How the result is checked before the provider is paid (see `agora_verify`); its
    /// canonical text form (`adaptive`, `replicate:3:2`, …) is what the buyer signs.
    pub verify: VerifyPolicy,
    /// A short human label shown in listings.
    pub label: String,
    /// Where the order sits within a multi-task job, if it does.
    pub task: Option<TaskRef>,
    /// How the order is matched: at once (`instant`), by a sealed-bid auction, or by a
    /// rising Dutch clock (see `agora_market::terms`); the buyer signs these terms.
    pub auction: MatchTerms,
}

impl Domain for OrderRequest {
    const TAG: &'static str = "agora/order/v1";
}

/// An order signed by its buyer.
pub type SignedOrder = Signed<OrderRequest>;

/// A challenge to a result held under `challenge:WINDOW`: the challenger's own result,
/// signed. Its bond is an escrow the challenger opens under [`challenge_bond_id`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeResult {
    /// The order whose result is challenged.
    pub order_id: Hash,
    /// The result digest the challenger computed.
    pub result_digest: Hash,
    /// The fuel its run used.
    pub fuel_used: Fuel,
}

impl Domain for ChallengeResult {
    const TAG: &'static str = "agora/challenge/v1";
}

/// The escrow id under which `challenger` posts its bond against `order_id`'s result.
pub fn challenge_bond_id(order_id: &Hash, challenger: &AccountId) -> Hash {
    Hash::tagged(
        "agora/challenge-bond/v1",
        &[order_id.as_bytes(), &canonical::encode(challenger)],
    )
}

/// A buyer's request to cancel an order that has not been matched yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelOrder {
    /// The order to cancel.
    pub order_id: Hash,
}

impl Domain for CancelOrder {
    const TAG: &'static str = "agora/cancel-order/v1";
}

/// The id of the order `body` signed by `buyer` on `chain` with `nonce`; the buyer's
/// `OpenEscrow` transaction must name it.
pub fn order_id(buyer: &AccountId, chain: &ChainId, nonce: u64, body: &OrderRequest) -> Hash {
    Hash::tagged(
        "agora/order-id/v1",
        &[
            &canonical::encode(buyer),
            chain.0.as_bytes(),
            &nonce.to_le_bytes(),
            &canonical::encode(body),
        ],
    )
}

/// The id of a signed order.
pub fn signed_order_id(order: &SignedOrder) -> Hash {
    order_id(&order.signer, &order.chain_id, order.nonce, &order.body)
}

/// Why an order is malformed, before any state is consulted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrderShapeError {
    /// Too many inputs.
    #[error("{0} inputs; at most {MAX_INPUTS} are allowed")]
    TooManyInputs(usize),
    /// An input name that is none of the forms [`InputRef`] lists, or that repeats.
    #[error(
        "input name {0:?} is not a plain, unique file name (or NAME/ for a directory, / for the working tree, /dev/stdin)"
    )]
    BadInputName(String),
    /// Arguments or environment too large.
    #[error(
        "arguments and environment too large (at most {MAX_ARGS} entries, {MAX_ARG_BYTES} bytes)"
    )]
    ArgsTooLarge,
    /// Label too long.
    #[error("label longer than {MAX_LABEL_BYTES} bytes")]
    LabelTooLong,
    /// A zero budget, price, replica count or memory limit.
    #[error("{0} must be positive")]
    Zero(&'static str),
    /// The escrow cannot cover the worst-case bill.
    #[error(
        "escrow {escrow} cannot cover {max_price} per CU for the whole fuel budget on every run the buyer pays for ({needed}); lock at least {needed}"
    )]
    EscrowTooSmall {
        /// What the order locks.
        escrow: Amount,
        /// The cap per CU.
        max_price: Price,
        /// What the worst case needs.
        needed: Amount,
    },
    /// `replicas` says one number of runs and the verification policy another.
    #[error(
        "the order asks for {replicas} replicas but its verification policy is {policy}; replicas come from the policy: use `replicate:N:Q` with N = {replicas} (and leave replicas at 1 or N)"
    )]
    ReplicasDisagree {
        /// The order's replicas field.
        replicas: u32,
        /// The policy, in its text form.
        policy: String,
    },
    /// The worst-case bill does not fit an amount.
    #[error("price cap × fuel budget overflows")]
    Overflow,
    /// A non-deterministic image with a policy that compares results.
    #[error(
        "the image is declared non-deterministic, so its results cannot be checked by re-running it, but the verification policy is {policy}; use --verify none, or make the image deterministic (docs/containers.md) and declare it so"
    )]
    NondeterministicVerified {
        /// The policy, in its text form.
        policy: String,
    },
    /// A container setting out of range.
    #[error("{0}")]
    BadContainer(String),
    /// A private order under `challenge`, whose referee is the market itself.
    #[error(
        "a private order (sealed inputs) cannot be verified by challenge: the referee is the market, which cannot read sealed inputs; use replicate:N:Q, spot:P, adaptive or none"
    )]
    PrivateChallenge,
    /// Malformed auction terms.
    #[error("auction terms: {0}")]
    BadAuction(#[from] TermsError),
}

impl OrderRequest {
    /// The worst-case bill: the cap for the whole fuel budget, once per run the buyer
    /// pays for ([`OrderRequest::billed_runs`]).
    pub fn worst_case(&self) -> Result<Amount, OrderShapeError> {
        let one = self
            .max_price
            .max_cost(self.fuel_budget)
            .ok_or(OrderShapeError::Overflow)?;
        one.0
            .checked_mul(u64::from(self.billed_runs()))
            .map(Amount)
            .ok_or(OrderShapeError::Overflow)
    }

    /// How many runs the buyer pays for at most: `replicate:N:Q` pays every replica that
    /// agrees with the accepted result (at most N); every other policy pays one run, and
    /// the market pays for its own audits.
    pub fn billed_runs(&self) -> u32 {
        match self.verify {
            VerifyPolicy::Replicate { n, .. } => n.max(1),
            _ => 1,
        }
    }

    /// Whether the order is private: some input is sealed, so the outputs come back
    /// sealed to the buyer and only the order's parties may read its blobs.
    pub fn is_private(&self) -> bool {
        self.job.inputs.iter().any(|input| input.sealed)
    }

    /// Checks what can be checked without any state: sizes, names, positive amounts,
    /// and that the escrow covers the worst case.
    pub fn check_shape(&self) -> Result<(), OrderShapeError> {
        if self.job.inputs.len() > MAX_INPUTS {
            return Err(OrderShapeError::TooManyInputs(self.job.inputs.len()));
        }
        let mut names = std::collections::BTreeSet::new();
        for input in &self.job.inputs {
            let Some(kind) = input.kind() else {
                return Err(OrderShapeError::BadInputName(input.name.clone()));
            };
            if !names.insert(kind.slot()) {
                return Err(OrderShapeError::BadInputName(input.name.clone()));
            }
        }
        let entries = self.job.args.len() + self.job.env.len();
        let bytes: usize = self.job.args.iter().map(String::len).sum::<usize>()
            + self
                .job
                .env
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        if entries > MAX_ARGS || bytes > MAX_ARG_BYTES {
            return Err(OrderShapeError::ArgsTooLarge);
        }
        if self.label.len() > MAX_LABEL_BYTES {
            return Err(OrderShapeError::LabelTooLong);
        }
        for (what, zero) in [
            ("fuel budget", self.fuel_budget.0 == 0),
            ("price cap", self.max_price.0 == 0),
            ("replicas", self.replicas == 0),
            ("memory limit", self.job.memory_bytes == 0),
        ] {
            if zero {
                return Err(OrderShapeError::Zero(what));
            }
        }
        if let Some(oci) = self.job.workload.oci() {
            check_oci(oci, &self.verify)?;
        }
        if self.is_private() && self.verify.challenge_window_ms().is_some() {
            return Err(OrderShapeError::PrivateChallenge);
        }
        if self.replicas != 1 && self.replicas != self.billed_runs() {
            return Err(OrderShapeError::ReplicasDisagree {
                replicas: self.replicas,
                policy: self.verify.to_string(),
            });
        }
        self.auction.validate(self.max_price)?;
        let needed = self.worst_case()?;
        if self.escrow < needed {
            return Err(OrderShapeError::EscrowTooSmall {
                escrow: self.escrow,
                max_price: self.max_price,
                needed,
            });
        }
        Ok(())
    }
}

/// The shape of an OCI job's settings: sizes, paths, and a policy its determinism allows.
fn check_oci(oci: &OciJob, verify: &VerifyPolicy) -> Result<(), OrderShapeError> {
    let bad = |detail: String| Err(OrderShapeError::BadContainer(detail));
    if !oci.deterministic && *verify != VerifyPolicy::None {
        return Err(OrderShapeError::NondeterministicVerified {
            policy: verify.to_string(),
        });
    }
    if verify.challenge_window_ms().is_some() {
        return bad(
            "a container job cannot be verified by challenge: the market's referee re-runs WASM jobs only; use replicate:N:Q, spot:P or adaptive".into(),
        );
    }
    if oci.max_unpacked_bytes == 0 || oci.max_unpacked_bytes > MAX_IMAGE_UNPACKED_BYTES {
        return bad(format!(
            "the image size limit must be between 1 byte and {} GiB, not {} bytes",
            MAX_IMAGE_UNPACKED_BYTES >> 30,
            oci.max_unpacked_bytes
        ));
    }
    if let Some(dir) = &oci.working_dir
        && (!dir.starts_with('/') || dir.contains('\0') || dir.len() > 4096)
    {
        return bad(format!(
            "the working directory {dir:?} must be an absolute path inside the image"
        ));
    }
    if let Some(entrypoint) = &oci.entrypoint {
        let bytes: usize = entrypoint.iter().map(String::len).sum();
        if entrypoint.is_empty() || entrypoint.len() > MAX_ARGS || bytes > MAX_ARG_BYTES {
            return bad(format!(
                "the entry point override must name a program and fit {MAX_ARGS} entries and {MAX_ARG_BYTES} bytes"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::Keypair;

    pub(crate) fn sample() -> OrderRequest {
        OrderRequest {
            job: JobSpec {
                module: Hash::of(b"module"),
                module_size: 6,
                inputs: vec![InputRef {
                    name: "scene.txt".into(),
                    hash: Hash::of(b"scene"),
                    size: 5,
                    sealed: false,
                }],
                args: vec!["--tile".into(), "3".into()],
                env: Vec::new(),
                memory_bytes: 64 << 20,
                workload: Workload::Wasm,
            },
            demand: Demand {
                cpu_millis: 1000,
                memory_bytes: 64 << 20,
                disk_bytes: 0,
                gpu: None,
            },
            requirements: Requirements::default(),
            max_price: Price(1_000),
            fuel_budget: Fuel::compute_units(2),
            deadline_ms: 1_000_000,
            escrow: Amount(2_000),
            replicas: 1,
            verify: VerifyPolicy::None,
            label: "tile 3".into(),
            task: None,
            auction: MatchTerms::Instant,
        }
    }

    #[test]
    fn order_ids_depend_on_every_part() {
        let buyer = Keypair::from_seed("buyer").account();
        let chain = ChainId::new("test");
        let base = order_id(&buyer, &chain, 7, &sample());
        assert_ne!(base, order_id(&buyer, &chain, 8, &sample()));
        assert_ne!(base, order_id(&buyer, &ChainId::new("other"), 7, &sample()));
        let other = Keypair::from_seed("other").account();
        assert_ne!(base, order_id(&other, &chain, 7, &sample()));
        let mut changed = sample();
        changed.job.args.push("x".into());
        assert_ne!(base, order_id(&buyer, &chain, 7, &changed));
    }

    fn container(deterministic: bool) -> OrderRequest {
        let mut order = sample();
        order.job.workload = Workload::Oci(OciJob {
            entrypoint: None,
            working_dir: Some("/work".into()),
            network: false,
            deterministic,
            max_unpacked_bytes: 1 << 30,
        });
        order
    }

    #[test]
    fn container_orders_are_shape_checked() {
        assert_eq!(container(true).check_shape(), Ok(()));
        assert_eq!(container(false).check_shape(), Ok(()));
        let mut checked = container(false);
        checked.verify = VerifyPolicy::DEFAULT;
        assert!(matches!(
            checked.check_shape(),
            Err(OrderShapeError::NondeterministicVerified { .. })
        ));
        let mut relative = container(true);
        if let Workload::Oci(oci) = &mut relative.job.workload {
            oci.working_dir = Some("work".into());
        }
        assert!(matches!(
            relative.check_shape(),
            Err(OrderShapeError::BadContainer(_))
        ));
        let mut unbounded = container(true);
        if let Workload::Oci(oci) = &mut unbounded.job.workload {
            oci.max_unpacked_bytes = 0;
        }
        assert!(matches!(
            unbounded.check_shape(),
            Err(OrderShapeError::BadContainer(_))
        ));
        let mut empty = container(true);
        if let Workload::Oci(oci) = &mut empty.job.workload {
            oci.entrypoint = Some(Vec::new());
        }
        assert!(matches!(
            empty.check_shape(),
            Err(OrderShapeError::BadContainer(_))
        ));
    }

    #[test]
    fn the_workload_kind_is_part_of_the_order_id() {
        let buyer = Keypair::from_seed("buyer").account();
        let chain = ChainId::new("test");
        assert_ne!(
            order_id(&buyer, &chain, 7, &sample()),
            order_id(&buyer, &chain, 7, &container(true))
        );
    }

    #[test]
    fn shape_checks_name_the_problem() {
        assert_eq!(sample().check_shape(), Ok(()));
        let mut small = sample();
        small.escrow = Amount(1_999);
        assert!(matches!(
            small.check_shape(),
            Err(OrderShapeError::EscrowTooSmall {
                needed: Amount(2_000),
                ..
            })
        ));
        let mut sneaky = sample();
        sneaky.job.inputs[0].name = "../etc/passwd".into();
        assert!(matches!(
            sneaky.check_shape(),
            Err(OrderShapeError::BadInputName(_))
        ));
        let mut twice = sample();
        twice.job.inputs.push(twice.job.inputs[0].clone());
        assert!(matches!(
            twice.check_shape(),
            Err(OrderShapeError::BadInputName(_))
        ));
        let mut zero = sample();
        zero.replicas = 0;
        assert_eq!(zero.check_shape(), Err(OrderShapeError::Zero("replicas")));
    }

    #[test]
    fn input_kinds_come_from_names_and_occupy_one_slot_each() {
        let kinds: Vec<_> = ["a.txt", "share/", "/", "/dev/stdin"]
            .iter()
            .map(|n| input_kind(n))
            .collect();
        assert_eq!(
            kinds,
            [
                Some(InputKind::File("a.txt")),
                Some(InputKind::Tree("share")),
                Some(InputKind::Workdir),
                Some(InputKind::Stdin)
            ]
        );
        for bad in ["a/b", "a/b/", "../", "//", "/etc", "", "./"] {
            assert_eq!(input_kind(bad), None, "{bad:?}");
        }
        let mut trees = sample();
        let mut tree = trees.job.inputs[0].clone();
        tree.name = "share/".into();
        trees.job.inputs.push(tree.clone());
        for name in [WORKDIR_INPUT, STDIN_INPUT] {
            let mut input = tree.clone();
            input.name = name.into();
            trees.job.inputs.push(input);
        }
        assert_eq!(trees.check_shape(), Ok(()));
        // `share` and `share/` would both be /input/share.
        let mut clash = trees.clone();
        clash.job.inputs[0].name = "share".into();
        assert!(matches!(
            clash.check_shape(),
            Err(OrderShapeError::BadInputName(_))
        ));
    }
}
