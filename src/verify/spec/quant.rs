//! Quantized activations: the ops that round a model's activations to integers inside the
//! graph, and the weights to nudge by one ulp to measure how much the original itself moves
//! under float rounding there ([`super::super::compare::quant_floor`]).

use super::*;
use crate::verify::inputs::Rng;
use crate::verify::HostTensor;

/// The ops of `graph` that quantize activations, grouped: `MatMulNBits ×9 (accuracy_level 4:
/// int8 activations)`, `DynamicQuantizeLinear ×2`, `QuantizeLinear ×4 (on activations)`.
pub(crate) fn quantized_ops(graph: &GraphProto) -> Vec<String> {
    let consts: HashSet<&str> = graph
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref())
        .chain(
            graph
                .node
                .iter()
                .filter(|n| n.op_type.as_deref() == Some("Constant"))
                .flat_map(|n| n.output.iter().map(String::as_str)),
        )
        .collect();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for n in &graph.node {
        let op = n.op_type.as_deref().unwrap_or("");
        let what = match op {
            "MatMulNBits" => {
                let level = n
                    .attribute
                    .iter()
                    .find(|a| a.name.as_deref() == Some("accuracy_level"))
                    .and_then(|a| a.i)
                    .unwrap_or(0);
                (level == 4).then(|| "MatMulNBits (accuracy_level 4: int8 activations)".to_string())
            }
            "DynamicQuantizeLinear"
            | "MatMulInteger"
            | "ConvInteger"
            | "DynamicQuantizeMatMul"
            | "MatMulIntegerToFloat"
            | "QAttention"
            | "QGemm"
            | "DynamicQuantizeLSTM" => Some(op.to_string()),
            o if o.starts_with("QLinear") => Some(op.to_string()),
            "QuantizeLinear"
                if !consts.contains(n.input.first().map(String::as_str).unwrap_or("")) =>
            {
                Some("QuantizeLinear (on activations)".to_string())
            }
            _ => None,
        };
        if let Some(w) = what {
            *counts.entry(w).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(|(w, k)| match w.split_once(" (") {
            Some((op, rest)) => format!("{op} ×{k} ({rest}"),
            None => format!("{w} ×{k}"),
        })
        .collect()
}

/// At most this many bytes of weights are nudged (the floor needs the norms, not the model).
const NUDGE_BYTES: u64 = 64 << 20;

/// The float initializers to nudge by one ulp: the weights of the fused norms (γ, β, a skip
/// bias), the values the rewrite recomputes; for a graph without fused norms, the float
/// initializers (of two elements or more) that `Mul` and `Add` read — a decomposed norm's γ
/// and β among them.
pub(crate) fn nudge_targets(graph: &GraphProto) -> Vec<String> {
    let floats: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .filter(|t| crate::tensor::is_float(t.data_type.unwrap_or(0)))
        .filter(|t| crate::tensor::element_count(&t.dims).is_ok_and(|n| n >= 2))
        .filter_map(|t| t.name.as_deref().map(|n| (n, t)))
        .collect();
    let pick = |ops: &[&str], from: usize| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for n in &graph.node {
            if ops.contains(&n.op_type.as_deref().unwrap_or("")) {
                for i in n.input.iter().skip(from) {
                    if floats.contains_key(i.as_str()) && !out.contains(i) {
                        out.push(i.clone());
                    }
                }
            }
        }
        out
    };
    let mut names = pick(
        &[
            "LayerNormalization",
            "SkipLayerNormalization",
            "SimplifiedLayerNormalization",
            "SkipSimplifiedLayerNormalization",
            "RMSNormalization",
        ],
        1,
    );
    if names.is_empty() {
        names = pick(&["Mul", "Add"], 0);
    }
    let mut total = 0u64;
    names.retain(|n| {
        let t = floats[n.as_str()];
        let bytes = crate::tensor::element_count(&t.dims).unwrap_or(0) as u64
            * crate::proto::data_type::byte_size(t.data_type.unwrap_or(0)).unwrap_or(4) as u64;
        total += bytes;
        total <= NUDGE_BYTES
    });
    names
}

/// One ulp away from the value with these little-endian bits, up or down as `up` says (a zero
/// goes to the smallest subnormal of either sign; an infinity or NaN stays).
fn nudge_bits(bits: u64, width: u32, exp_mask: u64, up: bool) -> u64 {
    let sign = 1u64 << (width - 1);
    if bits & exp_mask == exp_mask {
        return bits;
    }
    if bits & !sign == 0 {
        return bits | 1;
    }
    // Away from zero (+1 on the magnitude) or towards it (−1).
    if up {
        bits + 1
    } else {
        bits - 1
    }
}

/// The initializers `names` of the model at `path`, each element moved by one ulp in a
/// direction drawn from `seed`.
pub(crate) fn nudged(path: &Path, names: &[String], seed: u64) -> Result<Vec<HostTensor>, String> {
    use crate::proto::data_type as dt;
    let file = crate::io::load(path).map_err(|e| e.to_string())?;
    let graph = file.proto.graph.as_ref().ok_or("no graph")?;
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    for t in &graph.initializer {
        let Some(name) = t.name.as_deref() else {
            continue;
        };
        if !names.iter().any(|n| n == name) {
            continue;
        }
        let ty = t.data_type.unwrap_or(0);
        let count = crate::tensor::element_count(&t.dims)?;
        let raw: Vec<u8> = if crate::io::is_external(t) {
            let r = file.store.check(t).map_err(|e| e.to_string())?;
            file.store.bytes(&r).map_err(|e| e.to_string())?.to_vec()
        } else if let Some(raw) = t.raw_data.as_ref().filter(|r| !r.is_empty()) {
            raw.to_vec()
        } else {
            let v = crate::tensor::decode_typed(t, count)?;
            crate::tensor::encode_f64(&v, ty)?.to_vec()
        };
        let (width, exp_mask): (u32, u64) = match ty {
            dt::FLOAT => (32, 0x7f80_0000),
            dt::FLOAT16 => (16, 0x7c00),
            dt::BFLOAT16 => (16, 0x7f80),
            dt::DOUBLE => (64, 0x7ff0_0000_0000_0000),
            _ => continue,
        };
        let size = (width / 8) as usize;
        if raw.len() != count * size {
            return Err(format!(
                "initializer `{name}` holds {} bytes for {count} values",
                raw.len()
            ));
        }
        let mut data = Vec::with_capacity(raw.len());
        for c in raw.chunks_exact(size) {
            let mut b = [0u8; 8];
            b[..size].copy_from_slice(c);
            let bits = u64::from_le_bytes(b);
            let up = rng.next_u64() & 1 == 1;
            let n = nudge_bits(bits, width, exp_mask, up);
            data.extend_from_slice(&n.to_le_bytes()[..size]);
        }
        out.push(HostTensor {
            name: name.to_string(),
            elem_type: ty,
            shape: t.dims.iter().map(|&d| d as usize).collect(),
            data,
        });
    }
    Ok(out)
}
