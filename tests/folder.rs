//! Folder mode: `onnx-normopt DIR -o OUT_DIR` on a small export-like folder (two rewritable
//! testdata models, one under `onnx/` with external data, a refused BERT, a text file), its exit
//! codes, its table and report, and that nothing is written when it fails.

use onnx_normopt::io;
use onnx_normopt::ir::Model;
use onnx_normopt::proto::ModelProto;
use onnx_normopt::verify::{verify_files, Runtimes, VerifyOptions};
use std::path::{Path, PathBuf};

mod common;
use common::cli::{run, text, tm};

/// An export-like folder:
/// - `model.onnx` (GPT-2, inline), `config.json`, `notes.txt`;
/// - `onnx/decoder_model.onnx` (OPT) with its weights in `onnx/decoder_model.onnx_data`
///   (written by the crate's own saver, named like Optimum names it);
/// - `onnx/encoder_model.onnx` (BERT, Post-LN: refused).
fn make_folder(root: &Path) -> PathBuf {
    let dir = root.join("export");
    std::fs::create_dir_all(dir.join("onnx")).unwrap();
    std::fs::copy(tm("gpt2_ts17_fp32.onnx"), dir.join("model.onnx")).unwrap();
    std::fs::copy(
        tm("bert_ts17_fp32.onnx"),
        dir.join("onnx/encoder_model.onnx"),
    )
    .unwrap();
    std::fs::write(dir.join("config.json"), b"{\"model_type\": \"gpt2\"}\n").unwrap();
    std::fs::write(dir.join("notes.txt"), b"not a model\n").unwrap();
    let m = Model::load(&tm("opt_ts17_fp32.onnx")).unwrap();
    let proto = m.to_proto().unwrap();
    io::stage_as(
        &proto,
        &m.store,
        &io::NothingComputed,
        &dir.join("onnx/decoder_model.onnx"),
        io::DataLayout::External,
        &io::StageOptions {
            data_name: Some("decoder_model.onnx_data"),
            fsync: false,
        },
        &mut |_, _| {},
    )
    .unwrap()
    .commit()
    .unwrap();
    dir
}

fn header(p: &Path) -> ModelProto {
    let mut h = io::load(p).unwrap().proto;
    h.graph = None;
    h
}

fn data_locations(p: &Path) -> std::collections::BTreeSet<String> {
    let mut s = std::collections::BTreeSet::new();
    io::for_each_tensor(&io::load(p).unwrap().proto, &mut |t| {
        for e in &t.external_data {
            if e.key.as_deref() == Some("location") {
                s.insert(e.value.clone().unwrap_or_default());
            }
        }
    });
    s
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut v = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                v.push(
                    p.strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }
    v.sort();
    v
}

