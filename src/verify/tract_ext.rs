//! Operator registrations that tract 0.23.9 lacks or gets wrong, installed by
//! [`tract_onnx_with_extensions`](super::tract_onnx_with_extensions).
//!
//! - `com.microsoft:SkipSimplifiedLayerNormalization`: tract's own builder ignores the optional
//!   `bias` input (4th input), but onnxruntime (checked with 1.32) adds it:
//!   `input_skip_bias_sum = input + skip + bias`, `output = RMSNorm(sum) * gamma`. The rewrite
//!   emits exactly that form when it turns a biased `SkipLayerNormalization` into the simplified
//!   one, so tract must add the bias too. This builder does.
//! - `CumSum`: tract's ONNX `Cast(to=int64)` produces its symbolic-integer type `TDim`, which
//!   tract's `CumSum` kernel does not accept ("TDim is not a number"): Hugging Face GPT-2/OPT
//!   exports compute position ids as `CumSum(Cast(mask, int64))` and fail to run. This builder
//!   casts a `TDim` input to `i64` around the sum.
//! - `Gemm`: tract multiplies `C` by `beta` (and `A·B` by `alpha`) as `f32` constants, so an
//!   fp16 `Gemm` comes out `f32` and the model fails to translate ("Output mismatch after
//!   rewiring expansion ... expected F16 got F32"). This builder uses constants of the operands'
//!   type and skips multiplications by 1.
//! - `GatherND`: tract reads negative indices as huge unsigned ones (falcon's dynamo export
//!   gathers index `-2`: "Slice: Condition failed: `end <= len`"). This builder wraps constant
//!   negative indices by the data's axis length before tract's `GatherNd`.
//! - `com.microsoft:FusedMatMul`, `FusedGemm`, `FusedConv` (onnxruntime's offline optimiser
//!   writes them): see [`tract_ms`](super::tract_ms), which builds on this module's `Gemm`
//!   (registered beside it by `tract_onnx_with_extensions`; this module does not call it).
//! - `ai.onnx_normopt:CRMSNormalization`: this crate's own op (`--target crmsnorm --emit custom`),
//!   run as one fused operator, [`CrmsNormalization`](crate::ops::CrmsNormalization), that
//!   survives `into_optimized()` (defined with its schema in [`crate::ops`]).

use tract_onnx::model::{optional_outputs, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_core::ops::math::{add, mul, rsqrt};
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer};
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::logic::wire_with_rank_broadcast;

/// Register this module's operators on `onnx`, replacing tract's builders of the same name.
pub(crate) fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert(
        "SkipSimplifiedLayerNormalization",
        skip_simplified_layer_normalization,
    );
    onnx.op_register.insert("CumSum", cumsum);
    onnx.op_register.insert("Gemm", gemm);
    onnx.op_register.insert("GatherND", gather_nd);
    onnx.op_register
        .insert(crate::ops::CRMS_OP, crate::ops::crms_normalization);
}

fn gather_nd(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let batch_dims = node.get_attr_opt("batch_dims")?.unwrap_or(0);
    Ok((expand(GatherNd { batch_dims }), vec![]))
}

/// ONNX `GatherND` with constant negative indices wrapped.
#[derive(Debug, Clone)]
struct GatherNd {
    batch_dims: usize,
}

impl Expansion for GatherNd {
    fn name(&self) -> StaticName {
        "GatherNdWrapped".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, &inputs[0].datum_type)?;
        s.given(&inputs[1].rank, move |s, indices_rank| {
            let indices_rank = indices_rank as usize;
            for i in 0..(indices_rank - 1) {
                s.equals(&outputs[0].shape[i], &inputs[1].shape[i])?;
            }
            s.given_2(
                &inputs[1].shape[indices_rank - 1],
                &inputs[0].rank,
                move |s, n, data_rank| {
                    if let Ok(n) = n.to_i64() {
                        let n = n as usize + self.batch_dims;
                        ensure!(
                            n <= data_rank as usize,
                            "GatherND indexes {n} axes of a rank {data_rank} tensor"
                        );
                        s.equals(
                            &outputs[0].rank,
                            (indices_rank - 1 + data_rank as usize - n) as i64,
                        )?;
                        for i in 0..(data_rank as usize - n) {
                            s.equals(
                                &outputs[0].shape[indices_rank - 1 + i],
                                &inputs[0].shape[n + i],
                            )?;
                        }
                    }
                    Ok(())
                },
            )
        })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let data = model.outlet_fact(inputs[0])?.clone();
        let mut indices = inputs[1];
        if let Some(k) = model.outlet_fact(inputs[1])?.konst.clone() {
            let v = k.cast_to::<i64>()?;
            let v = v.try_as_plain_ram()?.as_slice::<i64>()?.to_vec();
            let n = k.shape().last().copied().unwrap_or(0);
            if n > 0 && v.iter().any(|&x| x < 0) {
                let mut w = Vec::with_capacity(v.len());
                for (p, &x) in v.iter().enumerate() {
                    let len = data.shape[self.batch_dims + p % n].to_i64()?;
                    w.push(if x < 0 { x + len } else { x });
                }
                let t = Tensor::from_shape(k.shape(), &w)?;
                indices = model.add_const(format!("{prefix}.indices"), t)?;
            }
        }
        model.wire_node(
            prefix,
            tract_onnx::tract_core::ops::array::GatherNd::new(self.batch_dims),
            &[inputs[0], indices],
        )
    }
}

