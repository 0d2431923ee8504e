//! Our own graph IR. Protobuf stays at the edges: [`Model::from_file`] takes a decoded file
//! apart into a [`Graph`], [`Model::to_proto`] puts it back together.
//!
//! Invariants:
//! - `Graph::nodes` is in topological order (checked at load: undefined values, duplicate
//!   producers and cycles are errors; restored by [`Graph::toposort`] after edits);
//! - everything the pass does not understand is kept verbatim: node fields (doc strings,
//!   metadata, overloads, device configurations), subgraph attributes (If/Loop/Scan bodies),
//!   functions, training info, quantisation annotations, sparse initializers, metadata;
//! - an unmodified model converts back to the exact protobuf it came from (byte-identical file);
//! - all edits go through the small mutation API (ir/edit.rs) ([`Graph::add_node`],
//!   [`Graph::set_input`], [`Graph::remove_nodes`], [`Graph::write_constant`]) which keeps
//!   copy-on-write for shared initializers.

pub mod dump;
mod edit;
mod graph;
mod index;
mod node;
pub mod shape;
pub mod subgraph;
#[cfg(test)]
#[path = "graph_tests.rs"]
mod tests;
pub mod text;
#[cfg(test)]
#[path = "tests/mod.rs"]
mod unit;

pub use graph::{Deferred, Graph, Pending};
pub use index::{cast_of_const, const_dims_through, is_float_cast, GraphIndex};
pub use node::NodeExt;

use crate::error::{Error, Result};
use crate::io::{ExternalStore, ModelFile};
use crate::proto::{ModelProto, TensorProto};
use crate::tensor::{self, Array};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Index of a node in [`Graph::nodes`] (valid until the next structural edit).
pub type NodeId = usize;

/// A model: the graph plus everything around it, kept verbatim.
#[derive(Debug, Clone)]
pub struct Model {
    /// The model protobuf without its graph (`graph` is `None` while the IR owns it).
    pub header: ModelProto,
    /// The main graph.
    pub graph: Graph,
    /// Resolves the input's external tensor data.
    pub store: Arc<ExternalStore>,
    /// Where the model came from.
    pub path: PathBuf,
    /// Whether the input used external data (the output then does too).
    pub had_external_data: bool,
    /// The file's nodes were not in topological order: they were sorted on load (stably), and
    /// the output is written in that order.
    pub reordered: bool,
}

impl Model {
    /// Build the IR from a decoded file. Checks the graph's structure (see [`Graph::check`]).
    pub fn from_file(file: ModelFile) -> Result<Model> {
        let ModelFile {
            mut proto,
            path,
            store,
            had_external_data,
            ..
        } = file;
        let g = proto.graph.take().ok_or_else(|| Error::NotOnnx {
            path: path.clone(),
            reason: "no graph".into(),
        })?;
        let mut graph = Graph::from_proto(g);
        // Nodes out of topological order (onnxruntime's fp16 converter appends its input Casts
        // at the end; onnxruntime runs such files) are put in order, stably; a graph that is
        // still invalid after that is refused with the reason of the original order.
        let mut reordered = false;
        if let Err(reason) = graph.check() {
            let mut sorted = graph.clone();
            if sorted.toposort().is_ok() && sorted.check().is_ok() {
                graph = sorted;
                reordered = true;
            } else {
                return Err(Error::invalid(&path, reason));
            }
        }
        Ok(Model {
            header: proto,
            graph,
            store,
            path,
            had_external_data,
            reordered,
        })
    }

    /// Load a model file into the IR.
    pub fn load(path: &Path) -> Result<Model> {
        Model::from_file(crate::io::load(path)?)
    }

    /// The model protobuf with the graph put back, pending values computed (in memory; writing
    /// a model with [`crate::save`] streams them instead).
    pub fn to_proto(&self) -> Result<ModelProto> {
        let mut m = self.header.clone();
        let mut g = self.graph.to_proto();
        for t in &mut g.initializer {
            if let Some(b) = self.computed_payload(t)? {
                t.raw_data = Some(b);
            }
        }
        m.graph = Some(g);
        Ok(m)
    }

    /// The model protobuf with pending initializers left without payload (see
    /// [`Model::write_pending`]).
    pub fn to_proto_pending(&self) -> ModelProto {
        let mut m = self.header.clone();
        m.graph = Some(self.graph.to_proto());
        m
    }

    /// The pending computation of `t`, if `t` is a top-level initializer written later.
    pub fn pending_of(&self, t: &TensorProto) -> Option<&Pending> {
        let p = self.graph.pending.get(t.name.as_deref()?)?;
        let empty = t.raw_data.is_none() && t.external_data.is_empty();
        empty.then_some(p)
    }

    /// The payload of a pending tensor, computed into memory (`None` for other tensors).
    pub fn computed_payload(&self, t: &TensorProto) -> Result<Option<bytes::Bytes>> {
        if self.pending_of(t).is_none() {
            return Ok(None);
        }
        let mut out = Vec::new();
        self.write_pending(t, &mut |b| {
            out.extend_from_slice(b);
            Ok(())
        })?;
        Ok(Some(bytes::Bytes::from(out)))
    }

