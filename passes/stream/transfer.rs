//! The transfer rules: what each op does with a stream value at one of its ports.
//!
//! One rule per op, asked from any data port (an input going down, an output going up), so
//! that the two directions of the analysis cannot disagree. A *carrier* is linear in its
//! stream inputs and acts the same way on every channel of the hidden axis: then
//! f(x − s⊗1) = f(x) − f(s)⊗1 and m(f(x)) = f(m(x)), so it maps `Stream` to `Stream`
//! ([`super::lattice::Fact`]); its rule says where the hidden axis is at each of its data ports.
//! Every other reader yields a `Derived` value (it sees or changes the mean) or, when the
//! analysis cannot tell (no rule for the op, a rank or shape it needs and does not have), an
//! `Unknown` one. The identities are listed in passes/README.md.

use super::lattice::{Fact, Hidden};
use super::{is_float_cast, Analysis};
use crate::ir::{shape, NodeExt, NodeId};
use crate::proto::NodeProto;

/// A data port of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Port {
    /// Input slot.
    In(usize),
    /// Output index.
    Out(usize),
}

/// What one node does with a stream value at one of its ports.
#[derive(Clone, Debug, PartialEq)]
pub enum Rule {
    /// A carrier: its data ports and the hidden axis at each (the asked port included); they
    /// are all `Stream`.
    Carry(Carry),
    /// What the node makes of the value instead: `Same` for a reader of no values (`Shape`,
    /// `Size`), `Derived` for one that sees or changes the mean, `Unknown`.
    Yields(Fact),
}

/// A carrier's ports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Carry {
    /// Every data port with its hidden axis.
    pub ports: Vec<(Port, Hidden)>,
    /// Input slots that must keep their values (a factor, a condition).
    pub same: Vec<usize>,
    /// Integer inputs that state the width D at an index: (slot, index) — a Reshape target,
    /// Resize sizes (compressed with the stream).
    pub sizes: Vec<(usize, usize)>,
}

/// The product of known dims.
fn product(ds: &[shape::Dim]) -> Option<i64> {
    ds.iter()
        .try_fold(1i64, |a, x| x.known().and_then(|k| a.checked_mul(k)))
}

/// Where the axis `a` of width `d` of a value of dims `from` goes when the value is reshaped
/// to dims `to` (row-major): the axis of width `d` with the same product of dims after it (the
/// last one when several are: trailing 1s), or, when that product is not known (a position
/// table resized to the image), with the same product of dims before it (known, or the same
/// dims, named sizes included) — both sides hold the same elements, so equal products before
/// and equal widths `d` make equal products after.
/// The last axis needs no dims of `from`.
pub(super) fn reshape_axis(
    from: Option<&[shape::Dim]>,
    a: Hidden,
    to: Option<&[shape::Dim]>,
    d: usize,
) -> Option<usize> {
    let to = to?;
    let d = d as i64;
    let width_d = |j: &usize| to[*j].known() == Some(d);
    let inner = if a.is_last() {
        Some(1)
    } else {
        let from = from?;
        let ax = from.len().checked_sub(a.from_end + 1)?;
        product(&from[ax + 1..])
    };
    if let Some(inner) = inner {
        if let Some(j) = (0..to.len())
            .rev()
            .filter(width_d)
            .find(|&j| product(&to[j + 1..]) == Some(inner))
        {
            return Some(j);
        }
    }
    let from = from?;
    let ax = from.len().checked_sub(a.from_end + 1)?;
    let before = &from[..ax];
    let outer = product(before);
    // Equal products: known, or the same dims (named sizes included, never unknown ones).
    let named = !before.contains(&shape::Dim::Unknown);
    (0..to.len())
        .filter(width_d)
        .find(|&j| (outer.is_some() && product(&to[..j]) == outer) || (named && to[..j] == *before))
}

/// A one-input carrier (input 0 → output 0) asked at `port`, whose hidden axis is `here` there
/// and `other` on the other side.
fn unary(port: Port, here: Hidden, other: Hidden) -> Carry {
    let (hi, ho) = match port {
        Port::In(_) => (here, other),
        _ => (other, here),
    };
    Carry {
        ports: vec![(Port::In(0), hi), (Port::Out(0), ho)],
        ..Default::default()
    }
}

