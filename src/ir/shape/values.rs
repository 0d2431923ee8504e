//! The values of small integer tensors computed from shapes (Shape → Gather → Concat ...), so
//! that a Reshape to a computed target still has a known output shape.

use super::{const_ints, Dim, Shapes};
use crate::ir::{Graph, NodeExt};
use crate::proto::NodeProto;

/// The element values of a small integer tensor computed from shapes.
pub(super) fn shape_value(g: &Graph, s: &Shapes, n: &NodeProto) -> Option<Vec<Dim>> {
    let val = |i: usize| -> Option<Vec<Dim>> {
        let v = n.input(i)?;
        if let Some(c) = const_ints(g, v) {
            return Some(c.into_iter().map(Dim::Known).collect());
        }
        if let Some(x) = s.value(v) {
            return Some(x.to_vec());
        }
        // A small tensor of known shape whose values are not known (a size computed in
        // floats): that many unknown entries, so a target built from it has a known length.
        match s.get(v)? {
            [] => Some(vec![Dim::Unknown]),
            [Dim::Known(k)] if (0..=16).contains(k) => Some(vec![Dim::Unknown; *k as usize]),
            _ => None,
        }
    };
    if !n.domain().is_empty() {
        return None;
    }
    match n.op() {
        "Constant" => {
            const_ints(g, n.output.first()?).map(|c| c.into_iter().map(Dim::Known).collect())
        }
        "Shape" => {
            let x = s.get(n.input(0)?)?;
            let r = x.len() as i64;
            let c = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (a, b) = (
                c(n.attr_i("start").unwrap_or(0)),
                c(n.attr_i("end").unwrap_or(r)),
            );
            Some(x.get(a..b.max(a))?.to_vec())
        }
        "Identity" | "Cast" | "Squeeze" | "Unsqueeze" => val(0),
        "Gather" if n.attr_i("axis").unwrap_or(0) == 0 => {
            let idx = const_ints(g, n.input(1)?)?;
            let Some(data) = val(0) else {
                // Picking from a shape we cannot read still tells how many values come out.
                return Some(vec![Dim::Unknown; idx.len()]);
            };
            // Values are kept flat (row-major): from a constant of rank ≥ 2, index i picks
            // the whole row i (`row` values), not element i.
            let row = match g.constant_dims(n.input(0)?) {
                Some(dims) if dims.len() >= 2 => dims[1..].iter().product::<usize>(),
                _ => 1,
            };
            if row == 0 || data.len() % row != 0 {
                return None;
            }
            let rows = (data.len() / row) as i64;
            let mut out = Vec::with_capacity(idx.len() * row);
            for &i in &idx {
                let i = usize::try_from(if i < 0 { i + rows } else { i }).ok()?;
                out.extend_from_slice(data.get(i * row..(i + 1) * row)?);
            }
            Some(out)
        }
        "Slice" => {
            let data = val(0)?;
            let st = *const_ints(g, n.input(1)?)?.first()?;
            let en = *const_ints(g, n.input(2)?)?.first()?;
            if let Some(ax) = n.input(3) {
                if const_ints(g, ax)? != [0] {
                    return None;
                }
            }
            if let Some(sp) = n.input(4) {
                if const_ints(g, sp)? != [1] {
                    return None;
                }
            }
            let l = data.len() as i64;
            let c = |v: i64| (if v < 0 { v + l } else { v }).clamp(0, l) as usize;
            let (a, b) = (c(st), c(en));
            Some(data.get(a..b.max(a))?.to_vec())
        }
        "Concat" => {
            let mut out = Vec::new();
            for i in 0..n.input.len() {
                out.extend(val(i)?);
            }
            Some(out)
        }
        "Add" | "Sub" | "Mul" | "Div" => {
            let (a, b) = (val(0)?, val(1)?);
            let len = a.len().max(b.len());
            if !(a.len() == len || a.len() == 1) || !(b.len() == len || b.len() == 1) {
                return None;
            }
            Some(
                (0..len)
                    .map(|i| {
                        let x = &a[if a.len() == 1 { 0 } else { i }];
                        let y = &b[if b.len() == 1 { 0 } else { i }];
                        match (x.known(), y.known()) {
                            (Some(x), Some(y)) => match n.op() {
                                "Add" => x.checked_add(y),
                                "Sub" => x.checked_sub(y),
                                "Mul" => x.checked_mul(y),
                                _ => x.checked_div(y),
                            }
                            .map(Dim::Known)
                            .unwrap_or(Dim::Unknown),
                            _ => Dim::Unknown,
                        }
                    })
                    .collect(),
            )
        }
        _ => None,
    }
}
