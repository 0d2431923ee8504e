//! The rewrite passes.
//!
//! Pass order, and why:
//! 1. **match** (`norms/`): find every normalisation in every form; LayerNorm-looking
//!    patterns that do not match keep their reason.
//! 2. **analyse** (`stream/`): grow the residual streams from the norms' inputs; each stream
//!    knows its width, leaves (sources, writers), readers, and whether anything observes it.
//! 3. **decide** (`decide.rs`): refuse observed streams, Post-LN, streams already on RMSNorm, streams
//!    that would need more explicit centering nodes than norms they convert; refusal flows from
//!    a stream to the one whose LayerNorm feeds it (BERT's embedding LayerNorm belongs to its
//!    Post-LN encoder).
//! 4. **plan** (`rewrite::plan`: `rewrite/center.rs`, `fold.rs`, the plan as data in `plan.rs`):
//!    weight edits, folds, centering nodes — nothing mutated.
//! 5. **compress** (`rewrite/compress.rs`, `--target crmsnorm` only; its own phase, run on each
//!    stream after its plan): sources and writers drop the last output column, readers fold it
//!    in (W' = W[0:D−1] − W[D−1]), norms become CRMSNorm, shape constants that hard-code D become
//!    D−1 (design §4).
//! 6. **lower** (`rewrite/lower.rs`): the plan becomes an ordered list of named patches
//!    (`rewrite/patch.rs`), every choice made there — each norm's concrete output form
//!    (`emit::NormOut`), its scale, the Casts that go, the imports.
//! 7. **apply** (`rewrite/driver.rs`): one driver applies the patches — the one place that
//!    mutates the graph, building nodes with the builders of `emit.rs`; it checks the graph after
//!    each patch when asked ([`Options::check_each_patch`], which also checks that it did what
//!    the patches' tally says, `rewrite/tally.rs`) and at the end.
//! 8. **subgraphs** (`subgraph.rs`): each If/Loop/Scan body is passed through steps 1–7 as a
//!    graph of its own, and put back by named patches of the same driver.
//!
//! Each phase hands its facts to the one report builder (`report/build.rs`). [`inspect`] runs
//! steps 1–6 and tells what step 7 would add from the patches (`rewrite/tally.rs`), applying
//! nothing.
//!
//! The identities (design §3): with mean(x) = 0, LN(x) = RMS(x) with the same γ, β, ε;
//! centring every source and writer keeps every stream value zero-mean; a norm's affine folds
//! into linear readers as W' = diag(γ)·W, b' = b + β·W.

// The phases are internal: a pipeline uses `run`/`inspect`, `Options` and the `report`.
mod api;
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

pub use api::{CrmsEmit, Options, Outcome, OutputForm, PatchLog, Target};
pub use emit::Emit;

use crate::ir::{shape::Shapes, Model};
use crate::Result;
use norms::Ctx;
use report::build::ReportBuilder;
use report::Report;
use stream::{Analysis, Leaf};

/// Analyse a model without changing it: the report of what the rewrite would do. It stops at
/// the patch list: what applying it would add (centering nodes, bytes, op counts after) is
/// told from the patches (`rewrite/tally.rs`), inside subgraphs too.
pub fn inspect(model: &Model, opts: &Options) -> Result<Report> {
    Ok(inspect_all(model, opts)?.0)
}

/// [`inspect`] with the tally of the patches, the model's bodies included.
fn inspect_all(model: &Model, opts: &Options) -> Result<(Report, rewrite::Tally)> {
    let (report, patches) = lower_graph(model, opts)?;
    let (report, tally) = match patches {
        Some(patches) => {
            let t = rewrite::tally(model, &patches)?;
            (report.finish(Some(&t.applied), t.ops_after.clone()), t)
        }
        None => {
            let t = rewrite::Tally {
                ops_after: model.graph.op_histogram(),
                ..Default::default()
            };
            (report.finish(None, t.ops_after.clone()), t)
        }
    };
    subgraph::inspect_bodies(model, report, tally, opts, &inspect_all)
}

/// Run the pass: on the main graph, then inside its subgraphs (If/Loop/Scan bodies,
/// recursively; see `subgraph.rs`).
pub fn run(model: Model, opts: &Options) -> Result<Outcome> {
    let out = run_graph(model, opts)?;
    subgraph::rewrite_bodies(out, opts, &run)
}

/// The pass on one graph up to its patch list (`None`: nothing to rewrite), its subgraphs left
/// as they are, with the report so far.
fn lower_graph(
    model: &Model,
    opts: &Options,
) -> Result<(ReportBuilder, Option<Vec<rewrite::Patch>>)> {
    let mut report = ReportBuilder::new(model, opts.form);
    let ix = model.graph.index();
    let shapes = Shapes::infer(&model.graph);
    let canon = stream::Canon::new(&model.graph);
    let ctx = Ctx {
        g: &model.graph,
        ix: &ix,
        shapes: &shapes,
        canon: &canon,
    };
    let (norms, near_misses) = norms::find_norms(&ctx);
    report.matched(&model.graph, &norms, near_misses);
    let a = Analysis::new(&model.graph, &ix, &shapes, &norms, canon);
    let streams = a.streams();
    let reasons = decide::refusals(&a, &streams, opts);
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
    let (plan, parts) = rewrite::plan(&a, model, &accepted, opts.fold, opts.form.basis())?;
    report.planned(
        &model.graph,
        &ix,
        &norms,
        &streams,
        &reasons,
        &swallowed,
        &plan,
        &parts,
    );
    if plan.norms.is_empty() && plan.ln_tables.is_empty() {
        return Ok((report, None));
    }
    let patches = rewrite::lower(model, &ix, &norms, &plan, opts.form)?;
    report.lowered(&patches);
    Ok((report, Some(patches)))
}

/// The pass on one graph, its subgraphs left as they are. With
/// [`Options::check_each_patch`], what the driver did must be what the patches' tally says
/// (what `inspect` reports).
fn run_graph(mut model: Model, opts: &Options) -> Result<Outcome> {
    let (report, patches) = lower_graph(&model, opts)?;
    let Some(patches) = patches else {
        let ops = model.graph.op_histogram();
        return Ok(Outcome {
            model,
            report: report.finish(None, ops),
            patches: 0,
        });
    };
    let told = if opts.check_each_patch {
        let n = opts
            .stop_after
            .map_or(patches.len(), |k| k.min(patches.len()));
        Some(rewrite::tally(&model, &patches[..n])?)
    } else {
        None
    };
    let applied = rewrite::drive(&mut model, &patches, &rewrite::DriveOptions::of(opts, 0))?;
    let ops = model.graph.op_histogram();
    if let Some(t) = &told {
        rewrite::check_tally(t, &applied, &ops)?;
    }
    Ok(Outcome {
        model,
        report: report.finish(Some(&applied), ops),
        patches: applied.patches,
    })
}
