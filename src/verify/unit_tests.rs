//! Unit tests of the pure parts: shape defaults, the generator, the comparison.

use std::collections::BTreeMap;

use super::inputs::Rng;
use super::report::{Accum, Runtime};
use super::spec::{resolve_shapes, CasePlan, Dim, DimExpr, ModelSpec, Resolved, ValueSpec};
use super::tensor::{from_f64_fn, HostTensor};
use super::VerifyError;
use crate::proto::data_type as dt;

fn spec(name: &str, dims: Vec<Dim>) -> ValueSpec {
    ValueSpec {
        name: name.into(),
        elem_type: dt::INT64,
        dims: Some(dims),
    }
}

/// [`resolve_shapes`] for inputs alone (a graph stating no facts), with a case's fixed sizes.
fn resolve(
    inputs: &[ValueSpec],
    user: &BTreeMap<String, usize>,
    case: &BTreeMap<String, usize>,
) -> Result<Resolved, String> {
    let spec = ModelSpec {
        path: "test.onnx".into(),
        inputs: inputs.to_vec(),
        outputs: vec![],
        vocab: Default::default(),
        low_precision: None,
        custom_ops: vec![],
        branch_flags: vec![],
        facts: vec![],
        quantized: vec![],
        nudge_targets: vec![],
    };
    let case = CasePlan {
        dims: case.clone(),
        ..CasePlan::default()
    };
    resolve_shapes(&spec, user, &case)
}

#[test]
fn dynamic_dims_default_by_name_and_position() {
    let p = |s: &str| Dim::Param(s.into());
    let inputs = vec![
        spec("ids", vec![p("batch_size"), p("sequence_length")]),
        spec("mask", vec![p("batch_size"), p("sequence_length")]),
        spec(
            "pix",
            vec![p("s0"), Dim::Fixed(3), Dim::Unknown, p("width")],
        ),
        spec("pos", vec![p("n")]),
        spec("len_first", vec![p("seq"), Dim::Fixed(4)]),
    ];
    let none = BTreeMap::new();
    let r = resolve(&inputs, &none, &none).unwrap();
    let (shapes, used) = (r.shapes, r.used);
    assert_eq!(shapes[0], vec![2, 8]);
    assert_eq!(shapes[1], vec![2, 8]);
    assert_eq!(shapes[2], vec![2, 3, 8, 8]);
    assert_eq!(shapes[3], vec![2]); // "n" looks like a batch
    assert_eq!(shapes[4], vec![8, 4]); // a length-like name is never a batch
    assert_eq!(used.get("pix[2]"), Some(&8));
    let overrides = BTreeMap::from([("sequence_length".into(), 3), ("pix[2]".into(), 5)]);
    let r = resolve(&inputs, &overrides, &none).unwrap();
    let (shapes, used) = (r.shapes, r.used);
    assert_eq!(shapes[0], vec![2, 3]);
    assert_eq!(shapes[2], vec![2, 3, 5, 8]);
    assert_eq!(used["sequence_length"], 3);
}

#[test]
fn generator_is_deterministic_and_roughly_standard_normal() {
    let mut a = Rng::new(1);
    let mut b = Rng::new(1);
    let xs: Vec<f64> = (0..20000).map(|_| a.normal()).collect();
    let ys: Vec<f64> = (0..20000).map(|_| b.normal()).collect();
    assert_eq!(xs, ys);
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
    assert!(
        mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
        "mean {mean} var {var}"
    );
    let mut c = Rng::new(2);
    assert!((0..1000).all(|_| c.below(7) < 7));
}

fn t(values: &[f64]) -> HostTensor {
    let mut it = values.iter().copied();
    from_f64_fn("y", dt::FLOAT, &[values.len()], || it.next().unwrap())
}

