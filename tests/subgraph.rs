//! Streams inside `If` branches (issue #11: Optimum's merged decoders). Each model is one `If` on
//! a bool input whose two branches hold a tiny 2-block Pre-LN transformer reading weights of the
//! OUTER graph (outer-scope references), like `decoder_model_merged.onnx`:
//! - `Same`: both branches make the same edits → the outer weights are edited once, in place
//!   (the output does not grow);
//! - `TanhHead`: the else branch puts a Tanh between the final norm and the head, so only the
//!   then branch folds γ/β into the head → the head is copied for it, the rest edited in place;
//! - `Observed`: the else branch reads the raw stream with its head → refused → every weight
//!   the then branch edits is copied (copy on write, bytes counted).
//!
//! Original and rewrite run in tract and onnxruntime for BOTH values of the condition (frozen as
//! a constant in both files) and must agree at float32 rounding; both targets, with weight
//! edits in memory and at write time (passes/edit.rs).

mod common;
use common::pass::verify_opts;
use common::rng::Rng;
use onnx_normopt::ir::Model;
use onnx_normopt::passes::{self, Options, Target};
use onnx_normopt::proto::{
    attribute_type as at, data_type as dt, tensor_shape_proto::Dimension, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use onnx_normopt::verify;
use prost::Message;
use std::path::Path;

const D: usize = 16;
const V: usize = 24;
const T: usize = 8;
/// Outer weights, by name.
struct Weights {
    inits: Vec<TensorProto>,
    rng: Rng,
}

impl Weights {
    fn add(&mut self, name: &str, dims: &[usize], f: impl Fn(&mut Rng) -> f64) -> String {
        let vals: Vec<f64> = (0..dims.iter().product::<usize>())
            .map(|_| f(&mut self.rng))
            .collect();
        self.inits
            .push(onnx_normopt::tensor::tensor_from_f64(name, dims, dt::FLOAT, &vals).unwrap());
        name.to_string()
    }
}

/// Builds one branch's nodes; values and node names carry the branch's prefix.
struct Branch {
    g: GraphProto,
    prefix: String,
    n: usize,
}

impl Branch {
    fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.n += 1;
        let out = format!("{}/{op}_{}", self.prefix, self.n);
        self.g.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: Some(format!("{}/n{}_{op}", self.prefix, self.n)),
            op_type: Some(op.into()),
            attribute: attrs,
            ..Default::default()
        });
        out
    }
    fn linear(&mut self, x: &str, w: &str, b: &str) -> String {
        let y = self.node("MatMul", &[x, w], vec![]);
        self.node("Add", &[&y, b], vec![])
    }
    fn ln(&mut self, x: &str, g: &str, b: &str) -> String {
        let eps = AttributeProto {
            name: Some("epsilon".into()),
            f: Some(1e-5),
            r#type: Some(at::FLOAT),
            ..Default::default()
        };
        self.node("LayerNormalization", &[x, g, b], vec![eps])
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Else {
    Same,
    TanhHead,
    Observed,
}

/// The decoder of one branch over the shared weights (`w{l}_{k}` etc.).
fn decoder(prefix: &str, variant: Option<Else>) -> GraphProto {
    let mut b = Branch {
        g: GraphProto {
            name: Some(prefix.into()),
            ..Default::default()
        },
        prefix: prefix.into(),
        n: 0,
    };
    let tok = b.node("Gather", &["wte", "ids"], vec![]);
    let mut x = b.node("Add", &[&tok, "wpe"], vec![]);
    for l in 0..2 {
        let h = b.ln(&x, &format!("ln{l}a_g"), &format!("ln{l}a_b"));
        let a = b.linear(&h, &format!("w{l}_1"), &format!("b{l}_1"));
        let a = b.node("Relu", &[&a], vec![]);
        let f = b.linear(&a, &format!("w{l}_2"), &format!("b{l}_2"));
        x = b.node("Add", &[&x, &f], vec![]);
        let h = b.ln(&x, &format!("ln{l}b_g"), &format!("ln{l}b_b"));
        let a = b.linear(&h, &format!("w{l}_3"), &format!("b{l}_3"));
        let a = b.node("Tanh", &[&a], vec![]);
        let f = b.linear(&a, &format!("w{l}_4"), &format!("b{l}_4"));
        x = b.node("Add", &[&f, &x], vec![]);
    }
    let out = match variant {
        None => {
            let h = b.ln(&x, "lnf_g", "lnf_b");
            b.linear(&h, "head", "head_b")
        }
        Some(Else::Same) => {
            let h = b.ln(&x, "lnf_g", "lnf_b");
            let y = b.linear(&h, "head", "head_b");
            b.node("Tanh", &[&y], vec![])
        }
        Some(Else::TanhHead) => {
            let h = b.ln(&x, "lnf_g", "lnf_b");
            let h = b.node("Tanh", &[&h], vec![]);
            b.linear(&h, "head", "head_b")
        }
        // The head reads the raw stream: the stream's mean is observed.
        Some(Else::Observed) => b.linear(&x, "head", "head_b"),
    };
    b.g.output
        .push(value(&out, dt::FLOAT, &[2, T as i64, V as i64]));
    b.g
}

fn value(name: &str, elem: i32, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(type_proto::Tensor {
                elem_type: Some(elem),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            dim_value: Some(d),
                            ..Default::default()
                        })
                        .collect(),
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One `If` on `use_cache_branch`; then: the decoder; else: the decoder in form `variant`.
fn build(variant: Else, seed: u64) -> ModelProto {
    let mut w = Weights {
        inits: vec![],
        rng: Rng(seed | 1),
    };
    // Tables with a large shared row offset: an uncentred stream is clearly off.
    let offset: Vec<f64> = (0..D).map(|_| 2.0 * w.rng.normal() + 1.0).collect();
    let vals: Vec<f64> = (0..V * D).map(|i| w.rng.normal() + offset[i % D]).collect();
    w.inits
        .push(onnx_normopt::tensor::tensor_from_f64("wte", &[V, D], dt::FLOAT, &vals).unwrap());
    w.add("wpe", &[T, D], |r| r.normal() + 0.5);
    let s = 1.0 / (D as f64).sqrt();
    for l in 0..2 {
        for k in ["a", "b"] {
            w.add(&format!("ln{l}{k}_g"), &[D], |r| 0.5 + r.uniform());
            w.add(&format!("ln{l}{k}_b"), &[D], |r| r.normal() * 0.3);
        }
        w.add(&format!("w{l}_1"), &[D, 2 * D], |r| r.normal() * s);
        w.add(&format!("b{l}_1"), &[2 * D], |r| r.normal() * 0.1);
        w.add(&format!("w{l}_2"), &[2 * D, D], |r| r.normal() * s);
        w.add(&format!("b{l}_2"), &[D], |r| r.normal() * 0.1 + 0.3);
        w.add(&format!("w{l}_3"), &[D, D], |r| r.normal() * s);
        w.add(&format!("b{l}_3"), &[D], |r| r.normal() * 0.1);
        w.add(&format!("w{l}_4"), &[D, D], |r| r.normal() * s);
        w.add(&format!("b{l}_4"), &[D], |r| r.normal() * 0.1 - 0.3);
    }
    w.add("lnf_g", &[D], |r| 0.5 + r.uniform());
    w.add("lnf_b", &[D], |r| r.normal() * 0.3);
    w.add("head", &[D, V], |r| r.normal() * s);
    w.add("head_b", &[V], |r| r.normal() * 0.1);
    let ifn = NodeProto {
        input: vec!["use_cache_branch".into()],
        output: vec!["logits".into()],
        name: Some("optimum::if".into()),
        op_type: Some("If".into()),
        attribute: vec![
            AttributeProto {
                name: Some("else_branch".into()),
                g: Some(decoder("else", Some(variant))),
                r#type: Some(at::GRAPH),
                ..Default::default()
            },
            AttributeProto {
                name: Some("then_branch".into()),
                g: Some(decoder("then", None)),
                r#type: Some(at::GRAPH),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    ModelProto {
        ir_version: Some(8),
        producer_name: Some("tests/subgraph.rs".into()),
        graph: Some(GraphProto {
            name: Some("merged".into()),
            node: vec![ifn],
            initializer: w.inits,
            input: vec![
                value("ids", dt::INT64, &[2, T as i64]),
                value("use_cache_branch", dt::BOOL, &[1]),
            ],
            output: vec![value("logits", dt::FLOAT, &[2, T as i64, V as i64])],
            ..Default::default()
        }),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(18),
        }],
        ..Default::default()
    }
}

/// `model` with its condition input frozen to `cond` (a constant initializer).
fn freeze(path: &Path, cond: bool, out: &Path) {
    let mut m = ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    let g = m.graph.as_mut().unwrap();
    g.input
        .retain(|v| v.name.as_deref() != Some("use_cache_branch"));
    g.initializer.push(TensorProto {
        name: Some("use_cache_branch".into()),
        dims: vec![1],
        data_type: Some(dt::BOOL),
        raw_data: Some(vec![cond as u8].into()),
        ..Default::default()
    });
    std::fs::write(out, m.encode_to_vec()).unwrap();
}

fn branch_ops(m: &ModelProto) -> Vec<(String, Vec<String>)> {
    m.graph.as_ref().unwrap().node[0]
        .attribute
        .iter()
        .map(|a| {
            (
                a.name.clone().unwrap(),
                a.g.as_ref()
                    .unwrap()
                    .node
                    .iter()
                    .map(|n| n.op_type.clone().unwrap_or_default())
                    .collect(),
            )
        })
        .collect()
}

struct Case {
    seed: u64,
    variant: Else,
    target: Target,
    defer_bytes: usize,
}

/// Rewrite, check the structure, and run both files in tract and onnxruntime for both values of
/// the condition. Returns the report and the (input, output) file sizes.
fn check(c: &Case) -> (passes::report::Report, ModelProto, ModelProto) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in.onnx");
    let input = build(c.variant, c.seed);
    std::fs::write(&src, input.encode_to_vec()).unwrap();
    let model = Model::load(&src).unwrap();
    let out = common::pass::run(
        model,
        &Options {
            check_each_patch: true,
            form: c.target.into(),
            defer_bytes: c.defer_bytes,
            ..Options::default()
        },
    )
    .unwrap();
    let r = out.report.clone();
    // inspect tells the same from the patch list, nothing applied.
    let told = passes::inspect(
        &Model::load(&src).unwrap(),
        &Options {
            form: c.target.into(),
            defer_bytes: c.defer_bytes,
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(
        serde_json::to_value(&told).unwrap(),
        serde_json::to_value(&r).unwrap()
    );
    let expect_norms = if c.variant == Else::Observed { 5 } else { 10 };
    assert_eq!(r.norms_rewritten, expect_norms, "{}", r.summary());
    for st in &r.streams {
        let sg = st.subgraph.as_deref().unwrap_or("");
        assert!(
            sg == "If \"optimum::if\" then_branch" || sg == "If \"optimum::if\" else_branch",
            "stream {} names its subgraph: {sg:?}",
            st.id
        );
    }
    let dst = dir.path().join("out.onnx");
    onnx_normopt::save(&out.model, &dst).unwrap();
    let written = ModelProto::decode(std::fs::read(&dst).unwrap().as_slice()).unwrap();
    for (name, ops) in branch_ops(&written) {
        let lns = ops.iter().filter(|o| *o == "LayerNormalization").count();
        let want = if c.variant == Else::Observed && name == "else_branch" {
            4
        } else {
            0
        };
        assert_eq!(lns, want, "LayerNorms left in {name}");
    }
    for cond in [true, false] {
        let a = dir.path().join(format!("a_{cond}.onnx"));
        let b = dir.path().join(format!("b_{cond}.onnx"));
        freeze(&src, cond, &a);
        freeze(&dst, cond, &b);
        let rep = verify::verify_files(&a, &b, &verify_opts()).unwrap();
        assert!(rep.passed(), "use_cache_branch={cond}:\n{rep}");
        assert!(rep.ran(verify::Runtime::Tract), "{rep}");
    }
    (r, input, written)
}

fn outer_names(m: &ModelProto) -> Vec<String> {
    let mut v: Vec<String> = m
        .graph
        .as_ref()
        .unwrap()
        .initializer
        .iter()
        .map(|t| t.name.clone().unwrap())
        .collect();
    v.sort();
    v
}

fn outer<'a>(m: &'a ModelProto, name: &str) -> Option<&'a TensorProto> {
    m.graph
        .as_ref()
        .unwrap()
        .initializer
        .iter()
        .find(|t| t.name.as_deref() == Some(name))
}

/// Bytes of initializers: (outer graph, inside the branches).
fn weight_bytes(m: &ModelProto) -> (usize, usize) {
    let size = |ts: &[TensorProto]| -> usize {
        ts.iter()
            .map(|t| t.raw_data.as_ref().map_or(0, |b| b.len()) + 4 * t.float_data.len())
            .sum()
    };
    let g = m.graph.as_ref().unwrap();
    let inner = g.node[0]
        .attribute
        .iter()
        .map(|a| size(&a.g.as_ref().unwrap().initializer))
        .sum();
    (size(&g.initializer), inner)
}

const MODES: &[(Target, usize)] = &[
    (Target::Rmsnorm, usize::MAX),
    (Target::Rmsnorm, 0),
    (Target::Crmsnorm, usize::MAX),
    (Target::Crmsnorm, 0),
];

/// Both branches make the same edits: one in-place edit of each outer weight, no copy, the file
/// about the input's size.
#[test]
fn same_edits_in_both_branches_edit_outer_weights_in_place() {
    for &(target, defer_bytes) in MODES {
        let (r, input, written) = check(&Case {
            seed: 7,
            variant: Else::Same,
            target,
            defer_bytes,
        });
        assert_eq!(
            r.bytes_added,
            0,
            "{target:?} {defer_bytes}: {}",
            r.summary()
        );
        let before = outer_names(&input);
        let after = outer_names(&written);
        assert!(
            after.iter().all(|n| before.contains(n)),
            "no copies of outer weights: {after:?}"
        );
        // Edited in place: the table is centred under its own name.
        assert_ne!(outer(&input, "wte"), outer(&written, "wte"));
        // The weights do not grow: outer ones at most as big (CRMSNorm drops a column), and
        // the branches' own constants are only the new norms' small ones (ε, axes, ...).
        let (a, b) = (weight_bytes(&input), weight_bytes(&written));
        assert!(b.0 <= a.0, "{target:?}: outer weights {} -> {}", a.0, b.0);
        assert!(
            b.1 < 1024,
            "{target:?}: {} bytes of constants inside the branches",
            b.1
        );
    }
}

/// Only the then branch folds the final norm into the head: the head is copied for it (and its
/// bytes counted); every other weight is edited once, in place.
#[test]
fn a_weight_edited_by_one_branch_only_is_copied() {
    for &(target, defer_bytes) in MODES {
        let (r, input, written) = check(&Case {
            seed: 7,
            variant: Else::TanhHead,
            target,
            defer_bytes,
        });
        let head = outer(&input, "head").unwrap();
        assert_eq!(
            outer(&written, "head"),
            Some(head),
            "the else branch's head"
        );
        let copies: Vec<String> = outer_names(&written)
            .into_iter()
            .filter(|n| n.starts_with("head_normopt"))
            .collect();
        assert_eq!(copies.len(), 1, "{copies:?}");
        let copy = outer(&written, &copies[0]).unwrap();
        let bytes = copy.raw_data.as_ref().map_or(0, |b| b.len());
        assert!(r.bytes_added >= bytes, "{} < {bytes}", r.bytes_added);
        assert!(!outer_names(&written).iter().any(|n| n.starts_with("wte_")));
        assert_ne!(outer(&input, "wte"), outer(&written, "wte"));
    }
}

/// The else branch cannot be rewritten (its head reads the raw stream): every weight the then
/// branch edits gets its own copy, the originals stay for the else branch.
#[test]
fn a_refused_branch_keeps_the_original_weights() {
    for &(target, defer_bytes) in MODES {
        let (r, input, written) = check(&Case {
            seed: 7,
            variant: Else::Observed,
            target,
            defer_bytes,
        });
        for n in outer_names(&input) {
            if n.starts_with("lnf_") {
                // Read by the then branch only, whose final norm folded them: dropped.
                assert_eq!(outer(&written, &n), None, "{n}");
            } else {
                assert_eq!(outer(&input, &n), outer(&written, &n), "{n} unchanged");
            }
        }
        let wte = D * V * 4;
        assert!(r.bytes_added > wte, "{}", r.summary());
        let refused: Vec<_> = r
            .streams
            .iter()
            .filter(|s| s.status == passes::report::StreamStatus::Refused)
            .collect();
        assert_eq!(refused.len(), 1);
        assert_eq!(
            refused[0].subgraph.as_deref(),
            Some("If \"optimum::if\" else_branch")
        );
        assert!(r.summary().contains("in If \"optimum::if\" else_branch"));
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 12, ..Default::default()
    })]

    /// Random weights, else-branch form, target and edit mode: the rewrite agrees with the
    /// original for both conditions (the checks of `check`).
    #[test]
    fn rewriting_branches_is_equivalent(
        seed in proptest::prelude::any::<u64>(),
        variant in proptest::sample::select(vec![Else::Same, Else::TanhHead, Else::Observed]),
        mode in 0..MODES.len(),
    ) {
        let (target, defer_bytes) = MODES[mode];
        check(&Case { seed, variant, target, defer_bytes });
    }
}
