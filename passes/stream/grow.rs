//! Growing the streams: a worklist over values, each with its hidden axis ([`Hidden`]).
//!
//! From each LayerNorm's input (`Stream` along its last axis), every value reached gets the
//! rule of the node producing it (upwards: a leaf the rewrite can centre, a carrier whose data
//! inputs join the stream, or anything else: one explicit centring) and the rule of every node
//! reading it (downwards: a norm, a carrier whose outputs join, `Shape`, or a reader that must
//! see the original value: an observer). The twins of a value (structurally equal nodes,
//! [`super::canon`]) are the same value and join with it. A value reached at two different
//! hidden axes, or whose width along its hidden axis is not the stream's, is `Unknown`.

use super::lattice::{Fact, Hidden};
use super::transfer::{Carry, Port, Rule};
use super::{Analysis, Leaf, LeafAt, Stream};
use crate::ir::{NodeExt, NodeId};
use crate::passes::report::Refusal;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

impl Analysis<'_> {
    /// Discover every stream, seeded from the LayerNorms.
    pub fn streams(&self) -> Vec<Stream> {
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
            let mut s = self.grow(k, seeds);
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

    /// Grow the stream read by norm `seed_norm` at `seeds`.
    pub(super) fn grow(&self, seed_norm: usize, seeds: Vec<String>) -> Stream {
        let Some(d) = self.norm_width(seed_norm) else {
            return Stream {
                norms: vec![seed_norm],
                observed: vec![Refusal::WidthUnknown {
                    norm: self.g.node(self.norms[seed_norm].anchor).label(),
                }],
                ..Default::default()
            };
        };
        let mut g = Grower {
            a: self,
            d,
            facts: BTreeMap::new(),
            queue: VecDeque::new(),
            leaves: BTreeMap::new(),
            consts: BTreeMap::new(),
            via: HashMap::new(),
            norms: BTreeSet::new(),
            edges: HashMap::new(),
            observed: Vec::new(),
            norm_sources: Vec::new(),
            sizes: BTreeSet::new(),
            same: Vec::new(),
            up: BTreeMap::new(),
            carriers: BTreeSet::new(),
            outside: Vec::new(),
            observers: BTreeMap::new(),
        };
        for s in seeds {
            let r = self.shapes.rank(&s);
            g.queue.push_back((s, Hidden::last(r)));
        }
        while let Some((v, h)) = g.queue.pop_front() {
            g.visit(v, h);
        }
        g.finish(seed_norm)
    }
}

/// The worklist's state.
struct Grower<'a, 'b> {
    a: &'b Analysis<'a>,
    d: usize,
    /// The stream's values and their hidden axes.
    facts: BTreeMap<String, Hidden>,
    queue: VecDeque<(String, Hidden)>,
    leaves: BTreeMap<String, Leaf>,
    /// Constant leaves: (node, slot) → the hidden axis in the constant (None: its last).
    consts: BTreeMap<(NodeId, usize), (Option<usize>, Vec<String>)>,
    /// Values reached upwards: value → (the node that reads it, the value that node makes).
    via: HashMap<String, (NodeId, String)>,
    norms: BTreeSet<usize>,
    edges: HashMap<String, Vec<(NodeId, usize)>>,
    observed: Vec<Refusal>,
    norm_sources: Vec<usize>,
    sizes: BTreeSet<(NodeId, usize, usize)>,
    /// Inputs that must keep their values: (value, reading node).
    same: Vec<(String, NodeId)>,
    /// The stream values each value is computed from (its producer's stream inputs).
    up: BTreeMap<String, Vec<String>>,
    /// Nodes applied as carriers.
    carriers: BTreeSet<NodeId>,
    /// Readers of stream values that must read the original: (node, value).
    outside: Vec<(NodeId, String)>,
    /// Values something outside the stream reads (a graph output, a subgraph, an observer): the
    /// first such reader.
    observers: BTreeMap<String, String>,
}

impl Grower<'_, '_> {
    fn unknown(&mut self, value: &str, why: String) {
        self.observed.push(Refusal::Unknown {
            value: value.to_string(),
            why,
        });
    }

