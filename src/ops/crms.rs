//! `ai.onnx_normopt:CRMSNormalization`, CRMSNorm as one op: its schema (what the rewrite writes
//! with `--target crmsnorm --emit custom`) and its tract kernel (what verification and tract
//! pipelines run). One file, so that the writer and the runner cannot disagree.
//!
//! Schema (domain [`NORMOPT_DOMAIN`](super::NORMOPT_DOMAIN) version 1):
//! `CRMSNormalization(X[, Scale]) -> Y`, attributes `epsilon` (float, default 1e-5), `width`
//! (int, the uncompressed D ≥ 2) and `axis` (int, −1, the only value defined). Over the last axis
//! of D−1 entries: `Y = X / sqrt((ΣX² + (ΣX)²) / width + ε) [⊙ Scale]` — the first D−1 entries
//! of RMSNorm(x) for x = (X, −ΣX) (design §4). `Scale` has shape [D−1]. Element types f32, f64
//! and f16 (computed in f32).

use crate::proto::{attribute_type as at, AttributeProto};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::tract_num_traits::Float;

/// The op type (in [`NORMOPT_DOMAIN`](super::NORMOPT_DOMAIN)).
pub const CRMS_OP: &str = "CRMSNormalization";

/// The attributes of one `CRMSNormalization` node: `epsilon`, `width` (the uncompressed D) and
/// `axis` = −1.
pub fn crms_attributes(epsilon: f32, width: usize) -> Vec<AttributeProto> {
    let int = |name: &str, v: i64| AttributeProto {
        name: Some(name.into()),
        i: Some(v),
        r#type: Some(at::INT),
        ..Default::default()
    };
    vec![
        AttributeProto {
            name: Some("epsilon".into()),
            f: Some(epsilon),
            r#type: Some(at::FLOAT),
            ..Default::default()
        },
        int("width", width as i64),
        int("axis", -1),
    ]
}

/// tract's builder of `ai.onnx_normopt:CRMSNormalization` (register it under [`CRMS_OP`]).
pub(crate) fn crms_normalization(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let epsilon = node.get_attr_opt("epsilon")?.unwrap_or(1e-5f32);
    let width: i64 = node.get_attr("width")?;
    let axis = node.get_attr_opt::<i64>("axis")?.unwrap_or(-1);
    ensure!(
        axis == -1,
        "{CRMS_OP}: only axis = -1 is supported, got {axis}"
    );
    ensure!(
        width >= 2,
        "{CRMS_OP}: width (the uncompressed D) must be at least 2, got {width}"
    );
    ensure!(
        epsilon.is_finite() && epsilon >= 0.0,
        "{CRMS_OP}: epsilon must be a finite number >= 0, got {epsilon}"
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
        CRMS_OP.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        ensure!(
            (1..=2).contains(&inputs.len()),
            "{CRMS_OP} takes X and an optional Scale, got {} inputs",
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
        ensure!(x.rank() >= 1, "{CRMS_OP}: X must have rank at least 1");
        let n = x.shape()[x.rank() - 1];
        ensure!(
            n + 1 == self.width,
            "{CRMS_OP}: rows have {n} entries, but width {} means D−1 = {}",
            self.width,
            self.width.saturating_sub(1)
        );
        if let Some(g) = scale {
            ensure!(
                g.rank() == 1 && g.len() == n,
                "{CRMS_OP}: Scale has shape {:?}, expected [{n}]",
                g.shape()
            );
        }
        ensure!(
            matches!(dt, DatumType::F32 | DatumType::F64 | DatumType::F16),
            "{CRMS_OP}: element type {dt:?} is not supported (f32, f16, f64)"
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
        CRMS_OP.into()
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
            "{CRMS_OP} takes X and an optional Scale, got {} inputs",
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
            "{CRMS_OP} takes X and an optional Scale, got {} inputs",
            inputs.len()
        );
        let x = inputs[0];
        ensure!(
            matches!(
                x.datum_type,
                DatumType::F32 | DatumType::F16 | DatumType::F64
            ),
            "{CRMS_OP}: element type {:?} is not supported (f32, f16, f64)",
            x.datum_type
        );
        ensure!(x.rank() >= 1, "{CRMS_OP}: X must have rank at least 1");
        if let Ok(n) = x.shape[x.rank() - 1].to_usize() {
            ensure!(
                n + 1 == self.width,
                "{CRMS_OP}: rows have {n} entries, but width {} means D−1 = {}",
                self.width,
                self.width - 1
            );
        }
        if let Some(g) = inputs.get(1) {
            ensure!(g.rank() == 1, "{CRMS_OP}: Scale must have rank 1");
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
