//! Where to cut: both graphs as dependency graphs, the original's cut positions chosen by cost,
//! and the rewrite's nodes assigned to the same pieces.
//!
//! The original's live nodes (those a graph output depends on) are laid out in one topological
//! order; a cut between two positions splits them into *before* and *after*, and the values
//! produced before and read after are the cut's **boundary**. [`select`] walks the order and
//! closes a piece when the next node would take it over the budget, at the position of the
//! smallest boundary seen in it (the latest among near-equals): in a Pre-LN transformer that is
//! the residual stream between two blocks (one `[batch, seq, D]` value and a few small shape
//! values), found without asking the pass.
//!
//! The rewrite's nodes follow the original's pieces ([`assign`]): a value the original also
//! computes (same name) must be computed by the same piece in the rewrite — or earlier — and every
//! other node goes into the piece of its first reader. So piece k of the rewrite computes what
//! piece k of the original computes, and the values that cross its cuts are the same names
//! wherever the rewrite kept them (a value only the rewrite has simply crosses as its own).
//!
//! `Constant` nodes are free: every piece that reads one gets its own copy (they hold no weights
//! worth counting, and a constant read in every block would otherwise cross every cut).

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::ir::subgraph::outer_reads_of;
use crate::proto::{data_type, GraphProto, NodeProto, TensorProto};

/// One graph as a dependency graph.
pub(crate) struct Dag<'g> {
    /// The graph.
    pub graph: &'g GraphProto,
    /// Live nodes that are not `Constant`s, in topological order (indices into `graph.node`).
    pub order: Vec<usize>,
    /// What each node reads: its inputs and what its bodies read from outside (deduplicated).
    pub reads: Vec<Vec<String>>,
    /// The node producing each value.
    pub producer: HashMap<String, usize>,
    /// Initializers by name (index into `graph.initializer`).
    pub inits: HashMap<String, usize>,
    /// Graph outputs, in order.
    pub outputs: Vec<String>,
}

/// Whether `n` is a `Constant` node (copied into every piece that reads it).
pub(crate) fn is_constant(n: &NodeProto) -> bool {
    n.op_type.as_deref() == Some("Constant")
        && matches!(n.domain.as_deref(), None | Some("") | Some("ai.onnx"))
        && n.input.iter().all(|i| i.is_empty())
}

/// Bytes of an initializer's payload (its external length, its raw data, or its dims × element
/// size).
pub(crate) fn tensor_bytes(t: &TensorProto) -> u64 {
    if let Some(len) = t
        .external_data
        .iter()
        .find(|e| e.key.as_deref() == Some("length"))
        .and_then(|e| e.value.as_deref()?.parse::<u64>().ok())
    {
        return len;
    }
    if let Some(r) = &t.raw_data {
        return r.len() as u64;
    }
    let elem = data_type::byte_size(t.data_type.unwrap_or(0))
        .filter(|&b| b > 0)
        .unwrap_or(4) as u64;
    t.dims
        .iter()
        .fold(elem, |acc, &d| acc.saturating_mul(d.max(0) as u64))
}

