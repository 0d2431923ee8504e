//! Tests of `onnx_normopt::verify`: equivalent pairs pass, a one-weight change fails, in tract
//! and in onnxruntime; inputs respect vocabularies and dims; onnxruntime is required under CI.
//!
//! onnxruntime tests run when its library can be found (`ORT_DYLIB_PATH`, a Python
//! `onnxruntime` package, ...). Without it they print a note and return, except under `CI=true`,
//! where they fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message;

mod common;
use common::build::{
    attr_f, attr_i, attr_ints, dp, dv, model_with, node_in, positive_values, save, tensor, vi_any,
    vi_dims,
};
use common::pass::{have_ort, note};
use onnx_normopt::proto::{data_type, ModelProto, NodeProto, TensorProto};
use onnx_normopt::verify::{
    ci_requires_ort, find_ort_library, generate_inputs, verify_files, OrtLibrary, Runtime,
    Runtimes, VerifyError, VerifyOptions, VerifyReport,
};

// ---------------------------------------------------------------------------------------------
// helpers

fn corpus(name: &str) -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    for base in [
        here.join("../shared/corpus"),
        PathBuf::from("/work/shared/corpus"),
    ] {
        let p = base.join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("test model {name} not found in ../shared/corpus");
}

fn decode(path: &Path) -> ModelProto {
    ModelProto::decode(Bytes::from(std::fs::read(path).unwrap())).unwrap()
}

fn opts(runtimes: Runtimes) -> VerifyOptions {
    VerifyOptions {
        runtimes,
        ..VerifyOptions::default()
    }
}

/// Options for an onnxruntime test, or `None` (with a note) when onnxruntime is not installed and
/// CI does not require it. Under CI=true, `require_ort` is set, so a missing library fails the
/// test through `verify_files`'s error.
fn ort_opts(test: &str, runtimes: Runtimes) -> Option<VerifyOptions> {
    have_ort(test).then(|| VerifyOptions {
        runtimes,
        require_ort: ci_requires_ort(),
        ..VerifyOptions::default()
    })
}

fn verify(a: &Path, b: &Path, o: &VerifyOptions) -> VerifyReport {
    let r = verify_files(a, b, o).unwrap_or_else(|e| panic!("verify failed: {e}"));
    println!("{r}\n(took {} ms)", r.elapsed_ms);
    r
}

