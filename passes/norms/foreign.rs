//! LayerNorm forms written by other frameworks' converters (issue #14), matched by structure.
//! Each is the same LayerNorm, LN(x) = γ ⊙ (x − μ)/√(σ² + ε) + β over the last axis, computed
//! another way; the rewrite replaces the whole pattern like any other LayerNorm, and the pass
//! verifies the result by running it.
//!
//! - **Flax through jax2tf and tf2onnx** (`nn.LayerNorm`), anchored at `ReduceSum(x)`:
//!   μ = ReduceSum(x)·(1/n), `E[x²]` = ReduceSum(x·x)·(1/n), σ² = max(0, `E[x²]` − μ·μ), the
//!   statistics brought back to x's shape by `Reshape`/`Expand`, and
//!   y = (x − μ) · (Reciprocal(Sqrt(σ² + ε)) · γ) + β.
//!   Identity: `E[x²]` − `E[x]`² = `E[(x − μ)²]` = σ² (≥ 0, so the max changes nothing in exact
//!   arithmetic), and γ multiplying the inverse deviation before the centred value is
//!   γ ⊙ (x − μ)/σ by commutativity.
//! - **Keras `LayerNormalization` through tf2onnx**, anchored at the mean (`GlobalAveragePool`
//!   of a rank-3 x, which averages its last axis, or `ReduceMean` over the last axis):
//!   d = x − μ, σ² = mean(d·d), r = Reciprocal(Sqrt(σ² + ε)) · γ, y = x·r + (β − μ·r)
//!   (TensorFlow's `batch_normalization` arrangement of the affine part).
//!   Identity: x·r + β − μ·r = (x − μ)·r + β = γ ⊙ (x − μ)/σ + β.
//!
//! (PaddlePaddle through paddle2onnx writes the common decomposed chain with `Identity` nodes
//! between ops, which `Ctx::decomposed_layernorm` already matches.)
//!
//! A matcher returns `Ok(NormMatch)`, `Err(None)` when the anchor is not the start of this form
//! (an ordinary ReduceSum), or `Err(Some(reason))` when it looked like this LayerNorm and
//! something structural stopped it (reported as a near miss, never "no normalisation found").

use super::{Ctx, NoMatch, NormForm, NormKind, NormMatch};
use crate::ir::{shape, NodeExt, NodeId};
use crate::proto::NodeProto;
use std::collections::BTreeSet;

/// No match: `None` when the anchor is not this form at all, else why it is not.
pub type Miss = Option<NoMatch>;

fn near(why: NoMatch) -> Miss {
    Some(why)
}

fn scalar(ctx: &Ctx, v: &str) -> Option<f64> {
    let t = ctx.g.constant_tensor(v)?;
    if crate::tensor::element_count(&t.dims).ok()? != 1 {
        return None;
    }
    crate::ir::read_array(t, &Default::default(), std::path::Path::new(""))
        .ok()?
        .data
        .first()
        .copied()
}

fn out0(n: &NodeProto) -> Option<String> {
    n.out(0).map(str::to_string)
}

fn no_output(n: &NodeProto) -> NoMatch {
    NoMatch::NoOutput {
        op: n.op().to_string(),
        node: n.label(),
    }
}

/// The operand of binary `n` that is not `v` (`v` itself when both are `v`).
fn other<'a>(n: &'a NodeProto, v: &str) -> Option<&'a str> {
    match (n.input(0), n.input(1)) {
        (Some(a), Some(b)) if a == v => Some(b),
        (Some(a), Some(b)) if b == v => Some(a),
        _ => None,
    }
}

/// The nodes reading `v`. (Graph outputs and subgraph reads are not nodes: [`closed`] checks
/// them once the pattern is known, so that the reason names them.)
fn readers(ctx: &Ctx, v: &str) -> Vec<NodeId> {
    let mut r: Vec<NodeId> = ctx.ix.consumers(v).iter().map(|(c, _)| *c).collect();
    r.dedup();
    r
}

fn sole(ctx: &Ctx, v: &str) -> Option<NodeId> {
    match readers(ctx, v).as_slice() {
        [c] => Some(*c),
        _ => None,
    }
}

/// Whether reduce node `n` (ReduceSum/ReduceMean) reduces the last axis of `x` alone, and its
/// keepdims.
fn last_axis(ctx: &Ctx, n: &NodeProto, x: &str) -> Option<bool> {
    let axes = n
        .attr_ints("axes")
        .map(<[i64]>::to_vec)
        .or_else(|| n.input(1).and_then(|a| shape::const_ints(ctx.g, a)))?;
    let last = match axes.as_slice() {
        [-1] => true,
        [a] => ctx.shapes.rank(x).is_some_and(|r| *a == r as i64 - 1),
        _ => false,
    };
    last.then(|| n.attr_i("keepdims").unwrap_or(1) != 0)
}

