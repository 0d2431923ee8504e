//! Target 2b: structure-aware. The input selects a seed model (built-in or from the corpus
//! folders) and a string of graph edits (`src/mutate.rs`); the edited model then goes through
//! the decode checks and load → `passes::run` → encode → check.
//!
//! With `NORMOPT_MATERIALIZE=OUT.onnx`, running the target on one input writes the model it
//! describes to OUT.onnx (how crash inputs become files in `tests/regressions/`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use onnx_normopt_fuzz::{harness, mutate};

fuzz_target!(|data: &[u8]| {
    if let Some((seed, bytes)) = mutate::build(data) {
        if let Ok(out) = std::env::var("NORMOPT_MATERIALIZE") {
            std::fs::write(&out, &bytes).expect("write the materialized model");
            eprintln!(
                "{out}: seed {}, variant {}",
                mutate::seeds()[seed].0,
                data.len() % harness::VARIANTS as usize
            );
        }
        harness::decode_check(&bytes);
        harness::pass_check(&bytes, (data.len() % harness::VARIANTS as usize) as u8);
    }
});
