//! The module cache: compiled modules on disk, keyed by content hash and engine fingerprint,
//! and ready-to-instantiate modules in memory, so a repeat job skips compilation.
//!
//! Disk entries are `<cache_dir>/<module hash>-<fingerprint>.cwasm`, where the fingerprint
//! covers the wasmtime version, the engine's compatibility hash and the [`Profile`]; a
//! change to any of them simply misses the cache. Entries are written to a temporary file
//! and renamed into place, so a crash never leaves a half-written entry under its final name.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use agora_core::Hash;
use wasmtime::{Engine, ExternType, InstancePre, Linker, Module};

use crate::error::ExecError;
use crate::job::WasmModule;
use crate::outcome::ModuleSource;
use crate::precheck::{self, WasiFunctions};
use crate::profile::Profile;
use crate::sandbox::JobState;
use crate::sandbox::hostcalls::WASI;

/// A validated module, linked against the sandbox and ready to instantiate.
pub struct Prepared {
    /// The module's content hash.
    pub module_hash: Hash,
    /// The pre-linked instance template; instantiating it is the whole per-job start cost.
    pub pre: InstancePre<JobState>,
}

/// How a module was obtained, and what it cost.
pub struct Lookup {
    /// The prepared module.
    pub prepared: Arc<Prepared>,
    /// Where it came from.
    pub source: ModuleSource,
    /// Time spent compiling or loading (zero on a memory hit).
    pub load_time: Duration,
}

/// Memory and disk caches of compiled modules for one engine.
pub struct ModuleCache {
    dir: Option<PathBuf>,
    profile: Profile,
    fingerprint: String,
    wasi_names: HashSet<String>,
    wasi: WasiFunctions,
    memory: Mutex<MemoryCache>,
}

struct MemoryCache {
    entries: HashMap<Hash, Arc<Prepared>>,
    order: VecDeque<Hash>,
    capacity: usize,
}

impl ModuleCache {
    /// A cache for `engine` with `profile`, storing compiled code under `dir` if given and
    /// keeping at most `capacity` modules in memory.
    pub fn new(
        engine: &Engine,
        profile: &Profile,
        linker: &Linker<JobState>,
        dir: Option<PathBuf>,
        capacity: usize,
    ) -> Result<Self, ExecError> {
        if let Some(dir) = &dir {
            fs::create_dir_all(dir).map_err(|e| {
                ExecError::host(format!("creating module cache dir {}", dir.display()), e)
            })?;
        }
        Ok(ModuleCache {
            dir,
            profile: *profile,
            fingerprint: profile.fingerprint(engine),
            wasi_names: wasi_names(engine, linker),
            wasi: WasiFunctions::of(engine, linker),
            memory: Mutex::new(MemoryCache {
                entries: HashMap::new(),
                order: VecDeque::new(),
                capacity: capacity.max(1),
            }),
        })
    }

    fn memory(&self) -> MutexGuard<'_, MemoryCache> {
        // Each update leaves the maps consistent, so a poisoned lock is still usable.
        self.memory
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The prepared module for `module`, from memory, disk, or a fresh compile.
    pub fn get(
        &self,
        engine: &Engine,
        linker: &Linker<JobState>,
        module: &WasmModule,
    ) -> Result<Lookup, ExecError> {
        if let Some(prepared) = self.memory().entries.get(&module.hash()).cloned() {
            return Ok(Lookup {
                prepared,
                source: ModuleSource::MemoryCache,
                load_time: Duration::ZERO,
            });
        }
        let started = Instant::now();
        let (compiled, source) = match self.load_from_disk(engine, module.hash()) {
            Some(compiled) => (compiled, ModuleSource::DiskCache),
            None => (self.compile(engine, module)?, ModuleSource::Compiled),
        };
        let prepared = Arc::new(self.prepare(linker, module.hash(), &compiled)?);
        let load_time = started.elapsed();
        self.remember(Arc::clone(&prepared));
        Ok(Lookup {
            prepared,
            source,
            load_time,
        })
    }

    /// Compiles without touching any cache (for measuring compile time). Under
    /// [`crate::NanMode::Guard`] the NaN-guarded rewrite is what gets compiled.
    pub fn compile_uncached(
        engine: &Engine,
        profile: &Profile,
        module: &WasmModule,
    ) -> Result<Module, ExecError> {
        let code = profile.code_to_compile(module.bytes())?;
        Module::new(engine, &code).map_err(|err| ExecError::MalformedModule {
            reason: format!("{err:#}"),
        })
    }

