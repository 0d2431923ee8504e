//! The CRMSNorm compression phase (`--target crmsnorm`, design §4).
//!
//! It runs on each stream right after the stream's RMSNorm plan ([`super::plan()`]) and
//! compresses what that plan did into the form's basis ([`Basis`]): sources and writers
//! compress their centred output axis (drop its last entry, or project it, y ← M·y), readers
//! read the compressed stream (W' = W[0:D−1] − W[D−1], or s·M·W), explicit centering outputs
//! are compressed to D−1, norms become CRMSNorm, shape constants that hard-code D become D−1,
//! and `Shape` nodes whose result sizes other tensors get their width back. Weight edits join
//! the constant's edit list (one rounding per constant); the rest become patches of their own
//! (shape fixes, stale `value_info`).

use super::super::edit::Edit;
use super::super::math::Basis;
use super::super::stream::{Analysis, Leaf, Stream};
use super::fold::fold_readers;
use super::plan::{Plan, StreamPlan};
use crate::ir::{NodeExt, NodeId};
use crate::Result;
use std::collections::BTreeSet;

/// Compress stream `st` of width `d`, whose RMSNorm plan `s` is in `p`, into `basis`.
pub(super) fn compress_stream(
    a: &Analysis,
    p: &mut Plan,
    st: &Stream,
    d: usize,
    s: &StreamPlan,
    basis: Basis,
) -> Result<()> {
    p.compressed_widths.insert(d);
    p.basis = Some(basis);
    // Explicit centering outputs are compressed to D−1, with constants of the value's element
    // type: its declared type, else a stream value's, else its norms' γ type.
    let declared = st
        .values
        .iter()
        .find_map(|v| super::super::stream::elem_type(a.g, v));
    let elem = declared
        .or_else(|| {
            st.norms.iter().find_map(|&k| {
                let gm = a.norms[k].gamma.as_deref()?;
                a.g.constant_tensor(gm)?.data_type
            })
        })
        .filter(|&t| crate::tensor::is_float(t))
        .unwrap_or(crate::proto::data_type::FLOAT);
    for la in &st.leaves {
        if matches!(la.leaf, Leaf::Explicit { .. }) {
            let own = super::super::stream::elem_type(a.g, &la.value)
                .filter(|&t| crate::tensor::is_float(t));
            p.compress_explicit
                .insert(la.value.clone(), (d, own.unwrap_or(elem)));
        }
    }
    // Sources and writers lose the last entry of their centred output axis.
    for &key in &s.writers {
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
            p.edits.entry(key).or_default().push(Edit::DropLast {
                axis,
                width: d,
                basis,
            });
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
        shrink_target(a, p, node, d);
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
                if !cn.is("Reshape") {
                    continue;
                }
                if cn
                    .input(1)
                    .is_some_and(|t| a.g.constant_tensor(t).is_some())
                {
                    p.edits
                        .entry((c, 1))
                        .or_default()
                        .push(Edit::ShrinkDim { index: 1, width: d });
                } else if let Some((n, slot, index)) = a.const_shape_slot(c, 1, 1, 0) {
                    // A target computed as `Concat(Shape(x)[:1], [D], [h·w])` (the dynamo
                    // exporter with dynamic image sizes): its constant D.
                    let at = a.g.node(n).input(slot);
                    let vals = at.and_then(|t| crate::ir::shape::const_ints(a.g, t));
                    if vals.and_then(|v| v.get(index).copied()) == Some(d as i64) {
                        p.edits
                            .entry((n, slot))
                            .or_default()
                            .push(Edit::ShrinkDim { index, width: d });
                    }
                }
            }
        }
    }
    // The norms become CRMSNorm; their readers fold the last input entry in, and shapes between
    // a norm and its readers lose D.
    for np in &mut p.norms[s.norm_plans.clone()] {
        np.compressed_from = Some(d);
    }
    for (i, path) in &s.fold_paths {
        for &node in path {
            shrink_target(a, p, node, d);
        }
        let readers = p.norms[*i].fold.clone().unwrap_or_default();
        for r in readers {
            p.edits
                .entry(a.edit_slot(r.node, 1))
                .or_default()
                .push(Edit::FoldLastIn {
                    axis: r.in_axis,
                    basis,
                });
        }
    }
    let mut compressed: BTreeSet<String> = st.values.clone();
    compressed.extend(st.chain_values.iter().cloned());
    // Centred constants are compressed along their hidden axis too.
    compressed.extend(st.leaves.iter().filter_map(|l| match &l.leaf {
        Leaf::Const { .. } => Some(l.value.clone()),
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
            // A Shape that sizes only other tensors says D again (+1 on its last entry); one
            // that sizes both the compressed value and others, or of unknown rank, is left to
            // the check of every size input (widths.rs), which fixes each reader or refuses.
            let (own, other) = shape_uses(a, c, &compressed);
            if other && !own {
                if let Some(rank) = a.shapes.rank(v) {
                    p.shape_fixes.push((c, rank));
                }
            }
        }
    }
    Ok(())
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

/// A Reshape/Expand whose constant target ends in the stream width D: make it D−1.
pub(super) fn shrink_target(a: &Analysis, p: &mut Plan, node: NodeId, d: usize) {
    let n = a.g.node(node);
    if !(n.is("Reshape") || n.is("Expand")) {
        return;
    }
    let Some(t) = n.input(1) else { return };
    let (node, slot, vals) = match crate::ir::shape::const_ints(a.g, t) {
        Some(v) => (node, 1, v),
        None => {
            // A computed target Concat(..., [D]): patch its constant last piece. tf2onnx
            // casts the int32 target to int64 after the Concat: look through that Cast when it
            // only feeds shape inputs (jax2tf: the same target for Reshape and Expand).
            let mut t = t;
            if let Some(cast) = a.ix.producer(t).filter(|&c| a.g.node(c).is("Cast")) {
                let shapes_only = a.ix.consumers(t).iter().all(|&(c, slot)| {
                    slot == 1 && (a.g.node(c).is("Reshape") || a.g.node(c).is("Expand"))
                });
                if shapes_only {
                    t = a.g.node(cast).input(0).unwrap_or(t);
                }
            }
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
