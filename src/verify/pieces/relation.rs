//! How a value of the rewrite relates to the same value of the original, at a cut.
//!
//! The rewrite keeps every value it does not touch and makes the residual stream zero-mean over
//! its hidden axis (`--target rmsnorm`), or describes that zero-mean vector by n − 1 numbers
//! (`--target crmsnorm`: its first n − 1 entries with `--emit custom`, its coordinates in an
//! orthonormal basis of the zero-mean subspace otherwise). So where a value crosses a cut in
//! both models, the rewrite's is one of:
//!
//! - **identity**: b = a;
//! - **centred** over axis j: b = a − mean_j(a);
//! - **compressed** along axis j: b = the first n − 1 entries along j of a − mean_j(a) (n the
//!   original's extent; the dropped entry is minus the sum of the others);
//! - **projected** along axis j: b = M·a along j, where the n − 1 rows of M,
//!   mᵢ = eᵢ − c·eₙ − k·1 with c = 1/(√n + 1) and k = 1/(n + √n), are orthonormal and orthogonal
//!   to 1 (so b is also M·(a − mean_j(a)), and ‖b‖ = ‖a − mean_j(a)‖).
//!
//! [`find`] tries them in that order on the values both models computed and keeps the first that
//! holds on every sample within the output tolerance; [`apply`] maps the original's value to the
//! rewrite's. Nothing here trusts the pass: the relation is read off the numbers.

use serde::Serialize;

use super::super::tensor::{from_f64_fn, is_float, HostTensor};

/// The relation of the rewrite's value b to the original's value a.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Relation {
    /// b = a.
    Identity,
    /// b = a − mean(a) over `axis`.
    Centred {
        /// The axis.
        axis: usize,
    },
    /// b = the first n − 1 entries along `axis` of a − mean(a) over `axis`.
    Compressed {
        /// The axis.
        axis: usize,
    },
    /// b = M·a along `axis` (the orthonormal basis of the zero-mean subspace, see the module
    /// doc).
    Projected {
        /// The axis.
        axis: usize,
    },
}

impl std::fmt::Display for Relation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Relation::Identity => f.write_str("identity"),
            Relation::Centred { axis } => write!(f, "centred (axis {axis})"),
            Relation::Compressed { axis } => write!(f, "compressed (axis {axis})"),
            Relation::Projected { axis } => write!(f, "projected (axis {axis})"),
        }
    }
}

