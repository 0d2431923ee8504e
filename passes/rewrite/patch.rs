//! Named patches: the plan lowered to the ordered list of graph edits the driver applies.
//!
//! Each [`Patch`] is one small, named change (edit one constant, add one bias, centre one value,
//! replace one norm, …) with a one-line description; [`super::driver`] applies them in order.
//! The order is the rewrite's: constant edits (sources and writers centred, γ/β folded into
//! readers, compression), new biases, LayerScale removals, explicit centering, embedding tables,
//! norm replacements, then compression's shape fixes and the bookkeeping (imports, casts, stale
//! `value_info`).

use super::super::edit::Edit;
use super::super::emit::{Emit, NORMOPT_DOMAIN};
use super::super::math::Basis;
use super::super::norms::NormMatch;
use super::super::stream::cast_of_const;
use super::super::CrmsEmit;
use super::plan::{NormPlan, Plan};
use crate::ir::{Graph, GraphIndex, NodeExt, NodeId};
use std::collections::{BTreeSet, HashMap};

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
        /// The stream it writes is compressed: the centred bias drops its last entry.
        compressed: bool,
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
        /// CRMSNorm: compress the value to `width − 1` instead (in the form's basis), with
        /// constants of this element type.
        compress_from: Option<(usize, i32)>,
    },
    /// An embedding LayerNorm precomputed into its table: the Gather produces the norm's output.
    PrecomputeTable {
        /// The norm (index into the matches).
        norm: usize,
        /// The Gather.
        gather: NodeId,
    },
    /// Replace a LayerNorm by RMSNorm (or CRMSNorm on a compressed stream).
    ReplaceNorm(NormPlan),
    /// CRMSNorm: a `Shape` node whose result sizes other tensors gets the width back (+1 on its
    /// last entry).
    FixShape {
        /// The Shape node.
        node: NodeId,
        /// The rank of its input.
        rank: usize,
    },
    /// Import an operator domain.
    Import {
        /// The domain.
        domain: String,
        /// Its version.
        version: i64,
    },
    /// Remove the float Casts of γ/β of the replaced norms that nothing else reads.
    DropCasts {
        /// The Casts.
        casts: BTreeSet<NodeId>,
    },
    /// CRMSNorm: drop the intermediate type annotations that declare a compressed width.
    DropStaleValueInfo {
        /// The widths D that were compressed.
        widths: BTreeSet<usize>,
    },
}

/// A short description of a constant's edits.
fn edits_text(edits: &[Edit]) -> String {
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
            } => {
                format!("drop the last entry of axis {axis} (of {width})")
            }
            Edit::DropLast {
                axis,
                width,
                basis: Basis::Orthonormal,
            } => {
                format!("project axis {axis} (of {width}) onto the orthonormal basis")
            }
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

