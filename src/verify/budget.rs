//! The memory budget of verification, checked before anything runs.
//!
//! From the shapes the verifier would feed (the same dims [`super::generate_cases`] resolves), the
//! crate's static shape inference ([`crate::ir::shape::Shapes::infer`]) and the models' weights
//! (initializers and constants, inline **and in external data files**), [`estimate`] bounds what
//! a verification run holds at once:
//!
//! - the runtimes themselves ([`RUNTIME_BYTES`]);
//! - the weights the runtimes hold: tract one model at a time ([`TRACT_WEIGHT_FACTOR`] × the
//!   larger model's weights), onnxruntime both sessions at once ([`ORT_WEIGHT_FACTOR`] × both);
//!   the larger of the two when both runtimes run;
//! - the generated inputs: every sample of every case is generated up front
//!   (`samples × Σ cases input bytes`);
//! - the outputs kept for comparison (A's in tract, A's and B's in onnxruntime:
//!   `3 × samples × Σ cases output bytes`);
//! - the live activations of one run, bounded above by the **sum of the sizes of every value a
//!   top-level node produces**, for the larger of A and B and the largest case (values whose shape
//!   inference cannot size are counted in [`BudgetEstimate::unsized_values`], not in bytes);
//!   one model runs at a time in each runtime.
//!
//! Element sizes come from the declared types, else 4 bytes.
//!
//! **Calibration** (`/usr/bin/time -v` maximum RSS of `onnx-normopt verify A B --runtime R` on
//! `bench/synth.py --kind gpt2` models with external data, batch 1, 128 tokens, and B their
//! rewrite; W the weights of one model; MiB):
//!
//! | model | W | tract | onnxruntime | both | estimate (both) |
//! |---|---|---|---|---|---|
//! | D 256, 2 layers, vocabulary 8192 | 22 | 83 | 148 | 172 | 236 |
//! | D 512, 4 layers | 245 | 487 | 830 | 901 | 980 |
//! | D 768, 12 layers | 620 | 1035 | 1526 | 1582 | 1999 |
//! | D 1024, 10 layers | 874 | 1365 | 2028 | 2068 | 2567 |
//!
//! Over a base of 80–150 MiB, tract grows by about 1.1–1.4 bytes per byte of W (it reads one
//! model's weights into memory and packs its matrix products), onnxruntime by about 1.0 per byte
//! of each of its two sessions (prepacking off: `ort_rt.rs`); both runtimes in one process
//! peak at onnxruntime's, once what tract freed is given back (`child.rs`). The constants
//! below make the estimate an upper bound on each row, 9–37 % above the measured peak. In
//! pieces (`pieces/`), measured on a 3.8 GB model: tract 1.3–1.4 bytes per byte of the
//! piece's weights, onnxruntime 1.0 (the plan assumes 1.5: `pieces::PIECE_WEIGHT_FACTOR`).
//!
//! [`plan`] compares the estimate with the budget. When the two whole models do not fit, it
//! plans verification **in pieces** (`pieces/`): then one piece's weights, activations
//! and crossing values are held at a time, and the estimate is that of the largest piece
//! ([`Mode::Pieces`]). When neither fits, dynamic dims the user did not set are halved, largest
//! first, until one does (the dims chosen are returned as `--dim` values); when even the smallest
//! dims do not fit, verification is refused with [`super::VerifyError::OverBudget`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use super::spec::{self, ModelSpec};
use super::{VerifyError, VerifyOptions};
use crate::ir::shape::{Dim, Shapes};
use crate::ir::Graph;
use crate::proto::{data_type, ModelProto};

/// The default budget: the smaller of 2 GiB and a quarter of `MemAvailable` (`/proc/meminfo`;
/// 2 GiB where it cannot be read).
pub fn default_budget() -> u64 {
    const CAP: u64 = 2 << 30;
    let avail = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kib| kib.saturating_mul(1024))
    });
    match avail {
        Some(a) => CAP.min(a / 4).max(64 << 20),
        None => CAP,
    }
}

/// Parse a byte size: `1048576`, `512M`, `2G`, `1.5GiB`, `300MB`, `4k` (powers of 1024).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let x: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 2G, 512M, 1073741824)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("`{s}`: unknown unit (use K, M, G or T)")),
    };
    let v = x * mult as f64;
    if !v.is_finite() || v < 1.0 || v > u64::MAX as f64 {
        return Err(format!("`{s}` is not a usable size"));
    }
    Ok(v as u64)
}

