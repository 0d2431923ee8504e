//! Graph forms found in deployed models (issues #11 and #14), built here as small models: each
//! test rewrites one with both targets, checks what the report says (norms rewritten, explicit
//! centering nodes, the new fold or pass-through named), and runs the original and the rewrite
//! on the same random inputs in tract and onnxruntime.

mod common;
use common::build::{attr_f, attr_i, attr_ints, node, vi, GraphBuilder as B};
use common::pass::verify_opts;
use onnx_normopt::ir::Model;
use onnx_normopt::passes::{Options, Target};
use onnx_normopt::proto::{data_type as dt, ModelProto, TensorProto};
use onnx_normopt::verify;
use prost::Message;

/// What a rewrite must show.
struct Expect {
    norms: usize,
    centering: usize,
    /// Strings the report (JSON) must contain.
    says: &'static [&'static str],
}

/// Rewrite `m` with both targets; check the report and run both graphs.
fn check(name: &str, m: &ModelProto, e: &Expect) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join(format!("{name}.onnx"));
    std::fs::write(&src, m.encode_to_vec()).unwrap();
    if let Some(keep) = std::env::var_os("FORMS_KEEP") {
        // For a look with the CLI: FORMS_KEEP=dir cargo test --test forms NAME
        std::fs::write(
            std::path::Path::new(&keep).join(format!("{name}.onnx")),
            m.encode_to_vec(),
        )
        .unwrap();
    }
    for target in [Target::Rmsnorm, Target::Crmsnorm] {
        let model = Model::load(&src).unwrap();
        let out = common::pass::run(
            model,
            &Options {
                check_each_patch: true,
                form: target.into(),
                ..Options::default()
            },
        )
        .unwrap_or_else(|err| panic!("{name} {target:?}: {err}"));
        let json = serde_json::to_string(&out.report).unwrap();
        assert_eq!(
            out.report.norms_rewritten,
            e.norms,
            "{name} {target:?}: {}",
            out.report.summary()
        );
        assert_eq!(
            out.report.centering_nodes, e.centering,
            "{name} {target:?}: {json}"
        );
        for s in e.says {
            assert!(
                json.contains(s),
                "{name} {target:?}: report lacks {s:?}: {json}"
            );
        }
        let dst = dir.path().join(format!("{name}_{target:?}.onnx"));
        onnx_normopt::save(&out.model, &dst).unwrap();
        let rep = verify::verify_files(&src, &dst, &verify_opts())
            .unwrap_or_else(|err| panic!("{name} {target:?}: {err}"));
        assert!(rep.passed(), "{name} {target:?}:\n{rep}");
    }
}

const D: i64 = 8;
const V: i64 = 16;

fn ids_input() -> Vec<onnx_normopt::proto::ValueInfoProto> {
    vec![vi("ids", dt::INT64, &[-1, -2])]
}