/// Add `delta` to element 0 of the initializer `name`.
fn perturb(m: &mut ModelProto, name: &str, delta: f32) {
    let t = m
        .graph
        .as_mut()
        .unwrap()
        .initializer
        .iter_mut()
        .find(|t| t.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no initializer {name}"));
    assert_eq!(t.data_type, Some(data_type::FLOAT));
    if let Some(raw) = &t.raw_data {
        let mut v = raw.to_vec();
        let x = f32::from_le_bytes(v[0..4].try_into().unwrap()) + delta;
        v[0..4].copy_from_slice(&x.to_le_bytes());
        t.raw_data = Some(Bytes::from(v));
    } else {
        t.float_data[0] += delta;
    }
}

/// gpt2.onnx with one LayerNorm weight element changed by +0.5 (returns the path and the weight
/// name). (+0.05 moves the logits by 1.4e-4 of their largest magnitude: barely over the 1e-4
/// tolerance.)
fn gpt2_perturbed(dir: &Path) -> (PathBuf, String) {
    let mut m = decode(&corpus("gpt2.onnx"));
    let g = m.graph.as_ref().unwrap();
    let ln = g
        .node
        .iter()
        .find(|n| n.op_type.as_deref() == Some("LayerNormalization"))
        .expect("gpt2 has LayerNormalization");
    let weight = ln.input[1].clone();
    assert!(g
        .initializer
        .iter()
        .any(|t| t.name.as_deref() == Some(weight.as_str())));
    perturb(&mut m, &weight, 0.5);
    (save(dir, "gpt2_perturbed.onnx", &m), weight)
}

fn assert_identical_pass(r: &VerifyReport, runtime: Runtime) {
    assert!(r.passed(), "{r}");
    assert!(r.ran(runtime));
    let rows: Vec<_> = r.rows.iter().filter(|row| row.runtime == runtime).collect();
    assert_eq!(rows.len(), 1, "{r}");
    assert_eq!(rows[0].output, "output");
    assert_eq!(rows[0].dtype, "f32");
    assert_eq!(rows[0].shape, vec![1, 8, 128]);
    assert_eq!(
        rows[0].max_abs, 0.0,
        "same graph, same runtime: bit-identical"
    );
    assert!(rows[0].max_ref > 0.1, "outputs are not trivially zero");
    assert_eq!(rows[0].tolerance, 1e-4);
}

fn assert_perturbed_fails(r: &VerifyReport, runtime: Runtime) {
    assert!(!r.passed(), "{r}");
    let fail = r
        .failures()
        .find(|row| row.runtime == runtime)
        .unwrap_or_else(|| panic!("no failing {runtime} row:\n{r}"));
    assert_eq!(fail.output, "output");
    assert!(
        fail.max_rel > 5.0 * fail.tolerance && fail.max_abs > 0.0,
        "{r}"
    );
    let text = r.to_string();
    assert!(text.contains("FAIL"), "{text}");
    assert!(
        text.contains(&format!("{} `output`", runtime.name())),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// equivalent pairs pass, perturbed pairs fail

#[test]
fn tract_accepts_identical_and_reencoded_copies() {
    let dir = tempfile::tempdir().unwrap();
    let a = corpus("gpt2.onnx");
    let copy = dir.path().join("copy.onnx");
    std::fs::copy(&a, &copy).unwrap();
    let reenc = save(dir.path(), "reencoded.onnx", &decode(&a));
    for b in [&copy, &reenc] {
        let r = verify(&a, b, &opts(Runtimes::Tract));
        assert_identical_pass(&r, Runtime::Tract);
        assert!(!r.ran(Runtime::Ort));
        assert_eq!(r.dims, BTreeMap::from([("seq".to_string(), 8)]));
    }
}

#[test]
fn tract_rejects_one_perturbed_weight() {
    let dir = tempfile::tempdir().unwrap();
    let (b, _) = gpt2_perturbed(dir.path());
    let r = verify(&corpus("gpt2.onnx"), &b, &opts(Runtimes::Tract));
    assert_perturbed_fails(&r, Runtime::Tract);
}

#[test]
fn onnxruntime_accepts_identical_and_reencoded_copies() {
    let Some(o) = ort_opts(
        "onnxruntime_accepts_identical_and_reencoded_copies",
        Runtimes::Ort,
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = corpus("gpt2.onnx");
    let copy = dir.path().join("copy.onnx");
    std::fs::copy(&a, &copy).unwrap();
    let reenc = save(dir.path(), "reencoded.onnx", &decode(&a));
    for b in [&copy, &reenc] {
        let r = verify(&a, b, &o);
        assert_identical_pass(&r, Runtime::Ort);
        assert!(!r.ran(Runtime::Tract));
        assert!(r.ort_library.is_some());
        assert!(!r.ort_optimize);
    }
}

#[test]
fn onnxruntime_rejects_one_perturbed_weight() {
    let Some(o) = ort_opts("onnxruntime_rejects_one_perturbed_weight", Runtimes::Ort) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (b, _) = gpt2_perturbed(dir.path());
    let r = verify(&corpus("gpt2.onnx"), &b, &o);
    assert_perturbed_fails(&r, Runtime::Ort);
}

#[test]
fn both_runtimes_reject_a_perturbed_linear_weight_and_name_themselves() {
    let Some(o) = ort_opts("both_runtimes_...", Runtimes::Both) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A linear (Gemm/MatMul) weight this time: one element of the output projection, +0.05.
    let mut m = decode(&corpus("gpt2.onnx"));
    let g = m.graph.as_ref().unwrap();
    let inits: Vec<&str> = g
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref())
        .collect();
    let w = g
        .node
        .iter()
        .rev()
        .filter(|n| matches!(n.op_type.as_deref(), Some("Gemm") | Some("MatMul")))
        .flat_map(|n| n.input.iter())
        .find(|i| inits.contains(&i.as_str()))
        .expect("a linear weight initializer")
        .clone();
    perturb(&mut m, &w, 0.05);
    let b = save(dir.path(), "b.onnx", &m);
    let r = verify(&corpus("gpt2.onnx"), &b, &o);
    assert_eq!(r.runtimes, vec![Runtime::Tract, Runtime::Ort]);
    assert_perturbed_fails(&r, Runtime::Tract);
    assert_perturbed_fails(&r, Runtime::Ort);
    let text = r.to_string();
    assert!(
        text.contains("tract") && text.contains("onnxruntime"),
        "{text}"
    );
    // The two runtimes agree with each other on A.
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("tract and onnxruntime agree")),
        "{text}"
    );
    // It goes into a JSON report.
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["rows"][0]["runtime"], "tract");
    assert_eq!(json["rows"][1]["runtime"], "onnxruntime");
    assert_eq!(json["rows"][1]["pass"], false);
    assert_eq!(json["dims"]["seq"], 8);
}

#[test]
fn ort_fused_and_vision_models_pass_against_themselves_in_both_runtimes() {
    // com.microsoft SkipLayerNormalization + BiasGelu, a [batch, seq] input, and a float image
    // input: tract always, onnxruntime when present.
    let o = ort_opts("ort_fused_...", Runtimes::Both).unwrap_or_else(|| opts(Runtimes::Tract));
    let dir = tempfile::tempdir().unwrap();
    for name in ["nanogpt_o17_ortfused.onnx", "vit.onnx"] {
        let a = corpus(name);
        let b = save(dir.path(), name, &decode(&a));
        let r = verify(&a, &b, &o);
        assert!(r.passed(), "{r}");
        assert!(r.ran(Runtime::Tract));
        if name == "vit.onnx" {
            assert_eq!(r.inputs[0].shape, vec![1, 3, 32, 32]);
            assert_eq!(r.inputs[0].values, "N(0,1)");
            assert!(r.dims.is_empty());
        } else {
            assert_eq!(
                r.dims,
                BTreeMap::from([("batch".into(), 2), ("seq".into(), 8)])
            );
        }
    }
}