/// A byte count for people: `3.0 GiB`, `12.5 MiB`, `800 B`.
pub fn human(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = b as f64;
    let mut k = 0;
    while x >= 1024.0 && k < U.len() - 1 {
        x /= 1024.0;
        k += 1;
    }
    if k == 0 {
        format!("{b} B")
    } else {
        format!("{x:.1} {}", U[k])
    }
}

/// Resident memory of the runtimes themselves before any model (libraries, thread pools,
/// allocator arenas): measured 80–150 MiB, see the module docs.
pub const RUNTIME_BYTES: u64 = 128 << 20;

/// tract: resident bytes per byte of the larger model's weights (it holds one model at a time).
pub const TRACT_WEIGHT_FACTOR: f64 = 1.5;

/// onnxruntime: resident bytes per byte of weights of each of its two sessions (A and B are
/// loaded at once).
pub const ORT_WEIGHT_FACTOR: f64 = 1.05;

/// How verification runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mode {
    /// Both whole models in each runtime.
    Whole,
    /// Piece by piece (`pieces/`, [`super::PiecesSummary`]).
    Pieces(super::pieces::PiecesSummary),
}

/// Weights of a model: every tensor it holds (initializers, constants, in bodies too), inline or
/// in external data.
pub(crate) fn weight_bytes(m: &ModelProto) -> u64 {
    let mut n = 0u64;
    crate::io::for_each_tensor(m, &mut |t| {
        n = n.saturating_add(super::pieces::cut::tensor_bytes(t));
    });
    n
}

/// What the runtimes hold of whole models with `wa` and `wb` bytes of weights.
fn weights_held(runtimes: super::Runtimes, wa: u64, wb: u64) -> u64 {
    let tract = (wa.max(wb) as f64 * TRACT_WEIGHT_FACTOR) as u64;
    let ort = (wa.saturating_add(wb) as f64 * ORT_WEIGHT_FACTOR) as u64;
    match runtimes {
        super::Runtimes::Tract => tract,
        super::Runtimes::Ort => ort,
        super::Runtimes::Both => tract.max(ort),
    }
}

/// One graph input as the estimate sized it (its largest case).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InputNeed {
    /// The input's name.
    pub name: String,
    /// The shape generated.
    pub shape: Vec<usize>,
    /// Bytes of one sample of it.
    pub bytes: u64,
    /// Its dynamic dims (names, or `INPUT[AXIS]`), empty when every dim is fixed.
    pub dynamic: Vec<String>,
}

/// The largest value one run produces.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Intermediate {
    /// `A` or `B`.
    pub model: String,
    /// The value's name.
    pub value: String,
    /// Its inferred shape.
    pub shape: Vec<i64>,
    /// Its bytes.
    pub bytes: u64,
}

/// A dynamic dim the budget made smaller than its default.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DimChange {
    /// The dim (`dim_param` name or `INPUT[AXIS]`).
    pub name: String,
    /// Its default.
    pub from: usize,
    /// The value used.
    pub to: usize,
}

/// What verification is estimated to need (see the module docs for what is counted).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BudgetEstimate {
    /// The budget compared with, in bytes.
    pub budget_bytes: u64,
    /// The estimate, in bytes: runtimes + weights held + inputs + kept outputs + activations.
    pub total_bytes: u64,
    /// Whole models, or pieces (and how many, the largest).
    pub mode: Mode,
    /// Whether the estimate fits the budget.
    pub fits: bool,
    /// Samples per case.
    pub samples: usize,
    /// Verification cases.
    pub cases: usize,
    /// Bytes of one sample of every input (the largest case).
    pub input_bytes_per_sample: u64,
    /// Bytes of all generated inputs (every sample of every case).
    pub input_bytes: u64,
    /// Bytes of the outputs kept for comparison.
    pub output_bytes: u64,
    /// Upper bound of one run's live activations: the sum of every sized value a node produces,
    /// for the larger model and the largest case (in pieces: the largest piece's, with the
    /// values crossing its cuts).
    pub activation_bytes: u64,
    /// The runtimes' own memory ([`RUNTIME_BYTES`]).
    pub runtime_bytes: u64,
    /// Memory for the weights the runtimes hold at once (whole models: see the module docs; in
    /// pieces: the largest piece's).
    pub weights_held_bytes: u64,
    /// The largest single value.
    pub largest_intermediate: Option<Intermediate>,
    /// Values whose size shape inference could not tell (not counted).
    pub unsized_values: usize,
    /// The weights of A and B (every tensor, inline or external), whole.
    pub weight_bytes: u64,
    /// Each input, largest first.
    pub inputs: Vec<InputNeed>,
    /// Dynamic dims the budget made smaller than their defaults.
    pub reduced: Vec<DimChange>,
    /// The dynamic dims of the last case estimated (user's `--dim`s, defaults, reductions).
    pub dims: BTreeMap<String, usize>,
}

