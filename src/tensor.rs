//! Tensor payloads: read any stored float type as f64, write f64 back rounding once.
//!
//! Invariant: weight arithmetic happens in f64; the only rounding is the final conversion to the
//! tensor's stored type in [`encode_f64`]. Element counts are checked against the dims (with
//! overflow checks) before anything is allocated, so a hostile file cannot make us allocate what
//! it does not contain.

use crate::proto::{data_type as dt, TensorProto};
use bytes::Bytes;
use half::{bf16, f16};

/// Number of elements a tensor's dims describe, or why they describe none (negative, overflow).
pub fn element_count(dims: &[i64]) -> Result<usize, String> {
    let mut n: usize = 1;
    for &d in dims {
        if d < 0 {
            return Err(format!("negative dimension {d} in dims {dims:?}"));
        }
        n = n
            .checked_mul(d as usize)
            .ok_or_else(|| format!("dims {dims:?} overflow the element count"))?;
    }
    Ok(n)
}

/// True for the float types whose values the pass rewrites.
pub fn is_float(data_type: i32) -> bool {
    matches!(
        data_type,
        dt::FLOAT | dt::FLOAT16 | dt::BFLOAT16 | dt::DOUBLE
    )
}

/// Decode little-endian `raw` bytes of `data_type` into f64 values.
pub fn decode_raw(raw: &[u8], data_type: i32, count: usize) -> Result<Vec<f64>, String> {
    let size = dt::byte_size(data_type)
        .ok_or_else(|| format!("cannot read data type {} as numbers", dt::name(data_type)))?;
    let need = count.checked_mul(size).ok_or("element count overflows")?;
    if raw.len() != need {
        return Err(format!(
            "raw data has {} bytes, dims need {need} ({count} x {} bytes)",
            raw.len(),
            size
        ));
    }
    let v = match data_type {
        dt::FLOAT => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect(),
        dt::FLOAT16 => raw
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f64())
            .collect(),
        dt::BFLOAT16 => raw
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f64())
            .collect(),
        dt::DOUBLE => raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        dt::INT64 => raw
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        dt::INT32 => raw
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        dt::UINT32 => raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        dt::UINT64 => raw
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        dt::INT16 => raw
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]) as f64)
            .collect(),
        dt::UINT16 => raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as f64)
            .collect(),
        dt::INT8 => raw.iter().map(|&b| b as i8 as f64).collect(),
        dt::UINT8 | dt::BOOL => raw.iter().map(|&b| b as f64).collect(),
        other => {
            return Err(format!(
                "cannot read data type {} as numbers",
                dt::name(other)
            ))
        }
    };
    Ok(v)
}

/// Decode the typed (non-raw) fields of a tensor into f64 values.
pub fn decode_typed(t: &TensorProto, count: usize) -> Result<Vec<f64>, String> {
    let data_type = t.data_type.unwrap_or(0);
    let v: Vec<f64> = match data_type {
        dt::FLOAT => t.float_data.iter().map(|&x| x as f64).collect(),
        dt::DOUBLE => t.double_data.clone(),
        dt::INT64 => t.int64_data.iter().map(|&x| x as f64).collect(),
        dt::UINT32 | dt::UINT64 => t.uint64_data.iter().map(|&x| x as f64).collect(),
        dt::FLOAT16 => t
            .int32_data
            .iter()
            .map(|&x| f16::from_bits(x as u16).to_f64())
            .collect(),
        dt::BFLOAT16 => t
            .int32_data
            .iter()
            .map(|&x| bf16::from_bits(x as u16).to_f64())
            .collect(),
        dt::INT32 | dt::INT16 | dt::INT8 | dt::UINT16 | dt::UINT8 | dt::BOOL => {
            t.int32_data.iter().map(|&x| x as f64).collect()
        }
        other => {
            return Err(format!(
                "cannot read data type {} as numbers",
                dt::name(other)
            ))
        }
    };
    if v.len() != count {
        return Err(format!(
            "tensor holds {} values, dims need {count}",
            v.len()
        ));
    }
    Ok(v)
}

/// Encode f64 values as little-endian bytes of `data_type`, rounding once.
pub fn encode_f64(values: &[f64], data_type: i32) -> Result<Bytes, String> {
    let mut out: Vec<u8> = Vec::with_capacity(values.len() * dt::byte_size(data_type).unwrap_or(8));
    match data_type {
        dt::FLOAT => {
            out.resize(values.len() * 4, 0);
            for (c, &x) in out.chunks_exact_mut(4).zip(values) {
                c.copy_from_slice(&(x as f32).to_le_bytes());
            }
        }
        dt::FLOAT16 => values
            .iter()
            .for_each(|&x| out.extend_from_slice(&f16::from_f64(x).to_le_bytes())),
        dt::BFLOAT16 => values
            .iter()
            .for_each(|&x| out.extend_from_slice(&bf16::from_f64(x).to_le_bytes())),
        dt::DOUBLE => values
            .iter()
            .for_each(|&x| out.extend_from_slice(&x.to_le_bytes())),
        dt::INT64 => values
            .iter()
            .for_each(|&x| out.extend_from_slice(&(x as i64).to_le_bytes())),
        dt::INT32 => values
            .iter()
            .for_each(|&x| out.extend_from_slice(&(x as i32).to_le_bytes())),
        other => {
            return Err(format!(
                "cannot write data type {} from numbers",
                dt::name(other)
            ))
        }
    }
    Ok(Bytes::from(out))
}

/// A new tensor named `name` of `data_type` holding `values` (rounded once) in `raw_data`.
pub fn tensor_from_f64(
    name: &str,
    dims: &[usize],
    data_type: i32,
    values: &[f64],
) -> Result<TensorProto, String> {
    Ok(TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(data_type),
        name: Some(name.to_string()),
        raw_data: Some(encode_f64(values, data_type)?),
        ..Default::default()
    })
}

/// A dense f64 array with its dims and the element type it is stored as.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// Shape, outermost first.
    pub dims: Vec<usize>,
    /// The ONNX element type the values came from and go back to.
    pub data_type: i32,
    /// Row-major values.
    pub data: Vec<f64>,
}

impl Array {
    /// Number of elements along the last axis (1 for a scalar).
    pub fn last_dim(&self) -> usize {
        self.dims.last().copied().unwrap_or(1)
    }

    /// A copy with other values of the same length.
    pub fn with_data(&self, data: Vec<f64>) -> Array {
        debug_assert_eq!(data.len(), self.data.len());
        Array {
            dims: self.dims.clone(),
            data_type: self.data_type,
            data,
        }
    }
}
