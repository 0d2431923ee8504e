//! Ops that pass a residual stream through unchanged along its hidden axis.

use super::super::{is_float_cast, Analysis};
use crate::ir::{shape, NodeExt, NodeId};

impl Analysis<'_> {
    /// If node `id` passes the stream from input `slot` to some outputs, those outputs; else why not.
    pub fn pass_through_old(&self, id: NodeId, slot: usize, d: usize) -> Result<Vec<String>, String> {
        let n = self.g.node(id);
        let out0 = || n.output.first().cloned().unwrap_or_default();
        let v = n.input.get(slot).cloned().unwrap_or_default();
        let norm_axis = |a: i64, r: usize| if a < 0 { a + r as i64 } else { a };
        if !n.domain().is_empty() {
            return Err(format!(
                "{}:{} is not known to keep the mean",
                n.domain().escape_debug(),
                n.op().escape_debug()
            ));
        }
        match n.op() {
            "Identity" if slot == 0 => Ok(vec![out0()]),
            "Dropout" if slot == 0 => {
                let training = n.input(2).map(|t| {
                    shape::const_ints(self.g, t).map(|v| v.first().copied().unwrap_or(0) != 0)
                });
                match training {
                    None | Some(Some(false)) => Ok(vec![out0()]),
                    _ => Err("Dropout in training mode".into()),
                }
            }
            "Cast" if slot == 0 && is_float_cast(n) => Ok(vec![out0()]),
            "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" | "Expand" if slot == 0 => {
                let o = out0();
                if !self.last_is(&o, d) {
                    return Err(format!(
                        "{} {:?} does not keep the hidden axis last with width {d}",
                        n.op().escape_debug(),
                        n.label()
                    ));
                }
                let (ri, ro) = (self.rank(&v), self.rank(&o));
                match n.op() {
                    "Unsqueeze" | "Squeeze" => {
                        let axes = n.attr_ints("axes").map(<[i64]>::to_vec).or_else(|| {
                            n.input(1)
                                .and_then(|a| crate::ir::shape::const_ints(self.g, a))
                        });
                        let r = if n.op() == "Unsqueeze" { ro } else { ri };
                        match (axes, r) {
                            (Some(ax), Some(r))
                                if ax.iter().all(|&a| norm_axis(a, r) != r as i64 - 1) =>
                            {
                                Ok(vec![o])
                            }
                            _ => Err(format!(
                                "{} {:?} may touch the hidden axis",
                                n.op().escape_debug(),
                                n.label()
                            )),
                        }
                    }
                    _ => Ok(vec![o]),
                }
            }
            "Transpose" if slot == 0 => {
                let r = self
                    .rank(&v)
                    .ok_or_else(|| format!("Transpose {:?}: rank unknown", n.label()))?;
                let perm = n
                    .attr_ints("perm")
                    .map(<[i64]>::to_vec)
                    .unwrap_or_else(|| (0..r as i64).rev().collect());
                if perm.last() == Some(&(r as i64 - 1)) {
                    Ok(vec![out0()])
                } else {
                    Err(format!("Transpose {:?} moves the hidden axis", n.label()))
                }
            }
            "Slice" if slot == 0 => {
                let r = self
                    .rank(&v)
                    .ok_or_else(|| format!("Slice {:?}: rank unknown", n.label()))?;
                let axes = match n.input(3) {
                    Some(a) => crate::ir::shape::const_ints(self.g, a),
                    None => n
                        .input(1)
                        .and_then(|s| crate::ir::shape::const_ints(self.g, s))
                        .map(|s| (0..s.len() as i64).collect()),
                };
                match axes {
                    Some(ax) if ax.iter().all(|&a| norm_axis(a, r) != r as i64 - 1) => {
                        Ok(vec![out0()])
                    }
                    _ if self.last_is(&out0(), d) && self.last_is(&v, d) => Ok(vec![out0()]),
                    _ => Err(format!("Slice {:?} may cut the hidden axis", n.label())),
                }
            }
            "Gather" if slot == 0 => {
                let r = self
                    .rank(&v)
                    .ok_or_else(|| format!("Gather {:?}: rank unknown", n.label()))?;
                if norm_axis(n.attr_i("axis").unwrap_or(0), r) != r as i64 - 1 {
                    Ok(vec![out0()])
                } else {
                    Err(format!(
                        "Gather {:?} selects along the hidden axis",
                        n.label()
                    ))
                }
            }
            "Split" if slot == 0 => {
                let r = self
                    .rank(&v)
                    .ok_or_else(|| format!("Split {:?}: rank unknown", n.label()))?;
                if norm_axis(n.attr_i("axis").unwrap_or(0), r) != r as i64 - 1 {
                    Ok(n.output.iter().filter(|o| !o.is_empty()).cloned().collect())
                } else {
                    Err(format!("Split {:?} splits the hidden axis", n.label()))
                }
            }
            // Linear and the same on every channel, over other axes than the hidden (last) one.
            "Pad" if slot == 0 => {
                let r = self
                    .rank(&v)
                    .ok_or_else(|| format!("Pad {:?}: rank unknown", n.label()))?;
                let fill_ok = self.pads_with_zeros(n, n.input(2));
                let pads = n.attr_ints("pads").map(<[i64]>::to_vec).or_else(|| {
                    n.input(1)
                        .and_then(|x| crate::ir::shape::const_ints(self.g, x))
                });
                let pads_ok = n.input(3).is_none()
                    && pads.is_some_and(|pd| {
                        pd.len() == 2 * r && pd[r - 1] == 0 && pd[2 * r - 1] == 0
                    });
                if fill_ok && pads_ok {
                    Ok(vec![out0()])
                } else {
                    Err(format!(
                        "Pad {:?} pads the hidden axis or not with zeros",
                        n.label()
                    ))
                }
            }
            "Resize" if slot == 0 => {
                let o = out0();
                let crop = n.attribute.iter().any(|a| {
                    a.name.as_deref() == Some("coordinate_transformation_mode")
                        && a.s.as_deref() == Some(b"tf_crop_and_resize")
                });
                if !crop && self.last_is(&o, d) && self.rank(&o) == self.rank(&v) {
                    Ok(vec![o])
                } else {
                    Err(format!("Resize {:?} may resize the hidden axis", n.label()))
                }
            }
            "ReduceMean" | "ReduceSum" if slot == 0 => {
                let r = self
                    .rank(&v)
                    .ok_or_else(|| format!("{} {:?}: rank unknown", n.op(), n.label()))?;
                let axes = n.attr_ints("axes").map(<[i64]>::to_vec).or_else(|| {
                    n.input(1)
                        .and_then(|a| crate::ir::shape::const_ints(self.g, a))
                });
                match axes {
                    Some(ax)
                        if !ax.is_empty()
                            && ax.iter().all(|&a| norm_axis(a, r) != r as i64 - 1) =>
                    {
                        Ok(vec![out0()])
                    }
                    _ => Err(format!(
                        "{} {:?} reduces the hidden axis",
                        n.op().escape_debug(),
                        n.label()
                    )),
                }
            }
            "Where" if slot == 1 || slot == 2 => {
                if self.per_token(n, &v) {
                    Ok(vec![out0()])
                } else {
                    Err(format!("Where {:?} selects per channel", n.label()))
                }
            }
            "Mul" | "Div" => {
                // Scaling every row by a per-row (or scalar) factor keeps the mean zero.
                let other_slot = 1 - slot.min(1);
                if n.op() == "Div" && slot != 0 {
                    return Err("Div by a stream value".into());
                }
                let Some(o) = n.input(other_slot) else {
                    return Err("missing operand".into());
                };
                let per_row = match self.shapes.get(o) {
                    Some(s) => s.last().is_none_or(|x| x.known() == Some(1)),
                    None => false,
                };
                if per_row {
                    Ok(vec![out0()])
                } else {
                    Err(format!(
                        "{} {:?} scales the hidden axis elementwise",
                        n.op().escape_debug(),
                        n.label()
                    ))
                }
            }
            _ => Err(format!(
                "{} {:?} reads the stream",
                n.op().escape_debug(),
                n.label()
            )),
        }
    }
}
