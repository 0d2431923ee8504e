//! Edits of constants and their application: [`Edit`] says what happens to one constant; the
//! applier runs a constant's edits in memory or while the model is written, block of rows by
//! block of rows.
//!
//! [`apply_all`] applies a constant's edits to the whole tensor in memory. For large tensors the
//! applier instead attaches a [`RowPipeline`] to the initializer (see [`crate::ir::Deferred`]):
//! the writer pulls the source rows (axis 0) from the memory-mapped input a block at a time,
//! runs them through the same edits and streams the result out, so memory does not grow with
//! the model. Edits that need the whole tensor along axis 0 (centring over axis 0, the CRMSNorm
//! fold of the last input row) get what they need — column means, the last row — from a prior
//! pass over the rows. The arithmetic is the same f64 arithmetic in the same order as
//! [`apply_all`], so both give bit-identical results (tested below).

use super::math::{self, Basis};
use crate::ir::Deferred;
use crate::tensor::Array;
use crate::{Error, Result};

/// One edit of a constant, applied in the order of the variants.
#[derive(Clone, Debug, PartialEq)]
pub enum Edit {
    /// Replace every row of a [V, D] table by its LayerNorm (an embedding LayerNorm precomputed
    /// into the table).
    LayerNormRows {
        /// γ, length D.
        gamma: Vec<f64>,
        /// β, length D.
        beta: Vec<f64>,
        /// ε.
        eps: f64,
    },
    /// Scale along an axis by γ (fold of a norm's scale into a reader).
    Scale {
        /// The input axis.
        axis: usize,
        /// γ, one factor per entry of the axis.
        gamma: Vec<f64>,
    },
    /// Add a vector along the last axis (fold of β·W into a reader's bias).
    AddRows(Vec<f64>),
    /// Centre over an axis (sources and writers).
    Center {
        /// The output axis.
        axis: usize,
    },
    /// CRMSNorm, a reader of a compressed stream, along the input axis: W' = W[0:D−1] − W[D−1]
    /// ([`Basis::Coordinate`]) or W' = s·M·W ([`Basis::Orthonormal`], [`math::ortho_project`]).
    FoldLastIn {
        /// The input axis.
        axis: usize,
        /// The compressed stream's basis.
        basis: Basis,
    },
    /// CRMSNorm, a source or writer, along its (centred) output axis when that axis has the
    /// stream's width: drop the last entry ([`Basis::Coordinate`]) or project, y ← M·y
    /// ([`Basis::Orthonormal`]).
    DropLast {
        /// The output axis.
        axis: usize,
        /// The stream width D (other lengths are left alone).
        width: usize,
        /// The compressed stream's basis.
        basis: Basis,
    },
    /// CRMSNorm: a shape constant that hard-codes the stream width D at `index` becomes D−1.
    ShrinkDim {
        /// Position in the shape.
        index: usize,
        /// D.
        width: usize,
    },
}

impl Edit {
    /// The edit's place in a constant's edit list (edits are applied in this order).
    pub fn rank(&self) -> u8 {
        match self {
            Edit::LayerNormRows { .. } => 0,
            Edit::Scale { .. } => 1,
            Edit::AddRows(_) => 2,
            Edit::Center { .. } => 3,
            Edit::FoldLastIn { .. } => 4,
            Edit::DropLast { .. } => 5,
            Edit::ShrinkDim { .. } => 6,
        }
    }
}