/// gpt2.onnx with every LayerNormalization replaced by its definition in elementary ops: the
/// same function, different rounding.
fn gpt2_layer_norms_decomposed() -> ModelProto {
    let mut m = decode(&corpus("gpt2.onnx"));
    let opset = m
        .opset_import
        .iter()
        .find(|o| o.domain.as_deref().unwrap_or("").is_empty())
        .unwrap()
        .version
        .unwrap();
    assert!(opset >= 18, "axes as an input");
    let g = m.graph.as_mut().unwrap();
    g.initializer.push(TensorProto {
        name: Some("ln_axes".into()),
        dims: vec![1],
        data_type: Some(data_type::INT64),
        int64_data: vec![-1],
        ..Default::default()
    });
    let mut nodes = Vec::new();
    let mut count = 0;
    for n in std::mem::take(&mut g.node) {
        if n.op_type.as_deref() != Some("LayerNormalization") {
            nodes.push(n);
            continue;
        }
        count += 1;
        let eps = n
            .attribute
            .iter()
            .find(|a| a.name.as_deref() == Some("epsilon"))
            .and_then(|a| a.f)
            .unwrap_or(1e-5);
        let p = format!("ln{count}_");
        let v = |s: &str| format!("{p}{s}");
        g.initializer
            .push(tensor(&v("eps"), data_type::FLOAT, &[], &[eps]));
        let (x, gamma, beta, y) = (
            n.input[0].as_str(),
            n.input[1].as_str(),
            n.input[2].as_str(),
            n.output[0].as_str(),
        );
        let keep = || vec![attr_i("keepdims", 1)];
        nodes.push(node_in(
            "ReduceMean",
            "",
            &[x, "ln_axes"],
            &[&v("mean")],
            keep(),
        ));
        nodes.push(node_in("Sub", "", &[x, &v("mean")], &[&v("c")], vec![]));
        nodes.push(node_in("Mul", "", &[&v("c"), &v("c")], &[&v("sq")], vec![]));
        nodes.push(node_in(
            "ReduceMean",
            "",
            &[&v("sq"), "ln_axes"],
            &[&v("var")],
            keep(),
        ));
        nodes.push(node_in(
            "Add",
            "",
            &[&v("var"), &v("eps")],
            &[&v("ve")],
            vec![],
        ));
        nodes.push(node_in("Sqrt", "", &[&v("ve")], &[&v("sd")], vec![]));
        nodes.push(node_in("Div", "", &[&v("c"), &v("sd")], &[&v("n")], vec![]));
        nodes.push(node_in("Mul", "", &[&v("n"), gamma], &[&v("ng")], vec![]));
        nodes.push(node_in("Add", "", &[&v("ng"), beta], &[y], vec![]));
    }
    assert!(count >= 3, "gpt2 has LayerNorms");
    g.node = nodes;
    g.value_info.clear();
    m
}

