//! Subgraphs (If branches, Loop and Scan bodies) as graphs of their own.
//!
//! A body is a `GraphProto` held in a node attribute; it reads values of the enclosing scopes by
//! name (outer-scope references). The helpers here list the bodies of a graph, take one out
//! and put it back, find what it reads from outside, rename such a read, and keep names unique
//! across scopes. The rewrite of bodies itself is in `passes/subgraph.rs`.
//!
//! Invariant kept: names stay unique over the whole model (ONNX forbids a body value shadowing
//! an outer one), so a name made fresh in one scope is fresh everywhere ([`Graph::fresh_name`]
//! already counts the names inside bodies; [`Graph::reserve_names`] adds names of other scopes).

use super::{Graph, NodeExt, NodeId, Pending};
use crate::error::{Error, Result};
use crate::proto::{GraphProto, NodeProto, TensorProto};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Where a body lives: the node, the attribute's position, and the position in `graphs` for
/// list-valued attributes (`None` for a single `g`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BodyRef {
    /// The node holding the body.
    pub node: NodeId,
    /// Index into the node's attributes.
    pub attr: usize,
    /// Index into the attribute's `graphs`, or `None` for its `g`.
    pub index: Option<usize>,
}

/// Every name a node defines or reads (its inputs, outputs, name), inside its bodies too.
pub fn node_names(n: &NodeProto, out: &mut HashSet<String>) {
    out.extend(n.input.iter().cloned());
    out.extend(n.output.iter().cloned());
    if let Some(nm) = &n.name {
        out.insert(nm.clone());
    }
    for a in &n.attribute {
        for g in a.g.iter().chain(a.graphs.iter()) {
            graph_names(g, out);
        }
    }
}

/// Every name in a GraphProto: values, initializers, nodes, declared values, recursively.
pub fn graph_names(g: &GraphProto, out: &mut HashSet<String>) {
    for n in &g.node {
        node_names(n, out);
    }
    out.extend(g.initializer.iter().filter_map(|t| t.name.clone()));
    out.extend(
        g.input
            .iter()
            .chain(&g.output)
            .chain(&g.value_info)
            .filter_map(|v| v.name.clone()),
    );
}

/// The names a body reads without defining them (from its enclosing scopes), sorted.
pub fn outer_reads_of(g: &GraphProto) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    super::graph::outer_reads(g, &mut out);
    out
}

/// Make every read of the outer value `from` inside `g` (and its nested bodies, unless one
/// defines `from` itself) read `to`. Returns how many reads were renamed.
pub fn rename_reads(g: &mut GraphProto, from: &str, to: &str) -> usize {
    let defines = g.input.iter().any(|v| v.name.as_deref() == Some(from))
        || g.initializer
            .iter()
            .any(|t| t.name.as_deref() == Some(from))
        || g.node.iter().any(|n| n.output.iter().any(|o| o == from));
    if defines {
        return 0;
    }
    let mut k = 0;
    for n in &mut g.node {
        for i in n.input.iter_mut().filter(|i| *i == from) {
            *i = to.to_string();
            k += 1;
        }
        for a in &mut n.attribute {
            for sg in a.g.iter_mut().chain(a.graphs.iter_mut()) {
                k += rename_reads(sg, from, to);
            }
        }
    }
    for o in g
        .output
        .iter_mut()
        .filter(|o| o.name.as_deref() == Some(from))
    {
        o.name = Some(to.to_string());
        k += 1;
    }
    k
}

/// Count op types of `nodes` and of every body inside them into `h` (domain-qualified when not
/// the default domain).
pub fn deep_histogram(nodes: &[NodeProto], h: &mut BTreeMap<String, usize>) {
    for n in nodes {
        let k = if n.domain().is_empty() {
            n.op().to_string()
        } else {
            format!("{}:{}", n.domain(), n.op())
        };
        *h.entry(k).or_insert(0) += 1;
        for a in &n.attribute {
            for g in a.g.iter().chain(a.graphs.iter()) {
                deep_histogram(&g.node, h);
            }
        }
    }
}

impl Graph {
    /// The bodies held by this graph's nodes (not nested ones), in node order, each with a
    /// readable label such as `If "/If" then_branch`.
    pub fn bodies(&self) -> Vec<(BodyRef, String)> {
        let mut v = Vec::new();
        for (id, n) in self.nodes.iter().enumerate() {
            for (ai, a) in n.attribute.iter().enumerate() {
                let attr = a.name.as_deref().unwrap_or("?");
                let name = if n.name().is_empty() {
                    n.label()
                } else {
                    n.name().to_string()
                };
                if a.g.is_some() {
                    v.push((
                        BodyRef {
                            node: id,
                            attr: ai,
                            index: None,
                        },
                        format!("{} {name:?} {attr}", n.op()),
                    ));
                }
                for gi in 0..a.graphs.len() {
                    v.push((
                        BodyRef {
                            node: id,
                            attr: ai,
                            index: Some(gi),
                        },
                        format!("{} {name:?} {attr}[{gi}]", n.op()),
                    ));
                }
            }
        }
        v
    }

