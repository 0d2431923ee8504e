//! Lowering: the plan becomes the ordered list of named patches, every choice made here — the
//! concrete output form of each replaced norm ([`NormOut`]: fused or decomposed by the opset,
//! onnxruntime's fused Skip form, CRMSNorm's forms), its scale (γ, ones, or γ widened for a
//! fused op), the Casts of γ/β that go, the imports. The driver and the builders of `emit.rs`
//! only build what the patches say.
//!
//! Adding an output form: a [`NormOut`] variant (with its report name and builder in
//! `emit.rs`), and the case of [`norm_build`] that chooses it.

use super::super::api::{CrmsEmit, OutputForm};
use super::super::emit::Emit;
use super::super::emit::{
    doc_norm, CompressValue, NormBuild, NormInput, NormOut, RmsCore, Scale, NORMOPT_DOMAIN,
};
use super::super::math::Basis;
use super::super::norms::{NormForm, NormMatch};
use super::super::stream::{cast_of_const, const_dims_through, elem_type};
use super::patch::{edits_text, Patch, PatchKind, Removed};
use super::plan::{broadcast_vec, read_through, NormPlan, Plan};
use crate::ir::{GraphIndex, Model, NodeExt, NodeId};
use crate::proto::data_type as dt;
use crate::Result;
use std::collections::{BTreeSet, HashMap};

