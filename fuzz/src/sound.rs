//! Soundness fuzzing: mutations that keep a model valid but change its structure around the
//! residual streams, and the oracle "the model the pass writes without verification computes
//! what its input computes" (the same mutations as `../shared/tools/soundness_fuzz.py`).
//!
//! Used by the `sound` fuzz target (`fuzz_targets/sound.rs`; `sound_loop` runs it under `cargo
//! test` in `fuzz/`) and, included by path, by the property test `tests/soundness.rs` of the main
//! crate. A finding is an `Err` of [`check`]:
//! the pass failed internally, or wrote a model that a runtime cannot run or that computes
//! something else (beyond the verifier's float tolerance).
//!
//! Mutations (on the main graph, each on a float value computed by a node):
//! - expose it as a graph output;
//! - add a non-linear (`Relu`, `Tanh`, `Abs`), mean-reading (`ReduceMean` over the last axis)
//!   or concatenating (`Concat(v, v)` along the last axis) reader, exposed as an output;
//! - put a scalar `Mul` or `Add`, an `Identity`, or a `Cast` round trip through f64 between it
//!   and its readers;
//! - duplicate its producer and move half of its readers to the copy (two names for one value);
//! - swap the operands of an `Add` or a `Mul`;
//! - change a `LayerNormalization`'s ε.
#![allow(dead_code)]

// The builders of `tests/common/build.rs`: the fuzz crate's `build`, and the soundness test's
// `common::build` (imported at its root).
use super::build::{self, attr_f, attr_i, attr_ints, vi_any};
use onnx_normopt::ir::Model;
use onnx_normopt::passes::{self, Options, Target};
use onnx_normopt::proto::{data_type as dt, ModelProto, NodeProto, TensorProto, ValueInfoProto};
use onnx_normopt::verify::{self, VerifyError, VerifyOptions};
use onnx_normopt::Error;
use prost::Message;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// A small xorshift generator (the fuzz crate's `Rng`; this file is also compiled outside it).
pub struct Rand(pub u64);

impl Rand {
    /// Next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A value below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A node of the default domain without attributes.
fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    build::node(op, name, inputs, outputs, vec![])
}

fn scalar(name: &str, elem: i32, v: f32) -> TensorProto {
    let raw = onnx_normopt::tensor::encode_f64(&[v as f64], elem).unwrap_or_default();
    TensorProto {
        name: Some(name.into()),
        data_type: Some(elem),
        raw_data: Some(raw),
        ..Default::default()
    }
}

fn elem_of(v: &ValueInfoProto) -> Option<i32> {
    v.r#type.as_ref()?.tensor_type.as_ref()?.elem_type
}

