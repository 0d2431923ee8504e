//! The `com.microsoft` ops onnxruntime's offline optimiser writes, as tract runs them through
//! `tract_onnx_with_extensions`: each single-op model A is verified against its decomposition B
//! into standard ONNX ops, in tract and in onnxruntime. onnxruntime agreeing says the
//! decomposition is the contrib op's meaning; tract agreeing says tract computes it.
//! (Without onnxruntime, a visible note, and tract alone.)

mod common;

use common::build::*;
use common::pass::have_ort;
use onnx_normopt::proto::{data_type as dt, tensor_shape_proto::Dimension, NodeProto, TensorProto};
use onnx_normopt::verify::{ci_requires_ort, verify_files, Runtime, Runtimes, VerifyOptions};

const MS: &str = "com.microsoft";

struct Case {
    name: &'static str,
    inputs: Vec<(&'static str, Vec<i64>)>,
    out: Vec<i64>,
    inits: Vec<TensorProto>,
    fused: Vec<NodeProto>,
    decomposed: Vec<NodeProto>,
}

fn dims(v: &[i64]) -> Vec<Dimension> {
    v.iter().map(|&d| dv(d)).collect()
}

fn check(c: Case) {
    let dir = tempfile::tempdir().unwrap();
    let mk = |nodes: Vec<NodeProto>| {
        model(
            graph(
                nodes,
                c.inputs
                    .iter()
                    .map(|(n, d)| vi_dims(n, dt::FLOAT, &dims(d)))
                    .collect(),
                vec![vi_dims("y", dt::FLOAT, &dims(&c.out))],
                c.inits.clone(),
            ),
            17,
        )
    };
    let a = save(dir.path(), "fused.onnx", &mk(c.fused));
    let b = save(dir.path(), "decomposed.onnx", &mk(c.decomposed));
    let with_ort = have_ort(c.name);
    let opts = VerifyOptions {
        runtimes: if with_ort {
            Runtimes::Both
        } else {
            Runtimes::Tract
        },
        require_ort: ci_requires_ort(),
        ..VerifyOptions::default()
    };
    let r = verify_files(&a, &b, &opts).unwrap_or_else(|e| panic!("{}: {e}", c.name));
    println!("{}: {r}", c.name);
    assert!(r.passed(), "{}: {r}", c.name);
    assert!(r.not_run.is_empty(), "{}: {r}", c.name);
    assert!(r.ran(Runtime::Tract), "{}", c.name);
    assert_eq!(r.ran(Runtime::Ort), with_ort, "{}", c.name);
    // Not vacuous: the output is not all zeros.
    assert!(
        r.rows.iter().all(|row| row.max_ref > 1e-3),
        "{}: {r}",
        c.name
    );
}

fn scalar(name: &str, v: f32) -> TensorProto {
    f32_tensor(name, &[1], &[v])
}

#[test]
fn fused_matmul_matches_transpose_matmul_scale() {
    let t = |i: &str, o: &str, perm: &[i64]| {
        node_in("Transpose", "", &[i], &[o], vec![attr_ints("perm", perm)])
    };
    let mm = |a: &str, b: &str| node_in("MatMul", "", &[a, b], &["ab"], vec![]);
    let scale = || node_in("Mul", "", &["ab", "alpha"], &["y"], vec![]);
    let fused = |attrs: Vec<_>| vec![node_in("FusedMatMul", MS, &["a", "b"], &["y"], attrs)];
    let cases = vec![
        Case {
            name: "FusedMatMul transB alpha",
            inputs: vec![("a", vec![2, 3, 4]), ("b", vec![2, 5, 4])],
            out: vec![2, 3, 5],
            inits: vec![scalar("alpha", 0.5)],
            fused: fused(vec![attr_f("alpha", 0.5), attr_i("transB", 1)]),
            decomposed: vec![t("b", "bt", &[0, 2, 1]), mm("a", "bt"), scale()],
        },
        Case {
            name: "FusedMatMul transA broadcast",
            inputs: vec![("a", vec![2, 4, 3]), ("b", vec![4, 5])],
            out: vec![2, 3, 5],
            inits: vec![scalar("alpha", 1.25)],
            fused: fused(vec![attr_f("alpha", 1.25), attr_i("transA", 1)]),
            decomposed: vec![t("a", "at", &[0, 2, 1]), mm("at", "b"), scale()],
        },
        Case {
            name: "FusedMatMul transBatchA",
            inputs: vec![("a", vec![3, 2, 4]), ("b", vec![2, 4, 5])],
            out: vec![2, 3, 5],
            inits: vec![scalar("alpha", 1.0)],
            fused: fused(vec![attr_i("transBatchA", 1)]),
            decomposed: vec![t("a", "at", &[1, 0, 2]), mm("at", "b"), scale()],
        },
        Case {
            name: "FusedMatMul transBatchB transB",
            inputs: vec![("a", vec![2, 3, 4]), ("b", vec![5, 2, 4])],
            out: vec![2, 3, 5],
            inits: vec![scalar("alpha", 2.0)],
            fused: fused(vec![
                attr_f("alpha", 2.0),
                attr_i("transB", 1),
                attr_i("transBatchB", 1),
            ]),
            decomposed: vec![
                t("b", "b1", &[1, 0, 2]),
                t("b1", "bt", &[0, 2, 1]),
                mm("a", "bt"),
                scale(),
            ],
        },
        Case {
            name: "FusedMatMul transBatchA rank 4",
            inputs: vec![("a", vec![3, 2, 2, 4]), ("b", vec![2, 2, 4, 5])],
            out: vec![2, 2, 3, 5],
            inits: vec![scalar("alpha", 1.0)],
            fused: fused(vec![attr_i("transBatchA", 1)]),
            decomposed: vec![t("a", "at", &[1, 2, 0, 3]), mm("at", "b"), scale()],
        },
    ];
    for c in cases {
        check(c);
    }
    // The older name of the same op.
    check(Case {
        name: "TransposeMatMul",
        inputs: vec![("a", vec![4, 3]), ("b", vec![4, 5])],
        out: vec![3, 5],
        inits: vec![scalar("alpha", 1.0)],
        fused: vec![node_in(
            "TransposeMatMul",
            MS,
            &["a", "b"],
            &["y"],
            vec![attr_i("transA", 1)],
        )],
        decomposed: vec![t("a", "at", &[1, 0]), mm("at", "b"), scale()],
    });
}

#[test]
fn fused_gemm_matches_gemm_then_activation() {
    type Activation<'a> = (&'a str, Vec<(&'a str, f32)>, Vec<NodeProto>);
    let acts: Vec<Activation> = vec![
        (
            "Relu",
            vec![],
            vec![node_in("Relu", "", &["g"], &["y"], vec![])],
        ),
        (
            "LeakyRelu",
            vec![("activation_alpha", 0.2)],
            vec![node_in(
                "LeakyRelu",
                "",
                &["g"],
                &["y"],
                vec![attr_f("alpha", 0.2)],
            )],
        ),
        (
            "Sigmoid",
            vec![],
            vec![node_in("Sigmoid", "", &["g"], &["y"], vec![])],
        ),
        (
            "Tanh",
            vec![],
            vec![node_in("Tanh", "", &["g"], &["y"], vec![])],
        ),
        (
            "HardSigmoid",
            vec![("activation_alpha", 0.3), ("activation_beta", 0.4)],
            vec![node_in(
                "HardSigmoid",
                "",
                &["g"],
                &["y"],
                vec![attr_f("alpha", 0.3), attr_f("beta", 0.4)],
            )],
        ),
    ];
    let gemm_attrs = || {
        vec![
            attr_f("alpha", 0.7),
            attr_f("beta", 0.3),
            attr_i("transB", 1),
        ]
    };
    for (act, params, tail) in acts {
        let mut attrs = gemm_attrs();
        attrs.push(attr_s("activation", act));
        attrs.extend(params.iter().map(|(n, v)| attr_f(n, *v)));
        let mut decomposed = vec![node_in("Gemm", "", &["a", "b", "c"], &["g"], gemm_attrs())];
        decomposed.extend(tail);
        check(Case {
            name: Box::leak(format!("FusedGemm {act}").into_boxed_str()),
            inputs: vec![("a", vec![3, 4]), ("b", vec![5, 4])],
            out: vec![3, 5],
            inits: vec![f32_tensor("c", &[5], &values(5, 3))],
            fused: vec![node_in("FusedGemm", MS, &["a", "b", "c"], &["y"], attrs)],
            decomposed,
        });
    }
}

#[test]
fn fused_conv_matches_conv_add_activation() {
    let conv_attrs = || {
        vec![
            attr_ints("kernel_shape", &[3, 3]),
            attr_ints("pads", &[1, 1, 1, 1]),
            attr_ints("strides", &[2, 2]),
        ]
    };
    let inits = || {
        vec![
            f32_tensor("w", &[3, 2, 3, 3], &values(54, 5)),
            f32_tensor("bias", &[3], &values(3, 6)),
        ]
    };
    // With Z (the fused Add) and Relu.
    let mut attrs = conv_attrs();
    attrs.push(attr_s("activation", "Relu"));
    check(Case {
        name: "FusedConv Z Relu",
        inputs: vec![("x", vec![1, 2, 5, 5]), ("z", vec![1, 3, 3, 3])],
        out: vec![1, 3, 3, 3],
        inits: inits(),
        fused: vec![node_in(
            "FusedConv",
            MS,
            &["x", "w", "bias", "z"],
            &["y"],
            attrs,
        )],
        decomposed: vec![
            node_in("Conv", "", &["x", "w", "bias"], &["cv"], conv_attrs()),
            node_in("Add", "", &["cv", "z"], &["s"], vec![]),
            node_in("Relu", "", &["s"], &["y"], vec![]),
        ],
    });
    // Without Z, LeakyRelu with its parameter in activation_params.
    let mut attrs = conv_attrs();
    attrs.push(attr_s("activation", "LeakyRelu"));
    attrs.push(attr_floats("activation_params", &[0.1]));
    check(Case {
        name: "FusedConv LeakyRelu",
        inputs: vec![("x", vec![1, 2, 5, 5])],
        out: vec![1, 3, 3, 3],
        inits: inits(),
        fused: vec![node_in("FusedConv", MS, &["x", "w", "bias"], &["y"], attrs)],
        decomposed: vec![
            node_in("Conv", "", &["x", "w", "bias"], &["cv"], conv_attrs()),
            node_in("LeakyRelu", "", &["cv"], &["y"], vec![attr_f("alpha", 0.1)]),
        ],
    });
}

/// `0.5·v·(1 + erf(v/√2))` of `v`, into `y`.
fn erf_gelu(v: &str) -> Vec<NodeProto> {
    vec![
        node_in("Div", "", &[v, "sqrt2"], &["e0"], vec![]),
        node_in("Erf", "", &["e0"], &["e1"], vec![]),
        node_in("Add", "", &["e1", "one"], &["e2"], vec![]),
        node_in("Mul", "", &[v, "e2"], &["e3"], vec![]),
        node_in("Mul", "", &["e3", "half"], &["y"], vec![]),
    ]
}

fn gelu_consts() -> Vec<TensorProto> {
    vec![
        scalar("sqrt2", std::f32::consts::SQRT_2),
        scalar("one", 1.0),
        scalar("half", 0.5),
        scalar("k0", (2.0f32 / std::f32::consts::PI).sqrt()),
        scalar("k1", 0.044715),
        scalar("qa", 1.5),
        f32_tensor("bias", &[8], &values(8, 9)),
    ]
}

#[test]
fn gelu_family_matches_its_formulas() {
    let x = || vec![("x", vec![2, 3, 8])];
    check(Case {
        name: "Gelu (com.microsoft)",
        inputs: x(),
        out: vec![2, 3, 8],
        inits: gelu_consts(),
        fused: vec![node_in("Gelu", MS, &["x"], &["y"], vec![])],
        decomposed: erf_gelu("x"),
    });
    let mut biased = vec![node_in("Add", "", &["x", "bias"], &["v"], vec![])];
    biased.extend(erf_gelu("v"));
    check(Case {
        name: "BiasGelu",
        inputs: x(),
        out: vec![2, 3, 8],
        inits: gelu_consts(),
        fused: vec![node_in("BiasGelu", MS, &["x", "bias"], &["y"], vec![])],
        decomposed: biased,
    });
    // FastGelu(x, bias) = 0.5·v·(1 + tanh(√(2/π)·(v + 0.044715·v³))), v = x + bias.
    check(Case {
        name: "FastGelu bias",
        inputs: x(),
        out: vec![2, 3, 8],
        inits: gelu_consts(),
        fused: vec![node_in("FastGelu", MS, &["x", "bias"], &["y"], vec![])],
        decomposed: vec![
            node_in("Add", "", &["x", "bias"], &["v"], vec![]),
            node_in("Mul", "", &["v", "v"], &["v2"], vec![]),
            node_in("Mul", "", &["v2", "v"], &["v3"], vec![]),
            node_in("Mul", "", &["v3", "k1"], &["t0"], vec![]),
            node_in("Add", "", &["v", "t0"], &["t1"], vec![]),
            node_in("Mul", "", &["t1", "k0"], &["t2"], vec![]),
            node_in("Tanh", "", &["t2"], &["t3"], vec![]),
            node_in("Add", "", &["t3", "one"], &["t4"], vec![]),
            node_in("Mul", "", &["v", "t4"], &["t5"], vec![]),
            node_in("Mul", "", &["t5", "half"], &["y"], vec![]),
        ],
    });
    check(Case {
        name: "QuickGelu alpha",
        inputs: x(),
        out: vec![2, 3, 8],
        inits: gelu_consts(),
        fused: vec![node_in(
            "QuickGelu",
            MS,
            &["x"],
            &["y"],
            vec![attr_f("alpha", 1.5)],
        )],
        decomposed: vec![
            node_in("Mul", "", &["x", "qa"], &["ax"], vec![]),
            node_in("Sigmoid", "", &["ax"], &["s"], vec![]),
            node_in("Mul", "", &["x", "s"], &["y"], vec![]),
        ],
    });
}

#[test]
fn skip_layer_normalization_matches_add_and_layer_norm() {
    let inits = vec![
        f32_tensor("gamma", &[8], &values(8, 11)),
        f32_tensor("beta", &[8], &values(8, 12)),
        f32_tensor("bias", &[8], &values(8, 13)),
    ];
    check(Case {
        name: "SkipLayerNormalization beta bias",
        inputs: vec![("x", vec![2, 3, 8]), ("skip", vec![2, 3, 8])],
        out: vec![2, 3, 8],
        inits,
        fused: vec![node_in(
            "SkipLayerNormalization",
            MS,
            &["x", "skip", "gamma", "beta", "bias"],
            &["y"],
            vec![attr_f("epsilon", 1e-5)],
        )],
        decomposed: vec![
            node_in("Add", "", &["x", "skip"], &["s0"], vec![]),
            node_in("Add", "", &["s0", "bias"], &["s"], vec![]),
            node_in(
                "LayerNormalization",
                "",
                &["s", "gamma", "beta"],
                &["y"],
                vec![attr_i("axis", -1), attr_f("epsilon", 1e-5)],
            ),
        ],
    });
}
