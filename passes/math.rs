//! Weight arithmetic as small pure functions on row-major f64 arrays. Each states its identity.
//! Rounding to the stored type happens once, when the caller writes the result back.

/// Split `dims` around `axis`: (outer, len, inner) so that element (o, i, r) is at
/// `(o * len + i) * inner + r`.
fn split(dims: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = dims[..axis].iter().product();
    let inner = dims[axis + 1..].iter().product();
    (outer, dims[axis], inner)
}

/// Centre over `axis`: X ← X − mean_axis(X). Makes every fibre along `axis` zero-mean; for a
/// weight whose `axis` is the output axis, every output of the linear map becomes zero-mean.
/// A fibre of length 1 becomes 0 (a broadcast constant added to every entry has mean itself).
pub fn center(data: &mut [f64], dims: &[usize], axis: usize) {
    if dims.is_empty() {
        data.iter_mut().for_each(|x| *x = 0.0);
        return;
    }
    let (outer, len, inner) = split(dims, axis);
    if inner == 1 && len > 0 {
        // The last axis: contiguous fibres (same sums in the same order as below).
        for fibre in data.chunks_exact_mut(len) {
            let mean = fibre.iter().sum::<f64>() / len as f64;
            fibre.iter_mut().for_each(|x| *x -= mean);
        }
        return;
    }
    for o in 0..outer {
        for r in 0..inner {
            let idx = |i: usize| (o * len + i) * inner + r;
            let mean = (0..len).map(|i| data[idx(i)]).sum::<f64>() / len as f64;
            for i in 0..len {
                data[idx(i)] -= mean;
            }
        }
    }
}

/// Scale along `axis` by γ: X[.., i, ..] ← γᵢ · X[.., i, ..]. With `axis` the input axis of a
/// linear map this is W ← diag(γ)·W.
pub fn scale(data: &mut [f64], dims: &[usize], axis: usize, gamma: &[f64]) {
    let (outer, len, inner) = split(dims, axis);
    debug_assert_eq!(len, gamma.len());
    for o in 0..outer {
        for (i, g) in gamma.iter().enumerate().take(len) {
            for r in 0..inner {
                data[(o * len + i) * inner + r] *= g;
            }
        }
    }
}

/// LayerScale fold: a writer `y = λ ⊙ (x·W + b)` (ONNX MatMul weight [K, D], λ per output
/// channel) is the writer `y = x·(W·diag(λ)) + λ ⊙ b`: scale the weight's output axis and the
/// bias by λ. A `Div` by c is a `Mul` by 1/c; a chain `λ₂ ⊙ (λ₁ ⊙ (x·W + b₁) + b₂)` scales W
/// by λ₁λ₂, b₁ by λ₁λ₂ and b₂ by λ₂ (each bias by the product of the scales after it). The
/// folded writer is then centred like any other (W ← W − mean over the output axis), so
/// mean(y) = 0 and the scaling ops go away. This is [`scale`] along the output axis.
#[allow(dead_code)] // The identity as stated; the rewrite applies it through `scale`.
pub fn layer_scale(data: &mut [f64], dims: &[usize], out_axis: usize, lambda: &[f64]) {
    scale(data, dims, out_axis, lambda)
}

/// β·W for a linear map whose input axis is `in_axis` of a 2-D weight: the bias a shift β of
/// the input adds to every output (b ← b + β·W).
pub fn shift_through(w: &[f64], dims: &[usize], in_axis: usize, beta: &[f64]) -> Vec<f64> {
    let (rows, cols) = (dims[0], dims[1]);
    if in_axis == 0 {
        // Row by row (memory order); each output still sums its terms in row order.
        let mut out = vec![0.0; cols];
        for (r, row) in w.chunks_exact(cols.max(1)).enumerate().take(rows) {
            let b = beta[r];
            out.iter_mut().zip(row).for_each(|(o, x)| *o += b * x);
        }
        out
    } else {
        (0..rows)
            .map(|r| (0..cols).map(|c| beta[c] * w[r * cols + c]).sum())
            .collect()
    }
}

/// Add a vector along the last axis of every row: B ← B + v (broadcast).
pub fn add_rows(data: &mut [f64], v: &[f64]) {
    let n = v.len();
    for (i, x) in data.iter_mut().enumerate() {
        *x += v[i % n];
    }
}

/// LayerNorm of every row of a [V, D] table: γ ⊙ (x − μ)/sqrt(σ² + ε) + β (the table an
/// embedding LayerNorm would produce for each id).
pub fn layernorm_rows(
    table: &[f64],
    d: usize,
    gamma: Option<&[f64]>,
    beta: Option<&[f64]>,
    eps: f64,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(table.len());
    for row in table.chunks_exact(d) {
        let mu = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|x| (x - mu) * (x - mu)).sum::<f64>() / d as f64;
        let inv = 1.0 / (var + eps).sqrt();
        for (i, x) in row.iter().enumerate() {
            let g = gamma.map_or(1.0, |g| g[i]);
            let b = beta.map_or(0.0, |b| b[i]);
            out.push(g * (x - mu) * inv + b);
        }
    }
    out
}

