//! `com.microsoft` fused operators that onnxruntime's offline optimiser writes
//! (`SessionOptions.optimized_model_filepath`, `ORT_ENABLE_EXTENDED`) and tract 0.23.9 lacks,
//! registered by [`tract_onnx_with_extensions`](super::tract_onnx_with_extensions). Each one is
//! an expansion into tract's own ops, as the onnxruntime contrib-op specification defines it:
//!
//! - `FusedMatMul(A, B)` (also its older name `TransposeMatMul`): `alpha · A' · B'` with NumPy
//!   matmul broadcasting. `transBatchA` first moves A's leading axis to just before its last
//!   one (rank R: permutation `[1, …, R−2, 0, R−1]`), then `transA` swaps A's last two axes;
//!   likewise for B.
//! - `FusedGemm(A, B[, C])`: `act(alpha · A'·B' + beta · C)`, `act` named by `activation` with
//!   parameters `activation_alpha`/`activation_beta`.
//! - `FusedConv(X, W[, B][, Z])`: `act(Conv(X, W, B) + Z)` (the Conv attributes), `act` named by
//!   `activation` with parameters `activation_params`.
//!
//! Activations: `Relu`, `LeakyRelu` (α, default 0.01), `Sigmoid`, `Tanh`, `HardSigmoid`
//! (α 0.2, β 0.5: `max(0, min(1, αx + β))`) and `Clip` (min, max). Any other is refused with a
//! message naming it, so the verifier lists tract as unable to run the model rather than
//! computing something else.
//!
//! tract already has `Gelu`, `FastGelu` (with its optional bias), `BiasGelu`, `QuickGelu`,
//! `SkipLayerNormalization` and `SimplifiedLayerNormalization`; `tests/ms_ops.rs` checks them
//! and these against onnxruntime on single-op models.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::math::{add, max, min, mul, tanh};
use tract_onnx::tract_core::ops::nn::{leaky_relu, sigmoid};
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::cnn::{Conv, PaddingSpec};
use tract_onnx::tract_hir::ops::logic::wire_with_rank_broadcast;
use tract_onnx::tract_hir::ops::matmul::{compute_shapes, MatMulInference};

use super::tract_ext::Gemm;

/// Register this module's operators on `onnx`.
pub(crate) fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert("FusedMatMul", fused_matmul);
    onnx.op_register.insert("TransposeMatMul", fused_matmul);
    onnx.op_register.insert("FusedGemm", fused_gemm);
    onnx.op_register.insert("FusedConv", fused_conv);
}

/// A fused activation of onnxruntime's `FusedGemm` / `FusedConv`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Activation {
    Relu,
    LeakyRelu(f32),
    Sigmoid,
    Tanh,
    HardSigmoid(f32, f32),
    Clip(f32, f32),
}

impl Activation {
    /// The activation `name` with its parameters `params` (in onnxruntime's order; missing ones
    /// take the ONNX defaults). `None` for an empty name.
    pub(crate) fn parse(op: &str, name: &str, params: &[f32]) -> TractResult<Option<Activation>> {
        let p = |i: usize, default: f32| params.get(i).copied().unwrap_or(default);
        Ok(Some(match name {
            "" => return Ok(None),
            "Relu" => Activation::Relu,
            "LeakyRelu" => Activation::LeakyRelu(p(0, 0.01)),
            "Sigmoid" => Activation::Sigmoid,
            "Tanh" => Activation::Tanh,
            "HardSigmoid" => Activation::HardSigmoid(p(0, 0.2), p(1, 0.5)),
            "Clip" => Activation::Clip(p(0, f32::MIN), p(1, f32::MAX)),
            other => bail!("{op}: activation `{other}` is not supported"),
        }))
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, x: OutletId) -> TractResult<OutletId> {
        let dt = model.outlet_fact(x)?.datum_type;
        let k = |model: &mut TypedModel, name: &str, v: f32| -> TractResult<OutletId> {
            model.add_const(
                format!("{prefix}.{name}"),
                tensor0(v).cast_to_dt(dt)?.into_owned(),
            )
        };
        let bin = |model: &mut TypedModel, name: &str, op, a, b| -> TractResult<OutletId> {
            Ok(wire_with_rank_broadcast(format!("{prefix}.{name}"), model, op, &[a, b])?[0])
        };
        Ok(match *self {
            Activation::Relu => {
                let zero = k(model, "zero", 0.0)?;
                bin(model, "relu", max(), x, zero)?
            }
            Activation::LeakyRelu(alpha) => {
                model.wire_node(format!("{prefix}.leaky_relu"), leaky_relu(alpha), &[x])?[0]
            }
            Activation::Sigmoid => {
                model.wire_node(format!("{prefix}.sigmoid"), sigmoid(), &[x])?[0]
            }
            Activation::Tanh => model.wire_node(format!("{prefix}.tanh"), tanh(), &[x])?[0],
            Activation::HardSigmoid(alpha, beta) => {
                let a = k(model, "alpha", alpha)?;
                let b = k(model, "beta", beta)?;
                let one = k(model, "one", 1.0)?;
                let zero = k(model, "zero", 0.0)?;
                let ax = bin(model, "ax", mul(), x, a)?;
                let axb = bin(model, "axb", add(), ax, b)?;
                let lo = bin(model, "min1", min(), axb, one)?;
                bin(model, "max0", max(), lo, zero)?
            }
            Activation::Clip(lo, hi) => {
                let l = k(model, "min", lo)?;
                let h = k(model, "max", hi)?;
                let y = bin(model, "clip_lo", max(), x, l)?;
                bin(model, "clip_hi", min(), y, h)?
            }
        })
    }
}

