//! Job spec files (`agora job run job.toml`): one job, possibly split into many tasks.
//!
//! The format (documented with examples in `docs/job-spec.md`) has the same fields as
//! the `agora job run` flags at the top level, plus an optional `[[tasks]]` array. Each
//! task inherits the top-level fields and may override them: `args` replaces the job's
//! arguments, `inputs` and `env` are merged over the job's by name, any other field
//! replaces the job's. Every task becomes its own order, tagged with
//! `TaskRef { job: name, index, of }`. Relative paths resolve against the spec file's
//! directory. Parsing is pure ([`JobFile::parse`]); errors name the field and the line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agora_core::{Fuel, Price};
use agora_market::GpuDemand;
use agora_proto::{OciJob, STDIN_INPUT, TaskRef, WORKDIR_INPUT, Workload};
use serde::Deserialize;
use serde::de::{self, Deserializer};
use toml::Spanned;

use crate::buyer::JobRequest;

/// Most tasks one spec file may define.
pub const MAX_TASKS: usize = 100_000;
/// Default number of tasks in flight at once.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// The unpacked image size an OCI job allows unless it sets `max_image_size`: 4 GiB.
pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 4 << 30;

/// Why a spec file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read job spec {path}: {source}")]
    Read {
        /// The spec file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown field or a bad value; toml's message names the line,
    /// the column and the field.
    #[error("job spec {path}: {message}")]
    Syntax {
        /// The spec file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A field's value is invalid.
    #[error("job spec {path}, line {line}: `{field}`: {problem}")]
    Invalid {
        /// The spec file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// The field, e.g. `tasks[3].inputs.scene`.
        field: String,
        /// What is wrong and what to do.
        problem: String,
    },
}

/// A parsed spec file: the job's name, how many tasks to run at once, and one
/// [`JobRequest`] per task (just one, untagged, without `[[tasks]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobFile {
    /// The job's name (the `name` field, else the file's stem).
    pub name: String,
    /// Tasks in flight at once.
    pub concurrency: usize,
    /// The orders to submit, in task order.
    pub tasks: Vec<JobRequest>,
}

/// A price: an integer of base units per CU, or text like `0.05 AGR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PriceField(pub Price);

/// A byte size: an integer of bytes, or text like `256 MiB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeField(pub u64);

/// A duration in ms: an integer of seconds, or text like `90s`, `500ms`, `2m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationField(pub u64);

/// Parses a price per CU written as text, the way every `agora` command reads prices: an
/// amount of AGR (`0.02`, `0.02 AGR`, optional `/CU`) or base units with a `u` suffix
/// (`20000000u`). (A TOML integer, not text, is base units: see [`PriceField`].)
pub fn parse_price(text: &str) -> Result<Price, String> {
    let text = text.trim();
    text.parse::<Price>().map_err(|_| {
        format!(
            "{text:?} is not a price; write AGR per CU like \"0.02\" or \"0.02 AGR\", \
             or base units with a u suffix like \"20000000u\""
        )
    })
}

/// Parses a byte size: `1048576`, `512KiB`, `64 MiB`, `1 GiB`, `10MB` (decimal units).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("{text:?} is not a size; write bytes, or e.g. \"256 MiB\", \"1 GiB\"");
    let number: u64 = number.parse().map_err(|_| bad())?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(bad()),
    };
    number.checked_mul(factor).ok_or_else(bad)
}

/// Parses a duration a person typed into ms: the signed forms of
/// [`agora_core::duration`] (`500ms`, `90s`, `2m`, `1h`, `1d`), plus two conveniences
/// for the command line and job files: a bare number is seconds (`90`), and `min` is
/// minutes.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let bad = || format!("{text:?} is not a duration; write e.g. \"90s\", \"500ms\", \"2m\"");
    let parsed = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<u64>().ok().and_then(|s| s.checked_mul(1_000))
    } else if let Some(minutes) = text.strip_suffix("min") {
        agora_core::duration::parse_ms(&format!("{minutes}m"))
    } else {
        agora_core::duration::parse_ms(text)
    };
    parsed.ok_or_else(bad)
}

/// Integer or text, as TOML allows either for these fields.
#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrText {
    Int(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for PriceField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match IntOrText::deserialize(d)? {
            IntOrText::Int(units) => Ok(PriceField(Price(units))),
            IntOrText::Text(text) => parse_price(&text)
                .map(PriceField)
                .map_err(de::Error::custom),
        }
    }
}

