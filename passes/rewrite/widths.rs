//! CRMSNorm's guard on sizes: no D−1 reaches a size it must not, no D stays where D−1 must be.
//!
//! Compression stores each stream value with D−1 entries along its hidden axis. Integer values
//! the graph computes from shapes then change with it: `Shape(x)` of a compressed x says D−1 at
//! x's hidden axis. This check runs once every stream is planned and compressed
//! ([`super::plan()`]). It evaluates, for each small integer vector, how each entry differs in the
//! rewritten graph from the original (the same, by a known amount, or unknown:
//! [`Change`]) through the ops that move entries around (`Gather`, `Slice`, `Concat`,
//! `Unsqueeze`, `Squeeze`, `Cast`, `Identity`, `Add`/`Sub`/`Mul` by a constant), starting from
//! the `Shape`/`Size` nodes of compressed values and the constant entries compression shrinks.
//! Every other reader of such a vector is a *size input*, and must see what the rewritten graph
//! needs there: D−1 at the hidden axis of a `Reshape`/`Expand` target whose data is compressed
//! (its output keeps the compressed width), the original value everywhere else (a `Reshape` of
//! another value, a `Tile`'s repeats, `ConstantOfShape`, anything computed in floats). Where
//! they differ by a known amount, the size input gets that amount added back
//! ([`Plan::size_fixes`], an `Add` before the reader); where the change cannot be followed, the
//! stream is refused with the reader's name, never written wrong (SegFormer's and PVT-v2's
//! sequence reduction reshaping the compressed Conv output with the width of the full-width
//! norm output; GIT's Tile; a Shape that sizes the compressed value and others).

use super::super::edit::Edit;
use super::super::stream::{Analysis, Leaf, Stream};
use super::plan::Plan;
use crate::ir::{shape, NodeExt, NodeId};
use crate::proto::data_type as dt;
use crate::{Error, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// How one entry of an integer vector differs in the rewritten graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Change {
    /// By this much (0: the same).
    By(i64),
    /// By an amount the check cannot follow.
    Unknown,
}

/// How a whole integer value differs.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Delta {
    /// Not at all (whatever its length).
    Same,
    /// Entry by entry.
    Entries(Vec<Change>),
    /// In a way the check cannot follow.
    Unknown,
}

impl Delta {
    /// `Same` for entries that all change by 0.
    fn normal(self) -> Delta {
        match self {
            Delta::Entries(e) if e.iter().all(|c| *c == Change::By(0)) => Delta::Same,
            d => d,
        }
    }

    fn entries(&self, len: Option<usize>) -> Option<Vec<Change>> {
        match self {
            Delta::Same => len.map(|n| vec![Change::By(0); n]),
            Delta::Entries(e) => Some(e.clone()),
            Delta::Unknown => None,
        }
    }
}

/// One entry of an integer vector's original value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Val {
    Known(i64),
    /// A dimension of unknown size (never negative).
    NonNeg,
    Unknown,
}

/// A compressed value: the axis that has D−1 entries (unknown when its rank is) and its rank.
#[derive(Clone, Copy, Debug)]
struct Comp {
    axis: Option<usize>,
    rank: Option<usize>,
}