fn fused_matmul(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let flag =
        |name: &str| -> TractResult<bool> { Ok(node.get_attr_opt::<i64>(name)?.unwrap_or(0) != 0) };
    Ok((
        expand(FusedMatMul {
            alpha: node.get_attr_opt("alpha")?.unwrap_or(1.0),
            trans_a: flag("transA")?,
            trans_b: flag("transB")?,
            batch_a: flag("transBatchA")?,
            batch_b: flag("transBatchB")?,
        }),
        vec![],
    ))
}

/// `com.microsoft:FusedMatMul`.
#[derive(Debug, Clone)]
pub(crate) struct FusedMatMul {
    pub alpha: f32,
    pub trans_a: bool,
    pub trans_b: bool,
    pub batch_a: bool,
    pub batch_b: bool,
}

/// A shape after `transBatch`: the leading axis moved to just before the last one.
fn batch_moved<D: Clone>(shape: TVec<D>, on: bool) -> TractResult<TVec<D>> {
    if !on {
        return Ok(shape);
    }
    let r = shape.len();
    ensure!(
        r >= 3,
        "FusedMatMul: transBatch needs rank 3 or more, got rank {r}"
    );
    let mut v: TVec<D> = shape[1..r - 1].iter().cloned().collect();
    v.push(shape[0].clone());
    v.push(shape[r - 1].clone());
    Ok(v)
}

impl Expansion for FusedMatMul {
    fn name(&self) -> StaticName {
        "FusedMatMul".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &inputs[1].datum_type)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.given_2(&inputs[0].shape, &inputs[1].shape, move |s, a, b| {
            let a = batch_moved(a, self.batch_a)?;
            let b = batch_moved(b, self.batch_b)?;
            let (_, _, _, c) = compute_shapes(a, b, self.trans_a, self.trans_b, false)?;
            s.equals(&outputs[0].shape, c)
        })?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let mut ops = [inputs[0], inputs[1]];
        for (k, on) in [self.batch_a, self.batch_b].into_iter().enumerate() {
            if on {
                let r = model.outlet_fact(ops[k])?.rank();
                ensure!(
                    r >= 3,
                    "FusedMatMul: transBatch needs rank 3 or more, got rank {r}"
                );
                ops[k] = model.wire_node(
                    format!("{prefix}.batch_move_{k}"),
                    AxisOp::Move(0, r - 2),
                    &[ops[k]],
                )?[0];
            }
        }
        let mm = MatMulInference::default()
            .with_a_trans(self.trans_a)
            .with_b_trans(self.trans_b);
        let mut y = mm.wire(&format!("{prefix}.matmul"), model, &ops)?[0];
        if self.alpha != 1.0 {
            let dt = model.outlet_fact(y)?.datum_type;
            let alpha = model.add_const(
                format!("{prefix}.alpha"),
                tensor0(self.alpha).cast_to_dt(dt)?.into_owned(),
            )?;
            y = wire_with_rank_broadcast(prefix, model, mul(), &[y, alpha])?[0];
        }
        Ok(tvec!(y))
    }
}

fn fused_gemm(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let name: String = node.get_attr_opt("activation")?.unwrap_or_default();
    let mut params = Vec::new();
    for p in ["activation_alpha", "activation_beta", "activation_gamma"] {
        match node.get_attr_opt::<f32>(p)? {
            Some(v) => params.push(v),
            None => break,
        }
    }
    let act = Activation::parse("FusedGemm", &name, &params)?;
    Ok((
        expand(FusedGemm {
            gemm: Gemm {
                alpha: node.get_attr_opt("alpha")?.unwrap_or(1.),
                beta: node.get_attr_opt("beta")?.unwrap_or(1.),
                trans_a: node.get_attr_opt("transA")?.unwrap_or(false),
                trans_b: node.get_attr_opt("transB")?.unwrap_or(false),
            },
            act,
        }),
        vec![],
    ))
}