/// Normalise an axis attribute against rank `r`.
fn norm_axis(a: i64, r: usize) -> Option<usize> {
    let a = if a < 0 { a + r as i64 } else { a };
    (0..r as i64).contains(&a).then_some(a as usize)
}

impl Analysis<'_> {
    /// The rank of `v`: inferred, or the dims of a constant.
    pub(super) fn rank_of(&self, v: &str) -> Option<usize> {
        self.shapes
            .rank(v)
            .or_else(|| self.g.constant_dims(v).map(|d| d.len()))
    }

    /// The dims of `v`: inferred, or those of a constant.
    fn dims_of(&self, v: &str) -> Option<Vec<shape::Dim>> {
        self.shapes.get(v).map(<[shape::Dim]>::to_vec).or_else(|| {
            self.g
                .constant_dims(v)
                .map(|d| d.into_iter().map(|x| shape::Dim::Known(x as i64)).collect())
        })
    }

    /// Whether `v` has width 1 along the hidden axis `f` (counted from the end) or lacks it
    /// (it broadcasts along it): `None` when its shape is unknown.
    fn width_one(&self, v: &str, f: usize) -> Option<bool> {
        let ds = self.dims_of(v)?;
        Some(match ds.len().checked_sub(f + 1) {
            None => true,
            Some(i) => ds[i].known() == Some(1),
        })
    }

    /// The constant integers of input `slot` or, for older opsets, of attribute `attr`.
    fn ints_in(&self, n: &NodeProto, slot: usize, attr: &str) -> Option<Vec<i64>> {
        match n.input(slot) {
            Some(x) => shape::const_ints(self.g, x),
            None => n.attr_ints(attr).map(<[i64]>::to_vec),
        }
    }

    /// The rule of node `id` for a stream value at `port`, its hidden axis `h`, of width `d`.
    pub fn rule(&self, id: NodeId, port: Port, h: Hidden, d: usize) -> Rule {
        let n = self.g.node(id);
        let who = || {
            if n.domain().is_empty() {
                format!("{} {:?}", n.op().escape_debug(), n.label())
            } else {
                format!(
                    "{}:{} {:?}",
                    n.domain().escape_debug(),
                    n.op().escape_debug(),
                    n.label()
                )
            }
        };
        let derived = |why: &str| {
            Rule::Yields(Fact::Derived(if why.is_empty() {
                who()
            } else {
                format!("{} ({why})", who())
            }))
        };
        let unknown = |why: String| Rule::Yields(Fact::Unknown(format!("{} ({why})", who())));
        if !n.domain().is_empty() {
            return unknown("no rule for this op: it may see the mean".into());
        }
        let val = |p: Port| -> Option<&str> {
            match p {
                Port::In(s) => n.input(s),
                Port::Out(o) => n.out(o),
            }
        };
        let rank = |p: Port| val(p).and_then(|v| self.rank_of(v));
        // The rank at the asked port: carried by the analysis, else inferred.
        // Ops whose data ports all have one rank: any port's rank is the asked one's.
        let rank_preserving = matches!(
            n.op(),
            "Identity"
                | "Cast"
                | "Neg"
                | "Dropout"
                | "Slice"
                | "Split"
                | "Concat"
                | "Pad"
                | "Resize"
                | "Upsample"
                | "AveragePool"
                | "GlobalAveragePool"
        );
        let r_here = h.rank.or_else(|| rank(port)).or_else(|| {
            if !rank_preserving {
                return None;
            }
            (0..n.input.len())
                .map(Port::In)
                .chain((0..n.output.len()).map(Port::Out))
                .filter(|&p| {
                    matches!(
                        (n.op(), p),
                        ("Concat", _) | (_, Port::Out(_)) | (_, Port::In(0))
                    )
                })
                .find_map(rank)
        });
        let at = |p: Port, f: usize| Hidden {
            from_end: f,
            rank: if p == port { r_here } else { rank(p) },
        };
        // A carrier whose data ports all have the rank of the asked one (not a broadcasting
        // op) passes that rank on where shape inference has none.
        let simple = |ins: &[usize], outs: &[usize], f_in: usize, f_out: usize| {
            let same_rank = !matches!(
                n.op(),
                "Add" | "Sub" | "Mul" | "Div" | "Where" | "Expand" | "Gather"
            );
            let at = |p: Port, f: usize| {
                let h = at(p, f);
                if same_rank && h.rank.is_none() {
                    h.with_rank(r_here)
                } else {
                    h
                }
            };
            let mut ports: Vec<(Port, Hidden)> = ins
                .iter()
                .map(|&s| (Port::In(s), at(Port::In(s), f_in)))
                .collect();
            ports.extend(
                outs.iter()
                    .map(|&o| (Port::Out(o), at(Port::Out(o), f_out))),
            );
            Rule::Carry(Carry {
                ports,
                ..Default::default()
            })
        };
        let io = matches!(port, Port::In(0) | Port::Out(0));
        let f = h.from_end;
        match n.op() {
            "Shape" | "Size" if port == Port::In(0) => Rule::Yields(Fact::Same),
            "Identity" if io => simple(&[0], &[0], f, f),
            "Cast" if io && is_float_cast(n) => simple(&[0], &[0], f, f),
            "Neg" if io => simple(&[0], &[0], f, f),
            "Dropout" if io => {
                let training = n.input(2).map(|t| {
                    shape::const_ints(self.g, t).map(|v| v.first().copied().unwrap_or(0) != 0)
                });
                match training {
                    None | Some(Some(false)) => simple(&[0], &[0], f, f),
                    Some(None) => unknown("its training mode is not a constant".into()),
                    Some(Some(true)) => derived("training mode"),
                }
            }
            "Add" | "Sub" if matches!(port, Port::In(0) | Port::In(1) | Port::Out(0)) => {
                for s in 0..2 {
                    let Some(x) = n.input(s) else {
                        return derived("an input is missing");
                    };
                    if self.is_const(x) {
                        continue;
                    }
                    match self.width_one(x, f) {
                        Some(true) if Port::In(s) != port => {
                            return derived(&format!(
                                "{x:?} broadcasts along the hidden axis"
                            ))
                        }
                        _ => {}
                    }
                }
                simple(&[0, 1], &[0], f, f)
            }
            "Mul" | "Div" if matches!(port, Port::In(0) | Port::In(1) | Port::Out(0)) => {
                // Scaling every row by a factor constant along the hidden axis keeps the
                // centring: m(s·x) = s·m(x).
                let fits = |slot: usize| {
                    n.input(slot)
                        .and_then(|x| self.width_one(x, f))
                        .unwrap_or(false)
                };
                let data = match port {
                    Port::In(1) if n.op() == "Div" => return derived("divides by a stream value"),
                    Port::In(s) => Some(s).filter(|&s| fits(1 - s)),
                    _ if fits(1) => Some(0),
                    _ if n.op() == "Mul" && fits(0) => Some(1),
                    _ => None,
                };
                match data {
                    Some(s) => {
                        let mut r = simple(&[s], &[0], f, f);
                        if let Rule::Carry(c) = &mut r {
                            c.same.push(1 - s);
                        }
                        r
                    }
                    None => derived("scales the hidden axis per channel"),
                }
            }
            "Where" if matches!(port, Port::In(1) | Port::In(2) | Port::Out(0)) => {
                // A per-token choice between centred rows is centred.
                match n.input(0).and_then(|c| self.width_one(c, f)) {
                    Some(true) => {
                        let mut r = simple(&[1, 2], &[0], f, f);
                        if let Rule::Carry(c) = &mut r {
                            c.same.push(0);
                        }
                        r
                    }
                    Some(false) => derived("selects per channel"),
                    None => unknown("the shape of its condition is unknown".into()),
                }
            }
            "Transpose" if io => {
                let perm: Vec<usize> = match n.attr_ints("perm") {
                    Some(p) => p.iter().map(|&a| a as usize).collect(),
                    None => match r_here {
                        Some(r) => (0..r).rev().collect(),
                        None => return unknown("rank unknown".into()),
                    },
                };
                let r = perm.len();
                let mut seen = vec![false; r];
                if perm.iter().any(|&p| p >= r || std::mem::replace(&mut seen[p], true))
                    || r_here.is_some_and(|x| x != r)
                {
                    return unknown("its permutation does not fit the rank".into());
                }
                let Some(a) = r.checked_sub(f + 1) else {
                    return unknown("the hidden axis is beyond its rank".into());
                };
                let other = match port {
                    Port::In(_) => perm.iter().position(|&p| p == a),
                    _ => Some(perm[a]),
                };
                let Some(b) = other else {
                    return unknown("bad permutation".into());
                };
                let hb = Hidden::at(b, r).expect("b < r");
                let ha = Hidden::at(a, r).expect("a < r");
                Rule::Carry(unary(port, ha, hb))
            }
            "Reshape" | "Flatten" if io => {
                let (Some(x), Some(y)) = (n.input(0), n.out(0)) else {
                    return derived("an input is missing");
                };
                let (xs, ys) = (self.shapes.get(x), self.shapes.get(y));
                let (from, to) = match port {
                    Port::In(_) => (xs, ys),
                    _ => (ys, xs),
                };
                let from_h = Hidden {
                    from_end: f,
                    rank: r_here,
                };
                let Some(b) = reshape_axis(from, from_h, to, d) else {
                    return unknown(format!(
                        "cannot follow the hidden axis: {} shape unknown or without an axis of width {d}",
                        match port {
                            Port::In(_) => "its output",
                            _ => "its input",
                        }
                    ));
                };
                let rt = to.map(<[shape::Dim]>::len).unwrap_or(0);
                let hb = Hidden::at(b, rt).expect("b < rank");
                let mut c = unary(port, from_h, hb);
                if n.is("Reshape") {
                    c.sizes = c.ports[1].1.axis().map(|a| vec![(1, a)]).unwrap_or_default();
                }
                Rule::Carry(c)
            }
            "Squeeze" | "Unsqueeze" if io => {
                let axes = self.ints_in(n, 1, "axes");
                let (ri, ro) = match n.op() {
                    "Unsqueeze" => {
                        let ax_len = axes.as_ref().map(Vec::len);
                        let ri = rank(Port::In(0)).or(if port == Port::In(0) { r_here } else { None });
                        let ro = rank(Port::Out(0))
                            .or(if port == Port::Out(0) { r_here } else { None })
                            .or_else(|| Some(ri? + ax_len?));
                        (ri.or_else(|| Some(ro? - ax_len?)), ro)
                    }
                    _ => {
                        let ri = rank(Port::In(0)).or(if port == Port::In(0) { r_here } else { None });
                        let ro = rank(Port::Out(0))
                            .or(if port == Port::Out(0) { r_here } else { None });
                        (ri, ro)
                    }
                };
                let (Some(ri), Some(ro)) = (ri, ro) else {
                    return unknown("rank unknown".into());
                };
                // The axes that exist on one side only (inserted or removed), on the wide side.
                let wide = ri.max(ro);
                let Some(axes) = axes else {
                    return unknown("its axes are not constants".into());
                };
                let Some(mut ax) = axes
                    .iter()
                    .map(|&a| norm_axis(a, wide))
                    .collect::<Option<Vec<usize>>>()
                else {
                    return unknown("an axis is out of range".into());
                };
                ax.sort_unstable();
                ax.dedup();
                if ax.len() != wide - ri.min(ro) {
                    return unknown("its axes do not fit the ranks".into());
                }
                let narrow_to_wide: Vec<usize> = (0..wide).filter(|i| !ax.contains(i)).collect();
                let here_wide = matches!(
                    (n.op(), port),
                    ("Unsqueeze", Port::Out(_)) | ("Squeeze", Port::In(_))
                );
                let r_at = if here_wide { wide } else { ri.min(ro) };
                let Some(a) = r_at.checked_sub(f + 1) else {
                    return unknown("the hidden axis is beyond its rank".into());
                };
                let b = if here_wide {
                    match narrow_to_wide.iter().position(|&w| w == a) {
                        Some(b) => b,
                        None => return derived("it touches the hidden axis"),
                    }
                } else {
                    narrow_to_wide[a]
                };
                let other_rank = if here_wide { ri.min(ro) } else { wide };
                let ha = Hidden::at(a, r_at).expect("a < r");
                let hb = Hidden::at(b, other_rank).expect("b < r");
                Rule::Carry(unary(port, ha, hb))
            }
            "Expand" if io => {
                // Broadcasting copies whole fibres; the data must already have width D.
                match n.input(0) {
                    Some(x) if !self.is_const(x) && self.width_one(x, f) != Some(false) => {
                        derived("it broadcasts along the hidden axis")
                    }
                    _ => simple(&[0], &[0], f, f),
                }
            }
            "Slice" if io => {
                let Some(r) = r_here else {
                    return unknown("rank unknown".into());
                };
                let Some(a) = r.checked_sub(f + 1) else {
                    return unknown("the hidden axis is beyond its rank".into());
                };
                let starts = self.ints_in(n, 1, "starts");
                // Axes: input 3 (opset 10+), the attribute (opset 1-9), or the first ones.
                let axes = match (n.input(3), n.input(1)) {
                    (Some(_), _) => self.ints_in(n, 3, "axes"),
                    (None, Some(_)) => starts.as_ref().map(|s| (0..s.len() as i64).collect()),
                    (None, None) => n
                        .attr_ints("axes")
                        .map(<[i64]>::to_vec)
                        .or_else(|| starts.as_ref().map(|s| (0..s.len() as i64).collect())),
                };
                let Some(axes) = axes else {
                    return unknown("its axes are not constants".into());
                };
                let pos = axes.iter().position(|&x| norm_axis(x, r) == Some(a));
                if let Some(i) = pos {
                    // The whole hidden axis, in order: start 0, end ≥ D, step 1.
                    let ends = self.ints_in(n, 2, "ends");
                    let steps = match n.input(4) {
                        Some(s) => shape::const_ints(self.g, s),
                        None => Some(vec![1; axes.len()]),
                    };
                    let whole = starts.as_ref().and_then(|s| s.get(i)) == Some(&0)
                        && ends
                            .as_ref()
                            .and_then(|e| e.get(i))
                            .is_some_and(|&e| e >= d as i64)
                        && steps.as_ref().and_then(|s| s.get(i)) == Some(&1);
                    if !whole {
                        return derived("it cuts the hidden axis");
                    }
                }
                simple(&[0], &[0], f, f)
            }
            "Gather" if matches!(port, Port::In(0) | Port::Out(0)) => {
                let q = match n.input(1).and_then(|i| self.rank_of(i)) {
                    Some(q) => q,
                    None => return unknown("the rank of its indices is unknown".into()),
                };
                let g = n.attr_i("axis").unwrap_or(0);
                let r_in = match port {
                    Port::In(_) => r_here,
                    _ => rank(Port::In(0)),
                };
                // The data axes after the gathered one (they end the output).
                let after = match (g < 0, r_in) {
                    (true, _) => (-g - 1) as usize,
                    (false, Some(r)) if (g as usize) < r => r - 1 - g as usize,
                    _ => return unknown("rank unknown".into()),
                };
                let (fi, fo) = match port {
                    Port::In(_) if f == after => return derived("it gathers along the hidden axis"),
                    Port::In(_) if f < after => (f, f),
                    Port::In(_) => (f, f + q - 1),
                    _ if f < after => (f, f),
                    _ if f < after + q => return derived("the hidden axis comes from its indices"),
                    _ => (f + 1 - q, f),
                };
                let mut r = simple(&[0], &[0], fi, fo);
                if let Rule::Carry(c) = &mut r {
                    c.same.push(1);
                }
                r
            }
            "Split" if port == Port::In(0) || matches!(port, Port::Out(_)) => {
                match h.is_axis(n.attr_i("axis").unwrap_or(0)) {
                    Some(false) => {
                        let outs: Vec<usize> = (0..n.output.len())
                            .filter(|&o| n.out(o).is_some())
                            .collect();
                        simple(&[0], &outs, f, f)
                    }
                    Some(true) => derived("it splits the hidden axis"),
                    None => unknown("rank unknown".into()),
                }
            }
            "Concat" => match h.is_axis(n.attr_i("axis").unwrap_or(0)) {
                Some(false) => {
                    let ins: Vec<usize> = (0..n.input.len()).filter(|&s| n.input(s).is_some()).collect();
                    simple(&ins, &[0], f, f)
                }
                Some(true) => derived(
                    "along the hidden axis: the parts are centred, their join is not a shift of the original",
                ),
                None => unknown("rank unknown: along the hidden axis or not".into()),
            },
            "Pad" if io => {
                let Some(r) = r_here else {
                    return unknown("rank unknown".into());
                };
                let Some(a) = r.checked_sub(f + 1) else {
                    return unknown("the hidden axis is beyond its rank".into());
                };
                let fill_ok = self.pads_with_zeros(n, n.input(2));
                let pads = self.ints_in(n, 1, "pads");
                let pads_ok = n.input(3).is_none()
                    && pads.is_some_and(|pd| pd.len() == 2 * r && pd[a] == 0 && pd[a + r] == 0);
                if fill_ok && pads_ok {
                    simple(&[0], &[0], f, f)
                } else {
                    derived("it pads the hidden axis, or not with zeros")
                }
            }
            "Resize" | "Upsample" if io => {
                let Some(r) = r_here else {
                    return unknown("rank unknown".into());
                };
                let Some(a) = r.checked_sub(f + 1) else {
                    return unknown("the hidden axis is beyond its rank".into());
                };
                let crop = n.attribute.iter().any(|x| {
                    x.name.as_deref() == Some("coordinate_transformation_mode")
                        && x.s.as_deref() == Some(b"tf_crop_and_resize")
                });
                if crop || n.attr_ints("axes").is_some() {
                    return derived("it may resize the hidden axis");
                }
                // Resize-10 and Upsample: (X, scales); Resize-11+: (X, roi, scales, sizes).
                let scales_slot = if n.is("Upsample") || n.input.len() == 2 { 1 } else { 2 };
                let scales = match n.input(scales_slot) {
                    None => Some(true),
                    Some(sc) => self
                        .g
                        .constant_tensor(sc)
                        .and_then(|t| {
                            crate::ir::read_array(t, &Default::default(), std::path::Path::new(""))
                                .ok()
                        })
                        .map(|x| x.data.is_empty() || x.data.get(a) == Some(&1.0)),
                };
                let mut sizes = vec![];
                let sizes_ok = match n.input(3).filter(|_| n.is("Resize")) {
                    None => Some(true),
                    Some(sz) => {
                        let vals: Option<Vec<shape::Dim>> = shape::const_ints(self.g, sz)
                            .map(|v| v.into_iter().map(shape::Dim::Known).collect())
                            .or_else(|| self.shapes.value(sz).map(<[shape::Dim]>::to_vec));
                        // Or the constant piece of a computed `Concat([1, D], [h, w])`.
                        let piece = || {
                            let (pn, ps, pi) = self.const_shape_slot(id, 3, a, 0)?;
                            let c = shape::const_ints(self.g, self.g.node(pn).input(ps)?)?;
                            c.get(pi).map(|&x| x == d as i64)
                        };
                        let fine = vals
                            .and_then(|v| v.get(a).and_then(shape::Dim::known))
                            .map(|x| x == d as i64)
                            .or_else(piece);
                        if fine == Some(true) {
                            sizes.push((3, a));
                        }
                        fine
                    }
                };
                // Without constant scales or sizes, the output's width along the axis.
                let out_ok = || {
                    n.out(0)
                        .and_then(|o| self.shapes.get(o))
                        .filter(|s| s.len() == r)
                        .map(|s| s[a].known() == Some(d as i64))
                };
                let ok = match (scales, sizes_ok) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => out_ok(),
                };
                match ok {
                    Some(true) => {
                        let mut rule = simple(&[0], &[0], f, f);
                        if let Rule::Carry(c) = &mut rule {
                            c.sizes = sizes;
                        }
                        rule
                    }
                    Some(false) => derived("it resizes the hidden axis"),
                    None => unknown("cannot tell whether it resizes the hidden axis".into()),
                }
            }
            "ReduceMean" | "ReduceSum" if io => {
                let keep = n.attr_i("keepdims").unwrap_or(1) != 0;
                let axes = match n.input(1) {
                    Some(x) => shape::const_ints(self.g, x),
                    None => n.attr_ints("axes").map(<[i64]>::to_vec).or(Some(vec![])),
                };
                let r_in = match port {
                    Port::In(_) => r_here,
                    _ => rank(Port::In(0)),
                };
                let (Some(axes), Some(ri)) = (axes, r_in) else {
                    return unknown("its axes or its input's rank unknown".into());
                };
                if axes.is_empty() {
                    return derived("it reduces every axis");
                }
                let Some(ax) = axes
                    .iter()
                    .map(|&x| norm_axis(x, ri))
                    .collect::<Option<Vec<usize>>>()
                else {
                    return unknown("an axis is out of range".into());
                };
                let kept: Vec<usize> = (0..ri).filter(|i| !ax.contains(i)).collect();
                let ro = if keep { ri } else { kept.len() };
                let (ai, ao) = match port {
                    Port::In(_) => {
                        let Some(a) = ri.checked_sub(f + 1) else {
                            return unknown("the hidden axis is beyond its rank".into());
                        };
                        if ax.contains(&a) {
                            return derived("it reduces the hidden axis");
                        }
                        let b = if keep {
                            a
                        } else {
                            kept.iter().position(|&k| k == a).expect("kept")
                        };
                        (a, b)
                    }
                    _ => {
                        let Some(b) = ro.checked_sub(f + 1) else {
                            return unknown("the hidden axis is beyond its rank".into());
                        };
                        let a = if keep { b } else { kept[b] };
                        if ax.contains(&a) {
                            return derived("it reduces the hidden axis");
                        }
                        (a, b)
                    }
                };
                Rule::Carry(Carry {
                    ports: vec![
                        (Port::In(0), Hidden::at(ai, ri).expect("a < r")),
                        (Port::Out(0), Hidden::at(ao, ro).expect("b < r")),
                    ],
                    ..Default::default()
                })
            }
            "AveragePool" | "GlobalAveragePool" if io => match h.axis() {
                // Channels first: pooling mixes positions with the same weights per channel.
                Some(1) if h.rank.is_some_and(|r| r >= 3) => simple(&[0], &[0], f, f),
                Some(_) => derived("the hidden axis is not its channel axis"),
                None => unknown("rank unknown".into()),
            },
            _ => derived(""),
        }
    }
}

