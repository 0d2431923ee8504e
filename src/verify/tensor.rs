//! A runtime-neutral host tensor: ONNX element type, shape and little-endian bytes.
//!
//! Both runtimes are fed from and read back into this one type, so input generation and output
//! comparison never depend on a runtime's own tensor API.

use half::{bf16, f16};
use serde::Serialize;

use crate::proto::data_type as dt;

/// One tensor on the host: its graph name, ONNX element type, shape and raw data.
///
/// `data` is the tensor's elements in row-major order, each in the little-endian layout ONNX's
/// `raw_data` uses (booleans one byte each, 0 or 1).
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// The graph value this tensor belongs to (an input or output name).
    pub name: String,
    /// ONNX `TensorProto.DataType` code (see [`crate::proto::data_type`]).
    pub elem_type: i32,
    /// The concrete shape.
    pub shape: Vec<usize>,
    /// Row-major little-endian element bytes.
    pub data: Vec<u8>,
}

/// Element types the verifier can generate and compare: floats, integers and booleans.
pub(crate) fn is_supported(elem_type: i32) -> bool {
    matches!(
        elem_type,
        dt::FLOAT
            | dt::FLOAT16
            | dt::BFLOAT16
            | dt::DOUBLE
            | dt::INT8
            | dt::INT16
            | dt::INT32
            | dt::INT64
            | dt::UINT8
            | dt::UINT16
            | dt::UINT32
            | dt::UINT64
            | dt::BOOL
    )
}

/// Whether an element type is a floating-point type.
pub(crate) fn is_float(elem_type: i32) -> bool {
    matches!(
        elem_type,
        dt::FLOAT | dt::FLOAT16 | dt::BFLOAT16 | dt::DOUBLE
    )
}

/// Whether an element type is an integer type (not bool).
pub(crate) fn is_int(elem_type: i32) -> bool {
    matches!(
        elem_type,
        dt::INT8
            | dt::INT16
            | dt::INT32
            | dt::INT64
            | dt::UINT8
            | dt::UINT16
            | dt::UINT32
            | dt::UINT64
    )
}

impl HostTensor {
    /// Number of elements (product of the shape; 1 for a scalar).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements converted to `f64` (exactly for every supported type but 64-bit integers
    /// above 2^53). Returns `None` for an unsupported element type or a data length that does not
    /// match the shape.
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        let size = crate::proto::data_type::byte_size(self.elem_type)?;
        if !is_supported(self.elem_type) || self.data.len() != self.len() * size {
            return None;
        }
        let c = self.data.chunks_exact(size);
        let v: Vec<f64> = match self.elem_type {
            dt::FLOAT => c
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
                .collect(),
            dt::DOUBLE => c
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            dt::FLOAT16 => c
                .map(|b| f16::from_le_bytes(b.try_into().unwrap()).to_f64())
                .collect(),
            dt::BFLOAT16 => c
                .map(|b| bf16::from_le_bytes(b.try_into().unwrap()).to_f64())
                .collect(),
            dt::INT8 => c.map(|b| b[0] as i8 as f64).collect(),
            dt::UINT8 => c.map(|b| b[0] as f64).collect(),
            dt::BOOL => c.map(|b| (b[0] != 0) as u8 as f64).collect(),
            dt::INT16 => c
                .map(|b| i16::from_le_bytes(b.try_into().unwrap()) as f64)
                .collect(),
            dt::UINT16 => c
                .map(|b| u16::from_le_bytes(b.try_into().unwrap()) as f64)
                .collect(),
            dt::INT32 => c
                .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as f64)
                .collect(),
            dt::UINT32 => c
                .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as f64)
                .collect(),
            dt::INT64 => c
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64)
                .collect(),
            dt::UINT64 => c
                .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as f64)
                .collect(),
            _ => return None,
        };
        Some(v)
    }

    /// The elements of an integer or boolean tensor as `i64` (`None` for other types).
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        if !(is_int(self.elem_type) || self.elem_type == dt::BOOL) {
            return None;
        }
        if self.elem_type == dt::INT64 {
            if self.data.len() != self.len() * 8 {
                return None;
            }
            return Some(
                self.data
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                    .collect(),
            );
        }
        self.to_f64()
            .map(|v| v.into_iter().map(|x| x as i64).collect())
    }

    /// A short human description, e.g. `input_ids i64[2,8]`.
    pub fn describe(&self) -> String {
        format!("{} {}{:?}", self.name, dt::name(self.elem_type), self.shape)
    }
}

/// Fill a tensor of `elem_type` with values from `f`, which yields one `f64` per element; the
/// value is converted (rounded for floats, truncated for integers) to the element type.
pub(crate) fn from_f64_fn(
    name: &str,
    elem_type: i32,
    shape: &[usize],
    mut f: impl FnMut() -> f64,
) -> HostTensor {
    let n: usize = shape.iter().product();
    let size = dt::byte_size(elem_type).unwrap_or(1);
    let mut data = Vec::with_capacity(n * size);
    for _ in 0..n {
        let x = f();
        match elem_type {
            dt::FLOAT => data.extend_from_slice(&(x as f32).to_le_bytes()),
            dt::DOUBLE => data.extend_from_slice(&x.to_le_bytes()),
            dt::FLOAT16 => data.extend_from_slice(&f16::from_f64(x).to_le_bytes()),
            dt::BFLOAT16 => data.extend_from_slice(&bf16::from_f64(x).to_le_bytes()),
            dt::INT8 => data.push(x as i8 as u8),
            dt::UINT8 => data.push(x as u8),
            dt::BOOL => data.push((x != 0.0) as u8),
            dt::INT16 => data.extend_from_slice(&(x as i16).to_le_bytes()),
            dt::UINT16 => data.extend_from_slice(&(x as u16).to_le_bytes()),
            dt::INT32 => data.extend_from_slice(&(x as i32).to_le_bytes()),
            dt::UINT32 => data.extend_from_slice(&(x as u32).to_le_bytes()),
            dt::INT64 => data.extend_from_slice(&(x as i64).to_le_bytes()),
            dt::UINT64 => data.extend_from_slice(&(x as u64).to_le_bytes()),
            _ => data.extend(std::iter::repeat_n(0u8, size)),
        }
    }
    HostTensor {
        name: name.to_string(),
        elem_type,
        shape: shape.to_vec(),
        data,
    }
}

/// A summary of one generated input, for the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InputSummary {
    /// The graph input's name.
    pub name: String,
    /// Its element type (`f32`, `i64`, ...).
    pub dtype: String,
    /// The concrete shape fed to both models.
    pub shape: Vec<usize>,
    /// How the values were drawn, e.g. `N(0,1)`, `ids in [0, 128) (vocabulary of wte.weight)`,
    /// `all true`, `all ones (mask)`.
    pub values: String,
}