/// Follow `v` through `Reshape`/`Expand`/`Unsqueeze` (the statistics brought back to x's
/// shape), each the sole reader of the one before. Returns the last value and the nodes.
fn through_broadcasts(ctx: &Ctx, v: &str, nodes: &mut Vec<NodeId>) -> String {
    let mut cur = v.to_string();
    while let Some(c) = sole(ctx, &cur) {
        let n = ctx.g.node(c);
        if !(n.is("Reshape") || n.is("Expand") || n.is("Unsqueeze")) || n.input(0) != Some(&cur) {
            break;
        }
        match out0(n) {
            Some(o) => {
                nodes.push(c);
                cur = o;
            }
            None => break,
        }
    }
    cur
}

/// `Mul(s, 1/n)` or `Div(s, n)` with n the width of the last axis of `x` (when known; any
/// constant when not): the mean from a sum. Returns the node.
fn mean_of_sum(ctx: &Ctx, s: &str, x: &str) -> Option<NodeId> {
    let c = sole(ctx, s)?;
    let n = ctx.g.node(c);
    let k = scalar(ctx, other(n, s)?)?;
    let width = ctx.shapes.last(x).filter(|&w| w > 0).map(|w| w as f64);
    let fits = |want: f64| width.is_none_or(|w| (want - w).abs() <= 1e-6 * w);
    let ok = (n.is("Mul") && k != 0.0 && fits(1.0 / k))
        || (n.is("Div") && n.input(0) == Some(s) && fits(k));
    ok.then_some(c)
}

/// A constant that can be γ or β of a norm of `x`: one entry, or the width of `x`'s last axis
/// along its own last axis (other axes 1).
fn affine_const(ctx: &Ctx, c: &str, x: &str) -> bool {
    let Some(dims) = crate::ir::const_dims_through(ctx.g, ctx.ix, c) else {
        return false;
    };
    let n: usize = dims.iter().product();
    if n == 1 {
        return true;
    }
    n > 0 && dims.last() == Some(&n) && ctx.shapes.last(x).is_none_or(|w| w == n as i64)
}

/// Every value computed inside the pattern (all outputs of `nodes` but `y`) is read only by the
/// pattern: else the reason, naming the outside reader.
fn closed(ctx: &Ctx, nodes: &[NodeId], y: &str) -> Result<(), NoMatch> {
    let set: BTreeSet<NodeId> = nodes.iter().copied().collect();
    for &id in nodes {
        for o in ctx.g.node(id).output.iter().filter(|o| !o.is_empty()) {
            if o == y {
                continue;
            }
            if ctx.ix.graph_outputs.contains(o) {
                return Err(NoMatch::ForeignIntermediateIsOutput { value: o.clone() });
            }
            if ctx.ix.subgraph_reads.contains_key(o) {
                return Err(NoMatch::ForeignIntermediateInSubgraph { value: o.clone() });
            }
            if let Some((c, _)) = ctx.ix.consumers(o).iter().find(|(c, _)| !set.contains(c)) {
                let cn = ctx.g.node(*c);
                return Err(NoMatch::ForeignIntermediateReadBy {
                    value: o.clone(),
                    op: cn.op().to_string(),
                    node: cn.label(),
                });
            }
        }
    }
    Ok(())
}

/// `Reciprocal(Sqrt(a))` or `Div(1, Sqrt(a))` after `a` (= σ² + ε): the inverse deviation and
/// the nodes.
fn inverse_sqrt(ctx: &Ctx, a: &str, nodes: &mut Vec<NodeId>) -> Result<String, NoMatch> {
    let sq = sole(ctx, a)
        .filter(|&s| ctx.g.node(s).is("Sqrt"))
        .ok_or(NoMatch::NoSqrt)?;
    let s = out0(ctx.g.node(sq)).ok_or_else(|| no_output(ctx.g.node(sq)))?;
    let r = sole(ctx, &s).ok_or(NoMatch::ForeignDeviationSeveralReaders)?;
    let rn = ctx.g.node(r);
    let inv = rn.is("Reciprocal")
        || (rn.is("Div")
            && rn.input(1) == Some(s.as_str())
            && rn.input(0).and_then(|one| scalar(ctx, one)) == Some(1.0));
    if !inv {
        return Err(NoMatch::DeviationNotInverted);
    }
    nodes.extend([sq, r]);
    out0(rn).ok_or_else(|| no_output(rn))
}

