//! Comparing outputs and reporting: per runtime and output, max |Δ|, max |Δ| / max |ref| and the
//! verdict against the tolerance.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use super::tensor::{is_float, HostTensor, InputSummary};
use crate::passes::report::{Coverage, VerifiedAs};
use crate::proto::data_type as dt;

/// A runtime the verifier runs models in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// tract, in process.
    Tract,
    /// onnxruntime, loaded dynamically.
    #[serde(rename = "onnxruntime")]
    Ort,
}

impl Runtime {
    /// The runtime's display name: `tract` or `onnxruntime`.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Tract => "tract",
            Runtime::Ort => "onnxruntime",
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Default tolerance on max |Δ| / max |ref| for an output of ONNX element type `elem_type`:
/// - `f32`: `1e-4`. Measured on the corpus' 2-layer GPT-2: decomposing its LayerNorms into
///   ReduceMean/Sub/Mul/Sqrt/Div (an exact rewrite) moves the logits by up to 2.8e-6 of their
///   largest magnitude in onnxruntime, and tract and onnxruntime differ from each other by 5.9e-6
///   on the same model; deeper and wider models accumulate more, so `1e-5` would flag exact
///   rewrites. `1e-4` is also the bar the project's acceptance tool applies against PyTorch.
/// - `f64`: `1e-8` (the same noise is ~1e-15 in double precision).
/// - `f16`: `1e-2` (fp16 keeps 11 significant bits, 4.9e-4 per rounding, compounded per layer);
/// - `bf16`: `5e-2` (bf16 keeps 8 significant bits, 3.9e-3 per rounding);
/// - integers and booleans: `0` (must match exactly; `--rtol` does not apply to them).
pub fn default_tolerance(elem_type: i32) -> f64 {
    match elem_type {
        dt::FLOAT => 1e-4,
        dt::DOUBLE => 1e-8,
        dt::FLOAT16 => 1e-2,
        dt::BFLOAT16 => 5e-2,
        _ => 0.0,
    }
}

/// One comparison: one output of B against the same output of A, in one runtime, over every
/// sample.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// The runtime both models ran in.
    pub runtime: Runtime,
    /// The verification case (past length, branch flags) when the model is verified in several
    /// (KV-cache and merged decoders); `None` for a model verified in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
    /// The output's position in the graph outputs.
    pub index: usize,
    /// The output's name.
    pub output: String,
    /// The output's element type (`f32`, ...).
    pub dtype: String,
    /// The output's shape in the last sample.
    pub shape: Vec<usize>,
    /// The largest |B − A| over all elements and samples (finite reference values only).
    pub max_abs: f64,
    /// The largest per-sample max |B − A| / max |A|: the figure compared with `tolerance`.
    /// (0 when both are all zero, infinite when A is all zero and B is not.)
    pub max_rel: f64,
    /// The largest |A| over all samples.
    pub max_ref: f64,
    /// The tolerance on `max_rel`.
    pub tolerance: f64,
    /// Elements where B is not finite while A is, or where A is not finite and B differs from it.
    pub nonfinite: usize,
    /// Whether the output is within tolerance with no non-finite mismatch and the same shape.
    pub pass: bool,
    /// Why the row failed when it is not a matter of numbers (shape mismatch, ...), or a remark.
    pub detail: Option<String>,
    /// For a model that quantizes activations: the original's own sensitivity floor for this
    /// output ([`QuantFloor`]); the row passes when `max_rel` is within the larger of
    /// `tolerance` and this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor: Option<f64>,
}

/// Accumulates the comparison of one output over the samples.
#[derive(Debug)]
pub(crate) struct Accum {
    row: Row,
    ref_nonfinite: usize,
}

impl Accum {
    pub fn new(
        runtime: Runtime,
        index: usize,
        output: &str,
        elem_type: i32,
        rtol: Option<f64>,
    ) -> Accum {
        let tolerance = match rtol {
            Some(r) if is_float(elem_type) => r,
            _ => default_tolerance(elem_type),
        };
        Accum {
            row: Row {
                runtime,
                case: None,
                index,
                output: output.to_string(),
                dtype: dt::name(elem_type).to_string(),
                shape: Vec::new(),
                max_abs: 0.0,
                max_rel: 0.0,
                max_ref: 0.0,
                tolerance,
                nonfinite: 0,
                pass: true,
                detail: None,
                floor: None,
            },
            ref_nonfinite: 0,
        }
    }

