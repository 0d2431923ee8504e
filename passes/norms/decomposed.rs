//! Norms written as chains of elementary ops: the decomposed LayerNorm (with its fp16 casts)
//! and the decomposed RMSNorm.

use super::*;

impl Ctx<'_> {
    /// The decomposed LayerNorm, anchored at its first ReduceMean.
    pub fn decomposed_layernorm(&self, id: NodeId) -> Result<NormMatch, NoMatch> {
        let g = self.g;
        let rm1 = self.node(id);
        if !rm1.is("ReduceMean") {
            return Err(NoMatch::NotReduceMean);
        }
        let x0 = rm1
            .input(0)
            .ok_or(NoMatch::WithoutInput { what: "ReduceMean" })?
            .to_string();
        let axes = reduce_axes(g, rm1).ok_or(NoMatch::AxesNotConst)?;
        if !last_axis_only(&axes, self.shapes.rank(&x0)) {
            return Err(NoMatch::NotLastAxis { axes });
        }
        let mean = out0(rm1)?;
        let sub = sole(self.ix, &mean).ok_or(NoMatch::MeanSeveralReaders)?;
        let subn = self.node(sub);
        if !(subn.is("Sub")
            && subn.input(0).is_some_and(|i| self.canon.same(i, &x0))
            && subn.input(1) == Some(mean.as_str()))
        {
            return Err(NoMatch::MeanNotSubtracted);
        }
        let mut d = out0(subn)?;
        let mut nodes = vec![id, sub];
        // fp16 graphs from the TorchScript exporter: Sub → Cast(wide) → Pow/Div → Cast(back).
        let mut inner_cast = None;
        if let Some(c) = sole(self.ix, &d) {
            let cn = self.node(c);
            // Only a cast to a float type: the core's constants are written in that type.
            let to = cn.attr_i("to").map(|t| t as i32).filter(|&t| is_float(t));
            if cn.is("Cast") && to.is_some() {
                inner_cast = to;
                nodes.push(c);
                d = out0(cn)?;
            }
        }
        // d feeds the square and the division.
        let readers = self.ix.consumers(&d);
        if self.ix.graph_outputs.contains(&d) {
            return Err(NoMatch::CentredIsOutput);
        }
        if self.ix.subgraph_reads.contains_key(&d) {
            return Err(NoMatch::CentredInSubgraph);
        }
        let mut sq = None;
        let mut div = None;
        for &(c, _) in readers {
            let cn = self.node(c);
            let is_sq = (cn.is("Pow")
                && cn.input(0) == Some(d.as_str())
                && cn.input(1).and_then(|e| const_scalar(g, e)) == Some(2.0))
                || (cn.is("Mul")
                    && cn.input(0) == Some(d.as_str())
                    && cn.input(1) == Some(d.as_str()));
            if is_sq {
                if sq.replace(c).is_some_and(|p| p != c) {
                    return Err(NoMatch::SquaredTwice);
                }
            } else if (cn.is("Div") || cn.is("Mul")) && cn.input(0) == Some(d.as_str())
                || (cn.is("Mul") && cn.input(1) == Some(d.as_str()))
            {
                if div.replace(c).is_some_and(|p| p != c) {
                    return Err(NoMatch::DividedTwice);
                }
            } else {
                return Err(NoMatch::CentredReadBy {
                    op: cn.op().to_string(),
                    node: cn.label(),
                });
            }
        }
        let sq = sq.ok_or(NoMatch::NotSquared)?;
        let div = div.ok_or(NoMatch::NotDivided)?;
        nodes.push(sq);
        let var_rm = sole(self.ix, &out0(self.node(sq))?).ok_or(NoMatch::SquareSeveralReaders)?;
        let vn = self.node(var_rm);
        if !vn.is("ReduceMean") || reduce_axes(g, vn).as_deref() != Some(axes.as_slice()) {
            return Err(NoMatch::SquareNotAveraged);
        }
        nodes.push(var_rm);
        let add = sole(self.ix, &out0(vn)?).ok_or(NoMatch::VarianceSeveralReaders)?;
        let an = self.node(add);
        let eps_v = other(an, &out0(vn)?)
            .filter(|_| an.is("Add"))
            .ok_or(NoMatch::NoEpsilonAdd)?;
        let epsilon = const_scalar(g, eps_v).ok_or(NoMatch::EpsilonNotConst)? as f32;
        nodes.push(add);
        let sqrt = sole(self.ix, &out0(an)?)
            .filter(|&s| self.node(s).is("Sqrt"))
            .ok_or(NoMatch::NoSqrt)?;
        nodes.push(sqrt);
        let s = out0(self.node(sqrt))?;
        let dn = self.node(div);
        if dn.is("Div") {
            if dn.input(1) != Some(s.as_str()) || sole(self.ix, &s) != Some(div) {
                return Err(NoMatch::NotDivByDeviation);
            }
        } else {
            let r = sole(self.ix, &s)
                .filter(|&r| self.node(r).is("Reciprocal"))
                .ok_or(NoMatch::DeviationNotInverted)?;
            let rv = &out0(self.node(r))?;
            if other(dn, &d) != Some(rv.as_str()) || sole(self.ix, rv) != Some(div) {
                return Err(NoMatch::NotMulByInverse);
            }
            nodes.push(r);
        }
        nodes.push(div);
        let mut normed = out0(dn)?;
        let mut compute_type = None;
        if inner_cast.is_some() {
            let back = sole(self.ix, &normed)
                .filter(|&c| self.node(c).is("Cast"))
                .ok_or(NoMatch::NotCastBack)?;
            nodes.push(back);
            normed = out0(self.node(back))?;
            compute_type = inner_cast;
        }
        // fp16 graphs: x → Cast(f32) → core → Cast(back).
        let (x, compute_type) = match self.ix.producer(&x0).map(|p| (p, self.node(p))) {
            _ if compute_type.is_some() => (x0.clone(), compute_type),
            Some((p, pn))
                if pn.is("Cast")
                    && pn.attr_i("to").is_some_and(|t| is_float(t as i32))
                    && self.ix.consumers(&x0).len() == 2
                    && !self.ix.graph_outputs.contains(&x0) =>
            {
                let to = pn.attr_i("to").map(|t| t as i32);
                let outer = pn
                    .input(0)
                    .ok_or(NoMatch::WithoutInput { what: "Cast" })?
                    .to_string();
                match sole(self.ix, &normed).map(|c| (c, self.node(c))) {
                    Some((c, cn)) if cn.is("Cast") => {
                        nodes.insert(0, p);
                        nodes.push(c);
                        normed = out0(cn)?;
                        (outer, to)
                    }
                    _ => (x0.clone(), None),
                }
            }
            _ => (x0.clone(), None),
        };
        let (y, gamma, beta, tail) = self.affine_tail(&normed);
        nodes.extend(tail);
        Ok(NormMatch {
            kind: NormKind::LayerNorm,
            form: NormForm::DecomposedLayerNorm,
            anchor: id,
            nodes,
            x,
            skip: None,
            y,
            gamma,
            beta,
            epsilon,
            axis: axes[0],
            compute_type,
            extra_outputs_read: vec![],
        })
    }

    /// The decomposed RMSNorm (recognised, never rewritten), anchored at the `Pow`.
    pub fn decomposed_rms(&self, id: NodeId) -> Result<NormMatch, NoMatch> {
        let g = self.g;
        let p = self.node(id);
        if !(p.is("Pow") && p.input(1).and_then(|e| const_scalar(g, e)) == Some(2.0)) {
            return Err(NoMatch::NotSquare);
        }
        let x = p
            .input(0)
            .ok_or(NoMatch::WithoutInput { what: "Pow" })?
            .to_string();
        if let Some(pr) = self.ix.producer(&x) {
            if self.node(pr).is("Sub") {
                return Err(NoMatch::SquaresDifference);
            }
        }
        let rm = sole(self.ix, &out0(p)?)
            .filter(|&r| self.node(r).is("ReduceMean"))
            .ok_or(NoMatch::RmsSquareNotAveraged)?;
        let add = sole(self.ix, &out0(self.node(rm))?)
            .filter(|&a| self.node(a).is("Add"))
            .ok_or(NoMatch::RmsNoEpsilonAdd)?;
        let an = self.node(add);
        let epsilon = other(an, &out0(self.node(rm))?)
            .and_then(|e| const_scalar(g, e))
            .ok_or(NoMatch::RmsEpsilonNotConst)? as f32;
        let sq = sole(self.ix, &out0(an)?)
            .filter(|&s| self.node(s).is("Sqrt"))
            .ok_or(NoMatch::RmsNoSqrt)?;
        let s = &out0(self.node(sq))?;
        let mut nodes = vec![id, rm, add, sq];
        let c = sole(self.ix, s).ok_or(NoMatch::RmsDeviationReadTwice)?;
        let cn = self.node(c);
        let out = if cn.is("Div") && cn.input(0) == Some(x.as_str()) {
            nodes.push(c);
            out0(cn)?
        } else if cn.is("Reciprocal")
            || (cn.is("Div")
                && cn.input(1) == Some(s.as_str())
                && cn.input(0).and_then(|one| const_scalar(g, one)) == Some(1.0))
        {
            // 1/√(…) as Reciprocal, or as Div(1, √(…)) (LLaMA's TorchScript export).
            let r = &out0(cn)?;
            let m = sole(self.ix, r)
                .filter(|&m| self.node(m).is("Mul") && other(self.node(m), r) == Some(x.as_str()))
                .ok_or(NoMatch::RmsInverseNotApplied)?;
            nodes.push(c);
            nodes.push(m);
            out0(self.node(m))?
        } else {
            return Err(NoMatch::RmsDeviationNotApplied);
        };
        let (y, gamma, beta, tail) = self.affine_tail(&out);
        nodes.extend(tail);
        Ok(NormMatch {
            kind: NormKind::Rms,
            form: NormForm::DecomposedRms,
            anchor: id,
            nodes,
            x,
            skip: None,
            y,
            gamma,
            beta,
            epsilon,
            axis: -1,
            compute_type: None,
            extra_outputs_read: vec![],
        })
    }
}
