//! The pre-compile check: one wasmparser pass over a module that refuses, with a typed
//! [`ExecError`] naming the problem and what to do, everything the executor would refuse
//! later — before the multi-second compile, and (when a buyer's client runs it) before any
//! money is escrowed.
//!
//! What it refuses:
//! - bytes that are not a valid core module ([`ExecError::MalformedModule`]);
//! - a module that uses a wasm feature the deterministic profile keeps off
//!   ([`ExecError::ForbiddenFeature`], naming the feature and the rebuild, e.g. legacy
//!   exception handling, threads, a second memory, memory64, a component);
//! - an import that is not a WASI preview-1 function of the right signature
//!   ([`ExecError::UnsupportedImport`], [`ExecError::MalformedModule`]);
//! - a module without `_start: [] -> []` ([`ExecError::MissingStart`],
//!   [`ExecError::MalformedModule`]).
//!
//! It validates with exactly the feature set the engine is configured with
//! ([`crate::profile::WASM_FEATURES`]), so a module it passes is one wasmtime's own
//! validation passes too. Naming a forbidden feature costs extra validations, but only on
//! the refusal path: one when wasmparser's message points at the feature, one per
//! forbidden feature otherwise.

use std::collections::HashMap;
use std::sync::OnceLock;

use wasmparser::{
    Encoding, ExternalKind, FuncType, FuncValidatorAllocations, Parser, Payload, TypeRef, ValType,
    ValidPayload, Validator, WasmFeatures,
};

use crate::error::ExecError;
use crate::profile::{Profile, WASM_FEATURES};
use crate::sandbox::hostcalls::WASI;

/// How to rebuild a module that uses legacy exception handling: LLVM (clang 22) still emits
/// the legacy encoding for `-fwasm-exceptions` unless told otherwise.
pub const LEGACY_EH_REMEDY: &str = "wasmtime 48 cannot compile the legacy encoding; rebuild with the \
     standard (exnref) encoding: clang++ -fwasm-exceptions -mllvm -wasm-use-legacy-eh=false";

/// A wasm feature the profile keeps off: its flag, its name for people, the remedy, and the
/// words wasmparser uses when a module needs it (a first guess that is then confirmed).
struct OffFeature {
    flag: WasmFeatures,
    name: &'static str,
    remedy: &'static str,
    hint: &'static str,
}

const REBUILD_P1: &str =
    "build a WASI preview-1 command for wasm32 (e.g. clang --target=wasm32-wasip1)";

/// Every feature a module might use that the profile refuses, in the order they are named.
const OFF_FEATURES: &[OffFeature] = &[
    OffFeature {
        flag: WasmFeatures::LEGACY_EXCEPTIONS,
        name: "legacy exception handling (try/catch/delegate/rethrow)",
        remedy: LEGACY_EH_REMEDY,
        hint: "legacy",
    },
    OffFeature {
        flag: WasmFeatures::THREADS,
        name: "threads (shared memory and atomics)",
        remedy: "results would depend on thread scheduling; build without -pthread/-matomics \
                 (wasm32-wasip1, not wasm32-wasip1-threads)",
        hint: "threads",
    },
    OffFeature {
        flag: WasmFeatures::SHARED_EVERYTHING_THREADS,
        name: "shared-everything threads",
        remedy: "results would depend on thread scheduling; build single-threaded",
        hint: "shared-everything-threads",
    },
    OffFeature {
        flag: WasmFeatures::MULTI_MEMORY,
        name: "multi-memory (more than one linear memory)",
        remedy: "a job gets exactly one linear memory; link the program into a single memory",
        hint: "multiple memories",
    },
    OffFeature {
        flag: WasmFeatures::MEMORY64,
        name: "memory64 (a 64-bit linear memory)",
        remedy: "build for wasm32 (e.g. --target=wasm32-wasip1), not wasm64",
        hint: "memory64 must be enabled",
    },
    OffFeature {
        flag: WasmFeatures::GC,
        name: "garbage collection (struct, array and i31 types)",
        remedy: REBUILD_P1,
        hint: "gc",
    },
    OffFeature {
        flag: WasmFeatures::FUNCTION_REFERENCES,
        name: "typed function references",
        remedy: REBUILD_P1,
        hint: "function references",
    },
    OffFeature {
        flag: WasmFeatures::STACK_SWITCHING,
        name: "stack switching",
        remedy: REBUILD_P1,
        hint: "stack switching",
    },
    OffFeature {
        flag: WasmFeatures::CUSTOM_PAGE_SIZES,
        name: "custom page sizes",
        remedy: "use the standard 64 KiB page size",
        hint: "custom page sizes",
    },
    OffFeature {
        flag: WasmFeatures::WIDE_ARITHMETIC,
        name: "wide arithmetic (128-bit add/sub/mul)",
        remedy: REBUILD_P1,
        hint: "wide arithmetic",
    },
    OffFeature {
        flag: WasmFeatures::MEMORY_CONTROL,
        name: "memory control",
        remedy: REBUILD_P1,
        hint: "memory control",
    },
    OffFeature {
        flag: WasmFeatures::CUSTOM_DESCRIPTORS,
        name: "custom descriptors",
        remedy: REBUILD_P1,
        hint: "custom descriptors",
    },
    OffFeature {
        flag: WasmFeatures::COMPACT_IMPORTS,
        name: "compact imports",
        remedy: REBUILD_P1,
        hint: "compact import",
    },
];

