//! Cuts: where explicit centring goes.
//!
//! A *cut* at stream value t keeps t and everything the stream computes it from (its *cone*)
//! as they are, and gives t's stream-side readers a centred copy, t − m(t) (one explicit
//! centring). It is exact when the cone is private: nothing but the cone's own carriers (and
//! t's producer) reads a cone value on the stream side, and no norm does — then every stream
//! reader still reads a centred value, and every other reader of a cone value (or of t) reads
//! the original.
//!
//! Cuts are used
//! - to move an explicit centring the growth put at a value whose hidden axis is not its last
//!   (a GELU before a Transpose, Whisper's convolutional stem) down to the first values with the
//!   hidden axis last (the centring node reduces over the last axis);
//! - for an observed value before the first norm (Wav2Vec2-stable's positional Conv reads the
//!   feature projection): cutting at the value, or below it, leaves the observer the original;
//! - by cost: a value whose cone holds k ≥ 2 explicit centrings is centred once instead.

use super::{Analysis, Fact, Leaf, Stream};
use crate::ir::NodeExt;
use crate::passes::report::Refusal;
use std::collections::BTreeSet;

/// The value a refusal is about, when it is about one value.
fn refusal_value(r: &Refusal) -> Option<&str> {
    match r {
        Refusal::GraphOutput { value }
        | Refusal::ReadInSubgraph { value, .. }
        | Refusal::ObservedBy { value, .. }
        | Refusal::Unknown { value, .. } => Some(value),
        _ => None,
    }
}

/// Leaves in their order: by value, then the constants by (node, slot).
fn sort_leaves(st: &mut Stream) {
    st.leaves.sort_by(|a, b| {
        let key = |l: &super::LeafAt| match l.leaf {
            Leaf::Const { node, slot, .. } => (1, String::new(), node, slot),
            _ => (0, l.value.clone(), 0, 0),
        };
        key(a).cmp(&key(b))
    });
}

