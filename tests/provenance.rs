//! Provenance: the rewritten model records the rewrite in `metadata_props` (input metadata kept
//! as it was), each added node says why it is there, `inspect` reads it back, and a second
//! rewrite explains itself. Also `inspect --dot` on every testdata model.

use onnx_normopt::io;
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::cli::{run, text, tm};

fn meta(p: &Path) -> Vec<(String, String)> {
    io::load(p)
        .unwrap()
        .proto
        .metadata_props
        .iter()
        .map(|e| {
            (
                e.key.clone().unwrap_or_default(),
                e.value.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn rewrite_records_provenance_and_a_second_run_explains_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tm("gpt2_ts17_fp32.onnx");
    let out = tmp.path().join("rms.onnx");
    let o = run(&[
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--runtime".as_ref(),
        "tract".as_ref(),
        "-q".as_ref(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Metadata: the input's entries first, unchanged; ours after.
    let before = meta(&input);
    let after = meta(&out);
    assert!(!before.is_empty());
    assert_eq!(&after[..before.len()], &before[..]);
    let ours: std::collections::BTreeMap<_, _> = after[before.len()..].iter().cloned().collect();
    let sha = format!("{:x}", sha2::Sha256::digest(std::fs::read(&input).unwrap()));
    for (k, v) in [
        ("onnx_normopt.version", env!("CARGO_PKG_VERSION")),
        ("onnx_normopt.target", "rmsnorm"),
        ("onnx_normopt.emit", "standard"),
        ("onnx_normopt.fold", "true"),
        ("onnx_normopt.norms_rewritten", "5"),
        ("onnx_normopt.norms_refused", "0"),
        ("onnx_normopt.input_file", "gpt2_ts17_fp32.onnx"),
        ("onnx_normopt.input_sha256", sha.as_str()),
    ] {
        assert_eq!(ours.get(k).map(String::as_str), Some(v), "{k}");
    }

    // Every added node says why it is there; the norms name the LayerNorm they replace.
    let g = io::load(&out).unwrap().proto.graph.unwrap();
    let added: Vec<_> = g
        .node
        .iter()
        .filter(|n| n.name.as_deref().unwrap_or("").starts_with("normopt/"))
        .collect();
    assert!(!added.is_empty());
    for n in &added {
        let d = n.doc_string.as_deref().unwrap_or("");
        assert!(d.starts_with("onnx-normopt: "), "{:?}: {d:?}", n.name);
    }
    let docs: Vec<&str> = added
        .iter()
        .filter_map(|n| n.doc_string.as_deref())
        .collect();
    assert!(docs.iter().any(|d| d.contains(
        "RMSNorm replacing LayerNorm '/m/transformer/h.0/ln_1/LayerNormalization' (ε=1e-5); γ/β folded into '/m/transformer/h.0/attn/c_attn/Gemm'"
    )), "{docs:#?}");
    assert!(docs
        .iter()
        .any(|d| d.contains("'/m/transformer/ln_f/LayerNormalization'")
            && d.contains("γ/β kept on the norm")));

    // inspect says it was rewritten, by what and how (text and JSON).
    let o = run(&["inspect".as_ref(), out.as_os_str()]);
    assert_eq!(o.status.code(), Some(0));
    let t = text(&o);
    assert!(
        t.contains(&format!(
            "rewritten by onnx-normopt {} (target rmsnorm, emit standard, fold true, 5 norm(s) rewritten, 0 left alone; input gpt2_ts17_fp32.onnx sha256 {sha})",
            env!("CARGO_PKG_VERSION")
        )),
        "{t}"
    );
    let o = run(&["inspect".as_ref(), out.as_os_str(), "--json".as_ref()]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["rewritten_by"]["input_sha256"], sha.as_str());

    // A second rewrite: exit 3, the reason says by what; nothing written.
    let again = tmp.path().join("again.onnx");
    let o = run(&[out.as_os_str(), "-o".as_ref(), again.as_os_str()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "{t}");
    assert!(
        t.contains(&format!(
            "nothing rewritten: already rewritten by onnx-normopt {} (target rmsnorm",
            env!("CARGO_PKG_VERSION")
        )),
        "{t}"
    );
    assert!(!again.exists());
    // CRMSNorm of an RMSNorm rewrite is not supported, and says so.
    let o = run(&[
        out.as_os_str(),
        "-o".as_ref(),
        again.as_os_str(),
        "--target".as_ref(),
        "crmsnorm".as_ref(),
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "{t}");
    assert!(
        t.contains("compressing an already-rewritten model to CRMSNorm is not supported"),
        "{t}"
    );
    assert!(!again.exists());
}

#[test]
fn crmsnorm_and_onnxruntime_forms_carry_provenance_too() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, target, emit, doc) in [
        (
            &["--target", "crmsnorm"][..],
            "crmsnorm",
            "standard",
            "CRMSNorm (stream compressed 32 -> 31) replacing LayerNorm",
        ),
        (
            &["--emit", "onnxruntime"][..],
            "rmsnorm",
            "onnxruntime",
            "RMSNorm replacing LayerNorm",
        ),
    ] {
        let out = tmp.path().join(format!("{target}-{emit}.onnx"));
        let input = tm("gpt2_ts17_fp32.onnx");
        let mut a: Vec<&std::ffi::OsStr> = vec![
            input.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
            "--runtime".as_ref(),
            "tract".as_ref(),
        ];
        a.extend(args.iter().map(std::ffi::OsStr::new));
        let o = run(&a);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let m = meta(&out);
        assert!(m.contains(&("onnx_normopt.target".into(), target.into())));
        assert!(m.contains(&("onnx_normopt.emit".into(), emit.into())));
        let g = io::load(&out).unwrap().proto.graph.unwrap();
        assert!(
            g.node
                .iter()
                .any(|n| n.doc_string.as_deref().unwrap_or("").contains(doc)),
            "{target}/{emit}: no node says {doc:?}"
        );
    }
}

#[test]
fn inspect_dot_for_every_testdata_model() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/models");
    let mut models: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    models.sort();
    assert!(models.len() > 50);
    let graphviz = Command::new("dot").arg("-V").output().is_ok();
    if !graphviz {
        eprintln!("NOTE: graphviz `dot` not found: DOT syntax checked in Rust only, not rendered");
    }
    let tmp = tempfile::tempdir().unwrap();
    for m in &models {
        let o = run(&["inspect".as_ref(), m.as_os_str(), "--dot".as_ref()]);
        assert_eq!(o.status.code(), Some(0), "{}: {}", m.display(), text(&o));
        let dot = String::from_utf8(o.stdout).unwrap();
        onnx_normopt::dot::check_syntax(&dot)
            .unwrap_or_else(|e| panic!("{}: {e}\n{dot}", m.display()));
        // Small enough to read: no more than a few dozen boxes for these models.
        let boxes = dot
            .lines()
            .filter(|l| l.contains("[label=") && !l.contains("->"))
            .count();
        assert!(boxes <= 60, "{}: {boxes} boxes", m.display());
        if graphviz {
            let f = tmp.path().join("g.dot");
            std::fs::write(&f, &dot).unwrap();
            let r = Command::new("dot").arg("-Tsvg").arg(&f).output().unwrap();
            assert!(
                r.status.success() && r.stdout.starts_with(b"<?xml"),
                "{}: dot -Tsvg failed: {}",
                m.display(),
                String::from_utf8_lossy(&r.stderr)
            );
        }
    }
    // --dot=FILE writes the file.
    let f = tmp.path().join("streams.dot");
    let arg = format!("--dot={}", f.display());
    let o = run(&[
        "inspect".as_ref(),
        tm("gpt2_ts17_fp32.onnx").as_os_str(),
        arg.as_ref(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(std::fs::read_to_string(&f)
        .unwrap()
        .contains("/m/transformer/h.N × 2"));
}
