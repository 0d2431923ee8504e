//! The patch driver: the one place that mutates the graph during the pass.
//!
//! [`drive`] applies [`Patch`]es in order, then settles the graph: the nodes the patches
//! replaced are removed (node ids stay valid until then: patches only append nodes), the order
//! is restored and the constants nobody reads any more are dropped. With
//! [`DriveOptions::check_each_patch`], the graph is checked after each patch as it would be if
//! the rewrite stopped there (a settled copy must pass [`crate::ir::Graph::check`]); with
//! [`DriveOptions::stop_after`], only the first patches are applied (to bisect a broken
//! rewrite; the result is a valid graph but in general not an equivalent one).

use super::super::edit;
use super::super::emit::{Builder, Emit};
use super::super::math;
use super::super::norms::{NormForm, NormMatch};
use super::super::CrmsEmit;
use super::patch::{Patch, PatchKind};
use super::plan::{broadcast_vec, read_through, NormPlan};
use crate::io::ExternalStore;
use crate::ir::{read_array, GraphIndex, Model, NodeExt, NodeId};
use crate::proto::data_type as dt;
use crate::{Error, Result};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

/// What applying the patches added.
#[derive(Debug, Default)]
pub struct Applied {
    /// Bytes of new initializers (copies of shared constants, new biases).
    pub bytes_added: usize,
    /// Explicit centering nodes added.
    pub centering_nodes: usize,
    /// Output form of each replaced norm, by its index among the matches.
    pub forms_out: std::collections::BTreeMap<usize, String>,
    /// How many patches were applied.
    pub patches: usize,
}

/// Told each patch's number (from 1) and the patch, before it is applied.
pub type PatchObserver<'a> = &'a dyn Fn(usize, &Patch);

/// How the driver runs.
#[derive(Clone, Copy)]
pub struct DriveOptions<'a> {
    /// RMSNorm's form.
    pub emit: Emit,
    /// CRMSNorm's form.
    pub crms: CrmsEmit,
    /// Constants of at least this many bytes are edited while the model is written.
    pub defer_bytes: usize,
    /// Check the graph after each patch.
    pub check_each_patch: bool,
    /// Apply only this many patches.
    pub stop_after: Option<usize>,
    /// Called with each patch's number (from 1) and the patch, before it is applied.
    pub log: Option<PatchObserver<'a>>,
}

/// Apply `patches` in order to `model` (whose graph they were planned on, with the norms
/// `norms`), then settle the graph and check it.
pub fn drive(
    model: &mut Model,
    norms: &[NormMatch],
    patches: &[Patch],
    o: &DriveOptions,
) -> Result<Applied> {
    let mut d = Driver {
        opset: model.onnx_opset(),
        path: model.path.clone(),
        store: model.store.clone(),
        // Producers of γ/β behind a Cast (node ids are stable: patches only append nodes).
        ix0: model.graph.index(),
        model,
        norms,
        emit: o.emit,
        crms: o.crms,
        defer_bytes: o.defer_bytes,
        removed: BTreeSet::new(),
        dead_consts: BTreeSet::new(),
        renamed: HashMap::new(),
        out: Applied::default(),
    };
    let n = o.stop_after.map_or(patches.len(), |k| k.min(patches.len()));
    for (i, p) in patches[..n].iter().enumerate() {
        if let Some(log) = o.log {
            log(i + 1, p);
        }
        d.apply(p)?;
        d.out.patches += 1;
        if o.check_each_patch {
            d.check()
                .map_err(|e| Error::Internal(format!("patch #{} ({p}): {e}", i + 1)))?;
        }
    }
    d.settle()?;
    Ok(d.out)
}

/// The driver's state between patches.
struct Driver<'a> {
    model: &'a mut Model,
    norms: &'a [NormMatch],
    emit: Emit,
    crms: CrmsEmit,
    defer_bytes: usize,
    opset: i64,
    path: PathBuf,
    store: Arc<ExternalStore>,
    /// The index of the graph before any patch.
    ix0: GraphIndex,
    /// Nodes replaced, removed when the graph settles.
    removed: BTreeSet<NodeId>,
    /// Constants that may have lost their last reader.
    dead_consts: BTreeSet<String>,
    /// Explicitly centred values → their centred copies (norms read the copies).
    renamed: HashMap<String, String>,
    out: Applied,
}

