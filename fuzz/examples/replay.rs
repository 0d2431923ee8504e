//! Replay fuzz findings without libFuzzer:
//!
//!     cargo run --release --example replay -- FILE...              # run the checks on each
//!     cargo run --release --example replay -- --materialize OUT.onnx CRASH   # pass_struct input → model
//!     cargo run --release --example replay -- --write-seeds DIR    # the built-in models as files
//!
//! A `.onnx` file (or any file of a `decode`/`pass_bytes` artifact) is checked as a model file
//! with every option variant. With `--materialize`, a `pass_struct` input is turned into the
//! model it describes (to keep in `tests/regressions/`).
use onnx_normopt_fuzz::{harness, mutate};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--write-seeds") {
        // The built-in models as files, to seed the `decode` and `pass_bytes` corpora.
        let dir = std::path::Path::new(&args[1]);
        std::fs::create_dir_all(dir).expect("seed folder");
        for (name, m) in mutate::seeds().iter().take(mutate::BUILTIN_SEEDS) {
            let file = dir.join(format!("{}.onnx", name.trim_start_matches("builtin:")));
            std::fs::write(&file, prost::Message::encode_to_vec(m)).expect("write seed");
        }
        return;
    }
    if args.first().map(String::as_str) == Some("--materialize") {
        let (out, input) = (&args[1], &args[2]);
        let data = std::fs::read(input).expect("read input");
        let (seed, bytes) = mutate::build(&data).expect("a non-empty input");
        std::fs::write(out, bytes).expect("write model");
        eprintln!("{out}: seed {}", mutate::seeds()[seed].0);
        return;
    }
    let mut bad = 0;
    for f in &args {
        let data = std::fs::read(f).expect("read input");
        for v in std::iter::once(None).chain((0..harness::VARIANTS).map(Some)) {
            let what = v.map_or("decode".to_string(), |v| format!("pass variant {v}"));
            let d = data.clone();
            let r = std::panic::catch_unwind(move || match v {
                None => harness::decode_check(&d),
                Some(v) => harness::pass_check(&d, v),
            });
            if r.is_err() {
                bad += 1;
                eprintln!("{f}: {what}: FAILED");
            }
        }
    }
    std::process::exit(if bad > 0 { 1 } else { 0 });
}