struct Loaded<'a> {
    spec: &'a ModelSpec,
    proto: &'a ModelProto,
}

fn elem_bytes(t: i32) -> u64 {
    data_type::byte_size(t).filter(|&b| b > 0).unwrap_or(4) as u64
}

fn shape_bytes(shape: &[usize], elem: i32) -> u64 {
    shape
        .iter()
        .fold(elem_bytes(elem), |acc, &d| acc.saturating_mul(d as u64))
}

/// The sized values of one model for one case: the bytes of every value a top-level node
/// produces whose shape inference can size, and how many it cannot.
pub(crate) struct ValueSizes {
    /// Bytes of each sized value.
    pub bytes: HashMap<String, u64>,
    /// The largest value.
    pub largest: Option<Intermediate>,
    /// Values shape inference could not size.
    pub n_unsized: usize,
}

/// Size every value `proto`'s nodes produce when its inputs (`spec.inputs`) get `shapes`.
pub(crate) fn value_sizes(
    proto: &ModelProto,
    spec: &ModelSpec,
    which: &str,
    shapes: &[Vec<usize>],
) -> ValueSizes {
    let mut out = ValueSizes {
        bytes: HashMap::new(),
        largest: None,
        n_unsized: 0,
    };
    let Some(g) = proto.graph.as_ref() else {
        return out;
    };
    let mut g = g.clone();
    // The generated shapes replace the declared ones, so inference sees numbers.
    for (spec_in, shape) in spec.inputs.iter().zip(shapes) {
        if let Some(vi) = g
            .input
            .iter_mut()
            .find(|v| v.name.as_deref() == Some(spec_in.name.as_str()))
        {
            if let Some(tt) = vi.r#type.as_mut().and_then(|t| t.tensor_type.as_mut()) {
                tt.shape = Some(crate::proto::TensorShapeProto {
                    dim: shape
                        .iter()
                        .map(|&d| crate::proto::tensor_shape_proto::Dimension {
                            dim_value: Some(d as i64),
                            ..Default::default()
                        })
                        .collect(),
                });
            }
        }
    }
    let graph = Graph::from_proto(g);
    let inferred = Shapes::infer(&graph);
    for n in graph.nodes() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            let dims: Option<Vec<i64>> = inferred
                .get(o)
                .and_then(|d| d.iter().map(Dim::known).collect::<Option<Vec<_>>>());
            let Some(dims) = dims.filter(|d| d.iter().all(|&x| x >= 0)) else {
                out.n_unsized += 1;
                continue;
            };
            let elem = graph.declared_type(o).map(|t| t.0).unwrap_or(0);
            let b = dims
                .iter()
                .fold(elem_bytes(elem), |acc, &d| acc.saturating_mul(d as u64));
            out.bytes.insert(o.clone(), b);
            if out.largest.as_ref().is_none_or(|l| b > l.bytes) {
                out.largest = Some(Intermediate {
                    model: which.into(),
                    value: o.clone(),
                    shape: dims,
                    bytes: b,
                });
            }
        }
    }
    out
}

/// Activations of one model for one case: (sum, largest, n_unsized, outputs bytes).
fn activations(
    m: &Loaded,
    which: &str,
    shapes: &[Vec<usize>],
) -> (u64, Option<Intermediate>, usize, u64) {
    let sizes = value_sizes(m.proto, m.spec, which, shapes);
    let sum = sizes.bytes.values().fold(0u64, |a, &b| a.saturating_add(b));
    let outputs = m
        .spec
        .outputs
        .iter()
        .map(|o| sizes.bytes.get(o.name.as_str()).copied().unwrap_or(0))
        .fold(0u64, u64::saturating_add);
    (sum, sizes.largest, sizes.n_unsized, outputs)
}

/// Estimate what verifying `b` against `a` with `opts` needs (without comparing it with any
/// budget: `budget_bytes` is `budget`, `fits` says whether it is under it).
fn estimate_loaded(
    a: &Loaded,
    b: Option<&Loaded>,
    opts: &VerifyOptions,
    budget: u64,
) -> Result<BudgetEstimate, VerifyError> {
    estimate_whole(a, b, opts, budget).map(|(e, _)| e)
}

