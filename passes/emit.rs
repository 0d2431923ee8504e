//! Building the nodes the rewrite adds: each norm output form ([`NormOut`], one builder per
//! form, chosen by lowering), centering, bias adds, and the `doc_string`s that say why they are
//! there. Only node construction lives here: what to build and where is decided before
//! (`rewrite/lower.rs`), the driver calls these builders.

use super::math::{self, Basis};
use super::norms::SkipParts;
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

/// The concrete form of a replaced norm's output, chosen by lowering (`rewrite/lower.rs`) from
/// the target, the emit flag, the opset and the norm; [`Builder::norm`] builds each form with
/// its own builder. A new output form is a new variant here, its name in [`NormOut::name`], the
/// case of lowering that chooses it, and its builder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormOut {
    /// ONNX `RMSNormalization` (opset ≥ 23).
    RmsNormalization,
    /// onnxruntime's `SimplifiedLayerNormalization`.
    SimplifiedLayerNormalization,
    /// Standard ops at the model's opset (below 23): `x / sqrt(mean(x²) + ε) [⊙ γ]`.
    DecomposedRms,
    /// onnxruntime's fused residual add + RMSNorm, `com.microsoft:SkipSimplifiedLayerNormalization`
    /// (a Skip norm without a bias, `--emit onnxruntime`).
    SkipSimplifiedLayerNormalization,
    /// CRMSNorm of a stream compressed from width D into [`Basis::Orthonormal`]: an RMSNorm
    /// over the D−1 entries, written in the RMSNorm form `core` (so that a runtime fuses it as
    /// it fuses RMSNorm).
    OrthoCrms {
        /// The uncompressed width D.
        width: usize,
        /// The RMSNorm form of the core.
        core: RmsCore,
    },
    /// CRMSNorm of a stream compressed from width D into [`Basis::Coordinate`] as one op
    /// `ai.onnx_normopt:CRMSNormalization`.
    CustomCrms {
        /// The uncompressed width D.
        width: usize,
    },
}

/// The RMSNorm form of a CRMSNorm core in [`Basis::Orthonormal`] ([`NormOut::OrthoCrms`]): the
/// forms [`NormOut`] writes RMSNorm in, but onnxruntime's fused Skip form (the residual sum of a
/// Skip norm is added before the core).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RmsCore {
    /// ONNX `RMSNormalization` (opset ≥ 23).
    RmsNormalization,
    /// onnxruntime's `SimplifiedLayerNormalization`.
    SimplifiedLayerNormalization,
    /// Standard ops at the model's opset (below 23).
    Decomposed,
}

/// An explicitly centred value compressed for its stream-side reads (CRMSNorm), as lowering
/// decided it; built by [`Builder::compress_value`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompressValue {
    /// The uncompressed width D.
    pub width: usize,
    /// The basis of the compressed stream.
    pub basis: Basis,
    /// The value's element type (of the new constants).
    pub data_type: i32,
}

impl NormOut {
    /// The form's name in the report (`form_out`). A CRMSNorm whose readers were not folded
    /// (`decompressed`, [`NormBuild::decompress`]) decompresses its output and applies γ, β to
    /// it: "… + decompression".
    pub fn name(self, decompressed: bool) -> String {
        let core = match self {
            NormOut::RmsNormalization => "RMSNormalization",
            NormOut::SimplifiedLayerNormalization => "SimplifiedLayerNormalization",
            NormOut::DecomposedRms => "decomposed RMSNorm",
            NormOut::SkipSimplifiedLayerNormalization => {
                "com.microsoft:SkipSimplifiedLayerNormalization"
            }
            NormOut::OrthoCrms { core, .. } => match core {
                RmsCore::RmsNormalization => "CRMSNorm as RMSNormalization",
                RmsCore::SimplifiedLayerNormalization => "CRMSNorm as SimplifiedLayerNormalization",
                RmsCore::Decomposed => "CRMSNorm as decomposed RMSNorm",
            },
            NormOut::CustomCrms { .. } => "CRMSNormalization",
        };
        match self {
            NormOut::OrthoCrms { .. } | NormOut::CustomCrms { .. } if decompressed => {
                format!("{core} + decompression")
            }
            _ => core.to_string(),
        }
    }
}