/// Lower a plan to its patches, in the order they apply, every choice made: `model` is the
/// model the plan was made on, `ix` its graph's index, `form` what the rewrite writes.
pub fn lower(
    model: &Model,
    ix: &GraphIndex,
    norms: &[NormMatch],
    p: &Plan,
    form: OutputForm,
) -> Result<Vec<Patch>> {
    let g = &model.graph;
    let emit = form.rms_emit();
    let crms = form.crms_emit();
    let fused_rms = model.onnx_opset() >= 23;
    if p.basis.is_some_and(|b| b != crms.basis()) {
        return Err(crate::Error::Internal(format!(
            "streams compressed into {:?}, CRMSNorm written as {crms:?}",
            p.basis
        )));
    }
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
        let compressed = p
            .basis
            .filter(|_| *centred && p.compressed_widths.contains(&shift.len()));
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
                match compressed {
                    Some(Basis::Coordinate) => ", compressed",
                    Some(Basis::Orthonormal) => ", projected onto the orthonormal basis",
                    None => "",
                }
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
        let compress_from =
            p.compress_explicit
                .get(value)
                .zip(p.basis)
                .map(|(&(width, data_type), basis)| CompressValue {
                    width,
                    basis,
                    data_type,
                });
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
                    .map(|c| match c.basis {
                        Basis::Coordinate => format!(", sliced to width {}", c.width - 1),
                        Basis::Orthonormal => format!(", projected to width {}", c.width - 1),
                    })
                    .unwrap_or_default()
            ),
        );
    }
    for &(norm, gather) in &p.ln_tables {
        push(
            PatchKind::PrecomputeTable {
                removed: removed(g, &norms[norm]),
                gather,
                out: norms[norm].y.clone(),
            },
            format!(
                "precompute LayerNorm {:?} into the table of {:?}",
                norm_label(norm),
                label(gather)
            ),
        );
    }
    // Values the new nodes read (a Cast of γ/β they read stays).
    let mut new_reads: BTreeSet<String> = BTreeSet::new();
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
        let m = &norms[np.norm];
        let folded_into: Vec<String> = np.fold.iter().flatten().map(|r| label(r.node)).collect();
        let doc = doc_norm(
            &label(m.anchor),
            &m.form.to_string(),
            m.epsilon,
            np.compressed_from,
            &folded_into,
            np.kept_affine.as_ref(),
        );
        let build = Box::new(norm_build(model, ix, m, np, emit, crms, fused_rms)?);
        new_reads.extend(build.reads());
        // A CRMSNorm whose affine was not folded applies it to the decompressed vector.
        let form_out = build.form.name(build.decompress);
        push(
            PatchKind::ReplaceNorm {
                norm: np.norm,
                removed: removed(g, m),
                build,
                form_out,
                doc,
            },
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
    for (node, slot, delta) in &p.size_fixes {
        push(
            PatchKind::FixSizes {
                node: *node,
                slot: *slot,
                delta: delta.clone(),
            },
            format!(
                "size input {slot} of {:?} gets {delta:?} added (compressed widths)",
                label(*node)
            ),
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
    let gone: BTreeSet<NodeId> = p
        .norms
        .iter()
        .map(|np| np.norm)
        .chain(p.ln_tables.iter().map(|(k, _)| *k))
        .flat_map(|k| norms[k].nodes.iter().copied())
        .chain(p.bypass.iter().map(|(n, _)| *n))
        .collect();
    let casts: BTreeSet<NodeId> = p
        .norms
        .iter()
        .map(|np| np.norm)
        .chain(p.ln_tables.iter().map(|(k, _)| *k))
        .flat_map(|k| norms[k].gamma.iter().chain(norms[k].beta.iter()))
        .filter_map(|v| cast_of_const(g, ix, v))
        .filter(|&c| {
            // Read by no node that stays (the replaced norms and the LayerScale nodes go), by
            // no new node, and not a graph output.
            let o = g.node(c).out(0).unwrap_or("");
            !gone.contains(&c)
                && ix.consumers(o).iter().all(|(r, _)| gone.contains(r))
                && !new_reads.contains(o)
                && !ix.graph_outputs.contains(o)
        })
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
    Ok(out)
}

/// The nodes of norm `m` and the constants they read.
fn removed(g: &crate::ir::Graph, m: &NormMatch) -> Removed {
    Removed {
        nodes: m.nodes.clone(),
        consts: m
            .nodes
            .iter()
            .flat_map(|&n| {
                g.node(n)
                    .input
                    .iter()
                    .filter(|i| g.constant_tensor(i).is_some())
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect(),
    }
}

/// The replacement of norm `m` as planned by `np`: its output form and what its nodes read.
///
/// - On a compressed stream (`np.compressed_from` = D): CRMSNorm, as one custom op
///   (`--emit custom`, the paper's coordinates), or in the orthonormal basis as an RMSNorm over
///   D−1 entries written as RMSNorm is (`SimplifiedLayerNormalization` under
///   `--emit onnxruntime`, `RMSNormalization` at opset ≥ 23, else standard ops). A norm whose
///   readers were not folded decompresses its output to width D, then applies its γ/β.
/// - Otherwise RMSNorm: onnxruntime's fused Skip form for a Skip norm without a bias under
///   `--emit onnxruntime`; `SimplifiedLayerNormalization` under `--emit onnxruntime`;
///   `RMSNormalization` at opset ≥ 23 (`fused_rms`); else standard ops.
/// - The scale: a fused op needs one of the stream's width (ones for a folded or absent γ, a
///   broadcast γ widened); the decomposed chain multiplies by ones of γ's (or β's) width when
///   γ was folded, so that onnxruntime fuses it, and by nothing when that width is unknown.
fn norm_build(
    model: &Model,
    ix: &GraphIndex,
    m: &NormMatch,
    np: &NormPlan,
    emit: Emit,
    crms: CrmsEmit,
    fused_rms: bool,
) -> Result<NormBuild> {
    let g = &model.graph;
    let data_type = m
        .gamma
        .as_deref()
        .and_then(|gm| g.constant_tensor(gm))
        .and_then(|t| t.data_type)
        .filter(|&t| crate::tensor::is_float(t))
        .or_else(|| elem_type(g, &m.y))
        // New constants are written in this type: a declared non-float type is a lie (the norm
        // computes in floats), not something to write.
        .filter(|&t| crate::tensor::is_float(t))
        .unwrap_or(dt::FLOAT);
    let input = match &m.skip {
        Some(s) => NormInput::Sum(s.clone()),
        None => NormInput::Value(m.x.clone()),
    };
    let folded = np.fold.is_some();
    let mut nb = NormBuild {
        form: NormOut::DecomposedRms,
        input,
        scale: None,
        shift: None,
        epsilon: m.epsilon,
        data_type,
        compute_type: m.compute_type,
        out: m.y.clone(),
        decompress: false,
    };
    if let Some(width) = np.compressed_from {
        let core = match crms {
            CrmsEmit::Custom => None,
            CrmsEmit::Onnxruntime => Some(RmsCore::SimplifiedLayerNormalization),
            CrmsEmit::Standard if fused_rms => Some(RmsCore::RmsNormalization),
            CrmsEmit::Standard => Some(RmsCore::Decomposed),
        };
        nb.form = match core {
            None => NormOut::CustomCrms { width },
            Some(core) => NormOut::OrthoCrms { width, core },
        };
        if !folded {
            nb.scale = m.gamma.clone().map(Scale::Value);
            nb.shift = m.beta.clone();
            nb.decompress = true;
        }
        return Ok(nb);
    }
    let fused_skip = emit == Emit::Onnxruntime
        && m.form == NormForm::SkipLayerNormalization
        && m.skip.as_ref().is_some_and(|s| s.bias.is_none());
    nb.form = match emit {
        _ if fused_skip => NormOut::SkipSimplifiedLayerNormalization,
        Emit::Onnxruntime => NormOut::SimplifiedLayerNormalization,
        Emit::Standard if fused_rms => NormOut::RmsNormalization,
        Emit::Standard => NormOut::DecomposedRms,
    };
    let decomposed = nb.form == NormOut::DecomposedRms;
    let last_dim = |v: &str| const_dims_through(g, ix, v).and_then(|s| s.last().copied());
    nb.scale = if folded || m.gamma.is_none() {
        let width = if decomposed {
            m.gamma
                .as_deref()
                .and_then(last_dim)
                .or_else(|| m.beta.as_deref().and_then(last_dim))
        } else {
            Some(np.width)
        };
        width.map(|d| Scale::New {
            what: "ones",
            data_type,
            values: vec![1.0; d],
        })
    } else {
        match m.gamma.as_deref() {
            // A fused op's scale must have the normalised width: widen a broadcast γ.
            Some(gm)
                if !decomposed
                    && const_dims_through(g, ix, gm)
                        .and_then(|s| s.iter().try_fold(1usize, |a, &d| a.checked_mul(d)))
                        != Some(np.width) =>
            {
                let arr = read_through(g, ix, &model.store, &model.path, gm)?;
                Some(Scale::New {
                    what: "scale",
                    data_type: arr.data_type,
                    values: broadcast_vec(&arr.data, np.width)?,
                })
            }
            gm => gm.map(|v| Scale::Value(v.to_string())),
        }
    };
    nb.shift = if folded { None } else { m.beta.clone() };
    Ok(nb)
}
