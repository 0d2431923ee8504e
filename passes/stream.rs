//! Residual-stream discovery (design §2).
//!
//! A stream is the set of tensors that must be zero-mean over the hidden (last) axis for its
//! LayerNorms to equal RMSNorms. It is grown from each LayerNorm input by two closures:
//! - upwards, through each value's producer: residual `Add`/`Sub`, pass-through ops, `Concat`
//!   along another axis, the sum of a Skip norm — until a *leaf*: a linear op with a constant
//!   weight (writer, or a MatMul source), an embedding `Gather`, a Conv patch-embedding stem, a
//!   constant, the output of another LayerNorm (a LayerNorm source), or anything else (which
//!   gets one explicit centering node);
//! - downwards, through each value's consumers: the norms reading it, residual adds and
//!   pass-through ops (their outputs join), `Shape` (reads no values). Any other reader, a graph
//!   output or a subgraph read *observes the mean*: the stream is refused with that reason.
//!
//! A leaf whose output is also read outside the stream keeps its value and is centred by an
//! explicit node on the stream side only ("cut") — except a LayerNorm source read by a linear
//! branch too: that is the Post-LN signature, and the stream is refused.

use super::norms::{NormKind, NormMatch};
use crate::ir::{shape::Shapes, Graph, GraphIndex, NodeExt, NodeId};
use crate::proto::data_type as dt;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// How one leaf of a stream is made zero-mean.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Leaf {
    /// A constant read at (node, slot): centre it over its last axis (or over `axis`, where
    /// the hidden axis sits in it, when it reaches the stream through `through`).
    Const {
        /// Reading node.
        node: NodeId,
        /// Input slot.
        slot: usize,
        /// The hidden axis of the constant, when not its last.
        #[serde(skip_serializing_if = "Option::is_none")]
        axis: Option<usize>,
        /// Ops between the constant and the stream that act linearly and identically on every
        /// channel (the hidden axis followed through them), outermost last.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        through: Vec<String>,
    },
    /// A MatMul/Gemm with a constant weight: centre the weight over its output axis (and the
    /// Gemm bias). With a `tail` (LayerScale), the scales fold into the weight and the biases
    /// before them, which are then centred, and the scaling nodes go.
    Linear {
        /// The MatMul/Gemm.
        node: NodeId,
        /// Bias adds and constant scales after it, from the linear op outwards (empty for a
        /// plain writer, whose bias Add is a constant leaf of its own).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tail: Vec<Step>,
    },
    /// An embedding `Gather` from a constant table: centre the rows.
    Table {
        /// The Gather.
        node: NodeId,
    },
    /// A Conv patch embedding (before Reshape/Transpose): centre over output channels.
    Conv {
        /// The Conv.
        node: NodeId,
    },
    /// A LayerNorm over an embedding Gather from a constant table: precompute the table.
    LnTable {
        /// The norm (index into the matches).
        norm: usize,
        /// The Gather feeding it.
        gather: NodeId,
    },
    /// Anything else: one explicit `x - ReduceMean(x)` node.
    Explicit {
        /// Why no weight can absorb the mean.
        why: String,
    },
}

/// One op of an affine writer's tail: `Add` of a constant bias, or `Mul`/`Div` by a constant
/// per-channel (`[D]`, `[1, …, 1, D]`) or scalar scale.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Step {
    /// The Add/Mul/Div.
    pub node: NodeId,
    /// Its constant input slot.
    pub slot: usize,
    /// What it does.
    pub op: StepOp,
}

/// What a [`Step`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOp {
    /// `+ b`.
    Bias,
    /// `⊙ λ`.
    Mul,
    /// `/ c` (a Mul by 1/c).
    Div,
}

/// A leaf at the stream value it produces.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LeafAt {
    /// The stream value the leaf produces.
    pub value: String,
    /// How it is centred.
    pub leaf: Leaf,
}

/// One residual stream.
#[derive(Clone, Debug, Default)]
pub struct Stream {
    /// Hidden width D.
    pub width: Option<usize>,
    /// The values of the stream.
    pub values: BTreeSet<String>,
    /// Leaves (sources and writers).
    pub leaves: Vec<LeafAt>,
    /// Norms reading the stream (indices into the matches).
    pub norms: Vec<usize>,
    /// Stream-side reads of each value: (node, slot). Explicit centering rewires only these.
    pub edges: HashMap<String, Vec<(NodeId, usize)>>,
    /// Why the stream is observed (refused), if it is.
    pub observed: Vec<String>,
    /// Norms whose output is a source of this stream.
    pub norm_sources: Vec<usize>,
    /// Shape nodes reading stream values.
    pub shape_readers: Vec<NodeId>,
    /// Values between a constant source and the stream, through ops that keep every channel
    /// apart (their hidden axis may sit anywhere): compressed with the stream.
    pub chain_values: BTreeSet<String>,
    /// Shape inputs of such ops that state the hidden width: (node, slot, index in the shape).
    pub chain_shapes: Vec<(NodeId, usize, usize)>,
}

