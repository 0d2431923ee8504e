//! The decide phase: which streams the rewrite takes, and why it refuses the others.
//!
//! A stream is refused when something observes its mean (the analysis says what: a graph
//! output, a Post-LN reader, …), when no LayerNorm reads it (already RMSNorm), when one of its
//! LayerNorms exposes its Mean output or normalises over more than the last axis, when a
//! constant its centring would edit cannot hold the edit, or when it would need at least as many
//! explicit centering nodes as LayerNorms it converts. Refusal then flows upstream from a
//! Post-LN stream: a LayerNorm feeding it stays a LayerNorm, so its own input stream is left
//! alone too (BERT's embedding LayerNorm belongs to its Post-LN encoder).

use super::norms::NormKind;
use super::report::Refusal;
use super::stream::{Analysis, Leaf, Stream};
use super::Options;
use crate::ir::NodeExt;
use std::collections::{HashSet, VecDeque};

/// The reasons each stream is refused (empty: accepted), in stream order.
pub(crate) fn refusals(a: &Analysis, streams: &[Stream], opts: &Options) -> Vec<Vec<Refusal>> {
    let (g, norms) = (a.g, a.norms);
    let mut reasons: Vec<Vec<Refusal>> = streams.iter().map(|s| s.observed.clone()).collect();
    let label = |k: usize| g.node(norms[k].anchor).label();
    for (sid, st) in streams.iter().enumerate() {
        let ln: Vec<usize> = st
            .norms
            .iter()
            .copied()
            .filter(|&k| norms[k].kind == NormKind::LayerNorm)
            .collect();
        if ln.is_empty() {
            reasons[sid].push(Refusal::AlreadyRms);
        }
        for &k in &ln {
            let m = &norms[k];
            if m.extra_outputs_read
                .iter()
                .any(|o| g.node(m.anchor).output.get(1) == Some(o))
            {
                reasons[sid].push(Refusal::MeanOutputRead { norm: label(k) });
            }
            if m.axis != -1
                && a.shapes
                    .rank(if m.x.is_empty() { &m.y } else { &m.x })
                    .is_none_or(|r| m.axis != r as i64 - 1)
            {
                reasons[sid].push(Refusal::NotLastAxis {
                    norm: label(k),
                    axis: m.axis,
                });
            }
        }
        reasons[sid].extend(a.unwritable(st));
        let explicit = st
            .leaves
            .iter()
            .filter(|l| matches!(l.leaf, Leaf::Explicit { .. }))
            .count();
        if explicit > 0 && !opts.allow_centering {
            reasons[sid].push(Refusal::CenteringDisabled { explicit });
        }
        let converted = ln.len()
            + st.leaves
                .iter()
                .filter(|l| matches!(l.leaf, Leaf::LnTable { .. }))
                .count();
        if explicit > 0 && explicit >= converted {
            if let Some(q) = quantized_writers(a, st) {
                reasons[sid].push(q);
            }
            reasons[sid].push(Refusal::NoGain {
                explicit,
                converted,
            });
        }
    }
    // Refusal flows upstream from a Post-LN stream: a norm feeding it stays a LayerNorm, so its
    // own input stream is left alone too (the model is Post-LN; converting its embedding norm
    // alone changes no output and gains nothing worth a partly rewritten Post-LN model).
    // Elsewhere a norm's output is the same whether the norm is converted or not, so a stream
    // refused for another reason (a ConvNeXt stage read by a depthwise Conv) keeps its source
    // norm's stream rewritable.
    loop {
        let mut changed = false;
        for sid in 0..streams.len() {
            let post_ln = reasons[sid]
                .iter()
                .any(|r| matches!(r, Refusal::PostLn { .. } | Refusal::Upstream { .. }));
            if !post_ln {
                continue;
            }
            for &k in &streams[sid].norm_sources {
                for (up, st) in streams.iter().enumerate() {
                    if up != sid && reasons[up].is_empty() && st.norms.contains(&k) {
                        reasons[up].push(Refusal::Upstream {
                            norm: label(k),
                            stream: sid,
                        });
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    reasons
}

/// Ops of onnxruntime's quantizers (`quantize_dynamic`, the MatMulNBits quantizer, QDQ): a
/// writer behind one of them has integer weights.
const QUANTIZED_OPS: &[&str] = &[
    "MatMulInteger",
    "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul",
    "MatMulNBits",
    "QLinearMatMul",
    "QGemm",
    "ConvInteger",
    "QLinearConv",
    "QAttention",
    "GatherBlockQuantized",
];

/// [`Refusal::Quantized`] when some of the stream's explicit leaves are quantized writers: a
/// value produced by a quantized op, or reached from one through the scaling, bias, cast and
/// reshape ops around it (`MatMulInteger → Cast → Mul(scale) → Add(bias)`; nearest first), or
/// an op reading a weight through `DequantizeLinear` (QDQ). (A front-end papercut, kept in this one function: the
/// reason says what the model is instead of only "no gain".)
fn quantized_writers(a: &Analysis, st: &Stream) -> Option<Refusal> {
    let quantized = |value: &str| -> Option<String> {
        let mut todo = VecDeque::from([(value.to_string(), 0)]);
        let mut seen = HashSet::new();
        while let Some((v, depth)) = todo.pop_front() {
            let Some(id) = a.ix.producer(&v) else {
                continue;
            };
            if !seen.insert(id) {
                continue;
            }
            let n = a.g.node(id);
            let reads_dequantized = n.input.iter().any(|i| {
                a.ix.producer(i)
                    .is_some_and(|p| a.g.node(p).op() == "DequantizeLinear")
            });
            if QUANTIZED_OPS.contains(&n.op()) || reads_dequantized {
                return Some(n.label());
            }
            let around = [
                "Mul",
                "Div",
                "Add",
                "Cast",
                "Reshape",
                "Identity",
                "Transpose",
            ];
            if depth < 4 && around.contains(&n.op()) {
                todo.extend(n.input.iter().map(|i| (i.clone(), depth + 1)));
            }
        }
        None
    };
    let found: Vec<String> = st
        .leaves
        .iter()
        .filter(|l| matches!(l.leaf, Leaf::Explicit { .. }))
        .filter_map(|l| quantized(&l.value))
        .collect();
    Some(Refusal::Quantized {
        writers: found.len(),
        example: found.first()?.clone(),
    })
}
