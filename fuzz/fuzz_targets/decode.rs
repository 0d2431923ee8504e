//! Target 1: bytes → `io::load` → `ir::Model` → `Graph::check`, then every IR query the pass
//! makes (tensor values, shapes, index, order). See `src/harness.rs` for the invariants.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    onnx_normopt_fuzz::harness::decode_check(data);
});