    fn visit(&mut self, v: String, h: Hidden) {
        let a = self.a;
        // The rank shape inference gives wins over none; a disagreement is unknown.
        let inferred = a.shapes.rank(&v);
        let h = match (h.rank, inferred) {
            (Some(x), Some(y)) if x != y => {
                self.unknown(
                    &v,
                    format!("the analysis reaches it at rank {x}, shape inference says rank {y}"),
                );
                h
            }
            _ => h.with_rank(inferred),
        };
        if let Some(h0) = self.facts.get(&v) {
            if !h0.agrees(&h) {
                let why = format!("it is reached with its hidden axis at {h0} and at {h}");
                self.unknown(&v, why);
            }
            return;
        }
        if let (Some(ds), Some(ax)) = (a.shapes.get(&v), h.axis()) {
            if let Some(w) = ds.get(ax).and_then(|x| x.known()) {
                if w != self.d as i64 {
                    let why = format!(
                        "its hidden axis ({h}) has width {w}, the stream's is {}",
                        self.d
                    );
                    self.unknown(&v, why);
                }
            }
        }
        self.facts.insert(v.clone(), h);
        for t in a.canon.twins(&v) {
            self.queue.push_back((t, h));
        }
        self.producer(&v, h);
        self.consumers(&v, h);
    }

    /// Apply a carrier's ports: every other data port joins the stream (constants become
    /// leaves centred along their hidden axis).
    fn carry(&mut self, node: NodeId, from: Port, c: Carry, v: &str) {
        let a = self.a;
        let n = a.g.node(node);
        self.carriers.insert(node);
        for (port, hp) in c.ports {
            if port == from {
                continue;
            }
            match port {
                Port::In(s) => {
                    let Some(x) = n.input(s) else { continue };
                    if a.is_const(x) {
                        let axis = match hp.axis() {
                            Some(ax) if hp.rank.is_some_and(|r| ax + 1 == r) => None,
                            Some(ax) => Some(ax),
                            // A constant without the hidden axis is constant along it: only a
                            // scalar can be zeroed in place (centring its one entry).
                            None if hp.rank == Some(0) => None,
                            None => {
                                let why = format!(
                                    "constant {x:?} (input {s} of {} {:?}) broadcasts along the hidden axis",
                                    n.op().escape_debug(),
                                    n.label()
                                );
                                self.unknown(v, why);
                                None
                            }
                        };
                        // The ops between the constant and the stream, when the hidden axis is
                        // not last on the way (a position table interpolated in the graph).
                        let mut path = vec![node];
                        let mut cur = v.to_string();
                        let upwards = matches!(from, Port::Out(_));
                        while upwards && self.facts.get(&cur).is_some_and(|h| !h.is_last()) {
                            match self.via.get(&cur) {
                                Some((q, w)) if !path.contains(q) => {
                                    path.push(*q);
                                    cur = w.clone();
                                }
                                _ => break,
                            }
                        }
                        // A constant added or joined in directly, or only reshaped or broadcast
                        // on the way (a class token), is simply centred.
                        let direct = matches!(
                            n.op(),
                            "Add"
                                | "Sub"
                                | "Concat"
                                | "Where"
                                | "Expand"
                                | "Reshape"
                                | "Unsqueeze"
                                | "Squeeze"
                                | "Identity"
                                | "Cast"
                                | "Flatten"
                        );
                        let (axis, through) = if path.len() > 1 || axis.is_some() || !direct {
                            let mut t: Vec<String> = path
                                .iter()
                                .map(|&q| {
                                    let qn = a.g.node(q);
                                    format!("{} {:?}", qn.op().escape_debug(), qn.label())
                                })
                                .collect();
                            t.reverse();
                            let ax = axis.or_else(|| hp.axis());
                            (ax, t)
                        } else {
                            (None, vec![])
                        };
                        self.consts.entry((node, s)).or_insert((axis, through));
                    } else {
                        if matches!(from, Port::Out(_)) {
                            self.up
                                .entry(v.to_string())
                                .or_default()
                                .push(x.to_string());
                            self.via
                                .entry(x.to_string())
                                .or_insert((node, v.to_string()));
                        }
                        self.queue.push_back((x.to_string(), hp));
                    }
                }
                Port::Out(o) => {
                    if let Some(y) = n.out(o) {
                        self.queue.push_back((y.to_string(), hp));
                    }
                }
            }
        }
        for s in c.same {
            if let Some(x) = n.input(s) {
                self.same.push((x.to_string(), node));
            }
        }
        for (slot, index) in c.sizes {
            // A computed target (the dynamo exporter's Resize sizes `Concat([1, D], [h, w])`):
            // the constant piece that states the width.
            let at = if n.is("Reshape") {
                (node, slot, index)
            } else {
                a.const_shape_slot(node, slot, index, 0)
                    .unwrap_or((node, slot, index))
            };
            self.sizes.insert(at);
        }
    }

