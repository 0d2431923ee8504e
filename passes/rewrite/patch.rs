//! Named patches: the graph edits the driver applies, every choice already made.
//!
//! Each [`Patch`] is one small, named change (edit one constant, add one bias, centre one value,
//! replace one norm, …) with a one-line description. [`super::lower`](super::lower()) makes
//! them from the plan, in the rewrite's order: constant edits (sources and writers centred, γ/β
//! folded into readers, compression), new biases, LayerScale removals, explicit centering,
//! embedding tables, norm replacements, then compression's shape fixes and the bookkeeping
//! (imports, casts, stale `value_info`); [`super::driver`] applies them in order.

use super::super::edit::Edit;
use super::super::emit::{CompressValue, NormBuild};
use super::super::math::Basis;
use crate::ir::subgraph::BodyRef;
use crate::ir::{NodeId, Pending};
use crate::proto::{GraphProto, TensorProto};
use std::collections::BTreeSet;

/// One named change of the graph.
#[derive(Clone, Debug)]
pub struct Patch {
    /// What it does.
    pub kind: PatchKind,
    /// The one-line description (names as in the input graph).
    pub what: String,
}

impl std::fmt::Display for Patch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

/// The changes a patch can make.
#[derive(Clone, Debug)]
pub enum PatchKind {
    /// Edit the constant read at input `slot` of `node` (copy on write), its edits in order.
    EditConstant {
        /// The reading node.
        node: NodeId,
        /// Its input slot.
        slot: usize,
        /// The edits, in the order they apply.
        edits: Vec<Edit>,
    },
    /// Give a folded reader a new bias (β·W): a new C input of a Gemm, an Add after a MatMul.
    NewBias {
        /// The reader.
        reader: NodeId,
        /// The bias values (β·W).
        shift: Vec<f64>,
        /// The reader also writes a stream: the bias is centred.
        centred: bool,
        /// The stream it writes is compressed, into this basis: the centred bias is compressed
        /// as the writer's output is (its last entry dropped, or projected).
        compressed: Option<Basis>,
        /// A Gemm (new C input) rather than a MatMul (new Add).
        gemm: bool,
        /// The norm whose β it carries (for the node's doc string).
        norm: Option<String>,
    },
    /// Remove a LayerScale node folded into its writer; the node before it takes its output.
    RemoveScale {
        /// The Mul/Div.
        node: NodeId,
        /// Its data input slot.
        slot: usize,
    },
    /// Centre a value explicitly (`x - ReduceMean(x)`) for its stream-side readers.
    Center {
        /// The value.
        value: String,
        /// The stream-side reads to re-point.
        edges: Vec<(NodeId, usize)>,
        /// CRMSNorm: the stream-side reads get the value compressed to `width − 1` instead
        /// (centred and sliced, or projected onto the orthonormal basis).
        compress_from: Option<CompressValue>,
    },
    /// An embedding LayerNorm precomputed into its table: the Gather produces the norm's output.
    PrecomputeTable {
        /// What goes with it: its nodes and the constants they read.
        removed: Removed,
        /// The Gather.
        gather: NodeId,
        /// The norm's output, now the Gather's.
        out: String,
    },
    /// Replace a LayerNorm by what lowering decided: RMSNorm, or CRMSNorm on a compressed
    /// stream, in a concrete [`NormOut`](super::super::emit::NormOut).
    ReplaceNorm {
        /// The norm (index into the matches).
        norm: usize,
        /// What goes: its nodes and the constants they read.
        removed: Removed,
        /// Its replacement.
        build: Box<NormBuild>,
        /// The name of its output form in the report (`form_out`).
        form_out: String,
        /// The `doc_string` of the new nodes.
        doc: String,
    },
    /// CRMSNorm: a `Shape` node whose result sizes other tensors gets the width back (+1 on its
    /// last entry).
    FixShape {
        /// The Shape node.
        node: NodeId,
        /// The rank of its input.
        rank: usize,
    },
    /// CRMSNorm: a size input (a Reshape target, a Tile's repeats, …) reads its value plus
    /// `delta` (an `Add` before it), so that it says what the compressed graph needs there.
    FixSizes {
        /// The reader.
        node: NodeId,
        /// Its input slot.
        slot: usize,
        /// What to add to each entry.
        delta: Vec<i64>,
    },
    /// Import an operator domain.
    Import {
        /// The domain.
        domain: String,
        /// Its version.
        version: i64,
    },
    /// Remove the float Casts of γ/β of the replaced norms that nothing else reads (lowering
    /// chose them: no node left and no new node reads them, no graph output).
    DropCasts {
        /// The Casts.
        casts: BTreeSet<NodeId>,
    },
    /// CRMSNorm: drop the intermediate type annotations that declare a compressed width.
    DropStaleValueInfo {
        /// The widths D that were compressed.
        widths: BTreeSet<usize>,
    },
    /// Subgraphs: outer constant `name` takes the value that the bodies `bodies` (their
    /// numbers among the bodies put back) made of it — in place, or as a copy under a fresh
    /// name (`copy`) that those bodies then read.
    OuterConstant {
        /// The outer constant.
        name: String,
        /// Its new tensor (the payload computed at write time when `pending`).
        tensor: Box<TensorProto>,
        /// What computes its payload at write time.
        pending: Option<Box<Pending>>,
        /// A copy under a fresh name, not an edit in place.
        copy: bool,
        /// The bodies that read the new value.
        bodies: Vec<usize>,
    },
    /// Subgraphs: put back rewritten body number `index`: its imports removed (outer values
    /// again), its reads of outer constants copied for it renamed, its constants computed at
    /// write time moved to the enclosing graph (the writer computes them there), the operator
    /// domains it uses imported.
    PutBody {
        /// Where the body is.
        body: BodyRef,
        /// Its number among the bodies put back.
        index: usize,
        /// The body.
        graph: Box<GraphProto>,
        /// Its constants computed at write time.
        hoisted: Vec<(TensorProto, Option<Pending>)>,
        /// The domains it imports (domain, version).
        imports: Vec<(String, i64)>,
    },
    /// Subgraphs: drop the outer initializers among `candidates` that nothing reads any more.
    DropUnusedInitializers {
        /// The initializers the bodies imported.
        candidates: BTreeSet<String>,
    },
}