/// OPT with past, in small: the stream is reshaped to `[-1, D]` around the FFN with a target
/// computed from `Shape`, and back to `[B, S, D]` from the shape of the 3-D stream; the
/// attention's input passes through a `ScatterND` (the KV-cache mask), which hid every shape
/// after it; a `Shape` of the FFN norm's output sizes a reader's output (BLOOM), which needs the
/// rank under CRMSNorm.
#[test]
fn stream_reshaped_to_rows_and_back() {
    let mut b = B::default();
    let wte = b.w("wte", &[V, D], 1.5);
    let h0 = b.op("Gather", &[&wte, "ids"], vec![attr_i("axis", 0)]);
    let n1 = b.ln(&h0, D);
    let q = b.linear(&n1, D, D);
    let idx = b.ints(&[0, 0], &[1, 2]);
    let upd = b.w("upd", &[1, D], 0.0);
    let s = b.op("ScatterND", &[&q, &idx, &upd], vec![]);
    let a = b.linear(&s, D, D);
    let h1 = b.op("Add", &[&h0, &a], vec![]);
    // [-1, Shape(h1)[-1:]]
    let sh = b.op("Shape", &[&h1], vec![]);
    let (st, en, ax) = (
        b.ints(&[-1], &[1]),
        b.ints(&[i64::MAX], &[1]),
        b.ints(&[0], &[1]),
    );
    let last = b.op("Slice", &[&sh, &st, &en, &ax], vec![]);
    let sq = b.op("Squeeze", &[&last, &ax], vec![]);
    let un = b.op("Unsqueeze", &[&sq, &ax], vec![]);
    let m1 = b.ints(&[-1], &[1]);
    let tgt = b.op("Concat", &[&m1, &un], vec![attr_i("axis", 0)]);
    let x2 = b.op("Reshape", &[&h1, &tgt], vec![]);
    let n2 = b.ln(&x2, D);
    let w2 = b.w("fc1", &[D, D], 0.0);
    let b2 = b.w("fc1.b", &[D], 0.2);
    let f1 = b.op("Gemm", &[&n2, &w2, &b2], vec![attr_i("transB", 1)]);
    // The reader's output reshaped by the shape of the norm's output.
    let r0 = b.dim(&n2, 0);
    let r1 = b.dim(&n2, 1);
    let rt = b.op("Concat", &[&r0, &r1], vec![attr_i("axis", 0)]);
    let f1r = b.op("Reshape", &[&f1, &rt], vec![]);
    let act = b.op("Relu", &[&f1r], vec![]);
    let w3 = b.w("fc2", &[D, D], 0.0);
    let b3 = b.w("fc2.b", &[D], 0.2);
    let f2 = b.op("Gemm", &[&act, &w3, &b3], vec![attr_i("transB", 1)]);
    let h2 = b.op("Add", &[&x2, &f2], vec![]);
    let (d0, d1, d2) = (b.dim(&h1, 0), b.dim(&h1, 1), b.dim(&h1, 2));
    let back = b.op("Concat", &[&d0, &d1, &d2], vec![attr_i("axis", 0)]);
    let h3 = b.op("Reshape", &[&h2, &back], vec![]);
    let nf = b.ln(&h3, D);
    let head = b.w("head", &[D, V], 0.0);
    b.nodes
        .push(node("MatMul", "head", &[&nf, &head], &["logits"], vec![]));
    let m = b.model(ids_input(), "logits", &[-1, -2, V]);
    check(
        "opt_past",
        &m,
        &Expect {
            norms: 3,
            centering: 0,
            says: &[],
        },
    );
}

/// onnxruntime's offline optimiser fuses the RMS half of a decomposed LayerNorm and leaves the
/// mean subtraction: `Sub(x, ReduceMean(x)) → SimplifiedLayerNormalization(γ) → Add(β)`.
#[test]
fn split_layernorm_is_a_layernorm() {
    let mut b = B::default();
    let wte = b.w("wte", &[V, D], 1.5);
    let h0 = b.op("Gather", &[&wte, "ids"], vec![attr_i("axis", 0)]);
    let split = |b: &mut B, x: &str, with_beta: bool| {
        let ax = b.ints(&[-1], &[1]);
        let m = b.op("ReduceMean", &[x, &ax], vec![]);
        let c = b.op("Sub", &[x, &m], vec![]);
        let g = b.w("g", &[D], 1.0);
        let y = b.op(
            "SimplifiedLayerNormalization",
            &[&c, &g],
            vec![attr_i("axis", -1), attr_f("epsilon", 1e-5)],
        );
        if with_beta {
            let bt = b.w("beta", &[D], 0.2);
            b.op("Add", &[&y, &bt], vec![])
        } else {
            y
        }
    };
    let n1 = split(&mut b, &h0, true);
    let a = b.linear(&n1, D, D);
    let h1 = b.op("Add", &[&h0, &a], vec![]);
    let nf = split(&mut b, &h1, false);
    let head = b.w("head", &[D, V], 0.0);
    b.nodes
        .push(node("MatMul", "head", &[&nf, &head], &["logits"], vec![]));
    let m = b.model(ids_input(), "logits", &[-1, -2, V]);
    check(
        "split_ln",
        &m,
        &Expect {
            norms: 2,
            centering: 0,
            says: &["ReduceMean→Sub→SimplifiedLayerNormalization"],
        },
    );
}

