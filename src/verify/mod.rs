//! Numerical verification: run two ONNX models on the same random inputs in tract and in
//! onnxruntime and check that every output agrees within a tolerance.
//!
//! Equivalence is the product's promise; this module is how a user sees it kept. Model A is the
//! reference (the original), model B the candidate (the rewrite). For each runtime, both models
//! run on the same `samples` input samples, and every graph output of B is compared (by position)
//! with A's: max |Δ| and max |Δ| / max |ref|, computed in `f64`, against a tolerance chosen by the
//! output's element type (f32 1e-4, f64 1e-8, f16 1e-2, bf16 5e-2, integers exact; `--rtol`
//! overrides it for float outputs).
//!
//! Inputs come from the graph input types of A ([`generate_inputs`]): floats ~ N(0,1), booleans
//! all true, integer masks (name contains `mask`) all ones, other integers are ids drawn below the
//! size of the embedding tables they index (found by following the input through shape-only ops
//! to `Gather` on a constant table; a small default bound when there is none, as out-of-range
//! ids crash runtimes). Dynamic axes: a `--dim NAME=VALUE` wins; a batch-looking axis gets 2,
//! any other 8. The dims used are in the report.
//!
//! Runtimes: tract always runs in process ([`tract_onnx_with_extensions`] is the one loader,
//! where custom ops get registered). onnxruntime is loaded dynamically ([`find_ort_library`]:
//! `--ort-lib`, `ORT_DYLIB_PATH`, an installed Python `onnxruntime` package, common folders), once
//! per process, and runs with graph optimisations off unless asked. When it cannot be found the
//! report says so in its notes and verification uses tract alone — unless
//! [`VerifyOptions::require_ort`] is set (CI), which makes that an error. A model using this
//! crate's own ops (`ai.onnx_normopt:CRMSNormalization`, `--emit custom`) is verified in tract
//! alone whatever the options: onnxruntime cannot run it, the report lists onnxruntime as not
//! run with the reason ([`VerifyReport::not_run`]), and `require_ort` does not apply.
//!
//! In process or isolated: [`verify_files`] runs both runtimes in the caller's process, with no
//! memory budget and no limits (a runtime that segfaults takes the caller with it; a model with
//! huge fixed shapes allocates what it asks for). The command line instead calls
//! [`verify_isolated`]: [`budget::plan`] estimates the memory needed from the inferred shapes
//! and refuses ([`VerifyError::OverBudget`], exit 5) or shrinks dynamic dims before anything
//! runs, then runs [`verify_files`] in a child process of the same executable ([`child_main`],
//! entered through [`CHILD_ARG`]) under an address-space limit and a timeout, turning a crash
//! into [`VerifyError::Incomplete`].
//!
//! The public surface, in three parts:
//! - **the core**: [`verify_files`] with [`VerifyOptions`] ([`Runtimes`], [`OrtDevice`],
//!   [`ci_requires_ort`]) gives a [`VerifyReport`] (its [`Row`]s, [`NotRun`]s, [`CaseReport`]s,
//!   [`InputSummary`]s) or a [`VerifyError`];
//! - **isolation**: [`verify_isolated`] with an [`Isolation`] gives a [`Checked`]; the child's
//!   entry point ([`CHILD_ARG`], [`child_main`]) and [`isolate_command`] (a command such as
//!   `bench` re-run in a child under the same limits); the memory estimate is [`budget`];
//! - **runtime plumbing** (`bench`, the fuzzers, tests): the inputs verification would feed
//!   ([`generate_inputs`], [`generate_cases`], [`GeneratedInputs`], [`HostTensor`]), a model
//!   loaded as verification loads it ([`tract_plan`], [`TractModel`],
//!   [`tract_onnx_with_extensions`]), onnxruntime's library and environment
//!   ([`find_ort_library`], [`ort_environment`]), this crate's own ops in a model
//!   ([`custom_ops`]), and the verification cases of decoders ([`PAST_LENGTHS`], [`NEW_TOKENS`]).
//!
//! ```no_run
//! use onnx_normopt::verify::{verify_files, VerifyOptions};
//! let report = verify_files("a.onnx".as_ref(), "b.onnx".as_ref(), &VerifyOptions::default())?;
//! println!("{report}");
//! assert!(report.passed());
//! # Ok::<(), onnx_normopt::verify::VerifyError>(())
//! ```