/// Drop the last entry along `axis` (CRMSNorm compression of a zero-mean output axis: the
/// dropped entry is minus the sum of the others).
pub fn drop_last(data: &[f64], dims: &[usize], axis: usize) -> (Vec<f64>, Vec<usize>) {
    let (outer, len, inner) = split(dims, axis);
    let mut out = Vec::with_capacity(outer * (len - 1) * inner);
    for o in 0..outer {
        for i in 0..len - 1 {
            out.extend_from_slice(&data[(o * len + i) * inner..(o * len + i + 1) * inner]);
        }
    }
    let mut nd = dims.to_vec();
    nd[axis] = len - 1;
    (out, nd)
}

/// CRMSNorm compression of an input axis: W' = W[0:D−1] − W[D−1] along `axis` (a reader of
/// x = (x̃, −Σx̃) sees x̃ through W').
pub fn fold_last_in(data: &[f64], dims: &[usize], axis: usize) -> (Vec<f64>, Vec<usize>) {
    let (outer, len, inner) = split(dims, axis);
    let mut out = Vec::with_capacity(outer * (len - 1) * inner);
    for o in 0..outer {
        let last = &data[(o * len + len - 1) * inner..(o * len + len) * inner];
        for i in 0..len - 1 {
            let row = &data[(o * len + i) * inner..(o * len + i + 1) * inner];
            out.extend(row.iter().zip(last).map(|(a, b)| a - b));
        }
    }
    let mut nd = dims.to_vec();
    nd[axis] = len - 1;
    (out, nd)
}

/// How a compressed (CRMSNorm) stream of width D−1 represents a zero-mean x ∈ R^D.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    /// The paper's coordinates x̃ = x[0:D−1] (x_D = −Σx̃): ‖x‖² = Σx̃² + (Σx̃)², two reductions
    /// per norm. Sources and writers drop their last entry ([`drop_last`]), readers fold it in
    /// ([`fold_last_in`]).
    Coordinate,
    /// z = M·x, where the D−1 rows of M are an orthonormal basis of the zero-mean subspace
    /// (see [`ortho_project`]): ‖z‖ = ‖x‖, so CRMSNorm is a plain RMSNorm of z over D−1 entries
    /// ([`ortho_epsilon`], [`ortho_scale`]), which runtimes fuse like any RMSNorm.
    Orthonormal,
}

/// The constants of [`Basis::Orthonormal`] for width D: (c, k) = (1/(√D+1), 1/(D+√D)). The
/// rows of M (D−1 × D) are mᵢ = eᵢ − c·e_D − k·1. They are orthonormal and orthogonal to 1:
/// mᵢ·1 = 1 − c − kD = 0, and mᵢ·mⱼ = δᵢⱼ + c² − 2k(1 − c) + k²D = δᵢⱼ (with r = √D:
/// c² = 1/(r+1)², 2k(1−c) = 2/(r+1)², k²D = 1/(r+1)²). So for zero-mean x, z = Mx keeps the
/// norm (‖z‖ = ‖x‖) and x = Mᵀz.
pub fn ortho_coeffs(d: usize) -> (f64, f64) {
    let r = (d as f64).sqrt();
    (1.0 / (r + 1.0), 1.0 / (r * (r + 1.0)))
}

/// One entry of M·v: vᵢ − c·v_D − k·Σv (see [`ortho_coeffs`]).
fn ortho_entry(v: f64, last: f64, sum: f64, c: f64, k: f64) -> f64 {
    v - c * last - k * sum
}

/// s·M·v along `axis` (length D → D−1, [`Basis::Orthonormal`]):
/// out[i] = s·(v[i] − c·v[D−1] − k·Σⱼ v[j]).
/// - Sources and writers (their output axis, s = 1): the stream holds z = M·x instead of x,
///   each contribution y becomes M·y (for a zero-mean y the Σ term is 0).
/// - Readers (their input axis, s = [`ortho_scale`]): for zero-mean x and z = M·x, x = Mᵀz, so
///   RMSNorm(x) = Mᵀ·(s·RMS_{D−1}(z; ε′)) and RMSNorm(x)·W = RMS_{D−1}(z; ε′)·(s·M·W).
pub fn ortho_project(
    data: &[f64],
    dims: &[usize],
    axis: usize,
    scale: f64,
) -> (Vec<f64>, Vec<usize>) {
    let (outer, len, inner) = split(dims, axis);
    let (c, k) = ortho_coeffs(len);
    let mut out = Vec::with_capacity(outer * (len - 1) * inner);
    for o in 0..outer {
        let block = &data[o * len * inner..(o + 1) * len * inner];
        // Σ over the axis, in row order (as the row pipeline sums).
        let mut sum = vec![0.0f64; inner];
        for row in block.chunks_exact(inner) {
            sum.iter_mut().zip(row).for_each(|(s, x)| *s += x);
        }
        let last = &block[(len - 1) * inner..];
        for row in block.chunks_exact(inner).take(len - 1) {
            out.extend(
                row.iter()
                    .zip(last)
                    .zip(&sum)
                    .map(|((&x, &l), &s)| ortho_entry(x, l, s, c, k) * scale),
            );
        }
    }
    let mut nd = dims.to_vec();
    nd[axis] = len - 1;
    (out, nd)
}

