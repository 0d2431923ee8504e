//! Building the nodes the rewrite adds: RMSNorm in its forms, centering, bias adds.
//! Only node construction lives here; where they go is decided by the applier.

use super::math::{self, Basis};
use super::CrmsEmit;
use crate::ir::Graph;
use crate::proto::{attribute_type as at, data_type as dt, AttributeProto, NodeProto};
use crate::Result;

pub(crate) use crate::ops::{CRMS_OP, NORMOPT_DOMAIN};

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
    /// The `doc_string` of the nodes added from now on: why they are there (which LayerNorm
    /// they replace, which fold or centering they carry), so that a viewer such as Netron shows
    /// it. Set by the applier before each group of nodes.
    pub doc: Option<String>,
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
            doc_string: self.doc.clone(),
            ..Default::default()
        });
        out
    }

    /// Add a node `op(inputs) -> outputs` with several (possibly empty) outputs, named like
    /// [`Builder::node`]'s.
    pub fn node_outputs(
        &mut self,
        domain: &str,
        op: &str,
        inputs: &[&str],
        outputs: Vec<String>,
        attrs: Vec<AttributeProto>,
    ) {
        let name = self.g.fresh_name(&format!("{}/{op}", self.prefix));
        self.g.add_node(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs,
            name: Some(name),
            op_type: Some(op.into()),
            domain: if domain.is_empty() {
                None
            } else {
                Some(domain.into())
            },
            attribute: attrs,
            doc_string: self.doc.clone(),
            ..Default::default()
        });
    }

    /// Take the names [`Builder::node`] would take for `op` (its output unless `out` is given,
    /// and its node name) without adding a node.
    pub fn reserve_node(&mut self, op: &str, out: Option<&str>) {
        if out.is_none() {
            self.value(op);
        }
        self.g.fresh_name(&format!("{}/{op}", self.prefix));
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

    /// `ReduceSum(x)` over the last axis, keepdims, in the opset's form.
    pub fn reduce_sum_last(&mut self, x: &str) -> Result<String> {
        if self.opset >= 13 {
            let axes = self.constant("axes", &[1], dt::INT64, &[-1.0])?;
            Ok(self.node(
                "",
                "ReduceSum",
                &[x, &axes],
                None,
                vec![attr_i("keepdims", 1)],
            ))
        } else {
            Ok(self.node(
                "",
                "ReduceSum",
                &[x],
                None,
                vec![attr_ints("axes", &[-1]), attr_i("keepdims", 1)],
            ))
        }
    }

    /// `x[..., 0:len]`.
    pub fn slice_last(&mut self, x: &str, len: usize) -> Result<String> {
        let starts = self.constant("starts", &[1], dt::INT64, &[0.0])?;
        let ends = self.constant("ends", &[1], dt::INT64, &[len as f64])?;
        let axes = self.constant("axes", &[1], dt::INT64, &[-1.0])?;
        Ok(self.node("", "Slice", &[x, &starts, &ends, &axes], None, vec![]))
    }

    /// CRMSNorm of the compressed stream value `x` (width D−1) into `out`, as `form` says:
    /// [`crms_ortho`](Self::crms_ortho) for the standard and onnxruntime forms (the stream in
    /// the orthonormal basis), one [`crms_custom`](Self::crms_custom) node for the custom op
    /// (the stream in the paper's coordinates x̃). With γ or β the decompressed width-D vector
    /// gets them.
    #[allow(clippy::too_many_arguments)]
    pub fn crms(
        &mut self,
        form: CrmsEmit,
        x: &str,
        d: usize,
        eps: f32,
        gamma: Option<&str>,
        beta: Option<&str>,
        data_type: i32,
        compute_type: Option<i32>,
        out: &str,
    ) -> Result<()> {
        let emit = match form {
            CrmsEmit::Custom => {
                return self.crms_coordinate(x, d, eps, gamma, beta, data_type, out)
            }
            CrmsEmit::Standard => Emit::Standard,
            CrmsEmit::Onnxruntime => Emit::Onnxruntime,
        };
        self.crms_ortho(emit, x, d, eps, gamma, beta, data_type, compute_type, out)
    }

    /// CRMSNorm in the paper's coordinates: the custom op on x̃, then, with γ or β, the
    /// decompressed `Concat(ỹ, −Σỹ)` gets them.
    #[allow(clippy::too_many_arguments)]
    fn crms_coordinate(
        &mut self,
        x: &str,
        d: usize,
        eps: f32,
        gamma: Option<&str>,
        beta: Option<&str>,
        data_type: i32,
        out: &str,
    ) -> Result<()> {
        let affine = gamma.is_some() || beta.is_some();
        let y = self.crms_custom(x, d, eps, data_type, if affine { None } else { Some(out) });
        if !affine {
            return Ok(());
        }
        let sy = self.reduce_sum_last(&y)?;
        let neg = self.node("", "Neg", &[&sy], None, vec![]);
        let full = self.node("", "Concat", &[&y, &neg], None, vec![attr_i("axis", -1)]);
        self.affine(&full, gamma, beta, out);
        Ok(())
    }

    /// `x ⊙ γ + β` (either optional) into `out`.
    fn affine(&mut self, x: &str, gamma: Option<&str>, beta: Option<&str>, out: &str) {
        let scaled = match gamma {
            Some(g) => self.node(
                "",
                "Mul",
                &[x, g],
                if beta.is_none() { Some(out) } else { None },
                vec![],
            ),
            None => x.to_string(),
        };
        if let Some(bt) = beta {
            self.node("", "Add", &[&scaled, bt], Some(out), vec![]);
        }
    }

    /// CRMSNorm of `z`, the compressed stream in the orthonormal basis (z = M·x, width D−1,
    /// [`math::ortho_project`]), into `out`: since ‖z‖ = ‖x‖, it is an RMSNorm of z over its
    /// D−1 entries with ε′ = ε·D/(D−1) ([`math::ortho_epsilon`]), times s = √(D/(D−1))
    /// ([`math::ortho_scale`]), written as [`rms`](Self::rms) writes RMSNorm in `emit`'s form
    /// (so every runtime that fuses RMSNorm fuses it). Without γ and β the readers carry s
    /// (their weights are s·M·W) and the scale is ones. Otherwise the scale is s and the
    /// decompressed x̂ = Mᵀŷ = (ŷ − k·Σŷ, −Σŷ/√D) gets γ and β.
    #[allow(clippy::too_many_arguments)]
    pub fn crms_ortho(
        &mut self,
        emit: Emit,
        z: &str,
        d: usize,
        eps: f32,
        gamma: Option<&str>,
        beta: Option<&str>,
        data_type: i32,
        compute_type: Option<i32>,
        out: &str,
    ) -> Result<()> {
        let affine = gamma.is_some() || beta.is_some();
        let (s, name) = if affine {
            (math::ortho_scale(d), "scale")
        } else {
            (1.0, "ones")
        };
        let scale = self.constant(name, &[d - 1], data_type, &vec![s; d - 1])?;
        let eps1 = math::ortho_epsilon(f64::from(eps), d) as f32;
        if !affine {
            return self.rms(
                emit,
                z,
                Some(&scale),
                None,
                eps1,
                data_type,
                compute_type,
                out,
            );
        }
        let y = self.value("crms");
        self.rms(
            emit,
            z,
            Some(&scale),
            None,
            eps1,
            data_type,
            compute_type,
            &y,
        )?;
        let (_, k) = math::ortho_coeffs(d);
        let sum = self.reduce_sum_last(&y)?;
        let kc = self.constant("k", &[], data_type, &[k])?;
        let ks = self.node("", "Mul", &[&sum, &kc], None, vec![]);
        let head = self.node("", "Sub", &[&y, &ks], None, vec![]);
        let tc = self.constant("tail", &[], data_type, &[-1.0 / (d as f64).sqrt()])?;
        let tail = self.node("", "Mul", &[&sum, &tc], None, vec![]);
        let full = self.node(
            "",
            "Concat",
            &[&head, &tail],
            None,
            vec![attr_i("axis", -1)],
        );
        self.affine(&full, gamma, beta, out);
        Ok(())
    }

    /// The compressed width-D−1 stream value for `x` (any mean, width D) in `basis`: the
    /// centred x sliced to D−1 (coordinates), or z = M·x = x[0:D−1] − x·w with
    /// wⱼ = k + c·[j = D−1] ([`math::ortho_project`]; M·1 = 0, so x need not be centred first).
    /// New constants are of `data_type` (x's element type). Returns it.
    pub fn compress_value(
        &mut self,
        x: &str,
        d: usize,
        basis: Basis,
        data_type: i32,
    ) -> Result<String> {
        match basis {
            Basis::Coordinate => {
                let c = self.center(x)?;
                self.slice_last(&c, d - 1)
            }
            Basis::Orthonormal => {
                let (c, k) = math::ortho_coeffs(d);
                let mut w = vec![k; d];
                w[d - 1] += c;
                let wc = self.constant("shift_weights", &[d, 1], data_type, &w)?;
                let shift = self.node("", "MatMul", &[x, &wc], None, vec![]);
                let head = self.slice_last(x, d - 1)?;
                Ok(self.node("", "Sub", &[&head, &shift], None, vec![]))
            }
        }
    }

    /// The CRMSNorm core as one node of our domain (the model must import
    /// [`NORMOPT_DOMAIN`] version 1):
    ///
    /// `ai.onnx_normopt:CRMSNormalization(X) -> Y`, attributes `epsilon` (float), `width` (int,
    /// the uncompressed D) and `axis` (= −1, the only value defined):
    /// `Y = X / sqrt((ΣX² + (ΣX)²) / width + ε)` over the last axis of D−1 entries. The op also
    /// accepts an optional second input `Scale` of shape [D−1] (`Y ⊙ Scale`), which the rewrite
    /// does not use: an unfolded γ applies to the decompressed width-D vector instead.
    /// f16 is computed in f32 inside the op; element types the op does not define (bf16, ...) are
    /// cast to f32 around it. Returns the output.
    pub fn crms_custom(
        &mut self,
        x: &str,
        d: usize,
        eps: f32,
        data_type: i32,
        out: Option<&str>,
    ) -> String {
        let native = matches!(data_type, dt::FLOAT | dt::FLOAT16 | dt::DOUBLE);
        let xin = if native {
            x.to_string()
        } else {
            self.node("", "Cast", &[x], None, vec![attr_i("to", dt::FLOAT as i64)])
        };
        let attrs = crate::ops::crms_attributes(eps, d);
        let y = self.node(
            NORMOPT_DOMAIN,
            CRMS_OP,
            &[&xin],
            if native { out } else { None },
            attrs,
        );
        if native {
            y
        } else {
            self.node("", "Cast", &[&y], out, vec![attr_i("to", data_type as i64)])
        }
    }
}

