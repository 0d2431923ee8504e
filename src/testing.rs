//! Test helpers (crate-internal, tests only): graphs as text in ([`crate::ir::text`]), text out.
//!
//! - `check!``(before, opts, @"after")`: parse `before`, run the pass
//!   ([`crate::passes::run`]), run both graphs in tract on random inputs and assert that every
//!   output agrees to float32 rounding ([`TOL`]), then compare the rewritten graph's dump and a
//!   digest of the report with the inline insta snapshot.
//! - `check_no_match!``(before, opts, @"reasons")`: assert the pass
//!   leaves the model byte-identical, and compare its refusals (`norm (form): why`, one a line)
//!   with the snapshot.
//!
//! Snapshots are updated like the others (`INSTA_UPDATE=always` or `cargo insta review`) and
//! reviewed like code.

use crate::ir::{dump::dump, text, Model};
use crate::passes::{self, emit::Emit, CrmsEmit, Options, OutputForm};
use crate::proto::{data_type as dt, ModelProto};
use prost::Message;
use std::fmt::Write;
use tract_onnx::prelude::*;

/// Largest max |B − A| / max |A| allowed between an original output A and its rewrite B. The
/// test graphs are a handful of float32 ops wide 8 or so: one rounding is 6e-8 relative, and
/// an exact rewrite reorders a few dozen of them (centred weights rounded once, RMS instead of
/// variance). Anything wrong in a rewrite (a missed centring, a wrong fold) is off by 1e-2 or
/// more on random weights.
pub(crate) const TOL: f64 = 2e-6;

/// Pass options for an output form, the graph checked after each patch, everything else at
/// its default.
pub(crate) fn opts(form: OutputForm) -> Options {
    Options {
        form,
        // Tests check the graph after every patch of the rewrite.
        check_each_patch: true,
        ..Default::default()
    }
}

/// Pre-RMSNorm, standard ops.
pub(crate) fn rms() -> Options {
    opts(OutputForm::Rms(Emit::Standard))
}

/// Pre-CRMSNorm, standard ops.
pub(crate) fn crms() -> Options {
    opts(OutputForm::Crms(CrmsEmit::Standard))
}

/// Pre-RMSNorm as onnxruntime's `SimplifiedLayerNormalization`.
pub(crate) fn rms_ort() -> Options {
    opts(OutputForm::Rms(Emit::Onnxruntime))
}

/// Pre-CRMSNorm as the one custom op.
pub(crate) fn crms_custom() -> Options {
    opts(OutputForm::Crms(CrmsEmit::Custom))
}

/// Parse a test graph (panics with the parse error).
pub(crate) fn parse(text: &str) -> Model {
    text::parse(text).unwrap_or_else(|e| panic!("test graph does not parse: {e}"))
}

fn proto(m: &Model) -> ModelProto {
    m.to_proto().expect("model to protobuf")
}

/// The report as JSON (its field types may change; its JSON names are the contract).
fn report_json(r: &passes::report::Report) -> serde_json::Value {
    serde_json::to_value(r).expect("report serialises")
}

fn s(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The report in a few lines: each stream's status and width, each leaf's centring, each
/// norm's form in and out and what its affine folded into, each refusal.
pub(crate) fn report_digest(r: &passes::report::Report) -> String {
    let j = report_json(r);
    let mut out = String::new();
    let _ = writeln!(out, "rewritten {}", s(&j["norms_rewritten"]));
    for st in j["streams"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "stream {} width {} -> {}: {}",
            s(&st["id"]),
            s(&st["width"]),
            s(&st["new_width"]),
            s(&st["status"])
        );
        for r in st["reasons"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "  refused: {}", s(r));
        }
        for l in st["leaves"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  leaf %{} {} [{}]: {}",
                s(&l["value"]),
                s(&l["kind"]),
                s(&l["node"]),
                s(&l["how"])
            );
        }
        for n in st["norms"].as_array().into_iter().flatten() {
            let into: Vec<String> = n["folded_into"]
                .as_array()
                .into_iter()
                .flatten()
                .map(s)
                .collect();
            let _ = writeln!(
                out,
                "  norm {}: {} -> {}, eps {}, folded into [{}]{}",
                s(&n["name"]),
                s(&n["form_in"]),
                s(&n["form_out"]),
                s(&n["epsilon"]),
                into.join(", "),
                match &n["kept_affine"] {
                    serde_json::Value::Null => String::new(),
                    k => format!(", kept affine: {}", s(k)),
                }
            );
        }
    }
    out.push_str(&refusals(r));
    out
}

