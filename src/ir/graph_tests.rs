//! The constant index through every edit of the mutation API.

use super::*;
use crate::io::ExternalStore;
use crate::proto::{data_type as dt, AttributeProto};
use crate::proto::{GraphProto, NodeProto, TensorProto, ValueInfoProto};
use crate::tensor::{self, Array};
use std::path::Path;

fn t(name: &str, v: f64) -> TensorProto {
    tensor::tensor_from_f64(name, &[1], dt::FLOAT, &[v]).unwrap()
}

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn value(g: &Graph, name: &str) -> Option<f64> {
    let t = g.constant_tensor(name)?;
    let a = read_array(t, &ExternalStore::default(), Path::new("")).unwrap();
    a.data.first().copied()
}

/// `constant_tensor` answers from an index: it must stay right through every edit of the
/// mutation API (the only way to edit a graph).
#[test]
fn constant_index_follows_every_edit() {
    let mut konst = node("Constant", "k", &[], &["c"]);
    konst.attribute.push(AttributeProto {
        name: Some("value".into()),
        t: Some(t("c_value", 3.0)),
        ..Default::default()
    });
    let mut g = Graph::from_proto(GraphProto {
        initializer: vec![t("a", 1.0), t("b", 2.0), t("e", 5.0)],
        input: vec![ValueInfoProto {
            name: Some("e".into()),
            ..Default::default()
        }],
        node: vec![
            konst,
            node("Identity", "i", &["a"], &["d"]),
            node("Add", "add", &["c", "d"], &["s"]),
        ],
        ..Default::default()
    });
    assert_eq!(value(&g, "a"), Some(1.0));
    assert_eq!(value(&g, "b"), Some(2.0));
    assert_eq!(value(&g, "c"), Some(3.0));
    assert_eq!(value(&g, "d"), Some(1.0), "through the Identity");
    assert_eq!(
        value(&g, "e"),
        None,
        "an initializer that is an input is not constant"
    );
    assert_eq!(value(&g, "s"), None);
    assert_eq!(value(&g, "nothing"), None);

    // Added through the API.
    let n = g.add_initializer("new", &[1], dt::FLOAT, &[7.0]).unwrap();
    assert_eq!(value(&g, &n), Some(7.0));
    let mut k2 = node("Constant", "k2", &[], &["c2"]);
    k2.attribute.push(AttributeProto {
        name: Some("value".into()),
        t: Some(t("c2_value", 8.0)),
        ..Default::default()
    });
    let k2_id = g.add_node(k2);
    assert_eq!(value(&g, "c2"), Some(8.0));
    g.add_node(node("Identity", "i2", &["c2"], &["d2"]));
    assert_eq!(value(&g, "d2"), Some(8.0));

    // Copy on write: "a" has two readers once the Add reads it too.
    let add = g.nodes.iter().position(|n| n.name() == "add").unwrap();
    g.set_input(add, 1, "a");
    let arr = Array {
        dims: vec![1],
        data_type: dt::FLOAT,
        data: vec![9.0],
    };
    let (copy, added) = g.write_constant(add, 1, &arr).unwrap();
    assert!(added > 0 && copy != "a");
    assert_eq!(value(&g, &copy), Some(9.0));
    assert_eq!(value(&g, "a"), Some(1.0));

    // Renaming the output of a Constant node.
    g.set_output(k2_id, 0, "c3").unwrap();
    assert_eq!(value(&g, "c2"), None);
    assert_eq!(value(&g, "c3"), Some(8.0));

    // Removal shifts positions.
    let k = g.nodes.iter().position(|n| n.name() == "k").unwrap();
    g.remove_nodes(&[k].into_iter().collect());
    assert_eq!(value(&g, "c"), None);
    assert_eq!(value(&g, "c3"), Some(8.0));
    assert_eq!(value(&g, "d"), Some(1.0));
    g.drop_unused_initializers(&["b".to_string()].into_iter().collect());
    assert_eq!(value(&g, "b"), None);
    assert_eq!(value(&g, "a"), Some(1.0));
    assert_eq!(value(&g, &copy), Some(9.0));
    assert_eq!(value(&g, &n), Some(7.0));

    // Reordering: a node added before its producer, then sorted.
    g.add_node(node("Identity", "late_reader", &["d3"], &["d4"]));
    g.add_node(node("Identity", "late_producer", &["c3"], &["d3"]));
    g.toposort().unwrap();
    assert_eq!(g.nodes().last().map(|n| n.name()), Some("late_reader"));
    assert_eq!(value(&g, "d4"), Some(8.0));
    assert_eq!(value(&g, "d"), Some(1.0));
    assert_eq!(value(&g, "c3"), Some(8.0));

    // A graph input hides an initializer of the same name from then on.
    g.push_input(ValueInfoProto {
        name: Some(n.clone()),
        ..Default::default()
    });
    assert_eq!(value(&g, &n), None);
    g.retain_inputs(|v| v.name.as_deref() != Some(n.as_str()));
    assert_eq!(value(&g, &n), Some(7.0));

    // A clone gets its own index.
    let c = g.clone();
    assert_eq!(value(&c, "a"), Some(1.0));
    assert_eq!(value(&c, "d4"), Some(8.0));
}

/// Many lookups on a big graph stay linear overall (a scan per lookup took minutes here).
#[test]
fn constant_lookups_on_a_big_graph() {
    let n = 100_000;
    let g = Graph::from_proto(GraphProto {
        initializer: (0..n).map(|i| t(&format!("w{i}"), i as f64)).collect(),
        node: (0..n)
            .map(|i| {
                node(
                    "Identity",
                    &format!("i{i}"),
                    &[&format!("w{i}")],
                    &[&format!("x{i}")],
                )
            })
            .collect(),
        ..Default::default()
    });
    let start = std::time::Instant::now();
    for i in (0..n).rev() {
        assert!(g.constant_tensor(&format!("x{i}")).is_some());
        assert!(g.constant_tensor(&format!("y{i}")).is_none());
    }
    // Generous: the index answers in well under a second; scans took ~10^10 comparisons.
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
}
