//! The one report builder. Each phase of the pass on a graph hands [`ReportBuilder`] its typed
//! facts, in order — the input ([`ReportBuilder::new`]), what was matched
//! ([`matched`](ReportBuilder::matched)), the streams, what was decided about them and the plan
//! ([`planned`](ReportBuilder::planned)), the patches ([`lowered`](ReportBuilder::lowered)), what
//! applying them added ([`finish`](ReportBuilder::finish)) — and it writes the report from them:
//! every text, name and count of the report is made here (or by the `Display` of a typed
//! reason). Names are read from the graph as the phases saw it, before any patch. The bodies'
//! reports join their enclosing graph's in [`merge_bodies`]; what the pipeline adds after the
//! pass (the verification table, the provenance of a model read back) has its own hooks on
//! [`Report`].

use super::super::api::{OutputForm, Target};
use super::super::norms::{NoMatch, NormKind, NormMatch};
use super::super::rewrite::{Applied, PatchKind, Plan, StreamPart};
use super::super::stream::{Leaf, Stream};
use super::{
    Centring, LeafKind, LeafReport, LeftAlone, NormReport, Refusal, Report, StreamReport,
    StreamStatus, Why,
};
use crate::ir::{Graph, GraphIndex, Model, NodeExt, NodeId};
use std::collections::BTreeMap;

/// What kind of leaf a stream's leaf is.
fn leaf_kind(l: &Leaf) -> LeafKind {
    match l {
        Leaf::Explicit { .. } => LeafKind::ExplicitCentering,
        Leaf::Const { .. } => LeafKind::Constant,
        Leaf::Linear { .. } => LeafKind::Linear,
        Leaf::Table { .. } => LeafKind::Embedding,
        Leaf::Conv { .. } => LeafKind::PatchEmbedding,
        Leaf::LnTable { .. } => LeafKind::EmbeddingLayerNorm,
    }
}

/// The name of node `id` in `g` (empty when there is none).
fn node_name(g: &Graph, id: NodeId) -> String {
    g.nodes().get(id).map(|n| n.label()).unwrap_or_default()
}

/// Builds the report of the pass on one graph from its phases' facts.
pub(crate) struct ReportBuilder {
    report: Report,
    target: Target,
}

impl ReportBuilder {
    /// The input model, before the pass, and what the pass writes.
    pub fn new(model: &Model, form: OutputForm) -> ReportBuilder {
        let target = form.target();
        ReportBuilder {
            report: Report {
                model: model.path.display().to_string(),
                target: target.name().into(),
                emit: form.emit_name().into(),
                ops_before: model.graph.op_histogram(),
                notes: if model.reordered {
                    vec![
                        "the nodes were not in topological order: they were sorted on load, and \
                         the output is written in that order"
                            .into(),
                    ]
                } else {
                    vec![]
                },
                ..Default::default()
            },
            target,
        }
    }

    /// Match: the norms found (counted by form) and the LayerNorm-looking patterns that are not
    /// one, with why.
    pub fn matched(&mut self, g: &Graph, norms: &[NormMatch], near_misses: Vec<(NodeId, NoMatch)>) {
        let mut found: BTreeMap<String, usize> = BTreeMap::new();
        for m in norms {
            *found.entry(m.form.to_string()).or_insert(0) += 1;
        }
        self.report.norms_found = found.into_iter().collect();
        for (id, why) in near_misses {
            self.report.refusals.push(LeftAlone {
                norm: g.node(id).label(),
                form: "unrecognised".into(),
                why: Why::NotAPattern(why),
                subgraph: None,
            });
        }
    }