/// onnxruntime's fp16 optimisation keeps fp16 initializers and casts them for f32 ops: weights,
/// biases, γ and β behind `Cast`. They are edited in their own type behind the Cast (centred,
/// folded), like any other constant: no explicit centering node.
#[test]
fn constants_behind_cast() {
    let mut b = B::default();
    let wte = b.w16("wte", &[V, D], 1.5);
    let h0 = b.op("Gather", &[&wte, "ids"], vec![attr_i("axis", 0)]);
    let ln16 = |b: &mut B, x: &str| {
        let g = b.w16("ln.g", &[D], 1.0);
        let bt = b.w16("ln.b", &[D], 0.2);
        b.op(
            "LayerNormalization",
            &[x, &g, &bt],
            vec![attr_i("axis", -1), attr_f("epsilon", 1e-5)],
        )
    };
    let n1 = ln16(&mut b, &h0);
    let w = b.w16("w", &[D, D], 0.0);
    let bias = b.w16("b", &[D], 0.3);
    let m = b.op("MatMul", &[&n1, &w], vec![]);
    let a = b.op("Add", &[&m, &bias], vec![]);
    let h1 = b.op("Add", &[&h0, &a], vec![]);
    // A Gemm writer on rows, its weight and C behind Casts.
    let n2 = ln16(&mut b, &h1);
    let sh = b.ints(&[-1, D], &[2]);
    let rows = b.op("Reshape", &[&n2, &sh], vec![]);
    let wg = b.w16("wg", &[D, D], 0.0);
    let cg = b.w16("cg", &[D], 0.3);
    let g = b.op("Gemm", &[&rows, &wg, &cg], vec![attr_i("transB", 1)]);
    let (d0, d1) = (b.dim(&h1, 0), b.dim(&h1, 1));
    let dd = b.ints(&[D], &[1]);
    let back = b.op("Concat", &[&d0, &d1, &dd], vec![attr_i("axis", 0)]);
    let g3 = b.op("Reshape", &[&g, &back], vec![]);
    let h2 = b.op("Add", &[&h1, &g3], vec![]);
    let nf = ln16(&mut b, &h2);
    let head = b.w16("head", &[D, V], 0.0);
    b.nodes
        .push(node("MatMul", "head", &[&nf, &head], &["logits"], vec![]));
    let m = b.model(ids_input(), "logits", &[-1, -2, V]);
    check(
        "cast_weights",
        &m,
        &Expect {
            norms: 3,
            centering: 0,
            says: &[],
        },
    );
}

/// An explicitly centred stream value made by a `Reshape` whose target ends in D: under CRMSNorm
/// the centring node compresses after the Reshape, so the target must keep D (it was shrunk, and
/// the rewrite failed to run: onnxruntime-optimised GPT-2, Gemm on rows then Reshape back).
#[test]
fn explicit_reshape_keeps_its_target() {
    let mut b = B::default();
    let wte = b.w("wte", &[V, D], 1.5);
    let h0 = b.op("Gather", &[&wte, "ids"], vec![attr_i("axis", 0)]);
    let n1 = b.ln(&h0, D);
    let sh = b.ints(&[-1, D], &[2]);
    let rows = b.op("Reshape", &[&n1, &sh], vec![]);
    let w = b.w("w", &[D, D], 0.0);
    let c = b.w("c", &[D], 0.3);
    let g = b.op("Gemm", &[&rows, &w, &c], vec![attr_i("transB", 1)]);
    let act = b.op("Tanh", &[&g], vec![]);
    let (d0, d1) = (b.dim(&h0, 0), b.dim(&h0, 1));
    let dd = b.ints(&[D], &[1]);
    let back = b.op("Concat", &[&d0, &d1, &dd], vec![attr_i("axis", 0)]);
    let a = b.op("Reshape", &[&act, &back], vec![]);
    let h1 = b.op("Add", &[&h0, &a], vec![]);
    let n2 = b.ln(&h1, D);
    let a2 = b.linear(&n2, D, D);
    let h2 = b.op("Add", &[&h1, &a2], vec![]);
    let nf = b.ln(&h2, D);
    let head = b.w("head", &[D, V], 0.0);
    b.nodes
        .push(node("MatMul", "head", &[&nf, &head], &["logits"], vec![]));
    let m = b.model(ids_input(), "logits", &[-1, -2, V]);
    check(
        "explicit_reshape",
        &m,
        &Expect {
            norms: 3,
            centering: 1,
            says: &[],
        },
    );
}

