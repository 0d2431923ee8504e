//! Lookups: where constants live (the index behind [`Graph::constant_tensor`]) and where
//! values come from and go ([`GraphIndex`]).

use super::{Graph, NodeExt, NodeId};
use crate::proto::{NodeProto, TensorProto};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Where constants live, by name: what [`Graph::constant_tensor`] looks up in constant time.
/// The graph's fields are private and
/// every edit goes through its mutation API, which keeps the index exact (or drops it).
#[derive(Debug, Default)]
pub(super) struct ConstIndex {
    /// Graph input names.
    pub(super) inputs: HashSet<String>,
    /// Initializer name → first position in `Graph::initializers`.
    pub(super) initializers: HashMap<String, usize>,
    /// First output of a Constant or Identity node → first such node.
    pub(super) nodes: HashMap<String, NodeId>,
}

impl ConstIndex {
    pub(super) fn build(g: &Graph) -> ConstIndex {
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

    pub(super) fn note_node(&mut self, n: &NodeProto, id: NodeId) {
        if n.is("Constant") || n.is("Identity") {
            if let Some(o) = n.output.first() {
                self.nodes.entry(o.clone()).or_insert(id);
            }
        }
    }
}

/// The cached [`ConstIndex`]. Clones start empty; `Debug` shows nothing (it is derived data).
#[derive(Default)]
pub(super) struct ConstCache(std::sync::RwLock<Option<Arc<ConstIndex>>>);

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
    pub(super) fn get_mut(&mut self) -> Option<&mut ConstIndex> {
        let slot = self.0.get_mut().unwrap_or_else(|e| e.into_inner());
        if slot.as_mut().is_some_and(|a| Arc::get_mut(a).is_none()) {
            *slot = None; // still shared by a lookup: rebuild on next use
        }
        slot.as_mut().and_then(Arc::get_mut)
    }

    pub(super) fn clear(&mut self) {
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

impl Graph {
    /// The constant index, built when missing.
    pub(super) fn const_index(&self) -> Arc<ConstIndex> {
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
        // At most this many Identity hops (a lookup stays bounded on any chain).
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
}

/// Whether `n` (a `Cast`) casts to a float type.
pub fn is_float_cast(n: &NodeProto) -> bool {
    n.attr_i("to")
        .is_some_and(|t| crate::tensor::is_float(t as i32))
}

/// The `Cast` (to a float type) producing `v` from a float constant, when it does.
pub fn cast_of_const(g: &Graph, ix: &GraphIndex, v: &str) -> Option<NodeId> {
    let c = ix.producer(v)?;
    let n = g.node(c);
    if !(n.is("Cast") && is_float_cast(n)) {
        return None;
    }
    let t = g.constant_tensor(n.input(0)?)?;
    crate::tensor::is_float(t.data_type.unwrap_or(crate::proto::data_type::UNDEFINED)).then_some(c)
}

/// The dims of constant `v`, or of the constant behind it when `v` is its float `Cast`.
pub fn const_dims_through(g: &Graph, ix: &GraphIndex, v: &str) -> Option<Vec<usize>> {
    g.constant_dims(v).or_else(|| {
        let c = cast_of_const(g, ix, v)?;
        g.constant_dims(g.node(c).input(0)?)
    })
}