/// Apply `edits` in order to a whole array.
pub fn apply_all(arr: &mut Array, edits: &[Edit]) {
    for e in edits {
        match e {
            Edit::LayerNormRows { gamma, beta, eps } => {
                let d = arr.last_dim();
                if d > 0 && gamma.len() == d && beta.len() == d {
                    arr.data = math::layernorm_rows(&arr.data, d, Some(gamma), Some(beta), *eps);
                }
            }
            Edit::Scale { axis, gamma } => math::scale(&mut arr.data, &arr.dims, *axis, gamma),
            Edit::AddRows(v) => {
                let last = arr.last_dim();
                if last == v.len() {
                    math::add_rows(&mut arr.data, v);
                } else {
                    // A scalar bias: materialise it along the last axis.
                    let base = arr.data.first().copied().unwrap_or(0.0);
                    *arr = Array {
                        dims: vec![v.len()],
                        data_type: arr.data_type,
                        data: v.iter().map(|x| x + base).collect(),
                    };
                }
            }
            Edit::Center { axis } => math::center(&mut arr.data, &arr.dims, *axis),
            Edit::FoldLastIn { axis, basis } => {
                let (data, dims) = math::compress_in(&arr.data, &arr.dims, *axis, *basis);
                arr.data = data;
                arr.dims = dims;
            }
            Edit::DropLast { axis, width, basis } => {
                if arr.dims.get(*axis) == Some(width) {
                    let (data, dims) = math::compress_out(&arr.data, &arr.dims, *axis, *basis);
                    arr.data = data;
                    arr.dims = dims;
                }
            }
            Edit::ShrinkDim { index, width } => {
                if arr.data.get(*index) == Some(&(*width as f64)) {
                    arr.data[*index] -= 1.0;
                }
            }
        }
    }
}

/// The dims after each edit, as [`apply_all`] and the row pipeline leave them: `out[k]` is the
/// input of edit `k`, `out[edits.len()]` the result.
fn stage_dims(dims: &[usize], edits: &[Edit]) -> Vec<Vec<usize>> {
    let mut out = vec![dims.to_vec()];
    let mut d = dims.to_vec();
    for e in edits {
        match e {
            Edit::FoldLastIn { axis, .. } if *axis < d.len() => {
                d[*axis] = d[*axis].saturating_sub(1)
            }
            Edit::DropLast { axis, width, .. } if d.get(*axis) == Some(width) => d[*axis] -= 1,
            // A scalar bias materialised along the rows it is added to.
            Edit::AddRows(v) if d.last().copied().unwrap_or(1) != v.len() => d = vec![v.len()],
            _ => {}
        }
        out.push(d.clone());
    }
    out
}

/// The dims of a constant of dims `dims` after `edits` ([`apply_all`], or the row pipeline).
pub fn dims_after(dims: &[usize], edits: &[Edit]) -> Vec<usize> {
    stage_dims(dims, edits).pop().unwrap_or_default()
}

/// Elements of one block, about 4 MiB of f64.
const BLOCK_ELEMS: usize = 1 << 19;

/// A constant's edits, run over its rows at write time.
#[derive(Debug)]
pub struct RowPipeline {
    dims: Vec<usize>,
    edits: Vec<Edit>,
    block_rows: usize,
}

/// What an edit over axis 0 needs to know about all the rows of its input.
#[derive(Clone, Debug)]
enum Stat {
    None,
    /// Centre over axis 0: the mean of each column.
    ColumnMean(Vec<f64>),
    /// Fold of the last input row: that row.
    LastRow(Vec<f64>),
    /// Projection onto the orthonormal basis over axis 0: the last row and the column sums.
    LastRowSum(Vec<f64>, Vec<f64>),
}

impl RowPipeline {
    /// A pipeline for a tensor of `dims` with these edits, if they can run row by row (every
    /// edit but an axis-changing scalar-bias materialisation and the shape edits; rank ≥ 2 for
    /// the embedding LayerNorm).
    pub fn new(dims: &[usize], edits: &[Edit]) -> Option<RowPipeline> {
        if dims.is_empty() || dims.contains(&0) {
            return None;
        }
        let stages = stage_dims(dims, edits);
        for (e, d) in edits.iter().zip(&stages) {
            let ok = match e {
                Edit::LayerNormRows { gamma, beta, .. } => {
                    d.len() >= 2 && gamma.len() == d[d.len() - 1] && beta.len() == gamma.len()
                }
                Edit::Scale { axis, gamma } => *axis < d.len() && gamma.len() == d[*axis],
                Edit::AddRows(v) => d.len() >= 2 && v.len() == d[d.len() - 1],
                Edit::Center { axis } => *axis < d.len(),
                Edit::FoldLastIn { axis, .. } | Edit::DropLast { axis, .. } => {
                    *axis < d.len() && d[*axis] >= 2
                }
                Edit::ShrinkDim { .. } => false,
            };
            if !ok {
                return None;
            }
        }
        let row: usize = dims[1..].iter().product::<usize>().max(1);
        Some(RowPipeline {
            dims: dims.to_vec(),
            edits: edits.to_vec(),
            block_rows: (BLOCK_ELEMS / row).max(1),
        })
    }