/// `Add(v, ε)`: ε and the node.
fn plus_eps(ctx: &Ctx, v: &str) -> Result<(f32, NodeId), NoMatch> {
    let a = sole(ctx, v)
        .filter(|&a| ctx.g.node(a).is("Add"))
        .ok_or(NoMatch::NoEpsilonAdd)?;
    let eps = other(ctx.g.node(a), v)
        .and_then(|e| scalar(ctx, e))
        .ok_or(NoMatch::EpsilonNotConst)?;
    Ok((eps as f32, a))
}

/// `Mul(r, γ)` after the inverse deviation `r`, when there is one: (r·γ, γ).
fn times_gamma(ctx: &Ctx, r: &str, x: &str, nodes: &mut Vec<NodeId>) -> (String, Option<String>) {
    if let Some(m) = sole(ctx, r) {
        let n = ctx.g.node(m);
        if n.is("Mul") {
            if let (Some(g), Some(o)) = (other(n, r).filter(|g| affine_const(ctx, g, x)), out0(n)) {
                nodes.push(m);
                return (o, Some(g.to_string()));
            }
        }
    }
    (r.to_string(), None)
}

fn matched(
    form: NormForm,
    anchor: NodeId,
    nodes: Vec<NodeId>,
    x: &str,
    y: String,
    (gamma, beta): (Option<String>, Option<String>),
    epsilon: f32,
) -> NormMatch {
    NormMatch {
        kind: NormKind::LayerNorm,
        form,
        anchor,
        nodes,
        x: x.to_string(),
        skip: None,
        y,
        gamma,
        beta,
        epsilon,
        axis: -1,
        compute_type: None,
        extra_outputs_read: vec![],
    }
}

