//! A readable, deterministic text dump of a graph, for snapshots and `inspect --graph`.
//!
//! One line per node: `outputs = domain:Op[name](inputs) attrs`. Constants read by a node are
//! shown as `@name:type[dims]`, other values as `%name`.

use super::{Graph, NodeExt};
use crate::proto::{attribute_type as at, data_type, AttributeProto, TensorProto, ValueInfoProto};
use std::fmt::Write;

fn type_str(v: &ValueInfoProto) -> String {
    let Some(tt) = v.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()) else {
        return "?".into();
    };
    let dims = tt
        .shape
        .as_ref()
        .map(|s| {
            super::shape::declared_dims(s)
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_else(|| "*".into());
    format!("{}[{}]", data_type::name(tt.elem_type.unwrap_or(0)), dims)
}

fn tensor_str(t: &TensorProto) -> String {
    let dims = t
        .dims
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(",");
    format!("{}[{}]", data_type::name(t.data_type.unwrap_or(0)), dims)
}

fn attr_str(a: &AttributeProto) -> String {
    let name = a.name.as_deref().unwrap_or("?");
    let v = match a.r#type.unwrap_or(0) {
        at::FLOAT => format!("{:e}", a.f.unwrap_or(0.0)),
        at::INT => a.i.unwrap_or(0).to_string(),
        at::STRING => format!(
            "{:?}",
            String::from_utf8_lossy(a.s.as_deref().unwrap_or(b""))
        ),
        at::INTS => format!("{:?}", a.ints),
        at::FLOATS => format!("{:?}", a.floats),
        at::TENSOR => a.t.as_ref().map(tensor_str).unwrap_or_default(),
        at::GRAPH => format!(
            "<graph {} nodes>",
            a.g.as_ref().map(|g| g.node.len()).unwrap_or(0)
        ),
        at::GRAPHS => format!("<{} graphs>", a.graphs.len()),
        _ => "…".into(),
    };
    format!("{name}={v}")
}

/// Dump a graph as text.
pub fn dump(g: &Graph) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "graph {:?}", g.name());
    for v in &g.inputs {
        let n = v.name.as_deref().unwrap_or("");
        if g.initializers.iter().any(|t| t.name.as_deref() == Some(n)) {
            continue;
        }
        let _ = writeln!(s, "  input  %{n}: {}", type_str(v));
    }
    for v in &g.outputs {
        let _ = writeln!(
            s,
            "  output %{}: {}",
            v.name.as_deref().unwrap_or(""),
            type_str(v)
        );
    }
    let bytes: usize = g
        .initializers
        .iter()
        .map(|t| t.raw_data.as_ref().map(|b| b.len()).unwrap_or(0))
        .sum();
    let _ = writeln!(
        s,
        "  {} initializers, {} bytes inline",
        g.initializers.len(),
        bytes
    );
    for n in &g.nodes {
        if n.is("Constant") {
            continue;
        }
        let ins: Vec<String> = n
            .input
            .iter()
            .map(|i| {
                if i.is_empty() {
                    "_".to_string()
                } else if let Some(t) = g.constant_tensor(i) {
                    format!("@{i}:{}", tensor_str(t))
                } else {
                    format!("%{i}")
                }
            })
            .collect();
        let outs: Vec<String> = n
            .output
            .iter()
            .map(|o| {
                if o.is_empty() {
                    "_".into()
                } else {
                    format!("%{o}")
                }
            })
            .collect();
        let op = if n.domain().is_empty() {
            n.op().to_string()
        } else {
            format!("{}:{}", n.domain(), n.op())
        };
        let mut attrs: Vec<String> = n.attribute.iter().map(attr_str).collect();
        attrs.sort();
        let _ = writeln!(
            s,
            "  {} = {op}[{}]({}){}{}",
            outs.join(", "),
            n.name(),
            ins.join(", "),
            if attrs.is_empty() { "" } else { " " },
            attrs.join(" ")
        );
    }
    s
}