/// LayerScale writers (DINOv2, CaiT, DeiT-III): `x + λ ⊙ (W·h + b)`, with λ [D] or
/// [1, 1, D], on either side of the bias, a `Div` by a per-channel constant, a scalar `Mul`
/// and a Gemm on rows. Each folds into its writer: no explicit centering node.
#[test]
fn layer_scale_writers() {
    let mut b = B::default();
    let wte = b.w("wte", &[V, D], 1.5);
    let h0 = b.op("Gather", &[&wte, "ids"], vec![attr_i("axis", 0)]);
    // λ ⊙ (W·h + b)
    let n1 = b.ln(&h0, D);
    let z = b.linear(&n1, D, D);
    let l1 = b.w("lambda1", &[D], 0.5);
    let y1 = b.op("Mul", &[&z, &l1], vec![]);
    let h1 = b.op("Add", &[&h0, &y1], vec![]);
    // [1, 1, λ] ⊙ (W·h) + b, λ on the left of the Mul, then a scalar Mul and a Div by c.
    let n2 = b.ln(&h1, D);
    let w2 = b.w("w2", &[D, D], 0.0);
    let m2 = b.op("MatMul", &[&n2, &w2], vec![]);
    let l2 = b.w("lambda2", &[1, 1, D], 0.5);
    let s2 = b.op("Mul", &[&l2, &m2], vec![]);
    let b2 = b.w("b2", &[1, 1, D], 0.3);
    let a2 = b.op("Add", &[&s2, &b2], vec![]);
    let half = b.f32s(&[0.5], &[]);
    let s3 = b.op("Mul", &[&a2, &half], vec![]);
    let c = b.w("c", &[D], 2.0);
    let y2 = b.op("Div", &[&s3, &c], vec![]);
    let h2 = b.op("Add", &[&h1, &y2], vec![]);
    // A Gemm on rows with its bias, scaled after the reshape back... the scale reads the Gemm
    // output directly here: Gemm → Mul(λ) on [N, D].
    let n3 = b.ln(&h2, D);
    let sh = b.ints(&[-1, D], &[2]);
    let rows = b.op("Reshape", &[&n3, &sh], vec![]);
    let w3 = b.w("w3", &[D, D], 0.0);
    let c3 = b.w("c3", &[D], 0.3);
    let g3 = b.op("Gemm", &[&rows, &w3, &c3], vec![attr_i("transB", 1)]);
    let l3 = b.w("lambda3", &[D], 0.5);
    let y3 = b.op("Mul", &[&g3, &l3], vec![]);
    let (d0, d1) = (b.dim(&h2, 0), b.dim(&h2, 1));
    let dd = b.ints(&[D], &[1]);
    let back = b.op("Concat", &[&d0, &d1, &dd], vec![attr_i("axis", 0)]);
    let y3b = b.op("Reshape", &[&y3, &back], vec![]);
    let h3 = b.op("Add", &[&h2, &y3b], vec![]);
    let nf = b.ln(&h3, D);
    let head = b.w("head", &[D, V], 0.0);
    b.nodes
        .push(node("MatMul", "head", &[&nf, &head], &["logits"], vec![]));
    let m = b.model(ids_input(), "logits", &[-1, -2, V]);
    check(
        "layer_scale",
        &m,
        &Expect {
            norms: 4,
            centering: 0,
            says: &["LayerScale folded"],
        },
    );
}

/// The backbones of `testdata/backbones` (generated by its `generate.py`): DINOv2 (LayerScale
/// on every branch, position embeddings interpolated in the graph) and a ViT called with
/// `interpolate_pos_encoding`. Both targets, no explicit centering node, verified at two image
/// sizes.
#[test]
fn backbones_layer_scale_and_interpolated_positions() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/backbones");
    for (file, says) in [
        ("dinov2_ts14.onnx", &["LayerScale folded", "Resize"][..]),
        ("dinov2_ts17.onnx", &["LayerScale folded", "Resize"][..]),
        ("vit_interp_ts17.onnx", &["Resize"][..]),
    ] {
        let src = root.join(file);
        let dir = tempfile::tempdir().unwrap();
        for target in [Target::Rmsnorm, Target::Crmsnorm] {
            let out = common::pass::run(
                Model::load(&src).unwrap(),
                &Options {
                    check_each_patch: true,
                    form: target.into(),
                    ..Options::default()
                },
            )
            .unwrap_or_else(|e| panic!("{file} {target:?}: {e}"));
            let json = serde_json::to_string(&out.report).unwrap();
            assert_eq!(out.report.norms_rewritten, 5, "{file} {target:?}: {json}");
            assert_eq!(out.report.centering_nodes, 0, "{file} {target:?}: {json}");
            for s in says {
                assert!(json.contains(s), "{file} {target:?}: report lacks {s:?}");
            }
            let dst = dir.path().join(format!("{target:?}.onnx"));
            onnx_normopt::save(&out.model, &dst).unwrap();
            for (h, w) in [(32, 32), (48, 40)] {
                let mut o = verify_opts();
                o.dims = [("batch", 2), ("height", h), ("width", w)]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                let rep = verify::verify_files(&src, &dst, &o)
                    .unwrap_or_else(|e| panic!("{file} {target:?} {h}x{w}: {e}"));
                assert!(rep.passed(), "{file} {target:?} {h}x{w}:\n{rep}");
            }
        }
    }
}