/// Flax's LayerNorm through jax2tf and tf2onnx, anchored at `ReduceSum(x)` (module doc).
pub fn jax_layernorm(ctx: &Ctx, id: NodeId) -> Result<NormMatch, Miss> {
    let rs1 = ctx.g.node(id);
    if !rs1.is("ReduceSum") {
        return Err(None);
    }
    let x = rs1.input(0).ok_or(None)?.to_string();
    let keep = last_axis(ctx, rs1, &x).ok_or(None)?;
    let s1 = out0(rs1).ok_or(None)?;
    let mm = mean_of_sum(ctx, &s1, &x).ok_or(None)?;
    let mean = out0(ctx.g.node(mm)).ok_or(None)?;
    // μ is read by the square μ·μ and, through Reshape/Expand, by the subtraction x − μ.
    let mut nodes = vec![id, mm];
    let mut sq_mean = None;
    let mut bcast = None;
    for c in readers(ctx, &mean) {
        let n = ctx.g.node(c);
        if n.is("Mul") && n.input(0) == Some(&mean) && n.input(1) == Some(&mean) {
            sq_mean = Some(c);
        } else if bcast.replace(c).is_some() {
            return Err(None);
        }
    }
    let (sq_mean, first) = (sq_mean.ok_or(None)?, bcast.ok_or(None)?);
    // x − μ, μ first brought back to x's shape by Reshape/Expand/Unsqueeze (or not).
    let mut centre_nodes = vec![];
    let fnode = ctx.g.node(first);
    let sub = if fnode.is("Sub") {
        first
    } else if (fnode.is("Reshape") || fnode.is("Expand") || fnode.is("Unsqueeze"))
        && fnode.input(0) == Some(&mean)
    {
        centre_nodes.push(first);
        let v = through_broadcasts(ctx, &out0(fnode).ok_or(None)?, &mut centre_nodes);
        sole(ctx, &v).ok_or(None)?
    } else {
        return Err(None);
    };
    let subn = ctx.g.node(sub);
    let mean_b = ctx.g.node(*centre_nodes.last().unwrap_or(&mm)).out(0);
    if !(subn.is("Sub") && subn.input(0) == Some(&x) && subn.input(1) == mean_b) {
        return Err(None);
    }
    // From here on it is a LayerNorm that may not match: say why.
    nodes.extend(centre_nodes);
    nodes.extend([sub, sq_mean]);
    let centred = out0(ctx.g.node(sub)).ok_or(None)?;
    // E[x²]: ReduceSum(x·x) over the same axis, times 1/n.
    let xx = readers(ctx, &x)
        .into_iter()
        .find(|&c| {
            let n = ctx.g.node(c);
            n.is("Mul") && n.input(0) == Some(&x) && n.input(1) == Some(&x)
        })
        .ok_or_else(|| near(NoMatch::ForeignNoSquareOfX))?;
    let xxv = out0(ctx.g.node(xx)).ok_or(None)?;
    let rs2 = sole(ctx, &xxv)
        .filter(|&r| {
            let n = ctx.g.node(r);
            n.is("ReduceSum") && last_axis(ctx, n, &x) == Some(keep)
        })
        .ok_or_else(|| near(NoMatch::ForeignSquareNotSummed))?;
    let s2 = out0(ctx.g.node(rs2)).ok_or(None)?;
    let mm2 = mean_of_sum(ctx, &s2, &x).ok_or_else(|| near(NoMatch::ForeignSumNotDivided))?;
    let m2 = out0(ctx.g.node(mm2)).ok_or(None)?;
    nodes.extend([xx, rs2, mm2]);
    // σ² = E[x²] − μ², optionally max(0, ·).
    let vs = sole(ctx, &m2)
        .filter(|&v| {
            let n = ctx.g.node(v);
            n.is("Sub") && n.input(0) == Some(&m2) && n.input(1) == ctx.g.node(sq_mean).out(0)
        })
        .ok_or_else(|| near(NoMatch::ForeignNotMomentDifference))?;
    nodes.push(vs);
    let mut var = out0(ctx.g.node(vs)).ok_or(None)?;
    if let Some(mx) = sole(ctx, &var) {
        let n = ctx.g.node(mx);
        if n.is("Max") && other(n, &var).and_then(|z| scalar(ctx, z)) == Some(0.0) {
            nodes.push(mx);
            var = out0(n).ok_or(None)?;
        }
    }
    let var = through_broadcasts(ctx, &var, &mut nodes);
    let (epsilon, add) = plus_eps(ctx, &var).map_err(near)?;
    nodes.push(add);
    let a = out0(ctx.g.node(add)).ok_or(None)?;
    let r = inverse_sqrt(ctx, &a, &mut nodes).map_err(near)?;
    let (rg, gamma) = times_gamma(ctx, &r, &x, &mut nodes);
    // y = (x − μ) · r·γ (+ β)
    let apply = sole(ctx, &rg)
        .filter(|&m| ctx.g.node(m).is("Mul") && other(ctx.g.node(m), &rg) == Some(&centred))
        .ok_or_else(|| near(NoMatch::NotMulByInverse))?;
    if sole(ctx, &centred) != Some(apply) {
        return Err(near(NoMatch::CentredOtherReaders));
    }
    nodes.push(apply);
    let mut y = out0(ctx.g.node(apply)).ok_or(None)?;
    let mut beta = None;
    if let Some(b) = sole(ctx, &y) {
        let n = ctx.g.node(b);
        if n.is("Add") {
            if let Some(c) = other(n, &y).filter(|c| affine_const(ctx, c, &x)) {
                beta = Some(c.to_string());
                nodes.push(b);
                y = out0(n).ok_or(None)?;
            }
        }
    }
    closed(ctx, &nodes, &y).map_err(near)?;
    Ok(matched(
        NormForm::JaxLayerNorm,
        id,
        nodes,
        &x,
        y,
        (gamma, beta),
        epsilon,
    ))
}

