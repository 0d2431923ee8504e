//! Output stability: the rewrite of every `testdata/` model (the families of issue #23 too) and
//! of the shared corpus, in the default form and as CRMSNorm, hashed and compared with
//! `tests/golden/hashes.json`.
//!
//! A change of the pass that changes any output shows here, model by model, so that a refactor
//! can prove it changed nothing and a new rule can show exactly which models it touches.
//! Provenance (the `onnx_normopt.*` metadata entries and node `doc_string`s) is left out of the
//! hash: it records the tool version and is checked by its own tests.
//!
//! Refresh after an intended change, and review the diff of the JSON like code:
//! `NORMOPT_BLESS=1 cargo test --release --test golden`.

mod common;

use onnx_normopt::ir::Model;
use onnx_normopt::passes::{Options, Target};
use onnx_normopt::proto::{GraphProto, ModelProto};
use prost::Message;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// FNV-1a, 64 bits: stable across platforms and toolchains (std's hashers are not promised to be).
fn fnv1a(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn strip_provenance_graph(g: &mut GraphProto) {
    for n in &mut g.node {
        n.doc_string = None;
        for a in &mut n.attribute {
            if let Some(sub) = a.g.as_mut() {
                strip_provenance_graph(sub);
            }
            for sub in &mut a.graphs {
                strip_provenance_graph(sub);
            }
        }
    }
}

fn strip_provenance(m: &mut ModelProto) {
    m.metadata_props
        .retain(|p| !p.key.as_deref().unwrap_or("").starts_with("onnx_normopt"));
    if let Some(g) = m.graph.as_mut() {
        strip_provenance_graph(g);
    }
}

/// The hash of the rewrite of `path` with `opts`, or what stopped it.
fn output_hash(path: &Path, opts: &Options) -> String {
    let model = match Model::load(path) {
        Ok(m) => m,
        Err(e) => return format!("load error: {e}"),
    };
    match common::pass::run(model, opts) {
        Ok(out) if out.rewritten() => {
            let mut proto = out.model.to_proto().expect("pending tensors computed");
            strip_provenance(&mut proto);
            fnv1a(&proto.encode_to_vec())
        }
        Ok(_) => "not rewritten".into(),
        Err(e) => format!("error: {}", e.to_string().lines().next().unwrap_or("")),
    }
}

fn models() -> Vec<(String, PathBuf)> {
    let text = std::fs::read_to_string(root().join("testdata/manifest.json"))
        .expect("testdata/manifest.json");
    let manifest: Vec<serde_json::Value> = serde_json::from_str(&text).expect("manifest is JSON");
    let mut out: Vec<(String, PathBuf)> = manifest
        .iter()
        .filter_map(|m| m["file"].as_str())
        .map(|f| (format!("testdata/{f}"), root().join("testdata").join(f)))
        .collect();
    // The backbones, the other frameworks' exports and the families, listed by their own
    // manifests.
    for dir in ["backbones", "frameworks", "families"] {
        let text = std::fs::read_to_string(root().join("testdata").join(dir).join("manifest.json"))
            .unwrap_or_else(|e| panic!("testdata/{dir}/manifest.json: {e}"));
        let listed: Vec<serde_json::Value> = serde_json::from_str(&text).expect("JSON");
        out.extend(listed.iter().filter_map(|m| m["file"].as_str()).map(|f| {
            (
                format!("testdata/{dir}/{f}"),
                root().join("testdata").join(dir).join(f),
            )
        }));
    }
    let corpus = root().join("../shared/corpus");
    let mut shared: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .unwrap_or_else(|e| panic!("{}: {e}", corpus.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
        .collect();
    shared.sort();
    out.extend(shared.into_iter().map(|p| {
        let name = format!("shared/corpus/{}", p.file_name().unwrap().to_string_lossy());
        (name, p)
    }));
    out
}

#[test]
fn outputs_match_the_stored_hashes() {
    // Every patch of every rewrite is checked as it is applied.
    let checked = Options {
        check_each_patch: true,
        ..Options::default()
    };
    let configs: [(&str, Options); 2] = [
        ("rmsnorm", checked.clone()),
        (
            "crmsnorm",
            Options {
                form: Target::Crmsnorm.into(),
                ..checked
            },
        ),
    ];
    let mut now: BTreeMap<String, String> = BTreeMap::new();
    for (name, path) in models() {
        for (cfg, opts) in &configs {
            now.insert(format!("{name} {cfg}"), output_hash(&path, opts));
        }
    }
    let file = root().join("tests/golden/hashes.json");
    if std::env::var_os("NORMOPT_BLESS").is_some() {
        let text = serde_json::to_string_pretty(&now).unwrap() + "\n";
        std::fs::write(&file, text).unwrap();
        return;
    }
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with NORMOPT_BLESS=1 cargo test --release --test golden",
            file.display()
        )
    });
    let stored: BTreeMap<String, String> = serde_json::from_str(&text).expect("hashes are JSON");
    let mut diffs = Vec::new();
    for (k, v) in &now {
        match stored.get(k) {
            Some(s) if s == v => {}
            Some(s) => diffs.push(format!("changed: {k}: {s} -> {v}")),
            None => diffs.push(format!("new: {k}: {v}")),
        }
    }
    for k in stored.keys().filter(|k| !now.contains_key(*k)) {
        diffs.push(format!("gone: {k}"));
    }
    assert!(
        diffs.is_empty(),
        "{} output(s) differ from tests/golden/hashes.json (if intended, refresh with \
         NORMOPT_BLESS=1 cargo test --release --test golden and review the diff):\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