fn opset(m: &ModelProto) -> i64 {
    m.opset_import
        .iter()
        .filter(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .filter_map(|o| o.version)
        .max()
        .unwrap_or(17)
}

/// The element types of the main graph's values, as far as a forward pass over the ops tells.
fn types(m: &ModelProto) -> BTreeMap<String, i32> {
    let Some(g) = m.graph.as_ref() else {
        return BTreeMap::new();
    };
    let mut t: BTreeMap<String, i32> = BTreeMap::new();
    for i in &g.initializer {
        if let (Some(n), Some(d)) = (&i.name, i.data_type) {
            t.insert(n.clone(), d);
        }
    }
    for v in g.input.iter().chain(&g.value_info).chain(&g.output) {
        if let (Some(n), Some(e)) = (&v.name, elem_of(v)) {
            t.entry(n.clone()).or_insert(e);
        }
    }
    for n in &g.node {
        let op = n.op_type.as_deref().unwrap_or("");
        let first = n
            .input
            .iter()
            .find_map(|i| t.get(i).copied())
            .unwrap_or(dt::FLOAT);
        let attr = |k: &str| n.attribute.iter().find(|a| a.name.as_deref() == Some(k));
        for (k, o) in n.output.iter().enumerate() {
            if o.is_empty() || t.contains_key(o) {
                continue;
            }
            let ty = match op {
                "Shape" | "Size" | "NonZero" | "ArgMax" | "ArgMin" => dt::INT64,
                "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "Not" | "And"
                | "Or" | "Xor" | "IsNaN" | "IsInf" => dt::BOOL,
                "Cast" => attr("to").and_then(|a| a.i).unwrap_or(0) as i32,
                "TopK" if k == 1 => dt::INT64,
                "Dropout" if k == 1 => dt::BOOL,
                "Constant" => attr("value")
                    .and_then(|a| a.t.as_ref())
                    .and_then(|x| x.data_type)
                    .unwrap_or(0),
                "ConstantOfShape" => attr("value")
                    .and_then(|a| a.t.as_ref())
                    .and_then(|x| x.data_type)
                    .unwrap_or(dt::FLOAT),
                "Where" => n
                    .input
                    .get(1)
                    .and_then(|i| t.get(i).copied())
                    .unwrap_or(first),
                _ => n
                    .input
                    .first()
                    .and_then(|i| t.get(i).copied())
                    .unwrap_or(first),
            };
            t.insert(o.clone(), ty);
        }
    }
    t
}

/// A name not yet used in the graph.
fn fresh(m: &ModelProto, stem: &str) -> String {
    let g = m.graph.as_ref().expect("a graph");
    let used: HashSet<&str> = g
        .node
        .iter()
        .flat_map(|n| n.output.iter().map(String::as_str))
        .chain(g.initializer.iter().filter_map(|i| i.name.as_deref()))
        .chain(g.input.iter().filter_map(|i| i.name.as_deref()))
        .collect();
    (0..)
        .map(|k| format!("{stem}_{k}"))
        .find(|n| !used.contains(n.as_str()))
        .expect("a fresh name")
}

/// Route every reader of `v` (and graph outputs of it) through `make(src, dst)`'s nodes.
fn insert_between(m: &mut ModelProto, v: &str, make: impl FnOnce(&str, &str) -> Vec<NodeProto>) {
    let dst = fresh(m, &format!("{v}_fz"));
    let nodes = make(v, &dst);
    let g = m.graph.as_mut().expect("a graph");
    for n in g.node.iter_mut() {
        for i in n.input.iter_mut() {
            if i == v {
                *i = dst.clone();
            }
        }
    }
    for o in g.output.iter_mut() {
        if o.name.as_deref() == Some(v) {
            o.name = Some(dst.clone());
        }
    }
    let pos = g
        .node
        .iter()
        .position(|n| n.output.iter().any(|o| o == v))
        .map_or(0, |p| p + 1);
    for (k, n) in nodes.into_iter().enumerate() {
        g.node.insert(pos + k, n);
    }
}

/// Apply one mutation to `m`; what it did (`None`: nothing applied).
pub fn mutate(m: &mut ModelProto, r: &mut Rand) -> Option<String> {
    let ty = types(m);
    let g = m.graph.as_ref()?;
    let produced: HashSet<&str> = g
        .node
        .iter()
        .flat_map(|n| n.output.iter().map(String::as_str))
        .collect();
    let floats: Vec<(String, i32)> = ty
        .iter()
        .filter(|(k, e)| matches!(**e, dt::FLOAT | dt::FLOAT16) && produced.contains(k.as_str()))
        .map(|(k, e)| (k.clone(), *e))
        .collect();
    if floats.is_empty() {
        return None;
    }
    let (v, elem) = floats[r.below(floats.len())].clone();
    let new_opset = opset(m) >= 18;
    match r.below(11) {
        0 => {
            m.graph.as_mut()?.output.push(vi_any(&v, elem));
            Some(format!("expose {v}"))
        }
        1 => {
            let op = ["Relu", "Tanh", "Abs"][r.below(3)];
            let y = fresh(m, "fz_nonlinear");
            let g = m.graph.as_mut()?;
            g.node.push(node(op, &y, &[&v], &[&y]));
            g.output.push(vi_any(&y, elem));
            Some(format!("{op} reader of {v}"))
        }
        2 => {
            let y = fresh(m, "fz_mean");
            let ax = fresh(m, "fz_axes");
            let g = m.graph.as_mut()?;
            let mut n = node("ReduceMean", &y, &[&v], &[&y]);
            if new_opset {
                g.initializer.push(TensorProto {
                    name: Some(ax.clone()),
                    data_type: Some(dt::INT64),
                    dims: vec![1],
                    raw_data: Some((-1i64).to_le_bytes().to_vec().into()),
                    ..Default::default()
                });
                n.input.push(ax);
            } else {
                n.attribute.push(attr_ints("axes", &[-1]));
            }
            n.attribute.push(attr_i("keepdims", 1));
            g.node.push(n);
            g.output.push(vi_any(&y, elem));
            Some(format!("mean reader of {v}"))
        }
        3 => {
            let y = fresh(m, "fz_cat");
            let g = m.graph.as_mut()?;
            let mut n = node("Concat", &y, &[&v, &v], &[&y]);
            n.attribute.push(attr_i("axis", -1));
            g.node.push(n);
            g.output.push(vi_any(&y, elem));
            Some(format!("concat reader of {v}"))
        }
        k @ (4 | 5) => {
            let c = fresh(m, "fz_c");
            let (op, val) = if k == 4 {
                ("Mul", [0.5f32, 1.5, -2.0][r.below(3)])
            } else {
                ("Add", [0.25f32, -1.0, 3.0][r.below(3)])
            };
            m.graph.as_mut()?.initializer.push(scalar(&c, elem, val));
            let name = fresh(m, "fz_scale");
            insert_between(m, &v, |s, d| vec![node(op, &name, &[s, &c], &[d])]);
            Some(format!("{op} {val} on {v}"))
        }
        6 => {
            let name = fresh(m, "fz_identity");
            insert_between(m, &v, |s, d| vec![node("Identity", &name, &[s], &[d])]);
            Some(format!("Identity after {v}"))
        }
        7 => {
            let mid = fresh(m, "fz_f64");
            insert_between(m, &v, |s, d| {
                let mut a = node("Cast", &format!("{mid}_cast"), &[s], &[&mid]);
                a.attribute.push(attr_i("to", dt::DOUBLE as i64));
                let mut b = node("Cast", &format!("{mid}_back"), &[&mid], &[d]);
                b.attribute.push(attr_i("to", elem as i64));
                vec![a, b]
            });
            Some(format!("Cast round trip after {v}"))
        }
        8 => {
            let g = m.graph.as_ref()?;
            let p = g.node.iter().position(|n| {
                n.output.len() == 1
                    && n.output[0] == v
                    && !matches!(n.op_type.as_deref(), Some("If" | "Loop" | "Scan"))
            })?;
            let readers: Vec<(usize, usize)> = g
                .node
                .iter()
                .enumerate()
                .flat_map(|(i, n)| {
                    n.input
                        .iter()
                        .enumerate()
                        .filter(|(_, x)| **x == v)
                        .map(move |(s, _)| (i, s))
                })
                .collect();
            if readers.len() < 2 {
                return None;
            }
            let y = fresh(m, &format!("{v}_dup"));
            let g = m.graph.as_mut()?;
            let mut dup = g.node[p].clone();
            dup.name = Some(format!("{}_dup", dup.name.clone().unwrap_or_default()));
            dup.output[0] = y.clone();
            for &(i, s) in &readers[..readers.len() / 2] {
                g.node[i].input[s] = y.clone();
            }
            g.node.insert(p + 1, dup);
            Some(format!("duplicate producer of {v}"))
        }
        9 => {
            let g = m.graph.as_mut()?;
            let adds: Vec<usize> = g
                .node
                .iter()
                .enumerate()
                .filter(|(_, n)| {
                    matches!(n.op_type.as_deref(), Some("Add" | "Mul"))
                        && n.domain.as_deref().unwrap_or("").is_empty()
                        && n.input.len() == 2
                })
                .map(|(i, _)| i)
                .collect();
            if adds.is_empty() {
                return None;
            }
            let i = adds[r.below(adds.len())];
            g.node[i].input.swap(0, 1);
            Some(format!(
                "swap the operands of {}",
                g.node[i].name.clone().unwrap_or_default()
            ))
        }
        _ => {
            let g = m.graph.as_mut()?;
            let lns: Vec<usize> = g
                .node
                .iter()
                .enumerate()
                .filter(|(_, n)| n.op_type.as_deref() == Some("LayerNormalization"))
                .map(|(i, _)| i)
                .collect();
            if lns.is_empty() {
                return None;
            }
            let i = lns[r.below(lns.len())];
            let eps = [1e-12f32, 1e-3, 0.1][r.below(3)];
            let n = &mut g.node[i];
            n.attribute.retain(|a| a.name.as_deref() != Some("epsilon"));
            n.attribute.push(attr_f("epsilon", eps));
            Some(format!(
                "epsilon {eps} of {}",
                n.name.clone().unwrap_or_default()
            ))
        }
    }
}

/// What [`check`] found when it found nothing wrong.
#[derive(Debug, PartialEq, Eq)]
pub enum Fine {
    /// The pass rewrote it, and the output computes what the input computes.
    Equivalent,
    /// Nothing to compare: nothing rewritten, a refusal, a model a runtime cannot run.
    Skipped(String),
}

/// Mutate a copy of `seed` with 1–3 mutations drawn from `r`, and draw the target: the model,
/// what was done to it, and the target (the property test and the `sound` fuzz target).
pub fn mutate_some(seed: &ModelProto, r: &mut Rand) -> (ModelProto, Vec<String>, Target) {
    let mut m = seed.clone();
    let what: Vec<String> = (0..1 + r.below(3))
        .filter_map(|_| mutate(&mut m, r))
        .collect();
    let target = if r.below(2) == 0 {
        Target::Rmsnorm
    } else {
        Target::Crmsnorm
    };
    (m, what, target)
}

/// [`mutate_some`] seeded by fuzz input bytes (none: nothing to do).
pub fn mutated(seed: &ModelProto, bytes: &[u8]) -> Option<(ModelProto, Vec<String>, Target)> {
    if bytes.is_empty() {
        return None;
    }
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    Some(mutate_some(seed, &mut Rand(h | 1)))
}

/// Verification for the fuzz target: both runtimes, onnxruntime required (`ORT_DYLIB_PATH`).
pub fn verify_options() -> VerifyOptions {
    VerifyOptions {
        samples: 2,
        runtimes: verify::Runtimes::Both,
        require_ort: true,
        ..Default::default()
    }
}

/// The oracle: run the pass on `model` (without verification) with `target`; when it writes a
/// model, run both on random inputs (tract, and onnxruntime when `opts` says so) and compare
/// every output. `Err`: a finding.
pub fn check(
    model: &ModelProto,
    target: Target,
    dir: &Path,
    opts: &VerifyOptions,
) -> Result<Fine, String> {
    let src = dir.join("sound_in.onnx");
    let dst = dir.join("sound_out.onnx");
    std::fs::write(&src, model.encode_to_vec()).map_err(|e| e.to_string())?;
    let loaded = match Model::load(&src) {
        Ok(m) => m,
        Err(e) => return Ok(Fine::Skipped(format!("not loadable: {e}"))),
    };
    let o = Options {
        form: target.into(),
        check_each_patch: true,
        ..Options::default()
    };
    let out = match passes::run(loaded, &o) {
        Ok(out) => out,
        Err(Error::Internal(e)) => return Err(format!("internal error: {e}")),
        Err(e) => return Ok(Fine::Skipped(format!("refused: {e}"))),
    };
    if !out.rewritten() {
        return Ok(Fine::Skipped("nothing rewritten".into()));
    }
    onnx_normopt::save(&out.model, &dst).map_err(|e| format!("cannot save: {e}"))?;
    match verify::verify_files(&src, &dst, opts) {
        Ok(rep) if rep.passed() => Ok(Fine::Equivalent),
        // An output that is itself rounding noise (the mean of a centred value, ~1e-7) is
        // compared relative to a floor of 1e-3, as soundness_fuzz.py does.
        Ok(rep)
            if !rep.rows.is_empty()
                && rep.rows.iter().all(|r| {
                    r.pass
                        || (r.detail.is_none()
                            && r.nonfinite == 0
                            && r.max_abs <= r.tolerance * r.max_ref.max(1e-3))
                }) =>
        {
            Ok(Fine::Equivalent)
        }
        Ok(rep) => Err(format!("the output differs:\n{rep}")),
        // The rewritten model does not run where the original does.
        Err(VerifyError::Tract { path, message, .. } | VerifyError::Ort { path, message, .. })
            if path == dst =>
        {
            Err(format!("the output cannot run: {message}"))
        }
        Err(e) => Ok(Fine::Skipped(format!("not verifiable: {e}"))),
    }
}