/// Keras's LayerNormalization through tf2onnx, anchored at the mean: `GlobalAveragePool(x)`
/// with x of rank 3, or `ReduceMean(x)` over the last axis keeping it (module doc).
pub fn keras_layernorm(ctx: &Ctx, id: NodeId) -> Result<NormMatch, Miss> {
    let mn = ctx.g.node(id);
    let x = mn.input(0).ok_or(None)?.to_string();
    let is_mean = match mn.op() {
        "GlobalAveragePool" => ctx.shapes.rank(&x) == Some(3),
        "ReduceMean" => last_axis(ctx, mn, &x) == Some(true),
        _ => false,
    };
    if !is_mean || !mn.domain().is_empty() {
        return Err(None);
    }
    let mean = out0(mn).ok_or(None)?;
    // μ is read by x − μ (for the variance) and by μ·r (for the shift).
    let rd = readers(ctx, &mean);
    let sub = rd
        .iter()
        .copied()
        .find(|&c| {
            let n = ctx.g.node(c);
            n.is("Sub") && n.input(0) == Some(&x) && n.input(1) == Some(&mean)
        })
        .ok_or(None)?;
    let d = out0(ctx.g.node(sub)).ok_or(None)?;
    let sq = sole(ctx, &d)
        .filter(|&s| {
            let n = ctx.g.node(s);
            (n.is("Mul") && n.input(0) == Some(&d) && n.input(1) == Some(&d))
                || (n.is("Pow")
                    && n.input(0) == Some(&d)
                    && n.input(1).and_then(|e| scalar(ctx, e)) == Some(2.0))
        })
        .ok_or(None)?;
    let sqv = out0(ctx.g.node(sq)).ok_or(None)?;
    let vm = sole(ctx, &sqv)
        .filter(|&v| {
            let n = ctx.g.node(v);
            n.op() == mn.op()
                && (n.is("GlobalAveragePool") || last_axis(ctx, n, &sqv) == Some(true))
        })
        .ok_or(None)?;
    // From here on it is a LayerNorm (the centred value is only squared and averaged: the
    // normalised value is x·r + (β − μ·r)); say why it does not match.
    let mut nodes = vec![id, sub, sq, vm];
    let var = out0(ctx.g.node(vm)).ok_or(None)?;
    let (epsilon, add) = plus_eps(ctx, &var).map_err(near)?;
    nodes.push(add);
    let a = out0(ctx.g.node(add)).ok_or(None)?;
    let r = inverse_sqrt(ctx, &a, &mut nodes).map_err(near)?;
    let (rg, gamma) = times_gamma(ctx, &r, &x, &mut nodes);
    // r·γ is read by x·(r·γ) and μ·(r·γ).
    let mut xs = None;
    let mut ms = None;
    for c in readers(ctx, &rg) {
        let n = ctx.g.node(c);
        match (n.is("Mul"), other(n, &rg)) {
            (true, Some(o)) if o == x => xs = Some(c),
            (true, Some(o)) if o == mean => ms = Some(c),
            _ => {
                return Err(near(NoMatch::ForeignInverseReadBy {
                    op: n.op().to_string(),
                    node: n.label(),
                }))
            }
        }
    }
    let xs = xs.ok_or_else(|| near(NoMatch::ForeignXNotScaled))?;
    let ms = ms.ok_or_else(|| near(NoMatch::ForeignMeanNotScaled))?;
    if rd.len() != 2 || !rd.contains(&ms) {
        return Err(near(NoMatch::MeanOtherReaders));
    }
    nodes.extend([xs, ms]);
    let msv = out0(ctx.g.node(ms)).ok_or(None)?;
    let xsv = out0(ctx.g.node(xs)).ok_or(None)?;
    // shift = β − μ·r (or −μ·r written as x·r − μ·r when there is no β).
    let sh = sole(ctx, &msv)
        .filter(|&s| ctx.g.node(s).is("Sub") && ctx.g.node(s).input(1) == Some(&msv))
        .ok_or_else(|| near(NoMatch::ForeignMeanScaledNotSubtracted))?;
    let shn = ctx.g.node(sh);
    nodes.push(sh);
    let (y, beta) = if shn.input(0) == Some(&xsv) {
        (out0(shn).ok_or(None)?, None)
    } else {
        let b = shn
            .input(0)
            .filter(|b| affine_const(ctx, b, &x))
            .ok_or_else(|| near(NoMatch::ForeignShiftNotBeta))?
            .to_string();
        let shv = out0(shn).ok_or(None)?;
        let add = sole(ctx, &shv)
            .filter(|&a| ctx.g.node(a).is("Add") && other(ctx.g.node(a), &shv) == Some(&xsv))
            .ok_or_else(|| near(NoMatch::ForeignNotAdded))?;
        nodes.push(add);
        (out0(ctx.g.node(add)).ok_or(None)?, Some(b))
    };
    if sole(ctx, &xsv).is_none() {
        return Err(near(NoMatch::ForeignScaledOtherReaders));
    }
    closed(ctx, &nodes, &y).map_err(near)?;
    Ok(matched(
        NormForm::KerasLayerNorm,
        id,
        nodes,
        &x,
        y,
        (gamma, beta),
        epsilon,
    ))
}

/// The foreign matchers for anchor `id`, in `find_norms`' terms: `None` when no foreign form
/// starts there, else the match or the near miss.
pub fn find(ctx: &Ctx, id: NodeId) -> Option<Result<NormMatch, NoMatch>> {
    let n = ctx.g.node(id);
    let r = match n.op() {
        "ReduceSum" => jax_layernorm(ctx, id),
        "GlobalAveragePool" | "ReduceMean" => keras_layernorm(ctx, id),
        _ => return None,
    };
    match r {
        Ok(m) => Some(Ok(m)),
        Err(Some(why)) => Some(Err(why)),
        Err(None) => None,
    }
}
