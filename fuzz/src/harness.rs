//! The checks the fuzz targets run on one input, shared by `fuzz_targets/*.rs`, the plain
//! mutation loops (`cargo test` in `fuzz/`) and the regression replay in
//! `tests/robustness.rs` (which includes this file by path). A panic here is a finding: either
//! the library panicked, or one of the invariants below does not hold.
//!
//! Invariants checked:
//! - loading never panics; every load error is one line that names the file;
//! - a model that loads passes `Graph::check`, converts back to the exact protobuf it came from,
//!   and its tensors, shapes, index and order can be computed without a panic;
//! - `passes::run` never panics and never returns `Error::Internal` on any input; its errors are
//!   one line naming the file;
//! - its output encodes, decodes and passes `Graph::check`; when nothing was rewritten it is the
//!   input, byte for byte; functions, training info and metadata are kept byte for byte;
//! - running the pass again on its own output neither panics nor fails internally;
//! - the verifier's budget estimate never panics, and the inputs its generator makes have the
//!   sizes the estimate counted.
#![allow(dead_code)]

use onnx_normopt::io::{self, ExternalStore, ModelFile};
use onnx_normopt::ir::{self, shape::Shapes, Graph, Model};
use onnx_normopt::passes::{self, CrmsEmit, Emit, Options, OutputForm, Target};
use onnx_normopt::proto::ModelProto;
use onnx_normopt::Error;
use prost::Message;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Name of the external data file that fuzzed models may reference ([`scratch`] holds it).
pub const DATA_FILE: &str = "w.bin";
/// Size of [`DATA_FILE`].
pub const DATA_LEN: usize = 1 << 16;

/// A scratch folder shared by all runs (in /dev/shm when there is one) holding [`DATA_FILE`]
/// (pseudo-random little-endian floats). Model files written there are removed after use.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join("onnx-normopt-fuzz-scratch");
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let mut s: u32 = 0x1234_5678;
        let data: Vec<u8> = (0..DATA_LEN / 4)
            .flat_map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                ((s >> 8) as f32 / (1 << 24) as f32 - 0.5).to_le_bytes()
            })
            .collect();
        let target = dir.join(DATA_FILE);
        if std::fs::read(&target).ok().as_deref() != Some(&data[..]) {
            let tmp = dir.join(format!("{DATA_FILE}.{}.tmp", std::process::id()));
            std::fs::write(&tmp, &data).expect("scratch data file");
            std::fs::rename(&tmp, &target).expect("scratch data file");
        }
        dir
    })
}

/// A model file in the scratch folder, removed on drop.
struct ScratchModel(PathBuf);

impl Drop for ScratchModel {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Write `data` as a model file in the scratch folder (one name per process and thread).
fn write_model(data: &[u8]) -> ScratchModel {
    let tid =
        format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_ascii_digit(), "");
    let p = scratch().join(format!("m-{}-{tid}.onnx", std::process::id()));
    std::fs::write(&p, data).expect("write scratch model");
    ScratchModel(p)
}

/// The canonical encoding of whatever protobuf `data` decodes to.
fn canonical(data: &[u8]) -> Option<Vec<u8>> {
    ModelProto::decode(data).ok().map(|m| m.encode_to_vec())
}

/// A user-facing error must be one line that names the file (usage errors carry no path, and
/// `src/main.rs` adds the file to the line of a "cannot be rewritten" refusal), exit 2 for a
/// bad input, 3 for a refusal.
fn check_error(e: &Error, path: &Path) {
    let msg = e.to_string();
    if let Error::Internal(_) = e {
        panic!("internal error on a user's file: {msg}");
    }
    assert!(!msg.contains('\n'), "error message spans lines: {msg:?}");
    if let Error::NotRewritable(_) = e {
        assert_eq!(e.exit_code(), 3, "a refusal must exit 3: {msg}");
        return;
    }
    if !matches!(e, Error::Usage(_)) {
        assert!(
            msg.contains(&path.display().to_string()),
            "error message does not name the file: {msg:?}"
        );
    }
    assert_eq!(e.exit_code(), 2, "a bad input must exit 2: {msg}");
}

