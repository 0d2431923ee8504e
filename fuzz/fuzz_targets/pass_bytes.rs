//! Target 2a: bytes → load → `passes::run` → encode → decode → check (and a second run).
//! Seed it with real models; libFuzzer mutates their bytes. The pass options follow the input
//! length (`harness::options`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    onnx_normopt_fuzz::harness::pass_check(
        data,
        (data.len() % onnx_normopt_fuzz::harness::VARIANTS as usize) as u8,
    );
});
