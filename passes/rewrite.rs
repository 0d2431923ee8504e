//! Planning and applying the Pre-LN → Pre-RMSNorm rewrite (design §3).
//!
//! [`plan`] reads the analysis and decides, per accepted stream, every weight edit, every
//! explicit centering node and every norm replacement; [`apply`] is the one place that mutates
//! the graph. Weight edits on one constant slot are collected and applied together in a fixed
//! order — replace, scale (γ), shift (β·W), centre — from the original f64 values, rounded once.

use super::edit::{self, Edit};
use super::emit::{Builder, Emit};
use super::math;
use super::norms::{NormForm, NormMatch};
use super::report::{LeafReport, NormReport};
use super::stream::{Analysis, Leaf, StepOp, Stream};
use crate::ir::{read_array, Model, NodeExt, NodeId};
use crate::proto::data_type as dt;
use crate::tensor::Array;
use crate::{Error, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// By default, constants at least this large are edited at write time, row block by row block.
pub const DEFER_BYTES: usize = 1 << 20;

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
    pub kept_affine: Option<String>,
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
    /// CRMSNorm: explicit centering outputs to slice to D−1, with D.
    pub compress_explicit: BTreeMap<String, usize>,
    /// CRMSNorm: the widths D that were compressed (value_info declaring them is stale).
    pub compressed_widths: BTreeSet<usize>,
    /// LayerScale nodes folded into their writer, with their data input slot: removed, the
    /// node before each takes over its output.
    pub bypass: Vec<(NodeId, usize)>,
    /// CRMSNorm: `Shape` nodes on compressed values whose result must still say D (it sizes
    /// other tensors, e.g. attention heads): (node, rank) — their last entry gets +1.
    pub shape_fixes: Vec<(NodeId, usize)>,
}

