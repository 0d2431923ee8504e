//! What a list of patches does to a graph, told from the patches without applying them: the
//! explicit centering nodes and the bytes they add, the op counts after, and what becomes of
//! each constant. `inspect` stops at the patch list and reports this; with
//! [`DriveOptions::check_each_patch`](super::DriveOptions) the pass checks that the driver did
//! exactly what the tally says.
//!
//! It follows the driver patch by patch, keeping only what the counts depend on: which slots
//! read which values (copy on write edits a constant in place only when one slot reads it), the
//! nodes that go when the graph settles, the op types new nodes have (a replaced norm's are
//! those its builder makes, built on a scratch graph), and at the end the `Constant` nodes and
//! initializers nothing reads any more.

use super::super::edit::{dims_after, Edit};
use super::super::emit::Builder;
use super::driver::{elem_type_of_weight, Applied};
use super::patch::{Patch, PatchKind};
use crate::ir::{Graph, Model, NodeExt, NodeId};
use crate::proto::data_type as dt;
use crate::{Error, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What the patches do.
#[derive(Debug, Default)]
pub struct Tally {
    /// What the driver reports when it applies them.
    pub applied: Applied,
    /// The op counts of the graph after them.
    pub ops_after: BTreeMap<String, usize>,
    /// Initializers edited in place, with their edits.
    pub edited: BTreeMap<String, Vec<Edit>>,
    /// Constants nothing reads any more, dropped when the graph settles.
    pub dropped: BTreeSet<String>,
}

/// The op-count key of a node (domain-qualified outside the default domain).
fn op_key(n: &crate::proto::NodeProto) -> String {
    if n.domain().is_empty() {
        n.op().to_string()
    } else {
        format!("{}:{}", n.domain(), n.op())
    }
}

/// The patches' state, as far as the counts depend on it.
struct State<'a> {
    g: &'a Graph,
    ops: BTreeMap<String, usize>,
    /// Nodes the graph loses when it settles.
    removed: BTreeSet<NodeId>,
    /// Constants that may have lost their last reader.
    dead: BTreeSet<String>,
    /// Slots of the graph's nodes re-pointed to another value.
    repointed: HashMap<(NodeId, usize), String>,
    /// Reads of each value that slots no longer make (re-pointed away).
    reads_away: HashMap<String, usize>,
    /// Reads of each value by new nodes.
    new_reads: HashMap<String, usize>,
    /// Values explicitly centred (new nodes read their centred copies instead).
    centred: BTreeSet<String>,
    out: Tally,
}