    fn entry_path(&self, hash: Hash) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{hash}-{}.cwasm", self.fingerprint)))
    }

    fn load_from_disk(&self, engine: &Engine, hash: Hash) -> Option<Module> {
        let path = self.entry_path(hash)?;
        if !path.is_file() {
            return None;
        }
        // SAFETY: `deserialize_file` trusts the file to be wasmtime's own output, since it
        // maps it as executable code. The file lives in the operator's cache directory
        // (this executor's, or one the operator's providers on this host share), was
        // written by `store_on_disk` below from a module an executor compiled, and
        // is named by the module's content hash plus the engine fingerprint; wasmtime
        // additionally checks its version and engine settings in the header. Nothing
        // outside the operator's control writes there.
        match unsafe { Module::deserialize_file(engine, &path) } {
            Ok(module) => Some(module),
            Err(_) => {
                // An entry from an incompatible build or a torn copy: drop it and compile
                // again; the fresh compile rewrites it.
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    fn compile(&self, engine: &Engine, module: &WasmModule) -> Result<Module, ExecError> {
        // Refuse what would fail anyway (forbidden features, foreign imports, no `_start`)
        // before paying for the compile; cache hits never get here.
        precheck::check_with(module.bytes(), &self.wasi)?;
        let compiled = Self::compile_uncached(engine, &self.profile, module)?;
        if let Some(path) = self.entry_path(module.hash()) {
            store_on_disk(&path, &compiled)?;
        }
        Ok(compiled)
    }

    fn prepare(
        &self,
        linker: &Linker<JobState>,
        hash: Hash,
        module: &Module,
    ) -> Result<Prepared, ExecError> {
        check_imports(module, &self.wasi_names)?;
        check_start(module)?;
        let pre = linker
            .instantiate_pre(module)
            .map_err(|err| ExecError::MalformedModule {
                reason: format!("its imports do not match the WASI preview-1 signatures: {err:#}"),
            })?;
        Ok(Prepared {
            module_hash: hash,
            pre,
        })
    }

    fn remember(&self, prepared: Arc<Prepared>) {
        let mut memory = self.memory();
        let hash = prepared.module_hash;
        if memory.entries.insert(hash, prepared).is_none() {
            memory.order.push_back(hash);
        }
        while memory.order.len() > memory.capacity {
            if let Some(oldest) = memory.order.pop_front() {
                memory.entries.remove(&oldest);
            }
        }
    }
}

/// Writes a compiled module atomically: a temporary file in the same directory, then rename.
fn store_on_disk(path: &Path, module: &Module) -> Result<(), ExecError> {
    let bytes = module.serialize().map_err(|err| ExecError::Engine {
        context: "serializing a compiled module for the cache",
        message: format!("{err:#}"),
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let io = |e| ExecError::host(format!("writing module cache entry {}", path.display()), e);
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    std::io::Write::write_all(&mut tmp, &bytes).map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// The names of the WASI preview-1 functions the linker defines.
fn wasi_names(engine: &Engine, linker: &Linker<JobState>) -> HashSet<String> {
    // Listing a linker needs a store; this throwaway one is never run.
    let mut store = wasmtime::Store::new(engine, JobState::inert());
    linker
        .iter(&mut store)
        .filter(|(module, _, _)| *module == WASI)
        .map(|(_, name, _)| name.to_owned())
        .collect()
}

/// Only WASI preview-1 functions may be imported; anything else is named in the error.
fn check_imports(module: &Module, wasi: &HashSet<String>) -> Result<(), ExecError> {
    for import in module.imports() {
        let is_func = matches!(import.ty(), ExternType::Func(_));
        if import.module() != WASI || !is_func || !wasi.contains(import.name()) {
            return Err(ExecError::UnsupportedImport {
                module: import.module().to_owned(),
                name: import.name().to_owned(),
            });
        }
    }
    Ok(())
}

/// A WASI command exports `_start: [] -> []`.
fn check_start(module: &Module) -> Result<(), ExecError> {
    match module.get_export("_start") {
        Some(ExternType::Func(ty)) if ty.params().len() == 0 && ty.results().len() == 0 => Ok(()),
        Some(_) => Err(ExecError::MalformedModule {
            reason: "`_start` must be a function taking and returning nothing".into(),
        }),
        None => Err(ExecError::MissingStart),
    }
}