/// [`estimate_loaded`], and the input shapes of each case.
#[allow(clippy::type_complexity)]
fn estimate_whole(
    a: &Loaded,
    b: Option<&Loaded>,
    opts: &VerifyOptions,
    budget: u64,
) -> Result<(BudgetEstimate, Vec<Vec<Vec<usize>>>), VerifyError> {
    let samples = opts.samples.max(1) as u64;
    let mut case_shapes = Vec::new();
    let given = spec::with_hints(a.spec, &opts.dims);
    let plans = spec::plan_cases(a.spec, &given);
    let (mut input_all, mut output_all, mut act) = (0u64, 0u64, 0u64);
    let (mut largest, mut n_unsized) = (None::<Intermediate>, 0usize);
    let mut per_input: BTreeMap<String, InputNeed> = BTreeMap::new();
    let mut per_sample_max = 0u64;
    let mut dims = BTreeMap::new();
    for c in &plans {
        let r = spec::resolve_shapes(a.spec, &given, c).map_err(|message| VerifyError::Model {
            path: a.spec.path.clone(),
            message,
        })?;
        let mut per_sample = 0u64;
        for (i, shape) in a.spec.inputs.iter().zip(&r.shapes) {
            let bytes = shape_bytes(shape, i.elem_type);
            per_sample = per_sample.saturating_add(bytes);
            let dynamic = i
                .dims
                .as_deref()
                .unwrap_or_default()
                .iter()
                .enumerate()
                .filter_map(|(axis, d)| match d {
                    spec::Dim::Fixed(_) => None,
                    spec::Dim::Param(p) => Some(p.clone()),
                    spec::Dim::Expr(t, _) => Some(t.clone()),
                    spec::Dim::Unknown => Some(format!("{}[{axis}]", i.name)),
                })
                .collect();
            let need = InputNeed {
                name: i.name.clone(),
                shape: shape.clone(),
                bytes,
                dynamic,
            };
            match per_input.get(&i.name) {
                Some(p) if p.bytes >= bytes => {}
                _ => {
                    per_input.insert(i.name.clone(), need);
                }
            }
        }
        per_sample_max = per_sample_max.max(per_sample);
        case_shapes.push(r.shapes.clone());
        input_all = input_all.saturating_add(per_sample.saturating_mul(samples));
        for (m, which) in std::iter::once((a, "A")).chain(b.map(|b| (b, "B"))) {
            let (s, l, u, outs) = activations(m, which, &r.shapes);
            act = act.max(s);
            n_unsized = n_unsized.max(u);
            if let Some(l) = l {
                if largest.as_ref().is_none_or(|x| l.bytes > x.bytes) {
                    largest = Some(l);
                }
            }
            // A's outputs are kept in both runtimes, B's in one at a time.
            let kept = if which == "A" { 2 } else { 1 };
            output_all =
                output_all.saturating_add(outs.saturating_mul(samples).saturating_mul(kept));
        }
        dims = r.used;
    }
    let wa = weight_bytes(a.proto);
    let wb = b.map_or(wa, |b| weight_bytes(b.proto));
    let held = weights_held(opts.runtimes, wa, wb);
    let total = RUNTIME_BYTES
        .saturating_add(held)
        .saturating_add(input_all)
        .saturating_add(output_all)
        .saturating_add(act);
    let mut inputs: Vec<InputNeed> = per_input.into_values().collect();
    inputs.sort_by_key(|x| std::cmp::Reverse(x.bytes));
    let e = BudgetEstimate {
        budget_bytes: budget,
        total_bytes: total,
        mode: Mode::Whole,
        fits: total <= budget,
        samples: opts.samples,
        cases: plans.len(),
        input_bytes_per_sample: per_sample_max,
        input_bytes: input_all,
        output_bytes: output_all,
        activation_bytes: act,
        runtime_bytes: RUNTIME_BYTES,
        weights_held_bytes: held,
        largest_intermediate: largest,
        unsized_values: n_unsized,
        weight_bytes: wa.saturating_add(wb),
        inputs,
        reduced: Vec::new(),
        dims,
    };
    Ok((e, case_shapes))
}