impl State<'_> {
    /// How many times `v` is read now (nodes, bodies, graph outputs), as the driver counts when
    /// it decides copy on write.
    fn reads(&self, v: &str) -> usize {
        (self.g.read_count(v) + self.new_reads.get(v).copied().unwrap_or(0))
            .saturating_sub(self.reads_away.get(v).copied().unwrap_or(0))
    }

    fn remove(&mut self, nodes: &[NodeId]) {
        for &n in nodes {
            if self.removed.insert(n) {
                let k = op_key(self.g.node(n));
                if let Some(c) = self.ops.get_mut(&k) {
                    *c -= 1;
                    if *c == 0 {
                        self.ops.remove(&k);
                    }
                }
            }
        }
    }

    fn add(&mut self, op: &str, n: usize) {
        if n > 0 {
            *self.ops.entry(op.to_string()).or_insert(0) += n;
        }
    }

    fn repoint(&mut self, node: NodeId, slot: usize, to: String) {
        let from = self.repointed.get(&(node, slot)).cloned().or_else(|| {
            self.g
                .nodes()
                .get(node)
                .and_then(|n| n.input(slot))
                .map(str::to_string)
        });
        if let Some(f) = from {
            *self.reads_away.entry(f).or_insert(0) += 1;
        }
        self.repointed.insert((node, slot), to);
    }

    fn apply(&mut self, p: &Patch, opset: i64) -> Result<()> {
        match &p.kind {
            PatchKind::EditConstant { node, slot, edits } => {
                self.edit_constant(*node, *slot, edits)?
            }
            PatchKind::NewBias {
                reader,
                shift,
                centred,
                compressed,
                gemm,
                ..
            } => {
                let len = shift.len()
                    - usize::from(*centred && compressed.is_some() && !shift.is_empty());
                let dtype = elem_type_of_weight(self.g, *reader);
                self.out.applied.bytes_added += len * dt::byte_size(dtype).unwrap_or(4);
                if !*gemm {
                    self.add("Add", 1);
                }
            }
            PatchKind::RemoveScale { node, slot } => {
                if let Some(c) = self.g.node(*node).input(1 - slot) {
                    self.dead.insert(c.to_string());
                }
                self.remove(&[*node]);
            }
            PatchKind::Center {
                value,
                edges,
                compress_from,
            } => {
                // The nodes its builder makes (x − ReduceMean(x), or the compressed copy); the
                // edges read the copy.
                self.build(opset, |b| {
                    match compress_from {
                        Some(c) => b.compress_value(value, c)?,
                        None => b.center(value)?,
                    };
                    Ok(())
                })?;
                for &(node, slot) in edges {
                    self.repoint(node, slot, format!("{value} (centred)"));
                }
                self.centred.insert(value.clone());
                self.out.applied.centering_nodes += 1;
            }
            PatchKind::PrecomputeTable { removed, .. } => {
                self.remove(&removed.nodes);
                self.dead.extend(removed.consts.iter().cloned());
            }
            PatchKind::ReplaceNorm { removed, build, .. } => {
                self.remove(&removed.nodes);
                self.dead.extend(removed.consts.iter().cloned());
                // The nodes its builder makes, on a scratch graph; what they read from outside.
                let centred = &self.centred;
                let input = build.input.renamed(|v| {
                    if centred.contains(v) {
                        format!("{v} (centred)")
                    } else {
                        v.to_string()
                    }
                });
                self.build(opset, |b| {
                    b.norm(&super::super::emit::NormBuild {
                        input,
                        ..(**build).clone()
                    })
                })?;
            }
            PatchKind::FixShape { .. } => self.add("Add", 1),
            PatchKind::FixSizes { node, slot, .. } => {
                // An Add reads the size input; the reader's slot reads the Add.
                self.add("Add", 1);
                let from = self
                    .repointed
                    .get(&(*node, *slot))
                    .cloned()
                    .or_else(|| self.g.node(*node).input(*slot).map(str::to_string));
                if let Some(f) = from {
                    *self.new_reads.entry(f.clone()).or_insert(0) += 1;
                    self.repoint(*node, *slot, format!("{f} (sized)"));
                }
            }
            PatchKind::DropCasts { casts } => {
                for &c in casts {
                    self.dead
                        .insert(self.g.node(c).input(0).unwrap_or("").to_string());
                }
                self.remove(&casts.iter().copied().collect::<Vec<_>>());
            }
            PatchKind::OuterConstant { tensor, copy, .. } => {
                if *copy {
                    self.out.applied.bytes_added += crate::tensor::element_count(&tensor.dims)
                        .unwrap_or(0)
                        * dt::byte_size(tensor.data_type.unwrap_or(0)).unwrap_or(0);
                }
            }
            PatchKind::Import { .. }
            | PatchKind::DropStaleValueInfo { .. }
            | PatchKind::PutBody { .. }
            | PatchKind::DropUnusedInitializers { .. } => {}
        }
        Ok(())
    }

    /// The nodes `f` builds, built on a scratch graph: their op counts, and the reads of values
    /// they do not make or add as constants.
    fn build(&mut self, opset: i64, f: impl FnOnce(&mut Builder) -> Result<()>) -> Result<()> {
        let mut scratch = Graph::default();
        f(&mut Builder {
            g: &mut scratch,
            opset,
            prefix: "normopt".into(),
            doc: None,
        })?;
        let made: BTreeSet<&str> = scratch
            .nodes()
            .iter()
            .flat_map(|n| n.output.iter().map(String::as_str))
            .collect();
        for n in scratch.nodes() {
            *self.ops.entry(op_key(n)).or_insert(0) += 1;
            for i in &n.input {
                if !i.is_empty()
                    && !made.contains(i.as_str())
                    && scratch.initializer_pos(i).is_none()
                {
                    *self.new_reads.entry(i.clone()).or_insert(0) += 1;
                }
            }
        }
        Ok(())
    }

    /// Copy on write, as the driver does it: in place when one slot reads the constant and it
    /// is an initializer or a `Constant` node's output, else a copy (its bytes are added).
    fn edit_constant(&mut self, node: NodeId, slot: usize, edits: &[Edit]) -> Result<()> {
        let g = self.g;
        let name = self
            .repointed
            .get(&(node, slot))
            .cloned()
            .or_else(|| g.node(node).input(slot).map(str::to_string))
            .ok_or_else(|| Error::Internal(format!("edit of node {node} slot {slot}: no input")))?;
        let t = g
            .constant_tensor(&name)
            .ok_or_else(|| Error::Internal(format!("constant {name:?} vanished")))?;
        let is_init = g.initializer_pos(&name).is_some();
        let in_place = self.reads(&name) == 1
            && (is_init
                || g.nodes()
                    .iter()
                    .any(|n| n.is("Constant") && n.output.first() == Some(&name)));
        if in_place {
            if is_init {
                self.out.edited.insert(name, edits.to_vec());
            }
            return Ok(());
        }
        let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
        let bytes = dims_after(&dims, edits)
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .and_then(|n| n.checked_mul(dt::byte_size(t.data_type.unwrap_or(0)).unwrap_or(0)))
            .ok_or_else(|| Error::Internal(format!("edit of {name:?}: size overflows")))?;
        self.repoint(node, slot, format!("{name} (copy)"));
        if bytes > 0 {
            self.dead.insert(name);
        }
        self.out.applied.bytes_added += bytes;
        Ok(())
    }

    /// The graph settles: `Constant` nodes and initializers among the candidates that nothing
    /// reads any more go.
    fn settle(mut self) -> Tally {
        let ix = self.g.index();
        let in_use = |v: &str| {
            let by_nodes = ix
                .consumers(v)
                .iter()
                .filter(|(n, slot)| {
                    !self.removed.contains(n)
                        && self.repointed.get(&(*n, *slot)).is_none_or(|to| to == v)
                })
                .count();
            by_nodes
                + self.new_reads.get(v).copied().unwrap_or(0)
                + usize::from(ix.graph_outputs.contains(v))
                + usize::from(ix.subgraph_reads.contains_key(v))
                > 0
        };
        let mut dropped = BTreeSet::new();
        let mut gone = Vec::new();
        for (id, n) in self.g.nodes().iter().enumerate() {
            if n.is("Constant")
                && !self.removed.contains(&id)
                && n.output.iter().all(|o| self.dead.contains(o) && !in_use(o))
            {
                gone.push(id);
                dropped.extend(n.output.iter().cloned());
            }
        }
        for name in &self.dead {
            if self.g.initializer_pos(name).is_some() && !in_use(name) {
                dropped.insert(name.clone());
            }
        }
        self.remove(&gone);
        self.out.ops_after = self.ops;
        self.out.dropped = dropped;
        self.out
    }
}

