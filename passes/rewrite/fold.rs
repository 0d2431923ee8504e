//! Folding a norm's γ and β into its linear readers (W' = diag(γ)·W, b' = b + β·W), and the
//! LayerScale factors of affine writers that readers and biases are scaled by.

use super::super::stream::{Analysis, Leaf, StepOp, Stream};
use super::plan::{broadcast_vec, Reader};
use crate::ir::{NodeExt, NodeId};
use crate::tensor::Array;
use crate::Result;
use std::collections::HashMap;

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

/// The LayerScale factors of the accepted streams' affine writers: for each linear op, the
/// product Λ of every scale of its tail (its weight's output axis and its Gemm bias are scaled
/// by it); for each bias slot of a tail, the product of the scales after it.
#[derive(Default)]
pub(super) struct TailScales {
    pub linear: HashMap<NodeId, Vec<f64>>,
    pub bias: HashMap<(NodeId, usize), Vec<f64>>,
}

pub(super) fn tail_scales(
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
pub(super) fn costly_new_bias(
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
