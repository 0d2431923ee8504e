//! The rewrite passes.
//!
//! Pass order, and why:
//! 1. **match** (`norms/`): find every normalisation in every form; LayerNorm-looking
//!    patterns that do not match keep their reason.
//! 2. **analyse** (`stream.rs`): grow the residual streams from the norms' inputs; each stream
//!    knows its width, leaves (sources, writers), readers, and whether anything observes it.
//! 3. **decide** (`decide.rs`): refuse observed streams, Post-LN, streams already on RMSNorm, streams
//!    that would need more explicit centering nodes than norms they convert; refusal flows from
//!    a stream to the one whose LayerNorm feeds it (BERT's embedding LayerNorm belongs to its
//!    Post-LN encoder).
//! 4. **plan** (`rewrite::plan`): weight edits, folds, centering nodes — nothing mutated.
//! 5. **compress** (`--target crmsnorm` only; its own phase, run on each stream after its
//!    plan): sources and writers drop the last output column, readers fold it in
//!    (W' = W[0:D−1] − W[D−1]), norms become CRMSNorm, shape constants that hard-code D become
//!    D−1 (design §4).
//! 6. **patch** (`rewrite::lower`, `rewrite::drive`): the plan becomes an ordered list of
//!    named patches, which one driver applies — the one place that mutates the graph; it checks
//!    the graph after each patch when asked ([`Options::check_each_patch`]) and at the end.
//!
//! The identities (design §3): with mean(x) = 0, LN(x) = RMS(x) with the same γ, β, ε;
//! centring every source and writer keeps every stream value zero-mean; a norm's affine folds
//! into linear readers as W' = diag(γ)·W, b' = b + β·W.

// The phases are internal: a pipeline uses `run`/`inspect`, `Options` and the `report`.
mod decide;
pub(crate) mod edit;
pub(crate) mod emit;
pub(crate) mod math;
pub(crate) mod norms;
pub mod report;
pub(crate) mod rewrite;
pub(crate) mod stream;
pub(crate) mod subgraph;
#[cfg(test)]
mod tests;

pub use emit::Emit;

use crate::ir::{shape::Shapes, Model, NodeExt};
use crate::{Error, Result};
use norms::{Ctx, NormKind};
use report::{LeftAlone, Report, StreamReport, StreamStatus, Why};
use std::collections::BTreeMap;
use stream::{Analysis, Leaf};

/// Which normalisation the rewrite targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Pre-RMSNorm: same width, RMSNorm instead of LayerNorm.
    #[default]
    Rmsnorm,
    /// Pre-CRMSNorm: streams compressed to width D−1.
    Crmsnorm,
}

impl Target {
    /// Every target, in the order the command line lists them.
    pub const ALL: [Target; 2] = [Target::Rmsnorm, Target::Crmsnorm];