/// What applying `patches` to `model` (whose graph they were lowered on) does.
pub fn tally(model: &Model, patches: &[Patch]) -> Result<Tally> {
    let mut s = State {
        g: &model.graph,
        ops: model.graph.op_histogram(),
        removed: BTreeSet::new(),
        dead: BTreeSet::new(),
        repointed: HashMap::new(),
        reads_away: HashMap::new(),
        new_reads: HashMap::new(),
        centred: BTreeSet::new(),
        out: Tally::default(),
    };
    let opset = model.onnx_opset();
    for p in patches {
        s.apply(p, opset)?;
        s.out.applied.patches += 1;
    }
    Ok(s.settle())
}

/// Whether the driver did what the tally of the same patches says: an error naming the
/// difference when not.
pub fn check(t: &Tally, applied: &Applied, ops_after: &BTreeMap<String, usize>) -> Result<()> {
    let diff = |what: &str, told: String, done: String| {
        Err(Error::Internal(format!(
            "the patches' tally says {what} {told}, the driver did {done}"
        )))
    };
    if t.applied.centering_nodes != applied.centering_nodes {
        return diff(
            "centering nodes",
            t.applied.centering_nodes.to_string(),
            applied.centering_nodes.to_string(),
        );
    }
    if t.applied.bytes_added != applied.bytes_added {
        return diff(
            "bytes added",
            t.applied.bytes_added.to_string(),
            applied.bytes_added.to_string(),
        );
    }
    if &t.ops_after != ops_after {
        return diff(
            "op counts",
            format!("{:?}", t.ops_after),
            format!("{ops_after:?}"),
        );
    }
    Ok(())
}
