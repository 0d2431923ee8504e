//! The op rules of shape inference: the output shapes of each op understood. One table (one
//! match over op types, with the shape arithmetic its arms share), kept in one file.

use super::{const_ints, Dim, Shapes};
use crate::ir::{Graph, NodeExt};
use crate::proto::NodeProto;

fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    (0..rank as i64).contains(&a).then_some(a as usize)
}

fn broadcast(a: &[Dim], b: &[Dim]) -> Vec<Dim> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let da = if i + a.len() >= r {
                &a[i + a.len() - r]
            } else {
                &Dim::Known(1)
            };
            let db = if i + b.len() >= r {
                &b[i + b.len() - r]
            } else {
                &Dim::Known(1)
            };
            match (da, db) {
                (Dim::Known(1), x) | (x, Dim::Known(1)) => x.clone(),
                (Dim::Known(x), Dim::Known(y)) if x == y => Dim::Known(*x),
                (Dim::Known(x), _) | (_, Dim::Known(x)) => Dim::Known(*x),
                (Dim::Sym(x), Dim::Sym(y)) if x == y => Dim::Sym(x.clone()),
                _ => Dim::Unknown,
            }
        })
        .collect()
}

fn product(d: &[Dim]) -> Option<i64> {
    d.iter()
        .try_fold(1i64, |acc, x| x.known().and_then(|v| acc.checked_mul(v)))
}

/// MatMul's output shape (numpy semantics; 1-D operands of the right side only).
fn matmul_shape(a: Option<Vec<Dim>>, b: Option<Vec<Dim>>) -> Option<Vec<Dim>> {
    match (a?, b?) {
        (a, b) if a.len() >= 2 && b.len() >= 2 => {
            let mut out = broadcast(&a[..a.len() - 2], &b[..b.len() - 2]);
            out.push(a[a.len() - 2].clone());
            out.push(b[b.len() - 1].clone());
            Some(out)
        }
        (a, b) if a.len() >= 2 && b.len() == 1 => Some(a[..a.len() - 1].to_vec()),
        _ => None,
    }
}

/// Gemm's output shape [M, N].
fn gemm_shape(n: &NodeProto, a: Option<Vec<Dim>>, b: Option<Vec<Dim>>) -> Option<Vec<Dim>> {
    let (a, b) = (a?, b?);
    if a.len() != 2 || b.len() != 2 {
        return None;
    }
    let m = a[usize::from(n.attr_i("transA").unwrap_or(0) != 0)].clone();
    let nn = b[usize::from(n.attr_i("transB").unwrap_or(0) == 0)].clone();
    Some(vec![m, nn])
}

/// Conv's output shape [N, C_out, spatial...] (spatial sizes when pads and strides are known).
fn conv_shape(n: &NodeProto, x: Option<Vec<Dim>>, w: Option<Vec<Dim>>) -> Option<Vec<Dim>> {
    let (x, w) = (x?, w?);
    if x.len() < 3 || w.len() != x.len() {
        return None;
    }
    let sp = x.len() - 2;
    let strides = n
        .attr_ints("strides")
        .map(<[i64]>::to_vec)
        .unwrap_or(vec![1; sp]);
    let dil = n
        .attr_ints("dilations")
        .map(<[i64]>::to_vec)
        .unwrap_or(vec![1; sp]);
    let pads = n
        .attr_ints("pads")
        .map(<[i64]>::to_vec)
        .unwrap_or(vec![0; 2 * sp]);
    let auto = n
        .attribute
        .iter()
        .find(|a| a.name.as_deref() == Some("auto_pad"))
        .and_then(|a| a.s.clone());
    let auto_ok = auto
        .as_deref()
        .is_none_or(|s| s == b"NOTSET" || s == b"VALID");
    let mut out = vec![x[0].clone(), w[0].clone()];
    for i in 0..sp {
        let d = match (
            x[2 + i].known(),
            w[2 + i].known(),
            strides.get(i),
            dil.get(i),
            pads.get(i),
            pads.get(i + sp),
        ) {
            (Some(xi), Some(k), Some(&s), Some(&dl), Some(&p0), Some(&p1)) if auto_ok && s > 0 => {
                // In i128: sizes, pads and dilations come from the file.
                let (xi, p0, p1, dl, k, s) = (
                    xi as i128, p0 as i128, p1 as i128, dl as i128, k as i128, s as i128,
                );
                i64::try_from((xi + p0 + p1 - dl * (k - 1) - 1) / s + 1)
                    .map(Dim::Known)
                    .unwrap_or(Dim::Unknown)
            }
            _ => Dim::Unknown,
        };
        out.push(d);
    }
    Some(out)
}

