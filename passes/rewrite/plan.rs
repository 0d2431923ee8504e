//! The RMSNorm plan (design §3): per accepted stream, every weight edit, every explicit
//! centering node and every norm replacement. Nothing is mutated here.

use super::super::edit::Edit;
use super::super::math::{self, Basis};
use super::super::report::{KeptAffine, LeafReport, NormReport};
use super::super::stream::{Analysis, Leaf, StepOp, Stream};
use super::fold::{costly_new_bias, fold_readers, tail_scales, TailScales};
use crate::ir::{read_array, Model, NodeExt, NodeId};
use crate::proto::data_type as dt;
use crate::tensor::Array;
use crate::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};

/// A linear op reading a norm's output, into which γ and β fold.
#[derive(Clone, Debug)]
pub struct Reader {
    /// The MatMul or Gemm.
    pub node: NodeId,
    /// Input axis of the weight (0 for MatMul and Gemm, 1 for Gemm transB=1).
    pub in_axis: usize,
    /// The bias constant slot: Gemm's C, or the Add after a MatMul.
    pub bias: Option<(NodeId, usize)>,
    /// Gemm alpha / beta (1 for MatMul).
    pub bias_factor: f64,
}

/// What happens to one norm.
#[derive(Clone, Debug)]
pub struct NormPlan {
    /// Index into the matches.
    pub norm: usize,
    /// Readers γ/β fold into; `None` keeps the affine on the RMSNorm.
    pub fold: Option<Vec<Reader>>,
    /// Why the affine is kept, when it is.
    pub kept_affine: Option<KeptAffine>,
    /// CRMSNorm: the original width D of the compressed stream.
    pub compressed_from: Option<usize>,
    /// The width D of the norm's stream (γ and β may be scalars that broadcast to it).
    pub width: usize,
}

/// The whole plan.
#[derive(Debug, Default)]
pub struct Plan {
    /// Constant edits by (node, input slot).
    pub edits: BTreeMap<(NodeId, usize), Vec<Edit>>,
    /// Explicit centering: value → the stream-side reads to re-point.
    pub explicit: BTreeMap<String, Vec<(NodeId, usize)>>,
    /// Norms turned into RMSNorm.
    pub norms: Vec<NormPlan>,
    /// Embedding LayerNorms precomputed into their table: (norm, gather).
    pub ln_tables: Vec<(usize, NodeId)>,
    /// MatMul readers that need a new bias (β·W), with whether it must be centred.
    pub new_bias: Vec<(NodeId, Vec<f64>, bool)>,
    /// Gemm readers that need a new C input.
    pub new_gemm_c: Vec<(NodeId, Vec<f64>, bool)>,
    /// Linear nodes that are writers/sources (centred), to centre new biases too.
    pub centred_linears: BTreeSet<NodeId>,
    /// CRMSNorm: explicit centering outputs to compress to D−1, with D and the stream's element
    /// type (of the constants the orthonormal basis needs).
    pub compress_explicit: BTreeMap<String, (usize, i32)>,
    /// CRMSNorm: the widths D that were compressed (value_info declaring them is stale).
    pub compressed_widths: BTreeSet<usize>,
    /// LayerScale nodes folded into their writer, with their data input slot: removed, the
    /// node before each takes over its output.
    pub bypass: Vec<(NodeId, usize)>,
    /// CRMSNorm: `Shape` nodes on compressed values whose result must still say D (it sizes
    /// other tensors, e.g. attention heads): (node, rank) — their last entry gets +1.
    pub shape_fixes: Vec<(NodeId, usize)>,
}

impl Plan {
    /// Centre the constant read at `slot` over `axis` (a source or writer).
    fn center(&mut self, slot: (NodeId, usize), axis: usize) {
        self.edits
            .entry(slot)
            .or_default()
            .push(Edit::Center { axis });
    }
}

/// What planning tells the report of each accepted stream: its id, its leaves and its norms.
pub type StreamParts = Vec<(usize, Vec<LeafReport>, Vec<NormReport>)>;

pub(super) fn norm_label(a: &Analysis, k: usize) -> String {
    a.g.node(a.norms[k].anchor).label()
}

/// What planning one stream produced besides the plan's entries.
pub(super) struct StreamPlan {
    /// The stream's leaves, for the report.
    pub leaves: Vec<LeafReport>,
    /// The stream's norms, for the report.
    pub norms: Vec<NormReport>,
    /// The constant slots first edited by this stream's leaves (its sources and writers, whose
    /// centred output axes carry the stream), in slot order.
    pub writers: Vec<(NodeId, usize)>,
    /// The stream's entries in [`Plan::norms`].
    pub norm_plans: std::ops::Range<usize>,
    /// Folded norms (index in [`Plan::norms`]) with the pass-through nodes between each and its
    /// readers.
    pub fold_paths: Vec<(usize, Vec<NodeId>)>,
}

