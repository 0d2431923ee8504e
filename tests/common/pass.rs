//! Running the pass and verification from the tests: every rewrite checks the graph after
//! each patch ([`checked`]), so that the suite checks each patch of every rewrite it makes.

use onnx_normopt::ir::Model;
use onnx_normopt::passes::{self, Options, Outcome};
use onnx_normopt::verify::{self, Runtimes, VerifyOptions};

/// `opts` with the graph checked after each patch.
pub fn checked(opts: &Options) -> Options {
    Options {
        check_each_patch: true,
        ..opts.clone()
    }
}

/// `passes::run` with the graph checked after each patch.
pub fn run(model: Model, opts: &Options) -> onnx_normopt::Result<Outcome> {
    passes::run(model, &checked(opts))
}

/// Verify with tract always, and onnxruntime when its library is there (required under CI=true).
pub fn verify_opts() -> VerifyOptions {
    let require = verify::ci_requires_ort();
    let have = !matches!(
        verify::find_ort_library(None),
        verify::OrtLibrary::NotFound { .. }
    );
    VerifyOptions {
        samples: 2,
        runtimes: if have || require {
            Runtimes::Both
        } else {
            Runtimes::Tract
        },
        require_ort: require,
        ..Default::default()
    }
}

/// A note on the real stderr (not captured by the test harness, so a skip is visible).
pub fn note(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "NOTE: {msg}");
}

/// Whether onnxruntime can be used; `false` with a visible note when it is missing and CI does
/// not require it (under `CI=true` a missing onnxruntime makes the caller's verification fail).
pub fn have_ort(test: &str) -> bool {
    if verify::ci_requires_ort() {
        return true;
    }
    match verify::find_ort_library(None) {
        verify::OrtLibrary::Found { .. } => true,
        verify::OrtLibrary::NotFound { tried } => {
            note(&format!(
                "{test}: onnxruntime library not found ({}); its onnxruntime part is skipped",
                tried.join("; ")
            ));
            false
        }
    }
}
