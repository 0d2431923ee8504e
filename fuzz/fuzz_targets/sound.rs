//! Target 3: soundness. The input picks a seed model (`mutate::pick_seed`, as `pass_struct`) and
//! seeds the mutations of `src/sound.rs` (the same as `../shared/tools/soundness_fuzz.py`: extra
//! outputs, non-linear or mean-reading readers, scalar Mul/Add, Identity/Cast round trips, a
//! duplicated producer, swapped operands, changed ε); the pass then rewrites the mutated model
//! without verification (target: the input's last bit) and its output must compute what the
//! mutated model computes, in tract and onnxruntime (`sound::check`). A finding panics with the
//! difference. Set `ORT_DYLIB_PATH` (onnxruntime is required: `CI=true`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use onnx_normopt_fuzz::{mutate, sound};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    if let Some((m, what, target)) = sound::mutated(mutate::pick_seed(sel).1, rest) {
        let dir = std::env::temp_dir().join(format!("normopt-sound-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        if let Err(e) = sound::check(&m, target, &dir, &sound::verify_options()) {
            panic!("{target:?} after {}: {e}", what.join("; "));
        }
    }
});