    pub(crate) fn fail(&mut self, why: String) {
        self.row.pass = false;
        if self.row.detail.is_none() {
            self.row.detail = Some(why);
        }
    }

    /// Add one sample: `r` from model A (the reference), `c` from model B.
    pub fn add(&mut self, r: &HostTensor, c: &HostTensor) {
        self.row.shape = r.shape.clone();
        if r.elem_type != c.elem_type {
            self.fail(format!(
                "element type {} in A but {} in B",
                dt::name(r.elem_type),
                dt::name(c.elem_type)
            ));
            return;
        }
        if r.shape != c.shape {
            self.fail(format!("shape {:?} in A but {:?} in B", r.shape, c.shape));
            return;
        }
        let (Some(rv), Some(cv)) = (r.to_f64(), c.to_f64()) else {
            self.fail(format!(
                "cannot compare element types {} and {}",
                dt::name(r.elem_type),
                dt::name(c.elem_type)
            ));
            return;
        };
        let (mut max_abs, mut max_ref) = (0f64, 0f64);
        for (&a, &b) in rv.iter().zip(&cv) {
            if a.is_finite() {
                if !b.is_finite() {
                    self.row.nonfinite += 1;
                    continue;
                }
                max_abs = max_abs.max((b - a).abs());
                max_ref = max_ref.max(a.abs());
            } else {
                self.ref_nonfinite += 1;
                let same = (a.is_nan() && b.is_nan()) || a == b;
                if !same {
                    self.row.nonfinite += 1;
                }
            }
        }
        let rel = if max_ref > 0.0 {
            max_abs / max_ref
        } else if max_abs == 0.0 {
            0.0
        } else {
            f64::INFINITY
        };
        self.row.max_abs = self.row.max_abs.max(max_abs);
        self.row.max_ref = self.row.max_ref.max(max_ref);
        self.row.max_rel = self.row.max_rel.max(rel);
    }

    pub fn finish(mut self) -> Row {
        if self.row.nonfinite > 0 {
            self.fail(format!("{} non-finite mismatch(es)", self.row.nonfinite));
        }
        if self.row.max_rel > self.row.tolerance || self.row.max_rel.is_nan() {
            self.row.pass = false;
        }
        if self.ref_nonfinite > 0 && self.row.detail.is_none() {
            self.row.detail = Some(format!(
                "A itself has {} non-finite value(s)",
                self.ref_nonfinite
            ));
        }
        self.row
    }
}

/// The largest max |x − y| / max |x| over the outputs of two runs of the same model (used to
/// check that two runtimes agree on model A).
pub(crate) fn max_rel(a: &[HostTensor], b: &[HostTensor]) -> Option<f64> {
    let mut worst = 0f64;
    for (x, y) in a.iter().zip(b) {
        if x.shape != y.shape {
            return None;
        }
        let (xv, yv) = (x.to_f64()?, y.to_f64()?);
        let (mut d, mut m) = (0f64, 0f64);
        for (&p, &q) in xv.iter().zip(&yv) {
            if p.is_finite() && q.is_finite() {
                d = d.max((p - q).abs());
                m = m.max(p.abs());
            }
        }
        worst = worst.max(if m > 0.0 { d / m } else { d });
    }
    Some(worst)
}

/// A runtime that was asked for but not run, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NotRun {
    /// The runtime.
    pub runtime: Runtime,
    /// The case it was not run in (`None`: in any case).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
    /// Why (e.g. `custom op ai.onnx_normopt:CRMSNormalization`, or
    /// `cannot run the original: …` when the runtime fails on model A itself, which is no
    /// verdict on B).
    pub why: String,
}

/// The prefix of [`NotRun::why`] for a runtime that cannot run model A.
pub const CANNOT_RUN_ORIGINAL: &str = "cannot run the original";

impl fmt::Display for NotRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self
            .case
            .as_deref()
            .map(|c| format!(" in case {c}"))
            .unwrap_or_default();
        if self.why.starts_with(CANNOT_RUN_ORIGINAL) {
            write!(f, "{}{at}, {}", self.runtime.name(), self.why)
        } else {
            write!(f, "{}{at} ({})", self.runtime.name(), self.why)
        }
    }
}