/// How the result of `Shape(v)` on a compressed value is used downstream.
fn shape_uses(a: &Analysis, shape_node: NodeId, compressed: &BTreeSet<String>) -> (bool, bool) {
    // Only values that still carry the last entry (the width) of the shape matter.
    let rank = a.g.node(shape_node).input(0).and_then(|x| a.shapes.rank(x));
    let picks_last = |idx: &[i64]| {
        idx.iter()
            .any(|&i| i == -1 || rank.is_none_or(|r| i == r as i64 - 1))
    };
    let (mut own, mut other) = (false, false);
    let mut queue: Vec<String> =
        a.g.node(shape_node)
            .out(0)
            .map(str::to_string)
            .into_iter()
            .collect();
    let mut seen = BTreeSet::new();
    while let Some(v) = queue.pop() {
        if !seen.insert(v.clone()) {
            continue;
        }
        if a.ix.graph_outputs.contains(&v) {
            other = true;
        }
        for &(c, slot) in a.ix.consumers(&v) {
            let n = a.g.node(c);
            let konst = |i: usize| {
                n.input(i)
                    .and_then(|x| crate::ir::shape::const_ints(a.g, x))
            };
            match n.op() {
                "Reshape" | "Expand" if slot == 1 => {
                    if n.input(0).is_some_and(|x| compressed.contains(x)) {
                        own = true;
                    } else {
                        other = true;
                    }
                }
                "Gather" if slot == 0 => {
                    if konst(1).is_none_or(|idx| picks_last(&idx)) {
                        queue.extend(n.output.iter().cloned())
                    }
                }
                "Slice" if slot == 0 => {
                    let keeps_last = match (konst(1), konst(2), rank) {
                        (Some(st), Some(en), Some(r)) => {
                            let r = r as i64;
                            let norm = |x: i64| if x < 0 { x + r } else { x.min(r) };
                            st.first().is_none_or(|&s0| norm(s0) < r)
                                && en.first().is_none_or(|&e0| norm(e0) > r - 1)
                        }
                        _ => true,
                    };
                    if keeps_last {
                        queue.extend(n.output.iter().cloned())
                    }
                }
                "Squeeze" | "Unsqueeze" | "Concat" | "Cast" | "Identity" | "Div" | "Mul"
                | "Add" | "Sub" => queue.extend(n.output.iter().cloned()),
                _ => other = true,
            }
        }
    }
    (own, other)
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

/// The readers of norm output `y` for folding, or why they cannot all take γ and β.
pub fn fold_readers(
    a: &Analysis,
    y: &str,
    d: usize,
    path: &mut Vec<NodeId>,
) -> std::result::Result<Vec<Reader>, String> {
    let mut out = Vec::new();
    let mut queue = vec![y.to_string()];
    while let Some(v) = queue.pop() {
        if a.ix.graph_outputs.contains(&v) || a.ix.subgraph_reads.contains_key(&v) {
            return Err(format!("{v:?} is a graph output or read by a subgraph"));
        }
        for &(c, slot) in a.ix.consumers(&v) {
            let n = a.g.node(c);
            if n.is("Shape") {
                continue;
            }
            if n.is("MatMul") && slot == 0 {
                let wd = a.const_dims_at(c, 1).filter(|s| s.len() == 2 && s[0] == d);
                if wd.is_none() {
                    return Err(format!(
                        "MatMul {:?} has no constant [{d}, N] weight",
                        n.label()
                    ));
                }
                let Some(o) = n.out(0) else {
                    return Err(format!("MatMul {:?} has no output", n.label()));
                };
                if let Some(why) = a.unwritable_input(c, 1) {
                    return Err(why);
                }
                // The bias is an Add after the MatMul, or the bias input of onnxruntime's
                // fused BiasGelu / FastGelu (Gelu(x + bias)).
                let bias = match a.ix.consumers(o) {
                    [(_, bslot)] if a.ix.graph_outputs.contains(o) || *bslot > 1 => None,
                    [(b, bslot)]
                        if a.g.node(*b).is("Add")
                            || (*bslot == 0 && is_bias_gelu(a.g.node(*b))) =>
                    {
                        let other = 1 - bslot;
                        if let Some(why) = a.unwritable_input(*b, other) {
                            return Err(why);
                        }
                        let bn = a.g.node(*b);
                        let _ = bn;
                        let ok = a.const_dims_at(*b, other).is_some_and(|bd| {
                            bd.last() == Some(&wd.as_ref().unwrap()[1])
                                && bd.iter().rev().skip(1).all(|&x| x == 1)
                        });
                        ok.then(|| a.edit_slot(*b, other))
                    }
                    _ => None,
                };
                out.push(Reader {
                    node: c,
                    in_axis: 0,
                    bias,
                    bias_factor: 1.0,
                });
                continue;
            }
            if n.is("Gemm") && slot == 0 && n.attr_i("transA").unwrap_or(0) == 0 {
                let trans_b = n.attr_i("transB").unwrap_or(0) != 0;
                let ok = a
                    .const_dims_at(c, 1)
                    .is_some_and(|s| s.len() == 2 && s[if trans_b { 1 } else { 0 }] == d);
                let c_ok = n.input(2).is_none_or(|_| a.const_at(c, 2));
                let alpha = n.attr_f("alpha").unwrap_or(1.0) as f64;
                let beta = n.attr_f("beta").unwrap_or(1.0) as f64;
                if !ok || !c_ok || beta == 0.0 {
                    return Err(format!(
                        "Gemm {:?} has no constant weight of input width {d}",
                        n.label()
                    ));
                }
                if let Some(why) = a
                    .unwritable_input(c, 1)
                    .or_else(|| a.unwritable_input(c, 2))
                {
                    return Err(why);
                }
                let bias = n.input(2).map(|_| a.edit_slot(c, 2));
                out.push(Reader {
                    node: c,
                    in_axis: usize::from(trans_b),
                    bias,
                    bias_factor: alpha / beta,
                });
                continue;
            }
            if n.is("Mul") || n.is("Div") {
                return Err(format!(
                    "{} {:?} is not a constant-weight linear op",
                    n.op().escape_debug(),
                    n.label()
                ));
            }
            match a.pass_through(c, slot, d) {
                Ok(outs) => {
                    path.push(c);
                    queue.extend(outs)
                }
                Err(_) => {
                    return Err(format!(
                        "{} {:?} is not a constant-weight linear op",
                        n.op().escape_debug(),
                        n.label()
                    ))
                }
            }
        }
    }
    if out.is_empty() {
        return Err("no linear reader".into());
    }
    Ok(out)
}

/// onnxruntime's `com.microsoft` BiasGelu and FastGelu: input 1 is a bias added to input 0.
fn is_bias_gelu(n: &crate::proto::NodeProto) -> bool {
    n.domain() == "com.microsoft" && matches!(n.op(), "BiasGelu" | "FastGelu")
}

/// What planning tells the report of each accepted stream: its id, its leaves and its norms.
pub type StreamParts = Vec<(usize, Vec<LeafReport>, Vec<NormReport>)>;

fn norm_label(a: &Analysis, k: usize) -> String {
    a.g.node(a.norms[k].anchor).label()
}

/// Plan the rewrite of the accepted streams. Returns the plan and per-stream report parts.
pub fn plan(
    a: &Analysis,
    model: &Model,
    streams: &[(usize, &Stream)],
    fold: bool,
    compress: bool,
) -> Result<(Plan, StreamParts)> {
    let mut p = Plan::default();
    let mut reports = Vec::new();
    let read = |name: &str| read_value(a, model, name);
    let scales = tail_scales(a, streams, &read)?;
    for &(sid, st) in streams {
        let d = st
            .width
            .ok_or_else(|| Error::Internal("accepted stream without width".into()))?;
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
                        scale_then_center(&mut p, a.edit_slot(*node, 1), usize::from(!trans_b));
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
                        scale_then_center(&mut p, a.edit_slot(*node, 1), 1);
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
                                    folded.push(format!(
                                        "{} {:?}",
                                        sn.op().escape_debug(),
                                        sn.label()
                                    ));
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
                    if compress {
                        p.compress_explicit.insert(la.value.clone(), d);
                    }
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
        if compress {
            p.compressed_widths.insert(d);
            // Sources and writers lose the last entry of their centred output axis.
            let fresh: Vec<(NodeId, usize)> = p
                .edits
                .keys()
                .copied()
                .filter(|k| !centred_before.contains(k))
                .collect();
            for key in fresh {
                let axes: Vec<usize> = p.edits[&key]
                    .iter()
                    .filter_map(|e| {
                        if let Edit::Center { axis } = e {
                            Some(*axis)
                        } else {
                            None
                        }
                    })
                    .collect();
                for axis in axes {
                    p.edits
                        .entry(key)
                        .or_default()
                        .push(Edit::DropLast { axis, width: d });
                }
            }
            // Shapes that hard-code D on the stream: Reshape/Expand targets.
            // An explicitly centred value is compressed after its producer (whose target keeps
            // D), and only its stream-side readers see the compressed copy.
            let mut shape_nodes: BTreeSet<NodeId> = BTreeSet::new();
            for v in &st.values {
                let explicit = st
                    .leaves
                    .iter()
                    .any(|l| &l.value == v && matches!(l.leaf, Leaf::Explicit { .. }));
                if explicit {
                    let edges = st.edges.get(v).map(Vec::as_slice).unwrap_or_default();
                    shape_nodes.extend(edges.iter().map(|(c, _)| *c));
                } else {
                    shape_nodes.extend(a.ix.producer(v));
                    shape_nodes.extend(a.ix.consumers(v).iter().map(|(c, _)| *c));
                }
            }
            for node in shape_nodes {
                shrink_target(a, &mut p, node, d);
            }
            // Shapes inside constant chains that state the hidden width at its position.
            for &(node, slot, index) in &st.chain_shapes {
                let vals =
                    a.g.node(node)
                        .input(slot)
                        .and_then(|t| crate::ir::shape::const_ints(a.g, t));
                if let Some(vals) = vals {
                    if vals.get(index) == Some(&(d as i64)) {
                        let e = p.edits.entry((node, slot)).or_default();
                        if !e.iter().any(|x| matches!(x, Edit::ShrinkDim { .. })) {
                            e.push(Edit::ShrinkDim { index, width: d });
                        }
                    }
                }
            }
            for la in &st.leaves {
                if let Leaf::Conv { node } = la.leaf {
                    // Conv → Reshape [N, D, -1]: the channel axis is index 1 there (also behind
                    // a float Cast back from an f32 Conv in an fp16 graph).
                    let mut conv_out = a.g.node(node).out(0).unwrap_or("");
                    if let [(c, 0)] = a.ix.consumers(conv_out) {
                        if a.g.node(*c).is("Cast") {
                            conv_out = a.g.node(*c).out(0).unwrap_or("");
                        }
                    }
                    for &(c, _) in a.ix.consumers(conv_out) {
                        let cn = a.g.node(c);
                        if cn.is("Reshape") {
                            if let Some(t) =
                                cn.input(1).filter(|t| a.g.constant_tensor(t).is_some())
                            {
                                let _ = t;
                                p.edits
                                    .entry((c, 1))
                                    .or_default()
                                    .push(Edit::ShrinkDim { index: 1, width: d });
                            }
                        }
                    }
                }
            }
        }
        let mut norms = Vec::new();
        for &k in &st.norms {
            let m = &a.norms[k];
            if p.ln_tables.iter().any(|(n, _)| *n == k) {
                continue;
            }
            if m.kind != super::norms::NormKind::LayerNorm {
                continue;
            }
            let (fold_plan, kept) = if !fold {
                (None, Some("folding disabled".to_string()))
            } else if m.gamma.is_none() && m.beta.is_none() {
                (None, None)
            } else {
                let mut path = Vec::new();
                let readers =
                    fold_readers(a, &m.y, d, &mut path).and_then(|r| {
                        match costly_new_bias(a, m.beta.as_deref(), &r, d, &read) {
                            Ok(Some(why)) => Err(why),
                            Ok(None) => Ok(r),
                            Err(e) => Err(e.to_string()),
                        }
                    });
                match readers {
                    Ok(r) => {
                        if compress {
                            for node in path {
                                shrink_target(a, &mut p, node, d);
                            }
                        }
                        (Some(r), None)
                    }
                    Err(why) => (None, Some(why)),
                }
            };
            if let Some(readers) = &fold_plan {
                let gamma = m.gamma.as_deref().map(read).transpose()?;
                let beta = m.beta.as_deref().map(read).transpose()?;
                for r in readers {
                    let rn = a.g.node(r.node);
                    let wslot = a.edit_slot(r.node, 1);
                    let w = read(rn.input(1).unwrap_or(""))?;
                    if compress {
                        p.edits
                            .entry(wslot)
                            .or_default()
                            .push(Edit::FoldLastIn { axis: r.in_axis });
                    }
                    if let Some(gm) = &gamma {
                        let gv = broadcast_vec(&gm.data, d)?;
                        p.edits.entry(wslot).or_default().push(Edit::Scale {
                            axis: r.in_axis,
                            gamma: gv,
                        });
                    }
                    if let Some(bt) = &beta {
                        let bv = broadcast_vec(&bt.data, d)?;
                        let mut shift: Vec<f64> =
                            math::shift_through(&w.data, &w.dims, r.in_axis, &bv)
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
                                None if rn.is("Gemm") => {
                                    p.new_gemm_c.push((r.node, shift, centred))
                                }
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
            });
            p.norms.push(NormPlan {
                norm: k,
                fold: fold_plan,
                kept_affine: kept,
                compressed_from: compress.then_some(d),
                width: d,
            });
        }
        if compress {
            let mut compressed: BTreeSet<String> = st.values.clone();
            compressed.extend(st.chain_values.iter().cloned());
            // Constants that a chain reads are compressed along their hidden axis too.
            compressed.extend(st.leaves.iter().filter_map(|l| match &l.leaf {
                Leaf::Const { axis: Some(_), .. } => Some(l.value.clone()),
                _ => None,
            }));
            for np in p
                .norms
                .iter()
                .filter(|np| np.compressed_from == Some(d) && np.fold.is_some())
            {
                let m = &a.norms[np.norm];
                let mut path = Vec::new();
                compressed.insert(m.y.clone());
                if fold_readers(a, &m.y, d, &mut path).is_ok() {
                    for n in path {
                        compressed.extend(a.g.node(n).output.iter().cloned());
                    }
                }
            }
            for v in &compressed {
                for &(c, _) in a.ix.consumers(v) {
                    if !a.g.node(c).is("Shape") || a.g.node(c).attr_i("end").is_some() {
                        continue;
                    }
                    let (own, other) = shape_uses(a, c, &compressed);
                    if own && other {
                        return Err(Error::NotRewritable(format!(
                            "cannot compress the stream: the shape of {v:?} sizes both the compressed value and other tensors (Shape node {:?})",
                            a.g.node(c).label()
                        )));
                    }
                    if other {
                        let rank = a.shapes.rank(v).ok_or_else(|| Error::NotRewritable(format!("cannot compress the stream: the rank of {v:?} (read by Shape node {:?}) is unknown", a.g.node(c).label())))?;
                        p.shape_fixes.push((c, rank));
                    }
                }
            }
        }
        reports.push((sid, leaves, norms));
    }
    // A centring added later (fold into a reader that is also a writer) must come after the fold.
    for e in p.edits.values_mut() {
        e.sort_by_key(Edit::rank);
    }
    Ok((p, reports))
}

/// The values of constant `name`, or of the float `Cast` of a constant that `name` is: the
/// stored values rounded to the Cast's type (what the graph computes with).
fn read_value(a: &Analysis, model: &Model, name: &str) -> Result<Array> {
    read_through(a.g, a.ix, &model.store, &model.path, name)
}

/// [`read_value`] on any graph and index.
fn read_through(
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
    let c = super::stream::cast_of_const(g, ix, name).ok_or_else(vanished)?;
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

/// The LayerScale factors of the accepted streams' affine writers: for each linear op, the
/// product Λ of every scale of its tail (its weight's output axis and its Gemm bias are scaled
/// by it); for each bias slot of a tail, the product of the scales after it.
#[derive(Default)]
struct TailScales {
    linear: HashMap<NodeId, Vec<f64>>,
    bias: HashMap<(NodeId, usize), Vec<f64>>,
}

fn tail_scales(
    a: &Analysis,
    streams: &[(usize, &Stream)],
    read: &dyn Fn(&str) -> Result<Array>,
) -> Result<TailScales> {
    let mut out = TailScales::default();
    for &(_, st) in streams {
        let Some(d) = st.width else { continue };
        for la in &st.leaves {
            let Leaf::Linear { node, tail } = &la.leaf else {
                continue;
            };
            if tail.is_empty() {
                continue;
            }
            let mut prod = vec![1.0; d];
            for step in tail.iter().rev() {
                let c = a.g.node(step.node).input(step.slot).unwrap_or("");
                match step.op {
                    StepOp::Bias => {
                        out.bias
                            .insert(a.edit_slot(step.node, step.slot), prod.clone());
                    }
                    StepOp::Mul | StepOp::Div => {
                        let v = broadcast_vec(&read(c)?.data, d)?;
                        for (p, x) in prod.iter_mut().zip(v) {
                            *p = if step.op == StepOp::Div {
                                *p / x
                            } else {
                                *p * x
                            };
                        }
                    }
                }
            }
            if a.g.node(*node).is("Gemm") && a.g.node(*node).input(2).is_some() {
                out.bias.insert(a.edit_slot(*node, 2), prod.clone());
            }
            out.linear.insert(*node, prod);
        }
    }
    Ok(out)
}

/// Why folding β into `readers` would cost more than it saves, if it would.
///
/// Folding β into a MatMul without a bias creates one (β·W), an Add over the reader's whole
/// output. Keeping β as an Add after the norm costs one Add of width D instead. When the new
/// biases are wider in total than D (an LM head of vocabulary width; q/k/v projections without
/// biases) the affine stays on the norm. Gemm readers take a new C for free.
fn costly_new_bias(
    a: &Analysis,
    beta: Option<&str>,
    readers: &[Reader],
    d: usize,
    read: &dyn Fn(&str) -> Result<Array>,
) -> Result<Option<String>> {
    let Some(beta) = beta else { return Ok(None) };
    if read(beta)?.data.iter().all(|&x| x == 0.0) {
        return Ok(None);
    }
    let mut created = Vec::new();
    for r in readers {
        let n = a.g.node(r.node);
        if r.bias.is_some() || !n.is("MatMul") {
            continue;
        }
        let width = n
            .input(1)
            .and_then(|_| a.const_dims_at(r.node, 1))
            .and_then(|s| s.last().copied())
            .unwrap_or(0);
        created.push((n.label(), width));
    }
    let total: usize = created.iter().map(|(_, w)| w).sum();
    if total <= d {
        return Ok(None);
    }
    let names: Vec<String> = created
        .iter()
        .map(|(l, w)| format!("{l:?} ({w})"))
        .collect();
    Ok(Some(format!(
        "folding β would add biases of total width {total} > {d} to {}",
        names.join(", ")
    )))
}

/// A Reshape/Expand whose constant target ends in the stream width D: make it D−1.
fn shrink_target(a: &Analysis, p: &mut Plan, node: NodeId, d: usize) {
    let n = a.g.node(node);
    if !(n.is("Reshape") || n.is("Expand")) {
        return;
    }
    let Some(t) = n.input(1) else { return };
    let (node, slot, vals) = match crate::ir::shape::const_ints(a.g, t) {
        Some(v) => (node, 1, v),
        None => {
            // A computed target Concat(..., [D]): patch its constant last piece.
            let Some(c) = a.ix.producer(t).filter(|&c| a.g.node(c).is("Concat")) else {
                return;
            };
            let cn = a.g.node(c);
            let last = cn.input.len().saturating_sub(1);
            let Some(v) = cn
                .input(last)
                .and_then(|x| crate::ir::shape::const_ints(a.g, x))
            else {
                return;
            };
            (c, last, v)
        }
    };
    if vals.last() == Some(&(d as i64)) {
        let e = p.edits.entry((node, slot)).or_default();
        if !e.iter().any(|x| matches!(x, Edit::ShrinkDim { .. })) {
            e.push(Edit::ShrinkDim {
                index: vals.len() - 1,
                width: d,
            });
        }
    }
}

/// γ or β of `v.len()` entries as a vector of the width `d`: itself, or a scalar repeated. The
/// matchers only accept lengths 1 and D; anything else is a broken invariant, not a panic.
fn broadcast_vec(v: &[f64], d: usize) -> Result<Vec<f64>> {
    match v {
        _ if v.len() == d => Ok(v.to_vec()),
        [x] => Ok(vec![*x; d]),
        _ => Err(Error::Internal(format!(
            "a scale/shift of {} entries does not broadcast to width {d}",
            v.len()
        ))),
    }
}

/// What applying the plan added.
#[derive(Debug, Default)]
pub struct Applied {
    /// Bytes of new initializers (copies of shared constants, new biases).
    pub bytes_added: usize,
    /// Explicit centering nodes added.
    pub centering_nodes: usize,
    /// Output form of each norm plan, in order.
    pub forms_out: Vec<String>,
}

/// Apply a plan: the one place that mutates the graph.
/// `crms` chooses CRMSNorm's form (`--target crmsnorm`); the caller imports our domain when it
/// is [`CrmsEmit::Custom`](super::CrmsEmit::Custom). Constants of at least `defer_bytes` are
/// edited while the model is written (passes/edit.rs).
pub fn apply(
    model: &mut Model,
    norms: &[NormMatch],
    p: &Plan,
    emit: Emit,
    crms: super::CrmsEmit,
    defer_bytes: usize,
) -> Result<Applied> {
    let mut out = Applied::default();
    let path = model.path.clone();
    let store = model.store.clone();
    let opset = model.onnx_opset();
    let mut removed: BTreeSet<NodeId> = BTreeSet::new();
    let mut dead_consts: BTreeSet<String> = BTreeSet::new();
    // Producers of γ/β behind a Cast (node ids are stable: nodes are only appended below).
    let ix0 = model.graph.index();
    // 1. Constant edits, copy on write. Large initializers are edited while the model is
    //    written, a block of rows at a time (passes/edit.rs); the rest here, in memory.
    for (&(node, slot), edits) in &p.edits {
        let name = model
            .graph
            .node(node)
            .input(slot)
            .ok_or_else(|| Error::Internal(format!("edit of node {node} slot {slot}: no input")))?
            .to_string();
        let t = model
            .graph
            .constant_tensor(&name)
            .ok_or_else(|| Error::Internal(format!("constant {name:?} vanished")))?;
        let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
        // Hostile dims may overflow: then the in-memory path, which reports them.
        let bytes = crate::tensor::element_count(&t.dims)
            .ok()
            .and_then(|n| n.checked_mul(dt::byte_size(t.data_type.unwrap_or(0)).unwrap_or(0)));
        let deferrable = bytes.is_some_and(|b| b >= defer_bytes)
            && (t.raw_data.is_some() || crate::io::is_external(t));
        let is_init = model.graph.initializer_pos(&name).is_some();
        let pipeline = (deferrable && is_init && crate::tensor::is_float(t.data_type.unwrap_or(0)))
            .then(|| edit::RowPipeline::new(&dims, edits))
            .flatten();
        let (_, added) = match pipeline {
            Some(pl) => model
                .graph
                .write_constant_deferred(node, slot, std::sync::Arc::new(pl))?,
            None => {
                let mut arr = read_array(t, &store, &path)?;
                edit::apply_all(&mut arr, edits);
                model.graph.write_constant(node, slot, &arr)?
            }
        };
        if added > 0 {
            dead_consts.insert(name);
        }
        out.bytes_added += added;
    }
    // Why each added node is there (its doc_string): the norm a reader's fold comes from.
    let norm_label = |k: usize| model.graph.node(norms[k].anchor).label();
    let fold_of: HashMap<NodeId, String> = p
        .norms
        .iter()
        .flat_map(|np| {
            np.fold
                .iter()
                .flatten()
                .map(move |r| (r.node, norm_label(np.norm)))
        })
        .collect();
    let mut b = Builder {
        g: &mut model.graph,
        opset,
        prefix: "normopt".into(),
        doc: None,
    };
    // 2. New biases for folded readers without one (β·W; centred, and compressed, when the
    //    reader is also a writer of a stream).
    let with_gemm = p
        .new_bias
        .iter()
        .map(|e| (e, false))
        .chain(p.new_gemm_c.iter().map(|e| (e, true)));
    for ((node, shift, centred), gemm) in with_gemm {
        let mut v = shift.clone();
        if *centred {
            let n = v.len();
            math::center(&mut v, &[n], 0);
            if p.compressed_widths.contains(&n) {
                v.pop();
            }
        }
        b.doc = Some(super::emit::doc_bias(
            fold_of.get(node).map(String::as_str),
            &b.g.node(*node).label(),
        ));
        let dtype = elem_type_of_weight(b.g, *node);
        let c = b.constant("bias", &[v.len()], dtype, &v)?;
        if gemm {
            b.g.set_input(*node, 2, &c);
        } else {
            let o =
                b.g.node(*node)
                    .out(0)
                    .ok_or_else(|| Error::Internal(format!("reader {node} has no output")))?
                    .to_string();
            let mm = b.value("matmul");
            b.g.set_output(*node, 0, &mm)?;
            b.node("", "Add", &[&mm, &c], Some(&o), vec![]);
        }
        out.bytes_added += v.len() * crate::proto::data_type::byte_size(dtype).unwrap_or(4);
    }
    // LayerScale nodes folded into their writers: the node before each takes its output
    // (looked up now: a new bias Add may have been put there).
    for &(node, slot) in &p.bypass {
        let n = b.g.node(node);
        let (Some(i), Some(o)) = (
            n.input(slot).map(str::to_string),
            n.out(0).map(str::to_string),
        ) else {
            return Err(Error::Internal(format!(
                "LayerScale node {node} lost its operands"
            )));
        };
        if let Some(c) = n.input(1 - slot) {
            dead_consts.insert(c.to_string());
        }
        removed.insert(node);
        let prod =
            b.g.nodes()
                .iter()
                .enumerate()
                .filter(|(id, _)| !removed.contains(id))
                .find_map(|(id, m)| m.output.iter().position(|x| *x == i).map(|k| (id, k)))
                .ok_or_else(|| Error::Internal(format!("{i:?} has no producer")))?;
        b.g.set_output(prod.0, prod.1, &o)?;
    }
    // 3. Explicit centering nodes on the stream side of a value.
    let mut renamed: HashMap<String, String> = HashMap::new();
    for (v, edges) in &p.explicit {
        b.doc = Some(super::emit::doc_center(v));
        let mut c = b.center(v)?;
        if let Some(&d) = p.compress_explicit.get(v) {
            c = b.slice_last(&c, d - 1)?;
        }
        for &(node, slot) in edges {
            b.g.set_input(node, slot, &c);
        }
        renamed.insert(v.clone(), c);
        out.centering_nodes += 1;
    }
    // 4. Embedding LayerNorms precomputed: the Gather now produces the norm's output.
    for &(k, gather) in &p.ln_tables {
        let m = &norms[k];
        removed.extend(m.nodes.iter().copied());
        dead_consts.extend(norm_consts(b.g, m));
        b.g.set_output(gather, 0, &m.y)?;
    }
    // 5. Norms → RMSNorm.
    for np in &p.norms {
        let m = &norms[np.norm];
        let folded_into: Vec<String> = np
            .fold
            .iter()
            .flatten()
            .map(|r| b.g.node(r.node).label())
            .collect();
        b.doc = Some(super::emit::doc_norm(
            &b.g.node(m.anchor).label(),
            &m.form.to_string(),
            m.epsilon,
            np.compressed_from,
            &folded_into,
            np.kept_affine.as_deref(),
        ));
        removed.extend(m.nodes.iter().copied());
        dead_consts.extend(norm_consts(b.g, m));
        let dtype = m
            .gamma
            .as_deref()
            .and_then(|gm| b.g.constant_tensor(gm))
            .and_then(|t| t.data_type)
            .filter(|&t| crate::tensor::is_float(t))
            .or_else(|| super::stream::elem_type(b.g, &m.y))
            // New constants are written in this type: a declared non-float type is a lie
            // (the norm computes in floats), not something to write.
            .filter(|&t| crate::tensor::is_float(t))
            .unwrap_or(dt::FLOAT);
        let d = m
            .gamma
            .as_deref()
            .and_then(|gm| super::stream::const_dims_through(b.g, &ix0, gm))
            .and_then(|s| s.last().copied());
        let r = |v: &str| renamed.get(v).cloned().unwrap_or_else(|| v.to_string());
        // onnxruntime's fused residual add + RMSNorm (SkipSimplifiedLayerNormalization without
        // a bias) computes the sum itself.
        let fused_skip = np.compressed_from.is_none()
            && emit == Emit::Onnxruntime
            && m.form == NormForm::SkipLayerNormalization
            && m.skip.as_ref().is_some_and(|s| s.bias.is_none());
        let x = match &m.skip {
            Some(s) if fused_skip => {
                // No plain Add: its names are taken all the same, so that the names of
                // everything built after it do not depend on the form.
                b.reserve_node("Add", s.sum.as_deref());
                String::new()
            }
            Some(s) => {
                let sum_name = s.sum.clone();
                let with_bias = s.bias.is_some();
                let sum = b.node(
                    "",
                    "Add",
                    &[&r(&s.a), &r(&s.b)],
                    if with_bias { None } else { sum_name.as_deref() },
                    vec![],
                );
                match &s.bias {
                    Some(bias) => b.node("", "Add", &[&sum, bias], sum_name.as_deref(), vec![]),
                    None => sum,
                }
            }
            None => r(&m.x),
        };
        if let Some(full) = np.compressed_from {
            // CRMSNorm on the compressed stream; an unfolded affine sees the decompressed vector.
            let (gamma, beta) = if np.fold.is_some() {
                (None, None)
            } else {
                (m.gamma.clone(), m.beta.clone())
            };
            b.crms(
                crms,
                &x,
                full,
                m.epsilon,
                gamma.as_deref(),
                beta.as_deref(),
                dtype,
                m.compute_type,
                &m.y,
            )?;
            let core = if crms == super::CrmsEmit::Custom {
                "CRMSNormalization"
            } else {
                "decomposed CRMSNorm"
            };
            out.forms_out.push(if np.fold.is_some() {
                core.to_string()
            } else {
                format!("{core} + decompression")
            });
            continue;
        }
        let folded = np.fold.is_some();
        let decomposed = emit == Emit::Standard && opset < 23;
        let gamma: Option<String> = if folded || m.gamma.is_none() {
            // Fused ops need a scale of the stream's width (γ/β may be scalars: they broadcast);
            // the decomposed chain keeps a Mul so onnxruntime fuses it.
            let d = if decomposed {
                d.or_else(|| {
                    m.beta
                        .as_deref()
                        .and_then(|bt| super::stream::const_dims_through(b.g, &ix0, bt))
                        .and_then(|s| s.last().copied())
                })
            } else {
                Some(np.width)
            };
            match d {
                Some(d) => Some(b.constant("ones", &[d], dtype, &vec![1.0; d])?),
                None => None,
            }
        } else {
            match m.gamma.as_deref() {
                // A fused op's scale must have the normalised width: widen a broadcast γ.
                Some(gm)
                    if !decomposed
                        && super::stream::const_dims_through(b.g, &ix0, gm)
                            .and_then(|s| s.iter().try_fold(1usize, |a, &d| a.checked_mul(d)))
                            != Some(np.width) =>
                {
                    let arr = read_through(b.g, &ix0, &store, &path, gm)?;
                    let v = broadcast_vec(&arr.data, np.width)?;
                    Some(b.constant("scale", &[np.width], arr.data_type, &v)?)
                }
                g => g.map(str::to_string),
            }
        };
        let beta = if folded { None } else { m.beta.clone() };
        let form = if let (true, Some(s)) = (fused_skip, &m.skip) {
            // Fused residual add + RMSNorm: SkipSimplifiedLayerNormalization without a bias.
            let sum_out = s.sum.clone().unwrap_or_default();
            let core = if beta.is_some() {
                b.value("rms")
            } else {
                m.y.clone()
            };
            let g = gamma.clone().unwrap_or_default();
            let name = b.g.fresh_name("normopt/SkipSimplifiedLayerNormalization");
            b.g.add_node(crate::proto::NodeProto {
                input: vec![r(&s.a), r(&s.b), g],
                output: vec![core.clone(), String::new(), String::new(), sum_out],
                name: Some(name),
                op_type: Some("SkipSimplifiedLayerNormalization".into()),
                domain: Some("com.microsoft".into()),
                attribute: vec![super::emit::attr_f("epsilon", m.epsilon)],
                doc_string: b.doc.clone(),
                ..Default::default()
            });
            if let Some(bt) = &beta {
                b.node("", "Add", &[&core, bt], Some(&m.y), vec![]);
            }
            "com.microsoft:SkipSimplifiedLayerNormalization"
        } else {
            b.rms(
                emit,
                &x,
                gamma.as_deref(),
                beta.as_deref(),
                m.epsilon,
                dtype,
                m.compute_type,
                &m.y,
            )?;
            match (emit, decomposed) {
                (Emit::Onnxruntime, _) => "SimplifiedLayerNormalization",
                (Emit::Standard, false) => "RMSNormalization",
                (Emit::Standard, true) => "decomposed RMSNorm",
            }
        };
        out.forms_out.push(form.into());
    }
    // CRMSNorm: Shape readers that size other tensors still see the original width.
    for &(node, rank) in &p.shape_fixes {
        b.doc = Some(super::emit::doc_shape_fix(&b.g.node(node).label()));
        let o =
            b.g.node(node)
                .out(0)
                .ok_or_else(|| Error::Internal(format!("Shape node {node} has no output")))?
                .to_string();
        let raw = b.value("shape");
        b.g.set_output(node, 0, &raw)?;
        let mut onehot = vec![0.0; rank];
        if let Some(l) = onehot.last_mut() {
            *l = 1.0;
        }
        let c = b.constant("width_fix", &[rank], dt::INT64, &onehot)?;
        b.node("", "Add", &[&raw, &c], Some(&o), vec![]);
    }
    if p.norms
        .iter()
        .any(|np| emit == Emit::Onnxruntime && norms[np.norm].skip.is_some())
    {
        model.ensure_import("com.microsoft", 1);
    }
    // A Cast of γ/β that only the replaced norms read goes with them.
    let casts: BTreeSet<NodeId> = p
        .norms
        .iter()
        .map(|np| np.norm)
        .chain(p.ln_tables.iter().map(|(k, _)| *k))
        .flat_map(|k| norms[k].gamma.iter().chain(norms[k].beta.iter()))
        .filter_map(|v| super::stream::cast_of_const(&model.graph, &ix0, v))
        .collect();
    if !casts.is_empty() {
        let mut reads: HashMap<&str, usize> = HashMap::new();
        for (i, n) in model.graph.nodes().iter().enumerate() {
            if !removed.contains(&i) {
                for v in &n.input {
                    *reads.entry(v.as_str()).or_default() += 1;
                }
            }
        }
        let outputs: BTreeSet<&str> = model
            .graph
            .outputs()
            .iter()
            .filter_map(|o| o.name.as_deref())
            .collect();
        let mut gone = Vec::new();
        for c in casts {
            let n = model.graph.node(c);
            let o = n.out(0).unwrap_or("");
            if reads.get(o).copied().unwrap_or(0) == 0 && !outputs.contains(o) {
                gone.push((c, n.input(0).unwrap_or("").to_string()));
            }
        }
        for (c, src) in gone {
            removed.insert(c);
            dead_consts.insert(src);
        }
    }
    // 6. Remove the replaced nodes, restore order, drop what nobody reads.
    let g = &mut model.graph;
    if !p.compressed_widths.is_empty() {
        // Intermediate type annotations of width D are stale after compression: drop them
        // (they are optional hints; graph inputs and outputs keep theirs).
        g.retain_value_info(|v| {
            let dims = v
                .r#type
                .as_ref()
                .and_then(|t| t.tensor_type.as_ref())
                .and_then(|t| t.shape.as_ref());
            !dims.is_some_and(|s| {
                s.dim.iter().any(|d| {
                    d.dim_value
                        .is_some_and(|x| x > 0 && p.compressed_widths.contains(&(x as usize)))
                })
            })
        });
    }
    g.remove_nodes(&removed);
    g.toposort()
        .map_err(|e| Error::Internal(format!("after the rewrite: {e}")))?;
    g.drop_unused_constants(&dead_consts);
    g.check()
        .map_err(|e| Error::Internal(format!("the rewritten graph is invalid: {e}")))?;
    Ok(out)
}

fn norm_consts(g: &crate::ir::Graph, m: &NormMatch) -> Vec<String> {
    m.nodes
        .iter()
        .flat_map(|&n| {
            g.node(n)
                .input
                .iter()
                .filter(|i| g.constant_tensor(i).is_some())
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect()
}

fn elem_type_of_weight(g: &crate::ir::Graph, node: NodeId) -> i32 {
    g.node(node)
        .input(1)
        .and_then(|w| g.constant_tensor(w))
        .and_then(|t| t.data_type)
        .filter(|&t| crate::tensor::is_float(t))
        .unwrap_or(dt::FLOAT)
}