#[test]
fn comparison_is_relative_to_the_largest_reference_and_flags_non_finite() {
    let mut acc = Accum::new(Runtime::Tract, 0, "y", dt::FLOAT, None);
    acc.add(&t(&[1.0, -4.0, 2.0]), &t(&[1.0, -4.0, 2.0002]));
    let row = acc.finish();
    assert!(row.pass);
    assert!((row.max_abs - 2e-4).abs() < 1e-6);
    assert!((row.max_rel - 5e-5).abs() < 1e-6, "{}", row.max_rel);
    assert_eq!(row.max_ref, 4.0);

    let mut acc = Accum::new(Runtime::Ort, 0, "y", dt::FLOAT, None);
    acc.add(&t(&[1.0, 2.0]), &t(&[1.0, f64::NAN]));
    let row = acc.finish();
    assert!(!row.pass && row.nonfinite == 1, "{row:?}");

    // Same non-finite values in both: not a mismatch, but noted.
    let mut acc = Accum::new(Runtime::Ort, 0, "y", dt::FLOAT, None);
    acc.add(&t(&[f64::INFINITY, 2.0]), &t(&[f64::INFINITY, 2.0]));
    let row = acc.finish();
    assert!(
        row.pass && row.detail.as_deref().unwrap().contains("non-finite"),
        "{row:?}"
    );

    // All-zero reference: any difference is an infinite relative error.
    let mut acc = Accum::new(Runtime::Tract, 0, "y", dt::FLOAT, Some(0.5));
    acc.add(&t(&[0.0, 0.0]), &t(&[0.0, 1e-3]));
    let row = acc.finish();
    assert!(!row.pass && row.max_rel.is_infinite() && row.tolerance == 0.5);

    // Shapes and element types must match.
    let mut acc = Accum::new(Runtime::Tract, 0, "y", dt::FLOAT, None);
    acc.add(&t(&[1.0, 2.0]), &t(&[1.0, 2.0, 3.0]));
    assert!(!acc.finish().pass);
    let mut acc = Accum::new(Runtime::Tract, 0, "y", dt::FLOAT, None);
    let mut it = [1.0, 2.0].into_iter();
    let d = from_f64_fn("y", dt::DOUBLE, &[2], || it.next().unwrap());
    acc.add(&t(&[1.0, 2.0]), &d);
    assert!(!acc.finish().pass);

    // Integer outputs must match exactly, whatever --rtol says.
    let ints = |v: &[f64]| {
        let mut it = v.iter().copied();
        from_f64_fn("i", dt::INT64, &[v.len()], || it.next().unwrap())
    };
    let mut acc = Accum::new(Runtime::Tract, 0, "i", dt::INT64, Some(0.5));
    acc.add(&ints(&[100.0, 7.0]), &ints(&[100.0, 8.0]));
    let row = acc.finish();
    assert!(!row.pass && row.tolerance == 0.0);
}

/// The naive CRMSNorm of one row in f64: `x̃ / sqrt((Σx̃² + (Σx̃)²)/D + ε) [· γ]`.
fn crms_reference(row: &[f64], width: usize, eps: f64, scale: Option<&[f64]>) -> Vec<f64> {
    let s: f64 = row.iter().sum();
    let q: f64 = row.iter().map(|x| x * x).sum();
    let r = ((q + s * s) / width as f64 + eps).sqrt();
    row.iter()
        .enumerate()
        .map(|(i, x)| x / r * scale.map_or(1.0, |g| g[i]))
        .collect()
}

/// CRMSNorm is the first D−1 entries of RMSNorm of the zero-mean (x̃, −Σx̃): check the reference
/// against that identity, so the op tests below compare with the paper's definition.
#[test]
fn crms_reference_is_rmsnorm_of_the_decompressed_vector() {
    let mut rng = Rng::new(7);
    let row: Vec<f64> = (0..11).map(|_| rng.normal()).collect();
    let mut full = row.clone();
    full.push(-row.iter().sum::<f64>());
    let ms = full.iter().map(|x| x * x).sum::<f64>() / 12.0;
    let rms: Vec<f64> = full.iter().map(|x| x / (ms + 1e-5).sqrt()).collect();
    let crms = crms_reference(&row, 12, 1e-5, None);
    for (a, b) in crms.iter().zip(&rms) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
}