pub(super) fn infer_node(g: &Graph, s: &Shapes, n: &NodeProto) -> Vec<Option<Vec<Dim>>> {
    let inp = |i: usize| n.input(i).and_then(|v| s.get(v)).map(<[Dim]>::to_vec);
    let one = |x: Option<Vec<Dim>>| vec![x];
    if !n.domain().is_empty() {
        return match n.op() {
            "SkipLayerNormalization" | "SkipSimplifiedLayerNormalization" => {
                let x = inp(0);
                vec![x.clone(), None, None, x]
            }
            "BiasGelu"
            | "FastGelu"
            | "Gelu"
            | "QuickGelu"
            | "BiasAdd"
            | "LayerNormalization"
            | "SimplifiedLayerNormalization"
            | "BiasSoftmax" => one(inp(0)),
            // onnxruntime's optimiser: MatMul with transposes and a scale; Gemm and Conv with an
            // activation. Same shapes as the standard ops (transBatch* left unknown).
            "FusedMatMul"
                if n.attr_i("transBatchA").unwrap_or(0) == 0
                    && n.attr_i("transBatchB").unwrap_or(0) == 0 =>
            {
                let t = |x: Option<Vec<Dim>>, flag: &str| {
                    x.map(|mut v| {
                        let r = v.len();
                        if n.attr_i(flag).unwrap_or(0) != 0 && r >= 2 {
                            v.swap(r - 1, r - 2);
                        }
                        v
                    })
                };
                one(matmul_shape(t(inp(0), "transA"), t(inp(1), "transB")))
            }
            "FusedGemm" => one(gemm_shape(n, inp(0), inp(1))),
            "FusedConv" => one(conv_shape(n, inp(0), inp(1))),
            _ => vec![],
        };
    }
    match n.op() {
        "Constant" => one(g
            .constant_tensor(n.output.first().map(String::as_str).unwrap_or(""))
            .map(|t| t.dims.iter().map(|&d| Dim::Known(d)).collect())),
        "Identity"
        | "Cast"
        | "Relu"
        | "Gelu"
        | "Erf"
        | "Sqrt"
        | "Reciprocal"
        | "Neg"
        | "Tanh"
        | "Sigmoid"
        | "Softmax"
        | "Exp"
        | "Log"
        | "Abs"
        | "Not"
        | "IsNaN"
        | "IsInf"
        | "LayerNormalization"
        | "SimplifiedLayerNormalization"
        | "RMSNormalization"
        | "LeakyRelu"
        | "Elu"
        | "HardSigmoid"
        | "Softplus"
        | "Cos"
        | "Sin"
        | "CumSum"
        | "Trilu"
        | "CastLike"
        | "Clip"
        | "Round"
        | "Floor"
        | "Ceil"
        | "Sign" => one(inp(0)),
        "Dropout" => vec![inp(0), inp(0)],
        // Same rank; sizes when stated (constant or computed from shapes), else unknown.
        "Resize" if n.attr_ints("axes").is_none() => {
            let Some(x) = inp(0) else { return vec![] };
            let sizes: Option<Vec<Dim>> = n.input(3).filter(|v| !v.is_empty()).and_then(|v| {
                const_ints(g, v)
                    .map(|c| c.into_iter().map(Dim::Known).collect())
                    .or_else(|| s.value(v).map(<[Dim]>::to_vec))
            });
            match sizes {
                Some(sz) if sz.len() == x.len() => one(Some(sz)),
                _ => one(Some(vec![Dim::Unknown; x.len()])),
            }
        }
        // Scatters write into a copy of their data input: same shape.
        "ScatterND" | "ScatterElements" | "Scatter" => one(inp(0)),
        // The output has the indices' shape.
        "GatherElements" => one(inp(1)),
        // Values and indices: the input's shape, k along the axis.
        "TopK" => {
            let Some(mut x) = inp(0) else { return vec![] };
            let Some(ax) = norm_axis(n.attr_i("axis").unwrap_or(-1), x.len()) else {
                return vec![];
            };
            x[ax] = match n.input(1).and_then(|k| const_ints(g, k)).as_deref() {
                Some([k]) => Dim::Known(*k),
                _ => Dim::Unknown,
            };
            vec![Some(x.clone()), Some(x)]
        }
        "Range" => one(Some(vec![Dim::Unknown])),
        "Tile" => {
            let Some(x) = inp(0) else { return vec![] };
            let reps: Option<Vec<Dim>> = n.input(1).and_then(|r| {
                const_ints(g, r)
                    .map(|v| v.into_iter().map(Dim::Known).collect())
                    .or_else(|| s.value(r).map(<[Dim]>::to_vec))
            });
            let out = x
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    match (
                        d.known(),
                        reps.as_ref().and_then(|r| r.get(i)).and_then(Dim::known),
                    ) {
                        (Some(a), Some(b)) => Dim::Known(a * b),
                        (_, Some(1)) => d.clone(),
                        _ => Dim::Unknown,
                    }
                })
                .collect();
            one(Some(out))
        }
        "ConstantOfShape" => one(n.input(0).and_then(|v| s.value(v)).map(<[Dim]>::to_vec)),
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Equal" | "Less" | "Greater" | "LessOrEqual"
        | "GreaterOrEqual" | "And" | "Or" | "Xor" | "Max" | "Min" | "Mod" | "BitShift" => {
            match (inp(0), inp(1)) {
                (Some(a), Some(b)) => one(Some(broadcast(&a, &b))),
                _ => vec![],
            }
        }
        "Where" => match (inp(0), inp(1), inp(2)) {
            (Some(a), Some(b), Some(c)) => one(Some(broadcast(&broadcast(&a, &b), &c))),
            _ => vec![],
        },
        "MatMul" => one(matmul_shape(inp(0), inp(1))),
        "Gemm" => one(gemm_shape(n, inp(0), inp(1))),
        "Gather" => match (inp(0), inp(1)) {
            (Some(d), Some(i)) => {
                let Some(ax) = norm_axis(n.attr_i("axis").unwrap_or(0), d.len()) else {
                    return vec![];
                };
                let mut out = d[..ax].to_vec();
                out.extend(i);
                out.extend_from_slice(&d[ax + 1..]);
                one(Some(out))
            }
            _ => vec![],
        },
        "Reshape" => {
            // The output's rank is the target's length even when the input's shape is unknown
            // (its entries 0 and -1 are then unknown too).
            let x = inp(0).unwrap_or_default();
            let target: Vec<Dim> = match n.input(1).and_then(|t| const_ints(g, t)) {
                Some(t) => t.into_iter().map(Dim::Known).collect(),
                None => match n.input(1).and_then(|t| s.value(t)) {
                    Some(v) => v.to_vec(),
                    None => match n.input(1).and_then(|t| s.get(t)).and_then(|sh| match sh {
                        [k] => k.known(),
                        _ => None,
                    }) {
                        Some(k) if (0..=16).contains(&k) => vec![Dim::Unknown; k as usize],
                        _ => return vec![],
                    },
                },
            };
            let allowzero = n.attr_i("allowzero").unwrap_or(0) != 0;
            let mut out: Vec<Dim> = target
                .iter()
                .enumerate()
                .map(|(i, t)| match t {
                    Dim::Known(0) if !allowzero => x.get(i).cloned().unwrap_or(Dim::Unknown),
                    Dim::Known(-1) => Dim::Unknown,
                    other => other.clone(),
                })
                .collect();
            if let Some(pos) = target.iter().position(|t| *t == Dim::Known(-1)) {
                let others: Vec<Dim> = out
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != pos)
                    .map(|(_, d)| d.clone())
                    .collect();
                let total = if inp(0).is_some() { product(&x) } else { None };
                if let (Some(total), Some(rest)) = (total, product(&others)) {
                    if rest > 0 {
                        out[pos] = Dim::Known(total / rest);
                    }
                }
            }
            one(Some(out))
        }
        "Flatten" => {
            let Some(x) = inp(0) else { return vec![] };
            let Some(ax) = norm_axis(n.attr_i("axis").unwrap_or(1), x.len() + 1) else {
                return vec![];
            };
            let a = product(&x[..ax]).map(Dim::Known).unwrap_or(Dim::Unknown);
            let b = product(&x[ax..]).map(Dim::Known).unwrap_or(Dim::Unknown);
            one(Some(vec![a, b]))
        }
        "Transpose" => {
            let Some(x) = inp(0) else { return vec![] };
            let perm: Vec<usize> = match n.attr_ints("perm") {
                Some(p) => p.iter().map(|&v| v as usize).collect(),
                None => (0..x.len()).rev().collect(),
            };
            if perm.len() != x.len() || perm.iter().any(|&p| p >= x.len()) {
                return vec![];
            }
            one(Some(perm.iter().map(|&p| x[p].clone()).collect()))
        }
        "Unsqueeze" => {
            let Some(x) = inp(0) else { return vec![] };
            let axes = n
                .attr_ints("axes")
                .map(<[i64]>::to_vec)
                .or_else(|| n.input(1).and_then(|a| const_ints(g, a)));
            let Some(axes) = axes else { return vec![] };
            let r = x.len() + axes.len();
            let mut ax: Vec<usize> = match axes
                .iter()
                .map(|&a| norm_axis(a, r))
                .collect::<Option<Vec<_>>>()
            {
                Some(a) => a,
                None => return vec![],
            };
            ax.sort();
            let mut out = Vec::with_capacity(r);
            let mut it = x.into_iter();
            for i in 0..r {
                if ax.contains(&i) {
                    out.push(Dim::Known(1));
                } else {
                    out.push(it.next().unwrap_or(Dim::Unknown));
                }
            }
            one(Some(out))
        }
        "Squeeze" => {
            let Some(x) = inp(0) else { return vec![] };
            let axes = n
                .attr_ints("axes")
                .map(<[i64]>::to_vec)
                .or_else(|| n.input(1).and_then(|a| const_ints(g, a)));
            match axes {
                Some(axes) => {
                    let ax: Option<Vec<usize>> =
                        axes.iter().map(|&a| norm_axis(a, x.len())).collect();
                    let Some(ax) = ax else { return vec![] };
                    one(Some(
                        x.into_iter()
                            .enumerate()
                            .filter(|(i, _)| !ax.contains(i))
                            .map(|(_, d)| d)
                            .collect(),
                    ))
                }
                None if x.iter().all(|d| d.known().is_some()) => one(Some(
                    x.into_iter().filter(|d| d.known() != Some(1)).collect(),
                )),
                None => vec![],
            }
        }
        "Concat" => {
            let shapes: Option<Vec<Vec<Dim>>> = (0..n.input.len()).map(inp).collect();
            let Some(shapes) = shapes else {
                // All inputs share a rank: one known input gives it, and its other axes.
                let Some(known) = (0..n.input.len()).find_map(inp) else {
                    return vec![];
                };
                let Some(ax) = norm_axis(n.attr_i("axis").unwrap_or(0), known.len()) else {
                    return vec![];
                };
                let mut out = known;
                out[ax] = Dim::Unknown;
                return one(Some(out));
            };
            let Some(first) = shapes.first() else {
                return vec![];
            };
            let Some(ax) = norm_axis(n.attr_i("axis").unwrap_or(0), first.len()) else {
                return vec![];
            };
            let mut out = first.clone();
            out[ax] = shapes
                .iter()
                .map(|s| s.get(ax).and_then(Dim::known))
                .try_fold(0i64, |a, v| v.and_then(|v| a.checked_add(v)))
                .map(Dim::Known)
                .unwrap_or(Dim::Unknown);
            for s in &shapes[1..] {
                for (i, d) in s.iter().enumerate() {
                    if i != ax
                        && matches!(out.get(i), Some(Dim::Unknown) | Some(Dim::Sym(_)))
                        && d.known().is_some()
                    {
                        out[i] = d.clone();
                    }
                }
            }
            one(Some(out))
        }
        "Slice" => {
            let Some(x) = inp(0) else { return vec![] };
            let starts = n.input(1).and_then(|v| const_ints(g, v));
            let ends = n.input(2).and_then(|v| const_ints(g, v));
            let axes = match n.input(3) {
                Some(a) => const_ints(g, a),
                None => starts.as_ref().map(|s| (0..s.len() as i64).collect()),
            };
            let steps = match n.input(4) {
                Some(a) => const_ints(g, a),
                None => starts.as_ref().map(|s| vec![1; s.len()]),
            };
            let mut out = x.clone();
            match (starts, ends, axes, steps) {
                (Some(st), Some(en), Some(ax), Some(sp)) => {
                    for (k, &axis) in ax.iter().enumerate() {
                        let Some(a) = norm_axis(axis, x.len()) else {
                            return vec![];
                        };
                        out[a] = match (x[a].known(), st.get(k), en.get(k), sp.get(k)) {
                            (Some(d), Some(&s0), Some(&e0), Some(&step)) if step != 0 && d >= 0 => {
                                // In i128: starts, ends and steps come from the file and may be
                                // anything (i64::MIN, i64::MAX).
                                let (d, s0, e0, step) =
                                    (d as i128, s0 as i128, e0 as i128, step as i128);
                                let clamp = |v: i128, lo: i128, hi: i128| v.max(lo).min(hi);
                                let (s1, e1) = if step > 0 {
                                    (
                                        clamp(if s0 < 0 { s0 + d } else { s0 }, 0, d),
                                        clamp(if e0 < 0 { e0 + d } else { e0 }, 0, d),
                                    )
                                } else {
                                    (
                                        clamp(if s0 < 0 { s0 + d } else { s0 }, -1, d - 1),
                                        clamp(if e0 < 0 { e0 + d } else { e0 }, -1, d - 1),
                                    )
                                };
                                let len = if step > 0 {
                                    (e1 - s1 + step - 1) / step
                                } else {
                                    (s1 - e1 + (-step) - 1) / (-step)
                                };
                                i64::try_from(len.max(0))
                                    .map(Dim::Known)
                                    .unwrap_or(Dim::Unknown)
                            }
                            _ => Dim::Unknown,
                        };
                    }
                    one(Some(out))
                }
                (_, _, Some(ax), _) => {
                    for a in ax {
                        if let Some(a) = norm_axis(a, x.len()) {
                            out[a] = Dim::Unknown;
                        }
                    }
                    one(Some(out))
                }
                _ => one(Some(vec![Dim::Unknown; x.len()])),
            }
        }
        "Conv" => one(conv_shape(n, inp(0), inp(1))),
        "Pad" => {
            let Some(x) = inp(0) else { return vec![] };
            let r = x.len();
            let pads = n
                .attr_ints("pads")
                .map(<[i64]>::to_vec)
                .or_else(|| n.input(1).and_then(|p| const_ints(g, p)));
            let with_axes = n.input(3).is_some_and(|a| !a.is_empty());
            let out = match pads {
                Some(pd) if pd.len() == 2 * r && !with_axes => x
                    .iter()
                    .enumerate()
                    .map(|(i, d)| match d.known() {
                        Some(k) => k
                            .checked_add(pd[i])
                            .and_then(|v| v.checked_add(pd[i + r]))
                            .map_or(Dim::Unknown, Dim::Known),
                        None if pd[i] == 0 && pd[i + r] == 0 => d.clone(),
                        None => Dim::Unknown,
                    })
                    .collect(),
                _ => vec![Dim::Unknown; r],
            };
            one(Some(out))
        }
        // Global pooling keeps batch and channels; every spatial size becomes 1.
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => {
            let Some(x) = inp(0) else { return vec![] };
            if x.len() < 3 {
                return vec![];
            }
            let mut out = x[..2].to_vec();
            out.extend(std::iter::repeat_n(Dim::Known(1), x.len() - 2));
            one(Some(out))
        }
        // Pooling keeps batch and channels; spatial sizes as a convolution by the kernel.
        "AveragePool" | "MaxPool" | "LpPool" if n.output.len() == 1 => {
            let Some(x) = inp(0) else { return vec![] };
            let Some(k) = n.attr_ints("kernel_shape") else {
                return vec![];
            };
            if x.len() < 3 || k.len() != x.len() - 2 {
                return vec![];
            }
            let mut w = vec![Dim::Unknown, Dim::Unknown];
            w.extend(k.iter().map(|&v| Dim::Known(v)));
            let mut out = conv_shape(n, Some(x.clone()), Some(w)).unwrap_or_default();
            if n.attr_i("ceil_mode").unwrap_or(0) != 0 {
                out.iter_mut().skip(2).for_each(|d| *d = Dim::Unknown);
            }
            if out.len() == x.len() {
                out[1] = x[1].clone();
            }
            one(Some(out))
        }
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL2" => {
            let Some(x) = inp(0) else { return vec![] };
            let axes = n
                .attr_ints("axes")
                .map(<[i64]>::to_vec)
                .or_else(|| n.input(1).and_then(|a| const_ints(g, a)));
            let keep = n.attr_i("keepdims").unwrap_or(1) != 0;
            let ax: Vec<usize> = match axes {
                Some(a) => match a
                    .iter()
                    .map(|&v| norm_axis(v, x.len()))
                    .collect::<Option<Vec<_>>>()
                {
                    Some(v) => v,
                    None => return vec![],
                },
                None => (0..x.len()).collect(),
            };
            let out = x
                .iter()
                .enumerate()
                .filter_map(|(i, d)| {
                    if ax.contains(&i) {
                        keep.then_some(Dim::Known(1))
                    } else {
                        Some(d.clone())
                    }
                })
                .collect();
            one(Some(out))
        }
        "Split" => {
            let Some(x) = inp(0) else { return vec![] };
            let Some(ax) = norm_axis(n.attr_i("axis").unwrap_or(0), x.len()) else {
                return vec![];
            };
            let sizes = n
                .input(1)
                .and_then(|v| const_ints(g, v))
                .or_else(|| n.attr_ints("split").map(<[i64]>::to_vec));
            let k = n.output.len();
            (0..k)
                .map(|i| {
                    let mut o = x.clone();
                    o[ax] = match (&sizes, x[ax].known()) {
                        (Some(sz), _) => sz.get(i).map(|&v| Dim::Known(v)).unwrap_or(Dim::Unknown),
                        (None, Some(d)) if d % k as i64 == 0 => Dim::Known(d / k as i64),
                        _ => Dim::Unknown,
                    };
                    Some(o)
                })
                .collect()
        }
        "Shape" => match inp(0) {
            Some(x) => {
                let r = x.len() as i64;
                let st = n.attr_i("start").unwrap_or(0);
                let en = n.attr_i("end").unwrap_or(r);
                let c = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r);
                one(Some(vec![Dim::Known((c(en) - c(st)).max(0))]))
            }
            None => vec![],
        },
        "Expand" => {
            let Some(x) = inp(0) else { return vec![] };
            let t: Vec<Dim> = match n.input(1).and_then(|v| const_ints(g, v)) {
                Some(t) => t.into_iter().map(Dim::Known).collect(),
                None => match n.input(1).and_then(|v| s.value(v)) {
                    // Unknown target entries: the input's size where it is not 1, else unknown.
                    Some(v) => v.to_vec(),
                    None => match n
                        .input(1)
                        .and_then(|v| s.get(v))
                        .and_then(|sh| sh.first())
                        .and_then(Dim::known)
                    {
                        Some(k) if (0..=16).contains(&k) => vec![Dim::Unknown; k as usize],
                        _ => return vec![],
                    },
                },
            };
            let r = x.len().max(t.len());
            let out = (0..r)
                .map(|i| {
                    let xd = if i + x.len() >= r {
                        x[i + x.len() - r].clone()
                    } else {
                        Dim::Known(1)
                    };
                    let td = if i + t.len() >= r {
                        t[i + t.len() - r].clone()
                    } else {
                        Dim::Known(1)
                    };
                    match (&xd, &td) {
                        (_, Dim::Known(1)) => xd,
                        (Dim::Known(1), _) => td,
                        (Dim::Known(a), _) => Dim::Known(*a),
                        _ => td,
                    }
                })
                .collect();
            one(Some(out))
        }
        _ => vec![],
    }
}
