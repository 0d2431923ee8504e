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
//! - all edits go through the small mutation API here ([`Graph::add_node`],
//!   [`Graph::set_input`], [`Graph::remove_nodes`], [`Graph::write_constant`]) which keeps
//!   copy-on-write for shared initializers.

pub mod dump;
pub mod shape;
pub mod subgraph;

use crate::error::{Error, Result};
use crate::io::{ExternalStore, ModelFile};
use crate::proto::{
    attribute_type as at, GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto,
};
use crate::tensor::{self, Array};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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

/// The main graph: nodes in topological order, initializers, inputs and outputs.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// Nodes, topologically ordered.
    nodes: Vec<NodeProto>,
    /// Initializers, in file order.
    initializers: Vec<TensorProto>,
    /// Graph inputs.
    inputs: Vec<ValueInfoProto>,
    /// Graph outputs.
    outputs: Vec<ValueInfoProto>,
    /// Type annotations of intermediate values.
    value_info: Vec<ValueInfoProto>,
    /// The rest of the GraphProto (name, doc, annotations, sparse initializers, metadata).
    rest: GraphProto,
    /// Names handed out by [`Graph::fresh_name`].
    taken: HashSet<String>,
    /// Initializers whose values are computed when the model is written (by name). Their
    /// `TensorProto` in [`Graph::initializers`] carries the new dims and type but no payload.
    pending: HashMap<String, Pending>,
    /// Lookup index of [`Graph::constant_tensor`] (built on first use, kept by the mutation API).
    consts: ConstCache,
}

/// New values of a constant, computed from its old values while the model is written, a block
/// of rows (axis 0) at a time, so memory does not grow with the tensor.
pub trait Deferred: Send + Sync + std::fmt::Debug {
    /// Dims of the result.
    fn dims(&self) -> Vec<usize>;
    /// Produce the result in row-major order, block by block: `rows(a, b)` reads rows `a..b`
    /// (axis 0) of the source as f64, `encode` turns a block of results into bytes (both may
    /// run on several threads), `sink` takes the encoded blocks in order.
    fn run(
        &self,
        rows: &(dyn Fn(usize, usize) -> Result<Vec<f64>> + Sync),
        encode: &(dyn Fn(&[f64]) -> Result<Vec<u8>> + Sync),
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()>;
}

/// An initializer whose values are a [`Deferred`] function of a source tensor.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The tensor the values are computed from (its payload is inline or in the input's
    /// external data).
    pub source: TensorProto,
    /// The computation.
    pub transform: Arc<dyn Deferred>,
}

/// Where constants live, by name: what [`Graph::constant_tensor`] looks up (a scan of the
/// graph per lookup made the pass quadratic on big graphs). The graph's fields are private and
/// every edit goes through its mutation API, which keeps the index exact (or drops it).
#[derive(Debug, Default)]
struct ConstIndex {
    /// Graph input names.
    inputs: HashSet<String>,
    /// Initializer name → first position in `Graph::initializers`.
    initializers: HashMap<String, usize>,
    /// First output of a Constant or Identity node → first such node.
    nodes: HashMap<String, NodeId>,
}

impl ConstIndex {
    fn build(g: &Graph) -> ConstIndex {
        let mut ix = ConstIndex {
            inputs: g.inputs.iter().filter_map(|v| v.name.clone()).collect(),
            ..Default::default()
        };
        for (i, t) in g.initializers.iter().enumerate() {
            if let Some(n) = &t.name {
                ix.initializers.entry(n.clone()).or_insert(i);
            }
        }
        for (i, n) in g.nodes.iter().enumerate() {
            ix.note_node(n, i);
        }
        ix
    }

    fn note_node(&mut self, n: &NodeProto, id: NodeId) {
        if n.is("Constant") || n.is("Identity") {
            if let Some(o) = n.output.first() {
                self.nodes.entry(o.clone()).or_insert(id);
            }
        }
    }
}

/// The cached [`ConstIndex`]. Clones start empty; `Debug` shows nothing (it is derived data).
#[derive(Default)]
struct ConstCache(std::sync::RwLock<Option<Arc<ConstIndex>>>);

impl Clone for ConstCache {
    fn clone(&self) -> Self {
        ConstCache::default()
    }
}

impl std::fmt::Debug for ConstCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConstCache")
    }
}

impl ConstCache {
    /// The index for `mut` edits, when built (`None`: nothing to keep up to date).
    fn get_mut(&mut self) -> Option<&mut ConstIndex> {
        let slot = self.0.get_mut().unwrap_or_else(|e| e.into_inner());
        if slot.as_mut().is_some_and(|a| Arc::get_mut(a).is_none()) {
            *slot = None; // still shared by a lookup: rebuild on next use
        }
        slot.as_mut().and_then(Arc::get_mut)
    }