/// The fused tract op against the naive formula: f32, f64 and f16, with and without `Scale`,
/// rows longer and shorter than the 8 accumulation lanes, and a leading batch shape.
#[test]
fn crms_tract_op_matches_the_formula() {
    use crate::ops::CrmsNormalization;
    use tract_onnx::prelude::*;
    let mut rng = Rng::new(3);
    for &(width, rows) in &[(2usize, 3usize), (8, 2), (17, 5), (193, 4)] {
        let n = width - 1;
        let x: Vec<f64> = (0..rows * n).map(|_| 3.0 * rng.normal() + 0.5).collect();
        let g: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let op = CrmsNormalization {
            width,
            epsilon: 1e-5,
        };
        for with_scale in [false, true] {
            let want: Vec<f64> = x
                .chunks(n)
                // ε is a float attribute: the op uses the f32 1e-5 (widened for f64).
                .flat_map(|r| {
                    crms_reference(r, width, 1e-5f32 as f64, with_scale.then_some(&g[..]))
                })
                .collect();
            let max_ref = want.iter().fold(0f64, |m, v| m.max(v.abs()));
            for (dt, tol) in [
                (DatumType::F32, 1e-6),
                (DatumType::F64, 1e-12),
                (DatumType::F16, 1e-3),
            ] {
                let shape = [1, rows, n];
                let xt = Tensor::from_shape(&shape, &x)
                    .unwrap()
                    .cast_to_dt(dt)
                    .unwrap()
                    .into_owned();
                let gt = Tensor::from_shape(&[n], &g)
                    .unwrap()
                    .cast_to_dt(dt)
                    .unwrap()
                    .into_owned();
                let y = op
                    .compute(&xt, with_scale.then_some(&gt))
                    .unwrap_or_else(|e| panic!("{dt:?} width {width}: {e}"));
                assert_eq!(y.datum_type(), dt);
                assert_eq!(y.shape(), &shape);
                let y = y.cast_to::<f64>().unwrap();
                let y = y.to_plain_array_view::<f64>().unwrap();
                let worst = y
                    .iter()
                    .zip(&want)
                    .fold(0f64, |m, (a, b)| m.max((a - b).abs()))
                    / max_ref;
                assert!(
                    worst < tol,
                    "{dt:?} width {width} scale {with_scale}: max|Δ|/max|ref| = {worst:e}"
                );
            }
        }
    }
}

/// Wrong inputs are errors, not panics: a row length that does not match `width`, a Scale of the
/// wrong length, an integer tensor.
#[test]
fn crms_tract_op_rejects_wrong_inputs() {
    use crate::ops::CrmsNormalization;
    use tract_onnx::prelude::*;
    let op = CrmsNormalization {
        width: 5,
        epsilon: 1e-5,
    };
    let x = Tensor::from_shape(&[2, 3], &[1f32; 6]).unwrap();
    let e = op.compute(&x, None).unwrap_err().to_string();
    assert!(e.contains("rows have 3 entries"), "{e}");
    let x = Tensor::from_shape(&[2, 4], &[1f32; 8]).unwrap();
    let g = Tensor::from_shape(&[3], &[1f32; 3]).unwrap();
    let e = op.compute(&x, Some(&g)).unwrap_err().to_string();
    assert!(e.contains("Scale has shape [3]"), "{e}");
    let x = Tensor::from_shape(&[1, 4], &[1i32; 4]).unwrap();
    let e = op.compute(&x, None).unwrap_err().to_string();
    assert!(e.contains("not supported"), "{e}");
}

