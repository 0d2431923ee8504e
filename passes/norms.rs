//! Matchers for the normalisations found in exported graphs (design §5).
//!
//! Each matcher looks at one anchor node and returns `Ok(NormMatch)` or `Err(reason)`: "no
//! match, because …" is a value, not a failure. A match owns every node of its pattern; its
//! internal values must have no reader outside the pattern (else the reason says which node
//! reads it).
//!
//! LayerNorm forms (what the pass rewrites):
//! - `LayerNormalization` (opset 17+, or onnxruntime's), optional Mean / InvStdDev outputs;
//! - decomposed: `ReduceMean → Sub → Pow(2)|Mul(d,d) → ReduceMean → Add(ε) → Sqrt →
//!   Div | Reciprocal+Mul`, optionally wrapped in `Cast` (fp16 graphs computing in fp32), then
//!   optional `Mul(γ)` and `Add(β)`; ReduceMean axes as attribute or input;
//! - `com.microsoft:SkipLayerNormalization`: `LN(a + b [+ bias])`, 4th output the sum;
//! - onnxruntime's split LayerNorm: `Sub(x, ReduceMean(x)) → SimplifiedLayerNormalization(γ)`,
//!   optionally `Add(β)`. The offline optimiser fuses the RMS half of a decomposed LayerNorm and
//!   leaves the mean subtraction: RMS(x − μ) = (x − μ)/sqrt(mean((x − μ)²) + ε) is LN(x).
//!
//! RMSNorm forms (recognised so that "already RMSNorm" can be reported): `RMSNormalization`,
//! `SimplifiedLayerNormalization`, `SkipSimplifiedLayerNormalization`, decomposed
//! `Pow → ReduceMean → Add → Sqrt → Div | Reciprocal+Mul`.

use crate::ir::{shape, Graph, GraphIndex, NodeExt, NodeId};
use crate::proto::NodeProto;
use crate::tensor::is_float;

/// What a normalisation computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum NormKind {
    /// LayerNorm: subtracts the mean.
    LayerNorm,
    /// RMSNorm: does not.
    Rms,
}

/// How a normalisation is written in the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum NormForm {
    /// `LayerNormalization`.
    LayerNormalization,
    /// ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div chain.
    DecomposedLayerNorm,
    /// `com.microsoft:SkipLayerNormalization`.
    SkipLayerNormalization,
    /// `Sub(x, ReduceMean(x))` feeding `SimplifiedLayerNormalization` (onnxruntime's optimiser).
    SplitLayerNorm,
    /// `RMSNormalization` (opset 23).
    RMSNormalization,
    /// `SimplifiedLayerNormalization`.
    SimplifiedLayerNormalization,
    /// `com.microsoft:SkipSimplifiedLayerNormalization`.
    SkipSimplifiedLayerNormalization,
    /// Pow/ReduceMean/Add/Sqrt/Div chain.
    DecomposedRms,
}

impl std::fmt::Display for NormForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            NormForm::LayerNormalization => "LayerNormalization",
            NormForm::DecomposedLayerNorm => "decomposed LayerNorm",
            NormForm::SkipLayerNormalization => "SkipLayerNormalization",
            NormForm::SplitLayerNorm => "ReduceMean→Sub→SimplifiedLayerNormalization",
            NormForm::RMSNormalization => "RMSNormalization",
            NormForm::SimplifiedLayerNormalization => "SimplifiedLayerNormalization",
            NormForm::SkipSimplifiedLayerNormalization => "SkipSimplifiedLayerNormalization",
            NormForm::DecomposedRms => "decomposed RMSNorm",
        };
        f.write_str(s)
    }
}

/// The residual-add half of a fused Skip norm: `sum = a + b (+ bias)`.
#[derive(Clone, Debug, PartialEq)]
pub struct SkipParts {
    /// First summand (input 0).
    pub a: String,
    /// Second summand (input 1).
    pub b: String,
    /// Optional constant bias (input 4).
    pub bias: Option<String>,
    /// The sum output (output 3), when the graph reads it.
    pub sum: Option<String>,
}

