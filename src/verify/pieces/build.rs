//! One piece as a model of its own: the part's nodes, the initializers they read (an external
//! one keeps its location, offset and length: the runtimes read that range of the original's
//! data file, nothing is copied), the values it reads as graph inputs typed and shaped like the
//! tensors that will be fed, the values it gives as graph outputs.

use prost::Message;

use super::cut::{Dag, Part};
use crate::proto::{
    tensor_shape_proto::Dimension, type_proto, GraphProto, ModelProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use crate::verify::HostTensor;

/// A graph input typed and shaped like `t`.
fn typed(name: &str, t: &HostTensor) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            tensor_type: Some(type_proto::Tensor {
                elem_type: Some(t.elem_type),
                shape: Some(TensorShapeProto {
                    dim: t
                        .shape
                        .iter()
                        .map(|&d| Dimension {
                            dim_value: Some(d as i64),
                            ..Default::default()
                        })
                        .collect(),
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `t` as an initializer (raw little-endian data).
fn constant(t: &HostTensor) -> TensorProto {
    TensorProto {
        name: Some(t.name.clone()),
        dims: t.shape.iter().map(|&d| d as i64).collect(),
        data_type: Some(t.elem_type),
        raw_data: Some(t.data.clone().into()),
        ..Default::default()
    }
}

/// The encoded model of `part` of `model` (whose graph `dag` was made from), called `name`:
/// its inputs typed and shaped like `fed` (tensors named like the inputs they feed), except
/// those in `baked`, which become initializers with those values (small integer values that
/// are the same in every run: shapes, which tract needs as constants to type the graph).
pub(crate) fn piece_bytes(
    model: &ModelProto,
    dag: &Dag,
    part: &Part,
    fed: &[HostTensor],
    baked: &[HostTensor],
    name: &str,
) -> Vec<u8> {
    let g = dag.graph;
    let graph = GraphProto {
        name: Some(name.to_string()),
        node: part.nodes.iter().map(|&i| g.node[i].clone()).collect(),
        initializer: part
            .inits
            .iter()
            .map(|&t| g.initializer[t].clone())
            .chain(baked.iter().map(constant))
            .collect(),
        input: fed.iter().map(|t| typed(&t.name, t)).collect(),
        // Untyped: both runtimes infer them.
        output: part
            .outputs
            .iter()
            .map(|o| ValueInfoProto {
                name: Some(o.clone()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    ModelProto {
        // Before IR 4 initializers had to be graph inputs too; a piece lists them once.
        ir_version: Some(model.ir_version.unwrap_or(0).max(4)),
        producer_name: Some("onnx-normopt verify (piece)".into()),
        opset_import: model.opset_import.clone(),
        functions: model.functions.clone(),
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}
