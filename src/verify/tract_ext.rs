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