impl Analysis<'_> {
    /// The values stream value `t` is computed from through carriers (not `t` itself).
    pub(super) fn cone(&self, st: &Stream, t: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut stack: Vec<&str> = vec![t];
        while let Some(v) = stack.pop() {
            for u in st.up.get(v).into_iter().flatten() {
                if u != t && st.hidden.contains_key(u) && out.insert(u.clone()) {
                    stack.push(u);
                }
            }
        }
        out
    }

    /// Whether the stream can be cut at `t` with cone `cone`; else why not.
    fn can_cut(&self, st: &Stream, t: &str, cone: &BTreeSet<String>) -> Result<(), String> {
        if !matches!(st.fact(t), Fact::Stream(h) if h.is_last()) {
            return Err(format!("the hidden axis of {t:?} is not its last"));
        }
        for u in cone {
            for &(c, _) in st.edges.get(u).into_iter().flatten() {
                let n = self.g.node(c);
                if let Some(&k) = self.norm_by_node.get(&c) {
                    return Err(format!(
                        "norm {:?} reads {u:?}, which {t:?} is computed from",
                        self.g.node(self.norms[k].anchor).label()
                    ));
                }
                let private = n
                    .output
                    .iter()
                    .filter(|o| st.hidden.contains_key(*o))
                    .all(|o| o == t || cone.contains(o));
                if !private {
                    return Err(format!(
                        "{} {:?} reads {u:?}, which {t:?} is computed from, and writes elsewhere in the stream",
                        n.op().escape_debug(),
                        n.label()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Cut the stream at `t` (see the module doc): its cone leaves the stream, `t` becomes an
    /// explicit centring, what was observed of them is resolved (the observers read originals).
    fn cut(&self, st: &mut Stream, t: &str, cone: &BTreeSet<String>, why: String) {
        let producers: BTreeSet<usize> = cone
            .iter()
            .chain(std::iter::once(&t.to_string()))
            .filter_map(|v| self.ix.producer(v))
            .collect();
        for v in cone {
            st.values.remove(v);
            st.chain_values.remove(v);
            st.hidden.remove(v);
            st.edges.remove(v);
            st.up.remove(v);
        }
        st.up.remove(t);
        st.leaves.retain(|l| match &l.leaf {
            Leaf::Const { node, .. } => !producers.contains(node),
            _ => l.value != t && !cone.contains(&l.value),
        });
        st.norm_sources
            .retain(|&k| !cone.contains(&self.norms[k].y) && self.norms[k].y != t);
        st.chain_shapes
            .retain(|(node, _, _)| !producers.contains(node));
        st.observed
            .retain(|r| refusal_value(r).is_none_or(|v| v != t && !cone.contains(v)));
        st.leaves.push(super::LeafAt {
            value: t.to_string(),
            leaf: Leaf::Explicit { why },
        });
        sort_leaves(st);
    }

    /// Why `t` is centred explicitly: what computes it.
    fn computed_by(&self, t: &str) -> String {
        match self.ix.producer(t) {
            Some(p) => {
                let n = self.g.node(p);
                format!(
                    "it is computed by {} {:?}, not by a constant-weight linear op",
                    n.op().escape_debug(),
                    n.label()
                )
            }
            None => format!("{t:?} has no producer"),
        }
    }

    /// Place the explicit centrings of a grown stream: an explicit centring at a value whose
    /// hidden axis is not its last moves down to the first values whose hidden axis is; values
    /// read outside the stream keep their values when cuts pay off; centrings shared by one
    /// value are merged into one there.
    pub(super) fn place(&self, st: &mut Stream) {
        self.relocate(st);
        if !st.observers.is_empty() {
            let mut trial = st.clone();
            if self.cut_observed(&mut trial) {
                self.merge(&mut trial);
                if self.explicit_count(&trial) < self.converted(&trial) {
                    *st = trial;
                    return;
                }
            }
        }
        self.merge(st);
    }

    /// Explicit centrings of a stream.
    fn explicit_count(&self, st: &Stream) -> usize {
        st.leaves
            .iter()
            .filter(|l| matches!(l.leaf, Leaf::Explicit { .. }))
            .count()
    }

    /// LayerNorms a stream would convert (RMSNorm, or precomputed into a table).
    fn converted(&self, st: &Stream) -> usize {
        st.norms
            .iter()
            .filter(|&&k| self.norms[k].kind == crate::passes::norms::NormKind::LayerNorm)
            .count()
            + st.leaves
                .iter()
                .filter(|l| matches!(l.leaf, Leaf::LnTable { .. }))
                .count()
    }

    /// Keep every value read outside the stream (and all it is computed from) as it is, when no
    /// norm reads any of them (the raw reads come before the first norm): where such a value
    /// meets the rest of the stream, its stream-side readers read a centred copy (an explicit
    /// centring at the value, like a leaf read outside). Whether nothing is left to observe (else
    /// false, `st` half done).
    fn cut_observed(&self, st: &mut Stream) -> bool {
        // What must keep its value: the observed values and their cones.
        let mut keep: BTreeSet<String> = BTreeSet::new();
        for v in st.observers.keys() {
            if st.hidden.contains_key(v) {
                keep.insert(v.clone());
                keep.extend(self.cone(st, v));
            }
        }
        // Only before the first norm: a norm reading a kept value would read it raw (exported
        // hidden states between blocks stay a refusal).
        let norm_reads = |u: &String| {
            st.edges
                .get(u)
                .into_iter()
                .flatten()
                .any(|(c, _)| self.norm_by_node.contains_key(c))
        };
        if keep.is_empty() || keep.iter().any(norm_reads) {
            return false;
        }
        // Where kept values meet the stream: reads by nodes that make no kept value.
        let mut frontier: BTreeSet<String> = BTreeSet::new();
        for u in &keep {
            for &(c, _) in st.edges.get(u).into_iter().flatten() {
                let inside = !self.norm_by_node.contains_key(&c)
                    && self
                        .g
                        .node(c)
                        .output
                        .iter()
                        .filter(|o| st.hidden.contains_key(*o))
                        .all(|o| keep.contains(o));
                if !inside {
                    frontier.insert(u.clone());
                }
            }
        }
        let producers: BTreeSet<usize> = keep.iter().filter_map(|v| self.ix.producer(v)).collect();
        for u in &keep {
            st.up.remove(u);
            if frontier.contains(u) {
                let edges: Vec<(usize, usize)> = st.edges[u]
                    .iter()
                    .copied()
                    .filter(|&(c, _)| {
                        self.norm_by_node.contains_key(&c)
                            || self
                                .g
                                .node(c)
                                .output
                                .iter()
                                .filter(|o| st.hidden.contains_key(*o))
                                .any(|o| !keep.contains(o))
                    })
                    .collect();
                st.edges.insert(u.clone(), edges);
            } else {
                st.values.remove(u);
                st.chain_values.remove(u);
                st.hidden.remove(u);
                st.edges.remove(u);
            }
        }
        let reader = |u: &str| {
            st.observers
                .get(u)
                .cloned()
                .unwrap_or_else(|| "a value it is computed into".into())
        };
        let mut leaves: Vec<super::LeafAt> = st
            .leaves
            .iter()
            .filter(|l| match &l.leaf {
                Leaf::Const { node, .. } => !producers.contains(node),
                _ => !keep.contains(&l.value),
            })
            .cloned()
            .collect();
        for f in &frontier {
            leaves.push(super::LeafAt {
                value: f.clone(),
                leaf: Leaf::Explicit {
                    why: format!(
                        "its original value is read outside the stream (by {})",
                        reader(f)
                    ),
                },
            });
        }
        st.leaves = leaves;
        sort_leaves(st);
        st.norm_sources
            .retain(|&k| !keep.contains(&self.norms[k].y) || frontier.contains(&self.norms[k].y));
        st.chain_shapes
            .retain(|(node, _, _)| !producers.contains(node));
        st.observed
            .retain(|r| refusal_value(r).is_none_or(|v| !keep.contains(v)));
        st.observers.retain(|v, _| !keep.contains(v));
        // A frontier value whose hidden axis is not last cannot be centred by the node, nor one
        // whose rank shape inference contradicts (the analysis cannot tell its axis).
        frontier.iter().all(|f| {
            st.hidden.get(f).is_some_and(|h| {
                h.is_last()
                    && !matches!((h.rank, self.shapes.rank(f)), (Some(x), Some(y)) if x != y)
            })
        }) && st.observed.is_empty()
    }

    /// Merge explicit centrings by cost: a value whose cone holds k ≥ 2 of them, and that can be
    /// cut, is centred once instead (Wav2Vec2-stable: the projection read raw by the positional
    /// Conv, plus its GELU output, centred once as their sum).
    fn merge(&self, st: &mut Stream) {
        loop {
            let explicit: BTreeSet<String> = st
                .leaves
                .iter()
                .filter(|l| matches!(l.leaf, Leaf::Explicit { .. }))
                .map(|l| l.value.clone())
                .collect();
            if explicit.len() < 2 {
                return;
            }
            let mut best: Option<(usize, String, BTreeSet<String>)> = None;
            for (w, h) in &st.hidden {
                if !h.is_last() {
                    continue;
                }
                let cone = self.cone(st, w);
                let k = cone.iter().filter(|c| explicit.contains(*c)).count();
                let saves = k.saturating_sub(usize::from(!explicit.contains(w)));
                if saves == 0 || best.as_ref().is_some_and(|b| b.0 >= saves) {
                    continue;
                }
                if self.can_cut(st, w, &cone).is_ok() {
                    best = Some((saves, w.clone(), cone));
                }
            }
            let Some((_, w, cone)) = best else { return };
            let why = format!(
                "it is the first value computed from {} explicit centrings' values: centred once",
                cone.iter().filter(|c| explicit.contains(*c)).count()
            );
            self.cut(st, &w, &cone, why);
        }
    }

    /// Move explicit centrings at values whose hidden axis is not last down to the first values
    /// whose hidden axis is.
    fn relocate(&self, st: &mut Stream) {
        loop {
            let misplaced = st.leaves.iter().find_map(|l| match l.leaf {
                Leaf::Explicit { .. } if st.hidden.get(&l.value).is_some_and(|h| !h.is_last()) => {
                    Some(l.value.clone())
                }
                _ => None,
            });
            let Some(e) = misplaced else { break };
            // The first values below e with the hidden axis last.
            let mut targets: BTreeSet<String> = BTreeSet::new();
            let mut seen: BTreeSet<String> = BTreeSet::new();
            let mut stack = vec![e.clone()];
            while let Some(u) = stack.pop() {
                if !seen.insert(u.clone()) {
                    continue;
                }
                for &(c, _) in st.edges.get(&u).into_iter().flatten() {
                    for o in &self.g.node(c).output {
                        match st.hidden.get(o) {
                            Some(h) if h.is_last() => {
                                targets.insert(o.clone());
                            }
                            Some(_) => stack.push(o.clone()),
                            None => {}
                        }
                    }
                }
            }
            let mut done = false;
            for t in &targets {
                let cone = self.cone(st, t);
                if !cone.contains(&e) {
                    continue;
                }
                match self.can_cut(st, t, &cone) {
                    Ok(()) => {
                        let why = self.computed_by(t);
                        self.cut(st, t, &cone, why);
                        done = true;
                    }
                    Err(why) => {
                        st.observed.push(Refusal::Unknown {
                            value: e.clone(),
                            why: format!(
                                "its centring cannot move to {t:?}, where the hidden axis is last: {why}"
                            ),
                        });
                    }
                }
            }
            if !done {
                // Nowhere to move it: refuse, and stop looking at this leaf.
                st.observed.push(Refusal::Unknown {
                    value: e.clone(),
                    why: "it would need an explicit centring, and its hidden axis is not its last"
                        .into(),
                });
                st.leaves.retain(|l| l.value != e);
            }
        }
    }
}
