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

mod canon;
mod grow;
pub mod lattice;
mod old;
mod place;
pub mod transfer;
mod writers;

pub use canon::Canon;
pub use lattice::{Fact, Hidden};

use super::norms::NormMatch;
use super::report::Refusal;
use crate::ir::{shape::Shapes, Graph, GraphIndex, NodeExt, NodeId};
use crate::proto::data_type as dt;
use std::collections::{BTreeSet, HashMap};

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
    pub observed: Vec<Refusal>,
    /// Norms whose output is a source of this stream.
    pub norm_sources: Vec<usize>,
    /// Values between a constant source and the stream, through ops that keep every channel
    /// apart (their hidden axis may sit anywhere): compressed with the stream.
    pub chain_values: BTreeSet<String>,
    /// Shape inputs of such ops that state the hidden width: (node, slot, index in the shape).
    pub chain_shapes: Vec<(NodeId, usize, usize)>,
    /// Every value of the stream with its hidden axis.
    pub hidden: std::collections::BTreeMap<String, Hidden>,
    /// The stream values each value is computed from (its producer's stream inputs).
    pub up: std::collections::BTreeMap<String, Vec<String>>,
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
    /// Structurally equal nodes: one value under several names.
    pub canon: Canon,
}

pub(super) use crate::ir::is_float_cast;
pub use crate::ir::{cast_of_const, const_dims_through};

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
            canon: Canon::new(g),
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
    /// Whether Pad `n` fills with zeros in `constant` mode: its `value` (the input `value`, or
    /// the attribute when that is absent) is a constant 0.
    fn pads_with_zeros(&self, n: &crate::proto::NodeProto, value: Option<&str>) -> bool {
        let constant_mode = n
            .attribute
            .iter()
            .find(|a| a.name.as_deref() == Some("mode"))
            .is_none_or(|a| a.s.as_deref() == Some(b"constant"));
        let zero = match value {
            None => n.attr_f("value").unwrap_or(0.0) == 0.0,
            Some(c) => self
                .g
                .constant_tensor(c)
                .and_then(|t| {
                    crate::ir::read_array(t, &Default::default(), std::path::Path::new("")).ok()
                })
                .is_some_and(|a| a.data.iter().all(|&x| x == 0.0)),
        };
        constant_mode && zero
    }

    fn last_is(&self, v: &str, d: usize) -> bool {
        match self.shapes.get(v) {
            Some(s) => s.last().and_then(|x| x.known()) == Some(d as i64),
            None => false,
        }
    }

    fn rank(&self, v: &str) -> Option<usize> {
        self.shapes.rank(v)
    }

    /// Whether the condition of `Where` node `n` is the same for every channel of the hidden
    /// (last) axis: a scalar, or size 1 on its last axis (it aligns with the hidden axis).
    pub(super) fn per_token(&self, n: &crate::proto::NodeProto, v: &str) -> bool {
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
    pub fn unwritable(&self, st: &Stream) -> Vec<Refusal> {
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
            .map(Refusal::Unwritable)
            .collect()
    }
}

/// Float element type of a value, when declared (used to keep centering nodes in the stream's
/// precision).
pub fn elem_type(g: &Graph, v: &str) -> Option<i32> {
    g.declared_type(v)
        .map(|(t, _)| t)
        .filter(|&t| t != dt::UNDEFINED)
}

use crate::ir::shape;
