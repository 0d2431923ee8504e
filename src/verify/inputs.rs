//! Deterministic random inputs built from a model's declared input types.

use std::collections::BTreeMap;

use serde::Serialize;

use super::spec::{resolve_shapes, CasePlan, ModelSpec};
use super::tensor::{from_f64_fn, is_float, is_int, HostTensor, InputSummary};
use super::VerifyError;
use crate::proto::data_type as dt;

/// Vocabulary bound used for an integer input that indexes no constant table.
pub const DEFAULT_VOCAB: usize = 2;

/// A small, fast, seedable generator (SplitMix64): the same seed gives the same inputs on every
/// platform and version of this crate.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x6a09_e667_f3bc_c909)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n) (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// The inputs generated for a verification run: every sample holds one tensor per graph input
/// (in graph input order); the same tensors go to both models and both runtimes.
#[derive(Clone, Debug, Serialize)]
pub struct GeneratedInputs {
    /// The case these inputs are for: `default`, or the past length and branch flags of a
    /// KV-cache or merged decoder (`past_sequence_length=8 sequence_length=4`).
    pub case: String,
    /// The dynamic dimensions used, by `dim_param` name (or `INPUT[AXIS]` for unnamed ones).
    pub dims: BTreeMap<String, usize>,
    /// Where each named dimension's size came from: `--dim`, `the case`, `default (batch)`,
    /// or the node of the graph that fixes it and why (`GroupQueryAttention "…": past_key
    /// axis 3 is the head size 32 …`).
    pub dim_origins: BTreeMap<String, String>,
    /// How each input was generated.
    pub summary: Vec<InputSummary>,
    /// The samples; `samples[s][i]` is input `i` of sample `s`.
    #[serde(skip)]
    pub samples: Vec<Vec<HostTensor>>,
    /// Remarks (e.g. a `--dim` that matched no dimension).
    pub notes: Vec<String>,
}

/// Whether an integer input is a mask (filled with ones rather than random ids).
fn looks_like_mask(name: &str) -> bool {
    name.to_ascii_lowercase().contains("mask")
}

/// Whether an integer input holds token positions (`position_ids`, `cache_position`): filled
/// with past … past+seq−1 along its last axis.
fn looks_like_positions(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    l.contains("position_ids") || l.contains("cache_position") || l == "positions"
}