/// The estimate of verifying in pieces ([`super::pieces`]), given the whole-model estimate at
/// the same dims: the runtimes, inputs and kept outputs as for whole models, plus the largest
/// piece (`None` when the graphs cannot be cut).
fn estimate_pieces(
    a: &Loaded,
    b: &Loaded,
    opts: &VerifyOptions,
    whole: &BudgetEstimate,
    shapes: &[Vec<Vec<usize>>],
) -> Option<BudgetEstimate> {
    let shared = RUNTIME_BYTES
        .saturating_add(whole.input_bytes)
        .saturating_add(whole.output_bytes);
    let limit = whole.budget_bytes.saturating_sub(shared);
    let plan = super::pieces::plan(
        (a.proto, a.spec),
        (b.proto, b.spec),
        shapes,
        opts.samples,
        limit,
    )
    .ok()?;
    let s = plan.summary;
    let held = (s.largest_weight_bytes as f64 * super::pieces::PIECE_WEIGHT_FACTOR) as u64;
    let total = shared.saturating_add(s.largest_bytes);
    Some(BudgetEstimate {
        total_bytes: total,
        fits: total <= whole.budget_bytes,
        weights_held_bytes: held,
        activation_bytes: s.largest_bytes.saturating_sub(held),
        mode: Mode::Pieces(s),
        ..whole.clone()
    })
}

/// Whole models if they fit, else pieces if they fit, else the whole-model estimate (the
/// smaller of the two when pieces do not fit either).
fn estimate_either(
    a: &Loaded,
    b: &Loaded,
    opts: &VerifyOptions,
    budget: u64,
) -> Result<BudgetEstimate, VerifyError> {
    let (whole, shapes) = estimate_whole(a, Some(b), opts, budget)?;
    if whole.fits {
        return Ok(whole);
    }
    Ok(match estimate_pieces(a, b, opts, &whole, &shapes) {
        Some(p) if p.fits || p.total_bytes < whole.total_bytes => p,
        _ => whole,
    })
}

/// Estimate what verifying `b` against `a` with `opts` needs (see the module docs), compared
/// with `budget` bytes. Reads both files' graphs; runs nothing.
pub fn estimate(
    a: &Path,
    b: Option<&Path>,
    opts: &VerifyOptions,
    budget: u64,
) -> Result<BudgetEstimate, VerifyError> {
    let (pa, sa) = load(a)?;
    let lb = b.map(load).transpose()?;
    let la = Loaded {
        spec: &sa,
        proto: &pa,
    };
    let lb = lb.as_ref().map(|(p, s)| Loaded { spec: s, proto: p });
    estimate_loaded(&la, lb.as_ref(), opts, budget)
}

fn load(p: &Path) -> Result<(ModelProto, ModelSpec), VerifyError> {
    let proto = spec::read_model(p)?;
    let spec = ModelSpec::from_model(p, &proto)?;
    Ok((proto, spec))
}

/// Check verification of `b` against `a` against `budget` bytes before anything runs, choosing
/// dynamic dims to fit: returns the options to verify with (the chosen dims added as `--dim`
/// values) and the estimate. Dims the user set (`opts.dims`) and the cache lengths of the
/// KV-cache cases are kept; every other dynamic dim may be halved, largest first, down to 1.
/// When the estimate still exceeds the budget: [`VerifyError::OverBudget`], naming what needs
/// the memory and how to proceed.
pub fn plan(
    a: &Path,
    b: &Path,
    opts: &VerifyOptions,
    budget: u64,
) -> Result<(VerifyOptions, BudgetEstimate), VerifyError> {
    plan_as(a, b, opts, budget, "verification")
}