    /// Upwards: what produces `v`.
    fn producer(&mut self, v: &str, h: Hidden) {
        let a = self.a;
        let d = self.d;
        let Some((p, oslot)) = a.ix.producer.get(v).copied() else {
            let why = if a.ix.graph_inputs.contains(v) {
                format!("{v:?} is a graph input")
            } else {
                format!("{v:?} has no producer")
            };
            self.leaves.insert(v.to_string(), Leaf::Explicit { why });
            return;
        };
        let n = a.g.node(p);
        if let Some(&k) = a.norm_by_output.get(v) {
            let leaf = a.norm_source(k);
            if let Leaf::LnTable { norm, .. } = &leaf {
                self.norm_sources.push(*norm);
            }
            if !self.norm_sources.contains(&k) {
                self.norm_sources.push(k);
            }
            self.leaves.insert(v.to_string(), leaf);
            return;
        }
        if let Some(&k) = a.norm_by_node.get(&p) {
            // The sum output of a Skip norm: a + b (+ bias).
            if let Some(s) = &a.norms[k].skip {
                if s.sum.as_deref() == Some(v) {
                    if s.bias.is_some() {
                        self.consts.entry((p, 4)).or_insert((None, vec![]));
                    }
                    for x in [&s.a, &s.b] {
                        self.up.entry(v.to_string()).or_default().push(x.clone());
                        self.queue
                            .push_back((x.clone(), h.with_rank(a.shapes.rank(x))));
                    }
                    return;
                }
            }
            let why = format!(
                "it is an inner value of norm {:?}",
                a.g.node(a.norms[k].anchor).label()
            );
            self.leaves.insert(v.to_string(), Leaf::Explicit { why });
            return;
        }
        if n.domain().is_empty() && h.is_last() {
            if let Some(leaf) = a.writer_leaf(p, d) {
                self.leaves.insert(v.to_string(), leaf);
                return;
            }
        }
        match a.rule(p, Port::Out(oslot), h, d) {
            Rule::Carry(c) => self.carry(p, Port::Out(oslot), c, v),
            Rule::Yields(Fact::Same) | Rule::Yields(Fact::Stream(_)) => {
                let why = format!("it is computed by {:?}, not by a carrier", n.label());
                self.leaves.insert(v.to_string(), Leaf::Explicit { why });
            }
            Rule::Yields(Fact::Derived(why) | Fact::Unknown(why)) => {
                let why = format!("it is computed by {why}, not by a constant-weight linear op");
                self.leaves.insert(v.to_string(), Leaf::Explicit { why });
            }
        }
    }

    /// Downwards: who reads `v`.
    fn consumers(&mut self, v: &str, h: Hidden) {
        let a = self.a;
        if a.ix.graph_outputs.contains(v) {
            self.observed.push(Refusal::GraphOutput {
                value: v.to_string(),
            });
            self.observers
                .entry(v.to_string())
                .or_insert_with(|| "the graph's outputs".into());
        }
        if let Some(&n) = a.ix.subgraph_reads.get(v) {
            self.observed.push(Refusal::ReadInSubgraph {
                value: v.to_string(),
                node: a.g.node(n).label(),
            });
            self.observers
                .entry(v.to_string())
                .or_insert_with(|| format!("a subgraph of {:?}", a.g.node(n).label()));
        }
        let leaf_here = self.leaves.contains_key(v);
        let mut outside: Vec<String> = Vec::new();
        let mut unknown: Vec<String> = Vec::new();
        for &(c, slot) in a.ix.consumers(v) {
            let n = a.g.node(c);
            if let Some(&k) = a.norm_by_node.get(&c) {
                let m = &a.norms[k];
                let reads_x = match &m.skip {
                    Some(s) => (a.canon.same(&s.a, v) || a.canon.same(&s.b, v)) && slot <= 1,
                    None => a.canon.same(&m.x, v),
                };
                // The first nodes of a decomposed norm read x; a fused norm reads it at slot 0; a
                // jax2tf LayerNorm squares it (x·x, norms/foreign.rs).
                let square = n.is("Mul") && n.input(0) == n.input(1);
                if reads_x && (m.skip.is_some() || slot == 0 || n.is("Sub") || square) {
                    if !h.is_last() {
                        outside.push(format!(
                            "norm {:?} (over another axis than the hidden one, {h})",
                            a.g.node(m.anchor).label()
                        ));
                        continue;
                    }
                    self.norms.insert(k);
                    self.edges.entry(v.to_string()).or_default().push((c, slot));
                    if let Some(s) = &m.skip {
                        if s.bias.is_some() {
                            self.consts.entry((m.anchor, 4)).or_insert((None, vec![]));
                        }
                        for x in [&s.a, &s.b].into_iter().chain(s.sum.as_ref()) {
                            self.queue
                                .push_back((x.clone(), h.with_rank(a.shapes.rank(x))));
                        }
                    }
                    continue;
                }
                outside.push(format!(
                    "{} {:?} (inside a norm)",
                    n.op().escape_debug(),
                    n.label()
                ));
                continue;
            }
            match a.rule(c, Port::In(slot), h, self.d) {
                Rule::Yields(Fact::Same) => {}
                Rule::Carry(cr) => {
                    self.edges.entry(v.to_string()).or_default().push((c, slot));
                    self.carry(c, Port::In(slot), cr, v);
                }
                Rule::Yields(Fact::Unknown(why)) => {
                    self.outside.push((c, v.to_string()));
                    unknown.push(why)
                }
                Rule::Yields(Fact::Derived(_)) if a.shape_only_pick(c, self.d) => {}
                Rule::Yields(Fact::Derived(why)) => {
                    self.outside.push((c, v.to_string()));
                    outside.push(why)
                }
                Rule::Yields(Fact::Stream(_)) => {
                    outside.push(format!("{} {:?}", n.op().escape_debug(), n.label()))
                }
            }
        }
        if outside.is_empty() && unknown.is_empty() {
            return;
        }
        let post_ln = a.norm_by_output.get(v).copied();
        match (leaf_here, post_ln) {
            (true, Some(k)) => {
                let reader = outside
                    .first()
                    .or(unknown.first())
                    .cloned()
                    .unwrap_or_default();
                self.observed.push(Refusal::PostLn {
                    norm: a.g.node(a.norms[k].anchor).label(),
                    reader,
                })
            }
            (true, None) => {
                // Cut: keep the leaf's value for its other readers, centre a copy.
                let first = outside
                    .first()
                    .or(unknown.first())
                    .cloned()
                    .unwrap_or_default();
                let why = format!("its output is also read by {first}");
                self.leaves.insert(v.to_string(), Leaf::Explicit { why });
            }
            (false, _) => {
                let first = outside
                    .first()
                    .or(unknown.first())
                    .cloned()
                    .unwrap_or_default();
                self.observers.entry(v.to_string()).or_insert(first);
                for reader in outside {
                    self.observed.push(Refusal::ObservedBy {
                        value: v.to_string(),
                        reader,
                    });
                }
                for why in unknown {
                    self.unknown(v, why);
                }
            }
        }
    }