    fn clear(&mut self) {
        *self.0.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Where a value comes from and who reads it.
#[derive(Debug, Default, Clone)]
pub struct GraphIndex {
    /// value → (node, output slot).
    pub producer: HashMap<String, (NodeId, usize)>,
    /// value → [(node, input slot)], in node order.
    pub consumers: HashMap<String, Vec<(NodeId, usize)>>,
    /// initializer name → index in `Graph::initializers`.
    pub initializer: HashMap<String, usize>,
    /// Graph output names.
    pub graph_outputs: HashSet<String>,
    /// Graph input names.
    pub graph_inputs: HashSet<String>,
    /// Outer values read by name inside subgraphs (If/Loop/Scan bodies), with the reading node.
    pub subgraph_reads: HashMap<String, NodeId>,
}

impl GraphIndex {
    /// The consumers of a value (empty when none).
    pub fn consumers(&self, v: &str) -> &[(NodeId, usize)] {
        self.consumers.get(v).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The node producing a value, if a node does.
    pub fn producer(&self, v: &str) -> Option<NodeId> {
        self.producer.get(v).map(|p| p.0)
    }

    /// Number of places reading `v`: node inputs, graph outputs, subgraph reads.
    pub fn use_count(&self, v: &str) -> usize {
        self.consumers(v).len()
            + usize::from(self.graph_outputs.contains(v))
            + usize::from(self.subgraph_reads.contains_key(v))
    }
}

/// Convenience accessors on nodes.
pub trait NodeExt {
    /// The op type ("" when absent).
    fn op(&self) -> &str;
    /// The domain ("" for the default ONNX domain; "ai.onnx" is folded to "").
    fn domain(&self) -> &str;
    /// The node name ("" when absent).
    fn name(&self) -> &str;
    /// A readable label: the name, or op and first output when unnamed.
    fn label(&self) -> String;
    /// Whether this is `op` in the default domain.
    fn is(&self, op: &str) -> bool;
    /// Input `i`, if present and non-empty.
    fn input(&self, i: usize) -> Option<&str>;
    /// Output `i`, if present and non-empty.
    fn out(&self, i: usize) -> Option<&str>;
    /// An int attribute.
    fn attr_i(&self, name: &str) -> Option<i64>;
    /// A float attribute.
    fn attr_f(&self, name: &str) -> Option<f32>;
    /// An ints attribute.
    fn attr_ints(&self, name: &str) -> Option<&[i64]>;
    /// Whether any attribute holds a subgraph.
    fn has_subgraph(&self) -> bool;
}

impl NodeExt for NodeProto {
    fn op(&self) -> &str {
        self.op_type.as_deref().unwrap_or("")
    }
    fn domain(&self) -> &str {
        match self.domain.as_deref() {
            None | Some("ai.onnx") => "",
            Some(d) => d,
        }
    }
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
    fn label(&self) -> String {
        if self.name().is_empty() {
            format!(
                "{}->{}",
                self.op(),
                self.output.first().map(String::as_str).unwrap_or("?")
            )
        } else {
            self.name().to_string()
        }
    }
    fn is(&self, op: &str) -> bool {
        self.op() == op && self.domain().is_empty()
    }
    fn input(&self, i: usize) -> Option<&str> {
        self.input
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
    fn out(&self, i: usize) -> Option<&str> {
        self.output
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
    fn attr_i(&self, name: &str) -> Option<i64> {
        self.attribute
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
            .and_then(|a| a.i)
    }
    fn attr_f(&self, name: &str) -> Option<f32> {
        self.attribute
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
            .and_then(|a| a.f)
    }
    fn attr_ints(&self, name: &str) -> Option<&[i64]> {
        self.attribute
            .iter()
            .find(|a| {
                a.name.as_deref() == Some(name)
                    && (a.r#type == Some(at::INTS) || !a.ints.is_empty())
            })
            .map(|a| a.ints.as_slice())
    }
    fn has_subgraph(&self) -> bool {
        self.attribute
            .iter()
            .any(|a| a.g.is_some() || !a.graphs.is_empty())
    }
}

/// Ops the pass reasons about whose first output the ONNX schema requires: a node of one of
/// these with no (or an empty) first output is an invalid model, refused at load.
const FIRST_OUTPUT_REQUIRED: &[&str] = &[
    "Add",
    "Cast",
    "Concat",
    "Constant",
    "Conv",
    "Div",
    "Dropout",
    "Expand",
    "Flatten",
    "Gather",
    "Gemm",
    "Identity",
    "LayerNormalization",
    "MatMul",
    "Mul",
    "Pow",
    "RMSNormalization",
    "Reciprocal",
    "ReduceMean",
    "Reshape",
    "Shape",
    "SimplifiedLayerNormalization",
    "Size",
    "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization",
    "Slice",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Transpose",
    "Unsqueeze",
];

/// Collect names read inside a subgraph that it does not define itself (outer-scope reads).
fn outer_reads(g: &GraphProto, out: &mut BTreeSet<String>) {
    let mut defined: HashSet<&str> = HashSet::new();
    g.input
        .iter()
        .filter_map(|v| v.name.as_deref())
        .for_each(|n| {
            defined.insert(n);
        });
    g.initializer
        .iter()
        .filter_map(|t| t.name.as_deref())
        .for_each(|n| {
            defined.insert(n);
        });
    for n in &g.node {
        n.output.iter().for_each(|o| {
            defined.insert(o);
        });
    }
    for n in &g.node {
        for i in &n.input {
            if !i.is_empty() && !defined.contains(i.as_str()) {
                out.insert(i.clone());
            }
        }
        for a in &n.attribute {
            for sg in a.g.iter().chain(a.graphs.iter()) {
                let mut inner = BTreeSet::new();
                outer_reads(sg, &mut inner);
                out.extend(inner.into_iter().filter(|i| !defined.contains(i.as_str())));
            }
        }
    }
    for o in &g.output {
        if let Some(n) = o.name.as_deref() {
            if !defined.contains(n) {
                out.insert(n.to_string());
            }
        }
    }
}

impl Graph {
    /// Take a GraphProto apart.
    pub fn from_proto(mut g: GraphProto) -> Graph {
        let nodes = std::mem::take(&mut g.node);
        let initializers = std::mem::take(&mut g.initializer);
        let inputs = std::mem::take(&mut g.input);
        let outputs = std::mem::take(&mut g.output);
        let value_info = std::mem::take(&mut g.value_info);
        Graph {
            nodes,
            initializers,
            inputs,
            outputs,
            value_info,
            rest: g,
            taken: HashSet::new(),
            pending: HashMap::new(),
            consts: ConstCache::default(),
        }
    }

    /// Put the GraphProto back together (field order as the format's).
    pub fn to_proto(&self) -> GraphProto {
        let mut g = self.rest.clone();
        g.node = self.nodes.clone();
        g.initializer = self.initializers.clone();
        g.input = self.inputs.clone();
        g.output = self.outputs.clone();
        g.value_info = self.value_info.clone();
        g
    }

    /// The graph's name.
    pub fn name(&self) -> &str {
        self.rest.name.as_deref().unwrap_or("")
    }

    /// The nodes, in topological order.
    pub fn nodes(&self) -> &[NodeProto] {
        &self.nodes
    }

    /// Node `id` (panics when out of range, like indexing: ids come from this graph).
    pub fn node(&self, id: NodeId) -> &NodeProto {
        &self.nodes[id]
    }

    /// The initializers, in file order.
    pub fn initializers(&self) -> &[TensorProto] {
        &self.initializers
    }

    /// The graph inputs.
    pub fn inputs(&self) -> &[ValueInfoProto] {
        &self.inputs
    }

    /// The graph outputs.
    pub fn outputs(&self) -> &[ValueInfoProto] {
        &self.outputs
    }

    /// The type annotations of intermediate values.
    pub fn value_info(&self) -> &[ValueInfoProto] {
        &self.value_info
    }

    /// The write-time computation of initializer `name`, if it has one.
    pub fn pending(&self, name: &str) -> Option<&Pending> {
        self.pending.get(name)
    }

    /// Declare one more graph input.
    pub fn push_input(&mut self, v: ValueInfoProto) {
        self.consts.clear();
        self.inputs.push(v);
    }

    /// Keep only the graph inputs `keep` accepts.
    pub fn retain_inputs(&mut self, keep: impl FnMut(&ValueInfoProto) -> bool) {
        self.consts.clear();
        self.inputs.retain(keep);
    }

    /// Keep only the value annotations `keep` accepts (they are optional hints).
    pub fn retain_value_info(&mut self, keep: impl FnMut(&ValueInfoProto) -> bool) {
        self.value_info.retain(keep);
    }

    /// Build the producer/consumer index.
    pub fn index(&self) -> GraphIndex {
        let mut ix = GraphIndex::default();
        for (i, t) in self.initializers.iter().enumerate() {
            if let Some(n) = &t.name {
                ix.initializer.insert(n.clone(), i);
            }
        }
        for (id, n) in self.nodes.iter().enumerate() {
            for (slot, o) in n.output.iter().enumerate() {
                if !o.is_empty() {
                    ix.producer.insert(o.clone(), (id, slot));
                }
            }
            for (slot, i) in n.input.iter().enumerate() {
                if !i.is_empty() {
                    ix.consumers.entry(i.clone()).or_default().push((id, slot));
                }
            }
            for a in &n.attribute {
                for sg in a.g.iter().chain(a.graphs.iter()) {
                    let mut reads = BTreeSet::new();
                    outer_reads(sg, &mut reads);
                    for r in reads {
                        ix.subgraph_reads.entry(r).or_insert(id);
                    }
                }
            }
        }
        ix.graph_outputs = self.outputs.iter().filter_map(|v| v.name.clone()).collect();
        ix.graph_inputs = self.inputs.iter().filter_map(|v| v.name.clone()).collect();
        ix
    }

    /// Check the structure: every node input is defined (graph input, initializer, or an
    /// earlier node's output), no value has two producers, outputs exist. Returns the reason.
    pub fn check(&self) -> std::result::Result<(), String> {
        let mut defined: HashSet<&str> = HashSet::new();
        for v in &self.inputs {
            let n = v.name.as_deref().unwrap_or("");
            if !defined.insert(n) {
                return Err(format!("graph input {n:?} is declared twice"));
            }
        }
        let mut inits: HashSet<&str> = HashSet::new();
        for t in &self.initializers {
            let n = t.name.as_deref().unwrap_or("");
            if !inits.insert(n) {
                return Err(format!("value {n:?} is defined twice (two initializers)"));
            }
            defined.insert(n);
        }
        let mut produced: HashSet<&str> = HashSet::new();
        let all_outputs: HashMap<&str, usize> = self
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
            .collect();
        for (i, n) in self.nodes.iter().enumerate() {
            if matches!(n.domain(), "" | "com.microsoft")
                && FIRST_OUTPUT_REQUIRED.contains(&n.op())
                && n.out(0).is_none()
            {
                return Err(format!(
                    "node {:?} ({}) has no output: the op requires one",
                    n.label(),
                    n.op().escape_debug()
                ));
            }
            // Values read from the outer scope inside subgraphs count as reads of this node.
            let mut outer = BTreeSet::new();
            for a in &n.attribute {
                for sg in a.g.iter().chain(a.graphs.iter()) {
                    outer_reads(sg, &mut outer);
                }
            }
            for inp in n.input.iter().filter(|s| !s.is_empty()).chain(outer.iter()) {
                if !defined.contains(inp.as_str()) && !produced.contains(inp.as_str()) {
                    return Err(match all_outputs.get(inp.as_str()) {
                        Some(&j) if j >= i => format!(
                            "node {:?} ({}) reads {inp:?} before it is produced by node {:?}: the graph is not in topological order or has a cycle",
                            n.label(), n.op().escape_debug(), self.nodes[j].label()
                        ),
                        // escape_debug: names come from the file; a newline would split the
                        // one-line error.
                        _ => format!("node {:?} ({}) reads undefined value {inp:?}", n.label(), n.op().escape_debug()),
                    });
                }
            }
            for o in n.output.iter().filter(|s| !s.is_empty()) {
                if !produced.insert(o.as_str()) || defined.contains(o.as_str()) {
                    return Err(format!(
                        "value {o:?} is defined twice (again by node {:?})",
                        n.label()
                    ));
                }
            }
        }
        for o in &self.outputs {
            let n = o.name.as_deref().unwrap_or("");
            if !defined.contains(n) && !produced.contains(n) {
                return Err(format!("graph output {n:?} is never produced"));
            }
        }
        Ok(())
    }

    /// The constant index, built when missing.
    fn const_index(&self) -> Arc<ConstIndex> {
        if let Some(ix) = self
            .consts
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            return ix.clone();
        }
        let ix = Arc::new(ConstIndex::build(self));
        *self.consts.0.write().unwrap_or_else(|e| e.into_inner()) = Some(ix.clone());
        ix
    }

    /// Position of the initializer named `name` (the first one), through the index.
    pub fn initializer_pos(&self, name: &str) -> Option<usize> {
        self.const_index().initializers.get(name).copied()
    }

    /// The tensor behind a constant value: an initializer (that is not also a graph input) or
    /// the `value` of a Constant node.
    pub fn constant_tensor(&self, name: &str) -> Option<&TensorProto> {
        // At most this many Identity hops: a hostile chain of thousands of Identity nodes made
        // every lookup (so the pass) cubic when each hop scanned the graph.
        const MAX_IDENTITY_HOPS: usize = 8;
        let ix = self.const_index();
        let mut name = name;
        for _ in 0..=MAX_IDENTITY_HOPS {
            // An empty name is an absent optional input, never a value (even if a hostile file
            // names an initializer "").
            if name.is_empty() {
                return None;
            }
            if ix.inputs.contains(name) {
                return None; // an initializer that is also an input can be overridden at run time
            }
            if let Some(i) = self.initializer_pos(name) {
                return self.initializers.get(i);
            }
            let n = ix.nodes.get(name).and_then(|&i| self.nodes.get(i))?;
            if n.is("Identity") {
                // Exporters deduplicate tensors as Identity(initializer).
                let src = n.input(0)?;
                if src == name {
                    return None;
                }
                name = src;
                continue;
            }
            return n
                .attribute
                .iter()
                .find(|a| a.name.as_deref() == Some("value"))
                .and_then(|a| a.t.as_ref());
        }
        None
    }

    /// The dims of a constant, without reading its data.
    pub fn constant_dims(&self, name: &str) -> Option<Vec<usize>> {
        self.constant_tensor(name)
            .map(|t| t.dims.iter().map(|&d| d.max(0) as usize).collect())
    }

    /// Fill the set of taken names on first use: every value, initializer and node name of the
    /// graph, including those inside its subgraphs (ONNX names are unique across scopes: a new
    /// outer value must not shadow a body's own).
    fn init_taken(&mut self) {
        if !self.taken.is_empty() {
            return;
        }
        let mut taken: HashSet<String> = HashSet::new();
        for n in &self.nodes {
            subgraph::node_names(n, &mut taken);
        }
        taken.extend(self.initializers.iter().filter_map(|t| t.name.clone()));
        taken.extend(
            self.inputs
                .iter()
                .chain(&self.outputs)
                .chain(&self.value_info)
                .filter_map(|v| v.name.clone()),
        );
        self.taken = taken;
    }

    /// A name not used by any value, initializer or node of the graph (or of its subgraphs),
    /// derived from `base`.
    pub fn fresh_name(&mut self, base: &str) -> String {
        self.init_taken();
        let mut k = 0usize;
        loop {
            let cand = if k == 0 {
                base.to_string()
            } else {
                format!("{base}_{k}")
            };
            if !self.taken.contains(&cand) {
                self.taken.insert(cand.clone());
                return cand;
            }
            k += 1;
        }
    }

    /// Append a node (call [`Graph::toposort`] after a batch of edits). Returns its id.
    pub fn add_node(&mut self, node: NodeProto) -> NodeId {
        for o in &node.output {
            self.taken.insert(o.clone());
        }
        if let Some(n) = &node.name {
            self.taken.insert(n.clone());
        }
        let id = self.nodes.len();
        if let Some(ix) = self.consts.get_mut() {
            ix.note_node(&node, id);
        }
        self.nodes.push(node);
        id
    }

    /// Rename output `slot` of node `id` to `value` (the slot must exist).
    pub fn set_output(&mut self, id: NodeId, slot: usize, value: &str) -> Result<()> {
        let n = self
            .nodes
            .get_mut(id)
            .ok_or_else(|| Error::Internal(format!("set_output: no node {id}")))?;
        let label = n.label();
        let o = n
            .output
            .get_mut(slot)
            .ok_or_else(|| Error::Internal(format!("node {label:?} has no output {slot}")))?;
        *o = value.to_string();
        let constant_like = n.is("Constant") || n.is("Identity");
        self.taken.insert(value.to_string());
        if constant_like {
            self.consts.clear();
        }
        Ok(())
    }

    /// Push an initializer, keeping the constant index.
    fn push_initializer(&mut self, t: TensorProto) {
        let pos = self.initializers.len();
        if let Some(ix) = self.consts.get_mut() {
            if let Some(n) = &t.name {
                ix.initializers.entry(n.clone()).or_insert(pos);
            }
        }
        self.initializers.push(t);
    }

    /// Point input `slot` of node `id` at `value`.
    pub fn set_input(&mut self, id: NodeId, slot: usize, value: &str) {
        let n = &mut self.nodes[id];
        if n.input.len() <= slot {
            n.input.resize(slot + 1, String::new());
        }
        n.input[slot] = value.to_string();
    }

    /// Remove the given nodes (ids refer to the current order).
    pub fn remove_nodes(&mut self, ids: &BTreeSet<NodeId>) {
        if ids.is_empty() {
            return;
        }
        self.consts.clear();
        let mut i = 0;
        self.nodes.retain(|_| {
            let keep = !ids.contains(&i);
            i += 1;
            keep
        });
    }

    /// Add a new initializer holding `values` of `data_type` with a fresh name based on `base`.
    pub fn add_initializer(
        &mut self,
        base: &str,
        dims: &[usize],
        data_type: i32,
        values: &[f64],
    ) -> Result<String> {
        let name = self.fresh_name(base);
        let t = tensor::tensor_from_f64(&name, dims, data_type, values).map_err(Error::Internal)?;
        self.push_initializer(t);
        Ok(name)
    }

    /// Remove initializers nobody reads any more (only ones this tool made unused).
    pub fn drop_unused_initializers(&mut self, candidates: &BTreeSet<String>) {
        let ix = self.index();
        self.consts.clear();
        self.initializers.retain(|t| {
            let n = t.name.as_deref().unwrap_or("");
            !candidates.contains(n) || ix.use_count(n) > 0
        });
    }

    /// Remove Constant nodes and initializers in `candidates` that nothing reads any more.
    pub fn drop_unused_constants(&mut self, candidates: &BTreeSet<String>) {
        let ix = self.index();
        let dead: BTreeSet<NodeId> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                n.is("Constant")
                    && n.output
                        .iter()
                        .all(|o| candidates.contains(o) && ix.use_count(o) == 0)
            })
            .map(|(i, _)| i)
            .collect();
        self.remove_nodes(&dead);
        self.drop_unused_initializers(candidates);
    }

    /// Restore topological order after edits, keeping the existing order wherever it is already
    /// valid (stable). Errors on a cycle.
    pub fn toposort(&mut self) -> std::result::Result<(), String> {
        let n = self.nodes.len();
        let mut producer: HashMap<&str, usize> = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for o in &node.output {
                if !o.is_empty() {
                    producer.insert(o, i);
                }
            }
        }
        let mut deps: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut indeg = vec![0usize; n];
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, node) in self.nodes.iter().enumerate() {
            let mut reads: BTreeSet<String> = node
                .input
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect();
            for a in &node.attribute {
                for sg in a.g.iter().chain(a.graphs.iter()) {
                    outer_reads(sg, &mut reads);
                }
            }
            for inp in reads {
                if let Some(&p) = producer.get(inp.as_str()) {
                    if p != i && !deps[i].contains(&p) {
                        deps[i].push(p);
                        indeg[i] += 1;
                        users[p].push(i);
                    }
                }
            }
        }
        // Kahn's algorithm with a min-heap on the original position: stable.
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = (0..n)
            .filter(|&i| indeg[i] == 0)
            .map(std::cmp::Reverse)
            .collect();
        let mut order = Vec::with_capacity(n);
        while let Some(std::cmp::Reverse(i)) = ready.pop() {
            order.push(i);
            for &u in &users[i] {
                indeg[u] -= 1;
                if indeg[u] == 0 {
                    ready.push(std::cmp::Reverse(u));
                }
            }
        }
        if order.len() != n {
            return Err("the edited graph has a cycle".into());
        }
        if order.iter().enumerate().any(|(k, &i)| k != i) {
            self.consts.clear();
            let mut old: Vec<Option<NodeProto>> = std::mem::take(&mut self.nodes)
                .into_iter()
                .map(Some)
                .collect();
            self.nodes = order
                .into_iter()
                .map(|i| old[i].take().expect("each node once"))
                .collect();
        }
        Ok(())
    }

    /// Static facts known about a value's type: element type and dims from graph inputs,
    /// outputs, value_info or initializers.
    pub fn declared_type(&self, name: &str) -> Option<(i32, Vec<shape::Dim>)> {
        if let Some(t) = self
            .initializer_pos(name)
            .and_then(|i| self.initializers.get(i))
        {
            return Some((
                t.data_type.unwrap_or(0),
                t.dims.iter().map(|&d| shape::Dim::Known(d)).collect(),
            ));
        }
        let vi = self
            .inputs
            .iter()
            .chain(&self.outputs)
            .chain(&self.value_info)
            .find(|v| v.name.as_deref() == Some(name))?;
        let tt = vi.r#type.as_ref()?.tensor_type.as_ref()?;
        let dims = tt
            .shape
            .as_ref()
            .map(shape::declared_dims)
            .unwrap_or_default();
        Some((tt.elem_type.unwrap_or(0), dims))
    }

    /// Replace the constant read at input `slot` of node `id` by `new` values (same dims and
    /// type). Copy on write: when nothing else reads the constant the tensor is overwritten in
    /// place; otherwise a new initializer is made and only this slot is re-pointed. Returns the
    /// name of the constant the slot now reads and the bytes added.
    pub fn write_constant(
        &mut self,
        id: NodeId,
        slot: usize,
        new: &Array,
    ) -> Result<(String, usize)> {
        let old = self.nodes[id].input.get(slot).cloned().unwrap_or_default();
        let sole_user = self.read_count(&old) == 1;
        let encoded = tensor::encode_f64(&new.data, new.data_type).map_err(Error::Internal)?;
        if sole_user {
            if let Some(t) = self
                .initializer_pos(&old)
                .and_then(|i| self.initializers.get_mut(i))
            {
                set_payload(t, &new.dims, new.data_type, encoded);
                return Ok((old, 0));
            }
            if let Some(n) = self
                .nodes
                .iter_mut()
                .find(|n| n.is("Constant") && n.output.first() == Some(&old))
            {
                if let Some(t) = n
                    .attribute
                    .iter_mut()
                    .find(|a| a.name.as_deref() == Some("value"))
                    .and_then(|a| a.t.as_mut())
                {
                    set_payload(t, &new.dims, new.data_type, encoded);
                    return Ok((old, 0));
                }
            }
        }
        let base = if old.is_empty() {
            "normopt_const".to_string()
        } else {
            format!("{old}_normopt")
        };
        let name = self.fresh_name(&base);
        let bytes = encoded.len();
        let mut t = TensorProto {
            name: Some(name.clone()),
            ..Default::default()
        };
        set_payload(&mut t, &new.dims, new.data_type, encoded);
        self.push_initializer(t);
        self.set_input(id, slot, &name);
        Ok((name, bytes))
    }

    /// Like [`Graph::write_constant`], but the new values are computed at write time by
    /// `transform` from the constant's current tensor (which must be an initializer with a raw
    /// or external payload). Returns the name the slot now reads and the bytes added.
    pub fn write_constant_deferred(
        &mut self,
        id: NodeId,
        slot: usize,
        transform: Arc<dyn Deferred>,
    ) -> Result<(String, usize)> {
        let old = self.nodes[id].input.get(slot).cloned().unwrap_or_default();
        let pos = self.initializer_pos(&old).ok_or_else(|| {
            Error::Internal(format!("deferred edit of {old:?}: not an initializer"))
        })?;
        // An edit of an already pending tensor would need both computations chained.
        if self.pending.contains_key(&old) {
            return Err(Error::Internal(format!("{old:?} is edited twice")));
        }
        let source = self.initializers[pos].clone();
        let dims = transform.dims();
        let data_type = source.data_type.unwrap_or(0);
        let bytes = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .and_then(|n| n.checked_mul(crate::proto::data_type::byte_size(data_type).unwrap_or(4)))
            .ok_or_else(|| Error::Internal(format!("deferred edit of {old:?}: size overflows")))?;
        let mut t = TensorProto {
            name: Some(old.clone()),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(data_type),
            doc_string: source.doc_string.clone(),
            metadata_props: source.metadata_props.clone(),
            ..Default::default()
        };
        let pending = Pending { source, transform };
        if self.read_count(&old) == 1 {
            self.initializers[pos] = t;
            self.pending.insert(old.clone(), pending);
            return Ok((old, 0));
        }
        let name = self.fresh_name(&format!("{old}_normopt"));
        t.name = Some(name.clone());
        self.push_initializer(t);
        self.pending.insert(name.clone(), pending);
        self.set_input(id, slot, &name);
        Ok((name, bytes))
    }

    /// How many places read `name`: node inputs (here and in subgraphs, conservatively by
    /// name), graph outputs.
    pub fn read_count(&self, name: &str) -> usize {
        fn in_graph(g: &GraphProto, name: &str) -> usize {
            g.node.iter().map(|n| in_node(n, name)).sum::<usize>()
                + g.output
                    .iter()
                    .filter(|o| o.name.as_deref() == Some(name))
                    .count()
        }
        fn in_node(n: &NodeProto, name: &str) -> usize {
            n.input.iter().filter(|i| *i == name).count()
                + n.attribute
                    .iter()
                    .flat_map(|a| a.g.iter().chain(a.graphs.iter()))
                    .map(|g| in_graph(g, name))
                    .sum::<usize>()
        }
        self.nodes.iter().map(|n| in_node(n, name)).sum::<usize>()
            + self
                .outputs
                .iter()
                .filter(|o| o.name.as_deref() == Some(name))
                .count()
    }

    /// Counts of op types (domain-qualified when not the default domain), for summaries.
    pub fn op_histogram(&self) -> BTreeMap<String, usize> {
        let mut h = BTreeMap::new();
        for n in &self.nodes {
            let k = if n.domain().is_empty() {
                n.op().to_string()
            } else {
                format!("{}:{}", n.domain(), n.op())
            };
            *h.entry(k).or_insert(0) += 1;
        }
        h
    }
}

fn set_payload(t: &mut TensorProto, dims: &[usize], data_type: i32, raw: bytes::Bytes) {
    t.dims = dims.iter().map(|&d| d as i64).collect();
    t.data_type = Some(data_type);
    t.float_data.clear();
    t.int32_data.clear();
    t.int64_data.clear();
    t.double_data.clear();
    t.uint64_data.clear();
    t.external_data.clear();
    t.data_location = None;
    t.segment = None;
    t.raw_data = Some(raw);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{data_type as dt, AttributeProto};

    fn t(name: &str, v: f64) -> TensorProto {
        tensor::tensor_from_f64(name, &[1], dt::FLOAT, &[v]).unwrap()
    }

    fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            name: Some(name.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn value(g: &Graph, name: &str) -> Option<f64> {
        let t = g.constant_tensor(name)?;
        let a = read_array(t, &ExternalStore::default(), Path::new("")).unwrap();
        a.data.first().copied()
    }

    /// `constant_tensor` answers from an index: it must stay right through every edit of the
    /// mutation API (the only way to edit a graph).
    #[test]
    fn constant_index_follows_every_edit() {
        let mut konst = node("Constant", "k", &[], &["c"]);
        konst.attribute.push(AttributeProto {
            name: Some("value".into()),
            t: Some(t("c_value", 3.0)),
            ..Default::default()
        });
        let mut g = Graph::from_proto(GraphProto {
            initializer: vec![t("a", 1.0), t("b", 2.0), t("e", 5.0)],
            input: vec![ValueInfoProto {
                name: Some("e".into()),
                ..Default::default()
            }],
            node: vec![
                konst,
                node("Identity", "i", &["a"], &["d"]),
                node("Add", "add", &["c", "d"], &["s"]),
            ],
            ..Default::default()
        });
        assert_eq!(value(&g, "a"), Some(1.0));
        assert_eq!(value(&g, "b"), Some(2.0));
        assert_eq!(value(&g, "c"), Some(3.0));
        assert_eq!(value(&g, "d"), Some(1.0), "through the Identity");
        assert_eq!(
            value(&g, "e"),
            None,
            "an initializer that is an input is not constant"
        );
        assert_eq!(value(&g, "s"), None);
        assert_eq!(value(&g, "nothing"), None);

        // Added through the API.
        let n = g.add_initializer("new", &[1], dt::FLOAT, &[7.0]).unwrap();
        assert_eq!(value(&g, &n), Some(7.0));
        let mut k2 = node("Constant", "k2", &[], &["c2"]);
        k2.attribute.push(AttributeProto {
            name: Some("value".into()),
            t: Some(t("c2_value", 8.0)),
            ..Default::default()
        });
        let k2_id = g.add_node(k2);
        assert_eq!(value(&g, "c2"), Some(8.0));
        g.add_node(node("Identity", "i2", &["c2"], &["d2"]));
        assert_eq!(value(&g, "d2"), Some(8.0));

        // Copy on write: "a" has two readers once the Add reads it too.
        let add = g.nodes.iter().position(|n| n.name() == "add").unwrap();
        g.set_input(add, 1, "a");
        let arr = Array {
            dims: vec![1],
            data_type: dt::FLOAT,
            data: vec![9.0],
        };
        let (copy, added) = g.write_constant(add, 1, &arr).unwrap();
        assert!(added > 0 && copy != "a");
        assert_eq!(value(&g, &copy), Some(9.0));
        assert_eq!(value(&g, "a"), Some(1.0));

        // Renaming the output of a Constant node.
        g.set_output(k2_id, 0, "c3").unwrap();
        assert_eq!(value(&g, "c2"), None);
        assert_eq!(value(&g, "c3"), Some(8.0));

        // Removal shifts positions.
        let k = g.nodes.iter().position(|n| n.name() == "k").unwrap();
        g.remove_nodes(&[k].into_iter().collect());
        assert_eq!(value(&g, "c"), None);
        assert_eq!(value(&g, "c3"), Some(8.0));
        assert_eq!(value(&g, "d"), Some(1.0));
        g.drop_unused_initializers(&["b".to_string()].into_iter().collect());
        assert_eq!(value(&g, "b"), None);
        assert_eq!(value(&g, "a"), Some(1.0));
        assert_eq!(value(&g, &copy), Some(9.0));
        assert_eq!(value(&g, &n), Some(7.0));

        // Reordering: a node added before its producer, then sorted.
        g.add_node(node("Identity", "late_reader", &["d3"], &["d4"]));
        g.add_node(node("Identity", "late_producer", &["c3"], &["d3"]));
        g.toposort().unwrap();
        assert_eq!(g.nodes().last().map(|n| n.name()), Some("late_reader"));
        assert_eq!(value(&g, "d4"), Some(8.0));
        assert_eq!(value(&g, "d"), Some(1.0));
        assert_eq!(value(&g, "c3"), Some(8.0));

        // A graph input hides an initializer of the same name from then on.
        g.push_input(ValueInfoProto {
            name: Some(n.clone()),
            ..Default::default()
        });
        assert_eq!(value(&g, &n), None);
        g.retain_inputs(|v| v.name.as_deref() != Some(n.as_str()));
        assert_eq!(value(&g, &n), Some(7.0));

        // A clone gets its own index.
        let c = g.clone();
        assert_eq!(value(&c, "a"), Some(1.0));
        assert_eq!(value(&c, "d4"), Some(8.0));
    }

    /// Many lookups on a big graph stay linear overall (a scan per lookup took minutes here).
    #[test]
    fn constant_lookups_on_a_big_graph() {
        let n = 100_000;
        let g = Graph::from_proto(GraphProto {
            initializer: (0..n).map(|i| t(&format!("w{i}"), i as f64)).collect(),
            node: (0..n)
                .map(|i| {
                    node(
                        "Identity",
                        &format!("i{i}"),
                        &[&format!("w{i}")],
                        &[&format!("x{i}")],
                    )
                })
                .collect(),
            ..Default::default()
        });
        let start = std::time::Instant::now();
        for i in (0..n).rev() {
            assert!(g.constant_tensor(&format!("x{i}")).is_some());
            assert!(g.constant_tensor(&format!("y{i}")).is_none());
        }
        // Generous: the index answers in well under a second; scans took ~10^10 comparisons.
        assert!(start.elapsed() < std::time::Duration::from_secs(20));
    }
}