/// [`plan`], its refusal saying `{subject} would need about …`.
pub(crate) fn plan_as(
    a: &Path,
    b: &Path,
    opts: &VerifyOptions,
    budget: u64,
    subject: &str,
) -> Result<(VerifyOptions, BudgetEstimate), VerifyError> {
    let (pa, sa) = load(a)?;
    let (pb, sb) = load(b)?;
    let la = Loaded {
        spec: &sa,
        proto: &pa,
    };
    let lb = Loaded {
        spec: &sb,
        proto: &pb,
    };
    let first = estimate_either(&la, &lb, opts, budget)?;
    if first.fits {
        return Ok((opts.clone(), first));
    }
    // Dims that may shrink: dynamic, not set by the user, not set by a case.
    // (Sizes the graph fixes count as set.)
    let given = spec::with_hints(&sa, &opts.dims);
    let plans = spec::plan_cases(&sa, &given);
    let by_graph = spec::sized_by_graph(&sa, &opts.dims);
    let fixed_by_case: Vec<&String> = plans
        .iter()
        .flat_map(|c| c.dims.keys())
        .chain(&by_graph)
        .collect();
    let defaults = first.dims.clone();
    let mut free: BTreeMap<String, usize> = defaults
        .iter()
        .filter(|(k, _)| {
            !given.contains_key(*k)
                && !fixed_by_case.contains(k)
                && spec::DimExpr::parse(k).is_none_or(|e| e.names() == [k.as_str()])
        })
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let mut cur = opts.clone();
    let mut est = first.clone();
    while let Some((name, v)) = free
        .iter()
        .filter(|(_, v)| **v > 1)
        .max_by_key(|(_, v)| **v)
        .map(|(k, v)| (k.clone(), *v))
    {
        let nv = v / 2;
        free.insert(name.clone(), nv);
        cur.dims.insert(name, nv);
        est = estimate_either(&la, &lb, &cur, budget)?;
        if est.fits {
            break;
        }
    }
    est.reduced = cur
        .dims
        .iter()
        .filter(|(k, _)| !opts.dims.contains_key(*k))
        .map(|(k, &to)| DimChange {
            name: k.clone(),
            from: defaults.get(k).copied().unwrap_or(to),
            to,
        })
        .collect();
    if est.fits {
        return Ok((cur, est));
    }
    Err(VerifyError::OverBudget {
        path: a.to_path_buf(),
        message: over_budget_message(subject, &first, &est),
    })
}

/// The explanation of a refusal: what it needs, what causes it, what to do.
fn over_budget_message(subject: &str, first: &BudgetEstimate, smallest: &BudgetEstimate) -> String {
    let e = smallest;
    let how = match &e.mode {
        Mode::Whole => format!("weights {} held", human(e.weights_held_bytes)),
        Mode::Pieces(p) => format!(
            "even in {} pieces: the largest, piece {}, {} with {} of weights",
            p.count,
            p.largest,
            human(p.largest_bytes),
            human(p.largest_weight_bytes)
        ),
    };
    let mut parts = vec![format!(
        "{subject} would need about {} ({how}; the runtimes {}, inputs {} per sample × {} \
         sample(s){}, activations up to {}{}), over its budget of {}",
        human(e.total_bytes),
        human(e.runtime_bytes),
        human(e.input_bytes_per_sample),
        e.samples,
        if e.cases > 1 {
            format!(" × {} cases", e.cases)
        } else {
            String::new()
        },
        human(e.activation_bytes),
        e.largest_intermediate
            .as_ref()
            .map(|l| format!(
                ", the largest value `{}` {:?} = {}",
                l.value,
                l.shape,
                human(l.bytes)
            ))
            .unwrap_or_default(),
        human(e.budget_bytes)
    )];
    let causes: Vec<String> = e
        .inputs
        .iter()
        .filter(|i| i.bytes > 0)
        .take(3)
        .map(|i| {
            let how = if i.dynamic.is_empty() {
                "all dims fixed".to_string()
            } else {
                format!("dynamic: {}", i.dynamic.join(", "))
            };
            format!(
                "input `{}` {:?} = {} ({how})",
                i.name,
                i.shape,
                human(i.bytes)
            )
        })
        .collect();
    if !causes.is_empty() {
        parts.push(format!("it comes from {}", causes.join(", ")));
    }
    if !e.reduced.is_empty() {
        parts.push(format!(
            "even with {}",
            e.reduced
                .iter()
                .map(|d| format!("{}={}", d.name, d.to))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let dynamic: Vec<&String> = first.inputs.iter().flat_map(|i| &i.dynamic).collect();
    let mut todo = vec!["pass --no-verify to write the rewrite unverified".to_string()];
    if !dynamic.is_empty() {
        todo.push(format!(
            "--dim NAME=VALUE to make symbolic dims smaller ({})",
            dynamic
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    todo.push(format!(
        "a larger --verify-budget (about {})",
        budget_hint(e.total_bytes)
    ));
    let dim_note = if dynamic.is_empty() {
        " (--dim cannot help: every input dim is fixed)"
    } else {
        ""
    };
    format!(
        "{}; nothing was run. To proceed: {}{dim_note}",
        parts.join("; "),
        todo.join(", or ")
    )
}

/// A round `--verify-budget` value above `b`.
fn budget_hint(b: u64) -> String {
    let g = (b as f64 / (1u64 << 30) as f64 * 1.25).ceil().max(1.0);
    format!("{}G", g as u64)
}
