//! The patch driver: the one place that mutates the graph during the pass.
//!
//! [`drive`] applies [`Patch`]es in order, then settles the graph: the nodes the patches
//! replaced are removed (node ids stay valid until then: patches only append nodes), the order
//! is restored and the constants nobody reads any more are dropped. With
//! [`DriveOptions::check_each_patch`], the graph is checked after each patch as it would be if
//! the rewrite stopped there (a settled copy must pass [`crate::ir::Graph::check`]); with
//! [`DriveOptions::stop_after`], only the first patches are applied (to bisect a broken
//! rewrite; the result is a valid graph but in general not an equivalent one).

use super::super::api::{Options, PatchLog};
use super::super::edit;
use super::super::emit::{Builder, NormBuild};
use super::super::math::{self, Basis};
use super::patch::{Patch, PatchKind, Removed};
use crate::io::ExternalStore;
use crate::ir::subgraph::rename_reads;
use crate::ir::{read_array, Model, NodeExt, NodeId};
use crate::proto::data_type as dt;
use crate::proto::TensorProto;
use crate::{Error, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

/// What applying the patches added.
#[derive(Debug, Default)]
pub struct Applied {
    /// Bytes of new initializers (copies of shared constants, new biases).
    pub bytes_added: usize,
    /// Explicit centering nodes added.
    pub centering_nodes: usize,
    /// How many patches were applied.
    pub patches: usize,
}

/// How the driver runs.
#[derive(Clone, Copy)]
pub struct DriveOptions<'a> {
    /// Constants of at least this many bytes are edited while the model is written.
    pub defer_bytes: usize,
    /// Check the graph after each patch.
    pub check_each_patch: bool,
    /// Apply only this many patches.
    pub stop_after: Option<usize>,
    /// Told each patch's description before it is applied.
    pub log: Option<&'a PatchLog>,
}

impl DriveOptions<'_> {
    /// How the driver runs for a pass with `opts` that has applied `done` patches already (the
    /// budget of `--stop-after` is shared by the main graph, its bodies and their
    /// reconciliation).
    pub fn of(opts: &Options, done: usize) -> DriveOptions<'_> {
        DriveOptions {
            defer_bytes: opts.defer_bytes,
            check_each_patch: opts.check_each_patch,
            stop_after: opts.stop_after.map(|n| n.saturating_sub(done)),
            log: opts.patch_log.as_ref(),
        }
    }
}

