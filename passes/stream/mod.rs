//! Residual-stream discovery (design §2) as an abstract interpretation of the rewrite
//! (passes/README.md, "Analyse").
//!
//! The rewrite replaces each value of a stream by its centred copy along its hidden axis. Every
//! value has a [`Fact`] (`lattice.rs`): the rewrite leaves it as it is (`Same`), makes it the
//! centred copy (`Stream`, with where its hidden axis is), changes it otherwise (`Derived`), or
//! the analysis cannot tell (`Unknown`). A stream is grown from each LayerNorm's input
//! (`grow.rs`) with one transfer rule per op (`transfer.rs`), asked both ways: upwards each
//! value's producer is a *leaf* the rewrite can centre by editing constants (`writers.rs`: a
//! writer, a table, a Conv stem, a constant; anything else gets one explicit centring node), or
//! a carrier whose data inputs join the stream; downwards each reader is a norm, a carrier whose
//! outputs join, `Shape`, or an *observer* that must read the original. Structurally equal
//! nodes compute one value (`canon.rs`). A leaf whose output an observer reads keeps its value,
//! and its stream-side readers read a centred copy (a *cut*, `place.rs`), which is also where
//! explicit centrings at values whose hidden axis is not last move to.

mod canon;
mod grow;
pub mod lattice;
mod place;
pub mod transfer;
mod writers;

pub use canon::Canon;
pub use lattice::{Fact, Hidden};

impl Stream {
    /// The fact the analysis established for `v`: `Stream` along its hidden axis for a value of
    /// the stream, `Same` for any other.
    pub fn fact(&self, v: &str) -> Fact {
        match self.hidden.get(v) {
            Some(&h) => Fact::Stream(h),
            None => Fact::Same,
        }
    }
}

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
    /// Stream values read outside the stream (a graph output, a subgraph, an observer), with
    /// the first such reader.
    pub observers: std::collections::BTreeMap<String, String>,
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
        canon: Canon,
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
            canon,
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

    fn rank(&self, v: &str) -> Option<usize> {
        self.shapes.rank(v)
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