/// One verification case: its label, the dynamic dims and the inputs it used.
#[derive(Clone, Debug, Serialize)]
pub struct CaseReport {
    /// The case's name (`default`, or e.g. `past_sequence_length=8 sequence_length=4`).
    pub label: String,
    /// The dynamic dimensions used.
    pub dims: BTreeMap<String, usize>,
    /// How each input was generated.
    pub inputs: Vec<InputSummary>,
    /// Where each dim's size came from: `--dim`, `the case`, `default (…)`, or the node of the
    /// graph that fixes it and why.
    pub dim_origins: BTreeMap<String, String>,
    /// For a case with a filled cache: whether the original reads it.
    pub cache: Option<CacheCheck>,
}

/// Whether a filled-cache case exercises its cache: the original run again with its past
/// inputs changed (each value `x` replaced by `1 - x`); a model that reads its cache gives
/// other outputs.
#[derive(Clone, Debug, Serialize)]
pub struct CacheCheck {
    /// The runtime that ran the check (the first to run the original in this case).
    pub runtime: Runtime,
    /// The past inputs changed.
    pub perturbed: Vec<String>,
    /// The outputs compared (those that are not the cache itself).
    pub outputs: Vec<String>,
    /// The largest change of those outputs, max|Δ|/max|ref|.
    pub max_rel_change: f64,
    /// Whether that change is more than rounding: the cache is read.
    pub reads: bool,
}

/// A model whose activations are quantized inside the graph (`MatMulNBits` at
/// `accuracy_level` 4, `DynamicQuantizeLinear`, `MatMulInteger`, QDQ around activations) rounds
/// them to integers: a change of one float ulp before such an op can move a value across a
/// rounding step, and the outputs by that step. The rewrite is exact in real arithmetic but
/// not in floats, so it is judged against what the original itself does under one-ulp changes:
/// the original run with the weights of its norms (`nudged`) moved by one ulp each, in
/// directions drawn `draws` times, on the same inputs. Both numbers are reported per output.
#[derive(Clone, Debug, Serialize)]
pub struct QuantFloor {
    /// The ops that quantize activations, grouped (`MatMulNBits ×9 (accuracy_level 4: int8
    /// activations)`).
    pub ops: Vec<String>,
    /// The initializers nudged by one ulp.
    pub nudged: Vec<String>,
    /// How many nudged copies of the original ran (more when the rewrite differs beyond the
    /// float tolerance).
    pub draws: usize,
    /// Per output: the largest max|Δ|/max|ref| between the original and a nudged copy, over
    /// draws, cases and samples (in onnxruntime).
    pub floor: BTreeMap<String, f64>,
    /// Per output: the rewrite's largest max|Δ|/max|ref| (in onnxruntime).
    pub rewrite: BTreeMap<String, f64>,
    /// Why the floor was not measured, when it was not.
    pub not_measured: Option<String>,
}

/// The result of [`verify_files`](super::verify_files): one [`Row`] per runtime and output.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    /// The reference model (A).
    pub a: PathBuf,
    /// The model checked against it (B).
    pub b: PathBuf,
    /// The runtimes that ran, in order.
    pub runtimes: Vec<Runtime>,
    /// Number of random input samples.
    pub samples: usize,
    /// Seed of the input generator.
    pub seed: u64,
    /// The dynamic dimensions used (by `dim_param`, or `INPUT[AXIS]` for unnamed axes) in the
    /// first case.
    pub dims: BTreeMap<String, usize>,
    /// How each input was generated in the first case.
    pub inputs: Vec<InputSummary>,
    /// Every case verified (one for most models; an empty and a filled cache for KV-cache
    /// models; both branches for merged decoders), each with its dims and inputs.
    pub cases: Vec<CaseReport>,
    /// The onnxruntime library used, if onnxruntime ran.
    pub ort_library: Option<PathBuf>,
    /// Whether onnxruntime ran with its graph optimisations on.
    pub ort_optimize: bool,
    /// One row per runtime and output.
    pub rows: Vec<Row>,
    /// Remarks the user should see: a runtime that could not be used, runtime disagreement, ...
    pub notes: Vec<String>,
    /// Runtimes that were asked for but could not run these models, and why: onnxruntime for a
    /// model with this crate's custom ops; a runtime that cannot load or run model A (in one
    /// case or all), which is then verified by the other runtime.
    pub not_run: Vec<NotRun>,
    /// For a model that quantizes activations: the original's own floor and the rewrite's
    /// differences ([`QuantFloor`]).
    pub quantized: Option<QuantFloor>,
    /// Wall time of the whole verification, in milliseconds.
    pub elapsed_ms: u64,
    /// How the models were cut when they were verified piece by piece (`None`: whole).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pieces: Option<super::pieces::PiecesReport>,
    /// What this verification did not check, one line each (a case no runtime ran; in pieces,
    /// the checks that need a whole model).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_covered: Vec<String>,
}

