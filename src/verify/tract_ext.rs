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
//!   writes them): see [`tract_ms`](super::tract_ms).
//! - `ai.onnx_normopt:CRMSNormalization`: this crate's own op (`--target crmsnorm --emit custom`),
//!   run as one fused operator, [`CrmsNormalization`], that survives `into_optimized()`.

use tract_onnx::model::{optional_outputs, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_core::ops::math::{add, mul, rsqrt};
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer};
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::logic::wire_with_rank_broadcast;
use tract_onnx::tract_hir::tract_num_traits::Float;

/// Register this module's operators on `onnx`, replacing tract's builders of the same name.
pub(crate) fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert(
        "SkipSimplifiedLayerNormalization",
        skip_simplified_layer_normalization,
    );
    onnx.op_register.insert("CumSum", cumsum);
    onnx.op_register.insert("Gemm", gemm);
    onnx.op_register.insert("GatherND", gather_nd);
    onnx.op_register.insert(CRMS_OP_TYPE, crms_normalization);
    super::tract_ms::register(onnx);
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

/// The ONNX op type of [`CrmsNormalization`] (in the
/// [`NORMOPT_DOMAIN`](crate::passes::emit::NORMOPT_DOMAIN) domain).
const CRMS_OP_TYPE: &str = crate::passes::emit::CRMS_OP;

fn crms_normalization(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let epsilon = node.get_attr_opt("epsilon")?.unwrap_or(1e-5f32);
    let width: i64 = node.get_attr("width")?;
    let axis = node.get_attr_opt::<i64>("axis")?.unwrap_or(-1);
    ensure!(
        axis == -1,
        "{CRMS_OP_TYPE}: only axis = -1 is supported, got {axis}"
    );
    ensure!(
        width >= 2,
        "{CRMS_OP_TYPE}: width (the uncompressed D) must be at least 2, got {width}"
    );
    ensure!(
        epsilon.is_finite() && epsilon >= 0.0,
        "{CRMS_OP_TYPE}: epsilon must be a finite number >= 0, got {epsilon}"
    );
    Ok((
        expand(CrmsNormalizationExpansion(CrmsNormalization {
            width: width as usize,
            epsilon,
        })),
        vec![],
    ))
}

/// The loader's view of `ai.onnx_normopt:CRMSNormalization`: type and shape rules, then one
/// [`CrmsNormalization`] node in the typed model.
#[derive(Debug, Clone)]
struct CrmsNormalizationExpansion(CrmsNormalization);

impl Expansion for CrmsNormalizationExpansion {
    fn name(&self) -> StaticName {
        CRMS_OP_TYPE.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        ensure!(
            (1..=2).contains(&inputs.len()),
            "{CRMS_OP_TYPE} takes X and an optional Scale, got {} inputs",
            inputs.len()
        );
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        if inputs.len() == 2 {
            s.equals(&inputs[1].rank, 1)?;
        }
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, self.0.clone(), inputs)
    }
}

/// `ai.onnx_normopt:CRMSNormalization(X[, Scale]) -> Y` as one fused tract operator.
///
/// For every row x̃ of `X` along the last axis (the D−1 entries of a compressed zero-mean
/// vector of width D = `width`):
///
/// `Y = x̃ / sqrt((Σ x̃ᵢ² + (Σ x̃ᵢ)²) / D + ε) [⊙ Scale]`
///
/// — the first D−1 entries of RMSNorm(x) for x = (x̃, −Σ x̃), design §4. One pass per row
/// accumulates Σx̃ and Σx̃² together, a second one scales. `f32` and `f64` compute in their own
/// type; `f16` is widened to `f32` and rounded back once at the end (the decomposed
/// form's `Cast → … → Cast` does the same). `Scale` (rank 1, length D−1) multiplies in the
/// compute type.
#[derive(Debug, Clone)]
pub struct CrmsNormalization {
    /// The uncompressed width D (the divisor); rows have D−1 entries.
    pub width: usize,
    /// ε, added to the mean square inside the square root.
    pub epsilon: f32,
}