#![warn(missing_docs)]

pub mod budget;
mod child;
mod compare;
mod error;
mod inputs;
mod options;
mod ort_rt;
mod pieces;
mod report;
mod source;
pub(crate) mod spec;
mod tensor;
mod tract_ext;
mod tract_ms;
mod tract_rt;
#[cfg(test)]
mod unit_tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use child::{
    child_main, isolate_command, verify_isolated, verify_within, Checked, Isolation, CHILD_ARG,
};
use compare::{
    b_failed, cache_check, check_count, check_interfaces, check_shapes_fit, compare, quant_floor,
    runtime_failure,
};
pub(crate) use error::panic_message;
pub(crate) use error::shorten;
pub use error::VerifyError;
pub use inputs::GeneratedInputs;
pub use options::{ci_requires_ort, OrtDevice, Runtimes, VerifyOptions};
pub use ort_rt::{find_ort_library, OrtLibrary};
pub use pieces::{PieceCheck, PiecesReport, PiecesSummary, Relation, ValueCheck};
use report::default_tolerance;
pub use report::{
    CacheCheck, CaseReport, NotRun, QuantFloor, Row, Runtime, VerifyReport, CANNOT_RUN_ORIGINAL,
};
pub use spec::{NEW_TOKENS, PAST_LENGTHS};
pub use tensor::{HostTensor, InputSummary};
pub use tract_rt::{tract_onnx_with_extensions, TractModel};

use report::Accum;
use spec::{Dim, ModelSpec};

/// Generate the inputs [`verify_files`] would feed `model` (as model A) with `opts`: same seed,
/// samples, dims and vocabulary bounds. For a model verified in several cases (KV-cache and
/// merged decoders) these are the last case's: a filled cache, the cache branch
/// ([`generate_cases`] gives them all).
pub fn generate_inputs(model: &Path, opts: &VerifyOptions) -> Result<GeneratedInputs, VerifyError> {
    let spec = ModelSpec::from_path(model)?;
    let mut cases = generate_for(&spec, None, opts)?;
    cases.pop().ok_or_else(|| VerifyError::Model {
        path: model.to_path_buf(),
        message: "no verification case".into(),
    })
}

/// The inputs of every case [`verify_files`] verifies `model` in (as model A) with `opts`: one
/// for most models; an empty cache and a filled one for KV-cache models; both values of the
/// branch flag for merged decoders.
pub fn generate_cases(
    model: &Path,
    opts: &VerifyOptions,
) -> Result<Vec<GeneratedInputs>, VerifyError> {
    let spec = ModelSpec::from_path(model)?;
    generate_for(&spec, None, opts)
}

fn generate_for(
    a: &ModelSpec,
    b: Option<&ModelSpec>,
    opts: &VerifyOptions,
) -> Result<Vec<GeneratedInputs>, VerifyError> {
    if opts.samples == 0 {
        return Err(VerifyError::Options("--samples must be at least 1".into()));
    }
    let mut vocab: BTreeMap<String, (usize, String)> = a
        .vocab
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in b.map(|b| &b.vocab).into_iter().flatten() {
        match vocab.get(k) {
            Some(cur) if cur.0 <= v.0 => {}
            _ => {
                vocab.insert(k.clone(), v.clone());
            }
        }
    }
    let dims = opts.dims.clone();
    let past = spec::past_names(a);
    spec::plan_cases(a, &dims)
        .iter()
        .map(|c| inputs::generate(a, &vocab, &dims, c, &past, opts.samples, opts.seed))
        .collect()
}

fn tract_plan_for(spec: &ModelSpec, sample: &[HostTensor]) -> Result<TractModel, VerifyError> {
    // Inputs whose declared shape cannot be kept symbolic (used if the concrete-shape attempt
    // fails): no shape, an unnamed axis, or a missing element type.
    let concrete: std::collections::HashSet<String> = spec
        .inputs
        .iter()
        .filter(|i| {
            i.elem_type == 0
                || i.dims
                    .as_ref()
                    .is_none_or(|d| d.iter().any(|d| matches!(d, Dim::Unknown)))
        })
        .map(|i| i.name.clone())
        .collect();
    let fixed = spec.branch_flags.iter().cloned().collect();
    TractModel::load(
        source::ModelSource::File(&spec.path),
        sample,
        &concrete,
        &fixed,
    )
}