/// Lower a plan to its patches, in the order they apply. `g` is the graph the plan was made on,
/// `ix` its index.
pub fn lower(
    g: &Graph,
    ix: &GraphIndex,
    norms: &[NormMatch],
    p: &Plan,
    emit: Emit,
    crms: CrmsEmit,
) -> Vec<Patch> {
    let label = |id: NodeId| g.nodes().get(id).map(|n| n.label()).unwrap_or_default();
    let norm_label = |k: usize| label(norms[k].anchor);
    let mut out = Vec::new();
    let mut push = |kind: PatchKind, what: String| out.push(Patch { kind, what });
    for (&(node, slot), edits) in &p.edits {
        let name = g.node(node).input(slot).unwrap_or("").to_string();
        push(
            PatchKind::EditConstant {
                node,
                slot,
                edits: edits.clone(),
            },
            format!(
                "edit constant {name:?} (input {slot} of {:?}): {}",
                label(node),
                edits_text(edits)
            ),
        );
    }
    // The norm a reader's fold comes from (the last one, when several fold into it).
    let fold_of: HashMap<NodeId, String> = p
        .norms
        .iter()
        .flat_map(|np| {
            np.fold
                .iter()
                .flatten()
                .map(move |r| (r.node, norm_label(np.norm)))
        })
        .collect();
    let with_gemm = p
        .new_bias
        .iter()
        .map(|e| (e, false))
        .chain(p.new_gemm_c.iter().map(|e| (e, true)));
    for ((reader, shift, centred), gemm) in with_gemm {
        let compressed = *centred && p.compressed_widths.contains(&shift.len());
        let norm = fold_of.get(reader).cloned();
        push(
            PatchKind::NewBias {
                reader: *reader,
                shift: shift.clone(),
                centred: *centred,
                compressed,
                gemm,
                norm: norm.clone(),
            },
            format!(
                "give {:?} a new bias (β·W of {:?}){}{}",
                label(*reader),
                norm.unwrap_or_default(),
                if *centred { ", centred" } else { "" },
                if compressed { ", compressed" } else { "" }
            ),
        );
    }
    for &(node, slot) in &p.bypass {
        push(
            PatchKind::RemoveScale { node, slot },
            format!(
                "remove LayerScale {:?} (folded into its writer)",
                label(node)
            ),
        );
    }
    for (value, edges) in &p.explicit {
        let compress_from = p.compress_explicit.get(value).copied();
        push(
            PatchKind::Center {
                value: value.clone(),
                edges: edges.clone(),
                compress_from,
            },
            format!(
                "centre {value:?} explicitly for {} stream-side read(s){}",
                edges.len(),
                compress_from
                    .map(|(d, _)| match crms.basis() {
                        Basis::Coordinate => format!(", sliced to width {}", d - 1),
                        Basis::Orthonormal => format!(", projected to width {}", d - 1),
                    })
                    .unwrap_or_default()
            ),
        );
    }
    for &(norm, gather) in &p.ln_tables {
        push(
            PatchKind::PrecomputeTable { norm, gather },
            format!(
                "precompute LayerNorm {:?} into the table of {:?}",
                norm_label(norm),
                label(gather)
            ),
        );
    }
    for np in &p.norms {
        let into = match &np.compressed_from {
            Some(d) => format!("CRMSNorm (width {d} -> {})", d - 1),
            None => "RMSNorm".to_string(),
        };
        let fold = match &np.fold {
            Some(rs) => format!(
                ", γ/β folded into {}",
                rs.iter()
                    .map(|r| format!("{:?}", label(r.node)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => String::new(),
        };
        push(
            PatchKind::ReplaceNorm(np.clone()),
            format!(
                "replace LayerNorm {:?} by {into}{fold}",
                norm_label(np.norm)
            ),
        );
    }
    for &(node, rank) in &p.shape_fixes {
        push(
            PatchKind::FixShape { node, rank },
            format!("Shape {:?} keeps reporting the full width", label(node)),
        );
    }
    if p.norms
        .iter()
        .any(|np| emit == Emit::Onnxruntime && norms[np.norm].skip.is_some())
    {
        push(
            PatchKind::Import {
                domain: "com.microsoft".into(),
                version: 1,
            },
            "import com.microsoft version 1".into(),
        );
    }
    let casts: BTreeSet<NodeId> = p
        .norms
        .iter()
        .map(|np| np.norm)
        .chain(p.ln_tables.iter().map(|(k, _)| *k))
        .flat_map(|k| norms[k].gamma.iter().chain(norms[k].beta.iter()))
        .filter_map(|v| cast_of_const(g, ix, v))
        .collect();
    if !casts.is_empty() {
        let what = format!(
            "remove the Casts of γ/β ({}) that only the replaced norms read",
            casts
                .iter()
                .map(|&c| format!("{:?}", label(c)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        push(PatchKind::DropCasts { casts }, what);
    }
    if !p.compressed_widths.is_empty() {
        let widths = p.compressed_widths.clone();
        let what = format!(
            "drop the value_info that declares a compressed width ({})",
            widths
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        push(PatchKind::DropStaleValueInfo { widths }, what);
    }
    // Our own op: CRMSNorm as one custom op, or such nodes already in the input.
    let custom = crms == CrmsEmit::Custom && p.norms.iter().any(|np| np.compressed_from.is_some());
    if custom
        || g.nodes()
            .iter()
            .any(|n| n.domain.as_deref() == Some(NORMOPT_DOMAIN))
    {
        push(
            PatchKind::Import {
                domain: NORMOPT_DOMAIN.into(),
                version: 1,
            },
            format!("import {NORMOPT_DOMAIN} version 1"),
        );
    }
    out
}