impl PartialEq for CrmsNormalization {
    fn eq(&self, other: &Self) -> bool {
        self.width == other.width && self.epsilon.to_bits() == other.epsilon.to_bits()
    }
}

impl Eq for CrmsNormalization {}

/// Accumulation lanes: independent partial sums, so the loops vectorise (4 AVX registers of
/// f32 each for Σx and Σx²).
const LANES: usize = 32;

/// CRMSNorm of one row `x` into `y` (same length), with `1/D`, ε and an optional scale.
#[inline(always)]
fn crms_row<T: Float>(x: &[T], y: &mut [T], inv_width: T, eps: T, scale: Option<&[T]>) {
    let mut s = [T::zero(); LANES];
    let mut q = [T::zero(); LANES];
    let (chunks, rest) = x.as_chunks::<LANES>();
    for c in chunks {
        for i in 0..LANES {
            s[i] = s[i] + c[i];
            q[i] = q[i] + c[i] * c[i];
        }
    }
    let (mut sum, mut sq) = (T::zero(), T::zero());
    for i in 0..LANES {
        sum = sum + s[i];
        sq = sq + q[i];
    }
    for &v in rest {
        sum = sum + v;
        sq = sq + v * v;
    }
    let inv = T::one() / ((sq + sum * sum) * inv_width + eps).sqrt();
    match scale {
        Some(g) => {
            for ((y, &x), &g) in y.iter_mut().zip(x).zip(g) {
                *y = x * inv * g;
            }
        }
        None => {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = x * inv;
            }
        }
    }
}

/// Every row of `n` entries of `x` into `y` (see [`CrmsNormalization`]).
#[inline(always)]
fn crms_rows_portable<T: Float>(
    x: &[T],
    y: &mut [T],
    n: usize,
    width: usize,
    eps: f32,
    scale: Option<&[T]>,
) {
    let inv_width = T::one() / T::from(width).unwrap_or_else(T::nan);
    let eps = T::from(eps).unwrap_or_else(T::nan);
    for (xr, yr) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
        crms_row(xr, yr, inv_width, eps, scale);
    }
}

/// [`crms_rows_portable`] compiled for AVX2 (8 f32 per instruction instead of SSE's 4).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn crms_rows_avx2<T: Float>(
    x: &[T],
    y: &mut [T],
    n: usize,
    width: usize,
    eps: f32,
    scale: Option<&[T]>,
) {
    crms_rows_portable(x, y, n, width, eps, scale)
}

/// Every row of `x` into `y`, with AVX2 when the CPU has it.
fn crms_rows<T: Float>(
    x: &[T],
    y: &mut [T],
    n: usize,
    width: usize,
    eps: f32,
    scale: Option<&[T]>,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { crms_rows_avx2(x, y, n, width, eps, scale) };
        return;
    }
    crms_rows_portable(x, y, n, width, eps, scale)
}

/// [`crms_rows`] from a tensor of `T` into a new one, with an optional scale (cast to `T`).
fn crms_tensor<T: Float + Datum>(
    x: &Tensor,
    n: usize,
    width: usize,
    eps: f32,
    scale: Option<&Tensor>,
) -> TractResult<Tensor> {
    let g = scale.map(|g| g.cast_to::<T>()).transpose()?;
    let g = g.as_ref().map(|g| g.try_as_plain_ram()).transpose()?;
    let g = g.as_ref().map(|g| g.as_slice::<T>()).transpose()?;
    let xv = x.try_as_plain_ram()?;
    let xs = xv.as_slice::<T>()?;
    // SAFETY: `T` is a plain float type and every element is written below: the rows of `n`
    // entries cover the tensor (`n` divides its length, as the last axis).
    let mut y = unsafe { Tensor::uninitialized::<T>(x.shape())? };
    {
        let mut yv = y.try_as_plain_ram_mut()?;
        crms_rows(xs, yv.as_slice_mut::<T>()?, n, width, eps, g);
    }
    Ok(y)
}