/// The analysis context.
pub struct Analysis<'a> {
    /// The graph.
    pub g: &'a Graph,
    /// Its index.
    pub ix: &'a GraphIndex,
    /// Its shapes.
    pub shapes: &'a Shapes,
    /// Matched norms.
    pub norms: &'a [NormMatch],
    /// value → norm producing it as y.
    norm_by_output: HashMap<String, usize>,
    /// node → norm owning it.
    norm_by_node: HashMap<NodeId, usize>,
}

fn is_float_cast(n: &crate::proto::NodeProto) -> bool {
    n.attr_i("to")
        .is_some_and(|t| crate::tensor::is_float(t as i32))
}

impl<'a> Analysis<'a> {
    /// Prepare the lookups.
    pub fn new(
        g: &'a Graph,
        ix: &'a GraphIndex,
        shapes: &'a Shapes,
        norms: &'a [NormMatch],
    ) -> Self {
        let mut norm_by_output = HashMap::new();
        let mut norm_by_node = HashMap::new();
        for (k, m) in norms.iter().enumerate() {
            norm_by_output.insert(m.y.clone(), k);
            for &n in &m.nodes {
                norm_by_node.insert(n, k);
            }
        }
        Analysis {
            g,
            ix,
            shapes,
            norms,
            norm_by_output,
            norm_by_node,
        }
    }

    fn is_const(&self, v: &str) -> bool {
        self.g.constant_tensor(v).is_some()
    }

    /// Where the constant read at `(node, slot)` is stored: the slot itself, or — for a float
    /// constant behind a float `Cast` read only there (onnxruntime's fp16 optimisation casts
    /// fp16 weights for f32 `Gemm`s) — the Cast's input. An edit there is computed in f64 from
    /// the stored values and rounded once to the stored type; the Cast stays. A Cast read
    /// elsewhere too is not looked through (its other readers would see the edit).
    pub fn edit_slot(&self, node: NodeId, slot: usize) -> (NodeId, usize) {
        let Some(v) = self.g.nodes().get(node).and_then(|n| n.input(slot)) else {
            return (node, slot);
        };
        if self.is_const(v) {
            return (node, slot);
        }
        match cast_of_const(self.g, self.ix, v) {
            Some(c)
                if self.ix.consumers(v) == [(node, slot)]
                    && !self.ix.graph_outputs.contains(v)
                    && !self.ix.subgraph_reads.contains_key(v) =>
            {
                (c, 0)
            }
            _ => (node, slot),
        }
    }

    /// Whether a constant is read at `(node, slot)`, directly or behind a Cast ([`Self::edit_slot`]).
    pub fn const_at(&self, node: NodeId, slot: usize) -> bool {
        let (n, s) = self.edit_slot(node, slot);
        self.g.node(n).input(s).is_some_and(|v| self.is_const(v))
    }

    /// The dims of the constant read at `(node, slot)` ([`Self::const_at`]).
    pub fn const_dims_at(&self, node: NodeId, slot: usize) -> Option<Vec<usize>> {
        let (n, s) = self.edit_slot(node, slot);
        self.g.constant_dims(self.g.node(n).input(s)?)
    }

    /// The hidden width a norm normalises over, when it can be known.
    pub fn norm_width(&self, k: usize) -> Option<usize> {
        let m = &self.norms[k];
        if let Some(gm) = &m.gamma {
            if let Some(d) = const_dims_through(self.g, self.ix, gm) {
                if let Some(&last) = d.last() {
                    if last > 1 {
                        return Some(last);
                    }
                }
            }
        }
        let x = m
            .skip
            .as_ref()
            .map(|s| s.a.as_str())
            .unwrap_or(m.x.as_str());
        self.shapes.last(x).filter(|&d| d > 0).map(|d| d as usize)
    }

    /// Whether `v`'s last axis is the hidden axis of width `d`, as far as shapes tell (an
    /// unknown rank is accepted for values reached through checked ops).
    fn last_is(&self, v: &str, d: usize) -> bool {
        match self.shapes.get(v) {
            Some(s) => s.last().and_then(|x| x.known()) == Some(d as i64),
            None => false,
        }
    }

    fn rank(&self, v: &str) -> Option<usize> {
        self.shapes.rank(v)
    }

