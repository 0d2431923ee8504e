//! Verification of models in their deployed forms (issue #11): KV-cache inputs kept consistent
//! at an empty and a filled cache, both branches of a merged decoder, a runtime that cannot run
//! the original listed as not run while the other verifies, and no backtrace on stderr.
//!
//! Models are built here; onnxruntime parts run when its library is found (a visible note
//! otherwise, a failure under `CI=true`).

mod common;

use std::path::Path;

use common::build::*;
use common::cli::command;
use common::pass::{have_ort, note};
use onnx_normopt::proto::{data_type as dt, ModelProto};
use onnx_normopt::verify::{
    ci_requires_ort, generate_cases, verify_files, Runtime, Runtimes, VerifyError, VerifyOptions,
    CANNOT_RUN_ORIGINAL, NEW_TOKENS, PAST_LENGTHS,
};

fn opts(runtimes: Runtimes) -> VerifyOptions {
    VerifyOptions {
        runtimes,
        require_ort: ci_requires_ort(),
        ..VerifyOptions::default()
    }
}

/// A GPT-2-like KV-cache step as exporters write it: token and position embeddings, the new
/// keys appended to `past_key_values.0.key` (length `past_sequence_length`), and the result
/// masked by `attention_mask` over `past_sequence_length + sequence_length`. Inconsistent
/// inputs cannot run: the mask must be as long as past + new, and position ids index a table of
/// 16 rows.
fn kv_model(scale: f32) -> ModelProto {
    let total = "past_sequence_length + sequence_length";
    let g = graph(
        vec![
            node_in("Gather", "", &["wte", "input_ids"], &["tok"], vec![]),
            node_in("Gather", "", &["wpe", "position_ids"], &["pos"], vec![]),
            node_in("Add", "", &["tok", "pos"], &["h"], vec![]),
            node_in("Mul", "", &["h", "scale"], &["hs"], vec![]),
            node_in("Reshape", "", &["hs", "heads"], &["h4"], vec![]),
            node_in(
                "Transpose",
                "",
                &["h4"],
                &["new"],
                vec![attr_ints("perm", &[0, 2, 1, 3])],
            ),
            node_in(
                "Concat",
                "",
                &["past_key_values.0.key", "new"],
                &["present"],
                vec![attr_i("axis", 2)],
            ),
            node_in(
                "Cast",
                "",
                &["attention_mask"],
                &["maskf"],
                vec![attr_i("to", dt::FLOAT as i64)],
            ),
            node_in("Unsqueeze", "", &["maskf", "mask_axes"], &["mask4"], vec![]),
            node_in("Mul", "", &["present", "mask4"], &["out"], vec![]),
        ],
        vec![
            vi_dims(
                "input_ids",
                dt::INT64,
                &[dp("batch_size"), dp("sequence_length")],
            ),
            vi_dims(
                "past_key_values.0.key",
                dt::FLOAT,
                &[dp("batch_size"), dv(2), dp("past_sequence_length"), dv(4)],
            ),
            vi_dims("attention_mask", dt::INT64, &[dp("batch_size"), dp(total)]),
            vi_dims(
                "position_ids",
                dt::INT64,
                &[dp("batch_size"), dp("sequence_length")],
            ),
        ],
        vec![vi_dims(
            "out",
            dt::FLOAT,
            &[dp("batch_size"), dv(2), dp(total), dv(4)],
        )],
        vec![
            f32_tensor("wte", &[10, 8], &values(80, 1)),
            f32_tensor("wpe", &[16, 8], &values(128, 2)),
            f32_tensor("scale", &[1], &[scale]),
            i64_tensor("heads", &[4], &[0, 0, 2, 4]),
            i64_tensor("mask_axes", &[2], &[1, 3]),
        ],
    );
    model(g, 17)
}

fn ints(t: &onnx_normopt::verify::HostTensor) -> Vec<i64> {
    t.to_i64().unwrap()
}