/// `(outer, n, inner)` of `shape` around `axis`: element (o, m, i) is at `(o·n + m)·inner + i`.
fn split(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// `x − mean(x)` over `axis` (x in row-major order with `shape`).
fn centre(x: &[f64], shape: &[usize], axis: usize) -> Vec<f64> {
    let (outer, n, inner) = split(shape, axis);
    let mut y = x.to_vec();
    for o in 0..outer {
        for i in 0..inner {
            let at = |m: usize| (o * n + m) * inner + i;
            let mean = (0..n).map(|m| x[at(m)]).sum::<f64>() / n.max(1) as f64;
            for m in 0..n {
                y[at(m)] -= mean;
            }
        }
    }
    y
}

/// The first `n − 1` entries along `axis` (its extent is `n`).
fn drop_last(x: &[f64], shape: &[usize], axis: usize) -> Vec<f64> {
    let (outer, n, inner) = split(shape, axis);
    let mut y = Vec::with_capacity(outer * n.saturating_sub(1) * inner);
    for o in 0..outer {
        for m in 0..n.saturating_sub(1) {
            let at = (o * n + m) * inner;
            y.extend_from_slice(&x[at..at + inner]);
        }
    }
    y
}

/// M·x along `axis` (extent n → n − 1): yᵢ = xᵢ − c·xₙ − k·Σx, c = 1/(√n + 1),
/// k = 1/(n + √n) (see the module doc).
fn project(x: &[f64], shape: &[usize], axis: usize) -> Vec<f64> {
    let (outer, n, inner) = split(shape, axis);
    let r = (n as f64).sqrt();
    let (c, k) = (1.0 / (r + 1.0), 1.0 / (r * (r + 1.0)));
    let mut y = Vec::with_capacity(outer * n.saturating_sub(1) * inner);
    for o in 0..outer {
        let at = |m: usize, i: usize| x[(o * n + m) * inner + i];
        let sums: Vec<f64> = (0..inner).map(|i| (0..n).map(|m| at(m, i)).sum()).collect();
        for m in 0..n.saturating_sub(1) {
            y.extend((0..inner).map(|i| at(m, i) - c * at(n - 1, i) - k * sums[i]));
        }
    }
    y
}

/// The relations worth trying for values of these shapes, in order.
pub fn candidates(a: &[usize], b: &[usize], elem_type: i32) -> Vec<Relation> {
    let mut out = Vec::new();
    if a == b {
        out.push(Relation::Identity);
    }
    if !is_float(elem_type) || a.len() != b.len() {
        return out;
    }
    if a == b {
        out.extend(
            (0..a.len())
                .rev()
                .filter(|&j| a[j] > 1)
                .map(|axis| Relation::Centred { axis }),
        );
    } else {
        let differ: Vec<usize> = (0..a.len()).filter(|&j| a[j] != b[j]).collect();
        if let [axis] = differ[..] {
            if a[axis] >= 2 && b[axis] + 1 == a[axis] {
                out.push(Relation::Compressed { axis });
                out.push(Relation::Projected { axis });
            }
        }
    }
    out
}

/// `rel` applied to the original's values `x` of `shape`: the rewrite's values and shape.
fn map(rel: Relation, x: &[f64], shape: &[usize]) -> (Vec<f64>, Vec<usize>) {
    match rel {
        Relation::Identity => (x.to_vec(), shape.to_vec()),
        Relation::Centred { axis } => (centre(x, shape, axis), shape.to_vec()),
        Relation::Compressed { axis } => {
            let mut s = shape.to_vec();
            s[axis] -= 1;
            (drop_last(&centre(x, shape, axis), shape, axis), s)
        }
        Relation::Projected { axis } => {
            let mut s = shape.to_vec();
            s[axis] -= 1;
            (project(x, shape, axis), s)
        }
    }
}

/// The rewrite's value for the original's `a` under `rel`, in `a`'s element type (computed in
/// f64, rounded once). Identity returns `a` itself.
pub fn apply(rel: Relation, a: &HostTensor) -> HostTensor {
    if rel == Relation::Identity {
        return a.clone();
    }
    let Some(x) = a.to_f64() else {
        return a.clone();
    };
    let (y, shape) = map(rel, &x, &a.shape);
    let mut it = y.into_iter();
    from_f64_fn(&a.name, a.elem_type, &shape, || it.next().unwrap_or(0.0))
}

/// max |b − r| / max |r| (0 when both are zero; infinite when r is zero and b is not, or when a
/// non-finite value differs).
fn rel_err(r: &[f64], b: &[f64]) -> f64 {
    let (mut d, mut m) = (0f64, 0f64);
    for (&x, &y) in r.iter().zip(b) {
        if !x.is_finite() || !y.is_finite() {
            if !(x == y || (x.is_nan() && y.is_nan())) {
                return f64::INFINITY;
            }
            continue;
        }
        d = d.max((y - x).abs());
        m = m.max(x.abs());
    }
    if m > 0.0 {
        d / m
    } else if d == 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

/// The first relation (in [`candidates`] order) under which every sample of `b` is within `tol`
/// of the original's `a`, and the worst relative difference under it. Integer and boolean values
/// must be equal.
pub fn find(a: &[HostTensor], b: &[HostTensor], tol: f64) -> Option<(Relation, f64)> {
    let (fa, fb) = (a.first()?, b.first()?);
    if a.len() != b.len() || fa.elem_type != fb.elem_type {
        return None;
    }
    let tol = if is_float(fa.elem_type) { tol } else { 0.0 };
    let xs: Vec<Vec<f64>> = a.iter().map(|t| t.to_f64()).collect::<Option<_>>()?;
    let ys: Vec<Vec<f64>> = b.iter().map(|t| t.to_f64()).collect::<Option<_>>()?;
    'next: for rel in candidates(&fa.shape, &fb.shape, fa.elem_type) {
        let mut worst = 0f64;
        for ((x, y), (ta, tb)) in xs.iter().zip(&ys).zip(a.iter().zip(b)) {
            if ta.shape != fa.shape || tb.shape != fb.shape {
                continue 'next;
            }
            let (r, shape) = map(rel, x, &ta.shape);
            if shape != tb.shape {
                continue 'next;
            }
            let e = rel_err(&r, y);
            if e.is_nan() || e > tol {
                continue 'next;
            }
            worst = worst.max(e);
        }
        return Some((rel, worst));
    }
    None
}