/// What a replaced norm normalises.
#[derive(Clone, Debug, PartialEq)]
pub enum NormInput {
    /// A value.
    Value(String),
    /// A Skip norm's residual sum `a + b (+ bias)`, written to its sum output when the graph
    /// reads it.
    Sum(SkipParts),
}

impl NormInput {
    /// The same input with the values `rename` maps (explicitly centred values) replaced; the
    /// bias, a constant, stays.
    pub fn renamed(&self, rename: impl Fn(&str) -> String) -> NormInput {
        match self {
            NormInput::Value(x) => NormInput::Value(rename(x)),
            NormInput::Sum(s) => NormInput::Sum(SkipParts {
                a: rename(&s.a),
                b: rename(&s.b),
                ..s.clone()
            }),
        }
    }
}

/// The scale γ a replaced norm's nodes read.
#[derive(Clone, Debug, PartialEq)]
pub enum Scale {
    /// A value of the graph (the norm's γ, a constant or its float Cast).
    Value(String),
    /// A new constant vector named after `what`: ones (a folded γ where the op needs a scale),
    /// or a broadcast γ widened to the normalised width (a fused op's scale has that width).
    New {
        /// The name's stem.
        what: &'static str,
        /// Its element type.
        data_type: i32,
        /// Its values.
        values: Vec<f64>,
    },
}

/// A norm's replacement, every choice made: the output form, its input, γ and β as the new
/// nodes read them, ε, types and the output value. Built by [`Builder::norm`].
#[derive(Clone, Debug, PartialEq)]
pub struct NormBuild {
    /// The output form.
    pub form: NormOut,
    /// What it normalises.
    pub input: NormInput,
    /// γ, when the nodes multiply by one.
    pub scale: Option<Scale>,
    /// β, when the nodes add one.
    pub shift: Option<String>,
    /// ε, copied.
    pub epsilon: f32,
    /// The element type of the norm's values (of new constants).
    pub data_type: i32,
    /// The type a decomposed core computes in, when the input graph said so.
    pub compute_type: Option<i32>,
    /// The norm's output value (kept: its readers need no change).
    pub out: String,
    /// CRMSNorm whose readers cannot fold the last entry in (γ/β not folded): the output is the
    /// decompressed width-D vector `Concat(ỹ, −Σỹ)`, with or without an affine.
    pub decompress: bool,
}

impl NormBuild {
    /// The values of the graph its nodes read (before explicitly centred values are renamed).
    pub fn reads(&self) -> Vec<String> {
        let mut v = match &self.input {
            NormInput::Value(x) => vec![x.clone()],
            NormInput::Sum(s) => {
                let mut v = vec![s.a.clone(), s.b.clone()];
                v.extend(s.bias.iter().cloned());
                v
            }
        };
        if let Some(Scale::Value(g)) = &self.scale {
            v.push(g.clone());
        }
        v.extend(self.shift.iter().cloned());
        v
    }
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

    /// The replacement of one norm, as lowering decided it ([`NormBuild`]): the residual sum
    /// of a Skip norm, the new scale constant if any, then the builder of its [`NormOut`].
    pub fn norm(&mut self, nb: &NormBuild) -> Result<()> {
        let x = match (&nb.input, nb.form) {
            // The fused op computes the sum itself. No plain Add: its names are taken all the
            // same, so that the names of everything built after it do not depend on the form.
            (NormInput::Sum(s), NormOut::SkipSimplifiedLayerNormalization) => {
                self.reserve_node("Add", s.sum.as_deref());
                String::new()
            }
            (NormInput::Sum(s), _) => {
                let sum = s.sum.as_deref();
                let ab = self.node(
                    "",
                    "Add",
                    &[&s.a, &s.b],
                    if s.bias.is_some() { None } else { sum },
                    vec![],
                );
                match &s.bias {
                    Some(bias) => self.node("", "Add", &[&ab, bias], sum, vec![]),
                    None => ab,
                }
            }
            (NormInput::Value(x), _) => x.clone(),
        };
        let scale = match &nb.scale {
            Some(Scale::Value(v)) => Some(v.clone()),
            Some(Scale::New {
                what,
                data_type,
                values,
            }) => Some(self.constant(what, &[values.len()], *data_type, values)?),
            None => None,
        };
        let (scale, shift) = (scale.as_deref(), nb.shift.as_deref());
        match nb.form {
            NormOut::RmsNormalization => {
                self.rms_fused("RMSNormalization", &x, scale, shift, nb.epsilon, &nb.out)
            }
            NormOut::SimplifiedLayerNormalization => self.rms_fused(
                "SimplifiedLayerNormalization",
                &x,
                scale,
                shift,
                nb.epsilon,
                &nb.out,
            ),
            NormOut::DecomposedRms => self.rms_decomposed(&x, scale, shift, nb),
            NormOut::SkipSimplifiedLayerNormalization => self.skip_simplified(nb, scale, shift),
            NormOut::OrthoCrms { width, core } => {
                let decompress = nb.decompress.then_some((scale, shift));
                self.crms_ortho(&x, width, core, decompress, nb)
            }
            NormOut::CustomCrms { width } => {
                self.crms_coordinate(&x, width, nb.decompress.then_some((scale, shift)), nb)
            }
        }
    }