/// One matched normalisation.
#[derive(Clone, Debug)]
pub struct NormMatch {
    /// LayerNorm or RMSNorm.
    pub kind: NormKind,
    /// Its form in the graph.
    pub form: NormForm,
    /// The node that names it in reports.
    pub anchor: NodeId,
    /// All nodes of the pattern.
    pub nodes: Vec<NodeId>,
    /// The normalised input (for Skip forms: empty; see `skip`).
    pub x: String,
    /// Skip forms: the residual add.
    pub skip: Option<SkipParts>,
    /// The final output (after γ and β when they belong to the match).
    pub y: String,
    /// The scale γ (a constant), when present.
    pub gamma: Option<String>,
    /// The shift β (a constant), when present.
    pub beta: Option<String>,
    /// ε, exactly as stored.
    pub epsilon: f32,
    /// Normalised axis as written (-1 for the last axis).
    pub axis: i64,
    /// Element type the core computes in when the graph casts around it (fp16 graphs).
    pub compute_type: Option<i32>,
    /// Optional outputs (Mean, InvStdDev) that something reads.
    pub extra_outputs_read: Vec<String>,
}

fn const_scalar(g: &Graph, v: &str) -> Option<f64> {
    let t = g.constant_tensor(v)?;
    let n = crate::tensor::element_count(&t.dims).ok()?;
    if n != 1 {
        return None;
    }
    let arr = crate::ir::read_array(t, &Default::default(), std::path::Path::new("")).ok()?;
    arr.data.first().copied()
}

/// The first output of a matched node (the load check requires it; a reason if absent).
fn out0(n: &NodeProto) -> Result<String, String> {
    n.out(0)
        .map(str::to_string)
        .ok_or_else(|| format!("{} {:?} has no output", n.op().escape_debug(), n.label()))
}

fn is_const(g: &Graph, v: &str) -> bool {
    g.constant_tensor(v).is_some()
}

/// A scale/shift: a constant, or a float `Cast` of one (onnxruntime's fp16 optimisation casts
/// fp16 γ/β for f32 norms). Only read, never written: the fold reads the cast values.
fn is_affine_const(ctx: &Ctx, v: &str) -> bool {
    is_const(ctx.g, v) || crate::passes::stream::cast_of_const(ctx.g, ctx.ix, v).is_some()
}

/// The only consumer of `v`, when there is exactly one and `v` is not a graph output.
fn sole(ix: &GraphIndex, v: &str) -> Option<NodeId> {
    match ix.consumers(v) {
        [(n, _)] if !ix.graph_outputs.contains(v) && !ix.subgraph_reads.contains_key(v) => Some(*n),
        _ => None,
    }
}

fn other<'a>(n: &'a NodeProto, v: &str) -> Option<&'a str> {
    match (n.input(0), n.input(1)) {
        (Some(a), Some(b)) if a == v => Some(b),
        (Some(a), Some(b)) if b == v => Some(a),
        _ => None,
    }
}

/// The reduce axes of a ReduceMean (attribute or input).
fn reduce_axes(g: &Graph, n: &NodeProto) -> Option<Vec<i64>> {
    n.attr_ints("axes")
        .map(<[i64]>::to_vec)
        .or_else(|| n.input(1).and_then(|a| shape::const_ints(g, a)))
}

fn last_axis_only(axes: &[i64], rank: Option<usize>) -> bool {
    match axes {
        [-1] => true,
        [a] => rank.is_some_and(|r| *a == r as i64 - 1),
        _ => false,
    }
}

/// Context shared by the matchers.
pub struct Ctx<'a> {
    /// The graph.
    pub g: &'a Graph,
    /// Its index.
    pub ix: &'a GraphIndex,
    /// Its shapes.
    pub shapes: &'a shape::Shapes,
}