/// Known findings to step over while fuzzing, so that one bug does not hide the next:
/// `NORMOPT_FUZZ_IGNORE` is a `|`-separated list of substrings matched against
/// "MESSAGE at FILE:LINE" of a panic. A matching panic ends that input quietly. Unset (as in
/// the tests), every panic is a failure.
fn ignore_patterns() -> &'static [String] {
    static PATS: OnceLock<Vec<String>> = OnceLock::new();
    PATS.get_or_init(|| {
        let pats: Vec<String> = std::env::var("NORMOPT_FUZZ_IGNORE")
            .unwrap_or_default()
            .split('|')
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect();
        if !pats.is_empty() {
            let prev = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let msg = info
                    .payload()
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let loc = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let key = format!("{msg} at {loc}");
                if ignore_patterns().iter().any(|p| key.contains(p.as_str())) {
                    IGNORED.with(|c| c.set(true));
                } else {
                    prev(info);
                }
            }));
        }
        pats
    })
}

thread_local! {
    static IGNORED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f`; a panic matching `NORMOPT_FUZZ_IGNORE` is swallowed, any other propagates.
fn guarded(f: impl FnOnce()) {
    if ignore_patterns().is_empty() {
        return f();
    }
    if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        if !IGNORED.with(|c| c.replace(false)) {
            std::panic::resume_unwind(e);
        }
    }
}

/// Target 1: decode bytes as a model file, build the IR, check it, and compute everything the
/// pass would compute from the IR alone (tensor values, shapes, index, order).
pub fn decode_check(data: &[u8]) {
    guarded(|| decode_check_inner(data));
}

fn decode_check_inner(data: &[u8]) {
    let file = write_model(data);
    let path = file.0.clone();
    let model = match Model::load(&path) {
        Ok(m) => m,
        Err(e) => return check_error(&e, &path),
    };
    model.graph.check().expect("a loaded graph passes check()");
    // An unmodified model converts back to the protobuf it came from.
    let back = model
        .to_proto()
        .expect("a fresh model has nothing pending")
        .encode_to_vec();
    assert!(
        Some(&back) == canonical(data).as_ref(),
        "the IR does not round-trip the protobuf"
    );
    ir_queries(&model);
    verify_budget_queries(&path);
}

/// The verifier's budget estimate and input generator on any model that loads: never a panic
/// (nor an overflow), and when the estimate is small enough to generate the inputs, the
/// generated samples have exactly the sizes the estimate counted.
fn verify_budget_queries(path: &Path) {
    use onnx_normopt::verify::{budget, generate_cases, VerifyOptions};
    let opts = VerifyOptions {
        samples: 2,
        ..VerifyOptions::default()
    };
    let Ok(e) = budget::estimate(path, Some(path), &opts, 16 << 20) else {
        return;
    };
    assert!(e.total_bytes >= e.input_bytes, "the total holds the inputs");
    if !e.fits {
        return;
    }
    let Ok(cases) = generate_cases(path, &opts) else {
        return;
    };
    assert_eq!(cases.len(), e.cases, "the estimate counts every case");
    let generated: u64 = cases
        .iter()
        .flat_map(|c| &c.samples)
        .flatten()
        .map(|t| t.data.len() as u64)
        .sum();
    assert_eq!(
        generated, e.input_bytes,
        "generated input bytes = estimated input bytes"
    );
}

/// Everything the pass asks of the IR, on any loaded model: must not panic.
fn ir_queries(model: &Model) {
    let g = &model.graph;
    let _ = g.index();
    let _ = Shapes::infer(g);
    let _ = g.op_histogram();
    for t in g.initializers() {
        let _ = ir::read_array(t, &model.store, &model.path);
    }
    for n in g.nodes() {
        for i in &n.input {
            let _ = model.constant(i).map(|r| r.map(|a| a.data.len()));
            let _ = g.constant_dims(i);
            let _ = g.declared_type(i);
            let _ = onnx_normopt::ir::shape::const_ints(g, i);
        }
    }
    let mut sorted: Graph = g.clone();
    sorted
        .toposort()
        .expect("a graph that passes check() has no cycle");
    if !g.nodes().iter().any(|n| {
        n.attribute
            .iter()
            .any(|a| a.g.is_some() || !a.graphs.is_empty())
    }) {
        assert!(
            // Compared encoded: a NaN attribute is never == itself.
            sorted
                .nodes()
                .iter()
                .map(|n| n.encode_to_vec())
                .eq(g.nodes().iter().map(|n| n.encode_to_vec())),
            "toposort reordered a graph that was already in order"
        );
    }
    let _ = onnx_normopt::ir::dump::dump(g);
}

/// How many option variants [`options`] knows.
pub const VARIANTS: u8 = 8;

/// The pass options fuzzed: `variant % VARIANTS` picks one (0–3 RMSNorm, 4–7 CRMSNorm; emit
/// form, folding and centering vary); `(variant / VARIANTS) % 2` chooses whether weight edits
/// run in memory (0) or at write time, block by block (1).
pub fn options(variant: u8) -> Options {
    let mut o = Options {
        form: Target::Rmsnorm.into(),
        // Half of the variants edit every weight block by block at write time.
        defer_bytes: if (variant / VARIANTS) % 2 == 1 {
            0
        } else {
            usize::MAX
        },
        // Every patch is checked as it is applied.
        check_each_patch: true,
        ..Options::default()
    };
    match variant % VARIANTS {
        0 => {}
        1 => o.form = OutputForm::Rms(Emit::Onnxruntime),
        2 => o.fold = false,
        3 => {
            o.form = OutputForm::Rms(Emit::Onnxruntime);
            o.fold = false;
            o.allow_centering = false;
        }
        4 => o.form = Target::Crmsnorm.into(),
        5 => o.form = OutputForm::Crms(CrmsEmit::Custom),
        6 => {
            o.form = OutputForm::Crms(CrmsEmit::Onnxruntime);
            o.fold = false;
        }
        _ => {
            o.form = Target::Crmsnorm.into();
            o.fold = false;
            o.allow_centering = false;
        }
    }
    o
}

/// Target 2: load, run the pass, encode the result and check it; then run the pass again on
/// the output.
pub fn pass_check(data: &[u8], variant: u8) {
    guarded(|| pass_check_inner(data, variant));
}

fn pass_check_inner(data: &[u8], variant: u8) {
    let file = write_model(data);
    let path = file.0.clone();
    let model = match Model::load(&path) {
        Ok(m) => m,
        Err(e) => return check_error(&e, &path),
    };
    let input = model.to_proto().expect("a fresh model has nothing pending");
    let had_external = model.had_external_data;
    let outcome = match passes::run(model, &options(variant)) {
        Ok(o) => o,
        Err(e) => return check_error(&e, &path),
    };
    let _ = outcome.report.summary();
    serde_json::to_string(&outcome.report).expect("the report serialises");
    let out = match outcome.model.to_proto() {
        Ok(o) => o,
        Err(e) => return check_error(&e, &path),
    };
    let bytes = out.encode_to_vec();
    let back = ModelProto::decode(bytes.as_slice()).expect("the output decodes");
    let g = Graph::from_proto(back.graph.clone().expect("the output has a graph"));
    if let Err(e) = g.check() {
        panic!("the output graph is invalid: {e}");
    }
    if !outcome.rewritten() {
        assert!(
            bytes == input.encode_to_vec(),
            "nothing was rewritten, yet the model changed"
        );
    } else {
        assert!(outcome.report.norms_rewritten > 0);
    }
    let enc = |v: &dyn Fn(&ModelProto) -> Vec<u8>| (v(&input), v(&out));
    let (a, b) = enc(&|m| m.functions.iter().flat_map(|f| f.encode_to_vec()).collect());
    assert!(a == b, "model-local functions changed");
    let (a, b) = enc(&|m| {
        m.training_info
            .iter()
            .flat_map(|f| f.encode_to_vec())
            .collect()
    });
    assert!(a == b, "training info changed");
    let (a, b) = enc(&|m| {
        m.metadata_props
            .iter()
            .flat_map(|f| f.encode_to_vec())
            .collect()
    });
    assert!(a == b, "metadata changed");
    for o in &input.opset_import {
        assert!(out.opset_import.contains(o), "opset import {o:?} dropped");
    }
    // A second run on the output: no panic, no internal error.
    if outcome.rewritten() {
        let file = ModelFile {
            proto: back,
            path: path.clone(),
            store: Arc::new(ExternalStore::new(&path)),
            had_external_data: had_external,
            file_size: bytes.len() as u64,
        };
        match Model::from_file(file) {
            Ok(m2) => {
                if let Err(e) = passes::run(m2, &options(variant)) {
                    check_error(&e, &path);
                }
            }
            Err(e) => panic!("the output does not load again: {e}"),
        }
    }
    let _ = io::is_external;
}