    /// If node `id` passes the stream from input `slot` to some outputs, those outputs; else why not.
    pub fn pass_through(&self, id: NodeId, slot: usize, d: usize) -> Result<Vec<String>, String> {
        let n = self.g.node(id);
        let out0 = || n.output.first().cloned().unwrap_or_default();
        let v = n.input.get(slot).cloned().unwrap_or_default();
        let norm_axis = |a: i64, r: usize| if a < 0 { a + r as i64 } else { a };
        if !n.domain().is_empty() {
            return Err(format!(
                "{}:{} is not known to keep the mean",
                n.domain().escape_debug(),
                n.op().escape_debug()
            ));
        }
        match n.op() {
            "Identity" if slot == 0 => Ok(vec![out0()]),
            "Dropout" if slot == 0 => {
                let training = n.input(2).map(|t| {
                    shape::const_ints(self.g, t).map(|v| v.first().copied().unwrap_or(0) != 0)
                });
                match training {
                    None | Some(Some(false)) => Ok(vec![out0()]),
                    _ => Err("Dropout in training mode".into()),
                }
            }
            "Cast" if slot == 0 && is_float_cast(n) => Ok(vec![out0()]),
            "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" | "Expand" if slot == 0 => {
                let o = out0();
                if !self.last_is(&o, d) {
                    return Err(format!(
                        "{} {:?} does not keep the hidden axis last with width {d}",
                        n.op().escape_debug(),
                        n.label()
                    ));
                }
                let (ri, ro) = (self.rank(&v), self.rank(&o));
                match n.op() {
                    "Unsqueeze" | "Squeeze" => {
                        let axes = n.attr_ints("axes").map(<[i64]>::to_vec).or_else(|| {
                            n.input(1)
                                .and_then(|a| crate::ir::shape::const_ints(self.g, a))
                        });
                        let r = if n.op() == "Unsqueeze" { ro } else { ri };
                        match (axes, r) {
                            (Some(ax), Some(r))
                                if ax.iter().all(|&a| norm_axis(a, r) != r as i64 - 1) =>
                            {
                                Ok(vec![o])
                            }
                            _ => Err(format!(
                                "{} {:?} may touch the hidden axis",
                                n.op().escape_debug(),
                                n.label()
                            )),
                        }
                    }
                    _ => Ok(vec![o]),
                }
            }
            "Transpose" if slot == 0 => {
                let r = self
                    .rank(&v)
                    .ok_or_else(|| format!("Transpose {:?}: rank unknown", n.label()))?;
                let perm = n
                    .attr_ints("perm")
                    .map(<[i64]>::to_vec)
                    .unwrap_or_else(|| (0..r as i64).rev().collect());
                if perm.last() == Some(&(r as i64 - 1)) {
                    Ok(vec![out0()])
                } else {
                    Err(format!("Transpose {:?} moves the hidden axis", n.label()))
                }
            }
            "Slice" if slot == 0 => {
                let r = self
                    .rank(&v)
                    .ok_or_else(|| format!("Slice {:?}: rank unknown", n.label()))?;
                let axes = match n.input(3) {
                    Some(a) => crate::ir::shape::const_ints(self.g, a),
                    None => n
                        .input(1)
                        .and_then(|s| crate::ir::shape::const_ints(self.g, s))
                        .map(|s| (0..s.len() as i64).collect()),
                };
                match axes {
                    Some(ax) if ax.iter().all(|&a| norm_axis(a, r) != r as i64 - 1) => {
                        Ok(vec![out0()])
                    }
                    _ if self.last_is(&out0(), d) && self.last_is(&v, d) => Ok(vec![out0()]),
                    _ => Err(format!("Slice {:?} may cut the hidden axis", n.label())),
                }
            }
            "Gather" if slot == 0 => {
                let r = self
                    .rank(&v)
                    .ok_or_else(|| format!("Gather {:?}: rank unknown", n.label()))?;
                if norm_axis(n.attr_i("axis").unwrap_or(0), r) != r as i64 - 1 {
                    Ok(vec![out0()])
                } else {
                    Err(format!(
                        "Gather {:?} selects along the hidden axis",
                        n.label()
                    ))
                }
            }
            "Split" if slot == 0 => {
                let r = self
                    .rank(&v)
                    .ok_or_else(|| format!("Split {:?}: rank unknown", n.label()))?;
                if norm_axis(n.attr_i("axis").unwrap_or(0), r) != r as i64 - 1 {
                    Ok(n.output.iter().filter(|o| !o.is_empty()).cloned().collect())
                } else {
                    Err(format!("Split {:?} splits the hidden axis", n.label()))
                }
            }
            // Linear and the same on every channel, over other axes than the hidden (last) one.
            "Pad" if slot == 0 => {
                let r = self
                    .rank(&v)
                    .ok_or_else(|| format!("Pad {:?}: rank unknown", n.label()))?;
                let mode_ok = n
                    .attribute
                    .iter()
                    .find(|a| a.name.as_deref() == Some("mode"))
                    .is_none_or(|a| a.s.as_deref() == Some(b"constant"));
                let zero = match n.input(2) {
                    None => n.attr_f("value").unwrap_or(0.0) == 0.0,
                    Some(c) => self
                        .g
                        .constant_tensor(c)
                        .and_then(|t| {
                            crate::ir::read_array(t, &Default::default(), std::path::Path::new(""))
                                .ok()
                        })
                        .is_some_and(|a| a.data.iter().all(|&x| x == 0.0)),
                };
                let pads = n.attr_ints("pads").map(<[i64]>::to_vec).or_else(|| {
                    n.input(1)
                        .and_then(|x| crate::ir::shape::const_ints(self.g, x))
                });
                let pads_ok = n.input(3).is_none()
                    && pads.is_some_and(|pd| {
                        pd.len() == 2 * r && pd[r - 1] == 0 && pd[2 * r - 1] == 0
                    });
                if mode_ok && zero && pads_ok {
                    Ok(vec![out0()])
                } else {
                    Err(format!(
                        "Pad {:?} pads the hidden axis or not with zeros",
                        n.label()
                    ))
                }
            }
            "Resize" if slot == 0 => {
                let o = out0();
                let crop = n.attribute.iter().any(|a| {
                    a.name.as_deref() == Some("coordinate_transformation_mode")
                        && a.s.as_deref() == Some(b"tf_crop_and_resize")
                });
                if !crop && self.last_is(&o, d) && self.rank(&o) == self.rank(&v) {
                    Ok(vec![o])
                } else {
                    Err(format!("Resize {:?} may resize the hidden axis", n.label()))
                }
            }
            "ReduceMean" | "ReduceSum" if slot == 0 => {
                let r = self
                    .rank(&v)
                    .ok_or_else(|| format!("{} {:?}: rank unknown", n.op(), n.label()))?;
                let axes = n.attr_ints("axes").map(<[i64]>::to_vec).or_else(|| {
                    n.input(1)
                        .and_then(|a| crate::ir::shape::const_ints(self.g, a))
                });
                match axes {
                    Some(ax)
                        if !ax.is_empty()
                            && ax.iter().all(|&a| norm_axis(a, r) != r as i64 - 1) =>
                    {
                        Ok(vec![out0()])
                    }
                    _ => Err(format!(
                        "{} {:?} reduces the hidden axis",
                        n.op().escape_debug(),
                        n.label()
                    )),
                }
            }
            "Where" if slot == 1 || slot == 2 => {
                if self.per_token(n, &v) {
                    Ok(vec![out0()])
                } else {
                    Err(format!("Where {:?} selects per channel", n.label()))
                }
            }
            "Mul" | "Div" => {
                // Scaling every row by a per-row (or scalar) factor keeps the mean zero.
                let other_slot = 1 - slot.min(1);
                if n.op() == "Div" && slot != 0 {
                    return Err("Div by a stream value".into());
                }
                let Some(o) = n.input(other_slot) else {
                    return Err("missing operand".into());
                };
                let per_row = match self.shapes.get(o) {
                    Some(s) => s.last().is_none_or(|x| x.known() == Some(1)),
                    None => false,
                };
                if per_row {
                    Ok(vec![out0()])
                } else {
                    Err(format!(
                        "{} {:?} scales the hidden axis elementwise",
                        n.op().escape_debug(),
                        n.label()
                    ))
                }
            }
            _ => Err(format!(
                "{} {:?} reads the stream",
                n.op().escape_debug(),
                n.label()
            )),
        }
    }

