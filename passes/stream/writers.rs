//! Linear writers: a MatMul/Gemm with a constant weight, LayerScale tails, Conv patch-embedding
//! stems.

use super::{is_float_cast, Analysis, Leaf, Step, StepOp};
use crate::ir::{shape, NodeExt, NodeId};
use crate::passes::norms::NormKind;

impl Analysis<'_> {
    /// The leaf producer `p` is for a stream of width `d` along its output's last axis, when
    /// the rewrite can centre it by editing constants: a MatMul/Gemm with a constant weight of
    /// output width `d` (its bias Add is a constant leaf of its own), an embedding Gather from a
    /// constant [V, d] table, a LayerScale writer ([`Self::affine_writer`]), a Conv patch
    /// embedding behind Reshape/Transpose ([`Self::conv_stem`]).
    pub(super) fn writer_leaf(&self, p: NodeId, d: usize) -> Option<Leaf> {
        let n = self.g.node(p);
        match n.op() {
            "MatMul" | "Gemm" if self.linear_writer(p, d) => Some(Leaf::Linear {
                node: p,
                tail: vec![],
            }),
            "Gather"
                if n.attr_i("axis").unwrap_or(0) == 0
                    && self
                        .const_dims_at(p, 0)
                        .is_some_and(|s| s.len() == 2 && s[1] == d) =>
            {
                Some(Leaf::Table { node: p })
            }
            "Mul" | "Div" => self
                .affine_writer(p, d)
                .map(|(node, tail)| Leaf::Linear { node, tail }),
            "Transpose" => self.conv_stem(p, d).map(|node| Leaf::Conv { node }),
            _ => None,
        }
    }

    /// The leaf a norm's output is as a stream source: a LayerNorm over an embedding Gather of a
    /// constant table (read nowhere else) is precomputed into the table; any other norm output
    /// gets an explicit centring.
    pub(super) fn norm_source(&self, k: usize) -> Leaf {
        let m = &self.norms[k];
        if m.kind == NormKind::LayerNorm && m.skip.is_none() {
            if let Some(gp) = self.ix.producer(&m.x) {
                let gn = self.g.node(gp);
                if gn.is("Gather")
                    && gn.attr_i("axis").unwrap_or(0) == 0
                    && gn.input(0).is_some_and(|t| {
                        self.is_const(t) && self.g.constant_dims(t).is_some_and(|d| d.len() == 2)
                    })
                    && self.ix.use_count(&m.x) == 1
                    && m.extra_outputs_read.is_empty()
                {
                    return Leaf::LnTable {
                        norm: k,
                        gather: gp,
                    };
                }
            }
        }
        let label = self.g.node(m.anchor).label();
        Leaf::Explicit {
            why: format!("it is the output of norm {label:?} (a LayerNorm source)"),
        }
    }

    /// Whether `(node, slot)` reads a linear op's constant weight of output width `d` (and a
    /// constant Gemm bias).
    pub(super) fn linear_writer(&self, node: NodeId, d: usize) -> bool {
        let n = self.g.node(node);
        match n.op() {
            _ if !n.domain().is_empty() => false,
            "MatMul" => self
                .const_dims_at(node, 1)
                .is_some_and(|s| s.len() == 2 && s[1] == d),
            "Gemm" => {
                let trans_b = n.attr_i("transB").unwrap_or(0) != 0;
                n.input(2).is_none_or(|_| self.const_at(node, 2))
                    && self
                        .const_dims_at(node, 1)
                        .is_some_and(|s| s.len() == 2 && s[if trans_b { 0 } else { 1 }] == d)
            }
            _ => false,
        }
    }

    /// LayerScale (`x + λ ⊙ (W·h + b)`, DINOv2, CaiT, DeiT-III, BEiT, ConvNeXt): the value made
    /// by node `top` is a linear op with a constant weight of output width `d`, then any chain
    /// of constant bias `Add`s and constant `Mul`/`Div` (per-channel [D] or [1, …, 1, D], or
    /// scalar), at least one scale per-channel. Each value inside the chain is read only by
    /// the next op. A scalar bias under a per-channel scale would become a vector: no match.
    /// Returns the linear op and the tail (linear outwards). See [`super::math::layer_scale`].
    pub(super) fn affine_writer(&self, top: NodeId, d: usize) -> Option<(NodeId, Vec<Step>)> {
        let mut tail = Vec::new();
        let mut per_channel_after = false;
        let mut cur = top;
        // Each step consumes one node; a chain longer than the graph is a cycle.
        for _ in 0..=self.g.nodes().len() {
            if self.linear_writer(cur, d) {
                if !per_channel_after {
                    return None;
                }
                tail.reverse();
                return Some((cur, tail));
            }
            let n = self.g.node(cur);
            if !n.domain().is_empty() || n.output.len() != 1 {
                return None;
            }
            let op = match n.op() {
                "Add" => StepOp::Bias,
                "Mul" => StepOp::Mul,
                "Div" => StepOp::Div,
                _ => return None,
            };
            let cslot = match op {
                StepOp::Div => 1,
                _ => (0..2).find(|&i| n.input(i).is_some_and(|v| self.is_const(v)))?,
            };
            let c = n.input(cslot)?;
            if !self.is_const(c) {
                return None;
            }
            let x = n.input(1 - cslot)?;
            let out = n.out(0)?;
            let dims = self.g.constant_dims(c)?;
            let count: usize = dims.iter().product();
            let last = dims.last().copied().unwrap_or(1);
            let fits = dims.iter().rev().skip(1).all(|&e| e == 1)
                && (last == d || count == 1)
                && count >= 1
                && match self.rank(out) {
                    Some(r) => dims.len() <= r,
                    None => dims.len() <= 1,
                };
            if !fits {
                return None;
            }
            match op {
                StepOp::Bias if count == 1 && per_channel_after => return None,
                StepOp::Mul | StepOp::Div if last == d && d > 1 => per_channel_after = true,
                _ => {}
            }
            if op == StepOp::Div {
                // x / c folds as x · (1/c): every c must be a finite non-zero number.
                let t = self.g.constant_tensor(c)?;
                let arr =
                    crate::ir::read_array(t, &Default::default(), std::path::Path::new("")).ok()?;
                if arr.data.iter().any(|v| *v == 0.0 || !v.is_finite()) {
                    return None;
                }
            }
            if self.ix.use_count(x) != 1
                || self.ix.graph_outputs.contains(x)
                || self.ix.subgraph_reads.contains_key(x)
            {
                return None;
            }
            tail.push(Step {
                node: cur,
                slot: cslot,
                op,
            });
            cur = self.ix.producer(x)?;
        }
        None
    }

    /// Readers of `v`'s values: every use except `Shape`/`Size` nodes (which read no values).
    pub(super) fn value_uses(&self, v: &str) -> usize {
        self.ix.use_count(v)
            - self
                .ix
                .consumers(v)
                .iter()
                .filter(|(c, _)| self.g.node(*c).is("Shape") || self.g.node(*c).is("Size"))
                .count()
    }

    /// Where entry `index` of the 1-D integer input `slot` of `node` is a constant: that input
    /// itself, or a constant piece of the `Concat` (axis 0, read only there) computing it, as
    /// (node, slot, index in that constant).
    pub(crate) fn const_shape_slot(
        &self,
        node: NodeId,
        slot: usize,
        index: usize,
        depth: usize,
    ) -> Option<(NodeId, usize, usize)> {
        let x = self.g.node(node).input(slot)?;
        if shape::const_ints(self.g, x).is_some() {
            return Some((node, slot, index));
        }
        let p = self.ix.producer(x)?;
        let pn = self.g.node(p);
        if depth > 8
            || !pn.is("Concat")
            || pn.attr_i("axis").unwrap_or(0) != 0
            || self.ix.consumers(x).len() != 1
            || self.ix.graph_outputs.contains(x)
        {
            return None;
        }
        let mut start = 0;
        for (i, piece) in pn.input.iter().enumerate() {
            let len = match shape::const_ints(self.g, piece) {
                Some(v) => v.len(),
                None => match self.shapes.get(piece)? {
                    [n] => usize::try_from(n.known()?).ok()?,
                    _ => return None,
                },
            };
            if index < start + len {
                return self.const_shape_slot(p, i, index - start, depth + 1);
            }
            start += len;
        }
        None
    }

    /// Transpose(perm moves axis 1 last) ← [Reshape|Flatten keeping axis 1] ← Conv(W const).
    pub(super) fn conv_stem(&self, t: NodeId, d: usize) -> Option<NodeId> {
        let tn = self.g.node(t);
        let perm = tn.attr_ints("perm")?;
        if perm.last() != Some(&1) {
            return None;
        }
        let mut cur = tn.input(0)?.to_string();
        if self.value_uses(&cur) != 1 {
            return None;
        }
        let mut p = self.ix.producer(&cur)?;
        let pn = self.g.node(p);
        if pn.is("Reshape") || pn.is("Flatten") {
            let out = self.shapes.get(&cur)?;
            if out.len() != 3 || out[1].known() != Some(d as i64) {
                return None;
            }
            let inp = pn.input(0)?.to_string();
            let ins = self.shapes.get(&inp)?;
            if ins.len() < 3 || ins[1].known() != Some(d as i64) {
                return None;
            }
            // The batch axis must stay whole for the channel fibres to stay intact.
            if out[0] != ins[0] && !(out[0].known().is_some() && out[0].known() == ins[0].known()) {
                return None;
            }
            if self.value_uses(&inp) != 1 {
                return None;
            }
            cur = inp;
            p = self.ix.producer(&cur)?;
        }
        // fp16 graphs computing the Conv in f32: a float Cast back after it.
        let cast = self.g.node(p);
        if cast.is("Cast") && is_float_cast(cast) {
            let inp = cast.input(0)?.to_string();
            if self.value_uses(&inp) != 1 || self.ix.graph_outputs.contains(&inp) {
                return None;
            }
            p = self.ix.producer(&inp)?;
        }
        let cn = self.g.node(p);
        if !cn.is("Conv") || cn.attr_i("group").unwrap_or(1) != 1 {
            return None;
        }
        let wd = self.const_dims_at(p, 1)?;
        if wd.first() != Some(&d) || cn.input(2).is_some() && !self.const_at(p, 2) {
            return None;
        }
        Some(p)
    }
}