impl<'g> Dag<'g> {
    /// The dependency graph of `graph`; `Err` names what makes it uncuttable (a cycle, a value
    /// read and never defined, a graph output no node computes).
    pub fn new(graph: &'g GraphProto) -> Result<Dag<'g>, String> {
        let inits: HashMap<String, usize> = graph
            .initializer
            .iter()
            .enumerate()
            .filter_map(|(i, t)| Some((t.name.clone()?, i)))
            .collect();
        let inputs: HashSet<String> = graph
            .input
            .iter()
            .filter_map(|v| v.name.clone())
            .filter(|n| !inits.contains_key(n))
            .collect();
        let outputs: Vec<String> = graph
            .output
            .iter()
            .map(|v| v.name.clone().unwrap_or_default())
            .collect();
        let mut producer = HashMap::new();
        for (i, n) in graph.node.iter().enumerate() {
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                producer.insert(o.clone(), i);
            }
        }
        let reads: Vec<Vec<String>> = graph
            .node
            .iter()
            .map(|n| {
                let mut r: BTreeSet<String> =
                    n.input.iter().filter(|s| !s.is_empty()).cloned().collect();
                for a in &n.attribute {
                    for g in a.g.iter().chain(a.graphs.iter()) {
                        r.extend(outer_reads_of(g));
                    }
                }
                r.into_iter().collect()
            })
            .collect();
        for (i, r) in reads.iter().enumerate() {
            if let Some(v) = r.iter().find(|v| {
                !producer.contains_key(*v) && !inits.contains_key(*v) && !inputs.contains(*v)
            }) {
                return Err(format!(
                    "node {:?} reads `{v}`, which nothing defines",
                    graph.node[i].name.as_deref().unwrap_or("")
                ));
            }
        }
        if let Some(o) = outputs.iter().find(|o| {
            producer
                .get(*o)
                .is_none_or(|&p| is_constant(&graph.node[p]))
        }) {
            return Err(format!("graph output `{o}` is not computed by a node"));
        }
        // Live nodes: those some graph output depends on.
        let mut live = vec![false; graph.node.len()];
        let mut stack: Vec<usize> = outputs
            .iter()
            .filter_map(|o| producer.get(o))
            .copied()
            .collect();
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut live[i], true) {
                continue;
            }
            stack.extend(reads[i].iter().filter_map(|v| producer.get(v)).copied());
        }
        // Kahn's algorithm, stable on the file's order.
        let n = graph.node.len();
        let mut indeg = vec![0usize; n];
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
        for i in (0..n).filter(|&i| live[i]) {
            let deps: BTreeSet<usize> = reads[i]
                .iter()
                .filter_map(|v| producer.get(v))
                .copied()
                .filter(|&p| p != i)
                .collect();
            indeg[i] = deps.len();
            for p in deps {
                users[p].push(i);
            }
        }
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = (0..n)
            .filter(|&i| live[i] && indeg[i] == 0)
            .map(std::cmp::Reverse)
            .collect();
        let mut order = Vec::new();
        let mut seen = 0;
        while let Some(std::cmp::Reverse(i)) = ready.pop() {
            seen += 1;
            if !is_constant(&graph.node[i]) {
                order.push(i);
            }
            for &u in &users[i] {
                indeg[u] -= 1;
                if indeg[u] == 0 {
                    ready.push(std::cmp::Reverse(u));
                }
            }
        }
        if seen != live.iter().filter(|&&l| l).count() {
            return Err("the graph has a cycle".into());
        }
        Ok(Dag {
            graph,
            order,
            reads,
            producer,
            inits,
            outputs,
        })
    }

    /// The `Constant` node producing `v`, if that is what produces it.
    pub fn constant_of(&self, v: &str) -> Option<usize> {
        self.producer
            .get(v)
            .copied()
            .filter(|&p| is_constant(&self.graph.node[p]))
    }

    /// The non-constant node producing `v`.
    pub fn computed_by(&self, v: &str) -> Option<usize> {
        self.producer
            .get(v)
            .copied()
            .filter(|&p| !is_constant(&self.graph.node[p]))
    }
}

/// What one graph's share of one piece holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Part {
    /// Its nodes, in topological order (`Constant` nodes it reads first).
    pub nodes: Vec<usize>,
    /// The initializers its nodes read (indices).
    pub inits: Vec<usize>,
    /// The values it reads from earlier pieces or the graph inputs, in order of first read.
    pub inputs: Vec<String>,
    /// The values it gives: read by later pieces, graph outputs, and values checked against the
    /// other model's.
    pub outputs: Vec<String>,
    /// Bytes of its initializers.
    pub weight_bytes: u64,
    /// Upper bound of its activations: the sum of every value its nodes produce (sized ones).
    pub activation_bytes: u64,
}

/// One piece: the original's part and the rewrite's.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Piece {
    /// The original's (model A) part.
    pub a: Part,
    /// The rewrite's (model B) part (no nodes when the rewrite computes everything earlier).
    pub b: Part,
}

/// The cost of holding one piece: `weight_factor × weights + activations + boundary`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Costs {
    /// Resident bytes per byte of weights while a runtime holds the piece.
    pub weight_factor: f64,
    /// How many copies of each boundary value are held (samples × chains).
    pub boundary_copies: u64,
}

impl Costs {
    /// The memory one part is estimated to need.
    pub fn of(&self, p: &Part, boundary_bytes: u64) -> u64 {
        ((p.weight_bytes as f64) * self.weight_factor) as u64
            + p.activation_bytes
            + boundary_bytes.saturating_mul(self.boundary_copies)
    }
}