/// The WASI preview-1 functions the sandbox provides, by name, with their signatures.
#[derive(Clone, Debug, Default)]
pub struct WasiFunctions(HashMap<String, (Vec<ValType>, Vec<ValType>)>);

impl WasiFunctions {
    /// The functions the `linker` defines under the WASI module name.
    pub fn of(
        engine: &wasmtime::Engine,
        linker: &wasmtime::Linker<crate::sandbox::JobState>,
    ) -> Self {
        // Listing a linker needs a store; this throwaway one is never run.
        let mut store = wasmtime::Store::new(engine, crate::sandbox::JobState::inert());
        let funcs: Vec<(String, wasmtime::Func)> = linker
            .iter(&mut store)
            .filter(|(module, _, _)| *module == WASI)
            .filter_map(|(_, name, item)| item.into_func().map(|func| (name.to_owned(), func)))
            .collect();
        let mut functions = HashMap::new();
        for (name, func) in funcs {
            let ty = func.ty(&store);
            let params = ty.params().filter_map(|t| plain(&t)).collect();
            let results = ty.results().filter_map(|t| plain(&t)).collect();
            functions.insert(name, (params, results));
        }
        WasiFunctions(functions)
    }

    /// The functions of the standard sandbox (built once per process), for checks made
    /// outside an executor, such as a buyer's client before it escrows money.
    pub fn standard() -> Result<&'static WasiFunctions, ExecError> {
        static STANDARD: OnceLock<WasiFunctions> = OnceLock::new();
        if let Some(functions) = STANDARD.get() {
            return Ok(functions);
        }
        let engine = Profile::DETERMINISTIC.engine()?;
        let linker = crate::sandbox::linker(&engine)?;
        Ok(STANDARD.get_or_init(|| WasiFunctions::of(&engine, &linker)))
    }
}

/// WASI preview-1 signatures use only numbers.
fn plain(ty: &wasmtime::ValType) -> Option<ValType> {
    match ty {
        wasmtime::ValType::I32 => Some(ValType::I32),
        wasmtime::ValType::I64 => Some(ValType::I64),
        wasmtime::ValType::F32 => Some(ValType::F32),
        wasmtime::ValType::F64 => Some(ValType::F64),
        _ => None,
    }
}

/// Checks `module` against the standard sandbox's WASI functions.
pub fn check(module: &[u8]) -> Result<(), ExecError> {
    check_with(module, WasiFunctions::standard()?)
}

/// Checks `module` against `wasi`: valid under the profile's features, only WASI imports of
/// the right signatures, and a `_start: [] -> []` export.
pub fn check_with(module: &[u8], wasi: &WasiFunctions) -> Result<(), ExecError> {
    let shape = match scan(module, WASM_FEATURES) {
        Ok(shape) => shape,
        Err(err) => return Err(explain(module, err)),
    };
    check_imports(&shape, wasi)?;
    check_start(&shape)
}

/// What the checks after validation need: the imports and the `_start` export's type.
struct Shape {
    imports: Vec<(String, String, Option<FuncType>)>,
    start: Option<Option<FuncType>>,
}

/// A scan failure: either wasmparser's validation error or a component where a core module
/// was expected.
enum ScanError {
    Invalid(wasmparser::BinaryReaderError),
    Component,
}

