//! Target 2b: structure-aware. The input selects a seed model (built-in or from the corpus
//! folders) and a string of graph edits (`src/mutate.rs`); the edited model then goes through
//! the decode checks and load → `passes::run` → encode → check.
#![no_main]
use libfuzzer_sys::fuzz_target;
use onnx_normopt_fuzz::{harness, mutate};

fuzz_target!(|data: &[u8]| {
    if let Some((_, bytes)) = mutate::build(data) {
        harness::decode_check(&bytes);
        harness::pass_check(&bytes, (data.len() % 4) as u8);
    }
});