/// The nodes of a replaced norm, removed when the graph settles, and the constants they read,
/// dropped then unless something else still reads them.
#[derive(Clone, Debug, PartialEq)]
pub struct Removed {
    /// The nodes.
    pub nodes: Vec<NodeId>,
    /// The constants they read.
    pub consts: Vec<String>,
}

/// A short description of a constant's edits.
pub(super) fn edits_text(edits: &[Edit]) -> String {
    edits
        .iter()
        .map(|e| match e {
            Edit::LayerNormRows { .. } => "LayerNorm of every row".to_string(),
            Edit::Scale { axis, .. } => format!("scale axis {axis}"),
            Edit::AddRows(_) => "add β·W".to_string(),
            Edit::Center { axis } => format!("centre axis {axis}"),
            Edit::FoldLastIn {
                axis,
                basis: Basis::Coordinate,
            } => format!("fold the last entry of axis {axis} in"),
            Edit::FoldLastIn {
                axis,
                basis: Basis::Orthonormal,
            } => format!("read axis {axis} in the orthonormal basis"),
            Edit::DropLast {
                axis,
                width,
                basis: Basis::Coordinate,
            } => format!("drop the last entry of axis {axis} (of {width})"),
            Edit::DropLast {
                axis,
                width,
                basis: Basis::Orthonormal,
            } => format!("project axis {axis} (of {width}) onto the orthonormal basis"),
            Edit::ShrinkDim { index, width } => {
                format!(
                    "shape entry {index}: {width} -> {}",
                    width.saturating_sub(1)
                )
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