/// Plan the rewrite of the accepted streams. Returns the plan and per-stream report parts.
///
/// Two phases per stream, in stream order: the RMSNorm plan (`plan_stream`: centre the leaves,
/// fold or keep each norm's affine), then, with `compress`, the CRMSNorm compression of what it
/// planned (`compress_stream`, rewrite/compress.rs).
pub fn plan(
    a: &Analysis,
    model: &Model,
    streams: &[(usize, &Stream)],
    fold: bool,
    compress: Option<Basis>,
) -> Result<(Plan, StreamParts)> {
    let mut p = Plan::default();
    let mut reports = Vec::new();
    let read = |name: &str| read_value(a, model, name);
    let scales = tail_scales(a, streams, &read)?;
    for &(sid, st) in streams {
        let d = st
            .width
            .ok_or_else(|| Error::Internal("accepted stream without width".into()))?;
        let s = plan_stream(a, model, &mut p, st, d, fold, &scales, &read)?;
        if let Some(basis) = compress {
            super::compress::compress_stream(a, &mut p, st, d, &s, basis)?;
        }
        reports.push((sid, s.leaves, s.norms));
    }
    // A centring added later (fold into a reader that is also a writer) must come after the fold.
    for e in p.edits.values_mut() {
        e.sort_by_key(Edit::rank);
    }
    Ok((p, reports))
}