    /// Compute a pending tensor's payload block by block into `sink` (encoded in the tensor's
    /// type). Returns false when `t` is not pending.
    pub fn write_pending(
        &self,
        t: &TensorProto,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<bool> {
        let Some(p) = self.pending_of(t) else {
            return Ok(false);
        };
        let src = &p.source;
        let name = src.name.as_deref().unwrap_or("");
        let data_type = src.data_type.unwrap_or(0);
        let bad = |e: String| Error::invalid(&self.path, format!("tensor {name:?}: {e}"));
        let raw = if crate::io::is_external(src) {
            let r = self.store.check(src)?;
            self.store.bytes(&r)?
        } else {
            src.raw_data.clone().ok_or_else(|| {
                Error::Internal(format!("pending tensor {name:?} has no raw data"))
            })?
        };
        let size = crate::proto::data_type::byte_size(data_type)
            .ok_or_else(|| bad(format!("cannot read type {}", data_type)))?;
        let count = tensor::element_count(&src.dims).map_err(bad)?;
        if raw.len() != count * size {
            return Err(bad(format!(
                "raw data has {} bytes, dims need {}",
                raw.len(),
                count * size
            )));
        }
        let row_bytes = size
            * src
                .dims
                .get(1..)
                .unwrap_or(&[])
                .iter()
                .map(|&d| d as usize)
                .product::<usize>()
                .max(1);
        let out_type = t.data_type.unwrap_or(data_type);
        p.transform.run(
            &|a, b| {
                let chunk = raw.get(a * row_bytes..b * row_bytes).ok_or_else(|| {
                    Error::Internal(format!(
                        "pending tensor {name:?}: rows {a}..{b} out of range"
                    ))
                })?;
                let v = tensor::decode_raw(chunk, data_type, chunk.len() / size).map_err(bad);
                self.store.release(chunk);
                v
            },
            &|vals| {
                tensor::encode_f64(vals, out_type)
                    .map(Vec::from)
                    .map_err(Error::Internal)
            },
            sink,
        )?;
        Ok(true)
    }

    /// The opset version imported for the default ONNX domain.
    pub fn onnx_opset(&self) -> i64 {
        self.header
            .opset_import
            .iter()
            .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
            .and_then(|o| o.version)
            .unwrap_or(1)
    }

    /// Whether a domain is imported.
    pub fn imports(&self, domain: &str) -> bool {
        self.header
            .opset_import
            .iter()
            .any(|o| o.domain.as_deref() == Some(domain))
    }

    /// Import `domain` at `version` if it is not imported yet.
    pub fn ensure_import(&mut self, domain: &str, version: i64) {
        if !self.imports(domain) {
            self.header
                .opset_import
                .push(crate::proto::OperatorSetIdProto {
                    domain: Some(domain.into()),
                    version: Some(version),
                });
        }
    }

    /// Read a constant value (initializer or Constant node output) as f64.
    pub fn constant(&self, name: &str) -> Option<Result<Array>> {
        self.graph
            .constant_tensor(name)
            .map(|t| read_array(t, &self.store, &self.path))
    }
}

impl crate::io::Computed for Model {
    fn is_computed(&self, t: &TensorProto) -> bool {
        self.pending_of(t).is_some()
    }
    fn computed_len(&self, t: &TensorProto) -> usize {
        let n: usize = t.dims.iter().map(|&d| d.max(0) as usize).product();
        n * crate::proto::data_type::byte_size(t.data_type.unwrap_or(0)).unwrap_or(0)
    }
    fn write_computed(
        &self,
        t: &TensorProto,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        self.write_pending(t, sink).map(|_| ())
    }
}

/// Read a tensor (inline or external) as an f64 [`Array`].
pub fn read_array(t: &TensorProto, store: &ExternalStore, path: &Path) -> Result<Array> {
    let name = t.name.as_deref().unwrap_or("");
    let data_type = t.data_type.unwrap_or(0);
    let count = tensor::element_count(&t.dims)
        .map_err(|e| Error::invalid(path, format!("tensor {name:?}: {e}")))?;
    // The mapped pages are released once decoded: planning reads many weights once each, and
    // they should not stay in the resident set.
    let data = if crate::io::is_external(t) {
        let r = store.check(t)?;
        let b = store.bytes(&r)?;
        let v = tensor::decode_raw(&b, data_type, count);
        store.release(&b);
        v
    } else if let Some(raw) = &t.raw_data {
        let v = tensor::decode_raw(raw, data_type, count);
        store.release(raw);
        v
    } else {
        tensor::decode_typed(t, count)
    }
    .map_err(|e| Error::invalid(path, format!("tensor {name:?}: {e}")))?;
    Ok(Array {
        dims: t.dims.iter().map(|&d| d as usize).collect(),
        data_type,
        data,
    })
}
