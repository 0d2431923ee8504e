//! Unit tests of the cut selection and of the relation check.

use std::collections::HashMap;

use super::cut::{self, Costs, Dag};
use super::relation::{self, Relation};
use crate::ir::text::parse_proto;
use crate::proto::{attribute_type, AttributeProto, ModelProto, NodeProto, TensorProto};
use crate::verify::HostTensor;

fn f32s(name: &str, shape: &[usize], v: &[f64]) -> HostTensor {
    let mut it = v.iter().copied();
    crate::verify::tensor::from_f64_fn(name, crate::proto::data_type::FLOAT, shape, || {
        it.next().unwrap_or(0.0)
    })
}

fn i64s(name: &str, v: &[i64]) -> HostTensor {
    HostTensor {
        name: name.into(),
        elem_type: crate::proto::data_type::INT64,
        shape: vec![v.len()],
        data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

/// A value with a mean far from zero on its last axis: [2, 3] rows (1, 2, 6), (−1, 4, 0.5).
fn a() -> HostTensor {
    f32s("x", &[2, 3], &[1.0, 2.0, 6.0, -1.0, 4.0, 0.5])
}

fn centred_rows() -> HostTensor {
    // Row means 3 and 7/6.
    f32s(
        "x",
        &[2, 3],
        &[-2.0, -1.0, 3.0, -13.0 / 6.0, 17.0 / 6.0, -4.0 / 6.0],
    )
}

#[test]
fn relation_identity_first() {
    let x = a();
    assert_eq!(
        relation::find(std::slice::from_ref(&x), std::slice::from_ref(&x), 1e-6),
        Some((Relation::Identity, 0.0))
    );
}

#[test]
fn relation_centred_over_the_last_axis() {
    let (r, err) = relation::find(&[a()], &[centred_rows()], 1e-6).unwrap();
    assert_eq!(r, Relation::Centred { axis: 1 });
    assert!(err < 1e-7, "{err}");
    assert_eq!(relation::apply(r, &a()).to_f64(), centred_rows().to_f64());
}

#[test]
fn relation_centred_over_another_axis() {
    // Column means of a(): 0, 3, 3.25.
    let b = f32s("x", &[2, 3], &[1.0, -1.0, 2.75, -1.0, 1.0, -2.75]);
    let (r, _) = relation::find(&[a()], &[b], 1e-6).unwrap();
    assert_eq!(r, Relation::Centred { axis: 0 });
}

#[test]
fn relation_compressed_is_the_first_d_minus_1_centred_entries() {
    let b = f32s("x", &[2, 2], &[-2.0, -1.0, -13.0 / 6.0, 17.0 / 6.0]);
    let (r, _) = relation::find(&[a()], std::slice::from_ref(&b), 1e-6).unwrap();
    assert_eq!(r, Relation::Compressed { axis: 1 });
    let mapped = relation::apply(r, &a());
    assert_eq!(mapped.shape, vec![2, 2]);
    let (m, want) = (mapped.to_f64().unwrap(), b.to_f64().unwrap());
    assert!(m.iter().zip(&want).all(|(p, q)| (p - q).abs() < 1e-6));
}

#[test]
fn relation_projected_is_the_orthonormal_basis() {
    // n = 3: √3 = r, c = 1/(r + 1), k = 1/(3 + r); row (1, 2, 6) centred is (−2, −1, 3).
    let r = 3f64.sqrt();
    let (c, k) = (1.0 / (r + 1.0), 1.0 / (3.0 + r));
    let row = |x: [f64; 3]| {
        let s: f64 = x.iter().sum();
        [x[0] - c * x[2] - k * s, x[1] - c * x[2] - k * s]
    };
    let (p, q) = (row([1.0, 2.0, 6.0]), row([-1.0, 4.0, 0.5]));
    // The norm of the centred row is kept: 4 + 1 + 9 = 14.
    assert!((p[0] * p[0] + p[1] * p[1] - 14.0).abs() < 1e-12);
    let b = f32s("x", &[2, 2], &[p[0], p[1], q[0], q[1]]);
    let (rel, _) = relation::find(&[a()], std::slice::from_ref(&b), 1e-6).unwrap();
    assert_eq!(rel, Relation::Projected { axis: 1 });
    let mapped = relation::apply(rel, &a()).to_f64().unwrap();
    let want = b.to_f64().unwrap();
    assert!(mapped.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-6));
    // The paper's coordinates are not the projection.
    let coords = f32s("x", &[2, 2], &[-2.0, -1.0, -13.0 / 6.0, 17.0 / 6.0]);
    let (rel, _) = relation::find(&[a()], &[coords], 1e-6).unwrap();
    assert_eq!(rel, Relation::Compressed { axis: 1 });
}

#[test]
fn relation_none_for_one_changed_entry() {
    let mut v = centred_rows().to_f64().unwrap();
    v[4] += 0.01;
    let b = f32s("x", &[2, 3], &v);
    assert_eq!(relation::find(&[a()], &[b], 1e-4), None);
    // Nor when the compressed form is off by one entry.
    let c = f32s("x", &[2, 2], &[-2.0, -1.0, -13.0 / 6.0, 17.0 / 6.0 + 0.01]);
    assert_eq!(relation::find(&[a()], &[c], 1e-4), None);
}

#[test]
fn relation_must_hold_on_every_sample() {
    let mut v = centred_rows().to_f64().unwrap();
    v[0] += 0.5;
    let wrong = f32s("x", &[2, 3], &v);
    assert_eq!(
        relation::find(&[a(), a()], &[centred_rows(), wrong], 1e-4),
        None
    );
    assert!(relation::find(&[a(), a()], &[centred_rows(), centred_rows()], 1e-6).is_some());
}

#[test]
fn relation_of_integers_is_equality() {
    let x = i64s("shape", &[2, 8, 64]);
    assert_eq!(
        relation::find(std::slice::from_ref(&x), std::slice::from_ref(&x), 1e-4),
        Some((Relation::Identity, 0.0))
    );
    // The compressed width is no relation: the rewrite's own value crosses.
    assert_eq!(
        relation::find(&[x], &[i64s("shape", &[2, 8, 63])], 1e-4),
        None
    );
}

#[test]
fn relation_candidates_follow_the_shapes() {
    use crate::proto::data_type::{FLOAT, INT64};
    assert_eq!(
        relation::candidates(&[2, 4], &[2, 4], FLOAT),
        vec![
            Relation::Identity,
            Relation::Centred { axis: 1 },
            Relation::Centred { axis: 0 }
        ]
    );
    assert_eq!(
        relation::candidates(&[2, 4], &[2, 3], FLOAT),
        vec![
            Relation::Compressed { axis: 1 },
            Relation::Projected { axis: 1 }
        ]
    );
    assert_eq!(relation::candidates(&[2, 4], &[1, 3], FLOAT), vec![]);
    assert_eq!(
        relation::candidates(&[2, 4], &[2, 4], INT64),
        vec![Relation::Identity]
    );
}

/// Three Pre-LN blocks on a stream of width 8; `%sh` (the input's shape) is read by every block.
const BLOCKS: &str = "
input %x: f32[2,4,8]
output %y: f32[2,4,8]
%sh = Shape[sh](%x)
%ln0 = LayerNormalization[ln0](%x, @g0:f32[8], @b0:f32[8]) epsilon=1e-5
%m0 = MatMul[fc0](%ln0, @w0:f32[8,8])
%h0 = Reshape[r0](%m0, %sh)
%s0 = Add[res0](%x, %h0)
%ln1 = LayerNormalization[ln1](%s0, @g1:f32[8], @b1:f32[8]) epsilon=1e-5
%m1 = MatMul[fc1](%ln1, @w1:f32[8,8])
%h1 = Reshape[r1](%m1, %sh)
%s1 = Add[res1](%s0, %h1)
%ln2 = LayerNormalization[ln2](%s1, @g2:f32[8], @b2:f32[8]) epsilon=1e-5
%m2 = MatMul[fc2](%ln2, @w2:f32[8,8])
%h2 = Reshape[r2](%m2, %sh)
%s2 = Add[res2](%s1, %h2)
%y = LayerNormalization[lnf](%s2, @gf:f32[8], @bf:f32[8]) epsilon=1e-5
%dead = Relu[dead](%y)
";

fn blocks() -> ModelProto {
    parse_proto(BLOCKS).unwrap()
}

/// Every float value [2,4,8] is 256 bytes, the shape 24.
fn sizes(m: &ModelProto) -> HashMap<String, u64> {
    let mut s = HashMap::new();
    for n in &m.graph.as_ref().unwrap().node {
        for o in &n.output {
            s.insert(o.clone(), if o == "sh" { 24 } else { 256 });
        }
    }
    s
}

fn names(dag: &Dag, nodes: &[usize]) -> Vec<String> {
    nodes
        .iter()
        .map(|&i| dag.graph.node[i].name.clone().unwrap_or_default())
        .collect()
}

/// A piece limit that holds one block of [`BLOCKS`] but not one and a bit (see
/// `cuts_fall_between_blocks`).
const LIMIT: u64 = 2210;

const ONE: Costs = Costs {
    weight_factor: 1.0,
    boundary_copies: 1,
};

#[test]
fn cuts_fall_between_blocks() {
    let m = blocks();
    let dag = Dag::new(m.graph.as_ref().unwrap()).unwrap();
    // The dead Relu is not laid out.
    assert!(!names(&dag, &dag.order).contains(&"dead".to_string()));
    // The first block costs 1648 bytes (320 of weights, 1048 of values, the 280 crossing);
    // with the next norm 2224. The last piece, the third block and the final norm with the
    // output it gives, 2200.
    let ranges = cut::select(&dag, &sizes(&m), &ONE, LIMIT);
    let ends: Vec<String> = ranges
        .iter()
        .map(|r| names(&dag, &[dag.order[r.end - 1]])[0].clone())
        .collect();
    assert_eq!(ends, ["res0", "res1", "lnf"], "{ranges:?}");
    // A limit that holds everything: one piece.
    assert_eq!(cut::select(&dag, &sizes(&m), &ONE, 1 << 20).len(), 1);
    // A limit below one node: one node per piece, nothing lost.
    let tiny = cut::select(&dag, &sizes(&m), &ONE, 1);
    assert_eq!(tiny.len(), dag.order.len());
}

#[test]
fn parts_read_the_stream_and_the_shape_across_cuts() {
    let m = blocks();
    let dag = Dag::new(m.graph.as_ref().unwrap()).unwrap();
    let s = sizes(&m);
    let ranges = cut::select(&dag, &s, &ONE, LIMIT);
    let pieces = cut::pieces(&dag, &dag, &ranges, &s, &s);
    assert_eq!(pieces.len(), 3);
    assert_eq!(pieces[0].a.inputs, ["x"]);
    assert_eq!(pieces[0].a.outputs, ["sh", "s0"]);
    assert_eq!(pieces[1].a.inputs, ["s0", "sh"]);
    assert_eq!(pieces[1].a.outputs, ["s1"]);
    assert_eq!(pieces[2].a.inputs, ["s1", "sh"]);
    assert_eq!(pieces[2].a.outputs, ["y"]);
    // Each piece holds its own weights only.
    assert_eq!(pieces[1].a.weight_bytes, 8 * 8 * 4 + 2 * 8 * 4);
    // The same graph on both sides: the same parts.
    assert!(pieces.iter().all(|p| p.a == p.b));
}

#[test]
fn the_rewrite_follows_the_originals_cuts() {
    let m = blocks();
    let model = crate::ir::text::parse(BLOCKS).unwrap();
    let opts = crate::passes::Options {
        form: crate::passes::Target::Rmsnorm.into(),
        ..crate::passes::Options::default()
    };
    let out = crate::passes::run(model, &opts).unwrap();
    assert!(out.rewritten(), "{:?}", out.report.refusals);
    let b = out.model.to_proto().unwrap();
    let (da, db) = (
        Dag::new(m.graph.as_ref().unwrap()).unwrap(),
        Dag::new(b.graph.as_ref().unwrap()).unwrap(),
    );
    let (sa, sb) = (sizes(&m), sizes(&b));
    let ranges = cut::select(&da, &sa, &ONE, LIMIT);
    let pieces = cut::pieces(&da, &db, &ranges, &sa, &sb);
    // The stream values cross the same cuts in the rewrite (centred, same names).
    assert!(
        pieces[0].b.outputs.contains(&"s0".to_string()),
        "{:?}",
        pieces[0].b
    );
    assert!(
        pieces[1].b.inputs.contains(&"s0".to_string()),
        "{:?}",
        pieces[1].b
    );
    assert!(
        pieces[1].b.outputs.contains(&"s1".to_string()),
        "{:?}",
        pieces[1].b
    );
    assert_eq!(pieces[2].b.outputs, ["y"]);
    // Every live node of the rewrite is in exactly one piece (constants aside).
    let mut seen: Vec<usize> = pieces
        .iter()
        .flat_map(|p| p.b.nodes.iter().copied())
        .filter(|&i| !cut::is_constant(&db.graph.node[i]))
        .collect();
    seen.sort();
    let n = seen.len();
    seen.dedup();
    assert_eq!(seen.len(), n);
    let mut order = db.order.clone();
    order.sort();
    assert_eq!(seen, order);
}

#[test]
fn constants_are_copied_into_each_piece_that_reads_them() {
    let mut m = blocks();
    let g = m.graph.as_mut().unwrap();
    // A Constant read by the first and the last block instead of @b0 and @bf.
    let value = TensorProto {
        dims: vec![8],
        data_type: Some(crate::proto::data_type::FLOAT),
        float_data: vec![0.5; 8],
        ..Default::default()
    };
    g.node.insert(
        0,
        NodeProto {
            name: Some("c".into()),
            op_type: Some("Constant".into()),
            output: vec!["c".into()],
            attribute: vec![AttributeProto {
                name: Some("value".into()),
                r#type: Some(attribute_type::TENSOR),
                t: Some(value),
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    for n in g.node.iter_mut() {
        for i in n.input.iter_mut() {
            if i == "b0" || i == "bf" {
                *i = "c".into();
            }
        }
    }
    let dag = Dag::new(m.graph.as_ref().unwrap()).unwrap();
    let s = sizes(&m);
    let ranges = cut::select(&dag, &s, &ONE, LIMIT);
    let pieces = cut::pieces(&dag, &dag, &ranges, &s, &s);
    let has_c = |p: &cut::Part| names(&dag, &p.nodes).contains(&"c".to_string());
    assert!(has_c(&pieces[0].a) && has_c(pieces.last().map(|p| &p.a).unwrap()));
    assert!(!has_c(&pieces[1].a));
    assert!(pieces
        .iter()
        .all(|p| !p.a.inputs.contains(&"c".to_string())));
}

#[test]
fn uncuttable_graphs_say_why() {
    let mut m = blocks();
    m.graph.as_mut().unwrap().output[0].name = Some("x".into());
    let e = Dag::new(m.graph.as_ref().unwrap()).err().unwrap();
    assert!(e.contains("graph output `x`"), "{e}");
}