/// The compressed values of the accepted streams, and the reads of compressed explicit copies.
fn compressed(
    a: &Analysis,
    p: &Plan,
    streams: &[(usize, &Stream)],
) -> (HashMap<String, Comp>, HashMap<(NodeId, usize), Comp>) {
    let mut comp = HashMap::new();
    let mut copies = HashMap::new();
    for &(_, st) in streams {
        let Some(width) = st.width else { continue };
        if !p.compressed_widths.contains(&width) {
            continue;
        }
        let explicit: BTreeSet<&str> = st
            .leaves
            .iter()
            .filter(|l| matches!(l.leaf, Leaf::Explicit { .. }))
            .map(|l| l.value.as_str())
            .collect();
        for (v, h) in &st.hidden {
            let rank = h.rank.or_else(|| a.shapes.rank(v));
            let c = Comp {
                axis: rank.and_then(|r| r.checked_sub(h.from_end + 1)),
                rank,
            };
            if explicit.contains(v.as_str()) {
                for &e in st.edges.get(v).into_iter().flatten() {
                    copies.insert(e, c);
                }
            } else {
                comp.insert(v.clone(), c);
            }
        }
        for l in &st.leaves {
            match &l.leaf {
                Leaf::Const {
                    node, slot, axis, ..
                } => {
                    let dims =
                        a.g.node(*node)
                            .input(*slot)
                            .and_then(|c| a.g.constant_dims(c));
                    if let Some(dims) = dims {
                        comp.insert(
                            l.value.clone(),
                            Comp {
                                axis: axis.or(dims.len().checked_sub(1)),
                                rank: Some(dims.len()),
                            },
                        );
                    }
                }
                Leaf::Conv { node } => {
                    // Conv → [Cast] → Reshape/Flatten: channels at axis 1 until the Transpose.
                    let mut v = a.g.node(*node).out(0).map(str::to_string);
                    for _ in 0..3 {
                        let Some(x) = v.take() else { break };
                        if st.hidden.contains_key(&x) {
                            break;
                        }
                        let rank = a.shapes.rank(&x);
                        comp.insert(
                            x.clone(),
                            Comp {
                                axis: Some(1),
                                rank,
                            },
                        );
                        let data: Vec<NodeId> = a
                            .ix
                            .consumers(&x)
                            .iter()
                            .filter(|(c, _)| !a.g.node(*c).is("Shape") && !a.g.node(*c).is("Size"))
                            .map(|&(c, _)| c)
                            .collect();
                        v = match data[..] {
                            [c] => a.g.node(c).out(0).map(str::to_string),
                            _ => None,
                        };
                    }
                }
                _ => {}
            }
        }
    }
    // CRMSNorm outputs folded into their readers stay compressed (last axis) up to the readers.
    // A norm's output has its input's rank (which the analysis may know when shapes do not).
    let rank_of = |v: &str| {
        a.shapes.rank(v).or_else(|| {
            streams
                .iter()
                .find_map(|(_, st)| st.hidden.get(v).and_then(|h| h.rank))
        })
    };
    for np in &p.norms {
        let (Some(_), Some(readers)) = (np.compressed_from, &np.fold) else {
            continue;
        };
        let m = &a.norms[np.norm];
        let mut queue = vec![m.y.clone()];
        let stop: BTreeSet<NodeId> = readers.iter().map(|r| r.node).collect();
        let mut seen = BTreeSet::new();
        while let Some(v) = queue.pop() {
            if !seen.insert(v.clone()) {
                continue;
            }
            let x = m.skip.as_ref().map_or(m.x.as_str(), |s| s.a.as_str());
            let rank = rank_of(&v).or_else(|| (v == m.y).then(|| rank_of(x)).flatten());
            comp.insert(
                v.clone(),
                Comp {
                    axis: rank.and_then(|r| r.checked_sub(1)),
                    rank,
                },
            );
            for &(c, _) in a.ix.consumers(&v) {
                if !stop.contains(&c) && !a.g.node(c).is("Shape") && !a.g.node(c).is("Size") {
                    queue.extend(a.g.node(c).output.iter().filter(|o| !o.is_empty()).cloned());
                }
            }
        }
    }
    (comp, copies)
}

/// The data slots of the ops whose entries the check follows (it moves them around, or adds
/// or scales them by constants); any other read of a changed value is a size input.
fn follows(op: &str, slot: usize) -> bool {
    match op {
        "Gather" | "Slice" | "Unsqueeze" | "Squeeze" | "Identity" | "Cast" | "Reshape" => slot == 0,
        "Concat" => true,
        "Add" | "Sub" | "Mul" => slot <= 1,
        _ => false,
    }
}

struct Check<'a, 'b> {
    a: &'b Analysis<'a>,
    p: &'b Plan,
    comp: HashMap<String, Comp>,
    copies: HashMap<(NodeId, usize), Comp>,
    /// The changed integer values and how they change.
    changed: HashMap<String, Delta>,
}

impl Check<'_, '_> {
    fn len(&self, v: &str) -> Option<usize> {
        shape::const_ints(self.a.g, v)
            .map(|c| c.len())
            .or_else(|| self.a.shapes.value(v).map(<[shape::Dim]>::len))
            .or_else(|| match self.a.shapes.get(v) {
                Some([]) => Some(1),
                Some([n]) => n.known().and_then(|k| usize::try_from(k).ok()),
                _ => None,
            })
    }

    /// The planned edits of the constant read at (node, slot) that shrink entries.
    fn shrunk(&self, node: NodeId, slot: usize) -> Vec<usize> {
        self.p
            .edits
            .get(&(node, slot))
            .into_iter()
            .flatten()
            .filter_map(|e| match e {
                Edit::ShrinkDim { index, .. } => Some(*index),
                _ => None,
            })
            .collect()
    }

