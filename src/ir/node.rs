//! Convenience accessors on nodes.

use crate::proto::{attribute_type as at, NodeProto};

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
