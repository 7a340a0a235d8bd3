//! NaN guards: bit-identical floats on every provider without canonicalizing every float
//! operation.
//!
//! WebAssembly leaves one thing about floats to the hardware: the bits of a NaN that an
//! arithmetic operation produces (its sign and payload). Whether a result *is* a NaN, and
//! every non-NaN result, are fixed by IEEE 754 and the wasm spec. So two honest providers
//! can only disagree when a NaN's bits become *observable*, and there are few places where
//! that happens:
//!
//! | where the bits escape | why | guard |
//! |---|---|---|
//! | `f32.store`, `f64.store` | memory is hashed, written to files, printed | canonicalize the stored value |
//! | `i32.reinterpret_f32`, `i64.reinterpret_f64` | the bits become an integer | canonicalize the operand |
//! | `f32.copysign`, `f64.copysign` | a NaN's sign becomes the sign of a number | canonicalize the sign operand |
//! | `global.set` of an `f32`/`f64` global | checkpointed jobs hash their globals | canonicalize the value |
//! | `f32x4.splat`, `f64x2.splat`, `*.replace_lane` | a `v128` is raw bits to integer SIMD | canonicalize the scalar |
//! | every float SIMD arithmetic result | same: any integer SIMD op can read its lanes | canonicalize each lane after the op |
//!
//! Everything else only passes NaNs along (locals, `select`, calls inside the module) or
//! depends on NaN-ness alone (comparisons, `min`/`max`, truncation traps, saturating
//! conversions), which is deterministic. Imports are WASI preview 1 only, and no WASI
//! function takes a float, so nothing escapes through the host.
//!
//! [`guard`] rewrites a module so that a canonical NaN (`0x7fc00000` / `0x7ff8000000000000`,
//! the same pattern Cranelift's own canonicalization uses) replaces any NaN at each of
//! those points; the module then compiles with Cranelift's per-operation canonicalization
//! off. Float kernels spend most of their time in arithmetic, not in stores, so most of the
//! cost of canonicalization goes away (docs/benchmarks.md, "Deterministic floats").
//!
//! What a job can notice:
//! - A NaN copied through `f32.load`/`f32.store` (rather than through integer loads and
//!   stores) comes out canonical, even if memory held another NaN pattern before. Nothing
//!   else about a program's behaviour changes.
//! - The guards are wasm instructions, so they are metered: 6 fuel per guarded operation
//!   executed. The rewrite is a pure function of the module's bytes, so every provider runs
//!   and bills exactly the same code.
//!
//! The claim "observable output does not depend on NaN bits" is tested by rewriting modules
//! so that every NaN-producing operation returns an arbitrary NaN (a model of any other
//! CPU's NaN generation) and checking that the guarded outputs do not change
//! (`tests` below).

use wasm_encoder::{Encode, Ieee32, Ieee64, Instruction, ValType as EncValType};
use wasmparser::{CompositeInnerType, FunctionBody, Operator, Parser, Payload, TypeRef, ValType};

use crate::error::ExecError;

/// The canonical `f32` NaN: positive, quiet, zero payload.
pub const CANONICAL_F32: u32 = 0x7fc0_0000;
/// The canonical `f64` NaN: positive, quiet, zero payload.
pub const CANONICAL_F64: u64 = 0x7ff8_0000_0000_0000;

/// The shape of a value that may hold NaNs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lanes {
    F32,
    F64,
    F32x4,
    F64x2,
}

/// Where a substitution goes relative to the operator it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// On the operator's top operand, before it runs.
    Before,
    /// On the operator's result, after it runs.
    After,
}