    /// The RMSNorm core of `x` in `core`'s form into `nb.out`, with `scale` (needed by the
    /// fused forms) and without β.
    fn rms_core(
        &mut self,
        core: RmsCore,
        x: &str,
        scale: Option<&str>,
        nb: &NormBuild,
    ) -> Result<()> {
        match core {
            RmsCore::RmsNormalization => {
                self.rms_fused("RMSNormalization", x, scale, None, nb.epsilon, &nb.out)
            }
            RmsCore::SimplifiedLayerNormalization => self.rms_fused(
                "SimplifiedLayerNormalization",
                x,
                scale,
                None,
                nb.epsilon,
                &nb.out,
            ),
            RmsCore::Decomposed => self.rms_decomposed(x, scale, None, nb),
        }
    }

    /// `x` in the type a decomposed core computes in — `compute_type` when the graph said, else
    /// f32 for f16/bf16, else `data_type` — cast to it when that differs. Returns the value and
    /// the type.
    fn computed_in(&mut self, x: &str, data_type: i32, compute_type: Option<i32>) -> (String, i32) {
        let wide = data_type == dt::FLOAT16 || data_type == dt::BFLOAT16;
        let ct = compute_type.unwrap_or(if wide { dt::FLOAT } else { data_type });
        let xin = if ct != data_type {
            self.node("", "Cast", &[x], None, vec![attr_i("to", ct as i64)])
        } else {
            x.to_string()
        };
        (xin, ct)
    }

    /// `core(out')` then `out = out' + β` when there is a β, else `core(out)`.
    fn then_shift(
        &mut self,
        shift: Option<&str>,
        out: &str,
        core: impl FnOnce(&mut Self, &str) -> Result<()>,
    ) -> Result<()> {
        let core_out = if shift.is_some() {
            self.value("rms")
        } else {
            out.to_string()
        };
        core(self, &core_out)?;
        if let Some(b) = shift {
            self.node("", "Add", &[&core_out, b], Some(out), vec![]);
        }
        Ok(())
    }

    /// RMSNorm as one op `op` ([`NormOut::RmsNormalization`],
    /// [`NormOut::SimplifiedLayerNormalization`]): `op(x, γ) [+ β]`; the op needs its scale.
    fn rms_fused(
        &mut self,
        op: &str,
        x: &str,
        scale: Option<&str>,
        shift: Option<&str>,
        eps: f32,
        out: &str,
    ) -> Result<()> {
        let g =
            scale.ok_or_else(|| crate::Error::Internal("fused RMSNorm needs a scale".into()))?;
        self.then_shift(shift, out, |b, core_out| {
            b.node(
                "",
                op,
                &[x, g],
                Some(core_out),
                vec![
                    attr_i("axis", -1),
                    attr_f("epsilon", eps),
                    attr_i("stash_type", 1),
                ],
            );
            Ok(())
        })
    }