impl<'de> Deserialize<'de> for SizeField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match IntOrText::deserialize(d)? {
            IntOrText::Int(bytes) => Ok(SizeField(bytes)),
            IntOrText::Text(text) => parse_size(&text).map(SizeField).map_err(de::Error::custom),
        }
    }
}

impl<'de> Deserialize<'de> for DurationField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match IntOrText::deserialize(d)? {
            IntOrText::Int(seconds) => seconds
                .checked_mul(1_000)
                .map(DurationField)
                .ok_or_else(|| de::Error::custom("duration too long")),
            IntOrText::Text(text) => parse_duration_ms(&text)
                .map(DurationField)
                .map_err(de::Error::custom),
        }
    }
}

/// The fields a job and each of its tasks may set (`name`, `concurrency` and `tasks`
/// only at the top level). One struct for both levels, rather than a flattened one,
/// because flattening would lose the source spans that errors point at.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    name: Option<Spanned<String>>,
    concurrency: Option<Spanned<usize>>,
    #[serde(default)]
    tasks: Vec<Spanned<Fields>>,
    module: Option<Spanned<String>>,
    image: Option<Spanned<String>>,
    entrypoint: Option<Vec<String>>,
    image_workdir: Option<String>,
    network: Option<bool>,
    deterministic: Option<bool>,
    max_image_size: Option<SizeField>,
    cpus: Option<f64>,
    gpus: Option<u32>,
    gpu_model: Option<String>,
    gpu_memory: Option<SizeField>,
    #[serde(default)]
    inputs: BTreeMap<String, Spanned<String>>,
    workdir: Option<Spanned<String>>,
    stdin: Option<Spanned<String>>,
    args: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    max_price: Option<PriceField>,
    max_cu: Option<u64>,
    fuel: Option<u64>,
    replicas: Option<u32>,
    verify: Option<agora_proto::VerifyPolicy>,
    region: Option<String>,
    memory: Option<SizeField>,
    disk: Option<SizeField>,
    deadline: Option<DurationField>,
    label: Option<String>,
}

impl JobFile {
    /// Reads and parses the spec file at `path`.
    pub fn load(path: &Path) -> Result<JobFile, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        JobFile::parse(&text, path)
    }

    /// Parses spec text; `path` names the file in errors, and its directory resolves
    /// relative paths. Does not touch the file system.
    pub fn parse(text: &str, path: &Path) -> Result<JobFile, SpecError> {
        let raw: Fields = toml::from_str(text).map_err(|e| SpecError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let context = Context { text, path, base };
        let name = raw
            .name
            .as_ref()
            .map(|n| n.get_ref().clone())
            .unwrap_or_else(|| {
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "job".into())
            });
        let concurrency = match &raw.concurrency {
            Some(c) if *c.get_ref() == 0 => {
                return Err(context.invalid(
                    c.span().start,
                    "concurrency",
                    "must be at least 1".into(),
                ));
            }
            Some(c) => *c.get_ref(),
            None => DEFAULT_CONCURRENCY,
        };
        if raw.tasks.len() > MAX_TASKS {
            return Err(context.invalid(
                0,
                "tasks",
                format!("{} tasks; at most {MAX_TASKS}", raw.tasks.len()),
            ));
        }
        let tasks = if raw.tasks.is_empty() {
            vec![context.request(&raw, "", None, &name)?]
        } else {
            let of = raw.tasks.len() as u32;
            raw.tasks
                .iter()
                .enumerate()
                .map(|(index, task)| {
                    context.top_level_only(task, index)?;
                    let merged = merge(&raw, task.get_ref());
                    let task_ref = TaskRef {
                        job: name.clone(),
                        index: index as u32,
                        of,
                    };
                    let field = format!("tasks[{index}].");
                    context.request(&merged, &field, Some(task_ref), &name)
                })
                .collect::<Result<_, _>>()?
        };
        Ok(JobFile {
            name,
            concurrency,
            tasks,
        })
    }
}