/// `com.microsoft:FusedGemm`: ONNX `Gemm` followed by an activation.
#[derive(Debug, Clone)]
pub(crate) struct FusedGemm {
    gemm: Gemm,
    act: Option<Activation>,
}

impl Expansion for FusedGemm {
    fn name(&self) -> StaticName {
        "FusedGemm".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        self.gemm.rules(s, inputs, outputs)
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let y = self.gemm.wire(&format!("{prefix}.gemm"), model, inputs)?[0];
        Ok(tvec!(match &self.act {
            Some(a) => a.wire(prefix, model, y)?,
            None => y,
        }))
    }
}

/// ONNX `Conv` padding: explicit `pads`, else `auto_pad`, else none.
fn conv_padding(node: &NodeProto) -> TractResult<PaddingSpec> {
    if let Some(pads) = node.get_attr_opt_tvec::<usize>("pads")? {
        let half = pads.len() / 2;
        return Ok(PaddingSpec::Explicit(
            pads[..half].iter().copied().collect(),
            pads[half..].iter().copied().collect(),
        ));
    }
    let auto: Option<String> = node.get_attr_opt("auto_pad")?;
    Ok(match auto.as_deref().unwrap_or("NOTSET") {
        "VALID" => PaddingSpec::Valid,
        "SAME_UPPER" => PaddingSpec::SameUpper,
        "SAME_LOWER" => PaddingSpec::SameLower,
        "NOTSET" => match node.get_attr_opt_tvec::<usize>("kernel_shape")? {
            Some(k) => PaddingSpec::Explicit(tvec!(0; k.len()), tvec!(0; k.len())),
            None => PaddingSpec::Valid,
        },
        other => bail!("FusedConv: auto_pad `{other}` is not valid"),
    })
}

fn fused_conv(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let present = |i: usize| node.input.get(i).is_some_and(|s| !s.is_empty());
    let has_bias = present(2);
    let has_z = present(3);
    let mut conv = Conv::default().padding(conv_padding(node)?);
    if let Some(k) = node.get_attr_opt_tvec("kernel_shape")? {
        conv = conv.kernel_shape(k);
    }
    if let Some(g) = node.get_attr_opt("group")? {
        conv = conv.group(g);
    }
    if let Some(d) = node.get_attr_opt_tvec("dilations")? {
        conv = conv.dilations(d);
    }
    if let Some(s) = node.get_attr_opt_tvec("strides")? {
        conv = conv.strides(s);
    }
    if has_bias {
        conv = conv.bias_input(2);
    }
    let name: String = node.get_attr_opt("activation")?.unwrap_or_default();
    let params: Vec<f32> = node
        .get_attr_opt_tvec::<f32>("activation_params")?
        .map(|v| v.to_vec())
        .unwrap_or_default();
    let act = Activation::parse("FusedConv", &name, &params)?;
    Ok((
        expand(FusedConv {
            conv,
            n_conv: 2 + has_bias as usize,
            has_z,
            act,
        }),
        vec![],
    ))
}

/// `com.microsoft:FusedConv`: ONNX `Conv`, plus `Z`, then an activation.
#[derive(Debug, Clone)]
pub(crate) struct FusedConv {
    conv: Conv,
    /// Inputs of the convolution itself: X, W and the bias when present.
    n_conv: usize,
    has_z: bool,
    act: Option<Activation>,
}

impl Expansion for FusedConv {
    fn name(&self) -> StaticName {
        "FusedConv".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, self.n_conv + self.has_z as usize)?;
        self.conv.rules(s, &inputs[..self.n_conv], outputs)?;
        if self.has_z {
            let z = &inputs[self.n_conv];
            s.equals(&z.datum_type, &outputs[0].datum_type)?;
            s.equals(&z.shape, &outputs[0].shape)?;
        }
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let mut y = self
            .conv
            .wire(&format!("{prefix}.conv"), model, &inputs[..self.n_conv])?[0];
        if self.has_z {
            y = wire_with_rank_broadcast(
                format!("{prefix}.z"),
                model,
                add(),
                &[y, inputs[self.n_conv]],
            )?[0];
        }
        Ok(tvec!(match &self.act {
            Some(a) => a.wire(prefix, model, y)?,
            None => y,
        }))
    }
}
