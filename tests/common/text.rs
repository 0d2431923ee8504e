//! Graphs written by hand, as text: the `ir::text` form the unit tests use (its format is in
//! `src/ir/text.rs`).

use onnx_normopt::proto::ModelProto;
use prost::Message;
use std::path::{Path, PathBuf};

/// The model `text` describes (a parse error names the line).
pub fn model(text: &str) -> ModelProto {
    onnx_normopt::ir::text::parse_proto(text)
        .unwrap_or_else(|e| panic!("test graph does not parse: {e}"))
}

/// [`model`], written to `dir/name`.
pub fn save(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, model(text).encode_to_vec()).unwrap();
    p
}