    /// The compressed value (or compressed copy) read at (node, slot).
    fn comp_at(&self, node: NodeId, slot: usize) -> Option<Comp> {
        let x = self.a.g.node(node).input(slot)?;
        self.comp
            .get(x)
            .copied()
            .or_else(|| self.copies.get(&(node, slot)).copied())
    }

    /// What input `slot` of `node` reads in the rewritten graph, compared with the original.
    fn input_delta(&self, node: NodeId, slot: usize) -> Delta {
        let Some(v) = self.a.g.node(node).input(slot) else {
            return Delta::Same;
        };
        let base = self.changed.get(v).cloned().unwrap_or(Delta::Same);
        let shrunk = self.shrunk(node, slot);
        if shrunk.is_empty() {
            return base;
        }
        match base.entries(self.len(v)) {
            Some(mut e) => {
                for i in shrunk {
                    match e.get_mut(i) {
                        Some(Change::By(k)) => *k -= 1,
                        _ => return Delta::Unknown,
                    }
                }
                Delta::Entries(e)
            }
            None => Delta::Unknown,
        }
    }

    /// The output of a `Shape`/`Size` node reading a compressed value, how it changes.
    fn source(&self, id: NodeId) -> Option<Delta> {
        let n = self.a.g.node(id);
        let c = self.comp_at(id, 0)?;
        if n.is("Size") {
            return Some(Delta::Unknown);
        }
        let (Some(axis), Some(r)) = (c.axis, c.rank) else {
            return Some(Delta::Unknown);
        };
        let clamp = |i: i64| -> usize {
            let i = if i < 0 { i + r as i64 } else { i };
            i.clamp(0, r as i64) as usize
        };
        let start = clamp(n.attr_i("start").unwrap_or(0));
        let end = clamp(n.attr_i("end").unwrap_or(r as i64));
        let mut e = vec![Change::By(0); end.saturating_sub(start)];
        if (start..end).contains(&axis) {
            // A Shape node the plan fixes (+1 on its last entry) says D again.
            let fixed = self.p.shape_fixes.iter().any(|&(s, rk)| s == id && rk == r)
                && axis + 1 == r
                && start == 0
                && end == r;
            e[axis - start] = Change::By(if fixed { 0 } else { -1 });
        }
        Some(Delta::Entries(e))
    }

    /// The output of a followed op, from its inputs' changes.
    fn follow(&self, id: NodeId) -> Delta {
        let a = self.a;
        let n = a.g.node(id);
        let ins: Vec<Delta> = (0..n.input.len())
            .map(|s| self.input_delta(id, s))
            .collect();
        if ins.iter().all(|d| *d == Delta::Same) {
            return Delta::Same;
        }
        let len = |s: usize| n.input(s).and_then(|x| self.len(x));
        match n.op() {
            "Identity" | "Squeeze" | "Unsqueeze" | "Reshape" => ins[0].clone(),
            "Cast" => {
                let to = n.attr_i("to").unwrap_or(0) as i32;
                if matches!(to, dt::INT64 | dt::INT32) {
                    ins[0].clone()
                } else {
                    Delta::Unknown
                }
            }
            "Gather" if n.attr_i("axis").unwrap_or(0) == 0 => {
                let idx = n.input(1).and_then(|i| shape::const_ints(a.g, i));
                let (Some(e), Some(idx)) = (ins[0].entries(len(0)), idx) else {
                    return Delta::Unknown;
                };
                let mut out = vec![];
                for i in idx {
                    let i = if i < 0 { i + e.len() as i64 } else { i };
                    match usize::try_from(i).ok().and_then(|i| e.get(i)) {
                        Some(c) => out.push(*c),
                        None => return Delta::Unknown,
                    }
                }
                Delta::Entries(out)
            }
            "Slice" => {
                let ints = |s: usize| n.input(s).and_then(|i| shape::const_ints(a.g, i));
                let (Some(e), Some(st), Some(en)) = (ins[0].entries(len(0)), ints(1), ints(2))
                else {
                    return Delta::Unknown;
                };
                let step = ints(4).and_then(|s| s.first().copied()).unwrap_or(1);
                if ints(3).is_some_and(|ax| ax != [0] && ax != [-1]) || step != 1 || st.len() != 1 {
                    return Delta::Unknown;
                }
                let l = e.len() as i64;
                let norm = |x: i64| (if x < 0 { (x + l).max(0) } else { x.min(l) }) as usize;
                let (s, t) = (norm(st[0]), norm(en[0]));
                Delta::Entries(
                    e.get(s..t.max(s))
                        .map(<[Change]>::to_vec)
                        .unwrap_or_default(),
                )
            }
            "Concat" if n.attr_i("axis").unwrap_or(0) == 0 => {
                let mut out = vec![];
                for (s, d) in ins.iter().enumerate() {
                    match d.entries(len(s)) {
                        Some(e) => out.extend(e),
                        None => return Delta::Unknown,
                    }
                }
                Delta::Entries(out)
            }
            "Add" | "Sub" | "Mul" => {
                // One changed operand and a constant: the change carries over, or is scaled.
                let (c, k) = match (&ins[0], &ins[1]) {
                    (_, Delta::Same) => (0, n.input(1)),
                    (Delta::Same, _) if n.op() != "Sub" => (1, n.input(0)),
                    _ => return Delta::Unknown,
                };
                let k = k.and_then(|o| shape::const_ints(a.g, o));
                match (ins[c].entries(len(c)), k) {
                    (Some(e), Some(k)) if k.len() == 1 || k.len() == e.len() => {
                        let kk = |i: usize| if k.len() == 1 { k[0] } else { k[i] };
                        Delta::Entries(
                            e.iter()
                                .enumerate()
                                .map(|(i, ch)| match (ch, n.op()) {
                                    (Change::By(x), "Mul") => x
                                        .checked_mul(kk(i))
                                        .map(Change::By)
                                        .unwrap_or(Change::Unknown),
                                    (ch, _) => *ch,
                                })
                                .collect(),
                        )
                    }
                    _ => Delta::Unknown,
                }
            }
            _ => Delta::Unknown,
        }
    }