/// The RMSNorm plan of one stream of width `d`: every leaf centred, every LayerNorm replaced,
/// its affine folded into its readers when it can be.
#[allow(clippy::too_many_arguments)]
fn plan_stream(
    a: &Analysis,
    model: &Model,
    p: &mut Plan,
    st: &Stream,
    d: usize,
    fold: bool,
    scales: &TailScales,
    read: &dyn Fn(&str) -> Result<Array>,
) -> Result<StreamPlan> {
    let mut leaves = Vec::new();
    let centred_before: BTreeSet<(NodeId, usize)> = p.edits.keys().copied().collect();
    for la in &st.leaves {
        let (kind, node, how) = match &la.leaf {
            Leaf::Const {
                node,
                slot,
                axis: hidden,
                through,
            } => {
                let dims =
                    a.g.node(*node)
                        .input(*slot)
                        .and_then(|c| a.g.constant_dims(c))
                        .unwrap_or_default();
                let axis = hidden.unwrap_or(dims.len().saturating_sub(1));
                p.edits
                    .entry((*node, *slot))
                    .or_default()
                    .push(Edit::Center { axis });
                let mut how = if dims.get(axis).copied().unwrap_or(1) == 1 {
                    "broadcast constant zeroed".to_string()
                } else if hidden.is_some() {
                    format!("centred over its hidden axis {axis}")
                } else {
                    "centred over the last axis".to_string()
                };
                if !through.is_empty() {
                    let mut ops = through.clone();
                    ops.reverse();
                    how = format!(
                        "{how}; it reaches the stream through {} (linear and the same on every channel: they pass a zero mean through)",
                        ops.join(", ")
                    );
                }
                ("constant", *node, how)
            }
            Leaf::Linear { node, tail } => {
                let n = a.g.node(*node);
                p.centred_linears.insert(*node);
                // LayerScale: λ ⊙ (W·h + b) = (W·diag(λ))·h + λ ⊙ b (math::layer_scale).
                let lambda = scales.linear.get(node).cloned();
                let scale_then_center = |p: &mut Plan, slot: (NodeId, usize), axis: usize| {
                    if let Some(l) = &lambda {
                        p.edits.entry(slot).or_default().push(Edit::Scale {
                            axis,
                            gamma: l.clone(),
                        });
                    }
                    p.center(slot, axis);
                };
                let mut how = if n.is("Gemm") {
                    let trans_b = n.attr_i("transB").unwrap_or(0) != 0;
                    scale_then_center(p, a.edit_slot(*node, 1), usize::from(!trans_b));
                    if n.input(2).is_some() {
                        let cd = a.const_dims_at(*node, 2).unwrap_or_default();
                        let slot = a.edit_slot(*node, 2);
                        let axis = cd.len().saturating_sub(1);
                        if let Some(l) = scales.bias.get(&slot) {
                            p.edits.entry(slot).or_default().push(Edit::Scale {
                                axis,
                                gamma: l.clone(),
                            });
                        }
                        p.center(slot, axis);
                    }
                    format!(
                        "Gemm weight centred over its output axis (transB={})",
                        u8::from(trans_b)
                    )
                } else {
                    scale_then_center(p, a.edit_slot(*node, 1), 1);
                    "MatMul weight centred over its output axis".to_string()
                };
                if !tail.is_empty() {
                    let mut folded = Vec::new();
                    for st in tail {
                        let sn = a.g.node(st.node);
                        match st.op {
                            StepOp::Bias => {
                                let slot = a.edit_slot(st.node, st.slot);
                                let bd = a.const_dims_at(st.node, st.slot).unwrap_or_default();
                                let axis = bd.len().saturating_sub(1);
                                if let Some(l) = scales.bias.get(&slot) {
                                    let l = if bd.last().copied().unwrap_or(1) == 1 {
                                        vec![l[0]]
                                    } else {
                                        l.clone()
                                    };
                                    p.edits
                                        .entry(slot)
                                        .or_default()
                                        .push(Edit::Scale { axis, gamma: l });
                                }
                                p.center(slot, axis);
                            }
                            StepOp::Mul | StepOp::Div => {
                                p.bypass.push((st.node, 1 - st.slot));
                                folded.push(format!("{} {:?}", sn.op().escape_debug(), sn.label()));
                            }
                        }
                    }
                    how = format!(
                        "{how}, after the scales that followed it; LayerScale folded ({} removed), biases scaled and centred",
                        folded.join(", ")
                    );
                }
                ("linear", *node, how)
            }
            Leaf::Table { node } => {
                p.center(a.edit_slot(*node, 0), 1);
                ("embedding", *node, "table rows centred".to_string())
            }
            Leaf::Conv { node } => {
                p.center(a.edit_slot(*node, 1), 0);
                if a.g.node(*node).input(2).is_some() {
                    p.center(a.edit_slot(*node, 2), 0);
                }
                (
                    "patch embedding",
                    *node,
                    "Conv weight and bias centred over output channels".to_string(),
                )
            }
            Leaf::LnTable { norm, gather } => {
                let m = &a.norms[*norm];
                let table = a.g.node(*gather).input(0).unwrap_or("");
                let td =
                    a.g.constant_dims(table)
                        .and_then(|s| s.last().copied())
                        .unwrap_or(0);
                if td != d {
                    return Err(Error::invalid(
                        &model.path,
                        format!(
                            "LayerNorm {:?} normalises rows of width {td} of its table with a scale/shift of width {d}",
                            norm_label(a, *norm)
                        ),
                    ));
                }
                let gamma = m.gamma.as_deref().map(read).transpose()?;
                let beta = m.beta.as_deref().map(read).transpose()?;
                // γ/β may be scalars (they broadcast).
                let gamma = match gamma {
                    Some(g) => broadcast_vec(&g.data, d)?,
                    None => vec![1.0; d],
                };
                let beta = match beta {
                    Some(b) => broadcast_vec(&b.data, d)?,
                    None => vec![0.0; d],
                };
                p.edits.entry((*gather, 0)).or_default().extend([
                    Edit::LayerNormRows {
                        gamma,
                        beta,
                        eps: m.epsilon as f64,
                    },
                    Edit::Center { axis: 1 },
                ]);
                p.ln_tables.push((*norm, *gather));
                (
                    "embedding LayerNorm",
                    *gather,
                    format!(
                        "LayerNorm {:?} precomputed into the table, rows centred",
                        norm_label(a, *norm)
                    ),
                )
            }
            Leaf::Explicit { why } => {
                let edges = st.edges.get(&la.value).cloned().unwrap_or_default();
                p.explicit.insert(la.value.clone(), edges);
                let node = a.ix.producer(&la.value).unwrap_or(usize::MAX);
                (
                    "explicit centering",
                    node,
                    format!("x - ReduceMean(x): {why}"),
                )
            }
        };
        let node_name = a.g.nodes().get(node).map(|n| n.label()).unwrap_or_default();
        leaves.push(LeafReport {
            value: la.value.clone(),
            kind: kind.into(),
            node: node_name,
            how,
        });
    }
    // The constant slots this stream's leaves edited first.
    let writers: Vec<(NodeId, usize)> = p
        .edits
        .keys()
        .copied()
        .filter(|k| !centred_before.contains(k))
        .collect();
    let mut norms = Vec::new();
    let norms_start = p.norms.len();
    let mut fold_paths = Vec::new();
    for &k in &st.norms {
        let m = &a.norms[k];
        if p.ln_tables.iter().any(|(n, _)| *n == k) {
            continue;
        }
        if m.kind != super::super::norms::NormKind::LayerNorm {
            continue;
        }
        let mut fold_path = Vec::new();
        let (fold_plan, kept) = if !fold {
            (None, Some(KeptAffine::FoldingDisabled))
        } else if m.gamma.is_none() && m.beta.is_none() {
            (None, None)
        } else {
            let mut path = Vec::new();
            let readers = fold_readers(a, &m.y, d, &mut path).and_then(|r| {
                match costly_new_bias(a, m.beta.as_deref(), &r, d, &read) {
                    Ok(Some(why)) => Err(why),
                    Ok(None) => Ok(r),
                    Err(e) => Err(e.to_string()),
                }
            });
            match readers {
                Ok(r) => {
                    fold_path = path;
                    (Some(r), None)
                }
                Err(why) => (None, Some(KeptAffine::NotFoldable(why))),
            }
        };
        if let Some(readers) = &fold_plan {
            let gamma = m.gamma.as_deref().map(read).transpose()?;
            let beta = m.beta.as_deref().map(read).transpose()?;
            for r in readers {
                let rn = a.g.node(r.node);
                let wslot = a.edit_slot(r.node, 1);
                let w = read(rn.input(1).unwrap_or(""))?;
                if let Some(gm) = &gamma {
                    let gv = broadcast_vec(&gm.data, d)?;
                    p.edits.entry(wslot).or_default().push(Edit::Scale {
                        axis: r.in_axis,
                        gamma: gv,
                    });
                }
                if let Some(bt) = &beta {
                    let bv = broadcast_vec(&bt.data, d)?;
                    let mut shift: Vec<f64> = math::shift_through(&w.data, &w.dims, r.in_axis, &bv)
                        .into_iter()
                        .map(|x| x * r.bias_factor)
                        .collect();
                    // A LayerScale after the reader scales its bias, and so the shift.
                    if let Some(l) = scales.linear.get(&r.node) {
                        shift.iter_mut().zip(l).for_each(|(x, l)| *x *= l);
                    }
                    if shift.iter().any(|&x| x != 0.0) {
                        let centred = p.centred_linears.contains(&r.node);
                        match r.bias {
                            Some(slot) => {
                                p.edits.entry(slot).or_default().push(Edit::AddRows(shift))
                            }
                            None if rn.is("Gemm") => p.new_gemm_c.push((r.node, shift, centred)),
                            None => p.new_bias.push((r.node, shift, centred)),
                        }
                    }
                }
            }
        }
        let folded_into = fold_plan
            .as_ref()
            .map(|rs| rs.iter().map(|r| a.g.node(r.node).label()).collect())
            .unwrap_or_default();
        norms.push(NormReport {
            name: norm_label(a, k),
            form_in: m.form.to_string(),
            form_out: String::new(),
            epsilon: m.epsilon,
            folded_into,
            kept_affine: kept.clone(),
            norm: k,
        });
        p.norms.push(NormPlan {
            norm: k,
            fold: fold_plan,
            kept_affine: kept,
            compressed_from: None,
            width: d,
        });
        if p.norms.last().is_some_and(|np| np.fold.is_some()) {
            fold_paths.push((p.norms.len() - 1, fold_path));
        }
    }
    Ok(StreamPlan {
        leaves,
        norms,
        writers,
        norm_plans: norms_start..p.norms.len(),
        fold_paths,
    })
}