/// Load `model` in tract the way verification does, optimised for the types and shapes of
/// `sample` (e.g. `generate_inputs(..)?.samples[0]`): the loader of
/// [`tract_onnx_with_extensions`], concrete input shapes with the graph's `value_info` ignored
/// (tract's symbolic shapes mis-broadcast some attention masks, and `value_info` symbols clash
/// with concrete sizes), falling back to the declared symbolic shapes.
pub fn tract_plan(model: &Path, sample: &[HostTensor]) -> Result<TractModel, VerifyError> {
    tract_plan_for(&ModelSpec::from_path(model)?, sample)
}

/// The process-wide onnxruntime environment, initialising onnxruntime on first use from
/// `ort_lib` or the library [`find_ort_library`] finds. onnxruntime can be initialised once per
/// process (a second `ort::init_from(..).build()` fails with "only one environment is allowed
/// per process"), so every user of `ort` in this crate must get its environment here. Later
/// calls return the same environment and library whatever `ort_lib` says.
pub fn ort_environment(
    ort_lib: Option<&Path>,
) -> Result<(ort::environment::Environment, PathBuf), VerifyError> {
    if let Some(loaded) = ort_rt::loaded_library() {
        return ort_rt::ensure_init(&loaded);
    }
    match find_ort_library(ort_lib) {
        OrtLibrary::Found { path, .. } => ort_rt::ensure_init(&path),
        OrtLibrary::NotFound { tried } => Err(VerifyError::OrtNotFound { tried }),
    }
}

fn run_tract(
    spec: &ModelSpec,
    samples: &[Vec<HostTensor>],
) -> Result<Vec<Vec<HostTensor>>, VerifyError> {
    let names: Vec<String> = spec.outputs.iter().map(|o| o.name.clone()).collect();
    let model = tract_plan_for(spec, &samples[0])?;
    let mut outs = Vec::with_capacity(samples.len());
    for s in samples {
        let o = model.run(s, &names)?;
        check_count(Runtime::Tract, spec, &o)?;
        outs.push(o);
    }
    Ok(outs)
}

/// [`run_ort_with`] on model B, marked for the child's crash report.
fn run_ort_marked(
    model: &mut ort_rt::OrtModel,
    spec: &ModelSpec,
    samples: &[Vec<HostTensor>],
) -> Result<Vec<Vec<HostTensor>>, VerifyError> {
    child::mark("onnxruntime", "B");
    run_ort_with(model, spec, samples)
}

fn run_ort_with(
    model: &mut ort_rt::OrtModel,
    spec: &ModelSpec,
    samples: &[Vec<HostTensor>],
) -> Result<Vec<Vec<HostTensor>>, VerifyError> {
    let mut outs = Vec::with_capacity(samples.len());
    for s in samples {
        let o = model.run(s)?;
        check_count(Runtime::Ort, spec, &o)?;
        outs.push(o);
    }
    Ok(outs)
}

/// Load onnxruntime for this run, or explain in `notes` why it is skipped (an error when it is
/// required).
fn ort_for_run(
    opts: &VerifyOptions,
    notes: &mut Vec<String>,
) -> Result<Option<(ort::environment::Environment, PathBuf)>, VerifyError> {
    let required = opts.require_ort || opts.runtimes == Runtimes::Ort;
    if let Some(loaded) = ort_rt::loaded_library() {
        if let Some(asked) = &opts.ort_lib {
            if asked != &loaded && !loaded.starts_with(asked) {
                notes.push(format!(
                    "onnxruntime was already loaded in this process from {}; --ort-lib {} is not used",
                    loaded.display(),
                    asked.display()
                ));
            }
        }
        return ort_rt::ensure_init(&loaded).map(Some);
    }
    match find_ort_library(opts.ort_lib.as_deref()) {
        OrtLibrary::Found { path, .. } => match ort_rt::ensure_init(&path) {
            Ok(x) => Ok(Some(x)),
            Err(e) if required || opts.ort_lib.is_some() => Err(e),
            Err(e) => {
                notes.push(format!(
                    "onnxruntime NOT used: {e}; verified with tract alone"
                ));
                Ok(None)
            }
        },
        OrtLibrary::NotFound { tried } => {
            if required || opts.ort_lib.is_some() {
                return Err(VerifyError::OrtNotFound { tried });
            }
            notes.push(format!(
                "onnxruntime NOT used: its library was not found (tried: {}); verified with tract \
                 alone. Install it (`pip install onnxruntime`), pass --ort-lib PATH or set \
                 ORT_DYLIB_PATH",
                tried.join("; ")
            ));
            Ok(None)
        }
    }
}