#[test]
fn an_exact_rewrite_of_every_layer_norm_passes_in_both_runtimes() {
    let o =
        ort_opts("an_exact_rewrite_...", Runtimes::Both).unwrap_or_else(|| opts(Runtimes::Tract));
    let dir = tempfile::tempdir().unwrap();
    let b = save(
        dir.path(),
        "decomposed.onnx",
        &gpt2_layer_norms_decomposed(),
    );
    let r = verify(&corpus("gpt2.onnx"), &b, &o);
    assert!(r.passed(), "{r}");
    for row in &r.rows {
        assert!(row.max_rel < row.tolerance / 4.0, "{r}");
        // onnxruntime runs the two graphs with different rounding (tract lowers its own
        // LayerNormalization to these same ops, so it is bit-identical there).
        if row.runtime == Runtime::Ort {
            assert!(row.max_abs > 0.0, "{r}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// inputs

#[test]
fn gpt2_ids_stay_inside_the_vocabulary() {
    let o = VerifyOptions {
        samples: 5,
        seed: 7,
        ..VerifyOptions::default()
    };
    let g = generate_inputs(&corpus("gpt2.onnx"), &o).unwrap();
    assert_eq!(g.samples.len(), 5);
    assert!(g.summary[0].values.contains("[0, 128)"), "{:?}", g.summary);
    let mut distinct = std::collections::BTreeSet::new();
    for s in &g.samples {
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name, "input");
        assert_eq!(s[0].elem_type, data_type::INT64);
        assert_eq!(s[0].shape, vec![1, 8]);
        for id in s[0].to_i64().unwrap() {
            assert!(
                (0..128).contains(&id),
                "id {id} outside gpt2's 128-token vocabulary"
            );
            distinct.insert(id);
        }
    }
    assert!(
        distinct.len() > 10,
        "ids are spread over the vocabulary: {distinct:?}"
    );
    // Deterministic for a seed, different for another.
    let again = generate_inputs(&corpus("gpt2.onnx"), &o).unwrap();
    assert_eq!(again.samples, g.samples);
    let other = generate_inputs(&corpus("gpt2.onnx"), &VerifyOptions { seed: 8, ..o }).unwrap();
    assert_ne!(other.samples, g.samples);
}

#[test]
fn dims_default_by_name_and_are_overridable() {
    let m = corpus("nanogpt_o17_ortfused.onnx");
    let g = generate_inputs(&m, &VerifyOptions::default()).unwrap();
    assert_eq!(
        g.dims,
        BTreeMap::from([("batch".into(), 2), ("seq".into(), 8)])
    );
    assert_eq!(g.samples[0][0].shape, vec![2, 8]);
    assert!(g.samples[0][0]
        .to_i64()
        .unwrap()
        .iter()
        .all(|&i| (0..128).contains(&i)));
    let o = VerifyOptions {
        dims: BTreeMap::from([("seq".into(), 5), ("nope".into(), 3)]),
        ..VerifyOptions::default()
    };
    let g = generate_inputs(&m, &o).unwrap();
    assert_eq!(
        g.dims,
        BTreeMap::from([("batch".into(), 2), ("seq".into(), 5)])
    );
    assert_eq!(g.samples[0][0].shape, vec![2, 5]);
    assert!(g.notes.iter().any(|n| n.contains("nope")), "{:?}", g.notes);
}

#[test]
fn ids_without_an_embedding_table_use_the_default_bound_and_masks_are_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cast = |i: &str, o: &str| {
        node_in(
            "Cast",
            "",
            &[i],
            &[o],
            vec![attr_i("to", data_type::FLOAT as i64)],
        )
    };
    let m = model_with(
        vec![cast("ids", "y"), cast("attention_mask", "z")],
        vec![
            vi_dims("ids", data_type::INT64, &[dp("batch"), dp("seq")]),
            vi_dims(
                "attention_mask",
                data_type::INT64,
                &[dp("batch"), dp("seq")],
            ),
        ],
        vec![
            vi_any("y", data_type::FLOAT),
            vi_dims("z", data_type::FLOAT, &[]),
        ],
        vec![],
        &[("", 17)],
    );
    let p = save(dir.path(), "ids.onnx", &m);
    let g = generate_inputs(
        &p,
        &VerifyOptions {
            samples: 4,
            ..VerifyOptions::default()
        },
    )
    .unwrap();
    for s in &g.samples {
        let ids = s[0].to_i64().unwrap();
        assert!(ids.iter().all(|&i| i == 0 || i == 1), "{ids:?}");
        assert!(s[1].to_i64().unwrap().iter().all(|&i| i == 1));
    }
    assert!(g.summary[0].values.contains("[0, 2)"));
    assert!(g.summary[1].values.contains("mask"));
}

#[test]
fn tract_plan_and_ort_environment_are_shared_with_other_commands() {
    let m = corpus("gpt2.onnx");
    let g = generate_inputs(&m, &VerifyOptions::default()).unwrap();
    let plan = onnx_normopt::verify::tract_plan(&m, &g.samples[0]).unwrap();
    assert_eq!(plan.feed, vec![0]);
    let out = plan.run(&g.samples[1], &["output".to_string()]).unwrap();
    assert_eq!(out[0].shape, vec![1, 8, 128]);
    assert_eq!(out[0].elem_type, data_type::FLOAT);
    if ort_opts("tract_plan_and_ort_environment_...", Runtimes::Ort).is_some() {
        let (_, lib1) = onnx_normopt::verify::ort_environment(None).unwrap();
        let (_, lib2) =
            onnx_normopt::verify::ort_environment(Some(Path::new("/elsewhere"))).unwrap();
        assert_eq!(lib1, lib2, "one onnxruntime per process");
    }
}

// ---------------------------------------------------------------------------------------------
// errors

#[test]
fn mismatched_interfaces_are_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let a = corpus("gpt2.onnx");
    let mut m = decode(&a);
    m.graph.as_mut().unwrap().output[0].name = Some("logits".into());
    let b = save(dir.path(), "renamed.onnx", &m);
    let e = verify_files(&a, &b, &opts(Runtimes::Tract)).unwrap_err();
    assert!(matches!(e, VerifyError::Mismatch { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("`output`") && msg.contains("`logits`") && msg.contains("renamed.onnx"),
        "{msg}"
    );

    let e = verify_files(&a, &dir.path().join("missing.onnx"), &opts(Runtimes::Tract)).unwrap_err();
    assert!(
        matches!(e, VerifyError::Load(onnx_normopt::Error::Read { .. }))
            && e.to_string().contains("missing.onnx"),
        "{e}"
    );

    let junk = dir.path().join("junk.onnx");
    std::fs::write(&junk, b"\xff\xff\xff not a model").unwrap();
    let e = verify_files(&a, &junk, &opts(Runtimes::Tract)).unwrap_err();
    assert!(
        matches!(e, VerifyError::Load(onnx_normopt::Error::NotOnnx { .. }))
            && e.to_string().contains("junk.onnx"),
        "{e}"
    );

    // A rewrite tract cannot load while it runs the original: a failed check (not an error),
    // each row saying why, no panic.
    let mut m = decode(&a);
    m.graph.as_mut().unwrap().node[0].op_type = Some("NoSuchOp".into());
    let bad = save(dir.path(), "bad_op.onnx", &m);
    let r = verify_files(&a, &bad, &opts(Runtimes::Tract)).unwrap();
    assert!(!r.passed(), "{r}");
    let detail = r.rows[0].detail.clone().unwrap_or_default();
    assert!(
        detail.starts_with("B cannot be run: could not") && detail.contains("NoSuchOp"),
        "{r}"
    );
    assert!(r.to_string().contains("bad_op.onnx"), "{r}");
    // The same model as the original: no runtime can run it, an error naming it.
    let e = verify_files(&bad, &bad, &opts(Runtimes::Tract)).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("no runtime could run the original model") && msg.contains("bad_op.onnx"),
        "{msg}"
    );
}

#[test]
fn an_explicit_missing_ort_library_is_an_error() {
    let o = VerifyOptions {
        ort_lib: Some("/nonexistent/libonnxruntime.so".into()),
        ..VerifyOptions::default()
    };
    assert!(matches!(
        find_ort_library(o.ort_lib.as_deref()),
        OrtLibrary::NotFound { .. }
    ));
}

/// Runs in a child process (this same test binary, this test only) whose environment hides every
/// onnxruntime: without `require_ort` verification falls back to tract with a note; with it, or
/// with `--runtime ort`, it is an error.
#[test]
fn missing_onnxruntime_is_noted_or_an_error_when_required() {
    const CHILD: &str = "ONNX_NORMOPT_VERIFY_TEST_CHILD";
    if std::env::var_os(CHILD).is_some() {
        if let OrtLibrary::Found { path, how } = find_ort_library(None) {
            println!(
                "CHILD-SKIP: a system onnxruntime is still visible: {} ({how})",
                path.display()
            );
            return;
        }
        let a = corpus("gpt2.onnx");
        let r = verify(&a, &a, &opts(Runtimes::Both));
        assert!(r.passed() && r.ran(Runtime::Tract) && !r.ran(Runtime::Ort));
        assert!(
            r.notes.iter().any(|n| n.contains("onnxruntime NOT used")),
            "{r}"
        );
        assert!(r.to_string().contains("not run: onnxruntime"), "{r}");
        let req = VerifyOptions {
            require_ort: true,
            ..VerifyOptions::default()
        };
        let e = verify_files(&a, &a, &req).unwrap_err();
        assert!(matches!(e, VerifyError::OrtNotFound { .. }), "{e}");
        assert!(e.to_string().contains("onnxruntime library not found"));
        let e = verify_files(&a, &a, &opts(Runtimes::Ort)).unwrap_err();
        assert!(matches!(e, VerifyError::OrtNotFound { .. }), "{e}");
        println!("CHILD-OK");
        return;
    }
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "missing_onnxruntime_is_noted_or_an_error_when_required",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("HOME", empty.path())
        .env("PATH", empty.path())
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("VIRTUAL_ENV")
        .env_remove("CONDA_PREFIX")
        .env_remove("CI")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("CHILD-OK") || stdout.contains("CHILD-SKIP"),
        "{stdout}\n{stderr}"
    );
    if stdout.contains("CHILD-SKIP") {
        note(stdout.lines().find(|l| l.contains("CHILD-SKIP")).unwrap());
    }
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_feature_is_a_clear_error() {
    let Some(mut o) = ort_opts("cuda_without_the_feature_is_a_clear_error", Runtimes::Ort) else {
        return;
    };
    o.ort_device = onnx_normopt::verify::OrtDevice::Cuda;
    let a = corpus("gpt2.onnx");
    let e = verify_files(&a, &a, &o).unwrap_err();
    assert!(matches!(e, VerifyError::CudaNotBuilt), "{e}");
    assert!(e.to_string().contains("built without CUDA support"));
}

// ---------------------------------------------------------------------------------------------
// the operators the rewrite emits

const D: i64 = 16;

/// The fused RMSNorm forms the rewrite emits:
/// The two γ of the RMSNorm test models.
fn gammas() -> Vec<TensorProto> {
    [("gamma", 1), ("gamma2", 2)]
        .map(|(n, seed)| {
            tensor(
                n,
                data_type::FLOAT,
                &[D],
                &positive_values(D as usize, seed),
            )
        })
        .to_vec()
}

/// `(y, _, _, sum) = com.microsoft:SkipSimplifiedLayerNormalization(x, skip, gamma[, bias])`,
/// `z = SimplifiedLayerNormalization(sum, gamma2)` (default domain).
fn fused_rms(with_bias: bool) -> ModelProto {
    let mut ins = vec!["x", "skip", "gamma"];
    if with_bias {
        ins.push("bias");
    }
    let mut inits = gammas();
    if with_bias {
        inits.push(tensor(
            "bias",
            data_type::FLOAT,
            &[D],
            &positive_values(D as usize, 3),
        ));
    }
    let shape = [dp("batch"), dp("seq"), dv(D)];
    model_with(
        vec![
            node_in(
                "SkipSimplifiedLayerNormalization",
                "com.microsoft",
                &ins,
                &["y", "", "", "sum"],
                vec![attr_f("epsilon", 1e-5)],
            ),
            node_in(
                "SimplifiedLayerNormalization",
                "",
                &["sum", "gamma2"],
                &["z"],
                vec![attr_f("epsilon", 1e-5), attr_i("axis", -1)],
            ),
        ],
        vec![
            vi_dims("x", data_type::FLOAT, &shape),
            vi_dims("skip", data_type::FLOAT, &shape),
        ],
        vec![
            vi_dims("y", data_type::FLOAT, &shape),
            vi_dims("sum", data_type::FLOAT, &shape),
            vi_dims("z", data_type::FLOAT, &shape),
        ],
        inits,
        &[("", 17), ("com.microsoft", 1)],
    )
}

/// The same computation in standard opset-17 operators.
fn decomposed_rms(with_bias: bool) -> ModelProto {
    let mut nodes = vec![node_in(
        "Add",
        "",
        &["x", "skip"],
        &[if with_bias { "xs" } else { "sum" }],
        vec![],
    )];
    if with_bias {
        nodes.push(node_in("Add", "", &["xs", "bias"], &["sum"], vec![]));
    }
    let rms = |nodes: &mut Vec<NodeProto>, x: &'static str, g: &'static str, out: &'static str| {
        let p = |s: &str| format!("{out}_{s}");
        let (sq, ms, mse, rt, n) = (p("sq"), p("ms"), p("mse"), p("rt"), p("n"));
        nodes.push(node_in("Mul", "", &[x, x], &[&sq], vec![]));
        nodes.push(node_in(
            "ReduceMean",
            "",
            &[&sq],
            &[&ms],
            vec![attr_ints("axes", &[-1]), attr_i("keepdims", 1)],
        ));
        nodes.push(node_in("Add", "", &[&ms, "eps"], &[&mse], vec![]));
        nodes.push(node_in("Sqrt", "", &[&mse], &[&rt], vec![]));
        nodes.push(node_in("Div", "", &[x, &rt], &[&n], vec![]));
        nodes.push(node_in("Mul", "", &[&n, g], &[out], vec![]));
    };
    rms(&mut nodes, "sum", "gamma", "y");
    rms(&mut nodes, "sum", "gamma2", "z");
    let mut inits = gammas();
    inits.push(tensor("eps", data_type::FLOAT, &[], &[1e-5]));
    if with_bias {
        inits.push(tensor(
            "bias",
            data_type::FLOAT,
            &[D],
            &positive_values(D as usize, 3),
        ));
    }
    let shape = [dp("batch"), dp("seq"), dv(D)];
    model_with(
        nodes,
        vec![
            vi_dims("x", data_type::FLOAT, &shape),
            vi_dims("skip", data_type::FLOAT, &shape),
        ],
        vec![
            vi_dims("y", data_type::FLOAT, &shape),
            vi_dims("sum", data_type::FLOAT, &shape),
            vi_dims("z", data_type::FLOAT, &shape),
        ],
        inits,
        &[("", 17)],
    )
}

#[test]
fn simplified_layer_norm_ops_match_their_decomposition_in_tract() {
    let dir = tempfile::tempdir().unwrap();
    for bias in [false, true] {
        let a = save(dir.path(), &format!("fused{bias}.onnx"), &fused_rms(bias));
        let b = save(
            dir.path(),
            &format!("decomposed{bias}.onnx"),
            &decomposed_rms(bias),
        );
        let r = verify(&b, &a, &opts(Runtimes::Tract));
        assert!(r.passed(), "bias={bias}\n{r}");
        assert_eq!(r.rows.len(), 3);
        assert!(r.rows.iter().all(|row| row.max_ref > 0.5), "{r}");
    }
}

#[test]
fn simplified_layer_norm_ops_match_their_decomposition_in_onnxruntime() {
    let Some(o) = ort_opts(
        "simplified_layer_norm_ops_..._in_onnxruntime",
        Runtimes::Ort,
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for bias in [false, true] {
        let a = save(dir.path(), &format!("fused{bias}.onnx"), &fused_rms(bias));
        let b = save(
            dir.path(),
            &format!("decomposed{bias}.onnx"),
            &decomposed_rms(bias),
        );
        let r = verify(&b, &a, &o);
        assert!(r.passed(), "bias={bias}\n{r}");
    }
    // onnxruntime adds the bias: the decomposition with it differs from the fused form without it.
    let b = save(dir.path(), "decomposed_bias.onnx", &decomposed_rms(true));
    let nobias = save(dir.path(), "fused_nobias.onnx", &fused_rms(false));
    let r = verify(&b, &nobias, &o);
    assert!(!r.passed(), "{r}");
}

#[test]
fn stock_tract_skip_simplified_layer_norm_ignores_bias_and_the_extension_fixes_it() {
    use tract_onnx::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let p = save(dir.path(), "fused.onnx", &fused_rms(true));
    let run = |onnx: tract_onnx::Onnx| -> Vec<f32> {
        let m = onnx
            .model_for_path(&p)
            .unwrap()
            .with_input_fact(0, f32::fact([1, 2, D as usize]).into())
            .unwrap()
            .with_input_fact(1, f32::fact([1, 2, D as usize]).into())
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let x =
            Tensor::from_shape(&[1, 2, D as usize], &positive_values(2 * D as usize, 5)).unwrap();
        let s =
            Tensor::from_shape(&[1, 2, D as usize], &positive_values(2 * D as usize, 6)).unwrap();
        let out = m.run(tvec![x.into_tvalue(), s.into_tvalue()]).unwrap();
        out[1]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect() // input_skip_bias_sum
    };
    let stock = run(tract_onnx::onnx());
    let ext = run(onnx_normopt::verify::tract_onnx_with_extensions());
    let (x, s, b) = (
        positive_values(2 * D as usize, 5),
        positive_values(2 * D as usize, 6),
        positive_values(D as usize, 3),
    );
    for i in 0..stock.len() {
        assert!(
            (stock[i] - (x[i] + s[i])).abs() < 1e-6,
            "stock tract: sum = x + skip (no bias)"
        );
        assert!(
            (ext[i] - (x[i] + s[i] + b[i % D as usize])).abs() < 1e-6,
            "extension: sum = x + skip + bias"
        );
    }
}

/// fp16 graph: LayerNormalization + MatMul + Add in f16.
fn fp16_model(weight_delta: f32) -> ModelProto {
    let h = data_type::FLOAT16;
    let mut w = positive_values((D * D) as usize, 9)
        .iter()
        .map(|v| v - 1.0)
        .collect::<Vec<_>>();
    w[0] += weight_delta;
    let shape = [dp("batch"), dv(D)];
    model_with(
        vec![
            node_in(
                "LayerNormalization",
                "",
                &["x", "g", "b"],
                &["n"],
                vec![attr_f("epsilon", 1e-5), attr_i("axis", -1)],
            ),
            node_in("MatMul", "", &["n", "w"], &["m"], vec![]),
            node_in("Add", "", &["m", "x"], &["y"], vec![]),
        ],
        vec![vi_dims("x", h, &shape)],
        vec![vi_dims("y", h, &shape)],
        vec![
            tensor("g", h, &[D], &positive_values(D as usize, 1)),
            tensor("b", h, &[D], &positive_values(D as usize, 2)),
            tensor("w", h, &[D, D], &w),
        ],
        &[("", 17)],
    )
}

#[test]
fn fp16_models_verify_in_tract_and_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    let a = save(dir.path(), "a16.onnx", &fp16_model(0.0));
    let same = save(dir.path(), "same16.onnx", &fp16_model(0.0));
    let changed = save(dir.path(), "changed16.onnx", &fp16_model(0.5));
    let mut runs = vec![opts(Runtimes::Tract)];
    runs.extend(ort_opts(
        "fp16_models_verify_in_tract_and_onnxruntime",
        Runtimes::Ort,
    ));
    for o in runs {
        let r = verify(&a, &same, &o);
        assert!(r.passed(), "{r}");
        assert_eq!(r.rows[0].dtype, "f16");
        assert_eq!(r.rows[0].tolerance, 1e-2);
        assert_eq!(r.inputs[0].shape, vec![2, D as usize]);
        let r = verify(&a, &changed, &o);
        assert!(!r.passed(), "{r}");
        // rtol overrides the default for float outputs.
        let loose = VerifyOptions {
            rtol: Some(10.0),
            ..o.clone()
        };
        let r = verify(&a, &changed, &loose);
        assert!(r.passed() && r.rows[0].tolerance == 10.0, "{r}");
    }
}

/// Models that stock tract 0.23.9 cannot run and `tract_onnx_with_extensions` + concrete input
/// shapes can: fp16 `Gemm` (gpt2 fp16), negative `GatherND` indices (falcon dynamo), attention
/// masks that tract's symbolic shapes mis-broadcast (bloom), `CumSum` over `Cast(int64)` (gpt2).
#[test]
fn tract_runs_models_stock_tract_cannot() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/models");
    let tmp = tempfile::tempdir().unwrap();
    for name in [
        "gpt2_dynamo18_fp16.onnx",
        "falcon_dynamo18_fp32.onnx",
        "bloom_ts14_fp32.onnx",
    ] {
        let a = dir.join(name);
        if !a.exists() {
            note(&format!("{} missing; skipped", a.display()));
            continue;
        }
        let b = save(tmp.path(), name, &decode(&a));
        let r = verify(&a, &b, &opts(Runtimes::Tract));
        assert!(r.passed() && r.ran(Runtime::Tract), "{r}");
    }
}

