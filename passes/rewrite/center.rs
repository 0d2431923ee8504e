//! The RMSNorm plan of one stream (design §3): every leaf (source or writer) centred, every
//! LayerNorm replaced, its affine folded into its linear readers when it can be (`fold.rs`).

use super::super::edit::Edit;
use super::super::math;
use super::super::report::{Centring, ConstantAxis, KeptAffine};
use super::super::stream::{Analysis, Leaf, StepOp, Stream};
use super::fold::{costly_new_bias, fold_readers, TailScales};
use super::plan::{broadcast_vec, NormPlan, Plan, PlannedLeaf, StreamPlan};
use crate::ir::{Model, NodeExt, NodeId};
use crate::tensor::Array;
use crate::{Error, Result};
use std::collections::BTreeMap;

pub(super) fn norm_label(a: &Analysis, k: usize) -> String {
    a.g.node(a.norms[k].anchor).label()
}

/// The RMSNorm plan of one stream of width `d`: every leaf centred, every LayerNorm replaced,
/// its affine folded into its readers when it can be.
#[allow(clippy::too_many_arguments)]
pub(super) fn plan_stream(
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
    // The centrings each constant slot had before this stream's leaves: the slots this stream
    // centres are its writers (a slot an earlier stream folded a norm into counts too: a reader
    // of one stream that writes the next, GIT's visual projection).
    let centrings = |p: &Plan| -> BTreeMap<(NodeId, usize), usize> {
        p.edits
            .iter()
            .map(|(k, e)| {
                (
                    *k,
                    e.iter()
                        .filter(|x| matches!(x, Edit::Center { .. }))
                        .count(),
                )
            })
            .collect()
    };
    let centred_before = centrings(p);
    for la in &st.leaves {
        let (node, how) = match &la.leaf {
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
                let over = if dims.get(axis).copied().unwrap_or(1) == 1 {
                    ConstantAxis::Broadcast
                } else if hidden.is_some() {
                    ConstantAxis::Hidden(axis)
                } else {
                    ConstantAxis::Last
                };
                let mut through = through.clone();
                through.reverse();
                (*node, Centring::Constant { over, through })
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
                let gemm_trans_b = if n.is("Gemm") {
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
                    Some(trans_b)
                } else {
                    scale_then_center(p, a.edit_slot(*node, 1), 1);
                    None
                };
                let mut layer_scale = None;
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
                    layer_scale = Some(folded);
                }
                (
                    *node,
                    Centring::Linear {
                        gemm_trans_b,
                        layer_scale,
                    },
                )
            }
            Leaf::Table { node } => {
                p.center(a.edit_slot(*node, 0), 1);
                (*node, Centring::Table)
            }
            Leaf::Conv { node } => {
                p.center(a.edit_slot(*node, 1), 0);
                if a.g.node(*node).input(2).is_some() {
                    p.center(a.edit_slot(*node, 2), 0);
                }
                (*node, Centring::Conv)
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
                    *gather,
                    Centring::LnTable {
                        norm: norm_label(a, *norm),
                    },
                )
            }
            Leaf::Explicit { why } => {
                let edges = st.edges.get(&la.value).cloned().unwrap_or_default();
                p.explicit.insert(la.value.clone(), edges);
                let node = a.ix.producer(&la.value).unwrap_or(usize::MAX);
                (node, Centring::Explicit { why: why.clone() })
            }
        };
        leaves.push(PlannedLeaf {
            value: la.value.clone(),
            leaf: la.leaf.clone(),
            node,
            how,
        });
    }
    // The constant slots this stream's leaves centred.
    let writers: Vec<(NodeId, usize)> = centrings(p)
        .into_iter()
        .filter(|(k, n)| *n > centred_before.get(k).copied().unwrap_or(0))
        .map(|(k, _)| k)
        .collect();
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
            // No affine to fold: the readers still decide whether a CRMSNorm output can stay
            // compressed (each folds the last entry in) or must be decompressed.
            let mut path = Vec::new();
            match fold_readers(a, &m.y, d, &mut path) {
                Ok(r) => {
                    fold_path = path;
                    (Some(r), None)
                }
                Err(_) => (None, None),
            }
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
        writers,
        norm_plans: norms_start..p.norms.len(),
        fold_paths,
    })
}
