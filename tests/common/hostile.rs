//! Small ONNX models built with the prost types, for the robustness tests
//! (`tests/robustness.rs`) and the fuzzers (`fuzz/`, which include this file and `build.rs`,
//! the builders it uses, by path).
//!
//! [`tiny_gpt`] is a valid two-layer-norm Pre-LN model that the pass rewrites: an embedding
//! `Gather` feeds the residual stream `h0`, one attention-like block writes into it through
//! `MatMul + Add(bias)`, and a final LayerNorm feeds the logits `MatMul`. Everything else here
//! edits such a model into something hostile or unusual.
#![allow(dead_code)]

use onnx_normopt::proto::{
    data_location, data_type as dt, FunctionProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TrainingInfoProto, ValueInfoProto,
};

/// The builders the hostile models are written with (re-exported for their users).
pub use super::build::{attr_f, attr_g, attr_i, attr_ints, f32_tensor, node, rand_tensor, vi};

/// Hidden width of [`tiny_gpt`].
pub const D: i64 = 8;
/// Vocabulary of [`tiny_gpt`].
pub const V: i64 = 16;

/// The nodes and initializers of one Pre-LN "tower" (ids → embedding → LN → MatMul+Add →
/// residual Add → final LN → logits), with every name prefixed by `p`.
pub fn tower(
    p: &str,
    seed: u64,
) -> (
    Vec<NodeProto>,
    Vec<TensorProto>,
    ValueInfoProto,
    ValueInfoProto,
) {
    let n = |s: &str| format!("{p}{s}");
    let nodes = vec![
        node(
            "Gather",
            &n("embed"),
            &[&n("wte"), &n("ids")],
            &[&n("h0")],
            vec![attr_i("axis", 0)],
        ),
        node(
            "LayerNormalization",
            &n("ln1"),
            &[&n("h0"), &n("ln1.g"), &n("ln1.b")],
            &[&n("n1")],
            vec![attr_i("axis", -1), attr_f("epsilon", 1e-5)],
        ),
        node(
            "MatMul",
            &n("fc"),
            &[&n("n1"), &n("fc.w")],
            &[&n("a")],
            vec![],
        ),
        node(
            "Add",
            &n("fc_bias"),
            &[&n("a"), &n("fc.b")],
            &[&n("a2")],
            vec![],
        ),
        node(
            "Add",
            &n("residual"),
            &[&n("h0"), &n("a2")],
            &[&n("h1")],
            vec![],
        ),
        node(
            "LayerNormalization",
            &n("lnf"),
            &[&n("h1"), &n("lnf.g"), &n("lnf.b")],
            &[&n("nf")],
            vec![attr_i("axis", -1), attr_f("epsilon", 1e-5)],
        ),
        node(
            "MatMul",
            &n("head"),
            &[&n("nf"), &n("head.w")],
            &[&n("logits")],
            vec![],
        ),
    ];
    let inits = vec![
        rand_tensor(&n("wte"), &[V, D], seed, 1.5),
        rand_tensor(&n("ln1.g"), &[D], seed + 1, 1.0),
        rand_tensor(&n("ln1.b"), &[D], seed + 2, 0.0),
        rand_tensor(&n("fc.w"), &[D, D], seed + 3, 0.0),
        rand_tensor(&n("fc.b"), &[D], seed + 4, 0.3),
        rand_tensor(&n("lnf.g"), &[D], seed + 5, 1.0),
        rand_tensor(&n("lnf.b"), &[D], seed + 6, 0.0),
        rand_tensor(&n("head.w"), &[D, V], seed + 7, 0.0),
    ];
    (
        nodes,
        inits,
        vi(&n("ids"), dt::INT64, &[-1, -2]),
        vi(&n("logits"), dt::FLOAT, &[-1, -2, V]),
    )
}

/// A valid Pre-LN model with one residual stream and two LayerNorms; the pass rewrites both.
pub fn tiny_gpt() -> ModelProto {
    let (node, initializer, input, output) = tower("", 1);
    model(GraphProto {
        node,
        name: Some("tiny_gpt".into()),
        initializer,
        input: vec![input],
        output: vec![output],
        ..Default::default()
    })
}

/// Two independent Pre-LN towers (two inputs, two outputs, two streams) in one graph.
pub fn two_streams() -> ModelProto {
    let (mut n1, mut i1, in1, out1) = tower("a.", 1);
    let (n2, i2, in2, out2) = tower("b.", 100);
    n1.extend(n2);
    i1.extend(i2);
    model(GraphProto {
        node: n1,
        name: Some("two_streams".into()),
        initializer: i1,
        input: vec![in1, in2],
        output: vec![out1, out2],
        ..Default::default()
    })
}

/// Wrap a graph in a model at opset 18, IR 8.
pub fn model(graph: GraphProto) -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        producer_name: Some("hostile.rs".into()),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(18),
        }],
        ..Default::default()
    }
}

/// The main graph of a model.
pub fn graph(m: &mut ModelProto) -> &mut GraphProto {
    m.graph.as_mut().expect("model has a graph")
}

/// The initializer `name`.
pub fn init<'a>(m: &'a mut ModelProto, name: &str) -> &'a mut TensorProto {
    graph(m)
        .initializer
        .iter_mut()
        .find(|t| t.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no initializer {name}"))
}