/// Decides which operators get a NaN substitution and which NaN replaces a NaN there.
pub(crate) trait Policy {
    /// The substitution for `op`, if any. `globals` are the module's global types.
    fn site(&self, op: &Operator<'_>, globals: &[ValType]) -> Option<(Place, Lanes)>;
    /// The bits that replace a NaN at the next site (per lane for SIMD).
    fn nan_bits(&mut self, lanes: Lanes) -> u128;
}

/// The production policy: canonical NaNs at every point where NaN bits become observable.
struct Canonical;

impl Policy for Canonical {
    fn site(&self, op: &Operator<'_>, globals: &[ValType]) -> Option<(Place, Lanes)> {
        use Operator as O;
        let before = |lanes| Some((Place::Before, lanes));
        match op {
            O::F32Store { .. } | O::I32ReinterpretF32 | O::F32Copysign | O::F32x4Splat => {
                before(Lanes::F32)
            }
            O::F32x4ReplaceLane { .. } => before(Lanes::F32),
            O::F64Store { .. } | O::I64ReinterpretF64 | O::F64Copysign | O::F64x2Splat => {
                before(Lanes::F64)
            }
            O::F64x2ReplaceLane { .. } => before(Lanes::F64),
            O::GlobalSet { global_index } => match globals.get(*global_index as usize) {
                Some(ValType::F32) => before(Lanes::F32),
                Some(ValType::F64) => before(Lanes::F64),
                _ => None,
            },
            _ => simd_float_result(op).map(|lanes| (Place::After, lanes)),
        }
    }

    fn nan_bits(&mut self, lanes: Lanes) -> u128 {
        canonical_bits(lanes)
    }
}

/// The bits of the canonical NaN in every lane of `lanes`.
pub(crate) fn canonical_bits(lanes: Lanes) -> u128 {
    match lanes {
        Lanes::F32 => u128::from(CANONICAL_F32),
        Lanes::F64 => u128::from(CANONICAL_F64),
        Lanes::F32x4 => u128::from(CANONICAL_F32) * 0x0000_0001_0000_0001_0000_0001_0000_0001,
        Lanes::F64x2 => u128::from(CANONICAL_F64) * 0x0000_0000_0000_0001_0000_0000_0000_0001,
    }
}

/// SIMD operators whose float lanes may come out as hardware-chosen NaNs.
///
/// `abs`, `neg`, `pmin` and `pmax` are left out: the spec defines them bit by bit (sign
/// operations and a compare-and-select), so their output bits follow from their input bits.
pub(crate) fn simd_float_result(op: &Operator<'_>) -> Option<Lanes> {
    use Operator as O;
    match op {
        O::F32x4Add
        | O::F32x4Sub
        | O::F32x4Mul
        | O::F32x4Div
        | O::F32x4Min
        | O::F32x4Max
        | O::F32x4Sqrt
        | O::F32x4Ceil
        | O::F32x4Floor
        | O::F32x4Trunc
        | O::F32x4Nearest
        | O::F32x4DemoteF64x2Zero
        | O::F32x4RelaxedMadd
        | O::F32x4RelaxedNmadd
        | O::F32x4RelaxedMin
        | O::F32x4RelaxedMax => Some(Lanes::F32x4),
        O::F64x2Add
        | O::F64x2Sub
        | O::F64x2Mul
        | O::F64x2Div
        | O::F64x2Min
        | O::F64x2Max
        | O::F64x2Sqrt
        | O::F64x2Ceil
        | O::F64x2Floor
        | O::F64x2Trunc
        | O::F64x2Nearest
        | O::F64x2PromoteLowF32x4
        | O::F64x2RelaxedMadd
        | O::F64x2RelaxedNmadd
        | O::F64x2RelaxedMin
        | O::F64x2RelaxedMax => Some(Lanes::F64x2),
        _ => None,
    }
}

/// Rewrites `module` so every NaN whose bits a job could observe is canonical (see the
/// module docs). Returns `None` when no function needs a guard, so the caller compiles the
/// original bytes.
pub fn guard(module: &[u8]) -> Result<Option<Vec<u8>>, ExecError> {
    rewrite(module, &mut Canonical)
}

/// Applies `policy` to every function body of `module`; `None` when nothing changed.
pub(crate) fn rewrite(
    module: &[u8],
    policy: &mut dyn Policy,
) -> Result<Option<Vec<u8>>, ExecError> {
    let malformed = |err: wasmparser::BinaryReaderError| ExecError::MalformedModule {
        reason: format!("{err}"),
    };
    let mut shape = Shape::default();
    let mut out = Vec::with_capacity(module.len() + module.len() / 8);
    let mut code: Option<CodeRewrite> = None;
    let mut changed = false;
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.map_err(malformed)?;
        match &payload {
            Payload::Version {
                encoding, range, ..
            } => {
                if *encoding != wasmparser::Encoding::Module {
                    // Components are refused by the engine itself; nothing to guard here.
                    return Ok(None);
                }
                out.extend_from_slice(&module[range.clone()]);
                continue;
            }
            Payload::TypeSection(reader) => shape.read_types(reader.clone()).map_err(malformed)?,
            Payload::ImportSection(reader) => {
                shape.read_imports(reader.clone()).map_err(malformed)?
            }
            Payload::FunctionSection(reader) => {
                for ty in reader.clone() {
                    shape.defined_funcs.push(ty.map_err(malformed)?);
                }
            }
            Payload::GlobalSection(reader) => {
                for global in reader.clone() {
                    shape
                        .globals
                        .push(global.map_err(malformed)?.ty.content_type);
                }
            }
            Payload::CodeSectionStart { count, .. } => {
                code = Some(CodeRewrite::new(*count));
                if *count == 0 {
                    code.take().expect("just set").finish(&mut out);
                }
                continue;
            }
            Payload::CodeSectionEntry(body) => {
                let Some(rewrite) = code.as_mut() else {
                    return Err(ExecError::MalformedModule {
                        reason: "a function body outside the code section".into(),
                    });
                };
                let params = shape.params_of_defined(rewrite.done)?;
                match rewrite_body(module, body, params, &shape.globals, policy)
                    .map_err(malformed)?
                {
                    Some(new_body) => {
                        changed = true;
                        rewrite.section.raw(&new_body);
                    }
                    None => {
                        rewrite.section.raw(&module[body.range()]);
                    }
                }
                rewrite.done += 1;
                if rewrite.done == rewrite.count {
                    code.take().expect("checked above").finish(&mut out);
                }
                continue;
            }
            Payload::End(_) => break,
            _ => {}
        }
        if let Some((id, range)) = payload.as_section() {
            out.push(id);
            let data = &module[range];
            (data.len() as u32).encode(&mut out);
            out.extend_from_slice(data);
        }
    }
    Ok(changed.then_some(out))
}