    /// Whether the condition of `Where` node `n` is the same for every channel of the hidden
    /// (last) axis: a scalar, or size 1 on its last axis (it aligns with the hidden axis).
    fn per_token(&self, n: &crate::proto::NodeProto, v: &str) -> bool {
        let Some(c) = n.input(0) else { return false };
        if self.rank(v).is_none() {
            return false;
        }
        match self.shapes.get(c) {
            Some([]) => true,
            Some(cs) => cs.last().and_then(shape::Dim::known) == Some(1),
            None => false,
        }
    }

    /// The constant read at `slot` of `node`, when it is stored in a numeric type the rewrite
    /// can read but cannot write edited values back into (integers): why. Types that cannot be
    /// read as numbers at all (strings, unknown codes) are left to the reader: invalid input.
    pub fn unwritable_input(&self, node: NodeId, slot: usize) -> Option<String> {
        self.g.nodes().get(node)?;
        let (node, slot) = self.edit_slot(node, slot);
        let n = self.g.nodes().get(node)?;
        let c = n.input(slot)?;
        let t = self
            .g
            .constant_tensor(c)?
            .data_type
            .unwrap_or(dt::UNDEFINED);
        (!crate::tensor::is_float(t) && dt::byte_size(t).is_some()).then(|| {
            format!(
                "{c:?} (input {slot} of {} {:?}) is stored as {}, not a float type: its edited values cannot be written back",
                n.op().escape_debug(),
                n.label(),
                dt::name(t)
            )
        })
    }