/// Every model of `testdata/models` against a re-encoded copy of itself, in both runtimes: each
/// must load, run and pass (run with `cargo test --release --test verify -- --ignored`).
#[test]
#[ignore = "sweep over testdata/models; slow in debug builds"]
fn sweep_testdata_models_verify_against_themselves() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/models");
    let mut models: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    models.retain(|p| p.extension().is_some_and(|e| e == "onnx"));
    models.sort();
    let o = ort_opts("sweep", Runtimes::Both).unwrap_or_else(|| opts(Runtimes::Tract));
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for a in &models {
        let name = a.file_name().unwrap().to_str().unwrap();
        let b = save(tmp.path(), name, &decode(a));
        match verify_files(a, &b, &o) {
            Ok(r) if r.passed() => {
                let agree = r
                    .notes
                    .iter()
                    .find(|n| n.contains("agree"))
                    .cloned()
                    .unwrap_or_default();
                println!(
                    "ok    {name:45} {:>6} ms  dims {:?}  {agree}",
                    r.elapsed_ms, r.dims
                )
            }
            Ok(r) => failures.push(format!("{name}: {r}")),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    for f in &failures {
        println!("FAIL  {f}");
    }
    assert!(
        failures.is_empty(),
        "{} of {} models failed",
        failures.len(),
        models.len()
    );
}

// ---------------------------------------------------------------------------------------------
// ai.onnx_normopt:CRMSNormalization (`--target crmsnorm --emit custom`)

/// CRMSNorm over width `D` (rows of D−1 = 15): `y = CRMS(x)`, `z = CRMS(x) ⊙ g` — as the custom
/// op (`custom`) or in standard opset-17 ops, the decomposed form the rewrite writes by default
/// (f16 computes in f32 between two Casts there).
fn crms_model(elem: i32, custom: bool) -> ModelProto {
    let n = D - 1;
    let shape = [dp("batch"), dp("seq"), dv(n)];
    let mut inits = vec![tensor("g", elem, &[n], &positive_values(n as usize, 4))];
    let mut nodes = Vec::new();
    let opsets: &[(&str, i64)] = if custom {
        let attrs = || {
            vec![
                attr_f("epsilon", 1e-5),
                attr_i("width", D),
                attr_i("axis", -1),
            ]
        };
        nodes.push(node_in(
            "CRMSNormalization",
            "ai.onnx_normopt",
            &["x"],
            &["y"],
            attrs(),
        ));
        nodes.push(node_in(
            "CRMSNormalization",
            "ai.onnx_normopt",
            &["x", "g"],
            &["z"],
            attrs(),
        ));
        &[("", 17), ("ai.onnx_normopt", 1)]
    } else {
        let f = data_type::FLOAT;
        inits.push(tensor("inv_d", f, &[], &[1.0 / D as f32]));
        inits.push(tensor("eps", f, &[], &[1e-5]));
        inits.push(TensorProto {
            name: Some("axes".into()),
            dims: vec![1],
            data_type: Some(data_type::INT64),
            int64_data: vec![-1],
            ..Default::default()
        });
        let wide = elem != f;
        let xf = if wide { "xf" } else { "x" };
        if wide {
            nodes.push(node_in(
                "Cast",
                "",
                &["x"],
                &["xf"],
                vec![attr_i("to", f as i64)],
            ));
            nodes.push(node_in(
                "Cast",
                "",
                &["g"],
                &["gf"],
                vec![attr_i("to", f as i64)],
            ));
        }
        let sum = |o: &str, i: &str| {
            node_in(
                "ReduceSum",
                "",
                &[i, "axes"],
                &[o],
                vec![attr_i("keepdims", 1)],
            )
        };
        nodes.push(node_in("Mul", "", &[xf, xf], &["sq"], vec![]));
        nodes.push(sum("s1", "sq"));
        nodes.push(sum("s", xf));
        nodes.push(node_in("Mul", "", &["s", "s"], &["s2"], vec![]));
        nodes.push(node_in("Add", "", &["s1", "s2"], &["tot"], vec![]));
        nodes.push(node_in("Mul", "", &["tot", "inv_d"], &["ms"], vec![]));
        nodes.push(node_in("Add", "", &["ms", "eps"], &["mse"], vec![]));
        nodes.push(node_in("Sqrt", "", &["mse"], &["r"], vec![]));
        nodes.push(node_in(
            "Div",
            "",
            &[xf, "r"],
            &[if wide { "yf" } else { "y" }],
            vec![],
        ));
        nodes.push(node_in(
            "Mul",
            "",
            &[if wide { "yf" } else { "y" }, if wide { "gf" } else { "g" }],
            &[if wide { "zf" } else { "z" }],
            vec![],
        ));
        if wide {
            nodes.push(node_in(
                "Cast",
                "",
                &["yf"],
                &["y"],
                vec![attr_i("to", elem as i64)],
            ));
            nodes.push(node_in(
                "Cast",
                "",
                &["zf"],
                &["z"],
                vec![attr_i("to", elem as i64)],
            ));
        }
        &[("", 17)]
    };
    model_with(
        nodes,
        vec![vi_dims("x", elem, &shape)],
        vec![vi_dims("y", elem, &shape), vi_dims("z", elem, &shape)],
        inits,
        opsets,
    )
}

/// The custom op loads through `tract_onnx_with_extensions`, stays one fused node per norm in
/// tract's optimised plan, and computes what the decomposed form computes (f32 and f16).
#[test]
fn crms_custom_op_is_fused_in_tract_and_matches_the_decomposed_form() {
    use tract_onnx::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    for (elem, name) in [(data_type::FLOAT, "f32"), (data_type::FLOAT16, "f16")] {
        let custom = save(
            dir.path(),
            &format!("custom_{name}.onnx"),
            &crms_model(elem, true),
        );
        let std = save(
            dir.path(),
            &format!("std_{name}.onnx"),
            &crms_model(elem, false),
        );
        let r = verify(&std, &custom, &opts(Runtimes::Tract));
        assert!(r.passed(), "{name}\n{r}");
        assert_eq!(r.rows.len(), 2);
        assert!(r.rows.iter().all(|row| row.max_ref > 0.5), "{r}");
        if elem == data_type::FLOAT {
            assert!(r.rows.iter().all(|row| row.max_rel < 1e-6), "{r}");
        }
        let dt = if elem == data_type::FLOAT {
            f32::datum_type()
        } else {
            f16::datum_type()
        };
        let plan = onnx_normopt::tract_onnx_with_extensions()
            .model_for_path(&custom)
            .unwrap()
            .with_input_fact(0, InferenceFact::dt_shape(dt, [2, 3, D as usize - 1]))
            .unwrap()
            .into_optimized()
            .unwrap();
        let fused = plan
            .nodes()
            .iter()
            .filter(|n| n.op().name() == "CRMSNormalization")
            .count();
        assert_eq!(fused, 2, "{name}: {plan}");
    }
}

/// A model with the custom op is verified in tract alone, even when onnxruntime is required
/// (CI=true) and even when the onnxruntime library given does not exist: the report says why
/// onnxruntime did not run. Asking for onnxruntime alone is an error.
#[test]
fn crms_custom_op_is_verified_in_tract_alone_even_when_onnxruntime_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let custom = save(
        dir.path(),
        "custom.onnx",
        &crms_model(data_type::FLOAT, true),
    );
    let std = save(dir.path(), "std.onnx", &crms_model(data_type::FLOAT, false));
    let o = VerifyOptions {
        runtimes: Runtimes::Both,
        require_ort: true,
        ort_lib: Some(dir.path().join("no-such-libonnxruntime.so")),
        ..VerifyOptions::default()
    };
    let r = verify(&std, &custom, &o);
    assert!(r.passed(), "{r}");
    assert_eq!(r.runtimes, vec![Runtime::Tract]);
    assert_eq!(r.not_run.len(), 1);
    assert_eq!(r.not_run[0].runtime, Runtime::Ort);
    let text = r.to_string();
    assert!(
        text.contains("not run: onnxruntime (custom op ai.onnx_normopt:CRMSNormalization)"),
        "{text}"
    );
    let e = verify_files(
        &std,
        &custom,
        &VerifyOptions {
            runtimes: Runtimes::Ort,
            ..o
        },
    )
    .unwrap_err();
    assert!(matches!(e, VerifyError::Ort { .. }), "{e}");
    assert!(e.to_string().contains("--runtime tract"), "{e}");
}