/// What the rewrite needs to know about the module outside its code.
#[derive(Default)]
struct Shape {
    /// Parameter count of every type index (0 for non-function types).
    type_params: Vec<u32>,
    /// Type index of every function with a body, in order.
    defined_funcs: Vec<u32>,
    /// Value type of every global, imported ones first.
    globals: Vec<ValType>,
}

impl Shape {
    fn read_types(&mut self, reader: wasmparser::TypeSectionReader<'_>) -> wasmparser::Result<()> {
        for group in reader {
            for sub in group?.types() {
                let params = match &sub.composite_type.inner {
                    CompositeInnerType::Func(func) => func.params().len() as u32,
                    _ => 0,
                };
                self.type_params.push(params);
            }
        }
        Ok(())
    }

    fn read_imports(
        &mut self,
        reader: wasmparser::ImportSectionReader<'_>,
    ) -> wasmparser::Result<()> {
        for import in reader.into_imports() {
            if let TypeRef::Global(global) = import?.ty {
                self.globals.push(global.content_type);
            }
        }
        Ok(())
    }

    fn params_of_defined(&self, index: u32) -> Result<u32, ExecError> {
        self.defined_funcs
            .get(index as usize)
            .and_then(|ty| self.type_params.get(*ty as usize))
            .copied()
            .ok_or_else(|| ExecError::MalformedModule {
                reason: format!("function body {index} has no declared type"),
            })
    }
}

/// The code section being rebuilt.
struct CodeRewrite {
    section: wasm_encoder::CodeSection,
    count: u32,
    done: u32,
}

impl CodeRewrite {
    fn new(count: u32) -> Self {
        CodeRewrite {
            section: wasm_encoder::CodeSection::new(),
            count,
            done: 0,
        }
    }

    fn finish(self, out: &mut Vec<u8>) {
        out.push(wasm_encoder::SectionId::Code as u8);
        self.section.encode(out);
    }
}

/// One substitution to insert: at byte `at` of the module, for `lanes`.
struct Site {
    at: usize,
    lanes: Lanes,
}

