//! Verification options shared by the integration tests.

#![allow(dead_code)]

use onnx_normopt::verify::{self, Runtimes, VerifyOptions};

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