/// Apply `patches` in order to `model` (whose graph they were lowered on), then settle the
/// graph and check it.
pub fn drive(model: &mut Model, patches: &[Patch], o: &DriveOptions) -> Result<Applied> {
    let mut d = Driver {
        opset: model.onnx_opset(),
        path: model.path.clone(),
        store: model.store.clone(),
        model,
        defer_bytes: o.defer_bytes,
        removed: BTreeSet::new(),
        dead_consts: BTreeSet::new(),
        renamed: HashMap::new(),
        copies: BTreeMap::new(),
        out: Applied::default(),
    };
    let n = o.stop_after.map_or(patches.len(), |k| k.min(patches.len()));
    for (i, p) in patches[..n].iter().enumerate() {
        if let Some(log) = o.log {
            (log.0)(&p.to_string());
        }
        if let Some(why) = super::effect::idle(&d.model.graph, p) {
            return Err(Error::Internal(format!(
                "patch #{} ({p}) changes nothing any reader sees: {why}",
                i + 1
            )));
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
    defer_bytes: usize,
    opset: i64,
    path: PathBuf,
    store: Arc<ExternalStore>,
    /// Nodes replaced, removed when the graph settles.
    removed: BTreeSet<NodeId>,
    /// Constants that may have lost their last reader.
    dead_consts: BTreeSet<String>,
    /// Explicitly centred values → their centred copies (norms read the copies).
    renamed: HashMap<String, String>,
    /// Subgraphs: (body number, outer constant) → the copy that body reads.
    copies: BTreeMap<(usize, String), String>,
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
                let mut b = self.builder();
                b.doc = Some(super::super::emit::doc_center(value));
                let c = match compress_from {
                    Some(cv) => b.compress_value(value, cv)?,
                    None => b.center(value)?,
                };
                for &(node, slot) in edges {
                    b.g.set_input(node, slot, &c);
                }
                self.renamed.insert(value.clone(), c);
                self.out.centering_nodes += 1;
                Ok(())
            }
            PatchKind::PrecomputeTable {
                removed,
                gather,
                out,
            } => {
                self.remove(removed);
                self.model.graph.set_output(*gather, 0, out)
            }
            PatchKind::ReplaceNorm {
                removed,
                build,
                doc,
                ..
            } => self.replace_norm(removed, build, doc),
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
            PatchKind::FixSizes { node, slot, delta } => {
                let (node, slot) = (*node, *slot);
                let x = self
                    .model
                    .graph
                    .node(node)
                    .input(slot)
                    .map(str::to_string)
                    .ok_or_else(|| Error::Internal(format!("node {node} has no input {slot}")))?;
                let int_type = self.model.graph.declared_type(&x).map(|(t, _)| t);
                let data_type = match int_type {
                    Some(dt::INT32) => dt::INT32,
                    _ => dt::INT64,
                };
                let mut b = self.builder();
                b.doc = Some(super::super::emit::doc_shape_fix(&b.g.node(node).label()));
                let vals: Vec<f64> = delta.iter().map(|&d| d as f64).collect();
                let c = b.constant("size_fix", &[delta.len()], data_type, &vals)?;
                let y = b.node("", "Add", &[&x, &c], None, vec![]);
                b.g.set_input(node, slot, &y);
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
            PatchKind::OuterConstant {
                name,
                tensor,
                pending,
                copy,
                bodies,
            } => {
                let g = &mut self.model.graph;
                let target = if *copy {
                    let fresh = g.fresh_name(&format!("{name}_normopt"));
                    self.out.bytes_added += tensor_bytes(tensor);
                    for &i in bodies {
                        self.copies.insert((i, name.clone()), fresh.clone());
                    }
                    fresh
                } else {
                    name.clone()
                };
                let t = TensorProto {
                    name: Some(target),
                    ..(**tensor).clone()
                };
                g.put_initializer(t, pending.as_deref().cloned())
            }
            PatchKind::PutBody {
                body,
                index,
                graph,
                hoisted,
                imports,
            } => {
                let g = &mut self.model.graph;
                for (t, p) in hoisted {
                    g.put_initializer(t.clone(), p.clone())?;
                }
                let mut gp = (**graph).clone();
                let copies = self.copies.range((*index, String::new())..);
                for ((_, from), to) in copies.take_while(|((i, _), _)| i == index) {
                    rename_reads(&mut gp, from, to);
                }
                g.set_body(body, gp)?;
                for (domain, version) in imports {
                    self.model.ensure_import(domain, *version);
                }
                Ok(())
            }
            PatchKind::DropUnusedInitializers { candidates } => {
                self.model.graph.drop_unused_initializers(candidates);
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

    /// A new bias for a folded reader without one (β·W; centred, and compressed into the
    /// stream's basis, when the reader is also a writer of a stream).
    fn new_bias(
        &mut self,
        node: NodeId,
        shift: &[f64],
        centred: bool,
        compressed: Option<Basis>,
        gemm: bool,
        norm: Option<&str>,
    ) -> Result<()> {
        let mut v = shift.to_vec();
        if centred {
            let n = v.len();
            math::center(&mut v, &[n], 0);
            if let Some(basis) = compressed {
                v = math::compress_out(&v, &[n], 0, basis).0;
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

    /// The Casts of γ/β that only the replaced norms read go with them.
    fn drop_casts(&mut self, casts: &BTreeSet<NodeId>) {
        for &c in casts {
            self.removed.insert(c);
            let src = self.model.graph.node(c).input(0).unwrap_or("").to_string();
            self.dead_consts.insert(src);
        }
    }

    /// A norm replaced as lowering decided: its nodes go, the builder of its form adds the
    /// new ones (reading the explicitly centred copies of centred values).
    fn replace_norm(&mut self, removed: &Removed, build: &NormBuild, doc: &str) -> Result<()> {
        self.remove(removed);
        let renamed = &self.renamed;
        let input = build
            .input
            .renamed(|v| renamed.get(v).cloned().unwrap_or_else(|| v.to_string()));
        let mut b = self.builder();
        b.doc = Some(doc.to_string());
        b.norm(&NormBuild {
            input,
            ..build.clone()
        })
    }

    /// Nodes to remove when the graph settles, and constants that may lose their last reader.
    fn remove(&mut self, r: &Removed) {
        self.removed.extend(r.nodes.iter().copied());
        self.dead_consts.extend(r.consts.iter().cloned());
    }
}

/// The element type of new constants for a linear reader: its weight's, when a float type.
pub(super) fn elem_type_of_weight(g: &crate::ir::Graph, node: NodeId) -> i32 {
    g.node(node)
        .input(1)
        .and_then(|w| g.constant_tensor(w))
        .and_then(|t| t.data_type)
        .filter(|&t| crate::tensor::is_float(t))
        .unwrap_or(dt::FLOAT)
}

/// Byte size of a tensor's values (dims × element size).
fn tensor_bytes(t: &TensorProto) -> usize {
    crate::tensor::element_count(&t.dims).unwrap_or(0)
        * dt::byte_size(t.data_type.unwrap_or(0)).unwrap_or(0)
}