    /// The target's name: `rmsnorm` or `crmsnorm` (`--target`, the report, provenance). The one
    /// mapping between targets and words: [`Target::from_name`] is its inverse.
    pub fn name(self) -> &'static str {
        match self {
            Target::Rmsnorm => "rmsnorm",
            Target::Crmsnorm => "crmsnorm",
        }
    }

    /// The target named `name` ([`Target::name`]); a usage error for another word.
    pub fn from_name(name: &str) -> Result<Target> {
        Target::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "target must be \"rmsnorm\" or \"crmsnorm\", not {name:?}"
                ))
            })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How CRMSNorm is written (`--target crmsnorm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CrmsEmit {
    /// Standard ONNX ops.
    #[default]
    Standard,
    /// Standard ONNX ops, as `Standard`; the model also imports onnxruntime's `com.microsoft`
    /// domain when a Skip norm was rewritten, as `--emit onnxruntime` does for RMSNorm.
    Onnxruntime,
    /// One op `ai.onnx_normopt:CRMSNormalization` (schema in [`crate::ops`]; tract runs it
    /// as one fused op through [`crate::verify::tract_onnx_with_extensions`], onnxruntime cannot
    /// run it). The model imports `ai.onnx_normopt` version 1.
    Custom,
}

/// What the rewrite writes: the target normalisation and the ops it is written in. One value,
/// so that an invalid combination (CRMSNorm's custom op on an RMSNorm target) cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputForm {
    /// Pre-RMSNorm: same width, RMSNorm written as [`Emit`] says.
    Rms(Emit),
    /// Pre-CRMSNorm: streams compressed to width D−1, CRMSNorm written as [`CrmsEmit`] says.
    Crms(CrmsEmit),
}

impl Default for OutputForm {
    fn default() -> Self {
        OutputForm::Rms(Emit::Standard)
    }
}

impl OutputForm {
    /// The form for the command line's `--target` and `--emit` (`standard`, `onnxruntime`,
    /// `custom`): a usage error for `custom` without `--target crmsnorm`, or another word.
    pub fn from_flags(target: Target, emit: &str) -> Result<OutputForm> {
        match (target, emit) {
            (Target::Rmsnorm, "standard") => Ok(OutputForm::Rms(Emit::Standard)),
            (Target::Rmsnorm, "onnxruntime") => Ok(OutputForm::Rms(Emit::Onnxruntime)),
            (Target::Crmsnorm, "standard") => Ok(OutputForm::Crms(CrmsEmit::Standard)),
            (Target::Crmsnorm, "onnxruntime") => Ok(OutputForm::Crms(CrmsEmit::Onnxruntime)),
            (Target::Crmsnorm, "custom") => Ok(OutputForm::Crms(CrmsEmit::Custom)),
            (Target::Rmsnorm, "custom") => Err(Error::Usage(
                "--emit custom writes CRMSNorm as one custom op, so it needs --target crmsnorm \
                 (for RMSNorm use --emit standard or --emit onnxruntime)"
                    .into(),
            )),
            (_, e) => Err(Error::Usage(format!(
                "emit must be \"standard\", \"onnxruntime\" or \"custom\", not {e:?}"
            ))),
        }
    }

    /// The target normalisation.
    pub fn target(self) -> Target {
        match self {
            OutputForm::Rms(_) => Target::Rmsnorm,
            OutputForm::Crms(_) => Target::Crmsnorm,
        }
    }

    /// The `--emit` word of this form (the report's `emit`).
    pub fn emit_name(self) -> &'static str {
        match self {
            OutputForm::Rms(Emit::Standard) | OutputForm::Crms(CrmsEmit::Standard) => "standard",
            OutputForm::Rms(Emit::Onnxruntime) | OutputForm::Crms(CrmsEmit::Onnxruntime) => {
                "onnxruntime"
            }
            OutputForm::Crms(CrmsEmit::Custom) => "custom",
        }
    }

    /// How RMSNorm (and the Skip norms' domain import) is written.
    fn rms_emit(self) -> Emit {
        match self {
            OutputForm::Rms(e) => e,
            OutputForm::Crms(CrmsEmit::Onnxruntime) => Emit::Onnxruntime,
            OutputForm::Crms(_) => Emit::Standard,
        }
    }

    /// How CRMSNorm is written.
    fn crms_emit(self) -> CrmsEmit {
        match self {
            OutputForm::Rms(_) => CrmsEmit::Standard,
            OutputForm::Crms(c) => c,
        }
    }
}

/// The target written in standard ONNX ops.
impl From<Target> for OutputForm {
    fn from(t: Target) -> Self {
        match t {
            Target::Rmsnorm => OutputForm::Rms(Emit::Standard),
            Target::Crmsnorm => OutputForm::Crms(CrmsEmit::Standard),
        }
    }
}

/// Options of the pass.
#[derive(Clone, Debug)]
pub struct Options {
    /// Target normalisation and op form.
    pub form: OutputForm,
    /// Fold γ/β into linear readers.
    pub fold: bool,
    /// Allow explicit centering nodes at all.
    pub allow_centering: bool,
    /// Weight edits of initializers of at least this many bytes run while the model is
    /// written, a block of rows at a time (bounded memory); smaller ones in memory at once.
    pub defer_bytes: usize,
    /// Check the graph after each patch of the rewrite (the patch driver), not only at the
    /// end (CLI `--check-patches`; the test suite always sets it).
    pub check_each_patch: bool,
    /// Apply only the first N patches, over the main graph then its subgraphs (CLI
    /// `--stop-after N`, to bisect a broken rewrite: the result is valid but in general not
    /// equivalent).
    pub stop_after: Option<usize>,
    /// Told the description of each patch before it is applied (CLI `-v`).
    pub patch_log: Option<PatchLog>,
}

/// A callback that is told each patch's one-line description, in order (in a subgraph, the
/// description starts with the body's label).
#[derive(Clone)]
pub struct PatchLog(pub std::sync::Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for PatchLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PatchLog")
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            form: OutputForm::default(),
            fold: true,
            allow_centering: true,
            defer_bytes: rewrite::DEFER_BYTES,
            check_each_patch: false,
            stop_after: None,
            patch_log: None,
        }
    }
}

/// The result of a pass: the rewritten model and what was done.
#[derive(Debug)]
pub struct Outcome {
    /// The model (unchanged when nothing was rewritten).
    pub model: Model,
    /// The report.
    pub report: Report,
    /// How many patches were applied (main graph and subgraphs).
    pub patches: usize,
}

impl Outcome {
    /// Whether any norm was rewritten.
    pub fn rewritten(&self) -> bool {
        self.report.norms_rewritten > 0
    }
}

/// Analyse a model without changing it: the report of what the rewrite would do.
pub fn inspect(model: &Model, opts: &Options) -> Result<Report> {
    Ok(run(model.clone(), opts)?.report)
}

/// Run the pass: on the main graph, then inside its subgraphs (If/Loop/Scan bodies,
/// recursively; see `subgraph.rs`).
pub fn run(model: Model, opts: &Options) -> Result<Outcome> {
    let out = run_graph(model, opts)?;
    subgraph::rewrite_bodies(out, opts)
}

/// The pass on one graph, its subgraphs left as they are.
fn run_graph(mut model: Model, opts: &Options) -> Result<Outcome> {
    let target = opts.form.target();
    let mut report = Report {
        model: model.path.display().to_string(),
        target: target.name().into(),
        emit: opts.form.emit_name().into(),
        ops_before: model.graph.op_histogram(),
        notes: if model.reordered {
            vec![
                "the nodes were not in topological order: they were sorted on load, and the \
                  output is written in that order"
                    .into(),
            ]
        } else {
            vec![]
        },
        ..Default::default()
    };
    let ix = model.graph.index();
    let shapes = Shapes::infer(&model.graph);
    let ctx = Ctx {
        g: &model.graph,
        ix: &ix,
        shapes: &shapes,
    };
    let (norms, near_misses) = norms::find_norms(&ctx);
    let mut found: BTreeMap<String, usize> = BTreeMap::new();
    for m in &norms {
        *found.entry(m.form.to_string()).or_insert(0) += 1;
    }
    report.norms_found = found.into_iter().collect();
    for (id, why) in near_misses {
        report.refusals.push(LeftAlone {
            norm: model.graph.node(id).label(),
            form: "unrecognised".into(),
            why: Why::NotAPattern(why),
            subgraph: None,
        });
    }
    let a = Analysis::new(&model.graph, &ix, &shapes, &norms);
    let streams = a.streams();
    let reasons = decide::refusals(&a, &streams, opts);
    let label = |k: usize| model.graph.node(norms[k].anchor).label();
    // An embedding LayerNorm precomputed into its table takes its little input stream with it.
    let absorbed: std::collections::BTreeSet<usize> = streams
        .iter()
        .enumerate()
        .filter(|(i, _)| reasons[*i].is_empty())
        .flat_map(|(_, st)| {
            st.leaves.iter().filter_map(|l| {
                if let Leaf::LnTable { norm, .. } = l.leaf {
                    Some(norm)
                } else {
                    None
                }
            })
        })
        .collect();
    let swallowed: Vec<bool> = streams
        .iter()
        .map(|st| !st.norms.is_empty() && st.norms.iter().all(|k| absorbed.contains(k)))
        .collect();
    let accepted: Vec<(usize, &stream::Stream)> = streams
        .iter()
        .enumerate()
        .filter(|(i, _)| reasons[*i].is_empty() && !swallowed[*i])
        .collect();
    let (plan, parts) =
        rewrite::plan(&a, &model, &accepted, opts.fold, target == Target::Crmsnorm)?;
    let mut stream_reports: Vec<StreamReport> = streams
        .iter()
        .enumerate()
        .map(|(sid, st)| StreamReport {
            id: sid,
            width: st.width,
            new_width: st.width,
            status: if swallowed[sid] && reasons[sid].is_empty() {
                StreamStatus::Precomputed
            } else if reasons[sid].is_empty() {
                StreamStatus::Rewritten
            } else {
                StreamStatus::Refused
            },
            reasons: reasons[sid].clone(),
            leaves: vec![],
            norms: vec![],
            norm_names: st.norms.iter().map(|&k| label(k)).collect(),
            subgraph: None,
        })
        .collect();
    for (sid, st) in streams.iter().enumerate() {
        if !reasons[sid].is_empty() {
            stream_reports[sid].leaves = st
                .leaves
                .iter()
                .map(|l| {
                    let (kind, how) = match &l.leaf {
                        Leaf::Explicit { why } => ("explicit centering", why.clone()),
                        Leaf::Const { .. } => ("constant", String::new()),
                        Leaf::Linear { .. } => ("linear", String::new()),
                        Leaf::Table { .. } => ("embedding", String::new()),
                        Leaf::Conv { .. } => ("patch embedding", String::new()),
                        Leaf::LnTable { .. } => ("embedding LayerNorm", String::new()),
                    };
                    let node = model
                        .graph
                        .nodes()
                        .get(ix.producer(&l.value).unwrap_or(usize::MAX))
                        .map(|n| n.label())
                        .unwrap_or_default();
                    report::LeafReport {
                        value: l.value.clone(),
                        kind: kind.into(),
                        node,
                        how: format!("not applied{}{how}", if how.is_empty() { "" } else { ": " }),
                    }
                })
                .collect();
        }
    }
    for (sid, leaves, nr) in parts {
        stream_reports[sid].leaves = leaves;
        stream_reports[sid].norms = nr;
    }
    for (sid, st) in streams.iter().enumerate() {
        if !reasons[sid].is_empty() {
            for &k in &st.norms {
                report.refusals.push(LeftAlone {
                    norm: label(k),
                    form: norms[k].form.to_string(),
                    why: Why::Stream(reasons[sid].clone()),
                    subgraph: None,
                });
            }
        } else {
            for &k in &st.norms {
                let m = &norms[k];
                if m.kind == NormKind::LayerNorm
                    && !plan.norms.iter().any(|p| p.norm == k)
                    && !plan.ln_tables.iter().any(|(n, _)| *n == k)
                {
                    report.refusals.push(LeftAlone {
                        norm: label(k),
                        form: m.form.to_string(),
                        why: Why::OptionalOutputsRead,
                        subgraph: None,
                    });
                }
            }
        }
    }
    let n_rewritten = plan.norms.len() + plan.ln_tables.len();
    let mut patches_applied = 0;
    if n_rewritten > 0 {
        let patches = rewrite::lower(
            &model.graph,
            &ix,
            &norms,
            &plan,
            opts.form.rms_emit(),
            opts.form.crms_emit(),
        );
        let log = |_: usize, p: &rewrite::Patch| {
            if let Some(l) = &opts.patch_log {
                (l.0)(&p.to_string());
            }
        };
        let applied = rewrite::drive(
            &mut model,
            &norms,
            &patches,
            &rewrite::DriveOptions {
                emit: opts.form.rms_emit(),
                crms: opts.form.crms_emit(),
                defer_bytes: opts.defer_bytes,
                check_each_patch: opts.check_each_patch,
                stop_after: opts.stop_after,
                log: Some(&log),
            },
        )?;
        patches_applied = applied.patches;
        for sr in stream_reports.iter_mut() {
            for nr in sr.norms.iter_mut() {
                nr.form_out = applied.forms_out.get(&nr.norm).cloned().unwrap_or_default();
            }
        }
        report.centering_nodes = applied.centering_nodes;
        report.bytes_added = applied.bytes_added;
        if target == Target::Crmsnorm {
            for sr in stream_reports
                .iter_mut()
                .filter(|s| s.status == StreamStatus::Rewritten)
            {
                sr.new_width = sr.width.map(|w| w - 1);
            }
        }
    }
    report.norms_rewritten = n_rewritten;
    report.streams = stream_reports;
    report.ops_after = model.graph.op_histogram();
    if n_rewritten == 0 && report.streams.is_empty() && norms.is_empty() {
        report.refusals.push(LeftAlone {
            norm: "-".into(),
            form: "-".into(),
            why: Why::NothingFound,
            subgraph: None,
        });
    }
    Ok(Outcome {
        model,
        report,
        patches: patches_applied,
    })
}
