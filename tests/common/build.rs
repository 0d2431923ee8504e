//! The one set of protobuf builders of the integration tests (and, through `hostile.rs`, of the
//! fuzzers): values, attributes, nodes, tensors, graphs and models with the prost types, and
//! [`GraphBuilder`], a graph under construction with fresh names. A graph a test writes by hand
//! reads best as text ([`super::text`]); these are for graphs the text form cannot hold
//! (subgraph attributes, hostile protobuf) or that a test generates.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message;

use onnx_normopt::proto::{
    attribute_type as at, data_type as dt, tensor_shape_proto, type_proto, AttributeProto,
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};

/// A symbolic dimension.
pub fn dp(name: &str) -> tensor_shape_proto::Dimension {
    tensor_shape_proto::Dimension {
        dim_param: Some(name.into()),
        ..Default::default()
    }
}

/// A fixed dimension.
pub fn dv(v: i64) -> tensor_shape_proto::Dimension {
    tensor_shape_proto::Dimension {
        dim_value: Some(v),
        ..Default::default()
    }
}

fn tensor_vi(name: &str, elem: i32, shape: Option<TensorShapeProto>) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(type_proto::Tensor {
                elem_type: Some(elem),
                shape,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A tensor value with `elem` type and dims (a negative dim `-k` is the symbol `dk`).
pub fn vi(name: &str, elem: i32, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| tensor_shape_proto::Dimension {
            dim_value: (d >= 0).then_some(d),
            dim_param: (d < 0).then(|| format!("d{}", -d)),
            denotation: None,
        })
        .collect();
    tensor_vi(name, elem, Some(TensorShapeProto { dim }))
}

/// A tensor value with `elem` type and these dims ([`dp`], [`dv`]).
pub fn vi_dims(name: &str, elem: i32, dims: &[tensor_shape_proto::Dimension]) -> ValueInfoProto {
    tensor_vi(name, elem, Some(TensorShapeProto { dim: dims.to_vec() }))
}

/// A value with a type but no shape.
pub fn vi_any(name: &str, elem: i32) -> ValueInfoProto {
    tensor_vi(name, elem, None)
}

/// A float attribute.
pub fn attr_f(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        f: Some(f),
        r#type: Some(at::FLOAT),
        ..Default::default()
    }
}

/// An int attribute.
pub fn attr_i(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(i),
        r#type: Some(at::INT),
        ..Default::default()
    }
}

/// A string attribute.
pub fn attr_s(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        s: Some(Bytes::from(s.as_bytes().to_vec())),
        r#type: Some(at::STRING),
        ..Default::default()
    }
}

/// A graph attribute.
pub fn attr_g(name: &str, g: GraphProto) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        g: Some(g),
        r#type: Some(at::GRAPH),
        ..Default::default()
    }
}

/// A floats attribute.
pub fn attr_floats(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        floats: v.to_vec(),
        r#type: Some(at::FLOATS),
        ..Default::default()
    }
}

/// An ints attribute.
pub fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        ints: ints.to_vec(),
        r#type: Some(at::INTS),
        ..Default::default()
    }
}

/// A node of the default domain named `name`.
pub fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: Some(name.into()),
        op_type: Some(op.into()),
        attribute: attrs,
        ..Default::default()
    }
}

/// A node of `domain` (`""`: the default one), named `OP_FIRSTOUTPUT`.
pub fn node_in(
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

/// A float32 tensor with `dims` holding `values` in `raw_data`.
pub fn f32_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    TensorProto {
        dims: dims.to_vec(),
        data_type: Some(dt::FLOAT),
        name: Some(name.into()),
        raw_data: Some(Bytes::from(raw)),
        ..Default::default()
    }
}

/// An int64 tensor with `dims` holding `values` in `raw_data`.
pub fn i64_tensor(name: &str, dims: &[i64], values: &[i64]) -> TensorProto {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(dt::INT64),
        raw_data: Some(Bytes::from(raw)),
        ..Default::default()
    }
}

/// A tensor of element type `elem` (a float or integer type) holding `values`.
pub fn tensor(name: &str, elem: i32, dims: &[i64], values: &[f32]) -> TensorProto {
    let wide: Vec<f64> = values.iter().map(|&v| v as f64).collect();
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(elem),
        raw_data: Some(onnx_normopt::tensor::encode_f64(&wide, elem).unwrap()),
        ..Default::default()
    }
}

/// A deterministic pseudo-random float32 tensor (values in [-1, 1) plus `offset`).
pub fn rand_tensor(name: &str, dims: &[i64], seed: u64, offset: f32) -> TensorProto {
    let n: i64 = dims.iter().product();
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0 + offset
        })
        .collect();
    f32_tensor(name, dims, &v)
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

/// Deterministic values in [0.5, 1.5).
pub fn positive_values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            0.5 + ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 1000.0
        })
        .collect()
}

/// A graph named `g`.
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

/// A model of `graph` importing the domains `opsets` (domain, version).
pub fn model_of(graph: GraphProto, opsets: &[(&str, i64)]) -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        producer_name: Some("onnx-normopt tests".into()),
        opset_import: opsets
            .iter()
            .map(|(d, v)| OperatorSetIdProto {
                domain: Some(d.to_string()),
                version: Some(*v),
            })
            .collect(),
        graph: Some(graph),
        ..Default::default()
    }
}

