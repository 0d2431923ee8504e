//! Loading and saving ([`crate::io`], [`crate::save`]): a saved model loads back the same,
//! weight edits computed while the model is written land in the file, and bad files are
//! refused with the file's name.

use crate::ir::Model;
use crate::passes::{self, Options};
use crate::testing::{assert_same_outputs, parse, rms};
use prost::Message;

const PRE_LN: &str = "
input %x: f32[2,3,8]
output %y: f32[2,3,8]
%ln = LayerNormalization[ln](%x, @g:f32[8], @beta:f32[8]) epsilon=1e-5
%h = MatMul[fc](%ln, @w:f32[8,8])
%hb = Add[fc_bias](%h, @b:f32[8])
%s = Add[residual](%x, %hb)
%y = LayerNormalization[ln_f](%s, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5
";

fn bytes(m: &Model) -> Vec<u8> {
    m.to_proto().unwrap().encode_to_vec()
}

#[test]
fn save_then_load_is_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    let m = parse(PRE_LN);
    crate::save(&m, &path).unwrap();
    let back = Model::load(&path).unwrap();
    assert_eq!(bytes(&back), bytes(&m));
    assert_eq!(std::fs::read(&path).unwrap(), bytes(&m));
}

/// With `defer_bytes: 0` every weight edit is computed while the model is written: the file
/// holds the same values as the in-memory rewrite, and computes the same as the original.
#[test]
fn deferred_weight_edits_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rms.onnx");
    let m = parse(PRE_LN);
    let opts = Options {
        defer_bytes: 0,
        ..rms()
    };
    let out = passes::run(m.clone(), &opts).unwrap();
    assert!(out.rewritten());
    crate::save(&out.model, &path).unwrap();
    let back = Model::load(&path).unwrap();
    assert_eq!(bytes(&back), bytes(&out.model));
    let eager = passes::run(m.clone(), &rms()).unwrap().model;
    assert_eq!(bytes(&back), bytes(&eager));
    assert_same_outputs(&m, &back);
}

#[test]
fn bad_files_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.onnx");
    let e = Model::load(&missing).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("missing.onnx"), "{e}");
    let e = Model::load(dir.path()).unwrap_err();
    assert!(
        e.to_string().ends_with("cannot read: is a directory"),
        "{e}"
    );
    let junk = dir.path().join("junk.onnx");
    std::fs::write(&junk, b"\xff\xff\xff not a model").unwrap();
    let e = Model::load(&junk).unwrap_err();
    assert!(matches!(e, crate::Error::NotOnnx { .. }), "{e}");
    assert!(e.to_string().contains("junk.onnx"), "{e}");
}