/// The original's pieces as position ranges in `dag.order`: each piece as large as `limit`
/// allows (by [`Costs::of`], with value sizes from `sizes`), cut at the position of the smallest
/// boundary seen in it. A node that alone exceeds the limit is a piece of its own (the caller
/// compares the largest piece with the budget).
pub(crate) fn select(
    dag: &Dag,
    sizes: &HashMap<String, u64>,
    costs: &Costs,
    limit: u64,
) -> Vec<std::ops::Range<usize>> {
    let n = dag.order.len();
    // The last position reading each value computed by a non-constant node.
    let mut last_read: HashMap<&str, usize> = HashMap::new();
    for (p, &i) in dag.order.iter().enumerate() {
        for v in &dag.reads[i] {
            if dag.computed_by(v).is_some() {
                last_read.insert(v.as_str(), p);
            }
        }
    }
    // boundary[p]: bytes of the values produced at positions ≤ p and read after p.
    let mut boundary = vec![0u64; n];
    let mut live: HashMap<&str, usize> = HashMap::new();
    let mut live_bytes = 0u64;
    let size = |v: &str| sizes.get(v).copied().unwrap_or(0);
    for (p, &i) in dag.order.iter().enumerate() {
        for o in dag.graph.node[i].output.iter().filter(|o| !o.is_empty()) {
            if last_read.get(o.as_str()).is_some_and(|&l| l > p) {
                live.insert(o.as_str(), last_read[o.as_str()]);
                live_bytes += size(o);
            }
        }
        live.retain(|v, &mut l| {
            let keep = l > p;
            if !keep {
                live_bytes -= size(v);
            }
            keep
        });
        boundary[p] = live_bytes;
    }
    // Graph outputs are held like boundary values.
    let graph_out: HashSet<&str> = dag.outputs.iter().map(String::as_str).collect();
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < n {
        let mut part = Part::default();
        let mut seen_inits: HashSet<usize> = HashSet::new();
        let mut end = start;
        let boundary_in = if start > 0 { boundary[start - 1] } else { 0 };
        let mut given = 0u64;
        while end < n {
            let i = dag.order[end];
            let gives = given
                + dag.graph.node[i]
                    .output
                    .iter()
                    .filter(|o| graph_out.contains(o.as_str()))
                    .map(|o| size(o))
                    .sum::<u64>();
            let mut w = part.weight_bytes;
            for v in &dag.reads[i] {
                if let Some(&t) = dag.inits.get(v) {
                    if !seen_inits.contains(&t) {
                        w += tensor_bytes(&dag.graph.initializer[t]);
                    }
                }
            }
            let act = part.activation_bytes
                + dag.graph.node[i]
                    .output
                    .iter()
                    .map(|o| size(o))
                    .sum::<u64>();
            let trial = Part {
                weight_bytes: w,
                activation_bytes: act,
                ..Part::default()
            };
            if end > start && costs.of(&trial, boundary_in + boundary[end] + gives) > limit {
                break;
            }
            given = gives;
            for v in &dag.reads[i] {
                if let Some(&t) = dag.inits.get(v) {
                    seen_inits.insert(t);
                }
            }
            part.weight_bytes = w;
            part.activation_bytes = act;
            end += 1;
        }
        if end == n {
            pieces.push(start..n);
            break;
        }
        // Cut after the position with the smallest boundary in [start, end), the latest of those
        // within a quarter (plus 4 KiB) of it.
        let min = (start..end).map(|p| boundary[p]).min().unwrap_or(0);
        let near = min + min / 4 + 4096;
        let cut = (start..end)
            .rev()
            .find(|&p| boundary[p] <= near)
            .unwrap_or(end - 1);
        pieces.push(start..cut + 1);
        start = cut + 1;
    }
    pieces
}

/// The piece of each node of `dag` for the original: position ranges → node → piece.
pub(crate) fn piece_of_original(
    dag: &Dag,
    ranges: &[std::ops::Range<usize>],
) -> Vec<Option<usize>> {
    let mut piece = vec![None; dag.graph.node.len()];
    for (k, r) in ranges.iter().enumerate() {
        for p in r.clone() {
            piece[dag.order[p]] = Some(k);
        }
    }
    piece
}

/// The rewrite's piece of each of its nodes: a node computing a value the original computes in
/// piece k goes into piece k at the latest, and every node into the earliest piece of its readers
/// (graph outputs are read by the original's piece that computes them). `Constant` nodes and
/// nodes nothing needs get `None`.
pub(crate) fn assign(b: &Dag, a: &Dag, a_piece: &[Option<usize>]) -> Vec<Option<usize>> {
    let deadline = |v: &str| a.computed_by(v).and_then(|p| a_piece[p]);
    let mut piece: Vec<Option<usize>> = vec![None; b.graph.node.len()];
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for &i in &b.order {
        for v in &b.reads[i] {
            consumers.entry(v.as_str()).or_default().push(i);
        }
    }
    for &i in b.order.iter().rev() {
        let mut k: Option<usize> = None;
        for o in b.graph.node[i].output.iter().filter(|o| !o.is_empty()) {
            let mut ks: Vec<usize> = deadline(o).into_iter().collect();
            ks.extend(
                consumers
                    .get(o.as_str())
                    .into_iter()
                    .flatten()
                    .filter_map(|&c| piece[c]),
            );
            if let Some(m) = ks.into_iter().min() {
                k = Some(k.map_or(m, |x: usize| x.min(m)));
            }
        }
        piece[i] = k;
    }
    piece
}

