//! Building the nodes the rewrite adds: RMSNorm in its forms, centering, bias adds.
//! Only node construction lives here; where they go is decided by the applier.

use crate::ir::Graph;
use crate::proto::{attribute_type as at, data_type as dt, AttributeProto, NodeProto};
use crate::Result;

/// The domain of our own ops.
pub const NORMOPT_DOMAIN: &str = "ai.onnx_normopt";

/// How RMSNorm is written into the output graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Emit {
    /// ONNX `RMSNormalization` at opset ≥ 23, otherwise standard ops at the model's opset
    /// (passes `onnx.checker`).
    #[default]
    Standard,
    /// onnxruntime's `SimplifiedLayerNormalization` / `com.microsoft:SkipSimplifiedLayerNormalization`.
    Onnxruntime,
}

/// An int attribute.
pub fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(v),
        r#type: Some(at::INT),
        ..Default::default()
    }
}

/// A float attribute.
pub fn attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        f: Some(v),
        r#type: Some(at::FLOAT),
        ..Default::default()
    }
}

/// An ints attribute.
pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        ints: v.to_vec(),
        r#type: Some(at::INTS),
        ..Default::default()
    }
}

/// Adds nodes to a graph with fresh names under a common prefix.
pub struct Builder<'g> {
    /// The graph being edited.
    pub g: &'g mut Graph,
    /// The default-domain opset (decides ReduceMean's axes form).
    pub opset: i64,
    /// Name prefix of new nodes and values.
    pub prefix: String,
}

impl Builder<'_> {
    /// A fresh value name.
    pub fn value(&mut self, what: &str) -> String {
        let base = format!("{}/{what}", self.prefix);
        self.g.fresh_name(&base)
    }

    /// Add a node `op(inputs) -> [out]` (out fresh unless given). Returns the output.
    pub fn node(
        &mut self,
        domain: &str,
        op: &str,
        inputs: &[&str],
        out: Option<&str>,
        attrs: Vec<AttributeProto>,
    ) -> String {
        let out = match out {
            Some(o) => o.to_string(),
            None => self.value(op),
        };
        let name = self.g.fresh_name(&format!("{}/{op}", self.prefix));
        self.g.add_node(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: Some(name),
            op_type: Some(op.into()),
            domain: if domain.is_empty() {
                None
            } else {
                Some(domain.into())
            },
            attribute: attrs,
            ..Default::default()
        });
        out
    }

    /// A scalar or vector constant of `data_type`.
    pub fn constant(
        &mut self,
        what: &str,
        dims: &[usize],
        data_type: i32,
        values: &[f64],
    ) -> Result<String> {
        let base = format!("{}/{what}", self.prefix);
        self.g.add_initializer(&base, dims, data_type, values)
    }

    /// `ReduceMean(x)` over the last axis, keepdims, in the opset's form.
    pub fn reduce_mean_last(&mut self, x: &str) -> Result<String> {
        if self.opset >= 18 {
            let axes = self.constant("axes", &[1], dt::INT64, &[-1.0])?;
            Ok(self.node(
                "",
                "ReduceMean",
                &[x, &axes],
                None,
                vec![attr_i("keepdims", 1)],
            ))
        } else {
            Ok(self.node(
                "",
                "ReduceMean",
                &[x],
                None,
                vec![attr_ints("axes", &[-1]), attr_i("keepdims", 1)],
            ))
        }
    }

    /// `x − ReduceMean(x)`: one explicit centering node. Returns the centred value.
    pub fn center(&mut self, x: &str) -> Result<String> {
        let m = self.reduce_mean_last(x)?;
        Ok(self.node("", "Sub", &[x, &m], None, vec![]))
    }

    /// RMSNorm of `x` into `out` in the chosen form:
    /// `x / sqrt(mean(x²) + ε) [⊙ γ] [+ β]`. `gamma` is required by the fused forms; the
    /// decomposed form always multiplies by it when given (onnxruntime fuses `Div → Mul`).
    #[allow(clippy::too_many_arguments)]
    pub fn rms(
        &mut self,
        emit: Emit,
        x: &str,
        gamma: Option<&str>,
        beta: Option<&str>,
        eps: f32,
        data_type: i32,
        compute_type: Option<i32>,
        out: &str,
    ) -> Result<()> {
        let core_out = if beta.is_some() {
            self.value("rms")
        } else {
            out.to_string()
        };
        match (emit, self.opset >= 23) {
            (Emit::Onnxruntime, _) | (Emit::Standard, true) => {
                let op = if emit == Emit::Onnxruntime {
                    "SimplifiedLayerNormalization"
                } else {
                    "RMSNormalization"
                };
                let g = gamma
                    .ok_or_else(|| crate::Error::Internal("fused RMSNorm needs a scale".into()))?;
                self.node(
                    "",
                    op,
                    &[x, g],
                    Some(&core_out),
                    vec![
                        attr_i("axis", -1),
                        attr_f("epsilon", eps),
                        attr_i("stash_type", 1),
                    ],
                );
            }
            (Emit::Standard, false) => {
                let wide = data_type == dt::FLOAT16 || data_type == dt::BFLOAT16;
                let ct = compute_type.unwrap_or(if wide { dt::FLOAT } else { data_type });
                let xin = if ct != data_type {
                    self.node("", "Cast", &[x], None, vec![attr_i("to", ct as i64)])
                } else {
                    x.to_string()
                };
                let two = self.constant("two", &[], ct, &[2.0])?;
                let sq = self.node("", "Pow", &[&xin, &two], None, vec![]);
                let ms = self.reduce_mean_last(&sq)?;
                let e = self.constant("epsilon", &[], ct, &[eps as f64])?;
                let a = self.node("", "Add", &[&ms, &e], None, vec![]);
                let s = self.node("", "Sqrt", &[&a], None, vec![]);
                let last_is_div = gamma.is_none() && ct == data_type;
                let d = self.node(
                    "",
                    "Div",
                    &[&xin, &s],
                    if last_is_div { Some(&core_out) } else { None },
                    vec![],
                );
                let back = if ct != data_type {
                    self.node(
                        "",
                        "Cast",
                        &[&d],
                        if gamma.is_none() {
                            Some(&core_out)
                        } else {
                            None
                        },
                        vec![attr_i("to", data_type as i64)],
                    )
                } else {
                    d
                };
                if let Some(g) = gamma {
                    self.node("", "Mul", &[&back, g], Some(&core_out), vec![]);
                }
            }
        }
        if let Some(b) = beta {
            self.node("", "Add", &[&core_out, b], Some(out), vec![]);
        }
        Ok(())
    }
}
