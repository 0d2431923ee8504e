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

/// `args` with `--check-patches` added when they ask for a rewrite (an output is given): every
/// rewrite the tests run checks the graph after each patch.
pub fn checked<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = args.iter().map(|a| a.as_ref().to_owned()).collect();
    let rewrite = v.iter().any(|a| a == "-o" || a == "--output")
        && !matches!(
            v.first().and_then(|a| a.to_str()),
            Some("inspect" | "verify" | "bench")
        );
    if rewrite {
        v.push("--check-patches".into());
    }
    v
}

/// Run the binary with `args` (rewrites check every patch, see [`checked`]).
pub fn run(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(bin()).args(checked(args)).output().unwrap()
}

/// Everything it printed, stdout then stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