fn listing(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn folder_rewrites_copies_refuses_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = make_folder(tmp.path());
    let before = files_under(&dir);
    let out = tmp.path().join("out");
    let rep = tmp.path().join("report.json");
    let o = run(&[
        dir.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--report".as_ref(),
        rep.as_os_str(),
        "--runtime".as_ref(),
        "tract".as_ref(),
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    // The input is untouched.
    assert_eq!(files_under(&dir), before);
    // Same files out, the data file once, under the name the model references.
    assert_eq!(files_under(&out), before, "{t}");
    // The table: each model, its status, and the refusal's reason.
    for l in [
        "model.onnx",
        "onnx/decoder_model.onnx",
        "onnx/encoder_model.onnx",
        "rewritten",
        "refused",
        "passed (tract",
        "onnx/encoder_model.onnx refused: ",
    ] {
        assert!(t.contains(l), "{l:?} missing in:\n{t}");
    }
    // Progress per file.
    assert!(t.contains("[1/3] model.onnx"), "{t}");
    // Copied files are byte-identical; the refused model too.
    for f in ["config.json", "notes.txt", "onnx/encoder_model.onnx"] {
        assert_eq!(
            std::fs::read(dir.join(f)).unwrap(),
            std::fs::read(out.join(f)).unwrap(),
            "{f}"
        );
    }
    // The rewritten models: provenance appended after the input's own metadata.
    for f in ["model.onnx", "onnx/decoder_model.onnx"] {
        let hin = header(&dir.join(f));
        let hout = header(&out.join(f));
        assert!(
            !hin.metadata_props.is_empty(),
            "testdata models carry metadata"
        );
        assert_eq!(
            &hout.metadata_props[..hin.metadata_props.len()],
            &hin.metadata_props[..],
            "{f}: input metadata kept in order"
        );
        let p = onnx_normopt::provenance::read(&hout).expect("provenance");
        assert_eq!(p.target, "rmsnorm");
        assert_eq!(p.input_sha256.len(), 64);
        assert!(p.norms_rewritten.parse::<usize>().unwrap() > 0);
    }
    // External data: the rewritten decoder references its own data file, which holds its
    // (edited) weights; it runs and matches the input.
    let dec = out.join("onnx/decoder_model.onnx");
    assert_eq!(
        data_locations(&dec),
        ["decoder_model.onnx_data".to_string()].into()
    );
    assert_ne!(
        std::fs::read(dir.join("onnx/decoder_model.onnx_data")).unwrap(),
        std::fs::read(out.join("onnx/decoder_model.onnx_data")).unwrap(),
        "the data file is the rewritten model's, not a copy"
    );
    let opts = VerifyOptions {
        runtimes: Runtimes::Tract,
        ..Default::default()
    };
    let v = verify_files(&dir.join("onnx/decoder_model.onnx"), &dec, &opts).unwrap();
    assert!(v.passed(), "{v}");
    // The JSON report: one entry per model with its own report.
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rep).unwrap()).unwrap();
    let files = j["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    let st: Vec<(&str, &str)> = files
        .iter()
        .map(|f| (f["file"].as_str().unwrap(), f["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        st,
        [
            ("model.onnx", "rewritten"),
            ("onnx/decoder_model.onnx", "rewritten"),
            ("onnx/encoder_model.onnx", "refused")
        ]
    );
    assert!(files[0]["report"]["norms_rewritten"].as_u64().unwrap() > 0);
    // The headline is the structural reason (Post-LN), not the consequence for BERT's
    // embedding LayerNorm ("feeds stream 1, which is refused").
    let why = files[2]["reason"].as_str().unwrap();
    assert!(why.starts_with("Post-LN: "), "{why}");
    assert_eq!(
        j["replaced_data_files"],
        serde_json::json!(["onnx/decoder_model.onnx_data"])
    );

    // A second run on the output: nothing to rewrite, every file explains itself; exit 3 and
    // nothing written.
    let out2 = tmp.path().join("out2");
    let o = run(&[out.as_os_str(), "-o".as_ref(), out2.as_os_str()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "{t}");
    assert!(
        t.contains("model.onnx refused: already rewritten by onnx-normopt "),
        "{t}"
    );
    assert!(t.contains("(target rmsnorm"), "{t}");
    assert!(!out2.exists());
    assert!(!listing(tmp.path()).iter().any(|f| f.contains("staging")));
}

#[test]
fn folder_failures_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = make_folder(tmp.path());
    let entries = listing(tmp.path());
    // Verification that cannot run (onnxruntime required, its library absent) fails the file:
    // exit 1, and nothing is written, not even the files that were fine.
    let out = tmp.path().join("out");
    let o = run(&[
        dir.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--runtime".as_ref(),
        "ort".as_ref(),
        "--ort-lib".as_ref(),
        tmp.path().join("no-such-libonnxruntime.so").as_os_str(),
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("verification failed"), "{t}");
    assert!(t.contains("nothing written"), "{t}");
    assert!(!out.exists(), "{t}");
    assert_eq!(listing(tmp.path()), entries, "no staging left behind");

    // Only refusals: exit 3, nothing written.
    let refused = tmp.path().join("refused");
    std::fs::create_dir(&refused).unwrap();
    std::fs::copy(tm("bert_ts17_fp32.onnx"), refused.join("model.onnx")).unwrap();
    std::fs::write(refused.join("config.json"), b"{}").unwrap();
    let out = tmp.path().join("out3");
    let o = run(&[refused.as_os_str(), "-o".as_ref(), out.as_os_str()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "{t}");
    assert!(t.contains("model.onnx refused: "), "{t}");
    assert!(!out.exists());

    // Usage: a non-empty OUT_DIR, OUT_DIR inside DIR.
    let full = tmp.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("x"), b"x").unwrap();
    let o = run(&[dir.as_os_str(), "-o".as_ref(), full.as_os_str()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("must not exist or must be empty"));
    assert_eq!(listing(&full), ["x"]);
    let inside = dir.join("sub-out");
    let o = run(&[dir.as_os_str(), "-o".as_ref(), inside.as_os_str()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("must not be inside"));
    assert!(!inside.exists());

    // An empty OUT_DIR is fine, and a quiet run prints nothing on success.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = run(&[
        dir.as_os_str(),
        "-o".as_ref(),
        empty.as_os_str(),
        "-q".as_ref(),
        "--no-verify".as_ref(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(text(&o), "");
    assert_eq!(files_under(&empty), files_under(&dir));
}

/// A merged decoder broken the way some exports are: a branch of its `If` returns a value of
/// the outer graph (here the `If`'s own output) instead of computing it. onnxruntime refuses it
/// ("subgraph output is an outer scope value"); so does the rewrite, naming that cause.
fn if_returning_an_outer_value() -> ModelProto {
    use common::build::{attr_g, model_of, node, vi};
    use onnx_normopt::proto::{data_type as dt, GraphProto};
    let then_branch = GraphProto {
        name: Some("then".into()),
        output: vec![vi("y", dt::FLOAT, &[2, 8])],
        ..Default::default()
    };
    let else_branch = GraphProto {
        name: Some("else".into()),
        node: vec![node("Identity", "else_id", &["x"], &["e"], vec![])],
        output: vec![vi("e", dt::FLOAT, &[2, 8])],
        ..Default::default()
    };
    let g = GraphProto {
        name: Some("merged".into()),
        node: vec![node(
            "If",
            "optimum::if",
            &["use_cache_branch"],
            &["y"],
            vec![
                attr_g("then_branch", then_branch),
                attr_g("else_branch", else_branch),
            ],
        )],
        input: vec![
            vi("use_cache_branch", dt::BOOL, &[]),
            vi("x", dt::FLOAT, &[2, 8]),
        ],
        output: vec![vi("y", dt::FLOAT, &[2, 8])],
        ..Default::default()
    };
    model_of(g, &[("", 17)])
}

/// One file: the real cause, exit 2, nothing written. A folder holding such a file beside a
/// good model: the invalid file is copied unchanged (status `invalid`, its reason in the table),
/// the good one rewritten, exit 0.
#[test]
fn an_invalid_model_is_named_and_copied_in_a_folder() {
    use prost::Message;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("export");
    std::fs::create_dir(&dir).unwrap();
    let bad = dir.join("decoder_model_merged.onnx");
    std::fs::write(&bad, if_returning_an_outer_value().encode_to_vec()).unwrap();
    std::fs::copy(tm("gpt2_dynamo18_fp32.onnx"), dir.join("model.onnx")).unwrap();

    let out = tmp.path().join("one.onnx");
    let o = run(&[bad.as_os_str(), "-o".as_ref(), out.as_os_str()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("subgraph output is an outer scope value"), "{t}");
    assert!(t.contains("\"then_branch\" returns \"y\""), "{t}");
    assert!(!t.contains("topological order"), "{t}");
    assert!(!out.exists());

    let out = tmp.path().join("out");
    let o = run(&[
        dir.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--no-verify".as_ref(),
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains("decoder_model_merged.onnx invalid: ") && t.contains("outer scope value"),
        "{t}"
    );
    assert_eq!(
        std::fs::read(out.join("decoder_model_merged.onnx")).unwrap(),
        std::fs::read(&bad).unwrap(),
        "copied unchanged"
    );
    assert!(Model::load(&out.join("model.onnx")).is_ok());

    // Only invalid (and refused) models: nothing rewritten, exit 2, nothing written.
    std::fs::remove_file(dir.join("model.onnx")).unwrap();
    let out = tmp.path().join("out2");
    let o = run(&[dir.as_os_str(), "-o".as_ref(), out.as_os_str()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("1 model(s) invalid"), "{}", text(&o));
    assert!(!out.exists());
}