impl Analysis<'_> {
    /// Whether node `id` is a `Gather` along the hidden axis (width `d`) with constant indices
    /// whose result only `Shape`/`Size` read (mBART's TorchScript export sizes its positions with
    /// `inputs_embeds[:, :, -1]`): its values change, its shape does not (the hidden axis is
    /// replaced by the indices' shape), and nothing reads the values. Every index must also be
    /// valid on the compressed width D−1 (in −(D−1)…D−2), so the pick still runs under CRMSNorm.
    pub(super) fn shape_only_pick(&self, id: NodeId, d: usize) -> bool {
        let n = self.g.node(id);
        let w = d as i64 - 1;
        n.is("Gather")
            && n.input(1)
                .and_then(|i| shape::const_ints(self.g, i))
                .is_some_and(|ix| ix.iter().all(|&i| -w <= i && i < w))
            && n.output.iter().filter(|o| !o.is_empty()).all(|o| {
                !self.ix.graph_outputs.contains(o)
                    && !self.ix.subgraph_reads.contains_key(o)
                    && self
                        .ix
                        .consumers(o)
                        .iter()
                        .all(|&(c, _)| self.g.node(c).is("Shape") || self.g.node(c).is("Size"))
            })
    }

    /// For folding a norm's affine into the linear readers behind node `id` (read at `slot`):
    /// its outputs, when it carries the norm's output with the hidden axis last on both sides
    /// and commutes with the affine map, f(γ⊙z + β) = γ⊙f(z) + β — it moves, selects or
    /// averages whole rows (weights summing to one); else why not. Zero padding, sums, scaling,
    /// joins with other values do not commute with β.
    pub fn pass_through(&self, id: NodeId, slot: usize, d: usize) -> Result<Vec<String>, String> {
        let n = self.g.node(id);
        let who = || format!("{} {:?}", n.op().escape_debug(), n.label());
        let keeps_rows = matches!(
            n.op(),
            "Identity"
                | "Dropout"
                | "Cast"
                | "Reshape"
                | "Flatten"
                | "Squeeze"
                | "Unsqueeze"
                | "Expand"
                | "Transpose"
                | "Slice"
                | "Gather"
                | "Split"
                | "Resize"
                | "Upsample"
                | "ReduceMean"
        ) && n.domain().is_empty();
        if !keeps_rows {
            return Err(format!("{} does not pass γ and β through", who()));
        }
        let v = n.input(slot).unwrap_or("");
        let h = Hidden::last(self.shapes.rank(v));
        match self.rule(id, Port::In(slot), h, d) {
            Rule::Carry(c) => {
                let mut outs = vec![];
                for (p, ho) in c.ports {
                    match p {
                        Port::Out(o) if ho.is_last() => {
                            outs.extend(n.out(o).map(str::to_string));
                        }
                        Port::Out(_) => return Err(format!("{} moves the hidden axis", who())),
                        Port::In(s) if s != slot => {
                            return Err(format!("{} reads other data too", who()))
                        }
                        Port::In(_) => {}
                    }
                }
                Ok(outs)
            }
            Rule::Yields(Fact::Same) => Ok(vec![]),
            Rule::Yields(Fact::Derived(why) | Fact::Unknown(why)) => Err(why),
            Rule::Yields(_) => Err(who()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shape::Dim::{Known as K, Unknown as U};

    fn at(a: usize, r: usize) -> Hidden {
        Hidden::at(a, r).unwrap()
    }

    /// Row-major reshapes: the axis of width d keeps its place among the elements when the
    /// product after it, or (unknown sizes after it) the product before it, is the same.
    #[test]
    fn reshape_follows_the_hidden_axis() {
        // Known dims after it: [2, 8, 3, 4] → [2, 8, 12].
        let from = [K(2), K(8), K(3), K(4)];
        assert_eq!(
            reshape_axis(Some(&from), at(1, 4), Some(&[K(2), K(8), K(12)]), 8),
            Some(1)
        );
        // A resized position table: [1, 32, ?, ?] → [1, 32, ?] (sizes computed in the graph).
        let from = [K(1), K(32), U, U];
        assert_eq!(
            reshape_axis(Some(&from), at(1, 4), Some(&[K(1), K(32), U]), 32),
            Some(1)
        );
        // And back: [1, 32, ?] → [1, 32, ?, ?].
        let from = [K(1), K(32), U];
        assert_eq!(
            reshape_axis(Some(&from), at(1, 3), Some(&[K(1), K(32), U, U]), 32),
            Some(1)
        );
        // A named batch before it: [batch, 32, ?] → [batch, 32, ?, ?].
        let b = || shape::Dim::Sym("batch".into());
        let from = [b(), K(32), U];
        assert_eq!(
            reshape_axis(Some(&from), at(1, 3), Some(&[b(), K(32), U, U]), 32),
            Some(1)
        );
        // Neither product known: not followed.
        let from = [U, K(32), U];
        assert_eq!(
            reshape_axis(Some(&from), at(1, 3), Some(&[U, K(32), U, U]), 32),
            None
        );
        // The same product before but another width there: not followed.
        let from = [K(2), K(32), U];
        assert_eq!(
            reshape_axis(Some(&from), at(1, 3), Some(&[K(2), K(16), U]), 32),
            None
        );
    }
}
