//! Model I/O loses nothing: decode → encode is byte-identical, through the raw protobuf and
//! through the graph IR, for every model in `testdata/` and the shared corpus; external data
//! round-trips.

mod common;

use onnx_normopt::io::{self, DataLayout};
use onnx_normopt::ir::{read_array, Model};
use prost::Message;
use std::path::{Path, PathBuf};

fn models() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in [root.join("testdata/models"), root.join("../shared/corpus")] {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.path().extension().is_some_and(|x| x == "onnx") {
                    out.push(e.path());
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn decode_encode_is_byte_identical() {
    let all = models();
    assert!(
        all.len() >= 90,
        "expected the testdata models, found {}",
        all.len()
    );
    for p in all {
        let bytes = std::fs::read(&p).unwrap();
        let file = io::load(&p).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            file.proto.encode_to_vec() == bytes,
            "{}: protobuf round trip differs",
            p.display()
        );
        let model = Model::from_file(file).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            model.to_proto().unwrap().encode_to_vec() == bytes,
            "{}: IR round trip differs",
            p.display()
        );
    }
}

#[test]
fn external_data_round_trip() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/models/gpt2_dynamo18_fp32.onnx");
    let model = Model::load(&src).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ext = dir.path().join("ext.onnx");
    let written = io::save(
        &model.to_proto().unwrap(),
        &model.store,
        &ext,
        DataLayout::External,
    )
    .unwrap();
    assert_eq!(written.len(), 2, "model and data file");
    let data = dir.path().join("ext.onnx.data");
    assert!(data.exists());
    let back = Model::load(&ext).unwrap();
    assert!(back.had_external_data);
    // Every tensor reads back the same values; offsets are 4096-aligned.
    for t in model.graph.initializers() {
        let name = t.name.clone().unwrap();
        let u = back
            .graph
            .initializers()
            .iter()
            .find(|x| x.name.as_deref() == Some(&name))
            .unwrap();
        if io::is_external(u) {
            let off: u64 = u
                .external_data
                .iter()
                .find(|e| e.key.as_deref() == Some("offset"))
                .unwrap()
                .value
                .as_ref()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(off % io::EXTERNAL_ALIGN, 0);
        }
        let a = read_array(t, &model.store, &model.path).unwrap();
        let b = read_array(u, &back.store, &back.path).unwrap();
        assert_eq!(a, b, "tensor {name}");
    }
    // Saving again inline gives the original file back, byte for byte.
    let inline = dir.path().join("inline.onnx");
    io::save(
        &back.to_proto().unwrap(),
        &back.store,
        &inline,
        DataLayout::Inline,
    )
    .unwrap();
    assert!(std::fs::read(&inline).unwrap() == std::fs::read(&src).unwrap());
    // And the rewrite keeps external data external.
    let out = common::pass::run(
        back,
        &onnx_normopt::passes::Options {
            check_each_patch: true,
            ..Default::default()
        },
    )
    .unwrap();
    let rewritten = dir.path().join("rms.onnx");
    let files = onnx_normopt::save(&out.model, &rewritten).unwrap();
    assert_eq!(files.len(), 2);
    let rep = onnx_normopt::verify::verify_files(
        &src,
        &rewritten,
        &onnx_normopt::verify::VerifyOptions {
            runtimes: onnx_normopt::verify::Runtimes::Tract,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(rep.passed(), "{rep}");
}

#[test]
fn external_location_escaping_the_folder_is_rejected() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/models/gpt2_dynamo18_fp32.onnx");
    let model = Model::load(&src).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("m");
    std::fs::create_dir(&sub).unwrap();
    let ext = sub.join("ext.onnx");
    io::save(
        &model.to_proto().unwrap(),
        &model.store,
        &ext,
        DataLayout::External,
    )
    .unwrap();
    std::fs::rename(sub.join("ext.onnx.data"), dir.path().join("ext.onnx.data")).unwrap();
    // Point the locations at ../ext.onnx.data.
    let bytes = std::fs::read(&ext).unwrap();
    let mut m = onnx_normopt::proto::ModelProto::decode(bytes.as_slice()).unwrap();
    io::for_each_tensor_mut(&mut m, &mut |t| {
        for e in &mut t.external_data {
            if e.key.as_deref() == Some("location") {
                e.value = Some("../ext.onnx.data".into());
            }
        }
    });
    std::fs::write(&ext, m.encode_to_vec()).unwrap();
    let err = io::load(&ext).unwrap_err().to_string();
    assert!(
        err.contains("not a relative path inside the model's folder"),
        "{err}"
    );
    assert!(err.contains("ext.onnx"), "{err}");
}

#[test]
fn streaming_writer_matches_whole_encoding() {
    for p in models() {
        let file = io::load(&p).unwrap();
        let mut out = Vec::new();
        io::write_model_streaming(&file.proto, &mut out).unwrap();
        assert!(
            out == file.proto.encode_to_vec(),
            "{}: streamed bytes differ",
            p.display()
        );
    }
}