    /// The same with a given block size (tests).
    #[cfg(test)]
    fn with_block_rows(mut self, n: usize) -> Self {
        self.block_rows = n;
        self
    }

    /// Run edits `0..upto` over a block of source rows starting at global row `row0`.
    fn run_block(
        &self,
        stages: &[Vec<usize>],
        stats: &[Stat],
        upto: usize,
        row0: usize,
        mut data: Vec<f64>,
    ) -> Vec<f64> {
        let mut bd = self.dims.clone();
        bd[0] = data.len() / self.dims[1..].iter().product::<usize>().max(1);
        for k in 0..upto {
            let n_k = stages[k][0];
            let inner: usize = bd[1..].iter().product::<usize>().max(1);
            // Drop the local row holding global row `n_k − 1` (only a stage's last row ever is).
            let drop_global_last = |data: &mut Vec<f64>, bd: &mut Vec<usize>| {
                let last = n_k - 1;
                if last >= row0 && last < row0 + bd[0] {
                    let r = last - row0;
                    data.drain(r * inner..(r + 1) * inner);
                    bd[0] -= 1;
                }
            };
            match (&self.edits[k], &stats[k]) {
                (Edit::LayerNormRows { gamma, beta, eps }, _) => {
                    let d = bd[bd.len() - 1];
                    data = math::layernorm_rows(&data, d, Some(gamma), Some(beta), *eps);
                }
                (Edit::Scale { axis: 0, gamma }, _) => {
                    for (r, row) in data.chunks_exact_mut(inner).enumerate() {
                        let g = gamma[row0 + r];
                        row.iter_mut().for_each(|x| *x *= g);
                    }
                }
                (Edit::Scale { axis, gamma }, _) => math::scale(&mut data, &bd, *axis, gamma),
                (Edit::AddRows(v), _) => math::add_rows(&mut data, v),
                (Edit::Center { axis: 0 }, Stat::ColumnMean(mean)) => {
                    for row in data.chunks_exact_mut(inner) {
                        row.iter_mut().zip(mean).for_each(|(x, m)| *x -= m);
                    }
                }
                (Edit::Center { axis }, _) => math::center(&mut data, &bd, *axis),
                (Edit::FoldLastIn { axis: 0, .. }, Stat::LastRow(last)) => {
                    drop_global_last(&mut data, &mut bd);
                    for row in data.chunks_exact_mut(inner) {
                        row.iter_mut().zip(last).for_each(|(x, l)| *x -= l);
                    }
                }
                (Edit::FoldLastIn { axis: 0, .. }, Stat::LastRowSum(last, sum)) => {
                    drop_global_last(&mut data, &mut bd);
                    let s = math::ortho_scale(n_k);
                    for row in data.chunks_exact_mut(inner) {
                        math::ortho_project_row(row, last, sum, n_k, s);
                    }
                }
                (Edit::DropLast { axis: 0, .. }, Stat::LastRowSum(last, sum)) => {
                    drop_global_last(&mut data, &mut bd);
                    for row in data.chunks_exact_mut(inner) {
                        math::ortho_project_row(row, last, sum, n_k, 1.0);
                    }
                }
                (Edit::FoldLastIn { axis, basis }, _) => {
                    let (d2, dims) = math::compress_in(&data, &bd, *axis, *basis);
                    data = d2;
                    bd = dims;
                }
                (Edit::DropLast { axis: 0, width, .. }, _) => {
                    if n_k == *width {
                        drop_global_last(&mut data, &mut bd);
                    }
                }
                (Edit::DropLast { axis, width, basis }, _) => {
                    if bd[*axis] == *width {
                        let (d2, dims) = math::compress_out(&data, &bd, *axis, *basis);
                        data = d2;
                        bd = dims;
                    }
                }
                (Edit::ShrinkDim { .. }, _) => {}
            }
        }
        data
    }
}