#[test]
fn dim_params_parse_as_names_literals_or_expressions() {
    assert_eq!(Dim::from_param("seq"), Dim::Param("seq".into()));
    assert_eq!(
        Dim::from_param("sequence-length"),
        Dim::Param("sequence-length".into())
    );
    assert_eq!(Dim::from_param("1"), Dim::Fixed(1));
    assert_eq!(Dim::from_param("2*3 + 1"), Dim::Fixed(7));
    let Dim::Expr(text, e) = Dim::from_param("past_sequence_length + sequence_length") else {
        panic!("not an expression");
    };
    assert_eq!(text, "past_sequence_length + sequence_length");
    assert_eq!(e.names(), ["past_sequence_length", "sequence_length"]);
    assert_eq!(
        e.summed_names(),
        ["past_sequence_length", "sequence_length"]
    );
    // Precedence, parentheses, unary minus, floor division and remainder.
    let e = DimExpr::parse("2*(a + 1) - b // 2 + -c % 3").unwrap();
    let v = |n: &str| match n {
        "a" => 4,
        "b" => 7,
        _ => 1,
    };
    assert_eq!(e.eval(&v), Ok(2 * 5 - 3 + 2)); // -1 mod 3 = 2 (floor)
    assert_eq!(
        DimExpr::parse("a / 0").unwrap().eval(&v).unwrap_err(),
        "divides by zero"
    );
    // Not this grammar: an opaque name, never a crash.
    assert!(matches!(Dim::from_param("floor(s0/2)"), Dim::Param(_)));
    assert!(matches!(Dim::from_param("a +"), Dim::Param(_)));
    assert!(matches!(
        Dim::from_param(&"(".repeat(10_000)),
        Dim::Param(_)
    ));
}

#[test]
fn expression_dims_take_one_value_per_name() {
    let e = |s: &str| Dim::from_param(s);
    let inputs = vec![
        spec(
            "past",
            vec![e("batch"), Dim::Fixed(4), e("past_len"), Dim::Fixed(8)],
        ),
        spec("mask", vec![e("batch"), e("past_len + seq")]),
        spec("ids", vec![e("batch"), e("seq")]),
        spec("only_in_expr", vec![e("extra * 2")]),
    ];
    let none = BTreeMap::new();
    let case = BTreeMap::from([("past_len".to_string(), 8), ("seq".to_string(), 4)]);
    let r = resolve(&inputs, &none, &case).unwrap();
    assert_eq!(r.shapes[0], [2, 4, 8, 8]);
    assert_eq!(r.shapes[1], [2, 12]);
    assert_eq!(r.shapes[2], [2, 4]);
    assert_eq!(r.shapes[3], [16]); // `extra` gets the default 8
    assert_eq!(r.used["past_len + seq"], 12);
    // --dim wins over the case, for names and for a whole expression.
    let user = BTreeMap::from([("seq".to_string(), 3)]);
    let r = resolve(&inputs, &user, &case).unwrap();
    assert_eq!(r.shapes[1], [2, 11]);
    let user = BTreeMap::from([("past_len + seq".to_string(), 5)]);
    assert_eq!(resolve(&inputs, &user, &case).unwrap().shapes[1], [2, 5]);
    // A size that cannot be chosen names the axis, the expression and the --dim to set.
    let neg = vec![spec("x", vec![e("a - b")])];
    let user = BTreeMap::from([("a".to_string(), 2), ("b".to_string(), 5)]);
    let err = resolve(&neg, &user, &none).unwrap_err();
    assert!(err.contains("axis 0 of input `x`"), "{err}");
    assert!(err.contains("`a - b` comes out negative (-3)"), "{err}");
    assert!(err.contains("--dim a=VALUE --dim b=VALUE"), "{err}");
}