    fn finish(mut self, seed_norm: usize) -> Stream {
        let a = self.a;
        // One rule, two directions: a node carried one way must not read a stream value as an
        // outsider the other way (shape inference knew a rank on one side only). Refuse.
        for (node, v) in std::mem::take(&mut self.outside) {
            if self.carriers.contains(&node) {
                let n = a.g.node(node);
                self.unknown(
                    &v,
                    format!(
                        "{} {:?} carries the stream from one of its ports and not from this one (shapes known on one side only)",
                        n.op().escape_debug(),
                        n.label()
                    ),
                );
            }
        }
        // A factor or a condition must keep its value: one in the stream sees it change.
        for (x, node) in std::mem::take(&mut self.same) {
            if self.facts.contains_key(&x) {
                let n = a.g.node(node);
                self.observed.push(Refusal::ObservedBy {
                    value: x,
                    reader: format!(
                        "{} {:?} (as a factor or a condition)",
                        n.op().escape_debug(),
                        n.label()
                    ),
                });
            }
        }
        let mut st = Stream {
            width: Some(self.d),
            ..Default::default()
        };
        for (v, h) in &self.facts {
            if h.is_last() {
                st.values.insert(v.clone());
            } else {
                st.chain_values.insert(v.clone());
            }
        }
        st.hidden = self.facts;
        st.norms = self.norms.into_iter().collect();
        if !st.norms.contains(&seed_norm) {
            st.norms.push(seed_norm);
        }
        st.leaves = self
            .leaves
            .into_iter()
            .map(|(value, leaf)| LeafAt { value, leaf })
            .collect();
        for ((node, slot), (axis, through)) in self.consts {
            let value = a.g.node(node).input.get(slot).cloned().unwrap_or_default();
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
        // Every stream-side read: the carriers reached downwards (recorded as they were
        // reached) and those reached upwards from their output (recorded in `up`: the
        // producer of w reads u) — an explicit centring of u must serve both, a cut must see
        // both.
        for (w, us) in &self.up {
            let Some(p) = a.ix.producer(w) else { continue };
            for u in us {
                for (slot, x) in a.g.node(p).input.iter().enumerate() {
                    if x == u {
                        let e = self.edges.entry(u.clone()).or_default();
                        if !e.contains(&(p, slot)) {
                            e.push((p, slot));
                        }
                    }
                }
            }
        }
        st.edges = self.edges;
        st.observed = self.observed;
        st.norm_sources = self.norm_sources;
        st.chain_shapes = self.sizes.into_iter().collect();
        st.up = self.up;
        st.observers = self.observers;
        a.place(&mut st);
        for &k in &st.norms {
            if let Some(w) = a.norm_width(k) {
                if w != self.d {
                    st.observed.push(Refusal::MixedWidths {
                        width: self.d,
                        other: w,
                    });
                }
            }
        }
        st
    }
}