impl Driver<'_> {
    fn builder(&mut self) -> Builder<'_> {
        Builder {
            g: &mut self.model.graph,
            opset: self.opset,
            prefix: "normopt".into(),
            doc: None,
        }
    }

    /// The graph as it would be if the rewrite stopped here must be valid.
    fn check(&self) -> std::result::Result<(), String> {
        let mut g = self.model.graph.clone();
        g.remove_nodes(&self.removed);
        g.toposort()?;
        g.check()
            .map_err(|e| format!("the graph is invalid after it: {e}"))
    }

    /// Remove the replaced nodes, restore order, drop what nobody reads; check the result.
    fn settle(&mut self) -> Result<()> {
        let g = &mut self.model.graph;
        g.remove_nodes(&self.removed);
        g.toposort()
            .map_err(|e| Error::Internal(format!("after the rewrite: {e}")))?;
        g.drop_unused_constants(&self.dead_consts);
        g.check()
            .map_err(|e| Error::Internal(format!("the rewritten graph is invalid: {e}")))
    }

    fn apply(&mut self, p: &Patch) -> Result<()> {
        match &p.kind {
            PatchKind::EditConstant { node, slot, edits } => {
                self.edit_constant(*node, *slot, edits)
            }
            PatchKind::NewBias {
                reader,
                shift,
                centred,
                compressed,
                gemm,
                norm,
            } => self.new_bias(
                *reader,
                shift,
                *centred,
                *compressed,
                *gemm,
                norm.as_deref(),
            ),
            PatchKind::RemoveScale { node, slot } => self.remove_scale(*node, *slot),
            PatchKind::Center {
                value,
                edges,
                compress_from,
            } => {
                let basis = self.crms.basis();
                let mut b = self.builder();
                b.doc = Some(super::super::emit::doc_center(value));
                let c = match compress_from {
                    Some((d, t)) => b.compress_value(value, *d, basis, *t)?,
                    None => b.center(value)?,
                };
                for &(node, slot) in edges {
                    b.g.set_input(node, slot, &c);
                }
                self.renamed.insert(value.clone(), c);
                self.out.centering_nodes += 1;
                Ok(())
            }
            PatchKind::PrecomputeTable { norm, gather } => {
                let m = &self.norms[*norm];
                self.removed.extend(m.nodes.iter().copied());
                self.dead_consts.extend(norm_consts(&self.model.graph, m));
                self.model.graph.set_output(*gather, 0, &m.y)
            }
            PatchKind::ReplaceNorm(np) => self.replace_norm(np),
            PatchKind::FixShape { node, rank } => {
                let (node, rank) = (*node, *rank);
                let mut b = self.builder();
                b.doc = Some(super::super::emit::doc_shape_fix(&b.g.node(node).label()));
                let o =
                    b.g.node(node)
                        .out(0)
                        .ok_or_else(|| Error::Internal(format!("Shape node {node} has no output")))?
                        .to_string();
                let raw = b.value("shape");
                b.g.set_output(node, 0, &raw)?;
                let mut onehot = vec![0.0; rank];
                if let Some(l) = onehot.last_mut() {
                    *l = 1.0;
                }
                let c = b.constant("width_fix", &[rank], dt::INT64, &onehot)?;
                b.node("", "Add", &[&raw, &c], Some(&o), vec![]);
                Ok(())
            }
            PatchKind::Import { domain, version } => {
                self.model.ensure_import(domain, *version);
                Ok(())
            }
            PatchKind::DropCasts { casts } => {
                self.drop_casts(casts);
                Ok(())
            }
            PatchKind::DropStaleValueInfo { widths } => {
                // Intermediate type annotations of width D are stale after compression: drop
                // them (they are optional hints; graph inputs and outputs keep theirs).
                self.model.graph.retain_value_info(|v| {
                    let dims = v
                        .r#type
                        .as_ref()
                        .and_then(|t| t.tensor_type.as_ref())
                        .and_then(|t| t.shape.as_ref());
                    !dims.is_some_and(|s| {
                        s.dim.iter().any(|d| {
                            d.dim_value
                                .is_some_and(|x| x > 0 && widths.contains(&(x as usize)))
                        })
                    })
                });
                Ok(())
            }
        }
    }

    /// Edit a constant, copy on write. Large initializers are edited while the model is
    /// written, a block of rows at a time (passes/edit.rs); the rest here, in memory.
    fn edit_constant(&mut self, node: NodeId, slot: usize, edits: &[edit::Edit]) -> Result<()> {
        let g = &mut self.model.graph;
        let name = g
            .node(node)
            .input(slot)
            .ok_or_else(|| Error::Internal(format!("edit of node {node} slot {slot}: no input")))?
            .to_string();
        let t = g
            .constant_tensor(&name)
            .ok_or_else(|| Error::Internal(format!("constant {name:?} vanished")))?;
        let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
        // Hostile dims may overflow: then the in-memory path, which reports them.
        let bytes = crate::tensor::element_count(&t.dims)
            .ok()
            .and_then(|n| n.checked_mul(dt::byte_size(t.data_type.unwrap_or(0)).unwrap_or(0)));
        let deferrable = bytes.is_some_and(|b| b >= self.defer_bytes)
            && (t.raw_data.is_some() || crate::io::is_external(t));
        let is_init = g.initializer_pos(&name).is_some();
        let pipeline = (deferrable && is_init && crate::tensor::is_float(t.data_type.unwrap_or(0)))
            .then(|| edit::RowPipeline::new(&dims, edits))
            .flatten();
        let (_, added) = match pipeline {
            Some(pl) => g.write_constant_deferred(node, slot, Arc::new(pl))?,
            None => {
                let mut arr = read_array(t, &self.store, &self.path)?;
                edit::apply_all(&mut arr, edits);
                g.write_constant(node, slot, &arr)?
            }
        };
        if added > 0 {
            self.dead_consts.insert(name);
        }
        self.out.bytes_added += added;
        Ok(())
    }

    /// A new bias for a folded reader without one (β·W; centred, and compressed, when the
    /// reader is also a writer of a stream).
    fn new_bias(
        &mut self,
        node: NodeId,
        shift: &[f64],
        centred: bool,
        compressed: bool,
        gemm: bool,
        norm: Option<&str>,
    ) -> Result<()> {
        let mut v = shift.to_vec();
        if centred {
            let n = v.len();
            math::center(&mut v, &[n], 0);
            if compressed {
                v = math::compress_out(&v, &[n], 0, self.crms.basis()).0;
            }
        }
        let mut b = self.builder();
        b.doc = Some(super::super::emit::doc_bias(norm, &b.g.node(node).label()));
        let dtype = elem_type_of_weight(b.g, node);
        let c = b.constant("bias", &[v.len()], dtype, &v)?;
        if gemm {
            b.g.set_input(node, 2, &c);
        } else {
            let o =
                b.g.node(node)
                    .out(0)
                    .ok_or_else(|| Error::Internal(format!("reader {node} has no output")))?
                    .to_string();
            let mm = b.value("matmul");
            b.g.set_output(node, 0, &mm)?;
            b.node("", "Add", &[&mm, &c], Some(&o), vec![]);
        }
        self.out.bytes_added += v.len() * dt::byte_size(dtype).unwrap_or(4);
        Ok(())
    }

    /// A LayerScale node folded into its writer: the node before it takes its output (looked
    /// up now: a new bias Add may have been put there).
    fn remove_scale(&mut self, node: NodeId, slot: usize) -> Result<()> {
        let g = &mut self.model.graph;
        let n = g.node(node);
        let (Some(i), Some(o)) = (
            n.input(slot).map(str::to_string),
            n.out(0).map(str::to_string),
        ) else {
            return Err(Error::Internal(format!(
                "LayerScale node {node} lost its operands"
            )));
        };
        if let Some(c) = n.input(1 - slot) {
            self.dead_consts.insert(c.to_string());
        }
        self.removed.insert(node);
        let removed = &self.removed;
        let prod = g
            .nodes()
            .iter()
            .enumerate()
            .filter(|(id, _)| !removed.contains(id))
            .find_map(|(id, m)| m.output.iter().position(|x| *x == i).map(|k| (id, k)))
            .ok_or_else(|| Error::Internal(format!("{i:?} has no producer")))?;
        g.set_output(prod.0, prod.1, &o)
    }

    /// A Cast of γ/β that only the replaced norms read goes with them.
    fn drop_casts(&mut self, casts: &BTreeSet<NodeId>) {
        let g = &self.model.graph;
        let mut reads: HashMap<&str, usize> = HashMap::new();
        for (i, n) in g.nodes().iter().enumerate() {
            if !self.removed.contains(&i) {
                for v in &n.input {
                    *reads.entry(v.as_str()).or_default() += 1;
                }
            }
        }
        let outputs: BTreeSet<&str> = g
            .outputs()
            .iter()
            .filter_map(|o| o.name.as_deref())
            .collect();
        let mut gone = Vec::new();
        for &c in casts {
            let n = g.node(c);
            let o = n.out(0).unwrap_or("");
            if reads.get(o).copied().unwrap_or(0) == 0 && !outputs.contains(o) {
                gone.push((c, n.input(0).unwrap_or("").to_string()));
            }
        }
        for (c, src) in gone {
            self.removed.insert(c);
            self.dead_consts.insert(src);
        }
    }

    /// A LayerNorm → RMSNorm, or CRMSNorm on a compressed stream.
    fn replace_norm(&mut self, np: &NormPlan) -> Result<()> {
        let norms = self.norms;
        let mut b = Builder {
            g: &mut self.model.graph,
            opset: self.opset,
            prefix: "normopt".into(),
            doc: None,
        };
        let m = &norms[np.norm];
        let folded_into: Vec<String> = np
            .fold
            .iter()
            .flatten()
            .map(|r| b.g.node(r.node).label())
            .collect();
        b.doc = Some(super::super::emit::doc_norm(
            &b.g.node(m.anchor).label(),
            &m.form.to_string(),
            m.epsilon,
            np.compressed_from,
            &folded_into,
            np.kept_affine.as_ref(),
        ));
        self.removed.extend(m.nodes.iter().copied());
        self.dead_consts.extend(norm_consts(b.g, m));
        let dtype = m
            .gamma
            .as_deref()
            .and_then(|gm| b.g.constant_tensor(gm))
            .and_then(|t| t.data_type)
            .filter(|&t| crate::tensor::is_float(t))
            .or_else(|| super::super::stream::elem_type(b.g, &m.y))
            // New constants are written in this type: a declared non-float type is a lie
            // (the norm computes in floats), not something to write.
            .filter(|&t| crate::tensor::is_float(t))
            .unwrap_or(dt::FLOAT);
        let d = m
            .gamma
            .as_deref()
            .and_then(|gm| super::super::stream::const_dims_through(b.g, &self.ix0, gm))
            .and_then(|s| s.last().copied());
        let r = |v: &str| {
            self.renamed
                .get(v)
                .cloned()
                .unwrap_or_else(|| v.to_string())
        };
        // onnxruntime's fused residual add + RMSNorm (SkipSimplifiedLayerNormalization without
        // a bias) computes the sum itself.
        let fused_skip = np.compressed_from.is_none()
            && self.emit == Emit::Onnxruntime
            && m.form == NormForm::SkipLayerNormalization
            && m.skip.as_ref().is_some_and(|s| s.bias.is_none());
        let x = match &m.skip {
            Some(s) if fused_skip => {
                // No plain Add: its names are taken all the same, so that the names of
                // everything built after it do not depend on the form.
                b.reserve_node("Add", s.sum.as_deref());
                String::new()
            }
            Some(s) => {
                let sum_name = s.sum.clone();
                let with_bias = s.bias.is_some();
                let sum = b.node(
                    "",
                    "Add",
                    &[&r(&s.a), &r(&s.b)],
                    if with_bias { None } else { sum_name.as_deref() },
                    vec![],
                );
                match &s.bias {
                    Some(bias) => b.node("", "Add", &[&sum, bias], sum_name.as_deref(), vec![]),
                    None => sum,
                }
            }
            None => r(&m.x),
        };
        if let Some(full) = np.compressed_from {
            // CRMSNorm on the compressed stream; an unfolded affine sees the decompressed vector.
            let (gamma, beta) = if np.fold.is_some() {
                (None, None)
            } else {
                (m.gamma.clone(), m.beta.clone())
            };
            b.crms(
                self.crms,
                &x,
                full,
                m.epsilon,
                gamma.as_deref(),
                beta.as_deref(),
                dtype,
                m.compute_type,
                &m.y,
            )?;
            let core = match (self.crms, self.opset >= 23) {
                (CrmsEmit::Custom, _) => "CRMSNormalization",
                (CrmsEmit::Onnxruntime, _) => "CRMSNorm as SimplifiedLayerNormalization",
                (CrmsEmit::Standard, true) => "CRMSNorm as RMSNormalization",
                (CrmsEmit::Standard, false) => "CRMSNorm as decomposed RMSNorm",
            };
            self.out.forms_out.insert(
                np.norm,
                if np.fold.is_some() {
                    core.to_string()
                } else {
                    format!("{core} + decompression")
                },
            );
            return Ok(());
        }
        let folded = np.fold.is_some();
        let decomposed = self.emit == Emit::Standard && self.opset < 23;
        let gamma: Option<String> = if folded || m.gamma.is_none() {
            // Fused ops need a scale of the stream's width (γ/β may be scalars: they broadcast);
            // the decomposed chain keeps a Mul so onnxruntime fuses it.
            let d = if decomposed {
                d.or_else(|| {
                    m.beta
                        .as_deref()
                        .and_then(|bt| super::super::stream::const_dims_through(b.g, &self.ix0, bt))
                        .and_then(|s| s.last().copied())
                })
            } else {
                Some(np.width)
            };
            match d {
                Some(d) => Some(b.constant("ones", &[d], dtype, &vec![1.0; d])?),
                None => None,
            }
        } else {
            match m.gamma.as_deref() {
                // A fused op's scale must have the normalised width: widen a broadcast γ.
                Some(gm)
                    if !decomposed
                        && super::super::stream::const_dims_through(b.g, &self.ix0, gm)
                            .and_then(|s| s.iter().try_fold(1usize, |a, &d| a.checked_mul(d)))
                            != Some(np.width) =>
                {
                    let arr = read_through(b.g, &self.ix0, &self.store, &self.path, gm)?;
                    let v = broadcast_vec(&arr.data, np.width)?;
                    Some(b.constant("scale", &[np.width], arr.data_type, &v)?)
                }
                g => g.map(str::to_string),
            }
        };
        let beta = if folded { None } else { m.beta.clone() };
        let form = if let (true, Some(s)) = (fused_skip, &m.skip) {
            // Fused residual add + RMSNorm: SkipSimplifiedLayerNormalization without a bias.
            let sum_out = s.sum.clone().unwrap_or_default();
            let core = if beta.is_some() {
                b.value("rms")
            } else {
                m.y.clone()
            };
            let g = gamma.clone().unwrap_or_default();
            b.node_outputs(
                "com.microsoft",
                "SkipSimplifiedLayerNormalization",
                &[&r(&s.a), &r(&s.b), &g],
                vec![core.clone(), String::new(), String::new(), sum_out],
                vec![super::super::emit::attr_f("epsilon", m.epsilon)],
            );
            if let Some(bt) = &beta {
                b.node("", "Add", &[&core, bt], Some(&m.y), vec![]);
            }
            "com.microsoft:SkipSimplifiedLayerNormalization"
        } else {
            b.rms(
                self.emit,
                &x,
                gamma.as_deref(),
                beta.as_deref(),
                m.epsilon,
                dtype,
                m.compute_type,
                &m.y,
            )?;
            match (self.emit, decomposed) {
                (Emit::Onnxruntime, _) => "SimplifiedLayerNormalization",
                (Emit::Standard, false) => "RMSNormalization",
                (Emit::Standard, true) => "decomposed RMSNorm",
            }
        };
        self.out.forms_out.insert(np.norm, form.into());
        Ok(())
    }
}

fn norm_consts(g: &crate::ir::Graph, m: &NormMatch) -> Vec<String> {
    m.nodes
        .iter()
        .flat_map(|&n| {
            g.node(n)
                .input
                .iter()
                .filter(|i| g.constant_tensor(i).is_some())
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect()
}

fn elem_type_of_weight(g: &crate::ir::Graph, node: NodeId) -> i32 {
    g.node(node)
        .input(1)
        .and_then(|w| g.constant_tensor(w))
        .and_then(|t| t.data_type)
        .filter(|&t| crate::tensor::is_float(t))
        .unwrap_or(dt::FLOAT)
}