/// A task's fields over the job's: `args` and scalars replace, `inputs`/`env` merge.
fn merge(job: &Fields, task: &Fields) -> Fields {
    let mut inputs = job.inputs.clone();
    inputs.extend(task.inputs.clone());
    let mut env = job.env.clone();
    env.extend(task.env.clone());
    Fields {
        name: None,
        concurrency: None,
        tasks: Vec::new(),
        module: task.module.clone().or_else(|| job.module.clone()),
        image: task.image.clone().or_else(|| job.image.clone()),
        entrypoint: task.entrypoint.clone().or_else(|| job.entrypoint.clone()),
        image_workdir: task
            .image_workdir
            .clone()
            .or_else(|| job.image_workdir.clone()),
        network: task.network.or(job.network),
        deterministic: task.deterministic.or(job.deterministic),
        max_image_size: task.max_image_size.or(job.max_image_size),
        cpus: task.cpus.or(job.cpus),
        gpus: task.gpus.or(job.gpus),
        gpu_model: task.gpu_model.clone().or_else(|| job.gpu_model.clone()),
        gpu_memory: task.gpu_memory.or(job.gpu_memory),
        inputs,
        workdir: task.workdir.clone().or_else(|| job.workdir.clone()),
        stdin: task.stdin.clone().or_else(|| job.stdin.clone()),
        args: task.args.clone().or_else(|| job.args.clone()),
        env,
        max_price: task.max_price.or(job.max_price),
        max_cu: task.max_cu.or(job.max_cu),
        fuel: task.fuel.or(job.fuel),
        replicas: task.replicas.or(job.replicas),
        verify: task.verify.or(job.verify),
        region: task.region.clone().or_else(|| job.region.clone()),
        memory: task.memory.or(job.memory),
        disk: task.disk.or(job.disk),
        deadline: task.deadline.or(job.deadline),
        label: task.label.clone(),
    }
    .with_job_label(job.label.as_deref())
}

impl Fields {
    fn with_job_label(mut self, job_label: Option<&str>) -> Fields {
        if self.label.is_none() {
            self.label = job_label.map(str::to_owned);
        }
        self
    }
}

struct Context<'a> {
    text: &'a str,
    path: &'a Path,
    base: PathBuf,
}