/// Position tables reaching the stream through every pass-through of the hidden-axis rule:
/// Transpose, Pad with zeros, AveragePool, ReduceMean over another axis, Squeeze/Unsqueeze,
/// Slice, Split, Gather on the token axis, Where with a per-token condition, Add. The tables are
/// centred over their hidden axis: no explicit centering node.
#[test]
fn position_tables_through_pass_throughs() {
    const S: i64 = 4;
    let mut b = B::default();
    // Table A [1, 6, 6, D] → [1, D, 6, 6] → Pad → [1, D, 8, 8] → AveragePool → [1, D, 4, 4]
    // → ReduceMean over the last axis → [1, D, 4, 1] → Squeeze → Transpose → [1, 4, D].
    let ta = b.w("table_a", &[1, 6, 6, D], 1.0);
    let a = b.op("Transpose", &[&ta], vec![attr_ints("perm", &[0, 3, 1, 2])]);
    let pads = b.ints(&[0, 0, 1, 1, 0, 0, 1, 1], &[8]);
    let a = b.op("Pad", &[&a, &pads], vec![]);
    let a = b.op(
        "AveragePool",
        &[&a],
        vec![
            attr_ints("kernel_shape", &[2, 2]),
            attr_ints("strides", &[2, 2]),
        ],
    );
    let ax3 = b.ints(&[3], &[1]);
    let a = b.op("ReduceMean", &[&a, &ax3], vec![]);
    let a = b.op("Squeeze", &[&a, &ax3], vec![]);
    let a = b.op("Transpose", &[&a], vec![attr_ints("perm", &[0, 2, 1])]);
    // Table B [1, 10, D] → Slice tokens 1..9 → Split 4 + 4; the second reversed by a Gather
    // and sent through Unsqueeze/Squeeze.
    let tb = b.w("table_b", &[1, 10, D], -1.0);
    let (st, en, ax1) = (b.ints(&[1], &[1]), b.ints(&[9], &[1]), b.ints(&[1], &[1]));
    let sl = b.op("Slice", &[&tb, &st, &en, &ax1], vec![]);
    let sizes = b.ints(&[S, S], &[2]);
    let (s0, s1) = (b.fresh("split"), b.fresh("split"));
    let name = b.fresh("Split");
    b.nodes.push(node(
        "Split",
        &name,
        &[&sl, &sizes],
        &[&s0, &s1],
        vec![attr_i("axis", 1)],
    ));
    let idx = b.ints(&[3, 2, 1, 0], &[S]);
    let c = b.op("Gather", &[&s1, &idx], vec![attr_i("axis", 1)]);
    let ax0 = b.ints(&[0], &[1]);
    let c = b.op("Unsqueeze", &[&c, &ax0], vec![]);
    let c = b.op("Squeeze", &[&c, &ax0], vec![]);
    // Where with a per-token condition [1, S, 1].
    let cond = b.fresh("cond");
    b.inits.push(TensorProto {
        dims: vec![1, S, 1],
        data_type: Some(dt::BOOL),
        name: Some(cond.clone()),
        int32_data: vec![1, 0, 0, 1],
        ..Default::default()
    });
    let w = b.op("Where", &[&cond, &a, &c], vec![]);
    let pos = b.op("Add", &[&w, &s0], vec![]);
    let wte = b.w("wte", &[V, D], 1.5);
    let e = b.op("Gather", &[&wte, "ids"], vec![attr_i("axis", 0)]);
    let h0 = b.op("Add", &[&e, &pos], vec![]);
    let n1 = b.ln(&h0, D);
    let a1 = b.linear(&n1, D, D);
    let h1 = b.op("Add", &[&h0, &a1], vec![]);
    let nf = b.ln(&h1, D);
    let head = b.w("head", &[D, V], 0.0);
    b.nodes
        .push(node("MatMul", "head", &[&nf, &head], &["logits"], vec![]));
    let m = b.model(vec![vi("ids", dt::INT64, &[-1, S])], "logits", &[-1, S, V]);
    check(
        "pass_throughs",
        &m,
        &Expect {
            norms: 2,
            centering: 0,
            says: &["hidden axis", "AveragePool", "Where", "Pad"],
        },
    );
}