/// Candidate sizes for symbolic image dims (`height`, `width`, …), tried in order when no runtime
/// can run the original at the default size: the sizes image models are commonly built for (a
/// ViT without position interpolation runs at its one training size only).
const IMAGE_SIZES: &[usize] = &[16, 32, 64, 128, 224, 256, 384, 512];

/// Whether a symbolic dim name looks like a spatial image axis.
fn looks_spatial(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    matches!(l.as_str(), "h" | "w")
        || ["height", "width", "resolution", "image", "img"]
            .iter()
            .any(|k| l.contains(k))
}

/// Verify that model `b` computes the same outputs as model `a` (the reference) on random inputs,
/// in tract and/or onnxruntime as `opts` says.
///
/// When no runtime can run `a` at the default sizes and it has symbolic image dims that
/// `opts.dims` does not set, those dims are tried at 16, 32, 64, 128, 224, 256, 384 and 512 (the same size for all of
/// them) until a runtime runs it; the report's notes say which size was used.
///
/// Returns a report (check [`VerifyReport::passed`]); an `Err` means verification could not be
/// carried out: unreadable file, different interfaces, no runtime that can run the original, a
/// setup error, or a required onnxruntime that is missing.
pub fn verify_files(a: &Path, b: &Path, opts: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
    at_runnable_size(a, opts, Probe::Whole, |o| verify_at(a, b, o))
}

/// Whether the `--dim` hint of a model no runtime runs may run the whole original to find a
/// size that works ([`unsized_hint`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// Yes: the whole models fit the budget.
    Whole,
    /// No: the model is verified in pieces because its whole copies do not fit; the hint only
    /// names the unsized dims.
    NamesOnly,
}