    /// Analyse, decide and plan: every stream with its status (refused for `reasons`, its only
    /// norm precomputed into a table when `swallowed`, else rewritten), the leaves of refused
    /// streams (not applied), and for the accepted ones (`parts`) how each leaf is centred and
    /// what happens to each norm (`plan`); the norms left alone, and why.
    #[allow(clippy::too_many_arguments)]
    pub fn planned(
        &mut self,
        g: &Graph,
        ix: &GraphIndex,
        norms: &[NormMatch],
        streams: &[Stream],
        reasons: &[Vec<Refusal>],
        swallowed: &[bool],
        plan: &Plan,
        parts: &[StreamPart],
    ) {
        let label = |k: usize| g.node(norms[k].anchor).label();
        let mut out: Vec<StreamReport> = streams
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
                // A refused stream's leaves: nothing done.
                leaves: if reasons[sid].is_empty() {
                    vec![]
                } else {
                    st.leaves
                        .iter()
                        .map(|l| LeafReport {
                            value: l.value.clone(),
                            kind: leaf_kind(&l.leaf),
                            node: node_name(g, ix.producer(&l.value).unwrap_or(usize::MAX)),
                            how: Centring::NotApplied {
                                why: match &l.leaf {
                                    Leaf::Explicit { why } if !why.is_empty() => Some(why.clone()),
                                    _ => None,
                                },
                            },
                        })
                        .collect()
                },
                norms: vec![],
                norm_names: st.norms.iter().map(|&k| label(k)).collect(),
                subgraph: None,
            })
            .collect();
        for part in parts {
            let sr = &mut out[part.stream];
            sr.leaves = part
                .leaves
                .iter()
                .map(|l| LeafReport {
                    value: l.value.clone(),
                    kind: leaf_kind(&l.leaf),
                    node: node_name(g, l.node),
                    how: l.how.clone(),
                })
                .collect();
            sr.norms = plan.norms[part.norm_plans.clone()]
                .iter()
                .map(|np| {
                    let m = &norms[np.norm];
                    NormReport {
                        name: label(np.norm),
                        form_in: m.form.to_string(),
                        form_out: String::new(),
                        epsilon: m.epsilon,
                        folded_into: np
                            .fold
                            .iter()
                            .flatten()
                            .map(|r| g.node(r.node).label())
                            .collect(),
                        kept_affine: np.kept_affine.clone(),
                        norm: np.norm,
                    }
                })
                .collect();
        }
        for (sid, st) in streams.iter().enumerate() {
            for &k in &st.norms {
                let m = &norms[k];
                let why = if !reasons[sid].is_empty() {
                    Why::Stream(reasons[sid].clone())
                } else if m.kind == NormKind::LayerNorm
                    && !plan.norms.iter().any(|p| p.norm == k)
                    && !plan.ln_tables.iter().any(|(n, _)| *n == k)
                {
                    Why::OptionalOutputsRead
                } else {
                    continue;
                };
                self.report.refusals.push(LeftAlone {
                    norm: label(k),
                    form: m.form.to_string(),
                    why,
                    subgraph: None,
                });
            }
        }
        self.report.norms_rewritten = plan.norms.len() + plan.ln_tables.len();
        self.report.streams = out;
    }

    /// Lower: the output form of every replaced norm, as its patch says.
    pub fn lowered(&mut self, patches: &[super::super::rewrite::Patch]) {
        let forms: BTreeMap<usize, &str> = patches
            .iter()
            .filter_map(|p| match &p.kind {
                PatchKind::ReplaceNorm { norm, form_out, .. } => Some((*norm, form_out.as_str())),
                _ => None,
            })
            .collect();
        for nr in self
            .report
            .streams
            .iter_mut()
            .flat_map(|s| s.norms.iter_mut())
        {
            nr.form_out = forms.get(&nr.norm).copied().unwrap_or_default().into();
        }
    }

    /// Apply: what the patches added (`None`: nothing was rewritten) and the op counts of the
    /// graph after them. The report is done.
    pub fn finish(
        mut self,
        applied: Option<&Applied>,
        ops_after: BTreeMap<String, usize>,
    ) -> Report {
        let r = &mut self.report;
        if let Some(a) = applied {
            r.centering_nodes = a.centering_nodes;
            r.bytes_added = a.bytes_added;
            if self.target == Target::Crmsnorm {
                for sr in r
                    .streams
                    .iter_mut()
                    .filter(|s| s.status == StreamStatus::Rewritten)
                {
                    sr.new_width = sr.width.map(|w| w - 1);
                }
            }
        }
        r.ops_after = ops_after;
        if r.norms_rewritten == 0 && r.streams.is_empty() && r.norms_found.is_empty() {
            r.refusals.push(LeftAlone {
                norm: "-".into(),
                form: "-".into(),
                why: Why::NothingFound,
                subgraph: None,
            });
        }
        self.report
    }
}

/// The report of a graph with bodies: its own `report` joined by the bodies' (`bodies`: each
/// body's label and report): streams and refusals named by their body, counts summed. The op
/// counts before are the graph's with its bodies as they were (`ops_in_bodies`); `reconciled`
/// is what putting the bodies back added, `ops_after` the op counts at the end.
pub(crate) fn merge_bodies<'a>(
    report: &mut Report,
    ops_in_bodies: BTreeMap<String, usize>,
    bodies: impl IntoIterator<Item = (&'a str, &'a Report)>,
    reconciled: &Applied,
    ops_after: BTreeMap<String, usize>,
) {
    for (k, v) in ops_in_bodies {
        *report.ops_before.entry(k).or_insert(0) += v;
    }
    let mut next = report.streams.len();
    let mut found: BTreeMap<String, usize> = report.norms_found.iter().cloned().collect();
    let nested = |label: &str, inner: &Option<String>| {
        Some(match inner {
            Some(i) => format!("{label} / {i}"),
            None => label.to_string(),
        })
    };
    let mut any = false;
    for (label, r) in bodies {
        for (f, n) in &r.norms_found {
            *found.entry(f.clone()).or_insert(0) += n;
            any = true;
        }
        for st in &r.streams {
            let mut st = st.clone();
            st.id = next;
            next += 1;
            st.subgraph = nested(label, &st.subgraph);
            report.streams.push(st);
            any = true;
        }
        for rf in &r.refusals {
            if rf.why == Why::NothingFound {
                continue;
            }
            let mut rf = rf.clone();
            rf.subgraph = nested(label, &rf.subgraph);
            report.refusals.push(rf);
        }
        report.norms_rewritten += r.norms_rewritten;
        report.centering_nodes += r.centering_nodes;
        report.bytes_added += r.bytes_added;
    }
    report.norms_found = found.into_iter().collect();
    if any {
        report.refusals.retain(|rf| rf.why != Why::NothingFound);
    }
    report.bytes_added += reconciled.bytes_added;
    report.ops_after = ops_after;
}