impl VerifyReport {
    /// Whether every row passed (and at least one row exists).
    pub fn passed(&self) -> bool {
        !self.rows.is_empty() && self.rows.iter().all(|r| r.pass)
    }

    /// What it covered, as a rewrite's report records it
    /// ([`crate::passes::report::Report::add_verification`]).
    pub fn coverage(&self) -> Coverage {
        Coverage {
            how: match &self.pieces {
                None => VerifiedAs::Whole,
                Some(p) => VerifiedAs::Pieces {
                    count: p.summary.count,
                    largest: p.summary.largest,
                    largest_bytes: p.summary.largest_bytes,
                    largest_weight_bytes: p.summary.largest_weight_bytes,
                },
            },
            not_covered: self.not_covered.clone(),
        }
    }

    /// The rows that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| !r.pass)
    }

    /// Whether `runtime` ran.
    pub fn ran(&self, runtime: Runtime) -> bool {
        self.runtimes.contains(&runtime)
    }
}

/// The sizes the graph gave, and the cache check, of one case.
fn write_case_notes(f: &mut fmt::Formatter<'_>, c: &CaseReport, indent: &str) -> fmt::Result {
    for (name, origin) in &c.dim_origins {
        let graph = !(origin == "--dim" || origin == "the case" || origin.starts_with("default ("));
        if graph {
            let v = c.dims.get(name).copied().unwrap_or(0);
            writeln!(f, "{indent}{name}={v} from the graph: {origin}")?;
        }
    }
    if let Some(k) = &c.cache {
        let what = format!(
            "changing the past inputs ({}) moves {} by max|Δ|/max|ref| = {} in {}",
            k.perturbed.len(),
            k.outputs.join(", "),
            sci(k.max_rel_change),
            k.runtime.name()
        );
        if k.reads {
            writeln!(f, "{indent}cache: read ({what})")?;
        } else {
            writeln!(
                f,
                "{indent}cache: NOT read ({what}): this case does not exercise the cache"
            )?;
        }
    }
    Ok(())
}

