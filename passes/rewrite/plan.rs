//! The plan (design §3) as data: every weight edit, every explicit centering node and every
//! norm replacement of the accepted streams, and the value readers planning uses. Nothing is
//! mutated here; `center.rs` and `compress.rs` fill it, `patch.rs` lowers it.

use super::super::edit::Edit;
use super::super::math::Basis;
use super::super::report::{Centring, KeptAffine};
use super::super::stream::{Analysis, Leaf};
use crate::ir::{read_array, Model, NodeExt, NodeId};
use crate::proto::data_type as dt;
use crate::tensor::Array;
use crate::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};

/// A linear op reading a norm's output, into which γ and β fold.
#[derive(Clone, Debug)]
pub struct Reader {
    /// The MatMul or Gemm.
    pub node: NodeId,
    /// Input axis of the weight (0 for MatMul and Gemm, 1 for Gemm transB=1).
    pub in_axis: usize,
    /// The bias constant slot: Gemm's C, or the Add after a MatMul.
    pub bias: Option<(NodeId, usize)>,
    /// Gemm alpha / beta (1 for MatMul).
    pub bias_factor: f64,
}

/// What happens to one norm.
#[derive(Clone, Debug)]
pub struct NormPlan {
    /// Index into the matches.
    pub norm: usize,
    /// Readers γ/β fold into; `None` keeps the affine on the RMSNorm.
    pub fold: Option<Vec<Reader>>,
    /// Why the affine is kept, when it is.
    pub kept_affine: Option<KeptAffine>,
    /// CRMSNorm: the original width D of the compressed stream.
    pub compressed_from: Option<usize>,
    /// The width D of the norm's stream (γ and β may be scalars that broadcast to it).
    pub width: usize,
}

/// The whole plan.
#[derive(Debug, Default)]
pub struct Plan {
    /// Constant edits by (node, input slot).
    pub edits: BTreeMap<(NodeId, usize), Vec<Edit>>,
    /// Explicit centering: value → the stream-side reads to re-point.
    pub explicit: BTreeMap<String, Vec<(NodeId, usize)>>,
    /// Norms turned into RMSNorm.
    pub norms: Vec<NormPlan>,
    /// Embedding LayerNorms precomputed into their table: (norm, gather).
    pub ln_tables: Vec<(usize, NodeId)>,
    /// MatMul readers that need a new bias (β·W), with whether it must be centred.
    pub new_bias: Vec<(NodeId, Vec<f64>, bool)>,
    /// Gemm readers that need a new C input.
    pub new_gemm_c: Vec<(NodeId, Vec<f64>, bool)>,
    /// Linear nodes that are writers/sources (centred), to centre new biases too.
    pub centred_linears: BTreeSet<NodeId>,
    /// CRMSNorm: explicit centering outputs to compress to D−1, with D and the stream's element
    /// type (of the constants the orthonormal basis needs).
    pub compress_explicit: BTreeMap<String, (usize, i32)>,
    /// CRMSNorm: the widths D that were compressed (value_info declaring them is stale).
    pub compressed_widths: BTreeSet<usize>,
    /// CRMSNorm: the basis the streams are compressed into (`None` when nothing is).
    pub basis: Option<Basis>,
    /// LayerScale nodes folded into their writer, with their data input slot: removed, the
    /// node before each takes over its output.
    pub bypass: Vec<(NodeId, usize)>,
    /// CRMSNorm: `Shape` nodes on compressed values whose result must still say D (it sizes
    /// other tensors, e.g. attention heads): (node, rank) — their last entry gets +1.
    pub shape_fixes: Vec<(NodeId, usize)>,
    /// CRMSNorm: size inputs that must read a corrected value: (node, slot, what to add to each
    /// entry) — see `widths.rs`.
    pub size_fixes: Vec<(NodeId, usize, Vec<i64>)>,
}

impl Plan {
    /// Centre the constant read at `slot` over `axis` (a source or writer).
    pub(super) fn center(&mut self, slot: (NodeId, usize), axis: usize) {
        self.edits
            .entry(slot)
            .or_default()
            .push(Edit::Center { axis });
    }
}

/// How one leaf of an accepted stream is centred, for the report.
#[derive(Clone, Debug)]
pub struct PlannedLeaf {
    /// The stream value it produces.
    pub value: String,
    /// The leaf.
    pub leaf: Leaf,
    /// The node that carries the edit (`usize::MAX`: none).
    pub node: NodeId,
    /// What is done.
    pub how: Centring,
}

/// What planning tells the report of one accepted stream.
#[derive(Clone, Debug)]
pub struct StreamPart {
    /// The stream's number.
    pub stream: usize,
    /// How its leaves are centred.
    pub leaves: Vec<PlannedLeaf>,
    /// Its entries in [`Plan::norms`].
    pub norm_plans: std::ops::Range<usize>,
}

/// What planning one stream produced besides the plan's entries.
pub(super) struct StreamPlan {
    /// The stream's leaves and how they are centred, for the report.
    pub leaves: Vec<PlannedLeaf>,
    /// The constant slots this stream's leaves centre (its sources and writers, whose
    /// centred output axes carry the stream), in slot order.
    pub writers: Vec<(NodeId, usize)>,
    /// The stream's entries in [`Plan::norms`].
    pub norm_plans: std::ops::Range<usize>,
    /// Folded norms (index in [`Plan::norms`]) with the pass-through nodes between each and its
    /// readers.
    pub fold_paths: Vec<(usize, Vec<NodeId>)>,
}

/// The values of constant `name`, or of the float `Cast` of a constant that `name` is: the
/// stored values rounded to the Cast's type (what the graph computes with).
pub(super) fn read_value(a: &Analysis, model: &Model, name: &str) -> Result<Array> {
    read_through(a.g, a.ix, &model.store, &model.path, name)
}

/// [`read_value`] on any graph and index.
pub(super) fn read_through(
    g: &crate::ir::Graph,
    ix: &crate::ir::GraphIndex,
    store: &crate::io::ExternalStore,
    path: &std::path::Path,
    name: &str,
) -> Result<Array> {
    if let Some(t) = g.constant_tensor(name) {
        return read_array(t, store, path);
    }
    let vanished = || Error::Internal(format!("constant {name:?} vanished"));
    let c = super::super::stream::cast_of_const(g, ix, name).ok_or_else(vanished)?;
    let cn = g.node(c);
    let src = cn
        .input(0)
        .and_then(|s| g.constant_tensor(s))
        .ok_or_else(vanished)?;
    let arr = read_array(src, store, path)?;
    let to = cn.attr_i("to").map_or(dt::FLOAT, |t| t as i32);
    let bytes = crate::tensor::encode_f64(&arr.data, to).map_err(Error::Internal)?;
    let data = crate::tensor::decode_raw(&bytes, to, arr.data.len()).map_err(Error::Internal)?;
    Ok(Array {
        dims: arr.dims,
        data_type: to,
        data,
    })
}

/// γ or β of `v.len()` entries as a vector of the width `d`: itself, or a scalar repeated. The
/// matchers only accept lengths 1 and D; anything else is a broken invariant, not a panic.
pub(super) fn broadcast_vec(v: &[f64], d: usize) -> Result<Vec<f64>> {
    match v {
        _ if v.len() == d => Ok(v.to_vec()),
        [x] => Ok(vec![*x; d]),
        _ => Err(Error::Internal(format!(
            "a scale/shift of {} entries does not broadcast to width {d}",
            v.len()
        ))),
    }
}