/// Rewrites one function body, or returns `None` when it has no site.
fn rewrite_body(
    module: &[u8],
    body: &FunctionBody<'_>,
    params: u32,
    globals: &[ValType],
    policy: &mut dyn Policy,
) -> wasmparser::Result<Option<Vec<u8>>> {
    let mut sites = Vec::new();
    let mut ops = body.get_operators_reader()?;
    let code_start = ops.original_position();
    while !ops.eof() {
        let (op, offset) = ops.read_with_offset()?;
        if let Some((place, lanes)) = policy.site(&op, globals) {
            let at = match place {
                Place::Before => offset,
                Place::After => ops.original_position(),
            };
            sites.push(Site { at, lanes });
        }
    }
    if sites.is_empty() {
        return Ok(None);
    }

    // Locals: the original groups, then one scratch local per kind of value guarded.
    let mut declared = 0u32;
    let mut groups = 0u32;
    for group in body.get_locals_reader()? {
        declared += group?.0;
        groups += 1;
    }
    let mut scratch = Scratch::default();
    let mut next = params + declared;
    let mut extra = Vec::new();
    for (kind, slot) in [
        (Lanes::F32, &mut scratch.f32),
        (Lanes::F64, &mut scratch.f64),
        (Lanes::F32x4, &mut scratch.v128),
    ] {
        let wanted = sites.iter().any(|site| match kind {
            Lanes::F32x4 => matches!(site.lanes, Lanes::F32x4 | Lanes::F64x2),
            other => site.lanes == other,
        });
        if wanted {
            *slot = next;
            next += 1;
            extra.push(match kind {
                Lanes::F32 => EncValType::F32,
                Lanes::F64 => EncValType::F64,
                _ => EncValType::V128,
            });
        }
    }

    let mut out = Vec::with_capacity(body.range().len() + sites.len() * 24);
    // The locals vector: its count, the original groups byte for byte, the scratch groups.
    let body_bytes = &module[body.range()];
    let groups_start = body.range().start + leb_len(body_bytes);
    (groups + extra.len() as u32).encode(&mut out);
    out.extend_from_slice(&module[groups_start..code_start]);
    for ty in &extra {
        1u32.encode(&mut out);
        ty.encode(&mut out);
    }
    let mut copied = code_start;
    for site in &sites {
        out.extend_from_slice(&module[copied..site.at]);
        copied = site.at;
        let bits = policy.nan_bits(site.lanes);
        substitution(site.lanes, bits, &scratch, &mut out);
    }
    out.extend_from_slice(&module[copied..body.range().end]);
    Ok(Some(out))
}

/// Scratch local indices of one function (only those its sites use are meaningful).
#[derive(Default)]
struct Scratch {
    f32: u32,
    f64: u32,
    v128: u32,
}

/// Emits "if the value on top of the stack is a NaN (per lane), replace it with `bits`".
///
/// Scalars: `local.tee t; <nan>; local.get t; local.get t; eq; select` — `x == x` is false
/// only for a NaN, and `select` keeps `x` when it is true. Vectors use the lane-wise `eq`
/// as the mask of a `v128.bitselect`. Six instructions, stack-neutral.
fn substitution(lanes: Lanes, bits: u128, scratch: &Scratch, out: &mut Vec<u8>) {
    let (local, nan, eq, select) = match lanes {
        Lanes::F32 => (
            scratch.f32,
            Instruction::F32Const(Ieee32::new(bits as u32)),
            Instruction::F32Eq,
            Instruction::Select,
        ),
        Lanes::F64 => (
            scratch.f64,
            Instruction::F64Const(Ieee64::new(bits as u64)),
            Instruction::F64Eq,
            Instruction::Select,
        ),
        Lanes::F32x4 => (
            scratch.v128,
            Instruction::V128Const(bits as i128),
            Instruction::F32x4Eq,
            Instruction::V128Bitselect,
        ),
        Lanes::F64x2 => (
            scratch.v128,
            Instruction::V128Const(bits as i128),
            Instruction::F64x2Eq,
            Instruction::V128Bitselect,
        ),
    };
    Instruction::LocalTee(local).encode(out);
    nan.encode(out);
    Instruction::LocalGet(local).encode(out);
    Instruction::LocalGet(local).encode(out);
    eq.encode(out);
    select.encode(out);
}

/// Length in bytes of the unsigned LEB128 number at the start of `bytes`.
fn leb_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|b| b & 0x80 == 0)
        .map_or(bytes.len(), |i| i + 1)
}

#[cfg(test)]
mod tests;