fn sci(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x.is_finite() {
        format!("{x:.2e}")
    } else {
        format!("{x}")
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "verify {} (reference A) against {} (B)",
            self.a.display(),
            self.b.display()
        )?;
        // Rows name their case by number (`#1`), as listed above the table.
        let case_no = |c: &Option<String>| -> Option<String> {
            let c = c.as_ref()?;
            Some(match self.cases.iter().position(|k| &k.label == c) {
                Some(i) => format!("#{}", i + 1),
                None => c.clone(),
            })
        };
        let dims_text = |dims: &BTreeMap<String, usize>| {
            if dims.is_empty() {
                "none".to_string()
            } else {
                dims.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        if self.cases.len() > 1 {
            writeln!(
                f,
                "  samples: {}, seed: {}, {} cases",
                self.samples,
                self.seed,
                self.cases.len()
            )?;
            for (k, c) in self.cases.iter().enumerate() {
                writeln!(
                    f,
                    "  case #{} ({}): dynamic dims: {}",
                    k + 1,
                    c.label,
                    dims_text(&c.dims)
                )?;
                for i in &c.inputs {
                    writeln!(
                        f,
                        "    input {} {}{:?}: {}",
                        i.name, i.dtype, i.shape, i.values
                    )?;
                }
                write_case_notes(f, c, "    ")?;
            }
        } else {
            writeln!(
                f,
                "  samples: {}, seed: {}, dynamic dims: {}",
                self.samples,
                self.seed,
                dims_text(&self.dims)
            )?;
            for i in &self.inputs {
                writeln!(
                    f,
                    "  input {} {}{:?}: {}",
                    i.name, i.dtype, i.shape, i.values
                )?;
            }
            if let Some(c) = self.cases.first() {
                write_case_notes(f, c, "  ")?;
            }
        }
        let mut ran: Vec<String> = self
            .runtimes
            .iter()
            .map(|rt| match (rt, &self.ort_library) {
                (Runtime::Ort, Some(p)) => format!(
                    "onnxruntime (optimisations {}, {})",
                    if self.ort_optimize { "on" } else { "off" },
                    p.display()
                ),
                _ => rt.name().to_string(),
            })
            .collect();
        if ran.is_empty() {
            ran.push("none".into());
        }
        let mut ran = ran.join(", ");
        let mut skipped: Vec<String> = Vec::new();
        for rt in [Runtime::Tract, Runtime::Ort] {
            let why: Vec<String> = self
                .not_run
                .iter()
                .filter(|n| n.runtime == rt)
                .map(|n| {
                    NotRun {
                        case: case_no(&n.case),
                        ..n.clone()
                    }
                    .to_string()
                })
                .collect();
            if why.is_empty() && !self.ran(rt) {
                skipped.push(rt.name().to_string());
            }
            skipped.extend(why);
        }
        if !skipped.is_empty() {
            ran.push_str(&format!("; not run: {}", skipped.join("; ")));
        }
        writeln!(f, "  runtimes: {ran}")?;
        let ow = self
            .rows
            .iter()
            .map(|r| r.output.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let cw = self
            .rows
            .iter()
            .filter_map(|r| case_no(&r.case).map(|c| c.chars().count().max(4) + 2))
            .max()
            .unwrap_or(0);
        writeln!(
            f,
            "  {:<11}{:<cw$}  {:<ow$}  {:<5}  {:>9}  {:>15}  {:>9}  result",
            "runtime",
            if cw > 0 { "  case" } else { "" },
            "output",
            "dtype",
            "max|Δ|",
            "max|Δ|/max|ref|",
            "tolerance"
        )?;
        for r in &self.rows {
            let verdict = if r.pass {
                "ok".to_string()
            } else {
                "FAIL".to_string()
            };
            let detail = match (&r.detail, r.floor) {
                (Some(d), _) => format!(" ({d})"),
                (None, Some(fl)) => format!(" (floor {})", sci(fl)),
                (None, None) => String::new(),
            };
            let case = case_no(&r.case)
                .map(|c| format!("  {c}"))
                .unwrap_or_default();
            writeln!(
                f,
                "  {:<11}{case:<cw$}  {:<ow$}  {:<5}  {:>9}  {:>15}  {:>9}  {verdict}{detail}",
                r.runtime.name(),
                r.output,
                r.dtype,
                sci(r.max_abs),
                sci(r.max_rel),
                sci(r.tolerance),
            )?;
        }
        for n in &self.notes {
            writeln!(f, "  note: {n}")?;
        }
        for n in &self.not_covered {
            writeln!(f, "  NOT covered: {n}")?;
        }
        if let Some(q) = &self.quantized {
            writeln!(f, "  quantized activations: {}", q.ops.join(", "))?;
            match &q.not_measured {
                Some(why) => writeln!(f, "    the original's own floor was not measured: {why}")?,
                None => {
                    let per = |m: &BTreeMap<String, f64>| {
                        m.iter()
                            .map(|(k, v)| format!("{k} {}", sci(*v)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    writeln!(
                        f,
                        "    the original's own floor ({} norm weight tensor(s) nudged by one ulp, \
                         {} draws, onnxruntime): {}",
                        q.nudged.len(),
                        q.draws,
                        per(&q.floor)
                    )?;
                    writeln!(f, "    the rewrite's difference: {}", per(&q.rewrite))?;
                }
            }
            writeln!(
                f,
                "    warning: greedy decoding can flip where the top two logits are closer than \
                 the floor (near-ties), in the original as in the rewrite; rewrite the float \
                 model before quantizing it"
            )?;
        }
        let names: Vec<&str> = self.runtimes.iter().map(|r| r.name()).collect();
        if self.passed() {
            writeln!(f, "PASS: B matches A in {}", names.join(" and "))
        } else {
            let failed: Vec<String> = self
                .failures()
                .map(|r| match case_no(&r.case) {
                    Some(c) => format!("{} `{}` in case {c}", r.runtime.name(), r.output),
                    None => format!("{} `{}`", r.runtime.name(), r.output),
                })
                .collect();
            writeln!(f, "FAIL: {}", failed.join(", "))
        }
    }
}
