//! Terse builders of small ONNX models with the prost types, for the verification tests
//! (`tests/deployed_verify.rs`, `tests/ms_ops.rs`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message;

use onnx_normopt::proto::{
    data_type, tensor_shape_proto, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use onnx_normopt::verify::{ci_requires_ort, find_ort_library, OrtLibrary};

pub fn dp(name: &str) -> tensor_shape_proto::Dimension {
    tensor_shape_proto::Dimension {
        dim_param: Some(name.into()),
        ..Default::default()
    }
}

pub fn dv(v: i64) -> tensor_shape_proto::Dimension {
    tensor_shape_proto::Dimension {
        dim_value: Some(v),
        ..Default::default()
    }
}

pub fn vi(name: &str, elem: i32, dims: &[tensor_shape_proto::Dimension]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(type_proto::Tensor {
                elem_type: Some(elem),
                shape: Some(TensorShapeProto { dim: dims.to_vec() }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A value with a type but no shape.
pub fn vi_any(name: &str, elem: i32) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(type_proto::Tensor {
                elem_type: Some(elem),
                shape: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn attr_f(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        f: Some(f),
        r#type: Some(1),
        ..Default::default()
    }
}

pub fn attr_i(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(i),
        r#type: Some(2),
        ..Default::default()
    }
}

pub fn attr_s(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        s: Some(Bytes::from(s.as_bytes().to_vec())),
        r#type: Some(3),
        ..Default::default()
    }
}

pub fn attr_g(name: &str, g: GraphProto) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        g: Some(g),
        r#type: Some(5),
        ..Default::default()
    }
}

pub fn attr_floats(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        floats: v.to_vec(),
        r#type: Some(6),
        ..Default::default()
    }
}

pub fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        ints: ints.to_vec(),
        r#type: Some(7),
        ..Default::default()
    }
}

pub fn node(
    op: &str,
    domain: &str,
    inputs: &[&str],
    outputs: &[&str],
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        domain: (!domain.is_empty()).then(|| domain.to_string()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: Some(format!("{op}_{}", outputs[0])),
        attribute,
        ..Default::default()
    }
}

pub fn f32_init(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(data_type::FLOAT),
        raw_data: Some(Bytes::from(
            values
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>(),
        )),
        ..Default::default()
    }
}

pub fn i64_init(name: &str, dims: &[i64], values: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(data_type::INT64),
        raw_data: Some(Bytes::from(
            values
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>(),
        )),
        ..Default::default()
    }
}

/// Deterministic values in roughly [-1, 1).
pub fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let h = (i as u32)
                .wrapping_mul(2654435761)
                .wrapping_add(seed.wrapping_mul(40503));
            (h % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

pub fn graph(
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    initializer: Vec<TensorProto>,
) -> GraphProto {
    GraphProto {
        name: Some("g".into()),
        node: nodes,
        input: inputs,
        output: outputs,
        initializer,
        ..Default::default()
    }
}

/// A model of `graph` importing the default domain at `opset` and `com.microsoft` 1.
pub fn model(graph: GraphProto, opset: i64) -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        producer_name: Some("onnx-normopt tests".into()),
        opset_import: vec![
            OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(opset),
            },
            OperatorSetIdProto {
                domain: Some("com.microsoft".into()),
                version: Some(1),
            },
        ],
        graph: Some(graph),
        ..Default::default()
    }
}

pub fn save(dir: &Path, name: &str, m: &ModelProto) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p
}

/// A note on the real stderr (not captured by the test harness, so a skip is visible).
pub fn note(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "NOTE: {msg}");
}

/// Whether onnxruntime can be used; `false` with a visible note when it is missing and CI does
/// not require it (under `CI=true` a missing onnxruntime makes the caller's verification fail).
pub fn have_ort(test: &str) -> bool {
    if ci_requires_ort() {
        return true;
    }
    match find_ort_library(None) {
        OrtLibrary::Found { .. } => true,
        OrtLibrary::NotFound { tried } => {
            note(&format!(
                "{test}: onnxruntime library not found ({}); its onnxruntime part is skipped",
                tried.join("; ")
            ));
            false
        }
    }
}
