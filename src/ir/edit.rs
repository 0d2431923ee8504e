//! The mutation API of [`Graph`]: every edit of a graph goes through here, which keeps the
//! set of taken names and the constant index up to date, and copy-on-write for shared
//! constants.

use super::{subgraph, Deferred, Graph, NodeExt, NodeId, Pending};
use crate::error::{Error, Result};
use crate::proto::{NodeProto, TensorProto};
use crate::tensor::{self, Array};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

impl Graph {
    /// Fill the set of taken names on first use: every value, initializer and node name of the
    /// graph, including those inside its subgraphs (ONNX names are unique across scopes: a new
    /// outer value must not shadow a body's own).
    pub(super) fn init_taken(&mut self) {
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
    pub(super) fn push_initializer(&mut self, t: TensorProto) {
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