#[test]
fn kv_cache_inputs_are_consistent_at_an_empty_and_a_filled_cache() {
    let dir = tempfile::tempdir().unwrap();
    let a = save(dir.path(), "kv.onnx", &kv_model(1.0));
    let cases = generate_cases(&a, &VerifyOptions::default()).unwrap();
    assert_eq!(
        cases.len(),
        2,
        "{:?}",
        cases.iter().map(|c| &c.case).collect::<Vec<_>>()
    );
    for (c, past) in cases.iter().zip(PAST_LENGTHS) {
        let seq = if past == 0 { 8 } else { NEW_TOKENS };
        assert_eq!(c.dims["past_sequence_length"], past, "{}", c.case);
        assert_eq!(c.dims["sequence_length"], seq, "{}", c.case);
        assert_eq!(c.dims["past_sequence_length + sequence_length"], past + seq);
        assert!(
            c.case.contains(&format!("past_sequence_length={past}")),
            "{}",
            c.case
        );
        for s in &c.samples {
            let by = |n: &str| s.iter().find(|t| t.name == n).unwrap();
            assert_eq!(by("past_key_values.0.key").shape, [2, 2, past, 4]);
            let mask = by("attention_mask");
            assert_eq!(mask.shape, [2, past + seq], "mask over past + new tokens");
            assert!(ints(mask).iter().all(|&v| v == 1));
            let pos = by("position_ids");
            assert_eq!(pos.shape, [2, seq]);
            let want: Vec<i64> = (0..2)
                .flat_map(|_| (past..past + seq).map(|p| p as i64))
                .collect();
            assert_eq!(ints(pos), want, "positions past … past+seq−1 in every row");
            assert!(ints(by("input_ids")).iter().all(|&v| (0..10).contains(&v)));
        }
    }
    // Both cases run in tract (and onnxruntime when present): the inputs are consistent.
    let runtimes = if have_ort("kv_cache_inputs_are_consistent") {
        Runtimes::Both
    } else {
        Runtimes::Tract
    };
    let r = verify_files(&a, &a, &opts(runtimes)).unwrap();
    println!("{r}");
    assert!(r.passed(), "{r}");
    assert!(r.not_run.is_empty(), "{r}");
    assert_eq!(r.cases.len(), 2);
    for c in &r.cases {
        assert!(
            r.rows.iter().any(|row| row.case.as_ref() == Some(&c.label)),
            "case {} has rows\n{r}",
            c.label
        );
    }
    let text = r.to_string();
    assert!(text.contains("case #1 (past_sequence_length=0)"), "{text}");
    assert!(
        text.contains("case #2 (past_sequence_length=8 sequence_length=4)"),
        "{text}"
    );
    // A rewrite that differs is caught in each case.
    let b = save(dir.path(), "kv_b.onnx", &kv_model(1.001));
    let r = verify_files(&a, &b, &opts(Runtimes::Tract)).unwrap();
    assert!(!r.passed());
    assert_eq!(r.failures().count(), 2, "{r}");
    // --dim wins: one case at the given past length.
    let mut o = opts(Runtimes::Tract);
    o.dims.insert("past_sequence_length".into(), 3);
    let r = verify_files(&a, &a, &o).unwrap();
    assert!(r.passed(), "{r}");
    assert_eq!(r.cases.len(), 1);
    assert_eq!(r.dims["past_sequence_length + sequence_length"], 11);
}

/// A merged decoder as Optimum writes it: one `If` on `use_cache_branch`. The cache branch
/// appends `x` to `past` (past + seq rows), the other returns `x` alone (seq rows); both read the
/// outer initializer `w`, and the cache branch also `w_cache` (perturbed by `delta`).
fn merged_model(delta: f32) -> ModelProto {
    let then_g = graph(
        vec![
            node_in(
                "Concat",
                "",
                &["past", "x"],
                &["cat"],
                vec![attr_i("axis", 1)],
            ),
            node_in("Mul", "", &["cat", "w"], &["cw"], vec![]),
            node_in("Mul", "", &["cw", "w_cache"], &["then_out"], vec![]),
        ],
        vec![],
        vec![vi_any("then_out", dt::FLOAT)],
        vec![],
    );
    let else_g = graph(
        vec![node_in("Mul", "", &["x", "w"], &["y"], vec![])],
        vec![],
        vec![vi_any("y", dt::FLOAT)],
        vec![],
    );
    let g = graph(
        vec![node_in(
            "If",
            "",
            &["use_cache_branch"],
            &["y"],
            vec![attr_g("then_branch", then_g), attr_g("else_branch", else_g)],
        )],
        vec![
            vi_dims(
                "x",
                dt::FLOAT,
                &[dp("batch_size"), dp("sequence_length"), dv(4)],
            ),
            vi_dims(
                "past",
                dt::FLOAT,
                &[dp("batch_size"), dp("past_sequence_length"), dv(4)],
            ),
            vi_dims("use_cache_branch", dt::BOOL, &[dv(1)]),
        ],
        vec![vi_dims(
            "y",
            dt::FLOAT,
            &[
                dp("batch_size"),
                dp("past_sequence_length + sequence_length"),
                dv(4),
            ],
        )],
        vec![
            f32_tensor("w", &[4], &[0.5, -1.0, 2.0, 0.25]),
            f32_tensor("w_cache", &[4], &[1.0 + delta, 1.0, 1.0, 1.0]),
        ],
    );
    model(g, 17)
}