/// One row of [`ortho_project`] along axis 0, given the last row and the column sums of the
/// whole input (the row pipeline's form; the same arithmetic).
pub fn ortho_project_row(row: &mut [f64], last: &[f64], sum: &[f64], d: usize, scale: f64) {
    let (c, k) = ortho_coeffs(d);
    row.iter_mut()
        .zip(last)
        .zip(sum)
        .for_each(|((x, &l), &s)| *x = ortho_entry(*x, l, s, c, k) * scale);
}

/// A source's or writer's output axis compressed into `basis` (length D → D−1): [`drop_last`]
/// or M·y ([`ortho_project`]).
pub fn compress_out(
    data: &[f64],
    dims: &[usize],
    axis: usize,
    basis: Basis,
) -> (Vec<f64>, Vec<usize>) {
    match basis {
        Basis::Coordinate => drop_last(data, dims, axis),
        Basis::Orthonormal => ortho_project(data, dims, axis, 1.0),
    }
}

/// A reader's input axis reading a stream compressed into `basis` (length D → D−1):
/// [`fold_last_in`] or s·M·W ([`ortho_project`], [`ortho_scale`]).
pub fn compress_in(
    data: &[f64],
    dims: &[usize],
    axis: usize,
    basis: Basis,
) -> (Vec<f64>, Vec<usize>) {
    match basis {
        Basis::Coordinate => fold_last_in(data, dims, axis),
        Basis::Orthonormal => ortho_project(data, dims, axis, ortho_scale(dims[axis])),
    }
}

/// The scale s = √(D/(D−1)) of CRMSNorm in [`Basis::Orthonormal`]: with ‖z‖ = ‖x‖,
/// z/√(Σz²/D + ε) = s · z/√(Σz²/(D−1) + ε′), ε′ = [`ortho_epsilon`]: an RMSNorm over the D−1
/// entries of z, times s (folded into the readers, or the norm's scale).
pub fn ortho_scale(d: usize) -> f64 {
    (d as f64 / (d as f64 - 1.0)).sqrt()
}