    /// The original value of a small integer vector, entry by entry, as far as it can be
    /// told: shape arithmetic the exporters write (Shape, Gather, Concat, Unsqueeze, Where of
    /// Equal, ConstantOfShape, Mul/Add by constants).
    fn orig(&self, v: &str, depth: usize) -> Option<Vec<Val>> {
        let a = self.a;
        if let Some(c) = shape::const_ints(a.g, v) {
            return Some(c.into_iter().map(Val::Known).collect());
        }
        if let Some(ds) = a.shapes.value(v) {
            if ds.iter().all(|d| d.known().is_some()) {
                return Some(
                    ds.iter()
                        .map(|d| Val::Known(d.known().unwrap_or(0)))
                        .collect(),
                );
            }
        }
        if depth > 16 {
            return None;
        }
        let p = a.ix.producer(v)?;
        let n = a.g.node(p);
        if !n.domain().is_empty() {
            return None;
        }
        let inp = |s: usize| n.input(s).and_then(|x| self.orig(x, depth + 1));
        match n.op() {
            "Shape" => {
                let ds = a.shapes.get(n.input(0)?)?;
                let r = ds.len() as i64;
                let clamp = |i: i64| (if i < 0 { i + r } else { i }).clamp(0, r) as usize;
                let (s, e) = (
                    clamp(n.attr_i("start").unwrap_or(0)),
                    clamp(n.attr_i("end").unwrap_or(r)),
                );
                Some(
                    ds.get(s..e.max(s))?
                        .iter()
                        .map(|d| d.known().map_or(Val::NonNeg, Val::Known))
                        .collect(),
                )
            }
            "Identity" | "Unsqueeze" | "Squeeze" | "Reshape" | "Cast" => inp(0),
            "Slice" => {
                let x = inp(0)?;
                let ints = |s: usize| n.input(s).and_then(|i| shape::const_ints(a.g, i));
                let (st, en) = (ints(1)?, ints(2)?);
                let step = ints(4).and_then(|s| s.first().copied()).unwrap_or(1);
                if st.len() != 1 || step != 1 || ints(3).is_some_and(|ax| ax != [0] && ax != [-1]) {
                    return None;
                }
                let l = x.len() as i64;
                let norm = |v: i64| (if v < 0 { (v + l).max(0) } else { v.min(l) }) as usize;
                let (s, t) = (norm(st[0]), norm(en[0]));
                x.get(s..t.max(s)).map(<[Val]>::to_vec)
            }
            "Gather" if n.attr_i("axis").unwrap_or(0) == 0 => {
                let x = inp(0)?;
                let idx = shape::const_ints(a.g, n.input(1)?)?;
                idx.iter()
                    .map(|&i| {
                        let i = if i < 0 { i + x.len() as i64 } else { i };
                        usize::try_from(i).ok().and_then(|i| x.get(i).copied())
                    })
                    .collect()
            }
            "Concat" => {
                // A piece whose values cannot be told, of a known length: unknown entries.
                let mut out = vec![];
                for s in 0..n.input.len() {
                    match inp(s) {
                        Some(e) => out.extend(e),
                        None => out.extend(vec![Val::Unknown; self.len(n.input(s)?)?]),
                    }
                }
                Some(out)
            }
            "ConstantOfShape" => {
                let len = inp(0)?;
                let [Val::Known(k)] = len[..] else {
                    return None;
                };
                let fill = n
                    .attribute
                    .iter()
                    .find(|x| x.name.as_deref() == Some("value"))
                    .and_then(|x| x.t.as_ref())
                    .and_then(|t| {
                        crate::ir::read_array(t, &Default::default(), std::path::Path::new("")).ok()
                    })
                    .and_then(|arr| arr.data.first().copied())
                    .unwrap_or(0.0) as i64;
                Some(vec![
                    Val::Known(fill);
                    usize::try_from(k).ok().filter(|&k| k <= 64)?
                ])
            }
            "Mul" | "Add" | "Sub" | "Equal" => {
                let (x, y) = (inp(0)?, inp(1)?);
                let n_out = x.len().max(y.len());
                let at = |v: &[Val], i: usize| if v.len() == 1 { v[0] } else { v[i] };
                if !(x.len() == n_out || x.len() == 1) || !(y.len() == n_out || y.len() == 1) {
                    return None;
                }
                Some(
                    (0..n_out)
                        .map(|i| match (n.op(), at(&x, i), at(&y, i)) {
                            (_, Val::Known(p), Val::Known(q)) => match n.op() {
                                "Mul" => p.checked_mul(q).map_or(Val::Unknown, Val::Known),
                                "Add" => p.checked_add(q).map_or(Val::Unknown, Val::Known),
                                "Sub" => p.checked_sub(q).map_or(Val::Unknown, Val::Known),
                                _ => Val::Known(i64::from(p == q)),
                            },
                            // A dimension is never negative.
                            ("Equal", Val::NonNeg, Val::Known(q))
                            | ("Equal", Val::Known(q), Val::NonNeg)
                                if q < 0 =>
                            {
                                Val::Known(0)
                            }
                            _ => Val::Unknown,
                        })
                        .collect(),
                )
            }
            "Where" => {
                let (c, x, y) = (inp(0)?, inp(1)?, inp(2)?);
                let n_out = c.len().max(x.len()).max(y.len());
                let at = |v: &[Val], i: usize| v.get(if v.len() == 1 { 0 } else { i }).copied();
                (0..n_out)
                    .map(|i| match at(&c, i)? {
                        Val::Known(0) => at(&y, i),
                        Val::Known(_) => at(&x, i),
                        _ => Some(Val::Unknown),
                    })
                    .collect()
            }
            _ => None,
        }
    }