/// Validates `module` with `features` in one pass, keeping its imports and `_start`.
fn scan(module: &[u8], features: WasmFeatures) -> Result<Shape, ScanError> {
    let mut validator = Validator::new_with_features(features);
    let mut parser = Parser::new(0);
    parser.set_features(features);
    let mut bodies = Vec::new();
    let mut imports = Vec::new();
    let mut start_index = None;
    let mut types = None;
    for payload in parser.parse_all(module) {
        let payload = payload.map_err(ScanError::Invalid)?;
        match &payload {
            Payload::Version {
                encoding: Encoding::Component,
                ..
            } => return Err(ScanError::Component),
            Payload::ImportSection(reader) => {
                for import in reader.clone().into_imports() {
                    let import = import.map_err(ScanError::Invalid)?;
                    let func = matches!(import.ty, TypeRef::Func(_));
                    imports.push((import.module.to_owned(), import.name.to_owned(), func));
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader.clone() {
                    let export = export.map_err(ScanError::Invalid)?;
                    if export.name == "_start" {
                        start_index = Some((export.kind, export.index));
                    }
                }
            }
            _ => {}
        }
        match validator.payload(&payload).map_err(ScanError::Invalid)? {
            ValidPayload::Func(func, body) => bodies.push((func, body)),
            ValidPayload::End(end) => types = Some(end),
            _ => {}
        }
    }
    let mut allocs = FuncValidatorAllocations::default();
    for (func, body) in bodies {
        let mut validator = func.into_validator(allocs);
        validator.validate(&body).map_err(ScanError::Invalid)?;
        allocs = validator.into_allocations();
    }
    // A module that parsed to its end always has its types; without them nothing is known.
    let Some(types) = types else {
        return Ok(Shape {
            imports: Vec::new(),
            start: None,
        });
    };
    let func_type = |index: u32| {
        types[types.as_ref().core_function_at(index)]
            .unwrap_func()
            .clone()
    };
    let mut func_imports = 0;
    let imports = imports
        .into_iter()
        .map(|(module, name, func)| {
            let ty = func.then(|| {
                func_imports += 1;
                func_type(func_imports - 1)
            });
            (module, name, ty)
        })
        .collect();
    let start =
        start_index.map(|(kind, index)| (kind == ExternalKind::Func).then(|| func_type(index)));
    Ok(Shape { imports, start })
}

/// Turns a validation failure into the refusal a buyer can act on: the forbidden features
/// the module needs, or, if no feature would make it valid, the validator's own message.
fn explain(module: &[u8], err: ScanError) -> ExecError {
    let err = match err {
        ScanError::Component => {
            return ExecError::ForbiddenFeature {
                feature: "the component model (this is a component, not a core module)".into(),
                remedy: "build a WASI preview-1 command module (e.g. --target=wasm32-wasip1), \
                         not a preview-2 component"
                    .into(),
            };
        }
        ScanError::Invalid(err) => err,
    };
    if !module.starts_with(b"\0asm") {
        return ExecError::MalformedModule {
            reason: "not a WebAssembly module: it does not start with the `\\0asm` magic bytes"
                .into(),
        };
    }
    // Cheap first: the one feature wasmparser's message points at, if adding just that one
    // makes the module valid (two validations in all, even for a large module).
    let message = err.message();
    if let Some(off) = OFF_FEATURES.iter().find(|off| message.contains(off.hint))
        && scan(module, WASM_FEATURES.union(off.flag)).is_ok()
    {
        return forbidden(&[off]);
    }
    let all_off = OFF_FEATURES
        .iter()
        .fold(WasmFeatures::empty(), |set, off| set.union(off.flag));
    let widest = WASM_FEATURES.union(all_off);
    if scan(module, widest).is_err() {
        return ExecError::MalformedModule {
            reason: one_line(&err),
        };
    }
    // Otherwise every feature the module cannot do without: taking it away from the widest
    // set makes the module invalid again.
    let needed: Vec<&OffFeature> = OFF_FEATURES
        .iter()
        .filter(|off| scan(module, widest.difference(off.flag)).is_err())
        .collect();
    if needed.is_empty() {
        return ExecError::MalformedModule {
            reason: one_line(&err),
        };
    }
    forbidden(&needed)
}

/// wasmparser's message on one line: some messages embed pretty-printed byte arrays.
fn one_line(err: &wasmparser::BinaryReaderError) -> String {
    err.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The refusal naming `features` and what to do about each.
fn forbidden(features: &[&OffFeature]) -> ExecError {
    let mut remedies: Vec<&str> = features.iter().map(|off| off.remedy).collect();
    remedies.dedup();
    ExecError::ForbiddenFeature {
        feature: features
            .iter()
            .map(|off| off.name)
            .collect::<Vec<_>>()
            .join(", "),
        remedy: remedies.join("; "),
    }
}

/// Only WASI preview-1 functions, with the signatures the sandbox gives them.
fn check_imports(shape: &Shape, wasi: &WasiFunctions) -> Result<(), ExecError> {
    for (module, name, ty) in &shape.imports {
        let unsupported = || ExecError::UnsupportedImport {
            module: module.clone(),
            name: name.clone(),
        };
        let (Some(ty), Some((params, results))) = (ty, wasi.0.get(name)) else {
            return Err(unsupported());
        };
        if module != WASI {
            return Err(unsupported());
        }
        if ty.params() != params.as_slice() || ty.results() != results.as_slice() {
            return Err(ExecError::MalformedModule {
                reason: format!(
                    "its import `{module}::{name}` has type {} but WASI preview-1 defines it as {}",
                    signature(ty.params(), ty.results()),
                    signature(params, results),
                ),
            });
        }
    }
    Ok(())
}

/// A WASI command exports `_start: [] -> []`.
fn check_start(shape: &Shape) -> Result<(), ExecError> {
    match &shape.start {
        Some(Some(ty)) if ty.params().is_empty() && ty.results().is_empty() => Ok(()),
        Some(Some(ty)) => Err(ExecError::MalformedModule {
            reason: format!(
                "`_start` must be a function taking and returning nothing, not {}",
                signature(ty.params(), ty.results())
            ),
        }),
        Some(None) => Err(ExecError::MalformedModule {
            reason: "`_start` must be a function taking and returning nothing, not a non-function export".into(),
        }),
        None => Err(ExecError::MissingStart),
    }
}

/// `[i32, i64] -> [i32]`.
fn signature(params: &[ValType], results: &[ValType]) -> String {
    let list = |types: &[ValType]| {
        types
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("[{}] -> [{}]", list(params), list(results))
}
