//! Running the built binary from integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `onnx-normopt` binary this test run built.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_onnx-normopt")
}

/// A model of `testdata/models/`.
pub fn tm(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/models")
        .join(name)
}

/// Run the binary with `args`.
pub fn run(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

/// Everything it printed, stdout then stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