impl CrmsNormalization {
    /// Normalise `x` (rank ≥ 1, rows of D−1 entries along the last axis), times `scale` when
    /// given, into a new tensor; `f32`, `f64`, and `f16` (computed in `f32`).
    pub fn compute(&self, x: &Tensor, scale: Option<&Tensor>) -> TractResult<Tensor> {
        let dt = x.datum_type();
        ensure!(x.rank() >= 1, "{CRMS_OP_TYPE}: X must have rank at least 1");
        let n = x.shape()[x.rank() - 1];
        ensure!(
            n + 1 == self.width,
            "{CRMS_OP_TYPE}: rows have {n} entries, but width {} means D−1 = {}",
            self.width,
            self.width.saturating_sub(1)
        );
        if let Some(g) = scale {
            ensure!(
                g.rank() == 1 && g.len() == n,
                "{CRMS_OP_TYPE}: Scale has shape {:?}, expected [{n}]",
                g.shape()
            );
        }
        ensure!(
            matches!(dt, DatumType::F32 | DatumType::F64 | DatumType::F16),
            "{CRMS_OP_TYPE}: element type {dt:?} is not supported (f32, f16, f64)"
        );
        if n == 0 || x.len() == 0 {
            return Ok(x.clone());
        }
        match dt {
            DatumType::F32 => crms_tensor::<f32>(x, n, self.width, self.epsilon, scale),
            DatumType::F64 => crms_tensor::<f64>(x, n, self.width, self.epsilon, scale),
            _ => {
                // f16: widen once, compute in f32, round once.
                let wide = x.cast_to::<f32>()?;
                crms_tensor::<f32>(&wide, n, self.width, self.epsilon, scale)?
                    .cast_to::<f16>()
                    .map(|t| t.into_owned())
            }
        }
    }
}

impl Op for CrmsNormalization {
    fn name(&self) -> StaticName {
        CRMS_OP_TYPE.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "width: {}, epsilon: {:e}",
            self.width, self.epsilon
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for CrmsNormalization {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(
            (1..=2).contains(&inputs.len()),
            "{CRMS_OP_TYPE} takes X and an optional Scale, got {} inputs",
            inputs.len()
        );
        let mut inputs = inputs.into_iter();
        let x = inputs.next().context("no X")?;
        let scale = inputs.next();
        Ok(tvec!(self.compute(&x, scale.as_deref())?.into_tvalue()))
    }
}

impl TypedOp for CrmsNormalization {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            (1..=2).contains(&inputs.len()),
            "{CRMS_OP_TYPE} takes X and an optional Scale, got {} inputs",
            inputs.len()
        );
        let x = inputs[0];
        ensure!(
            matches!(
                x.datum_type,
                DatumType::F32 | DatumType::F16 | DatumType::F64
            ),
            "{CRMS_OP_TYPE}: element type {:?} is not supported (f32, f16, f64)",
            x.datum_type
        );
        ensure!(x.rank() >= 1, "{CRMS_OP_TYPE}: X must have rank at least 1");
        if let Ok(n) = x.shape[x.rank() - 1].to_usize() {
            ensure!(
                n + 1 == self.width,
                "{CRMS_OP_TYPE}: rows have {n} entries, but width {} means D−1 = {}",
                self.width,
                self.width - 1
            );
        }
        if let Some(g) = inputs.get(1) {
            ensure!(g.rank() == 1, "{CRMS_OP_TYPE}: Scale must have rank 1");
        }
        Ok(tvec!(x.datum_type.fact(x.shape.clone())))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let dt = inputs[0].datum_type;
        let count: TDim = inputs[0].shape.iter().product();
        Ok(tvec!((Cost::FMA(dt), count * 3)))
    }

    as_op!();
}