    /// What size input `slot` of `node` must say in the rewritten graph, compared with the
    /// original (`len` entries): −1 at the hidden axis of a Reshape/Expand target or of Resize
    /// sizes whose data is compressed, unless the entry follows the data by itself (Reshape's
    /// −1 and 0, Expand's 1); 0 elsewhere. `None` when that cannot be told.
    fn required(&self, node: NodeId, slot: usize, len: usize) -> Option<Vec<i64>> {
        let n = self.a.g.node(node);
        let mut req = vec![0; len];
        let sizing =
            (slot == 1 && (n.is("Reshape") || n.is("Expand"))) || (slot == 3 && n.is("Resize"));
        if !sizing {
            return Some(req);
        }
        let Some(c) = self.comp_at(node, 0) else {
            return Some(req);
        };
        let y = n.out(0)?;
        let b = match self.comp.get(y) {
            Some(cy) => cy.axis?,
            None if n.is("Expand") => (c.axis? + len).checked_sub(c.rank?)?,
            None if n.is("Resize") => c.axis?,
            None => return None,
        };
        let orig = n.input(slot).and_then(|v| self.orig(v, 0));
        let follows = match orig.as_ref().and_then(|o| o.get(b)) {
            Some(Val::Known(-1 | 0)) => n.is("Reshape"),
            Some(Val::Known(1)) => n.is("Expand"),
            // Not known: an entry read from a compressed value's shape said D and now says
            // D−1, as it must; anything else cannot be told.
            Some(Val::NonNeg | Val::Unknown) | None => {
                let own = matches!(
                    self.input_delta(node, slot).entries(Some(len)),
                    Some(e) if e.get(b) == Some(&Change::By(-1))
                );
                if !own {
                    return None;
                }
                false
            }
            Some(Val::Known(_)) => false,
        };
        if !follows {
            *req.get_mut(b)? = -1;
        }
        Some(req)
    }
}