/// `verify(opts)`, and when no runtime can run `a` there and it has symbolic image dims that
/// `opts.dims` does not set, `verify` again with those dims at each of [`IMAGE_SIZES`] until a
/// runtime runs it (the report's notes say which size was used); when none does, the error
/// says which `--dim` would make the original run ([`unsized_hint`], probing as `probe` says).
fn at_runnable_size(
    a: &Path,
    opts: &VerifyOptions,
    probe: Probe,
    verify: impl Fn(&VerifyOptions) -> Result<VerifyReport, VerifyError>,
) -> Result<VerifyReport, VerifyError> {
    let first = verify(opts);
    if !matches!(first, Err(VerifyError::NoRuntime { .. })) {
        return first;
    }
    let spec = ModelSpec::from_path(a)?;
    let mut free: Vec<String> = spec
        .inputs
        .iter()
        .flat_map(|i| i.dims.iter().flatten())
        .filter_map(|d| match d {
            Dim::Param(p) if looks_spatial(p) && !opts.dims.contains_key(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    free.sort();
    free.dedup();
    if !free.is_empty() {
        for &size in IMAGE_SIZES {
            let mut o = opts.clone();
            for n in &free {
                o.dims.insert(n.clone(), size);
            }
            match verify(&o) {
                Err(VerifyError::NoRuntime { .. }) => continue,
                Ok(mut rep) => {
                    rep.notes.push(format!(
                        "no runtime could run the original with the default size of {}; verified \
                         at {size} (set it with --dim)",
                        free.join(", ")
                    ));
                    return Ok(rep);
                }
                other => return other,
            }
        }
    }
    match first {
        Err(VerifyError::NoRuntime { path, reasons, .. }) => Err(VerifyError::NoRuntime {
            hint: unsized_hint(&spec, opts, probe),
            path,
            reasons,
        }),
        other => other,
    }
}

/// Sizes tried for a dim the graph did not size, when the original does not run at its
/// default: powers of two, as head sizes, channel counts and lengths usually are.
const PROBE_SIZES: &[usize] = &[1, 2, 4, 16, 32, 64, 128, 256, 512, 1024];

/// For an original that no runtime runs: the dims whose sizes neither `--dim`, the case nor a
/// fact of the graph gave (defaults), and for the first of them with which the original runs
/// (tried one at a time at [`PROBE_SIZES`], the others at their defaults), the `--dim` that
/// would work (with [`Probe::NamesOnly`], nothing is tried: the dims are named). `None` when
/// every dim was sized (the failure is not a sizing question).
fn unsized_hint(spec: &ModelSpec, opts: &VerifyOptions, probe: Probe) -> Option<String> {
    let cases = generate_for(spec, None, opts).ok()?;
    let first = cases.first()?;
    let defaulted: Vec<(String, usize)> = first
        .dim_origins
        .iter()
        .filter(|(_, o)| o.starts_with("default ("))
        .filter_map(|(n, _)| first.dims.get(n).map(|&v| (n.clone(), v)))
        .collect();
    if defaulted.is_empty() {
        return None;
    }
    let names = defaulted
        .iter()
        .map(|(n, v)| format!("`{n}` (default {v})"))
        .collect::<Vec<_>>()
        .join(", ");
    if probe == Probe::NamesOnly {
        return Some(format!(
            "the graph does not size {names}: set them with --dim NAME=VALUE"
        ));
    }
    for (name, v) in defaulted.iter().take(4) {
        for &size in PROBE_SIZES.iter().filter(|&&s| s != *v) {
            let mut o = opts.clone();
            o.dims.insert(name.clone(), size);
            if original_runs(spec, &o) {
                return Some(format!(
                    "the graph does not size {names}: the original runs with --dim {name}={size}, \
                     verify with it"
                ));
            }
        }
    }
    Some(format!(
        "the graph does not size {names}, and the original ran at none of {PROBE_SIZES:?} for \
         them: set them with --dim NAME=VALUE"
    ))
}

/// Whether some runtime `opts` allows runs the original on the first sample of every case.
fn original_runs(spec: &ModelSpec, opts: &VerifyOptions) -> bool {
    let Ok(cases) = generate_for(spec, None, opts) else {
        return false;
    };
    let firsts: Vec<Vec<HostTensor>> = cases
        .iter()
        .filter_map(|c| c.samples.first().cloned())
        .collect();
    if matches!(opts.runtimes, Runtimes::Ort | Runtimes::Both) && spec.custom_ops.is_empty() {
        let mut notes = Vec::new();
        if let Ok(Some((env, lib))) = ort_for_run(opts, &mut notes) {
            let ran =
                ort_rt::OrtModel::load(&env, &lib, &spec.path, opts.ort_optimize, opts.ort_device)
                    .is_ok_and(|mut m| run_ort_with(&mut m, spec, &firsts).is_ok());
            if ran {
                return true;
            }
        }
    }
    matches!(opts.runtimes, Runtimes::Tract | Runtimes::Both)
        && firsts
            .iter()
            .all(|s| run_tract(spec, std::slice::from_ref(s)).is_ok())
}

/// [`verify_files`] at the sizes `opts` gives (no search).
fn verify_at(a: &Path, b: &Path, opts: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
    let start = Instant::now();
    let (spec_a, spec_b, cases) = prepare(a, b, opts)?;
    let multi = cases.len() > 1;
    let label = |c: &GeneratedInputs| multi.then(|| c.case.clone());
    let mut notes = case_notes(&cases);
    let mut rows = Vec::new();
    let mut ran = Vec::new();
    let mut not_run = Vec::new();
    // A runtime that cannot run model A says nothing about B: it is listed as not run (for that
    // case) and the other runtime verifies. `original[k]` holds the reasons case k was not run.
    let mut original: Vec<Vec<String>> = vec![Vec::new(); cases.len()];
    let mut cannot_run = |runtime: Runtime, k: usize, c: &GeneratedInputs, e: &VerifyError| {
        let why = format!("{CANNOT_RUN_ORIGINAL}: {}", e.short());
        original[k].push(format!("{}: {}", runtime.name(), e.short()));
        NotRun {
            runtime,
            case: label(c),
            why,
        }
    };

    let mut tract_ref: Vec<Option<Vec<Vec<HostTensor>>>> = vec![None; cases.len()];
    // Whether each filled-cache case reads its cache (checked on the original, in the first
    // runtime that runs it).
    let mut cache: Vec<Option<CacheCheck>> = vec![None; cases.len()];
    // The original's outputs in onnxruntime per case, for a quantized model's floor.
    let mut ort_ref: Vec<Option<Vec<Vec<HostTensor>>>> = vec![None; cases.len()];
    let mut quantized: Option<QuantFloor> = None;
    if matches!(opts.runtimes, Runtimes::Tract | Runtimes::Both) {
        for (k, c) in cases.iter().enumerate() {
            child::mark("tract", "A");
            match run_tract(&spec_a, &c.samples) {
                Err(e) if runtime_failure(&e) => not_run.push(cannot_run(Runtime::Tract, k, c, &e)),
                Err(e) => return Err(e),
                Ok(outs_a) => {
                    child::mark("tract", "B");
                    match run_tract(&spec_b, &c.samples) {
                        Ok(outs_b) => rows.extend(compare(
                            Runtime::Tract,
                            label(c).as_deref(),
                            &spec_a,
                            &outs_a,
                            &outs_b,
                            opts.rtol,
                        )),
                        Err(e) => {
                            rows.extend(b_failed(Runtime::Tract, label(c).as_deref(), &spec_a, &e)?)
                        }
                    }
                    if !ran.contains(&Runtime::Tract) {
                        ran.push(Runtime::Tract);
                    }
                    if cache[k].is_none() {
                        cache[k] = cache_check(Runtime::Tract, &spec_a, &c.samples, &outs_a, |s| {
                            run_tract(&spec_a, s)
                        });
                    }
                    tract_ref[k] = Some(outs_a);
                }
            }
        }
    }

    child::release_freed_memory();
    let mut ort_library = None;
    if excluded_by_custom_ops(&spec_a, &spec_b, opts, &mut not_run, &mut notes)? {
    } else if matches!(opts.runtimes, Runtimes::Ort | Runtimes::Both) {
        child::mark("onnxruntime", "lib");
        if let Some((env, lib)) = ort_for_run(opts, &mut notes)? {
            let mut agree: Option<f64> = None;
            let mut shapes_differ = false;
            let load = |spec: &ModelSpec| {
                ort_rt::OrtModel::load(&env, &lib, &spec.path, opts.ort_optimize, opts.ort_device)
            };
            child::mark("onnxruntime", "A");
            match load(&spec_a) {
                Err(e) if !runtime_failure(&e) => return Err(e),
                Err(e) => {
                    // A load failure is the same in every case: listed once.
                    for (k, c) in cases.iter().enumerate() {
                        let n = cannot_run(Runtime::Ort, k, c, &e);
                        if k == 0 {
                            not_run.push(NotRun { case: None, ..n });
                        }
                    }
                }
                Ok(mut model_a) => {
                    child::mark("onnxruntime", "B");
                    let mut model_b = load(&spec_b);
                    for (k, c) in cases.iter().enumerate() {
                        child::mark("onnxruntime", "A");
                        let outs_a = match run_ort_with(&mut model_a, &spec_a, &c.samples) {
                            Ok(o) => o,
                            Err(e) if !runtime_failure(&e) => return Err(e),
                            Err(e) => {
                                not_run.push(cannot_run(Runtime::Ort, k, c, &e));
                                continue;
                            }
                        };
                        if cache[k].is_none() {
                            cache[k] =
                                cache_check(Runtime::Ort, &spec_a, &c.samples, &outs_a, |s| {
                                    run_ort_with(&mut model_a, &spec_a, s)
                                });
                        }
                        let case = label(c);
                        match &mut model_b {
                            Ok(mb) => match run_ort_marked(mb, &spec_b, &c.samples) {
                                Ok(outs_b) => rows.extend(compare(
                                    Runtime::Ort,
                                    case.as_deref(),
                                    &spec_a,
                                    &outs_a,
                                    &outs_b,
                                    opts.rtol,
                                )),
                                Err(e) => rows.extend(b_failed(
                                    Runtime::Ort,
                                    case.as_deref(),
                                    &spec_a,
                                    &e,
                                )?),
                            },
                            Err(e) => {
                                rows.extend(b_failed(Runtime::Ort, case.as_deref(), &spec_a, e)?)
                            }
                        }
                        if !ran.contains(&Runtime::Ort) {
                            ran.push(Runtime::Ort);
                        }
                        ort_library = Some(lib.clone());
                        if let Some(t) = &tract_ref[k] {
                            let worst = t
                                .iter()
                                .zip(&outs_a)
                                .map(|(x, y)| report::max_rel(x, y))
                                .try_fold(0f64, |m, r| r.map(|r| m.max(r)));
                            match worst {
                                Some(w) => agree = Some(agree.map_or(w, |a: f64| a.max(w))),
                                None => shapes_differ = true,
                            }
                        }
                        if !spec_a.quantized.is_empty() {
                            ort_ref[k] = Some(outs_a);
                        }
                    }
                    if !spec_a.quantized.is_empty() {
                        // One nudged copy at a time: the two sessions go first.
                        drop(model_b);
                        drop(model_a);
                        quantized = Some(quant_floor(
                            &env, &lib, &spec_a, opts, &cases, &ort_ref, &mut rows,
                        ));
                    }
                }
            }
            if shapes_differ {
                notes.push("tract and onnxruntime give A's outputs different shapes".into());
            } else if let Some(w) = agree {
                notes.push(format!(
                    "tract and onnxruntime agree on A to max|Δ|/max|ref| = {w:.2e}"
                ));
            }
        }
    }

    if rows.is_empty() {
        let reasons: Vec<String> = original
            .iter()
            .zip(&cases)
            .flat_map(|(r, c)| {
                r.iter().map(move |r| match label(c) {
                    Some(l) => format!("{r} (at {l})"),
                    None => r.clone(),
                })
            })
            .collect();
        if !reasons.is_empty() {
            return Err(VerifyError::NoRuntime {
                path: a.to_path_buf(),
                reasons,
                hint: None,
            });
        }
    }
    let not_covered = unverified_cases(&cases, &rows, |k| original[k].clone());

    Ok(report_of(
        (a, b),
        opts,
        &cases,
        Ran {
            runtimes: ran,
            ort_library,
            rows,
            notes,
            not_run,
            not_covered,
            cache,
            quantized,
        },
        start,
    ))
}

/// A `not_covered` line for each case of `cases` no row verified because no runtime could run
/// the original there (`reasons(k)`: why, for case `k`; empty when it was not for that).
fn unverified_cases(
    cases: &[GeneratedInputs],
    rows: &[Row],
    reasons: impl Fn(usize) -> Vec<String>,
) -> Vec<String> {
    let multi = cases.len() > 1;
    cases
        .iter()
        .enumerate()
        .filter(|(_, c)| !rows.iter().any(|r| r.case == multi.then(|| c.case.clone())))
        .filter_map(|(k, c)| {
            let why = reasons(k);
            (!why.is_empty()).then(|| {
                format!(
                    "case {} was NOT verified: no runtime could run the original there ({})",
                    c.case,
                    why.join("; ")
                )
            })
        })
        .collect()
}

/// Before anything runs: the options checked, both models' specs (same interface), the inputs
/// of every case (which B's declared shapes accept).
#[allow(clippy::type_complexity)]
fn prepare(
    a: &Path,
    b: &Path,
    opts: &VerifyOptions,
) -> Result<(ModelSpec, ModelSpec, Vec<GeneratedInputs>), VerifyError> {
    if let Some(r) = opts.rtol {
        if !r.is_finite() || r < 0.0 {
            return Err(VerifyError::Options(format!(
                "--rtol must be a finite number ≥ 0, got {r}"
            )));
        }
    }
    let spec_a = ModelSpec::from_path(a)?;
    let spec_b = ModelSpec::from_path(b)?;
    check_interfaces(&spec_a, &spec_b)?;
    let cases = generate_for(&spec_a, Some(&spec_b), opts)?;
    for c in &cases {
        check_shapes_fit(&spec_a, &spec_b, &c.samples[0])?;
    }
    Ok((spec_a, spec_b, cases))
}

/// The notes of every case, each once.
fn case_notes(cases: &[GeneratedInputs]) -> Vec<String> {
    let mut notes: Vec<String> = Vec::new();
    for n in cases.iter().flat_map(|c| &c.notes) {
        if !notes.contains(n) {
            notes.push(n.clone());
        }
    }
    notes
}

/// This crate's own ops (`--emit custom`) exist in tract only, through
/// `tract_onnx_with_extensions`: when either model uses one and onnxruntime was asked for, it is
/// not run at all (listed as not run, with a note; so a required onnxruntime is not an error)
/// and `true` is returned — unless onnxruntime alone was asked for, which is an error.
fn excluded_by_custom_ops(
    spec_a: &ModelSpec,
    spec_b: &ModelSpec,
    opts: &VerifyOptions,
    not_run: &mut Vec<NotRun>,
    notes: &mut Vec<String>,
) -> Result<bool, VerifyError> {
    let mut custom_ops: Vec<String> = spec_a.custom_ops.clone();
    custom_ops.extend(spec_b.custom_ops.iter().cloned());
    custom_ops.sort();
    custom_ops.dedup();
    if custom_ops.is_empty() || !matches!(opts.runtimes, Runtimes::Ort | Runtimes::Both) {
        return Ok(false);
    }
    let which = if spec_b.custom_ops.is_empty() {
        spec_a
    } else {
        spec_b
    };
    if opts.runtimes == Runtimes::Ort {
        return Err(VerifyError::Ort {
            stage: "load",
            path: which.path.clone(),
            message: format!(
                "the model uses {}, this crate's own op(s), which onnxruntime cannot run; \
                 verify with --runtime tract",
                custom_ops.join(", ")
            ),
        });
    }
    not_run.push(NotRun {
        runtime: Runtime::Ort,
        case: None,
        why: format!("custom op {}", custom_ops.join(", ")),
    });
    notes.push(format!(
        "onnxruntime NOT used: {} uses {}, which only tract runs (registered by \
         tract_onnx_with_extensions); verified with tract alone",
        which.path.display(),
        custom_ops.join(", ")
    ));
    Ok(true)
}

/// What a verification ran and found.
struct Ran {
    runtimes: Vec<Runtime>,
    ort_library: Option<PathBuf>,
    rows: Vec<Row>,
    notes: Vec<String>,
    not_run: Vec<NotRun>,
    /// What was not checked ([`VerifyReport::not_covered`]).
    not_covered: Vec<String>,
    /// Per case, whether its filled cache was read.
    cache: Vec<Option<CacheCheck>>,
    quantized: Option<QuantFloor>,
}

/// The report of verifying `b` against `a` (`ab`) over `cases`, started at `start`.
fn report_of(
    ab: (&Path, &Path),
    opts: &VerifyOptions,
    cases: &[GeneratedInputs],
    ran: Ran,
    start: Instant,
) -> VerifyReport {
    let first = cases.first();
    VerifyReport {
        a: ab.0.to_path_buf(),
        b: ab.1.to_path_buf(),
        runtimes: ran.runtimes,
        samples: opts.samples,
        seed: opts.seed,
        dims: first.map(|c| c.dims.clone()).unwrap_or_default(),
        inputs: first.map(|c| c.summary.clone()).unwrap_or_default(),
        cases: cases
            .iter()
            .zip(ran.cache)
            .map(|(c, cache)| CaseReport {
                label: c.case.clone(),
                dims: c.dims.clone(),
                inputs: c.summary.clone(),
                dim_origins: c.dim_origins.clone(),
                cache,
            })
            .collect(),
        ort_library: ran.ort_library,
        ort_optimize: opts.ort_optimize,
        rows: ran.rows,
        notes: ran.notes,
        not_run: ran.not_run,
        quantized: ran.quantized,
        elapsed_ms: start.elapsed().as_millis() as u64,
        pieces: None,
        not_covered: ran.not_covered,
    }
}

/// This crate's own ops (`ai.onnx_normopt:…`, which onnxruntime cannot run) that the model at
/// `path` uses; empty when it uses none or cannot be read.
pub fn custom_ops(path: &Path) -> Vec<String> {
    spec::ModelSpec::from_path(path)
        .map(|s| s.custom_ops)
        .unwrap_or_default()
}
