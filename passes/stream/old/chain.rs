//! Constant sources that reach a stream through ops acting the same on every channel (the
//! hidden axis followed through them, wherever it sits).

use super::super::{is_float_cast, Analysis};
use crate::ir::{shape, NodeExt, NodeId};

impl Analysis<'_> {
    /// Whether `v`, its hidden axis at `axis` (width `d`), is computed from constants only,
    /// through ops that act linearly and identically on every channel along other axes
    /// (DINOv2's and ViT's `interpolate_pos_encoding`: a position table reshaped, transposed,
    /// resized, transposed back, reshaped and concatenated). For such an op f, and C the
    /// centring over the hidden axis, f(C(x)) = C(f(x)): f mixes positions, never channels, with
    /// the same weights for every channel. So centring each constant over its hidden axis
    /// centres `v`. The hidden axis is followed through `Transpose` (any permutation),
    /// `Reshape` (when its extent and position can be followed), `Unsqueeze`/`Squeeze`,
    /// `Flatten`; passed through `Identity`, `Cast`, `Dropout`, `Resize` (any mode, the hidden
    /// axis not resized), `Slice`, `Pad` with zeros, `Concat`, `Gather`/`Split` on other axes,
    /// `AveragePool` (channels first), `ReduceMean`/`ReduceSum` over other axes, `Add`/`Sub`,
    /// `Where` with a per-token condition, and `Mul`/`Div` by a constant scalar. Each value
    /// inside the chain is read by nothing else (`Shape` apart). Fills `ch`.
    pub(super) fn chain_old(
        &self,
        v: &str,
        axis: usize,
        d: usize,
        ch: &mut Chain,
        path: &mut Vec<String>,
        depth: usize,
    ) -> bool {
        if depth > 64 {
            return false;
        }
        let Some(p) = self.ix.producer(v) else {
            return false;
        };
        let n = self.g.node(p);
        if !n.domain().is_empty() || self.norm_by_node.contains_key(&p) {
            return false;
        }
        let r = match self.rank(v) {
            Some(r) if axis < r => r,
            _ => return false,
        };
        let norm = |a: i64, rank: usize| -> Option<usize> {
            let a = if a < 0 { a + rank as i64 } else { a };
            (0..rank as i64).contains(&a).then_some(a as usize)
        };
        let ints = |slot: usize| n.input(slot).and_then(|x| shape::const_ints(self.g, x));
        let axes_of = |slot: usize| {
            n.attr_ints("axes")
                .map(<[i64]>::to_vec)
                .or_else(|| ints(slot))
        };
        path.push(format!("{} {:?}", n.op().escape_debug(), n.label()));
        let label = path.clone();
        // Follow input `slot`, its hidden axis at `ax`.
        let go = |slot: usize, ax: usize, ch: &mut Chain, path: &mut Vec<String>| -> bool {
            let Some(x) = n.input(slot).filter(|x| !x.is_empty()) else {
                return false;
            };
            if self.is_const(x) {
                let dims = self.g.constant_dims(x).unwrap_or_default();
                if dims.get(ax).is_some_and(|&e| e == d || e == 1) {
                    ch.consts.push((p, slot, ax, label.clone()));
                    return true;
                }
                return false;
            }
            if self.value_uses(x) != 1
                || self.ix.graph_outputs.contains(x)
                || self.ix.subgraph_reads.contains_key(x)
            {
                return false;
            }
            ch.values.push(x.to_string());
            let mut sub = path.clone();
            self.chain_old(x, ax, d, ch, &mut sub, depth + 1)
        };
        // The hidden axis of input `x` when `x` broadcasts against the output (rank `r`).
        let aligned = |x: &str| -> Option<usize> {
            let rx = self
                .rank(x)
                .or_else(|| self.g.constant_dims(x).map(|v| v.len()))?;
            (axis + rx).checked_sub(r).filter(|&a| a < rx)
        };
        let ok = match n.op() {
            "Identity" | "Dropout" => go(0, axis, ch, path),
            "Cast" if is_float_cast(n) => go(0, axis, ch, path),
            "Transpose" => {
                let perm: Vec<usize> = match n.attr_ints("perm") {
                    Some(pm) => pm.iter().map(|&a| a as usize).collect(),
                    None => (0..r).rev().collect(),
                };
                perm.len() == r
                    && perm.get(axis).is_some_and(|&a| a < r)
                    && go(0, perm[axis], ch, path)
            }
            "Reshape" => {
                let (Some(out), Some(inp)) = (
                    self.shapes.get(v),
                    n.input(0).and_then(|x| self.shapes.get(x)),
                ) else {
                    path.pop();
                    return false;
                };
                let prod = |ds: &[shape::Dim]| -> Option<i64> {
                    ds.iter()
                        .try_fold(1i64, |a, x| x.known().and_then(|k| a.checked_mul(k)))
                };
                let inner = prod(&out[axis + 1..]);
                let j = (0..inp.len())
                    .rev()
                    .find(|&j| inp[j].known() == Some(d as i64) && prod(&inp[j + 1..]) == inner);
                match (out[axis].known(), inner, j) {
                    (Some(k), Some(_), Some(j)) if k == d as i64 => {
                        ch.shapes.push((p, 1, axis));
                        go(0, j, ch, path)
                    }
                    _ => false,
                }
            }
            "Resize" | "Upsample" => {
                let crop = n.attribute.iter().any(|a| {
                    a.name.as_deref() == Some("coordinate_transformation_mode")
                        && a.s.as_deref() == Some(b"tf_crop_and_resize")
                });
                let scales_ok = match n
                    .input(if n.is("Upsample") { 1 } else { 2 })
                    .filter(|x| !x.is_empty())
                {
                    None => true,
                    Some(sc) => self
                        .g
                        .constant_tensor(sc)
                        .and_then(|t| {
                            crate::ir::read_array(t, &Default::default(), std::path::Path::new(""))
                                .ok()
                        })
                        .is_some_and(|a| a.data.is_empty() || a.data.get(axis) == Some(&1.0)),
                };
                let sizes_ok = match n.input(3).filter(|x| !x.is_empty() && n.is("Resize")) {
                    None => true,
                    Some(sz) => {
                        let vals: Option<Vec<shape::Dim>> = shape::const_ints(self.g, sz)
                            .map(|v| v.into_iter().map(shape::Dim::Known).collect())
                            .or_else(|| self.shapes.value(sz).map(<[shape::Dim]>::to_vec));
                        let fine = vals.is_some_and(|v| {
                            v.get(axis).and_then(shape::Dim::known) == Some(d as i64)
                        });
                        // The constant that states the width (the dynamo exporter's sizes are
                        // `Concat([1, D], [h, w])`) is shrunk with the chain; a width computed
                        // from a `Shape` follows the compressed value by itself.
                        if fine {
                            ch.shapes
                                .push(self.const_shape_slot(p, 3, axis, 0).unwrap_or((p, 3, axis)));
                        }
                        fine
                    }
                };
                !crop
                    && n.attr_ints("axes").is_none()
                    && scales_ok
                    && sizes_ok
                    && go(0, axis, ch, path)
            }
            "Slice" => {
                let axes = match n.input(3) {
                    Some(_) => ints(3),
                    None => ints(1).map(|st| (0..st.len() as i64).collect()),
                };
                axes.is_some_and(|ax| ax.iter().all(|&a| norm(a, r) != Some(axis)))
                    && go(0, axis, ch, path)
            }
            "Concat" => {
                norm(n.attr_i("axis").unwrap_or(0), r).is_some_and(|a| a != axis)
                    && (0..n.input.len()).all(|i| go(i, axis, ch, path))
            }
            "Unsqueeze" => match axes_of(1) {
                Some(ax) => {
                    let ax: Option<Vec<usize>> = ax.iter().map(|&a| norm(a, r)).collect();
                    match ax {
                        Some(ax) if !ax.contains(&axis) => {
                            let before = ax.iter().filter(|&&a| a < axis).count();
                            go(0, axis - before, ch, path)
                        }
                        _ => false,
                    }
                }
                None => false,
            },
            "Squeeze" => match axes_of(1) {
                Some(ax) => {
                    let ri = r + ax.len();
                    let ax: Option<Vec<usize>> = ax.iter().map(|&a| norm(a, ri)).collect();
                    match ax {
                        Some(ax) => match (0..ri).filter(|i| !ax.contains(i)).nth(axis) {
                            Some(j) => go(0, j, ch, path),
                            None => false,
                        },
                        None => false,
                    }
                }
                None => false,
            },
            "Flatten" => {
                let ri = n.input(0).and_then(|x| self.rank(x));
                match ri {
                    Some(ri) if axis == 1 && r == 2 => {
                        let f = n.attr_i("axis").unwrap_or(1);
                        norm(f, ri + 1) == Some(ri - 1)
                            && n.input(0)
                                .and_then(|x| self.shapes.get(x))
                                .and_then(|s| s.last().and_then(shape::Dim::known))
                                == Some(d as i64)
                            && go(0, ri - 1, ch, path)
                    }
                    _ => false,
                }
            }
            "Pad" => {
                let fill_ok = self.pads_with_zeros(n, n.input(2).filter(|x| !x.is_empty()));
                let pads = n.attr_ints("pads").map(<[i64]>::to_vec).or_else(|| ints(1));
                let pads_ok = n.input(3).filter(|x| !x.is_empty()).is_none()
                    && pads
                        .is_some_and(|pd| pd.len() == 2 * r && pd[axis] == 0 && pd[axis + r] == 0);
                fill_ok && pads_ok && go(0, axis, ch, path)
            }
            "Gather" => {
                let ri = n.input(0).and_then(|x| self.rank(x));
                let rk = n.input(1).and_then(|x| {
                    self.rank(x)
                        .or_else(|| self.g.constant_dims(x).map(|v| v.len()))
                });
                match (ri, rk) {
                    (Some(ri), Some(rk)) => match norm(n.attr_i("axis").unwrap_or(0), ri) {
                        Some(g) if axis < g => go(0, axis, ch, path),
                        Some(g) if axis >= g + rk => go(0, axis + 1 - rk, ch, path),
                        _ => false,
                    },
                    _ => false,
                }
            }
            "Split" => {
                norm(n.attr_i("axis").unwrap_or(0), r).is_some_and(|a| a != axis)
                    && go(0, axis, ch, path)
            }
            "AveragePool" => axis == 1 && go(0, 1, ch, path),
            "ReduceMean" | "ReduceSum" => {
                let ri = n.input(0).and_then(|x| self.rank(x));
                let keep = n.attr_i("keepdims").unwrap_or(1) != 0;
                match (ri, axes_of(1)) {
                    (Some(ri), Some(ax)) if !ax.is_empty() => {
                        let ax: Option<Vec<usize>> = ax.iter().map(|&a| norm(a, ri)).collect();
                        let j = match &ax {
                            Some(ax) if keep => Some(axis).filter(|j| !ax.contains(j)),
                            Some(ax) => (0..ri).filter(|i| !ax.contains(i)).nth(axis),
                            None => None,
                        };
                        match j {
                            Some(j) => go(0, j, ch, path),
                            None => false,
                        }
                    }
                    _ => false,
                }
            }
            "Add" | "Sub" => {
                let (a0, a1) = (n.input(0).and_then(&aligned), n.input(1).and_then(&aligned));
                match (a0, a1) {
                    (Some(a0), Some(a1)) => go(0, a0, ch, path) && go(1, a1, ch, path),
                    _ => false,
                }
            }
            "Where" => {
                let per_token = n.input(0).is_some_and(|c| match self.shapes.get(c) {
                    Some(cs) => match (axis + cs.len()).checked_sub(r) {
                        None => true,
                        Some(k) => cs.get(k).and_then(shape::Dim::known) == Some(1),
                    },
                    None => false,
                });
                let (a1, a2) = (n.input(1).and_then(&aligned), n.input(2).and_then(aligned));
                match (per_token, a1, a2) {
                    (true, Some(a1), Some(a2)) => go(1, a1, ch, path) && go(2, a2, ch, path),
                    _ => false,
                }
            }
            "Mul" | "Div" => {
                let scalar = n
                    .input(1)
                    .and_then(|c| self.g.constant_dims(c))
                    .is_some_and(|ds| ds.iter().product::<usize>() == 1);
                scalar && go(0, axis, ch, path)
            }
            _ => false,
        };
        path.pop();
        ok
    }
}

/// A constant source reaching the stream through pass-through ops ([`Analysis::chain`]).
#[derive(Default)]
pub(super) struct Chain {
    /// (node, slot, hidden axis in the constant, the ops passed through).
    pub consts: Vec<(NodeId, usize, usize, Vec<String>)>,
    /// The values passed through.
    pub values: Vec<String>,
    /// Shape inputs that state the hidden width: (node, slot, index).
    pub shapes: Vec<(NodeId, usize, usize)>,
}