    /// Why the stream's sources and writers cannot be centred in place: the constants their
    /// leaves would edit that are not of a float type (empty when all can).
    pub fn unwritable(&self, st: &Stream) -> Vec<String> {
        let mut slots: BTreeSet<(NodeId, usize)> = BTreeSet::new();
        for l in &st.leaves {
            let edited: &[(NodeId, usize)] = match l.leaf {
                Leaf::Const { node, slot, .. } => &[(node, slot)],
                Leaf::Linear { node, ref tail } => {
                    slots.extend(
                        tail.iter()
                            .filter(|t| t.op == StepOp::Bias)
                            .map(|t| (t.node, t.slot)),
                    );
                    &[(node, 1), (node, 2)]
                }
                Leaf::Conv { node } => &[(node, 1), (node, 2)],
                Leaf::Table { node } => &[(node, 0)],
                Leaf::LnTable { gather, .. } => &[(gather, 0)],
                Leaf::Explicit { .. } => &[],
            };
            slots.extend(edited.iter().copied());
        }
        slots
            .into_iter()
            .filter_map(|(node, slot)| self.unwritable_input(node, slot))
            .collect()
    }

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
                // A norm of a constant reads no residual stream. Grown from there, the "stream"
                // ran down through the Gathers of the table into the real stream and overlapped
                // it: both were planned, and the norms they share rewritten twice.
                streams.push(Stream {
                    width: self.norm_width(k),
                    norms: vec![k],
                    observed: vec![format!(
                        "the input {c:?} of norm {:?} is a constant, not a residual stream",
                        self.g.node(m.anchor).label()
                    )],
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
                s.observed.push(format!("it shares values with stream {o}"));
                streams[o]
                    .observed
                    .push(format!("it shares values with stream {sid}"));
            }
            for v in &s.values {
                owner.entry(v.clone()).or_insert(sid);
            }
            streams.push(s);
        }
        streams
    }

    fn grow(&self, seed_norm: usize, seeds: Vec<String>) -> Stream {
        let mut st = Stream {
            width: self.norm_width(seed_norm),
            ..Default::default()
        };
        let Some(d) = st.width else {
            st.observed.push(format!(
                "cannot tell the hidden width of norm {:?}",
                self.g.node(self.norms[seed_norm].anchor).label()
            ));
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
            match self.producer_role(&v, d) {
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
                st.observed.push(format!("{v:?} is a graph output"));
            }
            if let Some(&n) = self.ix.subgraph_reads.get(&v) {
                st.observed.push(format!(
                    "{v:?} is read inside a subgraph of {:?}",
                    self.g.node(n).label()
                ));
            }
            let leaf_here = leaves.contains_key(&v);
            let mut outside: Vec<String> = Vec::new();
            for &(c, slot) in self.ix.consumers(&v) {
                match self.consumer_role(&v, c, slot, d) {
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
                    Consumer::Shape => st.shape_readers.push(c),
                    Consumer::Outside(why) => outside.push(why),
                }
            }
            if !outside.is_empty() {
                let post_ln = self.norm_by_output.get(&v).copied();
                match (leaf_here, post_ln) {
                    (true, Some(k)) => st.observed.push(format!(
                        "Post-LN: the output of norm {:?} is both the residual stream and read by {} (the norm sits after the residual Add)",
                        self.g.node(self.norms[k].anchor).label(),
                        outside[0]
                    )),
                    (true, None) => {
                        // Cut: keep the leaf's value for its other readers, centre a copy.
                        let why = format!("its output is also read by {}", outside[0]);
                        leaves.insert(v.clone(), Leaf::Explicit { why });
                    }
                    (false, _) => st.observed.extend(outside.into_iter().map(|w| format!("{v:?} is read by {w}, which observes the mean"))),
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
                        .push(format!("norms of widths {d} and {w} read the same stream"));
                }
            }
        }
        st
    }

    fn consumer_role(&self, v: &str, c: NodeId, slot: usize, d: usize) -> Consumer {
        let n = self.g.node(c);
        if let Some(&k) = self.norm_by_node.get(&c) {
            let m = &self.norms[k];
            let reads_x = match &m.skip {
                Some(s) => (s.a == v || s.b == v) && slot <= 1,
                None => m.x == v,
            };
            // The first nodes of a decomposed norm read x; a fused norm reads it at slot 0.
            if reads_x && (m.skip.is_some() || slot == 0 || n.is("Sub")) {
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
        match self.pass_through(c, slot, d) {
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

    fn producer_role(&self, v: &str, d: usize) -> Producer {
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
                    if let Ok(outs) = self.pass_through(p, slot, d) {
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
            if r > 0 && self.chain(v, r - 1, d, &mut ch, &mut Vec::new(), 0) {
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

    /// Whether `v`, its hidden axis at `axis` (width `d`), is computed from constants only,
    /// through ops that act linearly and identically on every channel along other axes
    /// (DINOv2's and ViT's `interpolate_pos_encoding`: a position table reshaped, transposed,
    /// resized, transposed back, reshaped and concatenated). For such an op f, and C the
    /// centring over the hidden axis, f(C(x)) = C(f(x)): f mixes positions, never channels, with
    /// the same weights for every channel. So centring each constant over its hidden axis
    /// centres `v`. The hidden axis is followed through `Transpose` (any permutation),
    /// `Reshape` (when its extent and position can be followed), `Unsqueeze`/`Squeeze`,
    /// `Flatten`; passed through `Identity`, `Cast`, `Dropout`, `Resize` (any mode, the hidden
    /// axis not resized), `Slice`, `Pad` with zeros, `Concat`, `Gather`/`Split` on other axes,
    /// `AveragePool` (channels first), `ReduceMean`/`ReduceSum` over other axes, `Add`/`Sub`,
    /// `Where` with a per-token condition, and `Mul`/`Div` by a constant scalar. Each value
    /// inside the chain is read by nothing else (`Shape` apart). Fills `ch`.
    fn chain(
        &self,
        v: &str,
        axis: usize,
        d: usize,
        ch: &mut Chain,
        path: &mut Vec<String>,
        depth: usize,
    ) -> bool {
        if depth > 64 {
            return false;
        }
        let Some(p) = self.ix.producer(v) else {
            return false;
        };
        let n = self.g.node(p);
        if !n.domain().is_empty() || self.norm_by_node.contains_key(&p) {
            return false;
        }
        let r = match self.rank(v) {
            Some(r) if axis < r => r,
            _ => return false,
        };
        let norm = |a: i64, rank: usize| -> Option<usize> {
            let a = if a < 0 { a + rank as i64 } else { a };
            (0..rank as i64).contains(&a).then_some(a as usize)
        };
        let ints = |slot: usize| n.input(slot).and_then(|x| shape::const_ints(self.g, x));
        let axes_of = |slot: usize| {
            n.attr_ints("axes")
                .map(<[i64]>::to_vec)
                .or_else(|| ints(slot))
        };
        path.push(format!("{} {:?}", n.op().escape_debug(), n.label()));
        let label = path.clone();
        // Follow input `slot`, its hidden axis at `ax`.
        let go = |slot: usize, ax: usize, ch: &mut Chain, path: &mut Vec<String>| -> bool {
            let Some(x) = n.input(slot).filter(|x| !x.is_empty()) else {
                return false;
            };
            if self.is_const(x) {
                let dims = self.g.constant_dims(x).unwrap_or_default();
                if dims.get(ax).is_some_and(|&e| e == d || e == 1) {
                    ch.consts.push((p, slot, ax, label.clone()));
                    return true;
                }
                return false;
            }
            if self.value_uses(x) != 1
                || self.ix.graph_outputs.contains(x)
                || self.ix.subgraph_reads.contains_key(x)
            {
                return false;
            }
            ch.values.push(x.to_string());
            let mut sub = path.clone();
            self.chain(x, ax, d, ch, &mut sub, depth + 1)
        };
        // The hidden axis of input `x` when `x` broadcasts against the output (rank `r`).
        let aligned = |x: &str| -> Option<usize> {
            let rx = self
                .rank(x)
                .or_else(|| self.g.constant_dims(x).map(|v| v.len()))?;
            (axis + rx).checked_sub(r).filter(|&a| a < rx)
        };
        let ok = match n.op() {
            "Identity" | "Dropout" => go(0, axis, ch, path),
            "Cast" if is_float_cast(n) => go(0, axis, ch, path),
            "Transpose" => {
                let perm: Vec<usize> = match n.attr_ints("perm") {
                    Some(pm) => pm.iter().map(|&a| a as usize).collect(),
                    None => (0..r).rev().collect(),
                };
                perm.len() == r
                    && perm.get(axis).is_some_and(|&a| a < r)
                    && go(0, perm[axis], ch, path)
            }
            "Reshape" => {
                let (Some(out), Some(inp)) = (
                    self.shapes.get(v),
                    n.input(0).and_then(|x| self.shapes.get(x)),
                ) else {
                    path.pop();
                    return false;
                };
                let prod = |ds: &[shape::Dim]| -> Option<i64> {
                    ds.iter()
                        .try_fold(1i64, |a, x| x.known().and_then(|k| a.checked_mul(k)))
                };
                let inner = prod(&out[axis + 1..]);
                let j = (0..inp.len())
                    .rev()
                    .find(|&j| inp[j].known() == Some(d as i64) && prod(&inp[j + 1..]) == inner);
                match (out[axis].known(), inner, j) {
                    (Some(k), Some(_), Some(j)) if k == d as i64 => {
                        ch.shapes.push((p, 1, axis));
                        go(0, j, ch, path)
                    }
                    _ => false,
                }
            }
            "Resize" | "Upsample" => {
                let crop = n.attribute.iter().any(|a| {
                    a.name.as_deref() == Some("coordinate_transformation_mode")
                        && a.s.as_deref() == Some(b"tf_crop_and_resize")
                });
                let scales_ok = match n
                    .input(if n.is("Upsample") { 1 } else { 2 })
                    .filter(|x| !x.is_empty())
                {
                    None => true,
                    Some(sc) => self
                        .g
                        .constant_tensor(sc)
                        .and_then(|t| {
                            crate::ir::read_array(t, &Default::default(), std::path::Path::new(""))
                                .ok()
                        })
                        .is_some_and(|a| a.data.is_empty() || a.data.get(axis) == Some(&1.0)),
                };
                let sizes_ok = match n.input(3).filter(|x| !x.is_empty() && n.is("Resize")) {
                    None => true,
                    Some(sz) => {
                        let vals: Option<Vec<shape::Dim>> = shape::const_ints(self.g, sz)
                            .map(|v| v.into_iter().map(shape::Dim::Known).collect())
                            .or_else(|| self.shapes.value(sz).map(<[shape::Dim]>::to_vec));
                        let fine = vals.is_some_and(|v| {
                            v.get(axis).and_then(shape::Dim::known) == Some(d as i64)
                        });
                        if fine {
                            ch.shapes.push((p, 3, axis));
                        }
                        fine
                    }
                };
                !crop
                    && n.attr_ints("axes").is_none()
                    && scales_ok
                    && sizes_ok
                    && go(0, axis, ch, path)
            }
            "Slice" => {
                let axes = match n.input(3) {
                    Some(_) => ints(3),
                    None => ints(1).map(|st| (0..st.len() as i64).collect()),
                };
                axes.is_some_and(|ax| ax.iter().all(|&a| norm(a, r) != Some(axis)))
                    && go(0, axis, ch, path)
            }
            "Concat" => {
                norm(n.attr_i("axis").unwrap_or(0), r).is_some_and(|a| a != axis)
                    && (0..n.input.len()).all(|i| go(i, axis, ch, path))
            }
            "Unsqueeze" => match axes_of(1) {
                Some(ax) => {
                    let ax: Option<Vec<usize>> = ax.iter().map(|&a| norm(a, r)).collect();
                    match ax {
                        Some(ax) if !ax.contains(&axis) => {
                            let before = ax.iter().filter(|&&a| a < axis).count();
                            go(0, axis - before, ch, path)
                        }
                        _ => false,
                    }
                }
                None => false,
            },
            "Squeeze" => match axes_of(1) {
                Some(ax) => {
                    let ri = r + ax.len();
                    let ax: Option<Vec<usize>> = ax.iter().map(|&a| norm(a, ri)).collect();
                    match ax {
                        Some(ax) => match (0..ri).filter(|i| !ax.contains(i)).nth(axis) {
                            Some(j) => go(0, j, ch, path),
                            None => false,
                        },
                        None => false,
                    }
                }
                None => false,
            },
            "Flatten" => {
                let ri = n.input(0).and_then(|x| self.rank(x));
                match ri {
                    Some(ri) if axis == 1 && r == 2 => {
                        let f = n.attr_i("axis").unwrap_or(1);
                        norm(f, ri + 1) == Some(ri - 1)
                            && n.input(0)
                                .and_then(|x| self.shapes.get(x))
                                .and_then(|s| s.last().and_then(shape::Dim::known))
                                == Some(d as i64)
                            && go(0, ri - 1, ch, path)
                    }
                    _ => false,
                }
            }
            "Pad" => {
                let mode_ok = n
                    .attribute
                    .iter()
                    .find(|a| a.name.as_deref() == Some("mode"))
                    .is_none_or(|a| a.s.as_deref() == Some(b"constant"));
                let zero = match n.input(2).filter(|x| !x.is_empty()) {
                    None => n.attr_f("value").unwrap_or(0.0) == 0.0,
                    Some(c) => self
                        .g
                        .constant_tensor(c)
                        .and_then(|t| {
                            crate::ir::read_array(t, &Default::default(), std::path::Path::new(""))
                                .ok()
                        })
                        .is_some_and(|a| a.data.iter().all(|&x| x == 0.0)),
                };
                let pads = n.attr_ints("pads").map(<[i64]>::to_vec).or_else(|| ints(1));
                let pads_ok = n.input(3).filter(|x| !x.is_empty()).is_none()
                    && pads
                        .is_some_and(|pd| pd.len() == 2 * r && pd[axis] == 0 && pd[axis + r] == 0);
                mode_ok && zero && pads_ok && go(0, axis, ch, path)
            }
            "Gather" => {
                let ri = n.input(0).and_then(|x| self.rank(x));
                let rk = n.input(1).and_then(|x| {
                    self.rank(x)
                        .or_else(|| self.g.constant_dims(x).map(|v| v.len()))
                });
                match (ri, rk) {
                    (Some(ri), Some(rk)) => match norm(n.attr_i("axis").unwrap_or(0), ri) {
                        Some(g) if axis < g => go(0, axis, ch, path),
                        Some(g) if axis >= g + rk => go(0, axis + 1 - rk, ch, path),
                        _ => false,
                    },
                    _ => false,
                }
            }
            "Split" => {
                norm(n.attr_i("axis").unwrap_or(0), r).is_some_and(|a| a != axis)
                    && go(0, axis, ch, path)
            }
            "AveragePool" => axis == 1 && go(0, 1, ch, path),
            "ReduceMean" | "ReduceSum" => {
                let ri = n.input(0).and_then(|x| self.rank(x));
                let keep = n.attr_i("keepdims").unwrap_or(1) != 0;
                match (ri, axes_of(1)) {
                    (Some(ri), Some(ax)) if !ax.is_empty() => {
                        let ax: Option<Vec<usize>> = ax.iter().map(|&a| norm(a, ri)).collect();
                        let j = match &ax {
                            Some(ax) if keep => Some(axis).filter(|j| !ax.contains(j)),
                            Some(ax) => (0..ri).filter(|i| !ax.contains(i)).nth(axis),
                            None => None,
                        };
                        match j {
                            Some(j) => go(0, j, ch, path),
                            None => false,
                        }
                    }
                    _ => false,
                }
            }
            "Add" | "Sub" => {
                let (a0, a1) = (n.input(0).and_then(&aligned), n.input(1).and_then(&aligned));
                match (a0, a1) {
                    (Some(a0), Some(a1)) => go(0, a0, ch, path) && go(1, a1, ch, path),
                    _ => false,
                }
            }
            "Where" => {
                let per_token = n.input(0).is_some_and(|c| match self.shapes.get(c) {
                    Some(cs) => match (axis + cs.len()).checked_sub(r) {
                        None => true,
                        Some(k) => cs.get(k).and_then(shape::Dim::known) == Some(1),
                    },
                    None => false,
                });
                let (a1, a2) = (n.input(1).and_then(&aligned), n.input(2).and_then(aligned));
                match (per_token, a1, a2) {
                    (true, Some(a1), Some(a2)) => go(1, a1, ch, path) && go(2, a2, ch, path),
                    _ => false,
                }
            }
            "Mul" | "Div" => {
                let scalar = n
                    .input(1)
                    .and_then(|c| self.g.constant_dims(c))
                    .is_some_and(|ds| ds.iter().product::<usize>() == 1);
                scalar && go(0, axis, ch, path)
            }
            _ => false,
        };
        path.pop();
        ok
    }

    /// Whether `(node, slot)` reads a linear op's constant weight of output width `d` (and a
    /// constant Gemm bias).
    fn linear_writer(&self, node: NodeId, d: usize) -> bool {
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
    fn affine_writer(&self, top: NodeId, d: usize) -> Option<(NodeId, Vec<Step>)> {
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
    fn value_uses(&self, v: &str) -> usize {
        self.ix.use_count(v)
            - self
                .ix
                .consumers(v)
                .iter()
                .filter(|(c, _)| self.g.node(*c).is("Shape") || self.g.node(*c).is("Size"))
                .count()
    }

    /// Transpose(perm moves axis 1 last) ← [Reshape|Flatten keeping axis 1] ← Conv(W const).
    fn conv_stem(&self, t: NodeId, d: usize) -> Option<NodeId> {
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

enum Producer {
    Internal {
        push: Vec<String>,
        consts: Vec<(NodeId, usize)>,
    },
    Chain(Chain),
    Leaf(Leaf),
}

/// A constant source reaching the stream through pass-through ops ([`Analysis::chain`]).
#[derive(Default)]
struct Chain {
    /// (node, slot, hidden axis in the constant, the ops passed through).
    consts: Vec<(NodeId, usize, usize, Vec<String>)>,
    /// The values passed through.
    values: Vec<String>,
    /// Shape inputs that state the hidden width: (node, slot, index).
    shapes: Vec<(NodeId, usize, usize)>,
}

enum Consumer {
    Norm(usize),
    Join(Vec<String>),
    Shape,
    Outside(String),
}

/// The `Cast` (to a float type) producing `v` from a float constant, when it does.
pub fn cast_of_const(g: &Graph, ix: &GraphIndex, v: &str) -> Option<NodeId> {
    let c = ix.producer(v)?;
    let n = g.node(c);
    if !(n.is("Cast") && is_float_cast(n)) {
        return None;
    }
    let t = g.constant_tensor(n.input(0)?)?;
    crate::tensor::is_float(t.data_type.unwrap_or(dt::UNDEFINED)).then_some(c)
}

/// The dims of constant `v`, or of the constant behind it when `v` is its float `Cast`.
pub fn const_dims_through(g: &Graph, ix: &GraphIndex, v: &str) -> Option<Vec<usize>> {
    g.constant_dims(v).or_else(|| {
        let c = cast_of_const(g, ix, v)?;
        g.constant_dims(g.node(c).input(0)?)
    })
}

/// Float element type of a value, when declared (used to keep centering nodes in the stream's
/// precision).
pub fn elem_type(g: &Graph, v: &str) -> Option<i32> {
    g.declared_type(v)
        .map(|(t, _)| t)
        .filter(|&t| t != dt::UNDEFINED)
}

use crate::ir::shape;
