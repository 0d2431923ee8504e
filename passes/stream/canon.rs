//! Structurally equal nodes compute one value.
//!
//! Two nodes with the same domain, op, attributes and inputs (inputs compared as values, so
//! that equality carries down a duplicated chain) compute the same tensors: an optimiser that
//! duplicated a node gives one value two names (onnxruntime on an OCR model: a split
//! LayerNorm's `Sub` reads one copy, its `ReduceMean` the other). The matchers and the stream
//! analysis compare values through [`Canon::same`], and a stream that reaches one name reaches
//! its twins ([`Canon::twins`]). Nodes that are not functions of their inputs (random ops,
//! Dropout in training mode) and nodes holding subgraphs are never merged.

use crate::ir::{Graph, NodeExt};
use prost::Message;
use std::collections::HashMap;

/// The representative name of each value computed by a duplicated node.
#[derive(Debug, Default, Clone)]
pub struct Canon {
    rep: HashMap<String, String>,
    twins: HashMap<String, Vec<String>>,
}

/// Ops whose outputs are not a function of their inputs.
fn random(op: &str) -> bool {
    matches!(
        op,
        "RandomNormal"
            | "RandomNormalLike"
            | "RandomUniform"
            | "RandomUniformLike"
            | "Bernoulli"
            | "Multinomial"
            | "Dropout"
    )
}

/// What makes two nodes compute one value: domain, op, encoded attributes, inputs (by their
/// representatives), output count.
type NodeKey = (String, String, Vec<u8>, Vec<String>, usize);

impl Canon {
    /// Find the duplicated nodes of `g` (in graph order: the graph is topologically sorted).
    pub fn new(g: &Graph) -> Canon {
        let mut c = Canon::default();
        let mut seen: HashMap<NodeKey, usize> = HashMap::new();
        for (id, n) in g.nodes().iter().enumerate() {
            if n.has_subgraph() || random(n.op()) || n.output.is_empty() {
                continue;
            }
            let attrs: Vec<u8> = n.attribute.iter().flat_map(|a| a.encode_to_vec()).collect();
            let inputs: Vec<String> = n.input.iter().map(|i| c.rep(i).to_string()).collect();
            let key = (
                n.domain().to_string(),
                n.op().to_string(),
                attrs,
                inputs,
                n.output.len(),
            );
            match seen.get(&key) {
                None => {
                    seen.insert(key, id);
                }
                Some(&first) => {
                    let f = g.node(first);
                    for (a, b) in f.output.iter().zip(&n.output) {
                        if a.is_empty() || b.is_empty() || a == b {
                            continue;
                        }
                        let r = c.rep(a).to_string();
                        c.rep.insert(b.clone(), r.clone());
                        c.twins.entry(r).or_default().push(b.clone());
                    }
                }
            }
        }
        c
    }

    /// The representative of `v` (itself unless a duplicate computes it).
    pub fn rep<'a>(&'a self, v: &'a str) -> &'a str {
        self.rep.get(v).map(String::as_str).unwrap_or(v)
    }

    /// Whether `a` and `b` are one value.
    pub fn same(&self, a: &str, b: &str) -> bool {
        a == b || self.rep(a) == self.rep(b)
    }

    /// The other names of `v`'s value.
    pub fn twins(&self, v: &str) -> Vec<String> {
        let r = self.rep(v);
        let mut out: Vec<String> = self.twins.get(r).cloned().unwrap_or_default();
        out.push(r.to_string());
        out.retain(|x| x != v);
        out
    }
}
