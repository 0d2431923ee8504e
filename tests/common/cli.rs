//! Running the built binary from integration tests: every rewrite checks the graph after each
//! patch (`--check-patches`, added by [`checked`]).

use std::ffi::{OsStr, OsString};
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
pub fn checked<S: AsRef<OsStr>>(args: &[S]) -> Vec<OsString> {
    let mut v: Vec<OsString> = args.iter().map(|a| a.as_ref().to_owned()).collect();
    let rewrite = v.iter().any(|a| a == "-o" || a == "--output")
        && !matches!(
            v.first().and_then(|a| a.to_str()),
            Some("inspect" | "verify" | "bench")
        );
    if rewrite && !v.iter().any(|a| a == "--check-patches") {
        v.push("--check-patches".into());
    }
    v
}

/// The binary with `args` ([`checked`]), to add environment or spawn.
pub fn command<S: AsRef<OsStr>>(args: &[S]) -> Command {
    let mut c = Command::new(bin());
    c.args(checked(args));
    c
}

/// Run the binary with `args` ([`checked`]).
pub fn run<S: AsRef<OsStr>>(args: &[S]) -> Output {
    command(args).output().expect("the binary runs")
}

/// What it printed on stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Everything it printed, stdout then stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