/// A runtime that failed on an allocation is out of memory (on model B, verification is then
/// incomplete, exit 5: `compare::b_failed`); a failure of the model itself is not.
#[test]
fn allocation_failures_are_out_of_memory() {
    let ort = |m: &str| VerifyError::Ort {
        stage: "run",
        path: "b.onnx".into(),
        message: m.into(),
    };
    assert!(ort(
        "Non-zero status code returned while running MatMul node. Status Message: \
         bfc_arena.cc:360 void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool) \
         Failed to allocate memory for requested buffer of size 805306368"
    )
    .out_of_memory());
    assert!(
        !ort("Non-zero status code returned while running MatMul node: shape mismatch")
            .out_of_memory()
    );
    let tract = VerifyError::Tract {
        stage: "run",
        path: "b.onnx".into(),
        message: "panicked: failed to allocate Layout { size: 2048, align: 512 }".into(),
    };
    assert!(tract.out_of_memory());
}

/// The facts of an onnxruntime-genai builder output (GroupQueryAttention with packed QKV) size
/// its head-size dim and its mask, and a filled cache takes one new token at batch 2.
#[test]
fn genai_dims_are_solved_from_the_attention_op() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/genai/nemotron_int4/model.onnx");
    let spec = ModelSpec::from_path(&path).unwrap();
    let none = BTreeMap::new();
    let cases = super::spec::plan_cases(&spec, &none);
    assert_eq!(cases.len(), 2);
    let solved: Vec<Resolved> = cases
        .iter()
        .map(|c| resolve_shapes(&spec, &none, c).unwrap())
        .collect();
    for r in &solved {
        assert_eq!(r.used["kv_cache_dim"], 32);
        let why = r.origins["kv_cache_dim"].to_string();
        assert!(why.starts_with("GroupQueryAttention"), "{why}");
        assert!(why.contains("packed QKV width 128 / 4"), "{why}");
        assert!(r.notes.is_empty(), "{:?}", r.notes);
    }
    let (empty, filled) = (&solved[0].used, &solved[1].used);
    assert_eq!(
        (
            empty["past_sequence_length"],
            empty["sequence_length"],
            empty["total_sequence_length"]
        ),
        (0, 8, 8)
    );
    assert_eq!(
        (
            filled["past_sequence_length"],
            filled["sequence_length"],
            filled["total_sequence_length"]
        ),
        (8, 1, 9)
    );
    assert!(
        spec.quantized[0].starts_with("MatMulNBits ×"),
        "{:?}",
        spec.quantized
    );
    assert!(!spec.nudge_targets.is_empty());
}

/// A length read by a strided Conv stack is raised to the shortest input every window fits;
/// a `--dim` below it is kept (the user's choice) and the broken fact is noted.
#[test]
fn conv_stack_sets_the_shortest_length() {
    let text = r#"
input %x: f32[batch,samples]
output %y: f32[batch,4,?]
init @axes: i64[1] = [1]
init @w1: f32[4,1,10] = random(1)
init @w2: f32[4,4,3] = random(2)
%u = Unsqueeze[u](%x, @axes)
%c1 = Conv[c1](%u, @w1) strides=[5]
%c2 = Conv[c2](%c1, @w2) strides=[2]
%y = Relu[r](%c2)
"#;
    let m = crate::ir::text::parse_proto(text).unwrap();
    let spec = ModelSpec::from_model("t.onnx".as_ref(), &m).unwrap();
    let case = CasePlan::default();
    let r = resolve_shapes(&spec, &BTreeMap::new(), &case).unwrap();
    // (samples − 10) // 5 + 1 ≥ 3  ⇔  samples ≥ 20
    assert_eq!(r.used["samples"], 20);
    assert!(
        r.origins["samples"].to_string().contains("Conv \"c2\""),
        "{:?}",
        r.origins
    );
    assert_eq!(r.used["batch"], 2);
    let user = BTreeMap::from([("samples".to_string(), 12)]);
    let r = resolve_shapes(&spec, &user, &case).unwrap();
    assert_eq!(r.used["samples"], 12);
    assert!(r.notes.iter().any(|n| n.contains("c2")), "{:?}", r.notes);
}
