//! The rewrite passes.
//!
//! Pass order, and why:
//! 1. **match** ([`norms`]): find every normalisation in every form; LayerNorm-looking
//!    patterns that do not match keep their reason.
//! 2. **analyse** ([`stream`]): grow the residual streams from the norms' inputs; each stream
//!    knows its width, leaves (sources, writers), readers, and whether anything observes it.
//! 3. **decide** (here): refuse observed streams, Post-LN, streams already on RMSNorm, streams
//!    that would need more explicit centering nodes than norms they convert; refusal flows from
//!    a stream to the one whose LayerNorm feeds it (BERT's embedding LayerNorm belongs to its
//!    Post-LN encoder).
//! 4. **plan** ([`rewrite::plan()`]): weight edits, folds, centering nodes — nothing mutated.
//! 5. **compress** (`--target crmsnorm` only; its own phase, run on each stream after its
//!    plan): sources and writers drop the last output column, readers fold it in
//!    (W' = W[0:D−1] − W[D−1]), norms become CRMSNorm, shape constants that hard-code D become
//!    D−1 (design §4).
//! 6. **patch** ([`rewrite::lower`], [`rewrite::drive`]): the plan becomes an ordered list of
//!    named patches, which one driver applies — the one place that mutates the graph; it checks
//!    the graph after each patch when asked ([`Options::check_each_patch`]) and at the end.
//!
//! The identities (design §3): with mean(x) = 0, LN(x) = RMS(x) with the same γ, β, ε;
//! centring every source and writer keeps every stream value zero-mean; a norm's affine folds
//! into linear readers as W' = diag(γ)·W, b' = b + β·W.

pub mod edit;
pub mod emit;
pub mod math;
pub mod norms;
pub mod report;
pub mod rewrite;
pub mod stream;
pub mod subgraph;

use crate::ir::{shape::Shapes, Model, NodeExt};
use crate::{Error, Result};
use emit::Emit;
use norms::{Ctx, NormKind};
use report::{Refusal, Report, StreamReport};
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

/// How CRMSNorm is written (`--target crmsnorm`; with [`Target::Rmsnorm`], `Custom` is a usage
/// error).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CrmsEmit {
    /// Standard ONNX ops.
    #[default]
    Standard,
    /// One op `ai.onnx_normopt:CRMSNormalization` ([`emit::Builder::crms_custom`]; tract runs it
    /// as one fused op through [`crate::verify::tract_onnx_with_extensions`], onnxruntime cannot
    /// run it). The model imports `ai.onnx_normopt` version 1.
    Custom,
}