/// A model of a graph named `g` with these parts, importing the domains `opsets`.
pub fn model_with(
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    initializer: Vec<TensorProto>,
    opsets: &[(&str, i64)],
) -> ModelProto {
    model_of(graph(nodes, inputs, outputs, initializer), opsets)
}

/// A model of `graph` importing the default domain at `opset` and `com.microsoft` 1.
pub fn model(graph: GraphProto, opset: i64) -> ModelProto {
    model_of(graph, &[("", opset), ("com.microsoft", 1)])
}

/// Write `m` to `dir/name`.
pub fn save(dir: &Path, name: &str, m: &ModelProto) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p
}

/// A graph under construction: nodes, initializers, fresh names.
#[derive(Default)]
pub struct GraphBuilder {
    /// The nodes so far.
    pub nodes: Vec<NodeProto>,
    /// The initializers so far.
    pub inits: Vec<TensorProto>,
    k: usize,
    seed: u64,
}

impl GraphBuilder {
    /// `base_N`, a name not given yet.
    pub fn fresh(&mut self, base: &str) -> String {
        self.k += 1;
        format!("{base}_{}", self.k)
    }

    /// A node with one output (named after the op); returns the output.
    pub fn op(&mut self, op: &str, ins: &[&str], attrs: Vec<AttributeProto>) -> String {
        let o = self.fresh(&op.to_lowercase());
        let name = self.fresh(op);
        self.nodes.push(node(op, &name, ins, &[&o], attrs));
        o
    }

    /// A node of another domain with one output.
    pub fn op_in(
        &mut self,
        domain: &str,
        op: &str,
        ins: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> String {
        let o = self.op(op, ins, attrs);
        if let Some(n) = self.nodes.last_mut() {
            n.domain = Some(domain.into());
        }
        o
    }

    /// A random f32 initializer (values in [-1, 1) + offset).
    pub fn w(&mut self, base: &str, dims: &[i64], offset: f32) -> String {
        let n = self.fresh(base);
        self.seed += 1;
        self.inits.push(rand_tensor(&n, dims, self.seed, offset));
        n
    }

    /// An int64 initializer.
    pub fn ints(&mut self, vals: &[i64], dims: &[i64]) -> String {
        let n = self.fresh("ints");
        self.inits.push(TensorProto {
            dims: dims.to_vec(),
            data_type: Some(dt::INT64),
            name: Some(n.clone()),
            int64_data: vals.to_vec(),
            ..Default::default()
        });
        n
    }

    /// An f32 initializer with these values.
    pub fn f32s(&mut self, vals: &[f32], dims: &[i64]) -> String {
        let n = self.fresh("f");
        self.inits.push(f32_tensor(&n, dims, vals));
        n
    }

    /// A random fp16 initializer read through `Cast(to=f32)` (onnxruntime's fp16 optimisation);
    /// returns the Cast's output.
    pub fn w16(&mut self, base: &str, dims: &[i64], offset: f32) -> String {
        let n = self.fresh(base);
        self.seed += 1;
        let t = rand_tensor(&n, dims, self.seed, offset);
        let vals: Vec<f64> = t
            .raw_data
            .as_ref()
            .map(|b| {
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                    .collect()
            })
            .unwrap_or_default();
        let d: Vec<usize> = dims.iter().map(|&x| x as usize).collect();
        self.inits
            .push(onnx_normopt::tensor::tensor_from_f64(&n, &d, dt::FLOAT16, &vals).unwrap());
        self.op("Cast", &[&n], vec![attr_i("to", dt::FLOAT as i64)])
    }

    /// `LayerNormalization` over the last axis with random γ (around 1) and β.
    pub fn ln(&mut self, x: &str, d: i64) -> String {
        let g = self.w("ln.g", &[d], 1.0);
        let b = self.w("ln.b", &[d], 0.2);
        self.op(
            "LayerNormalization",
            &[x, &g, &b],
            vec![attr_i("axis", -1), attr_f("epsilon", 1e-5)],
        )
    }

    /// `MatMul` by a random [k, n] weight, then `Add` of a random bias.
    pub fn linear(&mut self, x: &str, k: i64, n: i64) -> String {
        let w = self.w("w", &[k, n], 0.0);
        let b = self.w("b", &[n], 0.3);
        let m = self.op("MatMul", &[x, &w], vec![]);
        self.op("Add", &[&m, &b], vec![])
    }

    /// `x[axis]` of `Shape(x)` as a 1-D tensor of one entry.
    pub fn dim(&mut self, x: &str, axis: i64) -> String {
        let s = self.op("Shape", &[x], vec![]);
        let i = self.ints(&[axis], &[]);
        let g = self.op("Gather", &[&s, &i], vec![attr_i("axis", 0)]);
        let ax = self.ints(&[0], &[1]);
        self.op("Unsqueeze", &[&g, &ax], vec![])
    }

    /// The model: these inputs, one f32 output `out` of `out_dims`, opset 18.
    pub fn model(self, inputs: Vec<ValueInfoProto>, out: &str, out_dims: &[i64]) -> ModelProto {
        model_of(
            GraphProto {
                node: self.nodes,
                name: Some("forms".into()),
                initializer: self.inits,
                input: inputs,
                output: vec![vi(out, dt::FLOAT, out_dims)],
                ..Default::default()
            },
            &[("", 18)],
        )
    }
}
