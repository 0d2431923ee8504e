//! Growing the streams: from each norm's input, up through producers to the leaves and down
//! through consumers to the norms and observers.

use super::chain::Chain;
use super::super::{Analysis, Leaf, LeafAt, Stream};
use crate::ir::{NodeExt, NodeId};
use crate::passes::norms::NormKind;
use crate::passes::report::Refusal;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

impl Analysis<'_> {
    /// Discover every stream, seeded from the LayerNorms.
    pub fn streams_old(&self) -> Vec<Stream> {
        let mut streams: Vec<Stream> = Vec::new();
        let mut owner: HashMap<String, usize> = HashMap::new();
        for (k, m) in self.norms.iter().enumerate() {
            let seeds: Vec<String> = match &m.skip {
                Some(s) => vec![s.a.clone(), s.b.clone()],
                None => vec![m.x.clone()],
            };
            if seeds.iter().any(|s| owner.contains_key(s)) {
                continue;
            }
            if let Some(c) = seeds.iter().find(|s| self.is_const(s)) {
                // A norm of a constant reads no residual stream.
                streams.push(Stream {
                    width: self.norm_width(k),
                    norms: vec![k],
                    observed: vec![Refusal::ConstantInput {
                        input: c.clone(),
                        norm: self.g.node(m.anchor).label(),
                    }],
                    ..Default::default()
                });
                continue;
            }
            let sid = streams.len();
            let mut s = self.grow_old(k, seeds);
            // Streams are closed sets: one reaching values of an earlier one means the analysis
            // went one way through a leaf it stops at the other way. Planning both would edit
            // the shared part twice: refuse both.
            if let Some(o) = s.values.iter().find_map(|v| owner.get(v).copied()) {
                s.observed.push(Refusal::SharesValues { stream: o });
                streams[o]
                    .observed
                    .push(Refusal::SharesValues { stream: sid });
            }
            for v in &s.values {
                owner.entry(v.clone()).or_insert(sid);
            }
            streams.push(s);
        }
        streams
    }

    pub(super) fn grow_old(&self, seed_norm: usize, seeds: Vec<String>) -> Stream {
        let mut st = Stream {
            width: self.norm_width(seed_norm),
            ..Default::default()
        };
        let Some(d) = st.width else {
            st.observed.push(Refusal::WidthUnknown {
                norm: self.g.node(self.norms[seed_norm].anchor).label(),
            });
            st.norms.push(seed_norm);
            return st;
        };
        let mut queue: VecDeque<String> = seeds.into();
        let mut norms: BTreeSet<usize> = BTreeSet::new();
        let mut leaves: BTreeMap<String, Leaf> = BTreeMap::new();
        let mut const_leaves: BTreeSet<(NodeId, usize)> = BTreeSet::new();
        // Constants reached through a pass-through chain: their hidden axis and the chain.
        let mut chain_consts: BTreeMap<(NodeId, usize), (usize, Vec<String>)> = BTreeMap::new();
        while let Some(v) = queue.pop_front() {
            if !st.values.insert(v.clone()) {
                continue;
            }
            // Upwards: what produces v.
            match self.producer_role_old(&v, d) {
                Producer::Internal { push, consts } => {
                    queue.extend(push);
                    const_leaves.extend(consts);
                }
                Producer::Chain(ch) => {
                    for (node, slot, axis, through) in ch.consts {
                        const_leaves.insert((node, slot));
                        chain_consts.insert((node, slot), (axis, through));
                    }
                    st.chain_values.extend(ch.values);
                    st.chain_shapes.extend(ch.shapes);
                }
                Producer::Leaf(l) => {
                    if let Leaf::LnTable { norm, .. } = &l {
                        st.norm_sources.push(*norm);
                    }
                    if let Some(k) = self.norm_by_output.get(&v) {
                        if !st.norm_sources.contains(k) {
                            st.norm_sources.push(*k);
                        }
                    }
                    leaves.insert(v.clone(), l);
                }
            }
            // Downwards: who reads v.
            if self.ix.graph_outputs.contains(&v) {
                st.observed.push(Refusal::GraphOutput { value: v.clone() });
            }
            if let Some(&n) = self.ix.subgraph_reads.get(&v) {
                st.observed.push(Refusal::ReadInSubgraph {
                    value: v.clone(),
                    node: self.g.node(n).label(),
                });
            }
            let leaf_here = leaves.contains_key(&v);
            let mut outside: Vec<String> = Vec::new();
            for &(c, slot) in self.ix.consumers(&v) {
                match self.consumer_role_old(&v, c, slot, d) {
                    Consumer::Norm(k) => {
                        norms.insert(k);
                        st.edges.entry(v.clone()).or_default().push((c, slot));
                        if let Some(s) = &self.norms[k].skip {
                            if s.bias.is_some() {
                                const_leaves.insert((self.norms[k].anchor, 4));
                            }
                            queue.push_back(s.a.clone());
                            queue.push_back(s.b.clone());
                            if let Some(sum) = &s.sum {
                                queue.push_back(sum.clone());
                            }
                        }
                    }
                    Consumer::Join(outs) => {
                        st.edges.entry(v.clone()).or_default().push((c, slot));
                        queue.extend(outs);
                    }
                    Consumer::Shape => {}
                    Consumer::Outside(why) => outside.push(why),
                }
            }
            if !outside.is_empty() {
                let post_ln = self.norm_by_output.get(&v).copied();
                match (leaf_here, post_ln) {
                    (true, Some(k)) => st.observed.push(Refusal::PostLn {
                        norm: self.g.node(self.norms[k].anchor).label(),
                        reader: outside[0].clone(),
                    }),
                    (true, None) => {
                        // Cut: keep the leaf's value for its other readers, centre a copy.
                        let why = format!("its output is also read by {}", outside[0]);
                        leaves.insert(v.clone(), Leaf::Explicit { why });
                    }
                    (false, _) => {
                        st.observed
                            .extend(outside.into_iter().map(|reader| Refusal::ObservedBy {
                                value: v.clone(),
                                reader,
                            }))
                    }
                }
            }
        }
        st.norms = norms.into_iter().collect();
        if !st.norms.contains(&seed_norm) {
            st.norms.push(seed_norm);
        }
        st.leaves = leaves
            .into_iter()
            .map(|(value, leaf)| LeafAt { value, leaf })
            .collect();
        for (node, slot) in const_leaves {
            let value = self
                .g
                .node(node)
                .input
                .get(slot)
                .cloned()
                .unwrap_or_default();
            let (axis, through) = match chain_consts.remove(&(node, slot)) {
                Some((a, t)) => (Some(a), t),
                None => (None, vec![]),
            };
            st.leaves.push(LeafAt {
                value,
                leaf: Leaf::Const {
                    node,
                    slot,
                    axis,
                    through,
                },
            });
        }
        for &k in &st.norms {
            if let Some(w) = self.norm_width(k) {
                if w != d {
                    st.observed
                        .push(Refusal::MixedWidths { width: d, other: w });
                }
            }
        }
        st
    }

    pub(super) fn consumer_role_old(&self, v: &str, c: NodeId, slot: usize, d: usize) -> Consumer {
        let n = self.g.node(c);
        if let Some(&k) = self.norm_by_node.get(&c) {
            let m = &self.norms[k];
            let reads_x = match &m.skip {
                Some(s) => (s.a == v || s.b == v) && slot <= 1,
                None => m.x == v,
            };
            // The first nodes of a decomposed norm read x; a fused norm reads it at slot 0; a
            // jax2tf LayerNorm squares it (x·x, norms/foreign.rs).
            let square = n.is("Mul") && n.input(0) == n.input(1);
            if reads_x && (m.skip.is_some() || slot == 0 || n.is("Sub") || square) {
                return Consumer::Norm(k);
            }
            return Consumer::Outside(format!(
                "{} {:?} (inside a norm)",
                n.op().escape_debug(),
                n.label()
            ));
        }
        if n.is("Shape") || n.is("Size") {
            return Consumer::Shape;
        }
        if n.is("Add") || n.is("Sub") {
            return Consumer::Join(n.out(0).map(str::to_string).into_iter().collect());
        }
        if n.is("Concat") {
            let r = self.rank(v);
            let axis = n.attr_i("axis").unwrap_or(0);
            return match r {
                Some(r) if (if axis < 0 { axis + r as i64 } else { axis }) != r as i64 - 1 => {
                    Consumer::Join(n.out(0).map(str::to_string).into_iter().collect())
                }
                _ => Consumer::Outside(format!(
                    "Concat {:?} (along the hidden axis or unknown rank)",
                    n.label()
                )),
            };
        }
        match self.pass_through_old(c, slot, d) {
            Ok(outs) => Consumer::Join(outs),
            Err(_) => Consumer::Outside(format!(
                "{} {:?}",
                if n.domain().is_empty() {
                    n.op().escape_debug().to_string()
                } else {
                    format!("{}:{}", n.domain().escape_debug(), n.op().escape_debug())
                },
                n.label()
            )),
        }
    }

    pub(super) fn producer_role_old(&self, v: &str, d: usize) -> Producer {
        let Some((p, oslot)) = self.ix.producer.get(v).copied() else {
            let why = if self.ix.graph_inputs.contains(v) {
                format!("{v:?} is a graph input")
            } else {
                format!("{v:?} has no producer")
            };
            return Producer::Leaf(Leaf::Explicit { why });
        };
        let n = self.g.node(p);
        if let Some(&k) = self.norm_by_output.get(v) {
            let m = &self.norms[k];
            // A LayerNorm over an embedding Gather of a constant table can be precomputed.
            if m.kind == NormKind::LayerNorm && m.skip.is_none() {
                if let Some(gp) = self.ix.producer(&m.x) {
                    let gn = self.g.node(gp);
                    if gn.is("Gather")
                        && gn.attr_i("axis").unwrap_or(0) == 0
                        && gn.input(0).is_some_and(|t| {
                            self.is_const(t)
                                && self.g.constant_dims(t).is_some_and(|d| d.len() == 2)
                        })
                        && self.ix.use_count(&m.x) == 1
                        && m.extra_outputs_read.is_empty()
                    {
                        return Producer::Leaf(Leaf::LnTable {
                            norm: k,
                            gather: gp,
                        });
                    }
                }
            }
            let label = self.g.node(m.anchor).label();
            return Producer::Leaf(Leaf::Explicit {
                why: format!("it is the output of norm {label:?} (a LayerNorm source)"),
            });
        }
        if let Some(&k) = self.norm_by_node.get(&p) {
            // The sum output of a Skip norm.
            if let Some(s) = &self.norms[k].skip {
                if s.sum.as_deref() == Some(v) {
                    let consts = s.bias.iter().map(|_| (p, 4usize)).collect();
                    return Producer::Internal {
                        push: vec![s.a.clone(), s.b.clone()],
                        consts,
                    };
                }
            }
            return Producer::Leaf(Leaf::Explicit {
                why: format!(
                    "it is an inner value of norm {:?}",
                    self.g.node(self.norms[k].anchor).label()
                ),
            });
        }
        if n.domain().is_empty() {
            match n.op() {
                "Add" | "Sub" | "Concat" => {
                    if n.is("Concat") {
                        let axis = n.attr_i("axis").unwrap_or(0);
                        let r = self.rank(v);
                        let ok = r.is_some_and(|r| {
                            (if axis < 0 { axis + r as i64 } else { axis }) != r as i64 - 1
                        });
                        if !ok {
                            return Producer::Leaf(Leaf::Explicit {
                                why: format!("Concat {:?} joins along the hidden axis", n.label()),
                            });
                        }
                    }
                    let mut push = vec![];
                    let mut consts = vec![];
                    for (i, inp) in n.input.iter().enumerate() {
                        if inp.is_empty() {
                            continue;
                        }
                        if self.is_const(inp) {
                            consts.push((p, i));
                        } else {
                            push.push(inp.clone());
                        }
                    }
                    return Producer::Internal { push, consts };
                }
                "MatMul"
                    if self
                        .const_dims_at(p, 1)
                        .is_some_and(|s| s.len() == 2 && s[1] == d)
                    => {
                        return Producer::Leaf(Leaf::Linear {
                            node: p,
                            tail: vec![],
                        });
                    }
                "Gemm" => {
                    let trans_b = n.attr_i("transB").unwrap_or(0) != 0;
                    let c_ok = n.input(2).is_none_or(|_| self.const_at(p, 2));
                    if c_ok
                        && self.const_dims_at(p, 1).is_some_and(|s| {
                            s.len() == 2 && s[if trans_b { 0 } else { 1 }] == d
                        })
                    {
                        return Producer::Leaf(Leaf::Linear {
                            node: p,
                            tail: vec![],
                        });
                    }
                }
                "Gather"
                    if n.attr_i("axis").unwrap_or(0) == 0
                        && self
                            .const_dims_at(p, 0)
                            .is_some_and(|s| s.len() == 2 && s[1] == d)
                    => {
                        return Producer::Leaf(Leaf::Table { node: p });
                    }
                "Where"
                    // A per-token choice between two zero-mean values.
                    if self.per_token(n, v) => {
                        let mut push = vec![];
                        let mut consts = vec![];
                        for i in 1..3 {
                            match n.input(i) {
                                Some(inp) if self.is_const(inp) => consts.push((p, i)),
                                Some(inp) => push.push(inp.to_string()),
                                None => {}
                            }
                        }
                        return Producer::Internal { push, consts };
                    }
                "Mul" | "Div" => {
                    if let Some((node, tail)) = self.affine_writer(p, d) {
                        return Producer::Leaf(Leaf::Linear { node, tail });
                    }
                }
                "Transpose" => {
                    if let Some(conv) = self.conv_stem(p, d) {
                        return Producer::Leaf(Leaf::Conv { node: conv });
                    }
                }
                _ => {}
            }
            if oslot < n.output.len() {
                // A constant reshaped or broadcast into the stream (a class token) is centred
                // where it is read.
                let data_op = matches!(
                    n.op(),
                    "Expand"
                        | "Reshape"
                        | "Unsqueeze"
                        | "Squeeze"
                        | "Identity"
                        | "Cast"
                        | "Flatten"
                );
                if data_op && n.input(0).is_some_and(|i| self.is_const(i)) {
                    let last = self
                        .g
                        .constant_dims(n.input(0).unwrap_or(""))
                        .and_then(|d| d.last().copied());
                    if last == Some(d) && self.last_is(v, d) {
                        return Producer::Internal {
                            push: vec![],
                            consts: vec![(p, 0)],
                        };
                    }
                }
                for (slot, inp) in n.input.iter().enumerate() {
                    // Where has two data inputs: both or neither (above).
                    if inp.is_empty() || self.is_const(inp) || n.is("Where") {
                        continue;
                    }
                    if let Ok(outs) = self.pass_through_old(p, slot, d) {
                        // Shape-changing ops must be seen to keep the hidden axis on both sides.
                        let elementwise =
                            matches!(n.op(), "Identity" | "Cast" | "Dropout" | "Mul" | "Div");
                        if outs.iter().any(|o| o == v) && (elementwise || self.last_is(inp, d)) {
                            return Producer::Internal {
                                push: vec![inp.clone()],
                                consts: vec![],
                            };
                        }
                    }
                }
            }
        }
        // A constant (a position table) reaching the stream through ops that act linearly and
        // identically on every channel: centre the constant over its hidden axis.
        if let Some(r) = self.rank(v) {
            let mut ch = Chain::default();
            if r > 0 && self.chain_old(v, r - 1, d, &mut ch, &mut Vec::new(), 0) {
                return Producer::Chain(ch);
            }
        }
        let op = if n.domain().is_empty() {
            n.op().escape_debug().to_string()
        } else {
            format!("{}:{}", n.domain().escape_debug(), n.op().escape_debug())
        };
        Producer::Leaf(Leaf::Explicit {
            why: format!(
                "it is computed by {op} {:?}, not by a constant-weight linear op",
                n.label()
            ),
        })
    }
}

pub(super) enum Producer {
    Internal {
        push: Vec<String>,
        consts: Vec<(NodeId, usize)>,
    },
    Chain(Chain),
    Leaf(Leaf),
}

pub(super) enum Consumer {
    Norm(usize),
    Join(Vec<String>),
    Shape,
    Outside(String),
}