impl Ctx<'_> {
    fn node(&self, id: NodeId) -> &NodeProto {
        self.g.node(id)
    }

    /// Whether constant `c` can be the scale/shift of a norm of `v` (the normalised values): one
    /// entry (a scalar that broadcasts) or D entries along its last axis (other axes 1), D the
    /// last dim of `v` when known. Else why not (an empty γ broadcast nowhere and panicked).
    fn affine_fits(&self, c: &str, v: &str) -> Result<(), String> {
        let dims = crate::passes::stream::const_dims_through(self.g, self.ix, c)
            .ok_or_else(|| format!("its scale/shift {c:?} is not a constant"))?;
        let n = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| format!("its scale/shift {c:?} is too large"))?;
        if n == 0 {
            return Err(format!("its scale/shift {c:?} is empty"));
        }
        if n == 1 {
            return Ok(());
        }
        if dims.last() != Some(&n) {
            return Err(format!(
                "its scale/shift {c:?} of dims {dims:?} is not a vector along the normalised axis"
            ));
        }
        match self.shapes.last(v) {
            Some(w) if w != n as i64 => Err(format!(
                "its scale/shift {c:?} has {n} entries, the normalised axis {w}"
            )),
            _ => Ok(()),
        }
    }

    /// Extend a normalised output `v` with a following `Mul(γ)` and `Add(β)` (constants, either
    /// operand order). Returns (y, γ, β, nodes).
    fn affine_tail(&self, v: &str) -> (String, Option<String>, Option<String>, Vec<NodeId>) {
        let mut y = v.to_string();
        let mut nodes = vec![];
        let mut gamma = None;
        let mut beta = None;
        if let Some(m) = sole(self.ix, &y) {
            let n = self.node(m);
            if n.is("Mul") {
                let fits = |c: &&str| is_affine_const(self, c) && self.affine_fits(c, v).is_ok();
                if let (Some(c), Some(o)) = (other(n, &y).filter(fits), n.out(0)) {
                    gamma = Some(c.to_string());
                    nodes.push(m);
                    y = o.to_string();
                }
            }
        }
        if let Some(a) = sole(self.ix, &y) {
            let n = self.node(a);
            if n.is("Add") {
                let fits = |c: &&str| is_affine_const(self, c) && self.affine_fits(c, v).is_ok();
                if let (Some(c), Some(o)) = (other(n, &y).filter(fits), n.out(0)) {
                    beta = Some(c.to_string());
                    nodes.push(a);
                    y = o.to_string();
                }
            }
        }
        (y, gamma, beta, nodes)
    }

    /// `LayerNormalization`, `RMSNormalization`, `SimplifiedLayerNormalization`, and the Skip
    /// forms: one node each.
    pub fn fused(&self, id: NodeId) -> Result<NormMatch, String> {
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
                return Err(format!(
                    "{} is not a fused normalisation",
                    n.op().escape_debug()
                ))
            }
        };
        let y = n
            .output
            .first()
            .cloned()
            .filter(|s| !s.is_empty())
            .ok_or("no output")?;
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
            let a = n.input(0).ok_or("Skip norm without input")?.to_string();
            let b = n
                .input(1)
                .ok_or("Skip norm without skip input")?
                .to_string();
            let bias_slot = 4;
            let bias = n.input(bias_slot).map(str::to_string);
            if let Some(bz) = &bias {
                if !is_const(self.g, bz) {
                    return Err(format!("its bias {bz:?} is not a constant"));
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
            n.input(0).ok_or("no input")?.to_string()
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
    pub fn split_layernorm(&self, id: NodeId) -> Result<NormMatch, String> {
        let n = self.node(id);
        if !(n.op() == "SimplifiedLayerNormalization" && matches!(n.domain(), "" | "com.microsoft"))
        {
            return Err("not a SimplifiedLayerNormalization".into());
        }
        let c = n.input(0).ok_or("no input")?;
        let sub = self
            .ix
            .producer(c)
            .filter(|&p| self.node(p).is("Sub"))
            .ok_or("its input is not a difference")?;
        if sole(self.ix, c) != Some(id) {
            return Err("the centred value has other readers".into());
        }
        let subn = self.node(sub);
        let (x, mean) = (
            subn.input(0).ok_or("Sub without input")?,
            subn.input(1).ok_or("Sub without input")?,
        );
        let rm = self
            .ix
            .producer(mean)
            .filter(|&p| self.node(p).is("ReduceMean") && self.node(p).input(0) == Some(x))
            .ok_or("the difference does not subtract the mean of its input")?;
        if sole(self.ix, mean) != Some(sub) {
            return Err("the mean has other readers".into());
        }
        let rmn = self.node(rm);
        let axes = reduce_axes(self.g, rmn).ok_or("ReduceMean axes are not constant")?;
        if !last_axis_only(&axes, self.shapes.rank(x)) {
            return Err(format!(
                "ReduceMean reduces axes {axes:?}, not the last axis alone"
            ));
        }
        if rmn.attr_i("keepdims").unwrap_or(1) == 0 {
            return Err("ReduceMean drops the reduced axis".into());
        }
        let axis = n.attr_i("axis").unwrap_or(-1);
        if !last_axis_only(&[axis], self.shapes.rank(x)) {
            return Err(format!(
                "SimplifiedLayerNormalization normalises from axis {axis}"
            ));
        }
        if n.output
            .iter()
            .skip(1)
            .any(|o| !o.is_empty() && self.ix.use_count(o) > 0)
        {
            return Err("its inverse deviation output is read".into());
        }
        let gamma = n.input(1).map(str::to_string);
        if let Some(gm) = &gamma {
            if !is_affine_const(self, gm) {
                return Err(format!("its scale {gm:?} is not a constant"));
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

    /// The decomposed LayerNorm, anchored at its first ReduceMean.
    pub fn decomposed_layernorm(&self, id: NodeId) -> Result<NormMatch, String> {
        let g = self.g;
        let rm1 = self.node(id);
        if !rm1.is("ReduceMean") {
            return Err("not a ReduceMean".into());
        }
        let x0 = rm1.input(0).ok_or("ReduceMean without input")?.to_string();
        let axes = reduce_axes(g, rm1).ok_or("ReduceMean axes are not constant")?;
        if !last_axis_only(&axes, self.shapes.rank(&x0)) {
            return Err(format!(
                "ReduceMean reduces axes {axes:?}, not the last axis alone"
            ));
        }
        let mean = out0(rm1)?;
        let sub = sole(self.ix, &mean).ok_or("the mean has several readers")?;
        let subn = self.node(sub);
        if !(subn.is("Sub")
            && subn.input(0) == Some(x0.as_str())
            && subn.input(1) == Some(mean.as_str()))
        {
            return Err("the mean is not subtracted from its input".into());
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
            return Err("the centred value is a graph output".into());
        }
        if self.ix.subgraph_reads.contains_key(&d) {
            return Err("the centred value is read inside a subgraph".into());
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
                    return Err("the centred value is squared twice".into());
                }
            } else if (cn.is("Div") || cn.is("Mul")) && cn.input(0) == Some(d.as_str())
                || (cn.is("Mul") && cn.input(1) == Some(d.as_str()))
            {
                if div.replace(c).is_some_and(|p| p != c) {
                    return Err("the centred value is divided twice".into());
                }
            } else {
                return Err(format!(
                    "the centred value is read by {} {:?}",
                    cn.op().escape_debug(),
                    cn.label()
                ));
            }
        }
        let sq = sq.ok_or("the centred value is not squared")?;
        let div = div.ok_or("the centred value is not divided by its deviation")?;
        nodes.push(sq);
        let var_rm =
            sole(self.ix, &out0(self.node(sq))?).ok_or("the square has several readers")?;
        let vn = self.node(var_rm);
        if !vn.is("ReduceMean") || reduce_axes(g, vn).as_deref() != Some(axes.as_slice()) {
            return Err("the square is not averaged over the same axis".into());
        }
        nodes.push(var_rm);
        let add = sole(self.ix, &out0(vn)?).ok_or("the variance has several readers")?;
        let an = self.node(add);
        let eps_v = other(an, &out0(vn)?)
            .filter(|_| an.is("Add"))
            .ok_or("the variance is not followed by Add(ε)")?;
        let epsilon = const_scalar(g, eps_v).ok_or("ε is not a constant scalar")? as f32;
        nodes.push(add);
        let sqrt = sole(self.ix, &out0(an)?)
            .filter(|&s| self.node(s).is("Sqrt"))
            .ok_or("variance + ε is not followed by Sqrt")?;
        nodes.push(sqrt);
        let s = out0(self.node(sqrt))?;
        let dn = self.node(div);
        if dn.is("Div") {
            if dn.input(1) != Some(s.as_str()) || sole(self.ix, &s) != Some(div) {
                return Err("the division is not by the deviation".into());
            }
        } else {
            let r = sole(self.ix, &s)
                .filter(|&r| self.node(r).is("Reciprocal"))
                .ok_or("the deviation is not inverted")?;
            let rv = &out0(self.node(r))?;
            if other(dn, &d) != Some(rv.as_str()) || sole(self.ix, rv) != Some(div) {
                return Err("the centred value is not multiplied by the inverse deviation".into());
            }
            nodes.push(r);
        }
        nodes.push(div);
        let mut normed = out0(dn)?;
        let mut compute_type = None;
        if inner_cast.is_some() {
            let back = sole(self.ix, &normed)
                .filter(|&c| self.node(c).is("Cast"))
                .ok_or("the widened LayerNorm is not cast back")?;
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
                let outer = pn.input(0).ok_or("Cast without input")?.to_string();
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
    pub fn decomposed_rms(&self, id: NodeId) -> Result<NormMatch, String> {
        let g = self.g;
        let p = self.node(id);
        if !(p.is("Pow") && p.input(1).and_then(|e| const_scalar(g, e)) == Some(2.0)) {
            return Err("not a square".into());
        }
        let x = p.input(0).ok_or("Pow without input")?.to_string();
        if let Some(pr) = self.ix.producer(&x) {
            if self.node(pr).is("Sub") {
                return Err("squares a difference (LayerNorm)".into());
            }
        }
        let rm = sole(self.ix, &out0(p)?)
            .filter(|&r| self.node(r).is("ReduceMean"))
            .ok_or("square not averaged")?;
        let add = sole(self.ix, &out0(self.node(rm))?)
            .filter(|&a| self.node(a).is("Add"))
            .ok_or("no Add(ε)")?;
        let an = self.node(add);
        let epsilon = other(an, &out0(self.node(rm))?)
            .and_then(|e| const_scalar(g, e))
            .ok_or("ε not constant")? as f32;
        let sq = sole(self.ix, &out0(an)?)
            .filter(|&s| self.node(s).is("Sqrt"))
            .ok_or("no Sqrt")?;
        let s = &out0(self.node(sq))?;
        let mut nodes = vec![id, rm, add, sq];
        let c = sole(self.ix, s).ok_or("deviation read twice")?;
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
                .ok_or("inverse not applied")?;
            nodes.push(c);
            nodes.push(m);
            out0(self.node(m))?
        } else {
            return Err("deviation not applied".into());
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

/// Whether the mean subtraction anchored at ReduceMean `id` is the first half of a split
/// LayerNorm (matched at its `SimplifiedLayerNormalization`).
fn split_ahead(ctx: &Ctx, id: NodeId) -> bool {
    let Some(mean) = ctx.g.node(id).out(0) else {
        return false;
    };
    sole(ctx.ix, mean)
        .and_then(|sub| ctx.g.node(sub).out(0))
        .and_then(|c| sole(ctx.ix, c))
        .is_some_and(|sln| ctx.split_layernorm(sln).is_ok())
}

/// Every normalisation in the graph, and for LayerNorm-looking nodes that did not match, why.
pub fn find_norms(ctx: &Ctx) -> (Vec<NormMatch>, Vec<(NodeId, String)>) {
    let mut found = Vec::new();
    let mut near_misses = Vec::new();
    let mut claimed = std::collections::HashSet::new();
    for (id, n) in ctx.g.nodes().iter().enumerate() {
        if claimed.contains(&id) {
            continue;
        }
        let r = match n.op() {
            "SimplifiedLayerNormalization" if ctx.split_layernorm(id).is_ok() => {
                Some(ctx.split_layernorm(id))
            }
            "LayerNormalization"
            | "SkipLayerNormalization"
            | "RMSNormalization"
            | "SimplifiedLayerNormalization"
            | "SkipSimplifiedLayerNormalization" => Some(ctx.fused(id)),
            "ReduceMean" => {
                let r = ctx.decomposed_layernorm(id);
                // A ReduceMean that is not a mean subtraction is ordinary; only report the
                // ones that looked like the start of a LayerNorm.
                match &r {
                    Err(e)
                        if e.contains("not subtracted")
                            || e.contains("several readers")
                            || e.contains("reduces axes")
                            || split_ahead(ctx, id) =>
                    {
                        None
                    }
                    _ => Some(r),
                }
            }
            "Pow" => match ctx.decomposed_rms(id) {
                Ok(m) => Some(Ok(m)),
                Err(_) => None,
            },
            _ => None,
        };
        match r {
            Some(Ok(m)) => {
                claimed.extend(m.nodes.iter().copied());
                found.push(m);
            }
            Some(Err(e)) => near_misses.push((id, e)),
            None => {}
        }
    }
    (found, near_misses)
}