/// The report's refusals, `norm (form): why`, one a line.
pub(crate) fn refusals(r: &passes::report::Report) -> String {
    let j = report_json(r);
    let mut out = String::new();
    for f in j["refusals"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{} ({}): {}",
            s(&f["norm"]),
            s(&f["form"]),
            s(&f["why"])
        );
    }
    out
}

/// Deterministic pseudo-random numbers (splitmix64).
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Random inputs for the graph inputs of `m` (by name): floats in [-2, 2) plus an offset per
/// input (so a stream's mean is far from 0 and a missed centring shows), integers in 0..2
/// (token ids: test tables have at least 2 rows). Symbolic or unknown dims are 2.
fn random_inputs(m: &ModelProto, seed: u64) -> Vec<(String, Tensor)> {
    let g = m.graph.as_ref().expect("graph");
    let inits: std::collections::HashSet<&str> = g
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref())
        .collect();
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    for v in &g.input {
        let name = v.name.clone().unwrap_or_default();
        if inits.contains(name.as_str()) {
            continue;
        }
        let tt = v
            .r#type
            .as_ref()
            .and_then(|t| t.tensor_type.as_ref())
            .unwrap_or_else(|| panic!("test input {name:?} needs a type"));
        let shape: Vec<usize> = tt
            .shape
            .as_ref()
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| d.dim_value.map(|v| v as usize).unwrap_or(2))
                    .collect()
            })
            .unwrap_or_default();
        let n: usize = shape.iter().product();
        let offset = 3.0 * rng.uniform() - 1.5;
        let t = match tt.elem_type.unwrap_or(0) {
            dt::FLOAT => {
                let v: Vec<f32> = (0..n)
                    .map(|_| (4.0 * rng.uniform() - 2.0 + offset) as f32)
                    .collect();
                tract_ndarray::ArrayD::from_shape_vec(shape, v)
                    .expect("shape")
                    .into_tensor()
            }
            dt::INT64 => {
                let v: Vec<i64> = (0..n).map(|_| (rng.uniform() * 2.0) as i64).collect();
                tract_ndarray::ArrayD::from_shape_vec(shape, v)
                    .expect("shape")
                    .into_tensor()
            }
            other => panic!("test input {name:?}: no random values of type {other}"),
        };
        out.push((name, t));
    }
    out
}

/// Run `m` in tract (with this crate's custom op) on `feeds`; outputs as f64, in graph order.
fn run_tract(m: &ModelProto, feeds: &[(String, Tensor)]) -> Vec<(String, Vec<usize>, Vec<f64>)> {
    let bytes = m.encode_to_vec();
    let mut model = crate::verify::tract_onnx_with_extensions()
        .model_for_read(&mut &bytes[..])
        .unwrap_or_else(|e| panic!("tract cannot load the graph: {e:#}"));
    let outlets = model.input_outlets().expect("inputs").to_vec();
    let mut inputs: TVec<TValue> = tvec![];
    for (ix, o) in outlets.iter().enumerate() {
        let name = model.node(o.node).name.clone();
        let t = &feeds
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no value for input {name:?}"))
            .1;
        model
            .set_input_fact(ix, InferenceFact::dt_shape(t.datum_type(), t.shape()))
            .expect("input fact");
        inputs.push(t.clone().into_tvalue());
    }
    let plan = model
        .into_optimized()
        .unwrap_or_else(|e| panic!("tract cannot optimise the graph: {e:#}"))
        .into_runnable()
        .expect("runnable");
    let outs = plan
        .run(inputs)
        .unwrap_or_else(|e| panic!("tract cannot run the graph: {e:#}"));
    let names: Vec<String> = m
        .graph
        .as_ref()
        .map(|g| g.output.iter().map(|o| o.name.clone().unwrap_or_default()))
        .into_iter()
        .flatten()
        .collect();
    outs.iter()
        .zip(names)
        .map(|(o, name)| {
            let f = o.cast_to::<f64>().expect("output as f64");
            let v = f
                .to_plain_array_view::<f64>()
                .expect("f64 values")
                .iter()
                .copied()
                .collect();
            (name, o.shape().to_vec(), v)
        })
        .collect()
}