    /// The body at `r`.
    pub fn body(&self, r: &BodyRef) -> Option<&GraphProto> {
        let a = self.nodes.get(r.node)?.attribute.get(r.attr)?;
        match r.index {
            None => a.g.as_ref(),
            Some(i) => a.graphs.get(i),
        }
    }

    /// Put a body back at `r` (replacing the one there).
    pub fn set_body(&mut self, r: &BodyRef, g: GraphProto) -> Result<()> {
        let slot = self
            .nodes
            .get_mut(r.node)
            .and_then(|n| n.attribute.get_mut(r.attr))
            .and_then(|a| match r.index {
                None => a.g.as_mut(),
                Some(i) => a.graphs.get_mut(i),
            })
            .ok_or_else(|| Error::Internal(format!("no body at {r:?}")))?;
        *slot = g;
        Ok(())
    }

    /// Count `names` as taken, so that [`Graph::fresh_name`] never hands them out.
    pub fn reserve_names<'a>(&mut self, names: impl IntoIterator<Item = &'a String>) {
        self.init_taken();
        for n in names {
            if !self.taken.contains(n) {
                self.taken.insert(n.clone());
            }
        }
    }

    /// The names taken in this graph (its own, its bodies', reserved and handed-out ones).
    pub fn taken_names(&mut self) -> &HashSet<String> {
        self.init_taken();
        &self.taken
    }

    /// How many places of this graph itself (node inputs, graph outputs; not bodies) read
    /// `name`.
    pub fn direct_reads(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .map(|n| n.input.iter().filter(|i| *i == name).count())
            .sum::<usize>()
            + self
                .outputs
                .iter()
                .filter(|o| o.name.as_deref() == Some(name))
                .count()
    }

    /// Set the initializer named like `t`: replace it in place when it exists, else append
    /// it. `pending` (a write-time computation of its values, see [`Pending`]) replaces any
    /// pending computation of that name; `None` clears it.
    pub fn put_initializer(&mut self, t: TensorProto, pending: Option<Pending>) -> Result<()> {
        let name = t
            .name
            .clone()
            .ok_or_else(|| Error::Internal("put_initializer: a tensor without a name".into()))?;
        match self.initializer_pos(&name) {
            Some(p) => self.initializers[p] = t,
            None => {
                self.taken.insert(name.clone());
                self.push_initializer(t);
            }
        }
        match pending {
            Some(p) => {
                self.pending.insert(name, p);
            }
            None => {
                self.pending.remove(&name);
            }
        }
        Ok(())
    }

    /// Op counts of this graph and every body inside it.
    pub fn deep_histogram(&self) -> BTreeMap<String, usize> {
        let mut h = BTreeMap::new();
        deep_histogram(&self.nodes, &mut h);
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{AttributeProto, ValueInfoProto};

    fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn vi(n: &str) -> ValueInfoProto {
        ValueInfoProto {
            name: Some(n.into()),
            ..Default::default()
        }
    }

    #[test]
    fn bodies_reads_rename_and_names() {
        let inner = GraphProto {
            node: vec![node("Add", &["w", "z"], &["q"])],
            output: vec![vi("q")],
            ..Default::default()
        };
        let mut then_b = GraphProto {
            node: vec![node("Mul", &["x", "w"], &["y"])],
            output: vec![vi("y")],
            ..Default::default()
        };
        then_b.node.push(NodeProto {
            attribute: vec![AttributeProto {
                name: Some("body".into()),
                g: Some(inner),
                ..Default::default()
            }],
            ..node("Loop", &["", ""], &["l"])
        });
        let else_b = GraphProto {
            node: vec![node("Identity", &["w"], &["y2"])],
            output: vec![vi("y2")],
            ..Default::default()
        };
        let mut ifn = node("If", &["c"], &["o"]);
        ifn.name = Some("/If".into());
        ifn.attribute = vec![
            AttributeProto {
                name: Some("then_branch".into()),
                g: Some(then_b),
                ..Default::default()
            },
            AttributeProto {
                name: Some("else_branch".into()),
                g: Some(else_b),
                ..Default::default()
            },
        ];
        let mut g = Graph::from_proto(GraphProto {
            node: vec![ifn],
            input: vec![vi("c"), vi("x")],
            output: vec![vi("o")],
            ..Default::default()
        });
        let b = g.bodies();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].1, "If \"/If\" then_branch");
        let then_b = g.body(&b[0].0).unwrap().clone();
        let reads: Vec<String> = outer_reads_of(&then_b).into_iter().collect();
        assert_eq!(reads, ["w", "x", "z"]);
        // Names inside bodies are taken.
        let f = g.fresh_name("q");
        assert_eq!(f, "q_1");
        let mut t = then_b.clone();
        assert_eq!(
            rename_reads(&mut t, "w", "w2"),
            2,
            "in the body and the nested Loop"
        );
        assert_eq!(
            outer_reads_of(&t).into_iter().collect::<Vec<_>>(),
            ["w2", "x", "z"]
        );
        g.set_body(&b[0].0, t).unwrap();
        assert_eq!(g.deep_histogram().get("Add"), Some(&1));
        assert_eq!(g.direct_reads("c"), 1);
        assert_eq!(g.direct_reads("w"), 0);
    }
}