/// ε′ = ε·D/(D−1), the ε of the RMSNorm over D−1 entries that computes CRMSNorm in
/// [`Basis::Orthonormal`] (see [`ortho_scale`]).
pub fn ortho_epsilon(eps: f64, d: usize) -> f64 {
    eps * d as f64 / (d as f64 - 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn center_makes_fibres_zero_mean() {
        let mut w = vec![1.0, 2.0, 3.0, 4.0, 6.0, 8.0];
        center(&mut w, &[2, 3], 1);
        assert_eq!(w, vec![-1.0, 0.0, 1.0, -2.0, 0.0, 2.0]);
        let mut c = vec![1.0, 2.0, 3.0, 5.0];
        center(&mut c, &[2, 2], 0);
        assert_eq!(c, vec![-1.0, -1.5, 1.0, 1.5]);
    }

    #[test]
    fn fold_identity_holds() {
        // (x̂ γ + β) W + b == x̂ (diag(γ) W) + (b + β W)
        let w = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // [3, 2]
        let (g, be, b) = ([2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [1.0, -1.0]);
        let xh = [0.3, -0.7, 1.1];
        let direct: Vec<f64> = (0..2)
            .map(|c| {
                (0..3)
                    .map(|r| (xh[r] * g[r] + be[r]) * w[r * 2 + c])
                    .sum::<f64>()
                    + b[c]
            })
            .collect();
        let mut ws = w.clone();
        scale(&mut ws, &[3, 2], 0, &g);
        let mut bs = b.to_vec();
        add_rows(&mut bs, &shift_through(&w, &[3, 2], 0, &be));
        let folded: Vec<f64> = (0..2)
            .map(|c| (0..3).map(|r| xh[r] * ws[r * 2 + c]).sum::<f64>() + bs[c])
            .collect();
        for (a, b) in direct.iter().zip(&folded) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    #[test]
    fn layer_scale_identity_holds() {
        // λ ⊙ (x W + b) == x (W diag(λ)) + λ ⊙ b, and centring the folded weight and bias
        // centres the output.
        let w = vec![1.0, 2.0, 3.0, 4.0, 5.0, 7.0]; // [2, 3]
        let (b, l, x) = ([0.5, -1.0, 2.0], [0.1, 2.0, -3.0], [0.7, -0.2]);
        let direct: Vec<f64> = (0..3)
            .map(|c| l[c] * ((0..2).map(|r| x[r] * w[r * 3 + c]).sum::<f64>() + b[c]))
            .collect();
        let mut wf = w.clone();
        layer_scale(&mut wf, &[2, 3], 1, &l);
        let mut bf = b.to_vec();
        layer_scale(&mut bf, &[3], 0, &l);
        let out = |wf: &[f64], bf: &[f64]| -> Vec<f64> {
            (0..3)
                .map(|c| (0..2).map(|r| x[r] * wf[r * 3 + c]).sum::<f64>() + bf[c])
                .collect()
        };
        for (a, b) in direct.iter().zip(out(&wf, &bf)) {
            assert!((a - b).abs() < 1e-12);
        }
        center(&mut wf, &[2, 3], 1);
        center(&mut bf, &[3], 0);
        let mean = direct.iter().sum::<f64>() / 3.0;
        for (a, b) in direct.iter().zip(out(&wf, &bf)) {
            assert!((a - mean - b).abs() < 1e-12);
        }
    }

    #[test]
    fn compression_identity_holds() {
        // x zero-mean of width 3: x W == x̃ (W[0:2] − W[2])
        let x = [0.5, -1.5, 1.0];
        let w = vec![1.0, 2.0, 3.0, 4.0, 5.0, 7.0];
        let (wf, d) = fold_last_in(&w, &[3, 2], 0);
        assert_eq!(d, vec![2, 2]);
        for c in 0..2 {
            let full: f64 = (0..3).map(|r| x[r] * w[r * 2 + c]).sum();
            let comp: f64 = (0..2).map(|r| x[r] * wf[r * 2 + c]).sum();
            assert!((full - comp).abs() < 1e-12);
        }
        let (dl, d2) = drop_last(&w, &[3, 2], 1);
        assert_eq!((dl, d2), (vec![1.0, 3.0, 5.0], vec![3, 1]));
    }

    #[test]
    fn orthonormal_compression_identity_holds() {
        // x zero-mean of width 5, z = M x (a writer's ortho_project): ‖z‖ = ‖x‖, and a reader
        // of RMSNorm(x) through W equals a reader of the RMSNorm of z over 4 entries (ε′)
        // through s·M·W.
        let d = 5;
        let mut x = vec![0.5, -1.5, 1.0, 2.25, 0.3];
        center(&mut x, &[d], 0);
        let (z, zd) = ortho_project(&x, &[d], 0, 1.0);
        assert_eq!(zd, vec![d - 1]);
        let n2 = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>();
        assert!((n2(&z) - n2(&x)).abs() < 1e-12);
        // A non-centred vector projects like its centred version (M·1 = 0).
        let shifted: Vec<f64> = x.iter().map(|a| a + 0.7).collect();
        let (z2, _) = ortho_project(&shifted, &[d], 0, 1.0);
        for (a, b) in z.iter().zip(&z2) {
            assert!((a - b).abs() < 1e-12);
        }
        let eps = 1e-2;
        let w: Vec<f64> = (0..d * 3)
            .map(|i| ((i * 7 % 11) as f64) / 5.0 - 1.0)
            .collect(); // [5, 3]
        let (wz, wd) = ortho_project(&w, &[d, 3], 0, ortho_scale(d));
        assert_eq!(wd, vec![d - 1, 3]);
        let rx = (n2(&x) / d as f64 + eps).sqrt();
        let rz = (n2(&z) / (d - 1) as f64 + ortho_epsilon(eps, d)).sqrt();
        for col in 0..3 {
            let full: f64 = (0..d).map(|r| x[r] / rx * w[r * 3 + col]).sum();
            let comp: f64 = (0..d - 1).map(|r| z[r] / rz * wz[r * 3 + col]).sum();
            assert!((full - comp).abs() < 1e-12, "{full} vs {comp}");
        }
        // The row form gives the same numbers.
        let last = &w[(d - 1) * 3..];
        let sum: Vec<f64> = (0..3).map(|c| (0..d).map(|r| w[r * 3 + c]).sum()).collect();
        for r in 0..d - 1 {
            let mut row = w[r * 3..r * 3 + 3].to_vec();
            ortho_project_row(&mut row, last, &sum, d, ortho_scale(d));
            assert_eq!(row, wz[r * 3..r * 3 + 3].to_vec());
        }
    }
}