/// Check (and fix) every size input after compression; see the module doc.
pub(super) fn check(a: &Analysis, p: &mut Plan, streams: &[(usize, &Stream)]) -> Result<()> {
    if p.compressed_widths.is_empty() {
        return Ok(());
    }
    let (comp, copies) = compressed(a, p, streams);
    let mut ck = Check {
        a,
        p,
        comp,
        copies,
        changed: HashMap::new(),
    };
    // Forward, in graph order (topological): sources, followed ops, size inputs.
    let mut sinks: BTreeSet<(NodeId, usize)> = BTreeSet::new();
    for (id, n) in a.g.nodes().iter().enumerate() {
        if (n.is("Reshape") || n.is("Expand")) && ck.comp_at(id, 0).is_some() {
            sinks.insert((id, 1));
        }
        // A Resize of compressed data by sizes (a position table resized to the image): its
        // sizes must say D−1 at the hidden axis, computed or not.
        if n.is("Resize") && n.input(3).is_some() && ck.comp_at(id, 0).is_some() {
            sinks.insert((id, 3));
        }
        if n.is("Shape") || n.is("Size") {
            if let (Some(d), Some(o)) = (ck.source(id).map(Delta::normal), n.out(0)) {
                if d != Delta::Same {
                    ck.changed.insert(o.to_string(), d);
                }
            }
            continue;
        }
        let changed: Vec<usize> = (0..n.input.len())
            .filter(|&s| {
                n.input(s).is_some()
                    && (n.input(s).is_some_and(|v| ck.changed.contains_key(v))
                        || !ck.shrunk(id, s).is_empty())
            })
            .collect();
        if changed.is_empty() {
            continue;
        }
        if n.domain().is_empty() && changed.iter().all(|&s| follows(n.op(), s)) {
            let d = ck.follow(id).normal();
            if d != Delta::Same {
                if let Some(o) = n.out(0) {
                    ck.changed.insert(o.to_string(), d);
                }
            }
        } else {
            sinks.extend(changed.into_iter().map(|s| (id, s)));
        }
    }
    for (v, _) in ck.changed.iter().filter(|(_, d)| **d != Delta::Same) {
        if a.ix.graph_outputs.contains(v) || a.ix.subgraph_reads.contains_key(v) {
            return Err(Error::NotRewritable(format!(
                "cannot compress the stream: {v:?}, computed from a compressed width, is read outside the graph"
            )));
        }
    }
    let mut fixes: BTreeMap<(NodeId, usize), Vec<i64>> = BTreeMap::new();
    for (node, slot) in sinks {
        let n = a.g.node(node);
        let v = n.input(slot).unwrap_or("").to_string();
        let refuse = |why: &str| {
            Error::NotRewritable(format!(
                "cannot compress the stream: input {slot} ({v:?}) of {} {:?} {why}",
                n.op().escape_debug(),
                n.label()
            ))
        };
        let actual = ck.input_delta(node, slot);
        let len = ck.len(&v).or(match &actual {
            Delta::Entries(e) => Some(e.len()),
            _ => None,
        });
        let Some(len) = len else {
            return Err(refuse("has a length the pass cannot tell"));
        };
        let Some(req) = ck.required(node, slot, len) else {
            return Err(refuse(
                "sizes a compressed value along an axis the pass cannot tell",
            ));
        };
        let Some(act) = actual.entries(Some(len)) else {
            return Err(refuse(
                "is computed from a compressed width in a way the pass cannot follow",
            ));
        };
        if act.len() != req.len() {
            return Err(refuse("has a length the pass cannot follow"));
        }
        let mut fix = vec![0i64; len];
        for (i, (c, r)) in act.iter().zip(&req).enumerate() {
            match c {
                Change::By(k) => fix[i] = r - k,
                Change::Unknown => {
                    return Err(refuse(
                        "is computed from a compressed width in a way the pass cannot follow",
                    ))
                }
            }
        }
        if fix.iter().any(|&x| x != 0) {
            fixes.insert((node, slot), fix);
        }
    }
    p.size_fixes
        .extend(fixes.into_iter().map(|((n, s), f)| (n, s, f)));
    Ok(())
}