    /// RMSNorm in standard ops at the model's opset ([`NormOut::DecomposedRms`]):
    /// `x / sqrt(mean(x²) + ε) [⊙ γ] [+ β]`, computed in the compute type (f32 for f16/bf16
    /// unless the graph said otherwise). It multiplies by γ whenever there is one (onnxruntime
    /// fuses `Div → Mul`).
    fn rms_decomposed(
        &mut self,
        x: &str,
        gamma: Option<&str>,
        shift: Option<&str>,
        nb: &NormBuild,
    ) -> Result<()> {
        let (data_type, eps) = (nb.data_type, nb.epsilon);
        self.then_shift(shift, &nb.out, |b, core_out| {
            let (xin, ct) = b.computed_in(x, data_type, nb.compute_type);
            let two = b.constant("two", &[], ct, &[2.0])?;
            let sq = b.node("", "Pow", &[&xin, &two], None, vec![]);
            let ms = b.reduce_mean_last(&sq)?;
            let e = b.constant("epsilon", &[], ct, &[eps as f64])?;
            let a = b.node("", "Add", &[&ms, &e], None, vec![]);
            let s = b.node("", "Sqrt", &[&a], None, vec![]);
            let last_is_div = gamma.is_none() && ct == data_type;
            let d = b.node(
                "",
                "Div",
                &[&xin, &s],
                if last_is_div { Some(core_out) } else { None },
                vec![],
            );
            let back = if ct != data_type {
                b.node(
                    "",
                    "Cast",
                    &[&d],
                    if gamma.is_none() {
                        Some(core_out)
                    } else {
                        None
                    },
                    vec![attr_i("to", data_type as i64)],
                )
            } else {
                d
            };
            if let Some(g) = gamma {
                b.node("", "Mul", &[&back, g], Some(core_out), vec![]);
            }
            Ok(())
        })
    }