/// The values of constant `name`, or of the float `Cast` of a constant that `name` is: the
/// stored values rounded to the Cast's type (what the graph computes with).
fn read_value(a: &Analysis, model: &Model, name: &str) -> Result<Array> {
    read_through(a.g, a.ix, &model.store, &model.path, name)
}

/// [`read_value`] on any graph and index.
pub(super) fn read_through(
    g: &crate::ir::Graph,
    ix: &crate::ir::GraphIndex,
    store: &crate::io::ExternalStore,
    path: &std::path::Path,
    name: &str,
) -> Result<Array> {
    if let Some(t) = g.constant_tensor(name) {
        return read_array(t, store, path);
    }
    let vanished = || Error::Internal(format!("constant {name:?} vanished"));
    let c = super::super::stream::cast_of_const(g, ix, name).ok_or_else(vanished)?;
    let cn = g.node(c);
    let src = cn
        .input(0)
        .and_then(|s| g.constant_tensor(s))
        .ok_or_else(vanished)?;
    let arr = read_array(src, store, path)?;
    let to = cn.attr_i("to").map_or(dt::FLOAT, |t| t as i32);
    let bytes = crate::tensor::encode_f64(&arr.data, to).map_err(Error::Internal)?;
    let data = crate::tensor::decode_raw(&bytes, to, arr.data.len()).map_err(Error::Internal)?;
    Ok(Array {
        dims: arr.dims,
        data_type: to,
        data,
    })
}

/// γ or β of `v.len()` entries as a vector of the width `d`: itself, or a scalar repeated. The
/// matchers only accept lengths 1 and D; anything else is a broken invariant, not a panic.
pub(super) fn broadcast_vec(v: &[f64], d: usize) -> Result<Vec<f64>> {
    match v {
        _ if v.len() == d => Ok(v.to_vec()),
        [x] => Ok(vec![*x; d]),
        _ => Err(Error::Internal(format!(
            "a scale/shift of {} entries does not broadcast to width {d}",
            v.len()
        ))),
    }
}