/// Options of the pass.
#[derive(Clone, Debug)]
pub struct Options {
    /// Target normalisation.
    pub target: Target,
    /// RMSNorm op form.
    pub emit: Emit,
    /// CRMSNorm op form.
    pub crms_emit: CrmsEmit,
    /// Fold γ/β into linear readers.
    pub fold: bool,
    /// Allow explicit centering nodes at all.
    pub allow_centering: bool,
    /// Weight edits of initializers of at least this many bytes run while the model is
    /// written, a block of rows at a time (bounded memory); smaller ones in memory at once.
    pub defer_bytes: usize,
    /// Check the graph after each patch of the rewrite ([`rewrite::drive`]), not only at the
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
            target: Target::Rmsnorm,
            emit: Emit::Standard,
            crms_emit: CrmsEmit::Standard,
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
/// recursively; see [`subgraph`]).
pub fn run(model: Model, opts: &Options) -> Result<Outcome> {
    let out = run_graph(model, opts)?;
    subgraph::rewrite_bodies(out, opts)
}

/// The pass on one graph, its subgraphs left as they are.
fn run_graph(mut model: Model, opts: &Options) -> Result<Outcome> {
    if opts.crms_emit == CrmsEmit::Custom && opts.target != Target::Crmsnorm {
        return Err(Error::Usage(
            "--emit custom writes CRMSNorm as one custom op, so it needs --target crmsnorm \
             (for RMSNorm use --emit standard or --emit onnxruntime)"
                .into(),
        ));
    }
    let mut report = Report {
        model: model.path.display().to_string(),
        target: format!("{:?}", opts.target).to_lowercase(),
        emit: if opts.crms_emit == CrmsEmit::Custom {
            "custom".into()
        } else {
            format!("{:?}", opts.emit).to_lowercase()
        },
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
    for (id, why) in &near_misses {
        report.refusals.push(Refusal {
            norm: model.graph.node(*id).label(),
            form: "unrecognised".into(),
            why: format!("not a LayerNorm pattern: {why}"),
            subgraph: None,
        });
    }
    let a = Analysis::new(&model.graph, &ix, &shapes, &norms);
    let streams = a.streams();
    // Decide.
    let mut reasons: Vec<Vec<String>> = streams.iter().map(|s| s.observed.clone()).collect();
    let label = |k: usize| model.graph.node(norms[k].anchor).label();
    for (sid, st) in streams.iter().enumerate() {
        let ln: Vec<usize> = st
            .norms
            .iter()
            .copied()
            .filter(|&k| norms[k].kind == NormKind::LayerNorm)
            .collect();
        if ln.is_empty() {
            reasons[sid].push("already RMSNorm: no LayerNorm reads this stream".into());
        }
        for &k in &ln {
            let m = &norms[k];
            if m.extra_outputs_read
                .iter()
                .any(|o| model.graph.node(m.anchor).output.get(1) == Some(o))
            {
                reasons[sid].push(format!(
                    "the Mean output of LayerNorm {:?} is read: the stream's mean is observed",
                    label(k)
                ));
            }
            if m.axis != -1
                && shapes
                    .rank(if m.x.is_empty() { &m.y } else { &m.x })
                    .is_none_or(|r| m.axis != r as i64 - 1)
            {
                reasons[sid].push(format!(
                    "LayerNorm {:?} normalises from axis {}, not the last axis alone",
                    label(k),
                    m.axis
                ));
            }
        }
        reasons[sid].extend(a.unwritable(st));
        let explicit = st
            .leaves
            .iter()
            .filter(|l| matches!(l.leaf, Leaf::Explicit { .. }))
            .count();
        if explicit > 0 && !opts.allow_centering {
            reasons[sid].push(format!(
                "{explicit} explicit centering node(s) would be needed and centering is disabled"
            ));
        }
        let converted = ln.len()
            + st.leaves
                .iter()
                .filter(|l| matches!(l.leaf, Leaf::LnTable { .. }))
                .count();
        if explicit > 0 && explicit >= converted {
            reasons[sid].push(format!(
                "{explicit} explicit centering node(s) for {converted} LayerNorm(s): no gain"
            ));
        }
    }
    // Refusal flows upstream: a norm feeding a refused stream stays a LayerNorm, so its own
    // input stream is left alone too.
    loop {
        let mut changed = false;
        for sid in 0..streams.len() {
            if reasons[sid].is_empty() {
                continue;
            }
            for &k in &streams[sid].norm_sources {
                for (up, st) in streams.iter().enumerate() {
                    if up != sid && reasons[up].is_empty() && st.norms.contains(&k) {
                        reasons[up].push(format!(
                            "its LayerNorm {:?} feeds stream {sid}, which is refused",
                            label(k)
                        ));
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
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
    let (plan, parts) = rewrite::plan(
        &a,
        &model,
        &accepted,
        opts.fold,
        opts.target == Target::Crmsnorm,
    )?;
    let mut stream_reports: Vec<StreamReport> = streams
        .iter()
        .enumerate()
        .map(|(sid, st)| StreamReport {
            id: sid,
            width: st.width,
            new_width: st.width,
            status: if swallowed[sid] && reasons[sid].is_empty() {
                "precomputed into its embedding table".into()
            } else if reasons[sid].is_empty() {
                "rewritten".into()
            } else {
                "refused".into()
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
                report.refusals.push(Refusal {
                    norm: label(k),
                    form: norms[k].form.to_string(),
                    why: reasons[sid].join("; "),
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
                    report.refusals.push(Refusal {
                        norm: label(k),
                        form: m.form.to_string(),
                        why: "its optional outputs are read".into(),
                        subgraph: None,
                    });
                }
            }
        }
    }
    let n_rewritten = plan.norms.len() + plan.ln_tables.len();
    let mut patches_applied = 0;
    if n_rewritten > 0 {
        let patches = rewrite::lower(&model.graph, &ix, &norms, &plan, opts.emit, opts.crms_emit);
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
                emit: opts.emit,
                crms: opts.crms_emit,
                defer_bytes: opts.defer_bytes,
                check_each_patch: opts.check_each_patch,
                stop_after: opts.stop_after,
                log: Some(&log),
            },
        )?;
        patches_applied = applied.patches;
        let mut forms = applied.forms_out.iter();
        for sr in stream_reports.iter_mut() {
            for nr in sr.norms.iter_mut() {
                nr.form_out = forms.next().cloned().unwrap_or_default();
            }
        }
        report.centering_nodes = applied.centering_nodes;
        report.bytes_added = applied.bytes_added;
        if opts.target == Target::Crmsnorm {
            for sr in stream_reports
                .iter_mut()
                .filter(|s| s.status == "rewritten")
            {
                sr.new_width = sr.width.map(|w| w - 1);
            }
        }
    }
    report.norms_rewritten = n_rewritten;
    report.streams = stream_reports;
    report.ops_after = model.graph.op_histogram();
    if n_rewritten == 0 && report.streams.is_empty() && norms.is_empty() {
        report.refusals.push(Refusal {
            norm: "-".into(),
            form: "-".into(),
            why: "no normalisation found in the graph".into(),
            subgraph: None,
        });
    }
    Ok(Outcome {
        model,
        report,
        patches: patches_applied,
    })
}
