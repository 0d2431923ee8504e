//! The graph: nodes in topological order, initializers, inputs and outputs, behind an API.
//!
//! The fields are private to the IR: reads go through accessors, writes through the mutation
//! API (ir/edit.rs), so the constant index (ir/index.rs) can never go stale.

use super::index::ConstCache;
use super::{shape, GraphIndex, NodeExt, NodeId};
use crate::error::Result;
use crate::proto::{GraphProto, NodeProto, TensorProto, ValueInfoProto};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// The main graph: nodes in topological order, initializers, inputs and outputs.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// Nodes, topologically ordered.
    pub(super) nodes: Vec<NodeProto>,
    /// Initializers, in file order.
    pub(super) initializers: Vec<TensorProto>,
    /// Graph inputs.
    pub(super) inputs: Vec<ValueInfoProto>,
    /// Graph outputs.
    pub(super) outputs: Vec<ValueInfoProto>,
    /// Type annotations of intermediate values.
    pub(super) value_info: Vec<ValueInfoProto>,
    /// The rest of the GraphProto (name, doc, annotations, sparse initializers, metadata).
    pub(super) rest: GraphProto,
    /// Names handed out by [`Graph::fresh_name`].
    pub(super) taken: HashSet<String>,
    /// Initializers whose values are computed when the model is written (by name). Their
    /// `TensorProto` in [`Graph::initializers`] carries the new dims and type but no payload.
    pub(super) pending: HashMap<String, Pending>,
    /// Lookup index of [`Graph::constant_tensor`] (built on first use, kept by the mutation API).
    pub(super) consts: ConstCache,
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

/// The outputs of a subgraph that it does not compute: values of an enclosing graph returned
/// as they are (onnxruntime refuses these).
fn outer_outputs(g: &GraphProto) -> BTreeSet<&str> {
    let mut defined: HashSet<&str> = HashSet::new();
    defined.extend(g.input.iter().filter_map(|v| v.name.as_deref()));
    defined.extend(g.initializer.iter().filter_map(|t| t.name.as_deref()));
    defined.extend(
        g.node
            .iter()
            .flat_map(|n| n.output.iter().map(String::as_str)),
    );
    g.output
        .iter()
        .filter_map(|o| o.name.as_deref())
        .filter(|o| !defined.contains(o))
        .collect()
}

/// Collect names read inside a subgraph that it does not define itself (outer-scope reads).
pub(super) fn outer_reads(g: &GraphProto, out: &mut BTreeSet<String>) {
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

    /// Declare one more graph output.
    pub fn push_output(&mut self, v: ValueInfoProto) {
        self.outputs.push(v);
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
                    if let Some((attr, j)) = n
                        .attribute
                        .iter()
                        .find(|a| {
                            a.g.iter()
                                .chain(a.graphs.iter())
                                .any(|sg| outer_outputs(sg).contains(inp.as_str()))
                        })
                        .zip(all_outputs.get(inp.as_str()))
                    {
                        return Err(format!(
                            "node {:?} ({}): its subgraph {:?} returns {inp:?}, a value of the outer \
                             graph (produced by node {:?}), as its output instead of computing it: \
                             the model is invalid (onnxruntime: \"subgraph output is an outer scope \
                             value\"); re-export it, or add an Identity node inside the subgraph",
                            n.label(),
                            n.op().escape_debug(),
                            attr.name.as_deref().unwrap_or("").escape_debug().to_string(),
                            self.nodes[*j].label()
                        ));
                    }
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