#[test]
fn merged_decoders_are_verified_in_both_branches() {
    let dir = tempfile::tempdir().unwrap();
    let a = save(dir.path(), "merged.onnx", &merged_model(0.0));
    let cases = generate_cases(&a, &VerifyOptions::default()).unwrap();
    assert_eq!(cases.len(), 2);
    for (c, flag) in cases.iter().zip([false, true]) {
        assert!(
            c.case.contains(&format!("use_cache_branch={flag}")),
            "{}",
            c.case
        );
        let f = c.samples[0]
            .iter()
            .find(|t| t.name == "use_cache_branch")
            .unwrap();
        assert_eq!(f.data, [flag as u8]);
    }
    let with_ort = have_ort("merged_decoders_are_verified_in_both_branches");
    let runtimes = if with_ort {
        Runtimes::Both
    } else {
        Runtimes::Tract
    };
    let r = verify_files(&a, &a, &opts(runtimes)).unwrap();
    println!("{r}");
    assert!(r.passed(), "{r}");
    assert!(r.not_run.is_empty(), "tract runs both branches\n{r}");
    let per_case = |r: &onnx_normopt::verify::VerifyReport, label: &str, rt: Runtime| {
        r.rows
            .iter()
            .filter(|row| row.runtime == rt && row.case.as_deref() == Some(label))
            .map(|row| row.pass)
            .collect::<Vec<_>>()
    };
    assert_eq!(per_case(&r, &cases[1].case, Runtime::Tract), [true]);
    // A change in the cache branch only fails the cache case only, in every runtime.
    let b = save(dir.path(), "merged_b.onnx", &merged_model(0.01));
    let r = verify_files(&a, &b, &opts(runtimes)).unwrap();
    println!("{r}");
    for rt in r.runtimes.clone() {
        assert_eq!(per_case(&r, &cases[0].case, rt), [true], "{rt}: {r}");
        assert_eq!(per_case(&r, &cases[1].case, rt), [false], "{rt}: {r}");
    }
    assert_eq!(r.runtimes.contains(&Runtime::Ort), with_ort);
}