fn gemm(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let alpha = node.get_attr_opt("alpha")?.unwrap_or(1.);
    let beta = node.get_attr_opt("beta")?.unwrap_or(1.);
    let trans_a = node.get_attr_opt("transA")?.unwrap_or(false);
    let trans_b = node.get_attr_opt("transB")?.unwrap_or(false);
    Ok((
        expand(Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        }),
        vec![],
    ))
}

/// ONNX `Gemm`: `alpha · A'·B' + beta · C`, computed in the operands' type.
#[derive(Debug, Clone)]
pub(crate) struct Gemm {
    pub alpha: f32,
    pub beta: f32,
    pub trans_a: bool,
    pub trans_b: bool,
}

impl Expansion for Gemm {
    fn name(&self) -> StaticName {
        "GemmTyped".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        if inputs.len() < 2 {
            bail!(
                "Wrong input number. Rules expect at least 2, node has {}.",
                inputs.len()
            );
        }
        if inputs.len() == 3 {
            s.equals(&inputs[2].datum_type, &outputs[0].datum_type)?;
        }
        s.equals(&inputs[0].rank, 2)?;
        s.equals(&inputs[1].rank, 2)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[1].datum_type, &outputs[0].datum_type)?;
        let (ca, ra) = if self.trans_a { (0, 1) } else { (1, 0) };
        let (cb, rb) = if self.trans_b { (0, 1) } else { (1, 0) };
        s.equals(&inputs[0].shape[ra], &outputs[0].shape[0])?;
        s.equals(&inputs[0].shape[ca], &inputs[1].shape[rb])?;
        s.equals(&inputs[1].shape[cb], &outputs[0].shape[1])?;
        Ok(())
    }

    fn wire(
        &self,
        name: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        use tract_onnx::tract_core::ops::change_axes::AxisOp;
        use tract_onnx::tract_core::ops::einsum::EinSum;
        let (a, b, c) = (inputs[0], inputs[1], inputs.get(2).copied());
        let dt = model.outlet_fact(a)?.datum_type;
        let axes = AxesMapping::for_numpy_matmul(2, self.trans_a, self.trans_b, false)?;
        let mut wire = model.wire_node(format!("{name}.ab"), EinSum::new(axes, dt), &[a, b])?[0];
        let scalar = |v: f32, rank: usize| -> TractResult<Tensor> {
            tensor0(v)
                .cast_to_dt(dt)?
                .into_owned()
                .broadcast_into_rank(rank)
        };
        if self.alpha != 1.0 {
            let rank = model.outlet_fact(wire)?.rank();
            let alpha = model.add_const(format!("{name}.alpha.cst"), scalar(self.alpha, rank)?)?;
            wire = model.wire_node(format!("{name}.alpha_ab"), mul(), &[alpha, wire])?[0];
        }
        if let (true, Some(mut c)) = (self.beta != 0.0, c) {
            while model.outlet_fact(wire)?.rank() > model.outlet_fact(c)?.rank() {
                let r = model.outlet_fact(c)?.rank();
                c = model.wire_node(format!("{name}.c_add_axis_{r}"), AxisOp::Add(0), &[c])?[0];
            }
            if self.beta != 1.0 {
                let rank = model.outlet_fact(c)?.rank();
                let beta = model.add_const(format!("{name}.beta.cst"), scalar(self.beta, rank)?)?;
                c = model.wire_node(format!("{name}.beta_c"), mul(), &[beta, c])?[0];
            }
            wire = model.wire_node(name, add(), &[wire, c])?[0];
        }
        Ok(tvec!(wire))
    }
}

fn cumsum(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let reverse = node.get_attr_opt::<i64>("reverse")? == Some(1);
    let exclusive = node.get_attr_opt::<i64>("exclusive")? == Some(1);
    Ok((expand(CumSum { reverse, exclusive }), vec![]))
}

/// ONNX `CumSum(x, axis)` that also sums `TDim` tensors (as `i64`).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct CumSum {
    reverse: bool,
    exclusive: bool,
}