/// The prefix of every `doc_string` this tool writes on the nodes it adds.
pub const DOC_PREFIX: &str = "onnx-normopt: ";

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `doc_string` of the nodes that replace the norm `label` (of `form`): RMSNorm, or
/// CRMSNorm of width D−1 when `compressed_from` is D, and where γ/β went (or why they stayed).
pub fn doc_norm(
    label: &str,
    form: &str,
    eps: f32,
    compressed_from: Option<usize>,
    folded_into: &[String],
    kept_affine: Option<&super::report::KeptAffine>,
) -> String {
    let what = match compressed_from {
        Some(d) => format!(
            "CRMSNorm (stream compressed {d} -> {})",
            d.saturating_sub(1)
        ),
        None => "RMSNorm".to_string(),
    };
    let kind = if form.starts_with("Skip") {
        form.to_string()
    } else {
        "LayerNorm".to_string()
    };
    let affine = if folded_into.is_empty() {
        kept_affine
            .map(|k| format!("; γ/β kept on the norm ({k})"))
            .unwrap_or_default()
    } else {
        format!("; γ/β folded into {}", quoted(folded_into))
    };
    format!("{DOC_PREFIX}{what} replacing {kind} '{label}' (ε={eps:e}){affine}")
}

/// The `doc_string` of a bias added to the linear reader `reader`: β·W of the folded norm.
pub fn doc_bias(norm: Option<&str>, reader: &str) -> String {
    match norm {
        Some(n) => format!("{DOC_PREFIX}β of LayerNorm '{n}' folded into '{reader}' (bias β·W)"),
        None => format!("{DOC_PREFIX}bias β·W of a folded LayerNorm shift, for '{reader}'"),
    }
}

/// The `doc_string` of an explicit centering `x − mean(x)` of `value`.
pub fn doc_center(value: &str) -> String {
    format!(
        "{DOC_PREFIX}centres '{value}' (x − mean(x)) so that the residual stream stays zero-mean"
    )
}

/// The `doc_string` of the fix that keeps a `Shape` of a compressed stream saying D.
pub fn doc_shape_fix(shape_node: &str) -> String {
    format!(
        "{DOC_PREFIX}width +1 after '{shape_node}': the stream is compressed to D−1 (CRMSNorm), \
         the shape it sizes still needs D"
    )
}
