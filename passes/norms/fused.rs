//! One-node norms (`LayerNormalization`, `RMSNormalization`, the Skip forms) and onnxruntime's
//! split LayerNorm (`Sub(x, ReduceMean(x)) → SimplifiedLayerNormalization`).

use super::*;

impl Ctx<'_> {
    /// `LayerNormalization`, `RMSNormalization`, `SimplifiedLayerNormalization`, and the Skip
    /// forms: one node each.
    pub fn fused(&self, id: NodeId) -> Result<NormMatch, NoMatch> {
        let n = self.node(id);
        let (kind, form) = match (n.domain(), n.op()) {
            ("", "LayerNormalization") | ("com.microsoft", "LayerNormalization") => {
                (NormKind::LayerNorm, NormForm::LayerNormalization)
            }
            ("com.microsoft", "SkipLayerNormalization") => {
                (NormKind::LayerNorm, NormForm::SkipLayerNormalization)
            }
            ("", "RMSNormalization") => (NormKind::Rms, NormForm::RMSNormalization),
            ("", "SimplifiedLayerNormalization")
            | ("com.microsoft", "SimplifiedLayerNormalization") => {
                (NormKind::Rms, NormForm::SimplifiedLayerNormalization)
            }
            ("com.microsoft", "SkipSimplifiedLayerNormalization") => {
                (NormKind::Rms, NormForm::SkipSimplifiedLayerNormalization)
            }
            _ => {
                return Err(NoMatch::NotFused {
                    op: n.op().to_string(),
                })
            }
        };
        let y = n
            .output
            .first()
            .cloned()
            .filter(|s| !s.is_empty())
            .ok_or(NoMatch::FusedNoOutput)?;
        let skip = matches!(
            form,
            NormForm::SkipLayerNormalization | NormForm::SkipSimplifiedLayerNormalization
        );
        let (gamma_slot, beta_slot) = if skip { (2, 3) } else { (1, 2) };
        let gamma = n.input(gamma_slot).map(str::to_string);
        let beta = if form == NormForm::SkipSimplifiedLayerNormalization
            || form == NormForm::RMSNormalization
            || form == NormForm::SimplifiedLayerNormalization
        {
            None
        } else {
            n.input(beta_slot).map(str::to_string)
        };
        let x0 = n.input(0).unwrap_or("");
        for c in gamma.iter().chain(beta.iter()) {
            self.affine_fits(c, x0)?;
        }
        let extra_outputs_read: Vec<String> = if skip {
            n.output
                .iter()
                .skip(1)
                .take(2)
                .filter(|o| !o.is_empty() && self.ix.use_count(o) > 0)
                .cloned()
                .collect()
        } else {
            n.output
                .iter()
                .skip(1)
                .filter(|o| !o.is_empty() && self.ix.use_count(o) > 0)
                .cloned()
                .collect()
        };
        let default_eps =
            if form == NormForm::LayerNormalization || form == NormForm::RMSNormalization {
                1e-5
            } else {
                1e-12
            };
        let epsilon = n.attr_f("epsilon").unwrap_or(default_eps);
        let axis = n.attr_i("axis").unwrap_or(-1);
        let skip_parts = if skip {
            let a = n
                .input(0)
                .ok_or(NoMatch::WithoutInput { what: "Skip norm" })?
                .to_string();
            let b = n.input(1).ok_or(NoMatch::SkipWithoutSkip)?.to_string();
            let bias_slot = 4;
            let bias = n.input(bias_slot).map(str::to_string);
            if let Some(bz) = &bias {
                if !is_const(self.g, bz) {
                    return Err(NoMatch::BiasNotConst { value: bz.clone() });
                }
                self.affine_fits(bz, x0)?;
            }
            let sum = n
                .output
                .get(3)
                .cloned()
                .filter(|s| !s.is_empty() && self.ix.use_count(s) > 0);
            Some(SkipParts { a, b, bias, sum })
        } else {
            None
        };
        let x = if skip {
            String::new()
        } else {
            n.input(0).ok_or(NoMatch::NoInput)?.to_string()
        };
        Ok(NormMatch {
            kind,
            form,
            anchor: id,
            nodes: vec![id],
            x,
            skip: skip_parts,
            y,
            gamma,
            beta,
            epsilon,
            axis,
            compute_type: None,
            extra_outputs_read,
        })
    }

    /// onnxruntime's split LayerNorm, anchored at the `SimplifiedLayerNormalization`: its input
    /// is `Sub(x, ReduceMean(x))` over the last axis, read by nothing else. RMSNorm of a
    /// centred x is LayerNorm of x (same γ, ε); a following constant `Add` is β.
    pub fn split_layernorm(&self, id: NodeId) -> Result<NormMatch, NoMatch> {
        let n = self.node(id);
        if !(n.op() == "SimplifiedLayerNormalization" && matches!(n.domain(), "" | "com.microsoft"))
        {
            return Err(NoMatch::NotSimplified);
        }
        let c = n.input(0).ok_or(NoMatch::NoInput)?;
        let sub = self
            .ix
            .producer(c)
            .filter(|&p| self.node(p).is("Sub"))
            .ok_or(NoMatch::InputNotDifference)?;
        if sole(self.ix, c) != Some(id) {
            return Err(NoMatch::CentredOtherReaders);
        }
        let subn = self.node(sub);
        let (x, mean) = (
            subn.input(0).ok_or(NoMatch::WithoutInput { what: "Sub" })?,
            subn.input(1).ok_or(NoMatch::WithoutInput { what: "Sub" })?,
        );
        let rm = self
            .ix
            .producer(mean)
            .filter(|&p| {
                self.node(p).is("ReduceMean")
                    && self.node(p).input(0).is_some_and(|i| self.canon.same(i, x))
            })
            .ok_or(NoMatch::NotMeanDifference)?;
        if sole(self.ix, mean) != Some(sub) {
            return Err(NoMatch::MeanOtherReaders);
        }
        let rmn = self.node(rm);
        let axes = reduce_axes(self.g, rmn).ok_or(NoMatch::AxesNotConst)?;
        if !last_axis_only(&axes, self.shapes.rank(x)) {
            return Err(NoMatch::NotLastAxis { axes });
        }
        if rmn.attr_i("keepdims").unwrap_or(1) == 0 {
            return Err(NoMatch::DropsAxis);
        }
        let axis = n.attr_i("axis").unwrap_or(-1);
        if !last_axis_only(&[axis], self.shapes.rank(x)) {
            return Err(NoMatch::SimplifiedAxis { axis });
        }
        if n.output
            .iter()
            .skip(1)
            .any(|o| !o.is_empty() && self.ix.use_count(o) > 0)
        {
            return Err(NoMatch::InvStdDevRead);
        }
        let gamma = n.input(1).map(str::to_string);
        if let Some(gm) = &gamma {
            if !is_affine_const(self, gm) {
                return Err(NoMatch::ScaleNotConst { value: gm.clone() });
            }
            self.affine_fits(gm, x)?;
        }
        let y = out0(n)?;
        let mut nodes = vec![rm, sub, id];
        // β: a constant Add after the norm (SimplifiedLayerNormalization has no bias input).
        let mut out = y.clone();
        let mut beta = None;
        if let Some(a) = sole(self.ix, &y) {
            let an = self.node(a);
            let fits = |c: &&str| is_affine_const(self, c) && self.affine_fits(c, x).is_ok();
            if an.is("Add") {
                if let (Some(b), Some(o)) = (other(an, &y).filter(fits), an.out(0)) {
                    beta = Some(b.to_string());
                    nodes.push(a);
                    out = o.to_string();
                }
            }
        }
        Ok(NormMatch {
            kind: NormKind::LayerNorm,
            form: NormForm::SplitLayerNorm,
            anchor: id,
            nodes,
            x: x.to_string(),
            skip: None,
            y: out,
            gamma,
            beta,
            epsilon: n.attr_f("epsilon").unwrap_or(1e-5),
            axis,
            compute_type: None,
            extra_outputs_read: vec![],
        })
    }
}
