//! Fuzzing support for onnx-normopt: the checks run on one input ([`harness`]), the structured
//! mutator ([`mutate`]) and the small models it starts from ([`hostile`], shared with
//! `tests/robustness.rs`), and the soundness mutations and oracle ([`sound`], shared with
//! `tests/soundness.rs`). The libFuzzer targets live in `fuzz_targets/`; the plain mutation
//! loops below run the same checks under `cargo test` (stable, no libFuzzer).

#[path = "../../tests/common/build.rs"]
pub mod build;
#[path = "../../tests/common/hostile.rs"]
pub mod hostile;

pub mod harness;
pub mod mutate;
pub mod sound;

/// A tiny xorshift generator for the plain mutation loops (the soundness mutations' own).
pub use sound::Rand as Rng;

/// Flip, overwrite, insert, delete or splice a few bytes (byte-level mutation for the loops).
pub fn mutate_bytes(r: &mut Rng, data: &mut Vec<u8>) {
    let k = 1 + r.below(4);
    for _ in 0..k {
        if data.is_empty() {
            data.push(r.next() as u8);
            continue;
        }
        let i = r.below(data.len());
        match r.below(6) {
            0 => data[i] ^= 1 << r.below(8),
            1 => data[i] = [0u8, 0xff, 0x7f, 0x80, 1][r.below(5)],
            2 => data.insert(i, r.next() as u8),
            3 => {
                data.remove(i);
            }
            4 => data.truncate(i),
            _ => {
                let n = 1 + r.below(16.min(data.len() - i));
                let j = r.below(data.len());
                let chunk: Vec<u8> = data[i..i + n].to_vec();
                data.splice(j..j, chunk);
            }
        }
    }
}

/// Run `f` on `input`; a panic is recorded under `fuzz/artifacts/loop-NAME/` and returned.
pub fn guarded(
    name: &str,
    input: &[u8],
    f: impl FnOnce() + std::panic::UnwindSafe,
) -> Option<String> {
    match std::panic::catch_unwind(f) {
        Ok(()) => None,
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("artifacts")
                .join(format!("loop-{name}"));
            let _ = std::fs::create_dir_all(&dir);
            let h = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            });
            let _ = std::fs::write(dir.join(format!("crash-{h:016x}")), input);
            Some(format!("{msg} (input saved as crash-{h:016x})"))
        }
    }
}

#[cfg(test)]
mod loops {
    use super::*;
    use std::time::{Duration, Instant};

    /// Iterations and time budget from `NORMOPT_FUZZ_ITERS` (default 300) and
    /// `NORMOPT_FUZZ_SECS` (default none), seed from `NORMOPT_FUZZ_SEED` (default fixed).
    fn budget() -> (u64, Option<Duration>, u64) {
        let iters = std::env::var("NORMOPT_FUZZ_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300);
        let secs = std::env::var("NORMOPT_FUZZ_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_secs);
        let seed = std::env::var("NORMOPT_FUZZ_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0x5eed_1234_u64);
        (
            if secs.is_some() { u64::MAX } else { iters },
            secs,
            seed | 1,
        )
    }

    fn run_loop(name: &str, mut step: impl FnMut(&mut Rng) -> Option<String>) {
        let (iters, secs, seed) = budget();
        let start = Instant::now();
        let mut r = Rng(seed);
        let mut failures: Vec<String> = Vec::new();
        let mut n = 0u64;
        // Quiet the default hook: a finding is reported once below.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        while n < iters && secs.map_or(true, |s| start.elapsed() < s) {
            if let Some(f) = step(&mut r) {
                if !failures
                    .iter()
                    .any(|x| x.split(" (input saved").next() == f.split(" (input saved").next())
                {
                    failures.push(f);
                }
            }
            n += 1;
        }
        std::panic::set_hook(hook);
        eprintln!(
            "{name}: {n} executions in {:.1?}, {} distinct failure(s)",
            start.elapsed(),
            failures.len()
        );
        assert!(
            failures.is_empty(),
            "{name} found:\n{}",
            failures.join("\n")
        );
    }

    /// Structured mutations of the seed models through load, check, pass and encode.
    #[test]
    fn pass_struct_loop() {
        run_loop("pass_struct", |r| {
            let len = 1 + r.below(24);
            let input: Vec<u8> = (0..len).map(|_| r.next() as u8).collect();
            let (_, bytes) = mutate::build(&input)?;
            let variant = (input.len() % harness::VARIANTS as usize) as u8;
            guarded("pass_struct", &input, move || {
                harness::decode_check(&bytes);
                harness::pass_check(&bytes, variant);
            })
        });
    }

    /// The If-wrapped seeds: the pass rewrites the streams inside both branches (RMSNorm and
    /// CRMSNorm, weight edits in memory and at write time), and every option variant passes
    /// the harness's checks.
    #[test]
    fn if_wrapped_seeds_are_rewritten() {
        use onnx_normopt::{ir::Model, passes};
        let dir = std::env::temp_dir().join(format!("normopt-fuzz-if-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut checked = 0;
        for (name, m) in mutate::seeds().iter().take(mutate::BUILTIN_SEEDS) {
            if !name.contains("if_wrapped") {
                continue;
            }
            let bytes = prost::Message::encode_to_vec(m);
            harness::decode_check(&bytes);
            let p = dir.join("m.onnx");
            std::fs::write(&p, &bytes).unwrap();
            // tiny_gpt has 2 LayerNorms, two_streams 4: each branch holds them all.
            let per_branch = if name.contains("two_streams") { 4 } else { 2 };
            for v in 0..2 * harness::VARIANTS {
                harness::pass_check(&bytes, v);
                let o = harness::options(v);
                if !o.allow_centering {
                    continue;
                }
                let out = passes::run(Model::load(&p).unwrap(), &o).unwrap();
                assert_eq!(
                    out.report.norms_rewritten,
                    2 * per_branch,
                    "{name}, variant {v}: {}",
                    out.report.summary()
                );
                checked += 1;
            }
        }
        std::fs::remove_dir_all(&dir).ok();
        assert!(checked >= 8, "{checked}");
    }

    /// Soundness: seed models mutated by [`sound::mutate_some`], rewritten without verification,
    /// compared with the mutated input in tract and onnxruntime ([`sound::check`]; needs
    /// `ORT_DYLIB_PATH`). A finding is saved like a panic.
    #[test]
    fn sound_loop() {
        let dir = std::env::temp_dir().join(format!("normopt-sound-loop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        run_loop("sound", |r| {
            let input: Vec<u8> = (0..9).map(|_| r.next() as u8).collect();
            let (m, what, target) = sound::mutated(mutate::pick_seed(input[0]).1, &input[1..])?;
            let verdict = sound::check(&m, target, &dir, &sound::verify_options());
            guarded("sound", &input, move || {
                if let Err(e) = verdict {
                    panic!("{target:?} after {}: {e}", what.join("; "));
                }
            })
        });
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Byte-level mutations of the built-in models through load and check.
    #[test]
    fn decode_loop() {
        let seeds: Vec<Vec<u8>> = mutate::seeds()
            .iter()
            .take(mutate::BUILTIN_SEEDS)
            .map(|(_, m)| prost::Message::encode_to_vec(m))
            .collect();
        run_loop("decode", |r| {
            let mut data = seeds[r.below(seeds.len())].clone();
            for _ in 0..1 + r.below(3) {
                mutate_bytes(r, &mut data);
            }
            let d2 = data.clone();
            guarded("decode", &data, move || {
                harness::decode_check(&d2);
                harness::pass_check(&d2, 0);
            })
        });
    }
}