/// Fill one part: the nodes of piece `k` (from `piece`), what they read from outside, what later
/// pieces read from them; `extra` are more values to give when the part computes them.
pub(crate) fn part(
    dag: &Dag,
    piece: &[Option<usize>],
    k: usize,
    sizes: &HashMap<String, u64>,
    extra: &BTreeSet<String>,
) -> Part {
    let mut p = Part::default();
    let mut consts: BTreeSet<usize> = BTreeSet::new();
    let mut inits: BTreeSet<usize> = BTreeSet::new();
    let mut seen_inputs: HashSet<&str> = HashSet::new();
    let mut mine: HashSet<&str> = HashSet::new();
    for &i in dag.order.iter().filter(|&&i| piece[i] == Some(k)) {
        p.nodes.push(i);
        for o in dag.graph.node[i].output.iter().filter(|o| !o.is_empty()) {
            mine.insert(o.as_str());
        }
    }
    for &i in &p.nodes {
        for v in &dag.reads[i] {
            if let Some(&t) = dag.inits.get(v) {
                inits.insert(t);
            } else if let Some(c) = dag.constant_of(v) {
                consts.insert(c);
            } else if !mine.contains(v.as_str()) && seen_inputs.insert(v.as_str()) {
                p.inputs.push(v.clone());
            }
        }
    }
    // Constants read inside bodies may read initializers of their own graph only: nothing more.
    for &c in &consts {
        for v in &dag.reads[c] {
            if let Some(&t) = dag.inits.get(v) {
                inits.insert(t);
            }
        }
    }
    let later: HashSet<&str> = dag
        .order
        .iter()
        .filter(|&&i| piece[i].is_some_and(|j| j > k))
        .flat_map(|&i| dag.reads[i].iter().map(String::as_str))
        .collect();
    let outputs: HashSet<&str> = dag.outputs.iter().map(String::as_str).collect();
    for &i in &p.nodes {
        for o in dag.graph.node[i].output.iter().filter(|o| !o.is_empty()) {
            if later.contains(o.as_str()) || outputs.contains(o.as_str()) || extra.contains(o) {
                p.outputs.push(o.clone());
            }
        }
        p.activation_bytes += dag.graph.node[i]
            .output
            .iter()
            .map(|o| sizes.get(o).copied().unwrap_or(0))
            .sum::<u64>();
    }
    p.weight_bytes = inits
        .iter()
        .map(|&t| tensor_bytes(&dag.graph.initializer[t]))
        .sum();
    p.inits = inits.into_iter().collect();
    let mut nodes: Vec<usize> = consts.into_iter().collect();
    nodes.append(&mut p.nodes);
    p.nodes = nodes;
    p
}

/// Both graphs cut into the same pieces: the original's ranges, then the rewrite's nodes
/// assigned to them, and each part's inputs and outputs (each model also gives the values the
/// other model's later pieces read, when it computes them, so that they can be checked).
pub(crate) fn pieces(
    a: &Dag,
    b: &Dag,
    ranges: &[std::ops::Range<usize>],
    sizes_a: &HashMap<String, u64>,
    sizes_b: &HashMap<String, u64>,
) -> Vec<Piece> {
    let pa = piece_of_original(a, ranges);
    let pb = assign(b, a, &pa);
    let mut out = Vec::with_capacity(ranges.len());
    for k in 0..ranges.len() {
        // A also gives what B's later pieces read; B also gives what A gives.
        let b_later: BTreeSet<String> = b
            .order
            .iter()
            .filter(|&&i| pb[i].is_some_and(|j| j > k))
            .flat_map(|&i| b.reads[i].iter().cloned())
            .collect();
        let a_all = part(a, &pa, k, sizes_a, &b_later);
        let a_out: BTreeSet<String> = a_all.outputs.iter().cloned().collect();
        let b_all = part(b, &pb, k, sizes_b, &a_out);
        out.push(Piece { a: a_all, b: b_all });
    }
    out
}