/// Generate `samples` samples for `spec`'s inputs with `seed`, for one `case` on top of the
/// `--dim` values `dims`. `vocab` overrides the per-input vocabulary bounds found in the spec
/// (the caller passes the smaller of both models' bounds). `past` names the past-length dims
/// (the first one resolved gives the first position of position inputs).
pub(crate) fn generate(
    spec: &ModelSpec,
    vocab: &BTreeMap<String, (usize, String)>,
    dims: &BTreeMap<String, usize>,
    case: &CasePlan,
    past: &[String],
    samples: usize,
    seed: u64,
) -> Result<GeneratedInputs, VerifyError> {
    for i in &spec.inputs {
        if !super::tensor::is_supported(i.elem_type) {
            return Err(VerifyError::Model {
                path: spec.path.clone(),
                message: format!(
                    "graph input `{}` has element type {} which the verifier cannot generate",
                    i.name,
                    dt::name(i.elem_type)
                ),
            });
        }
    }
    let resolved = resolve_shapes(spec, dims, case).map_err(|message| VerifyError::Model {
        path: spec.path.clone(),
        message,
    })?;
    let (shapes, used, origins) = (resolved.shapes, resolved.used, resolved.origins);
    let mut notes = resolved.notes;
    let past_len = past.iter().find_map(|p| used.get(p)).copied().unwrap_or(0);
    for k in dims.keys() {
        if !used.contains_key(k) {
            notes.push(format!(
                "--dim {k}=… matches no dynamic dimension of the inputs; ignored"
            ));
        }
    }
    let mut summary = Vec::new();
    for (i, shape) in spec.inputs.iter().zip(&shapes) {
        let values = if is_float(i.elem_type) {
            "N(0,1)".to_string()
        } else if let Some(f) = case.flags.get(&i.name) {
            format!("all {f} (chooses an If branch)")
        } else if i.elem_type == dt::BOOL {
            "all true".to_string()
        } else if looks_like_positions(&i.name) {
            let n = shape.last().copied().unwrap_or(1);
            let hi = past_len + n;
            match vocab.get(&i.name) {
                Some((v, table)) if hi > *v => {
                    notes.push(format!(
                        "input `{}`: positions up to {} exceed the {v} rows of `{table}`;                          clamped to {}",
                        i.name,
                        hi.saturating_sub(1),
                        v.saturating_sub(1)
                    ));
                    format!("positions {past_len}..{hi} along the last axis, clamped below {v}")
                }
                _ => format!("positions {past_len}..{hi} along the last axis"),
            }
        } else if looks_like_mask(&i.name) {
            "all ones (mask)".to_string()
        } else if let Some((v, table)) = vocab.get(&i.name) {
            format!("ids in [0, {v}) (vocabulary of `{table}`)")
        } else {
            format!("ids in [0, {DEFAULT_VOCAB}) (no embedding table found; default bound)")
        };
        summary.push(InputSummary {
            name: i.name.clone(),
            dtype: dt::name(i.elem_type).to_string(),
            shape: shape.clone(),
            values,
        });
    }
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let mut sample = Vec::with_capacity(spec.inputs.len());
        for (i, shape) in spec.inputs.iter().zip(&shapes) {
            let t = if is_float(i.elem_type) {
                from_f64_fn(&i.name, i.elem_type, shape, || rng.normal())
            } else if let Some(&f) = case.flags.get(&i.name) {
                from_f64_fn(&i.name, i.elem_type, shape, || if f { 1.0 } else { 0.0 })
            } else if is_int(i.elem_type) && looks_like_positions(&i.name) {
                let n = shape.last().copied().unwrap_or(1).max(1);
                let cap = vocab
                    .get(&i.name)
                    .map_or(u64::MAX, |v| v.0.max(1) as u64 - 1);
                let mut k = 0usize;
                from_f64_fn(&i.name, i.elem_type, shape, || {
                    let p = ((past_len + k % n) as u64).min(cap);
                    k += 1;
                    p as f64
                })
            } else if i.elem_type == dt::BOOL || (is_int(i.elem_type) && looks_like_mask(&i.name)) {
                from_f64_fn(&i.name, i.elem_type, shape, || 1.0)
            } else {
                let bound = vocab
                    .get(&i.name)
                    .map(|v| v.0)
                    .unwrap_or(DEFAULT_VOCAB)
                    .max(1);
                // Keep ids representable in the element type (e.g. i8/u8 inputs).
                let cap = match i.elem_type {
                    dt::INT8 => 128,
                    dt::UINT8 => 256,
                    dt::INT16 => 32768,
                    dt::UINT16 => 65536,
                    _ => u64::MAX,
                };
                let bound = (bound as u64).min(cap);
                from_f64_fn(&i.name, i.elem_type, shape, || rng.below(bound) as f64)
            };
            sample.push(t);
        }
        out.push(sample);
    }
    // The label with the sizes used (a preferred new-token count the graph did not accept is
    // shown as what ran).
    let label = if case.label == "default" {
        case.label.clone()
    } else {
        let mut parts: Vec<String> = case.flags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut sized: Vec<&String> = case.dims.keys().chain(case.prefer.keys()).collect();
        sized.sort();
        sized.dedup();
        parts.extend(
            sized
                .into_iter()
                .filter_map(|k| used.get(k).map(|v| format!("{k}={v}"))),
        );
        parts.join(" ")
    };
    Ok(GeneratedInputs {
        case: label,
        dim_origins: origins
            .iter()
            .map(|(k, o)| (k.clone(), o.to_string()))
            .collect(),
        dims: used,
        summary,
        samples: out,
        notes,
    })
}