impl Deferred for RowPipeline {
    fn dims(&self) -> Vec<usize> {
        stage_dims(&self.dims, &self.edits)
            .pop()
            .unwrap_or_default()
    }

    fn run(
        &self,
        rows: &(dyn Fn(usize, usize) -> Result<Vec<f64>> + Sync),
        encode: &(dyn Fn(&[f64]) -> Result<Vec<u8>> + Sync),
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let stages = stage_dims(&self.dims, &self.edits);
        let n = self.dims[0];
        let inner: usize = self.dims[1..].iter().product::<usize>().max(1);
        let mut stats = vec![Stat::None; self.edits.len()];
        // Passes for the edits that need all rows of their input, in order.
        // The column sums of stage k's input (all rows, in row order).
        let column_sums = |stats: &[Stat], k: usize| -> Result<Vec<f64>> {
            let width: usize = stages[k][1..].iter().product::<usize>().max(1);
            let mut sum = vec![0.0f64; width];
            let mut a = 0;
            while a < n {
                let b = (a + self.block_rows).min(n);
                let block = self.run_block(&stages, stats, k, a, rows(a, b)?);
                for row in block.chunks_exact(width) {
                    sum.iter_mut().zip(row).for_each(|(s, x)| *s += x);
                }
                a = b;
            }
            Ok(sum)
        };
        // Stage k's last input row.
        let last_row = |stats: &[Stat], k: usize| -> Result<Vec<f64>> {
            let last = stages[k][0] - 1;
            Ok(self.run_block(&stages, stats, k, last, rows(last, last + 1)?))
        };
        for k in 0..self.edits.len() {
            let n_k = stages[k][0];
            match self.edits[k] {
                Edit::Center { axis: 0 } => {
                    let len = n_k as f64;
                    let sum = column_sums(&stats, k)?;
                    stats[k] = Stat::ColumnMean(sum.into_iter().map(|s| s / len).collect());
                }
                Edit::FoldLastIn {
                    axis: 0,
                    basis: Basis::Coordinate,
                } => stats[k] = Stat::LastRow(last_row(&stats, k)?),
                Edit::FoldLastIn {
                    axis: 0,
                    basis: Basis::Orthonormal,
                } => stats[k] = Stat::LastRowSum(last_row(&stats, k)?, column_sums(&stats, k)?),
                Edit::DropLast {
                    axis: 0,
                    width,
                    basis: Basis::Orthonormal,
                } if width == n_k => {
                    stats[k] = Stat::LastRowSum(last_row(&stats, k)?, column_sums(&stats, k)?)
                }
                _ => {}
            }
        }
        // The blocks themselves are independent: a few at a time, one per core, written in order.
        let one = |a: usize| -> Result<Vec<u8>> {
            let b = (a + self.block_rows).min(n);
            let src = rows(a, b)?;
            if src.len() != (b - a) * inner {
                return Err(Error::Internal(format!(
                    "rows {a}..{b}: {} values, expected {}",
                    src.len(),
                    (b - a) * inner
                )));
            }
            encode(&self.run_block(&stages, &stats, self.edits.len(), a, src))
        };
        let starts: Vec<usize> = (0..n).step_by(self.block_rows).collect();
        let threads = std::thread::available_parallelism()
            .map_or(1, |t| t.get())
            .min(4);
        for batch in starts.chunks(threads) {
            let outs: Vec<Result<Vec<u8>>> = if batch.len() == 1 {
                vec![one(batch[0])]
            } else {
                std::thread::scope(|s| {
                    let hs: Vec<_> = batch.iter().map(|&a| s.spawn(move || one(a))).collect();
                    hs.into_iter()
                        .map(|h| {
                            h.join().unwrap_or_else(|_| {
                                Err(Error::Internal("a weight block worker panicked".into()))
                            })
                        })
                        .collect()
                })
            };
            for o in outs {
                sink(&o?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (no dependency for a test).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn val(&mut self) -> f64 {
            (self.next() % 2001) as f64 / 1000.0 - 1.0
        }
        fn vec(&mut self, n: usize) -> Vec<f64> {
            (0..n).map(|_| self.val()).collect()
        }
    }

    fn lazy(dims: &[usize], data: &[f64], edits: &[Edit], block_rows: usize) -> Option<Array> {
        let p = RowPipeline::new(dims, edits)?.with_block_rows(block_rows);
        let inner: usize = dims[1..].iter().product::<usize>().max(1);
        let mut out = Vec::new();
        p.run(
            &|a, b| Ok(data[a * inner..b * inner].to_vec()),
            &|vals| Ok(vals.iter().flat_map(|x| x.to_le_bytes()).collect()),
            &mut |blk| {
                out.extend(
                    blk.chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().unwrap())),
                );
                Ok(())
            },
        )
        .unwrap();
        Some(Array {
            dims: p.dims(),
            data_type: 1,
            data: out,
        })
    }

    fn basis(g: &mut Lcg) -> Basis {
        if g.below(2) == 0 {
            Basis::Coordinate
        } else {
            Basis::Orthonormal
        }
    }

    /// Random edit chains in the applier's order on random 1-3-D tensors (both CRMSNorm bases):
    /// row by row, in any block size, gives exactly what the whole-tensor path gives.
    #[test]
    fn row_pipeline_matches_whole_tensor() {
        let mut g = Lcg(7);
        let mut checked = 0;
        for _ in 0..600 {
            let rank = 1 + g.below(3);
            let dims: Vec<usize> = (0..rank).map(|_| 1 + g.below(5)).collect();
            let n: usize = dims.iter().product();
            let data = g.vec(n);
            let mut edits = Vec::new();
            let mut d = dims.clone();
            if rank == 2 && g.below(4) == 0 {
                let w = d[1];
                edits.push(Edit::LayerNormRows {
                    gamma: g.vec(w),
                    beta: g.vec(w),
                    eps: 1e-5,
                });
            }
            if g.below(2) == 0 {
                let axis = g.below(rank);
                edits.push(Edit::Scale {
                    axis,
                    gamma: g.vec(d[axis]),
                });
            }
            if rank >= 2 && g.below(3) == 0 {
                edits.push(Edit::AddRows(g.vec(d[rank - 1])));
            }
            if g.below(2) == 0 {
                edits.push(Edit::Center {
                    axis: g.below(rank),
                });
            }
            if g.below(2) == 0 {
                let axis = g.below(rank);
                if d[axis] >= 2 {
                    edits.push(Edit::FoldLastIn {
                        axis,
                        basis: basis(&mut g),
                    });
                    d[axis] -= 1;
                }
            }
            if g.below(2) == 0 {
                let axis = g.below(rank);
                let width = if g.below(2) == 0 {
                    d[axis]
                } else {
                    d[axis] + 1
                };
                if d[axis] >= 2 {
                    edits.push(Edit::DropLast {
                        axis,
                        width,
                        basis: basis(&mut g),
                    });
                }
            }
            let mut whole = Array {
                dims: dims.clone(),
                data_type: 1,
                data: data.clone(),
            };
            apply_all(&mut whole, &edits);
            for block_rows in [1, 2, 3, 100] {
                let got = lazy(&dims, &data, &edits, block_rows)
                    .unwrap_or_else(|| panic!("{dims:?} {edits:?} not supported"));
                assert_eq!(got, whole, "{dims:?} {edits:?} block {block_rows}");
                checked += 1;
            }
        }
        assert_eq!(checked, 2400);
    }

    #[test]
    fn shape_edits_and_empty_tensors_stay_eager() {
        assert!(RowPipeline::new(&[4], &[Edit::ShrinkDim { index: 0, width: 4 }]).is_none());
        assert!(RowPipeline::new(&[0, 3], &[Edit::Center { axis: 1 }]).is_none());
        assert!(RowPipeline::new(&[], &[Edit::Center { axis: 0 }]).is_none());
        for basis in [Basis::Coordinate, Basis::Orthonormal] {
            assert!(RowPipeline::new(&[1, 3], &[Edit::FoldLastIn { axis: 0, basis }]).is_none());
        }
    }
}