/// Assert that `a` and `b` compute the same outputs to float32 rounding on a few random
/// inputs. Returns the largest relative difference seen.
pub(crate) fn assert_same_outputs(a: &Model, b: &Model) -> f64 {
    let (pa, pb) = (proto(a), proto(b));
    let mut worst = 0.0f64;
    for seed in 1..=3 {
        let feeds = random_inputs(&pa, seed);
        let ra = run_tract(&pa, &feeds);
        let rb = run_tract(&pb, &feeds);
        assert_eq!(ra.len(), rb.len(), "number of outputs");
        for ((name, sa, va), (_, sb, vb)) in ra.iter().zip(&rb) {
            assert_eq!(sa, sb, "output {name:?}: shapes differ");
            let max_ref = va.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            let max_abs = va
                .iter()
                .zip(vb)
                .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                max_ref > 0.0,
                "output {name:?} is all zero: nothing is compared"
            );
            let rel = max_abs / max_ref;
            assert!(
                rel <= TOL,
                "output {name:?} (seed {seed}): max |Δ| / max |ref| = {rel:e} > {TOL:e} \
                 (max |Δ| {max_abs:e}, max |ref| {max_ref:e})"
            );
            worst = worst.max(rel);
        }
    }
    worst
}

/// Parse `before`, run the pass, prove the rewrite numerically, return the rewritten graph's
/// dump and the report's digest (see `check!`).
pub(crate) fn rewrite(before: &str, opts: &Options) -> String {
    let model = parse(before);
    let out = passes::run(model.clone(), opts).unwrap_or_else(|e| panic!("the pass failed: {e}"));
    assert!(
        out.rewritten(),
        "nothing was rewritten:\n{}",
        report_digest(&out.report)
    );
    out.model
        .graph
        .check()
        .unwrap_or_else(|e| panic!("the rewritten graph is invalid: {e}"));
    assert_same_outputs(&model, &out.model);
    format!("{}\n{}", dump(&out.model.graph), report_digest(&out.report))
}

/// Parse `before`, run the pass, assert the model is left byte-identical, return its refusals
/// (see `check_no_match!`).
pub(crate) fn no_match(before: &str, opts: &Options) -> String {
    let model = parse(before);
    let was = proto(&model).encode_to_vec();
    let out = passes::run(model, opts).unwrap_or_else(|e| panic!("the pass failed: {e}"));
    assert_eq!(out.report.norms_rewritten, 0, "a norm was rewritten");
    assert!(
        proto(&out.model).encode_to_vec() == was,
        "the pass changed the model:\n{}",
        dump(&out.model.graph)
    );
    refusals(&out.report)
}

/// `check!(before, opts, @"after")`: rewrite `before` with `opts`, prove it numerically in
/// tract, snapshot the rewritten graph and the report digest.
macro_rules! check {
    ($before:expr, $opts:expr, @$after:literal) => {
        insta::assert_snapshot!(crate::testing::rewrite($before, &$opts), @$after)
    };
}

/// `check_no_match!(before, opts, @"reasons")`: the pass leaves `before` alone, and says why.
macro_rules! check_no_match {
    ($before:expr, $opts:expr, @$reasons:literal) => {
        insta::assert_snapshot!(crate::testing::no_match($before, &$opts), @$reasons)
    };
}

pub(crate) use {check, check_no_match};

/// The numeric check has teeth: LayerNorm replaced by RMSNorm without centring the stream (the
/// rewrite minus its first step) is caught.
#[test]
#[should_panic(expected = "max |Δ| / max |ref|")]
fn uncentred_rmsnorm_is_caught() {
    let ln = "input %x: f32[2,3,8]\noutput %y: f32[2,3,8]\n\
              %y = LayerNormalization[n](%x, @g:f32[8]) epsilon=1e-5";
    let rms = ln.replace("LayerNormalization", "SimplifiedLayerNormalization");
    assert_same_outputs(&parse(ln), &parse(&rms));
}