impl Expansion for CumSum {
    fn name(&self) -> StaticName {
        "CumSumTDim".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        s.equals(&inputs[1].rank, 0)?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let axis = model
            .outlet_fact(inputs[1])?
            .konst
            .as_ref()
            .context("CumSum: the axis must be a constant")?
            .cast_to_scalar::<i64>()?;
        let fact = model.outlet_fact(inputs[0])?.clone();
        let rank = fact.rank() as i64;
        let axis = if axis < 0 { axis + rank } else { axis } as usize;
        let op = tract_onnx::tract_core::ops::array::CumSum {
            axis,
            exclusive: self.exclusive,
            reverse: self.reverse,
        };
        if fact.datum_type == DatumType::TDim {
            let x = model.wire_node(
                format!("{prefix}.to_i64"),
                cast(DatumType::I64),
                &[inputs[0]],
            )?;
            let y = model.wire_node(format!("{prefix}.sum"), op, &x)?;
            model.wire_node(prefix, cast(DatumType::TDim), &y)
        } else {
            model.wire_node(prefix, op, &[inputs[0]])
        }
    }
}

/// `SkipSimplifiedLayerNormalization(input, skip, gamma[, bias])` →
/// `(output, mean?, inv_std_var?, input_skip_bias_sum?)`; `mean` is not supported (onnxruntime
/// never computes it for the simplified variant).
fn skip_simplified_layer_normalization(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let epsilon = node.get_attr_opt("epsilon")?.unwrap_or(1e-5f32);
    let have_bias = node.input.len() >= 4 && !node.input[3].is_empty();
    let mut oo = optional_outputs(node).skip(1);
    let mean_out = oo.next().flatten();
    let invstd_out = oo.next().flatten();
    let sum_out = oo.next().flatten();
    ensure!(
        mean_out.is_none(),
        "SkipSimplifiedLayerNormalization: the mean output is unsupported"
    );
    Ok((
        expand(SkipSimplifiedLayerNorm {
            epsilon,
            have_bias,
            invstd: invstd_out.is_some(),
            sum: sum_out.is_some(),
        }),
        vec![],
    ))
}

#[derive(Debug, Clone)]
struct SkipSimplifiedLayerNorm {
    epsilon: f32,
    have_bias: bool,
    invstd: bool,
    sum: bool,
}

impl Expansion for SkipSimplifiedLayerNorm {
    fn name(&self) -> StaticName {
        "SkipSimplifiedLayerNormWithBias".into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(1 + self.invstd as usize + self.sum as usize)
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 3 + self.have_bias as usize)?;
        check_output_arity(outputs, self.nboutputs()?)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        if self.sum {
            let si = 1 + self.invstd as usize;
            s.equals(&inputs[0].datum_type, &outputs[si].datum_type)?;
            s.equals(&inputs[0].shape, &outputs[si].shape)?;
        }
        if self.invstd {
            s.equals(&outputs[1].datum_type, DatumType::F32)?;
            s.equals(&inputs[0].rank, &outputs[1].rank)?;
        }
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let fact = model.outlet_fact(inputs[0])?.clone();
        let rank = fact.rank();
        let dt = fact.datum_type;
        let stash = DatumType::F32;

        let mut sum = wire_with_rank_broadcast(
            format!("{prefix}.skip"),
            model,
            add(),
            &[inputs[0], inputs[1]],
        )?[0];
        if self.have_bias {
            sum = wire_with_rank_broadcast(
                format!("{prefix}.bias"),
                model,
                add(),
                &[sum, inputs[3]],
            )?[0];
        }
        let x = model.wire_node(format!("{prefix}.cast_x"), cast(stash), &[sum])?[0];
        let mean_sq = model.wire_node(
            format!("{prefix}.mean_sq"),
            Reduce {
                axes: tvec![rank - 1],
                reducer: Reducer::MeanOfSquares,
            },
            &[x],
        )?[0];
        let eps = model.add_const(format!("{prefix}.eps"), tensor0(self.epsilon))?;
        let mean_sq_eps =
            wire_with_rank_broadcast(format!("{prefix}.add_eps"), model, add(), &[mean_sq, eps])?
                [0];
        let inv_rms = model.wire_node(format!("{prefix}.rsqrt"), rsqrt(), &[mean_sq_eps])?[0];
        let normalized =
            wire_with_rank_broadcast(format!("{prefix}.norm"), model, mul(), &[x, inv_rms])?[0];
        let normalized = model.wire_node(format!("{prefix}.cast_out"), cast(dt), &[normalized])?[0];
        let output = wire_with_rank_broadcast(
            format!("{prefix}.scaled"),
            model,
            mul(),
            &[normalized, inputs[2]],
        )?[0];
        let mut outputs = tvec!(output);
        if self.invstd {
            outputs.push(inv_rms);
        }
        if self.sum {
            outputs.push(sum);
        }
        Ok(outputs)
    }
}