    /// onnxruntime's fused residual add + RMSNorm
    /// ([`NormOut::SkipSimplifiedLayerNormalization`]): `SkipSimplifiedLayerNormalization(a, b,
    /// γ)` without a bias, its sum output the Skip norm's, `[+ β]`.
    fn skip_simplified(
        &mut self,
        nb: &NormBuild,
        scale: Option<&str>,
        shift: Option<&str>,
    ) -> Result<()> {
        let NormInput::Sum(SkipParts { a, b, sum, .. }) = &nb.input else {
            return Err(crate::Error::Internal(
                "SkipSimplifiedLayerNormalization without its two summands".into(),
            ));
        };
        let sum_out = sum.clone().unwrap_or_default();
        let g = scale.unwrap_or_default();
        self.then_shift(shift, &nb.out, |bd, core_out| {
            bd.node_outputs(
                "com.microsoft",
                "SkipSimplifiedLayerNormalization",
                &[a, b, g],
                vec![core_out.to_string(), String::new(), String::new(), sum_out],
                vec![attr_f("epsilon", nb.epsilon)],
            );
            Ok(())
        })
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

    /// CRMSNorm in [`Basis::Coordinate`] ([`NormOut::CustomCrms`]): one
    /// [`crms_custom`](Self::crms_custom) node on the compressed x̃ (width D−1) —
    /// `x̃ / sqrt((Σx̃² + (Σx̃)²)/D + ε)`, the first D−1 entries of RMSNorm(x) for the zero-mean
    /// x = (x̃, −Σx̃) — into `nb.out`. With `decompress` = (γ, β) (each optional), the
    /// decompressed vector `Concat(ỹ, −Σỹ)` gets them (standard ops).
    fn crms_coordinate(
        &mut self,
        x: &str,
        d: usize,
        decompress: Option<(Option<&str>, Option<&str>)>,
        nb: &NormBuild,
    ) -> Result<()> {
        let (eps, data_type, out) = (nb.epsilon, nb.data_type, nb.out.as_str());
        let Some((gamma, beta)) = decompress else {
            self.crms_custom(x, d, eps, data_type, Some(out));
            return Ok(());
        };
        let y = self.crms_custom(x, d, eps, data_type, None);
        let sy = self.reduce_sum_last(&y)?;
        let neg = self.node("", "Neg", &[&sy], None, vec![]);
        self.concat_affine(&[&y, &neg], gamma, beta, out);
        Ok(())
    }

    /// `Concat(parts) ⊙ γ + β` along the last axis (γ, β optional) into `out`.
    fn concat_affine(
        &mut self,
        parts: &[&str],
        gamma: Option<&str>,
        beta: Option<&str>,
        out: &str,
    ) {
        let affine = gamma.is_some() || beta.is_some();
        let full = self.node(
            "",
            "Concat",
            parts,
            if affine { None } else { Some(out) },
            vec![attr_i("axis", -1)],
        );
        let scaled = match gamma {
            Some(g) => self.node(
                "",
                "Mul",
                &[&full, g],
                if beta.is_none() { Some(out) } else { None },
                vec![],
            ),
            None => full,
        };
        if let Some(bt) = beta {
            self.node("", "Add", &[&scaled, bt], Some(out), vec![]);
        }
    }

    /// CRMSNorm in [`Basis::Orthonormal`] ([`NormOut::OrthoCrms`]) of `z` = M·x (width D−1,
    /// [`math::ortho_project`]) into `nb.out`: since ‖z‖ = ‖x‖, it is an RMSNorm of z over its
    /// D−1 entries with ε′ = ε·D/(D−1) ([`math::ortho_epsilon`]), times s = √(D/(D−1))
    /// ([`math::ortho_scale`]), built as `core` builds RMSNorm (so every runtime that fuses
    /// RMSNorm fuses it). A compressed output (folded readers) has scale ones: the readers
    /// carry s (their weights are s·M·W). With `decompress` = (γ, β) (each optional) the scale
    /// is s and the decompressed x̂ = Mᵀŷ = (ŷ − k·Σŷ, −Σŷ/√D) ([`math::ortho_coeffs`]) gets
    /// γ and β.
    fn crms_ortho(
        &mut self,
        z: &str,
        d: usize,
        core: RmsCore,
        decompress: Option<(Option<&str>, Option<&str>)>,
        nb: &NormBuild,
    ) -> Result<()> {
        let data_type = nb.data_type;
        let (s, name) = if decompress.is_some() {
            (math::ortho_scale(d), "scale")
        } else {
            (1.0, "ones")
        };
        let scale = self.constant(name, &[d - 1], data_type, &vec![s; d - 1])?;
        let mut core_nb = NormBuild {
            epsilon: math::ortho_epsilon(f64::from(nb.epsilon), d) as f32,
            decompress: false,
            ..nb.clone()
        };
        let Some((gamma, beta)) = decompress else {
            return self.rms_core(core, z, Some(&scale), &core_nb);
        };
        core_nb.out = self.value("crms");
        self.rms_core(core, z, Some(&scale), &core_nb)?;
        let y = core_nb.out;
        let (_, k) = math::ortho_coeffs(d);
        let sum = self.reduce_sum_last(&y)?;
        let kc = self.constant("k", &[], data_type, &[k])?;
        let ks = self.node("", "Mul", &[&sum, &kc], None, vec![]);
        let head = self.node("", "Sub", &[&y, &ks], None, vec![]);
        let tc = self.constant("tail", &[], data_type, &[-1.0 / (d as f64).sqrt()])?;
        let tail = self.node("", "Mul", &[&sum, &tc], None, vec![]);
        self.concat_affine(&[&head, &tail], gamma, beta, &nb.out);
        Ok(())
    }

    /// The compressed width-D−1 stream value for `x` (any mean, width D) as `c` says, into a
    /// new value: in [`Basis::Coordinate`] the centred x sliced to D−1; in
    /// [`Basis::Orthonormal`] z = M·x = x[0:D−1] − x·w with wⱼ = k + c·[j = D−1]
    /// ([`math::ortho_project`]; M·1 = 0, so x need not be centred first), constants of
    /// `c.data_type`. Returns it.
    pub fn compress_value(&mut self, x: &str, c: &CompressValue) -> Result<String> {
        let d = c.width;
        match c.basis {
            Basis::Coordinate => {
                let centred = self.center(x)?;
                self.slice_last(&centred, d - 1)
            }
            Basis::Orthonormal => {
                let (cc, k) = math::ortho_coeffs(d);
                let mut w = vec![k; d];
                w[d - 1] += cc;
                let wc = self.constant("shift_weights", &[d, 1], c.data_type, &w)?;
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