/// Keras's LayerNorm as tf2onnx writes it (passes/norms/foreign.rs): μ by `ReduceMean` (axes input)
/// or `GlobalAveragePool`, the square by `Pow(d, 2)` or `Mul(d, d)`, y = x·r + (β − μ·r), or
/// x·r − μ·r without β. Returns y.
fn keras_ln(b: &mut B, x: &str, pool: bool, beta: bool) -> String {
    let mean = if pool {
        b.op("GlobalAveragePool", &[x], vec![])
    } else {
        let ax = b.ints(&[-1], &[1]);
        b.op("ReduceMean", &[x, &ax], vec![])
    };
    let d = b.op("Sub", &[x, &mean], vec![]);
    let sq = if pool {
        b.op("Mul", &[&d, &d], vec![])
    } else {
        let two = b.f32s(&[2.0], &[]);
        b.op("Pow", &[&d, &two], vec![])
    };
    let var = if pool {
        b.op("GlobalAveragePool", &[&sq], vec![])
    } else {
        let ax = b.ints(&[-1], &[1]);
        b.op("ReduceMean", &[&sq, &ax], vec![])
    };
    let eps = b.f32s(&[1e-5], &[]);
    let a = b.op("Add", &[&var, &eps], vec![]);
    let s = b.op("Sqrt", &[&a], vec![]);
    let r = b.op("Reciprocal", &[&s], vec![]);
    let g = b.w("ln.g", &[D], 1.0);
    let rg = b.op("Mul", &[&r, &g], vec![]);
    let mr = b.op("Mul", &[&mean, &rg], vec![]);
    let xr = b.op("Mul", &[x, &rg], vec![]);
    if beta {
        let be = b.w("ln.b", &[D], 0.2);
        let sh = b.op("Sub", &[&be, &mr], vec![]);
        b.op("Add", &[&xr, &sh], vec![])
    } else {
        b.op("Sub", &[&xr, &mr], vec![])
    }
}

/// Flax's LayerNorm as jax2tf + tf2onnx write it, in the variant with kept dims (no
/// Reshape/Expand), `Div(Σ, n)`, no `Max`, `Div(1, Sqrt)` and no γ: y = (x − μ)·r + β.
fn jax_ln(b: &mut B, x: &str) -> String {
    let ax = b.ints(&[2], &[1]);
    let n = b.f32s(&[D as f32], &[]);
    let s1 = b.op("ReduceSum", &[x, &ax], vec![]);
    let mean = b.op("Div", &[&s1, &n], vec![]);
    let c = b.op("Sub", &[x, &mean], vec![]);
    let mm = b.op("Mul", &[&mean, &mean], vec![]);
    let xx = b.op("Mul", &[x, x], vec![]);
    let s2 = b.op("ReduceSum", &[&xx, &ax], vec![]);
    let m2 = b.op("Div", &[&s2, &n], vec![]);
    let var = b.op("Sub", &[&m2, &mm], vec![]);
    let eps = b.f32s(&[1e-5], &[]);
    let a = b.op("Add", &[&var, &eps], vec![]);
    let s = b.op("Sqrt", &[&a], vec![]);
    let one = b.f32s(&[1.0], &[]);
    let r = b.op("Div", &[&one, &s], vec![]);
    let y = b.op("Mul", &[&c, &r], vec![]);
    let be = b.w("ln.b", &[1, 1, D], 0.2);
    b.op("Add", &[&y, &be], vec![])
}

/// The other frameworks' LayerNorm forms in the variants their converters may write (the
/// exported ones are in testdata/frameworks): recognised by name, rewritten, 0 centering nodes.
#[test]
fn framework_layernorm_variants() {
    let mut b = B::default();
    let wte = b.w("wte", &[V, D], 1.5);
    let h0 = b.op("Gather", &[&wte, "ids"], vec![attr_i("axis", 0)]);
    let n1 = keras_ln(&mut b, &h0, false, false);
    let a1 = b.linear(&n1, D, D);
    let h1 = b.op("Add", &[&h0, &a1], vec![]);
    let n2 = jax_ln(&mut b, &h1);
    let a2 = b.linear(&n2, D, D);
    let h2 = b.op("Add", &[&h1, &a2], vec![]);
    let nf = keras_ln(&mut b, &h2, true, true);
    let head = b.w("head", &[D, V], 0.0);
    b.nodes
        .push(node("MatMul", "head", &[&nf, &head], &["logits"], vec![]));
    let m = b.model(ids_input(), "logits", &[-1, -2, V]);
    check(
        "framework_variants",
        &m,
        &Expect {
            norms: 3,
            centering: 0,
            says: &["Keras/tf2onnx", "Flax/jax2tf"],
        },
    );
}