/// `Y = Det(X) * c`: onnxruntime runs `Det`, tract 0.23.9 does not.
fn det_model(c: f32) -> ModelProto {
    let g = graph(
        vec![
            node_in("Det", "", &["x"], &["d"], vec![]),
            node_in("Mul", "", &["d", "c"], &["y"], vec![]),
        ],
        vec![vi_dims("x", dt::FLOAT, &[dv(2), dv(3), dv(3)])],
        vec![vi_dims("y", dt::FLOAT, &[dv(2)])],
        vec![f32_tensor("c", &[1], &[c])],
    );
    model(g, 17)
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let o = command(args).env("RUST_BACKTRACE", "1").output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn assert_no_backtrace(stderr: &str) {
    for bad in [
        "stack backtrace",
        "panicked at",
        "RUST_BACKTRACE",
        "note: run with",
    ] {
        assert!(!stderr.contains(bad), "`{bad}` on stderr:\n{stderr}");
    }
}

#[test]
fn a_runtime_that_cannot_run_the_original_is_not_run_and_the_other_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let a = save(dir.path(), "det.onnx", &det_model(2.0));
    let same = save(dir.path(), "det_same.onnx", &det_model(2.0));
    let other = save(dir.path(), "det_other.onnx", &det_model(2.5));
    let s = |p: &Path| p.to_str().unwrap().to_string();

    // No runtime that can run A: a clear error with its own status, not a verdict.
    let err = verify_files(&a, &same, &opts(Runtimes::Tract)).unwrap_err();
    assert!(matches!(err, VerifyError::NoRuntime { .. }), "{err}");
    assert_eq!(err.exit_code(), 4);
    let (code, _, stderr) = run(&["verify", &s(&a), &s(&same), "--runtime", "tract"]);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.contains("no runtime could run the original model"),
        "{stderr}"
    );
    assert!(stderr.contains("tract: could not"), "{stderr}");
    assert!(stderr.contains("--no-verify"), "{stderr}");
    assert_no_backtrace(&stderr);

    if !have_ort("a_runtime_that_cannot_run_the_original_is_not_run") {
        return;
    }
    // onnxruntime verifies; tract is listed as not run, with the reason.
    let r = verify_files(&a, &same, &opts(Runtimes::Both)).unwrap();
    println!("{r}");
    assert!(r.passed(), "{r}");
    assert_eq!(r.runtimes, [Runtime::Ort]);
    assert_eq!(r.not_run.len(), 1);
    assert_eq!(r.not_run[0].runtime, Runtime::Tract);
    assert!(r.not_run[0].why.starts_with(CANNOT_RUN_ORIGINAL), "{r}");
    let (code, stdout, stderr) = run(&["verify", &s(&a), &s(&same)]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("not run: tract, cannot run the original: could not"),
        "{stdout}"
    );
    assert_no_backtrace(&stderr);
    // ... and onnxruntime still catches a rewrite that differs: exit 1.
    let (code, stdout, stderr) = run(&["verify", &s(&a), &s(&other)]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("FAIL: onnxruntime `y`"), "{stdout}");
    assert_no_backtrace(&stderr);
}

/// A runtime panic (tract indexing out of bounds on inconsistent KV inputs, forced with
/// `--dim`s that make the mask too short in every case) is reported in one line, without a
/// backtrace, even with RUST_BACKTRACE=1.
#[test]
fn runtime_failures_print_no_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let a = save(dir.path(), "kv.onnx", &kv_model(1.0));
    let s = a.to_str().unwrap();
    let (code, stdout, stderr) = run(&[
        "verify",
        s,
        s,
        "--runtime",
        "tract",
        "--dim",
        "past_sequence_length + sequence_length=5",
        "--dim",
        "sequence_length=8",
    ]);
    println!("{stdout}{stderr}");
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("tract: could not"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_no_backtrace(&stderr);
    // A Gather whose indices leave its table (ids shifted past the 4 rows): tract panics.
    let g = graph(
        vec![
            node_in("Add", "", &["ids", "shift"], &["far"], vec![]),
            node_in("Gather", "", &["table", "far"], &["y"], vec![]),
        ],
        vec![vi_dims("ids", dt::INT64, &[dv(3)])],
        vec![vi_dims("y", dt::FLOAT, &[dv(3), dv(2)])],
        vec![
            f32_tensor("table", &[4, 2], &values(8, 4)),
            i64_tensor("shift", &[1], &[10]),
        ],
    );
    let p = save(dir.path(), "gather.onnx", &model(g, 17));
    let p = p.to_str().unwrap();
    let (code, stdout, stderr) = run(&["verify", p, p, "--runtime", "tract"]);
    println!("{stdout}{stderr}");
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.contains("tract: could not run: panicked: "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_no_backtrace(&stderr);
    // The same on an exported GPT-2 with past, where tract panics ("index out of bounds").
    let gpt2 = Path::new("/work/shared/corpus-deployed/gpt2_past.onnx");
    if !gpt2.exists() {
        note("runtime_failures_print_no_backtrace: gpt2_past.onnx not found; that part is skipped");
        return;
    }
    let (code, stdout, stderr) = run(&[
        "verify",
        gpt2.to_str().unwrap(),
        gpt2.to_str().unwrap(),
        "--runtime",
        "tract",
        "--dim",
        "past_sequence_length + sequence_length=5",
        "--dim",
        "sequence_length=8",
    ]);
    println!("{stdout}{stderr}");
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("panicked: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_no_backtrace(&stderr);
}