impl Context<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }

    fn invalid(&self, offset: usize, field: &str, problem: String) -> SpecError {
        SpecError::Invalid {
            path: self.path.to_path_buf(),
            line: self.line_of(offset),
            field: field.to_string(),
            problem,
        }
    }

    /// Refuses `name`, `concurrency` or nested `tasks` inside a task.
    fn top_level_only(&self, task: &Spanned<Fields>, index: usize) -> Result<(), SpecError> {
        let fields = task.get_ref();
        let misplaced = [
            ("name", fields.name.is_some()),
            ("concurrency", fields.concurrency.is_some()),
            ("tasks", !fields.tasks.is_empty()),
        ];
        match misplaced.into_iter().find(|(_, set)| *set) {
            Some((field, _)) => Err(self.invalid(
                task.span().start,
                &format!("tasks[{index}].{field}"),
                "only allowed at the top of the file, not inside a task".into(),
            )),
            None => Ok(()),
        }
    }

    /// Resolves a path that may name a tree: `tar:ARCHIVE` keeps its prefix.
    fn resolve_tree(&self, path: &str) -> PathBuf {
        match path.strip_prefix("tar:") {
            Some(archive) => {
                let mut text = std::ffi::OsString::from("tar:");
                text.push(self.resolve(archive));
                PathBuf::from(text)
            }
            None => self.resolve(path),
        }
    }

    fn resolve(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        }
    }

    /// The container and GPU settings: only with `image`, except `gpus` and `cpus`, which
    /// any job may set.
    fn container(
        &self,
        fields: &Fields,
        prefix: &str,
        at: usize,
        request: &mut JobRequest,
    ) -> Result<(), SpecError> {
        if let Some(cpus) = fields.cpus {
            if !(cpus > 0.0 && cpus <= 1024.0) {
                return Err(self.invalid(
                    at,
                    &format!("{prefix}cpus"),
                    "must be between 0 and 1024 cores".into(),
                ));
            }
            request.cpu_millis = ((cpus * 1000.0).round() as u64).max(1);
        }
        if let Some(count) = fields.gpus.filter(|&n| n > 0) {
            request.gpu = Some(GpuDemand {
                model: fields.gpu_model.clone(),
                min_vram_bytes: fields.gpu_memory.map_or(0, |m| m.0),
                count,
            });
        }
        let image_only = [
            ("entrypoint", fields.entrypoint.is_some()),
            ("image_workdir", fields.image_workdir.is_some()),
            ("network", fields.network.is_some()),
            ("deterministic", fields.deterministic.is_some()),
            ("max_image_size", fields.max_image_size.is_some()),
        ];
        if fields.image.is_none() {
            if let Some((field, _)) = image_only.iter().find(|(_, set)| *set) {
                return Err(self.invalid(
                    at,
                    &format!("{prefix}{field}"),
                    "applies to container jobs only: name the image with `image = \"…\"`".into(),
                ));
            }
            return Ok(());
        }
        let deterministic = fields.deterministic.unwrap_or(true);
        request.workload = Workload::Oci(OciJob {
            entrypoint: fields.entrypoint.clone(),
            working_dir: fields.image_workdir.clone(),
            network: fields.network.unwrap_or(false),
            deterministic,
            max_unpacked_bytes: fields
                .max_image_size
                .map_or(DEFAULT_MAX_IMAGE_BYTES, |s| s.0),
        });
        if !deterministic && fields.verify.is_none() {
            request.verify = agora_proto::VerifyPolicy::None;
        }
        Ok(())
    }

    fn request(
        &self,
        fields: &Fields,
        prefix: &str,
        task: Option<TaskRef>,
        job_name: &str,
    ) -> Result<JobRequest, SpecError> {
        let module = match (&fields.module, &fields.image) {
            (Some(module), None) | (None, Some(module)) => module,
            (None, None) => {
                return Err(self.invalid(
                    0,
                    &format!("{prefix}module"),
                    "missing: name the WASI module (`module = \"job.wasm\"`) or the OCI image archive (`image = \"job.oci.tar\"`) to run".into(),
                ));
            }
            (Some(_), Some(image)) => {
                return Err(self.invalid(
                    image.span().start,
                    &format!("{prefix}image"),
                    "set either `module` (a WASI module) or `image` (an OCI image archive), not both".into(),
                ));
            }
        };
        let mut request = JobRequest::new(self.resolve(module.get_ref()));
        self.container(fields, prefix, module.span().start, &mut request)?;
        for (name, file) in &fields.inputs {
            let plain =
                !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != "..";
            if !plain {
                return Err(self.invalid(
                    file.span().start,
                    &format!("{prefix}inputs.{name}"),
                    "an input name must be a plain file name (no slashes)".into(),
                ));
            }
            request
                .inputs
                .push((name.clone(), self.resolve_tree(file.get_ref())));
        }
        if let Some(workdir) = &fields.workdir {
            let path = self.resolve_tree(workdir.get_ref());
            request.inputs.push((WORKDIR_INPUT.into(), path));
        }
        if let Some(stdin) = &fields.stdin {
            let path = self.resolve(stdin.get_ref());
            request.inputs.push((STDIN_INPUT.into(), path));
        }
        request.args = fields.args.clone().unwrap_or_default();
        request.env = fields.env.clone().into_iter().collect();
        if let Some(price) = fields.max_price {
            request.max_price = price.0;
        }
        request.fuel_budget = match (fields.max_cu, fields.fuel) {
            (Some(_), Some(_)) => {
                return Err(self.invalid(
                    module.span().start,
                    &format!("{prefix}max_cu"),
                    "set either `max_cu` (compute units) or `fuel`, not both".into(),
                ));
            }
            (Some(cu), None) => Fuel(cu.saturating_mul(Fuel::compute_units(1).0)),
            (None, Some(fuel)) => Fuel(fuel),
            (None, None) => request.fuel_budget,
        };
        if let Some(replicas) = fields.replicas {
            request.replicas = replicas;
        }
        if let Some(verify) = fields.verify {
            request.verify = verify;
        }
        request.region = fields.region.clone();
        if let Some(disk) = fields.disk {
            request.disk_bytes = disk.0;
        }
        if let Some(memory) = fields.memory {
            request.memory_bytes = memory.0;
        }
        if let Some(deadline) = fields.deadline {
            request.deadline_in_ms = deadline.0;
        }
        request.label = match (&fields.label, &task) {
            (Some(label), _) => label.clone(),
            (None, Some(task)) => format!("{job_name} #{}", task.index),
            (None, None) => job_name.to_string(),
        };
        request.task = task;
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buyer::{DEFAULT_FUEL_BUDGET, DEFAULT_MAX_PRICE, DEFAULT_MEMORY_BYTES};

    const TILES: &str = r#"
name = "frame"
module = "pathtrace.wasm"
max_price = "0.05 AGR"
max_cu = 2
memory = "64 MiB"
deadline = "90s"
region = "eu"
concurrency = 4
env = { MODE = "fast" }
inputs = { scene = "data/scene.txt" }

[[tasks]]
args = ["64", "48", "0", "24", "8"]

[[tasks]]
args = ["64", "48", "24", "48", "8"]
inputs = { extra = "/abs/extra.bin" }
max_price = 30000000
label = "bottom"
"#;

    #[test]
    fn trees_workdir_and_stdin_become_named_inputs() {
        let text = "module = \"m.wasm\"\nworkdir = \"tar:root.tar\"\nstdin = \"in.txt\"\ndisk = \"1 GiB\"\n\
                    [inputs]\nshare = \"data/share\"\n";
        let file = JobFile::parse(text, Path::new("/jobs/j.toml")).unwrap();
        assert_eq!(
            file.tasks[0].inputs,
            [
                ("share".to_string(), PathBuf::from("/jobs/data/share")),
                (
                    WORKDIR_INPUT.to_string(),
                    PathBuf::from("tar:/jobs/root.tar")
                ),
                (STDIN_INPUT.to_string(), PathBuf::from("/jobs/in.txt")),
            ]
        );
        assert_eq!(file.tasks[0].disk_bytes, 1 << 30);
    }

    #[test]
    fn tasks_inherit_and_override_the_job() {
        let file = JobFile::parse(TILES, Path::new("/jobs/frame.toml")).unwrap();
        assert_eq!(file.name, "frame");
        assert_eq!(file.concurrency, 4);
        assert_eq!(file.tasks.len(), 2);
        let first = &file.tasks[0];
        assert_eq!(first.module, PathBuf::from("/jobs/pathtrace.wasm"));
        assert_eq!(first.args, ["64", "48", "0", "24", "8"]);
        assert_eq!(first.max_price, Price(50_000_000));
        assert_eq!(first.fuel_budget, Fuel::compute_units(2));
        assert_eq!(first.memory_bytes, 64 << 20);
        assert_eq!(first.deadline_in_ms, 90_000);
        assert_eq!(first.region.as_deref(), Some("eu"));
        assert_eq!(first.env, [("MODE".to_string(), "fast".to_string())]);
        assert_eq!(
            first.inputs,
            [("scene".to_string(), PathBuf::from("/jobs/data/scene.txt"))]
        );
        assert_eq!(first.label, "frame #0");
        assert_eq!(
            first.task,
            Some(TaskRef {
                job: "frame".into(),
                index: 0,
                of: 2
            })
        );
        let second = &file.tasks[1];
        assert_eq!(second.max_price, Price(30_000_000));
        assert_eq!(second.label, "bottom");
        assert_eq!(second.inputs.len(), 2);
        assert!(
            second
                .inputs
                .contains(&("extra".into(), PathBuf::from("/abs/extra.bin")))
        );
    }

    #[test]
    fn a_file_without_tasks_is_one_untagged_order_with_defaults() {
        let file = JobFile::parse("module = \"m.wasm\"\n", Path::new("dir/hello.toml")).unwrap();
        assert_eq!(file.name, "hello");
        assert_eq!(file.concurrency, DEFAULT_CONCURRENCY);
        let [only] = file.tasks.as_slice() else {
            panic!("one task expected: {:?}", file.tasks)
        };
        assert_eq!(only.module, PathBuf::from("dir/m.wasm"));
        assert_eq!(only.task, None);
        assert_eq!(only.max_price, DEFAULT_MAX_PRICE);
        assert_eq!(only.fuel_budget, DEFAULT_FUEL_BUDGET);
        assert_eq!(only.memory_bytes, DEFAULT_MEMORY_BYTES);
        assert_eq!(only.replicas, 1);
    }

    fn error_of(text: &str) -> String {
        JobFile::parse(text, Path::new("j.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_the_field_and_the_line() {
        let bad_price = error_of("module = \"m.wasm\"\n\nmax_price = \"cheap\"\n");
        assert!(
            bad_price.contains("line 3") && bad_price.contains("cheap"),
            "{bad_price}"
        );
        let unknown = error_of("module = \"m.wasm\"\nmax_prize = 5\n");
        assert!(
            unknown.contains("max_prize") && unknown.contains("line 2"),
            "{unknown}"
        );
        let missing = error_of("[[tasks]]\nargs = []\n");
        assert!(missing.contains("tasks[0].module"), "{missing}");
        let slash = error_of("module = \"m.wasm\"\n[inputs]\n\"a/b\" = \"x\"\n");
        assert!(
            slash.contains("inputs.a/b") && slash.contains("line 3"),
            "{slash}"
        );
        let nested = error_of("module = \"m.wasm\"\n[[tasks]]\nname = \"x\"\n");
        assert!(nested.contains("tasks[0].name"), "{nested}");
        let both = error_of("module = \"m.wasm\"\nmax_cu = 1\nfuel = 5\n");
        assert!(both.contains("not both"), "{both}");
        let size = error_of("module = \"m.wasm\"\nmemory = \"lots\"\n");
        assert!(size.contains("line 2") && size.contains("lots"), "{size}");
    }

    #[test]
    fn value_parsers() {
        assert_eq!(parse_price("20000000u"), Ok(Price(20_000_000)));
        assert_eq!(parse_price("0.02"), Ok(Price(20_000_000)));
        assert_eq!(
            parse_price("12"),
            Ok(Price(12_000_000_000)),
            "a bare number is AGR"
        );
        assert_eq!(parse_price("0.02 AGR"), Ok(Price(20_000_000)));
        assert_eq!(parse_price("0.02 AGR/CU"), Ok(Price(20_000_000)));
        assert!(parse_price("free").is_err());
        assert_eq!(parse_size("64 MiB"), Ok(64 << 20));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1 TB").is_err());
        assert!(parse_size("99999999999999 GiB").is_err());
        assert_eq!(parse_duration_ms("90"), Ok(90_000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("2m"), Ok(120_000));
        assert_eq!(parse_duration_ms("3min"), Ok(180_000));
        assert_eq!(parse_duration_ms("1d"), Ok(86_400_000));
        assert!(parse_duration_ms("soon").is_err());
        assert!(parse_duration_ms("").is_err());
        assert!(parse_duration_ms("min").is_err());
        assert!(parse_duration_ms("18446744073709551615").is_err());
    }

    #[test]
    fn an_image_spec_makes_a_container_request() {
        let text = "image = \"img.oci.tar\"\nentrypoint = [\"/bin/sh\", \"-c\"]\nargs = [\"echo hi\"]\n\
                    image_workdir = \"/work\"\nmax_image_size = \"64 MiB\"\ncpus = 0.5\ngpus = 2\n\
                    gpu_model = \"NVIDIA-H200\"\ngpu_memory = \"40 GiB\"\n";
        let file = JobFile::parse(text, Path::new("/jobs/c.toml")).unwrap();
        let request = &file.tasks[0];
        assert_eq!(request.module, PathBuf::from("/jobs/img.oci.tar"));
        assert_eq!(
            request.workload,
            Workload::Oci(OciJob {
                entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
                working_dir: Some("/work".into()),
                network: false,
                deterministic: true,
                max_unpacked_bytes: 64 << 20,
            })
        );
        assert_eq!(request.cpu_millis, 500);
        assert_eq!(
            request.gpu,
            Some(GpuDemand {
                model: Some("NVIDIA-H200".into()),
                min_vram_bytes: 40 << 30,
                count: 2,
            })
        );
        let nondeterministic = JobFile::parse(
            "image = \"i.tar\"\ndeterministic = false\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(
            nondeterministic.tasks[0].verify,
            agora_proto::VerifyPolicy::None
        );
    }

    #[test]
    fn container_fields_need_an_image_and_exclude_a_module() {
        let error = |text: &str| {
            JobFile::parse(text, Path::new("c.toml"))
                .unwrap_err()
                .to_string()
        };
        assert!(error("module = \"m.wasm\"\nnetwork = true\n").contains("container jobs only"));
        assert!(error("module = \"m.wasm\"\nimage = \"i.tar\"\n").contains("not both"));
        assert!(error("image = \"i.tar\"\ncpus = 0\n").contains("cores"));
    }
}