/// The node `name`.
pub fn node_mut<'a>(m: &'a mut ModelProto, name: &str) -> &'a mut NodeProto {
    graph(m)
        .node
        .iter_mut()
        .find(|n| n.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no node {name}"))
}

/// Point tensor `t` at external data.
pub fn make_external(
    t: &mut TensorProto,
    location: &str,
    offset: Option<u64>,
    length: Option<u64>,
) {
    t.raw_data = None;
    t.float_data.clear();
    t.data_location = Some(data_location::EXTERNAL);
    let kv = |k: &str, v: String| StringStringEntryProto {
        key: Some(k.into()),
        value: Some(v),
    };
    t.external_data = vec![kv("location", location.into())];
    if let Some(o) = offset {
        t.external_data.push(kv("offset", o.to_string()));
    }
    if let Some(l) = length {
        t.external_data.push(kv("length", l.to_string()));
    }
}

/// [`tiny_gpt`] plus a node of an unknown domain reading the residual stream `h1` (its output
/// is a second graph output). The stream is observed: nothing may be rewritten.
pub fn unknown_domain_reader() -> ModelProto {
    let mut m = tiny_gpt();
    let g = graph(&mut m);
    let mut n = node(
        "Mystery",
        "mystery",
        &["h1"],
        &["mystery_out"],
        vec![attr_i("k", 3)],
    );
    n.domain = Some("com.example.unknown".into());
    g.node.push(n);
    g.output.push(vi("mystery_out", dt::FLOAT, &[-1, -2, D]));
    m.opset_import.push(OperatorSetIdProto {
        domain: Some("com.example.unknown".into()),
        version: Some(1),
    });
    m
}

/// [`tiny_gpt`] plus an `If` whose branches read the residual stream `h1` from the outer scope.
/// The stream is observed: nothing may be rewritten.
pub fn if_reads_stream(op: &str) -> ModelProto {
    let mut m = tiny_gpt();
    let branch = |name: &str| GraphProto {
        node: vec![node(
            "Identity",
            &format!("{name}_id"),
            &["h1"],
            &[&format!("{name}_out")],
            vec![],
        )],
        name: Some(name.into()),
        output: vec![vi(&format!("{name}_out"), dt::FLOAT, &[-1, -2, D])],
        ..Default::default()
    };
    let g = graph(&mut m);
    g.input.push(vi("cond", dt::BOOL, &[]));
    let n = match op {
        "If" => node(
            "If",
            "if",
            &["cond"],
            &["if_out"],
            vec![
                attr_g("then_branch", branch("then")),
                attr_g("else_branch", branch("else")),
            ],
        ),
        "Loop" => {
            // Loop(M="", cond) with a body (iter, cond_in) -> (cond_out, scan_out) reading h1.
            let body = GraphProto {
                node: vec![
                    node("Identity", "body_cond", &["cond_in"], &["cond_out"], vec![]),
                    node("Identity", "body_read", &["h1"], &["scan_out"], vec![]),
                ],
                name: Some("body".into()),
                input: vec![vi("iter", dt::INT64, &[]), vi("cond_in", dt::BOOL, &[])],
                output: vec![
                    vi("cond_out", dt::BOOL, &[]),
                    vi("scan_out", dt::FLOAT, &[-1, -2, D]),
                ],
                ..Default::default()
            };
            node(
                "Loop",
                "loop",
                &["", "cond"],
                &["if_out"],
                vec![attr_g("body", body)],
            )
        }
        other => panic!("no subgraph op {other}"),
    };
    g.node.push(n);
    g.output.push(ValueInfoProto {
        name: Some("if_out".into()),
        ..Default::default()
    });
    m
}

/// A model-local function (never called by the graph; must survive byte-for-byte).
pub fn local_function() -> FunctionProto {
    FunctionProto {
        name: Some("Twice".into()),
        input: vec!["x".into()],
        output: vec!["y".into()],
        node: vec![node("Add", "twice_add", &["x", "x"], &["y"], vec![])],
        doc_string: Some("y = x + x".into()),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(18),
        }],
        domain: Some("local.fns".into()),
        ..Default::default()
    }
}

/// Training info with an algorithm graph (must survive byte-for-byte).
pub fn training_info() -> TrainingInfoProto {
    TrainingInfoProto {
        initialization: None,
        algorithm: Some(GraphProto {
            node: vec![node(
                "Identity",
                "train_step",
                &["fc.w"],
                &["fc.w.next"],
                vec![],
            )],
            name: Some("algorithm".into()),
            output: vec![vi("fc.w.next", dt::FLOAT, &[D, D])],
            ..Default::default()
        }),
        initialization_binding: vec![],
        update_binding: vec![StringStringEntryProto {
            key: Some("fc.w".into()),
            value: Some("fc.w.next".into()),
        }],
    }
}

/// A graph with a cycle: `a = Add(x, b)`, `b = Relu(a)`.
pub fn cycle() -> ModelProto {
    model(GraphProto {
        node: vec![
            node("Add", "add", &["x", "b"], &["a"], vec![]),
            node("Relu", "relu", &["a"], &["b"], vec![]),
        ],
        name: Some("cycle".into()),
        input: vec![vi("x", dt::FLOAT, &[2, D])],
        output: vec![vi("b", dt::FLOAT, &[2, D])],
        ..Default::default()
    })
}
