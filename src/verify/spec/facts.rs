//! What the graph itself says about the sizes of its inputs' dynamic dims: a symbolic shape
//! propagation from the declared input shapes (every size an expression over the inputs' dim
//! names, [`DimExpr`]) through the ops verification models use, collecting on the way the facts
//! each op states — an attention op's head size, a Conv's input channels and the shortest input
//! its kernel fits, the broadcasting and concatenation equalities that tie a mask length to a
//! past length plus a new length. Each fact names the node that gave it; [`super::solve`] sizes
//! the dims from them.
//!
//! Conservative: an op without a rule, a value read from a subgraph, a size that is not an
//! expression of the inputs' dims all make the size unknown (`None`), and an unknown size gives
//! no fact. A fact is only ever a reason to choose a size; the runtimes remain the judges of
//! whether a model runs at it.

use super::*;
use crate::proto::{AttributeProto, NodeProto};

/// What one fact requires of the sizes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Rule {
    /// The two sizes are equal.
    Eq(DimExpr, DimExpr),
    /// The two sizes broadcast: equal, or one of them is 1.
    Broadcast(DimExpr, DimExpr),
    /// The size is at least this.
    AtLeast(DimExpr, i64),
    /// onnxruntime's CPU `GroupQueryAttention`: with a past (`past > 0`), more than one new
    /// token (`new > 1`) needs batch 1 ("batch_size must be 1 when sequence_length > 1 and past
    /// context is given").
    OnePromptWithPast {
        /// The batch size.
        batch: DimExpr,
        /// The past length.
        past: DimExpr,
        /// The number of new tokens.
        new: DimExpr,
    },
}

/// One fact about the input sizes, with where it comes from.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Fact {
    /// What it requires.
    pub rule: Rule,
    /// The node that states it: `GroupQueryAttention "/model/layers.0/attn/GQA"`, or
    /// `graph output "present.0.key"`.
    pub source: String,
    /// Why, in words (`head size 32 = packed QKV width 128 / (2 heads + 2 × 1 KV head)`).
    pub why: String,
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rule::Eq(a, b) => write!(f, "{a} = {b}"),
            Rule::Broadcast(a, b) => write!(f, "{a} = {b} (or one of them 1)"),
            Rule::AtLeast(a, n) => write!(f, "{a} >= {n}"),
            Rule::OnePromptWithPast { batch, past, new } => {
                write!(f, "{batch} = 1 when {past} > 0 and {new} > 1")
            }
        }
    }
}

/// A size as the graph computes it (`None`: not known).
type Sym = Option<DimExpr>;

fn int(v: i64) -> Sym {
    Some(DimExpr::Int(v))
}

fn op2(op: char, a: &Sym, b: &Sym) -> Sym {
    DimExpr::op(op, a.as_ref()?, b.as_ref()?)
}

/// Attribute lookups on a node.
struct Attrs<'a>(&'a [AttributeProto]);

impl<'a> Attrs<'a> {
    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.0.iter().find(|a| a.name.as_deref() == Some(name))
    }
    fn i(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(|a| a.i)
    }
    fn ints(&self, name: &str) -> Option<&'a [i64]> {
        self.get(name).map(|a| a.ints.as_slice())
    }
    fn s(&self, name: &str) -> Option<String> {
        self.get(name)
            .and_then(|a| a.s.as_ref())
            .map(|s| String::from_utf8_lossy(s).into_owned())
    }
}

/// The integer values of a small constant tensor (shapes, axes, pads), when stored in the file.
fn int_values(t: &TensorProto) -> Option<Vec<i64>> {
    let count = crate::tensor::element_count(&t.dims).ok()?;
    if count > 4096 || crate::io::is_external(t) {
        return None;
    }
    let dt = t.data_type.unwrap_or(0);
    if !super::super::tensor::is_int(dt) && dt != crate::proto::data_type::BOOL {
        return None;
    }
    let v = match &t.raw_data {
        Some(raw) if !raw.is_empty() || count == 0 => crate::tensor::decode_raw(raw, dt, count),
        _ => crate::tensor::decode_typed(t, count),
    }
    .ok()?;
    Some(
        v.into_iter()
            .map(|x| {
                if x >= 9.2e18 {
                    i64::MAX
                } else if x <= -9.2e18 {
                    i64::MIN
                } else {
                    x as i64
                }
            })
            .collect(),
    )
}

/// The symbolic propagation over one graph.
struct Infer<'g> {
    /// Known shapes (rank known; each dim possibly unknown).
    shapes: HashMap<String, Vec<Sym>>,
    /// Known element values of small integer tensors (rank 0 or 1): shapes being computed.
    values: HashMap<String, Vec<Sym>>,
    /// Constant tensors by name: initializers and `Constant` outputs.
    consts: HashMap<&'g str, &'g TensorProto>,
    facts: Vec<Fact>,
    /// The node being read, for the facts' sources.
    source: String,
    /// The declared shapes of the graph outputs.
    declared: HashMap<&'g str, Vec<Sym>>,
}

impl<'g> Infer<'g> {
    fn shape(&self, v: &str) -> Option<Vec<Sym>> {
        if v.is_empty() {
            return None;
        }
        self.shapes.get(v).cloned()
    }

    fn dim(&self, v: &str, axis: i64) -> Sym {
        let s = self.shapes.get(v)?;
        let a = norm_axis(axis, s.len())?;
        s[a].clone()
    }

    /// The integer values of `v`: a constant's, or those computed from shapes.
    fn ints(&self, v: &str) -> Option<Vec<Sym>> {
        if let Some(t) = self.consts.get(v) {
            return int_values(t).map(|v| v.into_iter().map(int).collect());
        }
        self.values.get(v).cloned()
    }

    /// The integer values of `v` when all are constants.
    fn const_ints(&self, v: &str) -> Option<Vec<i64>> {
        self.ints(v)?
            .iter()
            .map(|s| s.as_ref()?.constant())
            .collect()
    }

    fn fact(&mut self, rule: Rule, why: String) {
        let trivial = match &rule {
            Rule::Eq(a, b) => a.same(b) || (a.constant().is_some() && b.constant().is_some()),
            Rule::Broadcast(a, b) => {
                a.same(b)
                    || a.constant() == Some(1)
                    || b.constant() == Some(1)
                    || (a.constant().is_some() && b.constant().is_some())
            }
            Rule::AtLeast(a, _) => a.constant().is_some(),
            Rule::OnePromptWithPast { .. } => false,
        };
        if !trivial && !self.facts.iter().any(|f| f.rule == rule) {
            self.facts.push(Fact {
                rule,
                source: self.source.clone(),
                why,
            });
        }
    }

    fn eq(&mut self, a: &Sym, b: &Sym, why: impl FnOnce() -> String) {
        if let (Some(a), Some(b)) = (a, b) {
            self.fact(Rule::Eq(a.clone(), b.clone()), why());
        }
    }

    fn set(&mut self, v: Option<&String>, shape: Option<Vec<Sym>>) {
        if let (Some(v), Some(s)) = (v, shape) {
            if !v.is_empty() {
                self.shapes.insert(v.clone(), s);
            }
        }
    }

    /// Numpy broadcasting of several shapes, stating that aligned sizes broadcast.
    fn broadcast(&mut self, shapes: &[Vec<Sym>], what: &str) -> Vec<Sym> {
        let rank = shapes.iter().map(Vec::len).max().unwrap_or(0);
        let mut out = Vec::with_capacity(rank);
        for k in 0..rank {
            let dims: Vec<&Sym> = shapes
                .iter()
                .filter_map(|s| (k + s.len()).checked_sub(rank).map(|i| &s[i]))
                .collect();
            let mut cur: Sym = int(1);
            let mut known_all = true;
            for d in dims {
                match (cur.clone(), d) {
                    (_, None) => known_all = false,
                    (None, Some(_)) => {}
                    (Some(c), Some(x)) => {
                        if c.constant() == Some(1) {
                            cur = Some(x.clone());
                        } else if x.constant() != Some(1) && !c.same(x) {
                            self.fact(
                                Rule::Broadcast(c.clone(), x.clone()),
                                format!("{what} broadcasts axis {k} of rank {rank}"),
                            );
                            // A constant other than 1 is the result (the other side is
                            // it or 1); of two different expressions, either may be 1.
                            if c.constant().is_none() && x.constant().is_some() {
                                cur = Some(x.clone());
                            } else if x.constant().is_none() && c.constant().is_none() {
                                known_all = false;
                            }
                        }
                    }
                }
            }
            out.push(if known_all { cur } else { None });
        }
        out
    }

    fn node(&mut self, n: &'g NodeProto) {
        let op = n.op_type.as_deref().unwrap_or("");
        let domain = n.domain.as_deref().unwrap_or("");
        self.source = format!("{op} \"{}\"", n.name.as_deref().unwrap_or(""));
        let a = Attrs(&n.attribute);
        let inp = |k: usize| n.input.get(k).map(String::as_str).unwrap_or("");
        let out0 = n.output.first();
        let known_domain = matches!(
            domain,
            "" | "ai.onnx" | "com.microsoft" | "com.microsoft.nchwc"
        );
        if !known_domain {
            return;
        }
        match op {
            "Constant" => {
                if let (Some(o), Some(t)) = (out0, a.get("value").and_then(|x| x.t.as_ref())) {
                    self.consts.insert(o.as_str(), t);
                    self.shapes
                        .insert(o.clone(), t.dims.iter().map(|&d| int(d)).collect());
                }
            }
            "Identity"
            | "Cast"
            | "CastLike"
            | "Relu"
            | "Gelu"
            | "FastGelu"
            | "QuickGelu"
            | "Erf"
            | "Tanh"
            | "Sigmoid"
            | "Exp"
            | "Log"
            | "Sqrt"
            | "Reciprocal"
            | "Neg"
            | "Abs"
            | "Not"
            | "Softmax"
            | "LogSoftmax"
            | "Dropout"
            | "IsNaN"
            | "IsInf"
            | "Floor"
            | "Ceil"
            | "Round"
            | "Sin"
            | "Cos"
            | "Clip"
            | "LeakyRelu"
            | "Elu"
            | "Selu"
            | "HardSigmoid"
            | "Softplus"
            | "Mish"
            | "HardSwish"
            | "Sign"
            | "InstanceNormalization"
            | "BatchNormalization"
            | "LayerNormalization"
            | "SimplifiedLayerNormalization"
            | "RMSNormalization"
            | "QuantizeLinear"
            | "DequantizeLinear"
            | "DynamicQuantizeLinear"
            | "RotaryEmbedding"
            | "Trilu"
            | "CumSum"
            | "ReorderInput"
            | "GroupNorm"
            | "GroupNormalization"
            | "BiasGelu" => {
                let s = self.shape(inp(0));
                if matches!(op, "Identity" | "Cast" | "CastLike") {
                    if let (Some(o), Some(v)) = (out0, self.ints(inp(0))) {
                        self.values.insert(o.clone(), v);
                    }
                }
                if op == "DynamicQuantizeLinear" {
                    for o in n.output.iter().skip(1) {
                        self.set(Some(o), Some(vec![]));
                    }
                }
                self.set(out0, s);
            }
            "SkipLayerNormalization" | "SkipSimplifiedLayerNormalization" => {
                let shapes: Vec<Vec<Sym>> =
                    [0, 1].iter().filter_map(|&k| self.shape(inp(k))).collect();
                if shapes.len() == 2 {
                    let s = self.broadcast(&shapes, "the skip connection");
                    self.set(out0, Some(s.clone()));
                    self.set(n.output.get(3), Some(s));
                }
            }
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Mod" | "Equal" | "Less" | "LessOrEqual"
            | "Greater" | "GreaterOrEqual" | "And" | "Or" | "Xor" | "Where" | "Max" | "Min"
            | "Sum" | "Mean" | "PRelu" | "BitShift" => self.elementwise(n, op),
            "MatMul"
            | "MatMulInteger"
            | "FusedMatMul"
            | "DynamicQuantizeMatMul"
            | "MatMulIntegerToFloat" => {
                let (Some(x), Some(w)) = (self.shape(inp(0)), self.shape(inp(1))) else {
                    return;
                };
                let trans = (
                    a.i("transA").unwrap_or(0) != 0,
                    a.i("transB").unwrap_or(0) != 0,
                );
                self.matmul(out0, x, w, trans);
            }
            "Gemm" => {
                let (Some(x), Some(w)) = (self.shape(inp(0)), self.shape(inp(1))) else {
                    return;
                };
                if x.len() == 2 && w.len() == 2 {
                    let trans = (
                        a.i("transA").unwrap_or(0) != 0,
                        a.i("transB").unwrap_or(0) != 0,
                    );
                    self.matmul(out0, x, w, trans);
                }
            }
            "MatMulNBits" => {
                let Some(mut x) = self.shape(inp(0)) else {
                    return;
                };
                if let (Some(k), Some(nn), Some(last)) = (a.i("K"), a.i("N"), x.last().cloned()) {
                    self.eq(&last, &int(k), || {
                        format!("the activations' last axis is the weight's K = {k}")
                    });
                    *x.last_mut().expect("rank >= 1") = int(nn);
                    self.set(out0, Some(x));
                }
            }
            "Conv" | "FusedConv" | "ConvInteger" | "QLinearConv" => self.conv(n, &a, op),
            "MaxPool" | "AveragePool" | "LpPool" => self.pool(n, &a),
            "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => {
                if let Some(mut s) = self.shape(inp(0)) {
                    for d in s.iter_mut().skip(2) {
                        *d = int(1);
                    }
                    self.set(out0, Some(s));
                }
            }
            "ReorderOutput" => {
                if let Some(mut s) = self.shape(inp(0)) {
                    if s.len() >= 2 {
                        s[1] = a.i("channels").and_then(int);
                        if a.i("channels_last").unwrap_or(0) != 0 {
                            let c = s.remove(1);
                            s.push(c);
                        }
                        self.set(out0, Some(s));
                    }
                }
            }
            "Gather" => self.gather(n, &a),
            "GatherElements" => {
                let s = self.shape(inp(1));
                self.set(out0, s);
            }
            "Shape" => {
                if let Some(s) = self.shape(inp(0)) {
                    let r = s.len() as i64;
                    let start = clamp_index(a.i("start").unwrap_or(0), r);
                    let end = clamp_index(a.i("end").unwrap_or(r), r);
                    let v: Vec<Sym> = s
                        .get(start..end.max(start))
                        .map(<[Sym]>::to_vec)
                        .unwrap_or_default();
                    if let Some(o) = out0 {
                        self.shapes.insert(o.clone(), vec![int(v.len() as i64)]);
                        self.values.insert(o.clone(), v);
                    }
                }
            }
            "Size" => {
                if let (Some(s), Some(o)) = (self.shape(inp(0)), out0) {
                    let p = s.iter().try_fold(DimExpr::Int(1), |acc, d| {
                        DimExpr::op('*', &acc, d.as_ref()?)
                    });
                    self.shapes.insert(o.clone(), vec![]);
                    self.values.insert(o.clone(), vec![p]);
                }
            }
            "Unsqueeze" | "Squeeze" => self.squeeze(n, &a, op == "Unsqueeze"),
            "Concat" => self.concat(n, &a),
            "Slice" => self.slice(n),
            "Reshape" => self.reshape(n, &a),
            "Flatten" => {
                if let Some(s) = self.shape(inp(0)) {
                    let axis = norm_axis(a.i("axis").unwrap_or(1), s.len() + 1).unwrap_or(1);
                    let prod = |ds: &[Sym]| {
                        ds.iter().try_fold(DimExpr::Int(1), |acc, d| {
                            DimExpr::op('*', &acc, d.as_ref()?)
                        })
                    };
                    self.set(out0, Some(vec![prod(&s[..axis]), prod(&s[axis..])]));
                }
            }
            "Transpose" => {
                if let Some(s) = self.shape(inp(0)) {
                    let perm: Vec<usize> = match a.ints("perm") {
                        Some(p) => p.iter().filter_map(|&k| usize::try_from(k).ok()).collect(),
                        None => (0..s.len()).rev().collect(),
                    };
                    if perm.len() == s.len() && perm.iter().all(|&k| k < s.len()) {
                        self.set(out0, Some(perm.iter().map(|&k| s[k].clone()).collect()));
                    }
                }
            }
            "Expand" => {
                if let (Some(s), Some(t)) = (self.shape(inp(0)), self.ints(inp(1))) {
                    let r = self.broadcast(&[s, t], "Expand");
                    self.set(out0, Some(r));
                }
            }
            "ConstantOfShape" => {
                if let Some(t) = self.ints(inp(0)) {
                    // The values of a small filled vector (`-1`s to compare a shape with).
                    let fill = match a.get("value").and_then(|x| x.t.as_ref()) {
                        Some(t) => int_values(t).and_then(|v| v.first().copied()),
                        None => Some(0),
                    };
                    let len = match t.as_slice() {
                        [n] => n.as_ref().and_then(DimExpr::constant),
                        _ => None,
                    };
                    if let (Some(f), Some(len), Some(o)) = (fill, len, out0) {
                        if (0..=64).contains(&len) {
                            self.values.insert(o.clone(), vec![int(f); len as usize]);
                        }
                    }
                    self.set(out0, Some(t));
                }
            }
            "Range" => {
                let (s, l, d) = (self.ints(inp(0)), self.ints(inp(1)), self.ints(inp(2)));
                let one = |v: Option<Vec<Sym>>| v.and_then(|v| v.first().cloned().flatten());
                let (s, l, d) = (one(s), one(l), one(d));
                let len = match (s, l, d.and_then(|d| d.constant())) {
                    (Some(s), Some(l), Some(1)) => DimExpr::op('-', &l, &s),
                    _ => None,
                };
                self.set(out0, Some(vec![len]));
            }
            "Tile" => {
                if let (Some(s), Some(r)) = (self.shape(inp(0)), self.const_ints(inp(1))) {
                    if r.len() == s.len() {
                        let t = s
                            .iter()
                            .zip(&r)
                            .map(|(d, &k)| op2('*', d, &int(k)))
                            .collect();
                        self.set(out0, Some(t));
                    }
                }
            }
            "Pad" => {
                let pads = self
                    .const_ints(inp(1))
                    .or_else(|| a.ints("pads").map(<[i64]>::to_vec));
                if let (Some(s), Some(p)) = (self.shape(inp(0)), pads) {
                    let axes = self.const_ints(inp(3));
                    let axes: Vec<usize> = match axes {
                        Some(ax) => ax.iter().filter_map(|&x| norm_axis(x, s.len())).collect(),
                        None => (0..s.len()).collect(),
                    };
                    if p.len() == 2 * axes.len() {
                        let mut t = s.clone();
                        for (k, &ax) in axes.iter().enumerate() {
                            t[ax] = op2('+', &s[ax], &int(p[k] + p[k + axes.len()]));
                        }
                        self.set(out0, Some(t));
                    }
                }
            }
            "Split" => {
                if let Some(s) = self.shape(inp(0)) {
                    let Some(axis) = norm_axis(a.i("axis").unwrap_or(0), s.len()) else {
                        return;
                    };
                    let sizes = self
                        .const_ints(inp(1))
                        .or_else(|| a.ints("split").map(<[i64]>::to_vec));
                    for (k, o) in n.output.iter().enumerate() {
                        let mut t = s.clone();
                        t[axis] = match &sizes {
                            Some(sz) => sz.get(k).and_then(|&x| int(x)),
                            None => op2('/', &s[axis], &int(n.output.len() as i64)),
                        };
                        self.set(Some(o), Some(t));
                    }
                }
            }
            "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
            | "ReduceL2" | "ReduceSumSquare" | "ReduceLogSum" | "ReduceLogSumExp" | "ArgMax"
            | "ArgMin" => self.reduce(n, &a, op),
            "GroupQueryAttention" => self.gqa(n, &a),
            "MultiHeadAttention" => self.mha(n, &a),
            "Attention" if domain == "com.microsoft" => self.attention(n, &a),
            "EmbedLayerNormalization" => {
                if let Some(s) = self.shape(inp(0)) {
                    let width = self.consts.get(inp(2)).and_then(|t| t.dims.get(1).copied());
                    if s.len() == 2 {
                        self.set(
                            out0,
                            Some(vec![s[0].clone(), s[1].clone(), width.and_then(int)]),
                        );
                        self.set(n.output.get(1), Some(vec![s[0].clone()]));
                    }
                }
            }
            _ => {}
        }
    }

    fn elementwise(&mut self, n: &NodeProto, op: &str) {
        let ins: Vec<&str> = n.input.iter().map(String::as_str).collect();
        let shapes: Vec<Vec<Sym>> = ins.iter().filter_map(|i| self.shape(i)).collect();
        if shapes.len() != ins.len() {
            return;
        }
        let s = self.broadcast(&shapes, op);
        // Values of shapes being computed (Add of two lengths, Where picking a shape).
        let vals: Option<Vec<Vec<Sym>>> = ins.iter().map(|i| self.ints(i)).collect();
        if let (Some(vals), Some(o)) = (vals, n.output.first()) {
            let len = vals.iter().map(Vec::len).max().unwrap_or(0);
            if len <= 64 && vals.iter().all(|v| v.len() == len || v.len() == 1) {
                let at = |v: &Vec<Sym>, k: usize| {
                    if v.len() == 1 {
                        v[0].clone()
                    } else {
                        v[k].clone()
                    }
                };
                let out: Vec<Sym> = (0..len)
                    .map(|k| {
                        let x: Vec<Sym> = vals.iter().map(|v| at(v, k)).collect();
                        match (op, x.as_slice()) {
                            ("Add", [p, q]) => op2('+', p, q),
                            ("Sub", [p, q]) => op2('-', p, q),
                            ("Mul", [p, q]) => op2('*', p, q),
                            ("Div", [p, q]) => op2('/', p, q),
                            ("Max" | "Min", [p, q]) => {
                                let (p, q) = (p.as_ref()?, q.as_ref()?);
                                if p.same(q) {
                                    Some(p.clone())
                                } else {
                                    let (x, y) = (p.constant()?, q.constant()?);
                                    int(if op == "Max" { x.max(y) } else { x.min(y) })
                                }
                            }
                            // A shape compared with -1 (Expand's "keep this axis" idiom): sizes
                            // are never negative.
                            ("Equal", [p, q]) => {
                                let (p, q) = (p.as_ref()?, q.as_ref()?);
                                if p.same(q) {
                                    int(1)
                                } else if p.constant().is_some_and(|c| c < 0)
                                    || q.constant().is_some_and(|c| c < 0)
                                {
                                    int(0)
                                } else {
                                    let (x, y) = (p.constant()?, q.constant()?);
                                    int(i64::from(x == y))
                                }
                            }
                            ("Where", [c, p, q]) => match c.as_ref()?.constant()? {
                                0 => q.clone(),
                                _ => p.clone(),
                            },
                            _ => None,
                        }
                    })
                    .collect();
                self.values.insert(o.clone(), out);
            }
        }
        self.set(n.output.first(), Some(s));
    }

    fn matmul(&mut self, out: Option<&String>, mut x: Vec<Sym>, mut w: Vec<Sym>, t: (bool, bool)) {
        if x.is_empty() || w.is_empty() {
            return;
        }
        let x1 = x.len() == 1;
        let w1 = w.len() == 1;
        if x1 {
            x.insert(0, int(1));
        }
        if w1 {
            w.push(int(1));
        }
        let (xr, wr) = (x.len(), w.len());
        if t.0 {
            x.swap(xr - 1, xr - 2);
        }
        if t.1 {
            w.swap(wr - 1, wr - 2);
        }
        let k_x = x[xr - 1].clone();
        let k_w = w[wr - 2].clone();
        self.eq(&k_x, &k_w, || "the inner dims of a matrix product".into());
        let batch = self.broadcast(
            &[x[..xr - 2].to_vec(), w[..wr - 2].to_vec()],
            "the matrix product's batch",
        );
        let mut s = batch;
        if !x1 {
            s.push(x[xr - 2].clone());
        }
        if !w1 {
            s.push(w[wr - 1].clone());
        }
        self.set(out, Some(s));
    }

    fn weight_dims(&self, v: &str) -> Option<Vec<i64>> {
        self.consts.get(v).map(|t| t.dims.clone())
    }

    /// Conv: the output size of each spatial axis, the input channels the weight fixes, and the
    /// shortest input the kernel fits (the output has at least one element per axis).
    fn conv(&mut self, n: &NodeProto, a: &Attrs, op: &str) {
        let inp = |k: usize| n.input.get(k).map(String::as_str).unwrap_or("");
        let (xi, wi) = if op == "QLinearConv" { (0, 3) } else { (0, 1) };
        let Some(x) = self.shape(inp(xi)) else {
            return;
        };
        let wdims = self.weight_dims(inp(wi));
        let group = a.i("group").unwrap_or(1);
        if let (Some(w), Some(c)) = (&wdims, x.get(1)) {
            if let Some(cin) = w.get(1).and_then(|&k| k.checked_mul(group)) {
                let reordered = self.source.starts_with("Conv")
                    && n.domain.as_deref() == Some("com.microsoft.nchwc");
                self.eq(c, &int(cin), || {
                    if reordered {
                        format!(
                            "input channels = weight channels {} × group {group} (an nchwc weight: \
                             padded to the nchwc block when its input is reordered)",
                            w[1]
                        )
                    } else {
                        format!("input channels = weight channels {} × group {group}", w[1])
                    }
                });
            }
        }
        let kernel: Option<Vec<i64>> = a
            .ints("kernel_shape")
            .map(<[i64]>::to_vec)
            .or_else(|| wdims.as_ref().map(|w| w.iter().skip(2).copied().collect()));
        let m = wdims
            .as_ref()
            .and_then(|w| w.first().copied())
            .and_then(int);
        let spatial = self.window(n, a, &x, kernel.as_deref());
        if let Some(sp) = spatial {
            let mut s = vec![x[0].clone(), m];
            s.extend(sp);
            self.set(n.output.first(), Some(s));
        }
    }

    fn pool(&mut self, n: &NodeProto, a: &Attrs) {
        let Some(x) = self.shape(n.input.first().map(String::as_str).unwrap_or("")) else {
            return;
        };
        let kernel = a.ints("kernel_shape").map(<[i64]>::to_vec);
        if let Some(sp) = self.window(n, a, &x, kernel.as_deref()) {
            let mut s = vec![x[0].clone(), x.get(1).cloned().flatten()];
            s.extend(sp);
            self.set(n.output.first(), Some(s));
        }
    }

    /// The spatial output sizes of a sliding window (Conv, pools) over `x` (`[N, C, spatial…]`),
    /// stating for each axis that the padded input is at least as long as the dilated kernel.
    fn window(
        &mut self,
        n: &NodeProto,
        a: &Attrs,
        x: &[Sym],
        kernel: Option<&[i64]>,
    ) -> Option<Vec<Sym>> {
        let kernel = kernel?;
        let r = kernel.len();
        if x.len() != r + 2 {
            return None;
        }
        let strides = a
            .ints("strides")
            .map(<[i64]>::to_vec)
            .unwrap_or_else(|| vec![1; r]);
        let dil = a
            .ints("dilations")
            .map(<[i64]>::to_vec)
            .unwrap_or_else(|| vec![1; r]);
        let pads = a
            .ints("pads")
            .map(<[i64]>::to_vec)
            .unwrap_or_else(|| vec![0; 2 * r]);
        let auto = a.s("auto_pad").unwrap_or_default();
        let ceil = a.i("ceil_mode").unwrap_or(0) != 0;
        if strides.len() != r || dil.len() != r || pads.len() != 2 * r {
            return None;
        }
        let name = n.name.as_deref().unwrap_or("");
        let mut out = Vec::with_capacity(r);
        for k in 0..r {
            let len = x[k + 2].clone();
            let (s, d) = (strides[k].max(1), dil[k].max(1));
            let span = d.checked_mul(kernel[k] - 1)?.checked_add(1)?;
            let same = auto.starts_with("SAME");
            let pad = if same || auto == "VALID" {
                0
            } else {
                pads[k] + pads[k + r]
            };
            if !same {
                if let Some(l) = &len {
                    if let Some(e) = DimExpr::op('+', l, &DimExpr::Int(pad)) {
                        self.fact(
                            Rule::AtLeast(e, span),
                            format!(
                                "the window of \"{name}\" (kernel {}, dilation {d}) spans {span} \
                                 along spatial axis {k}, padding adds {pad}",
                                kernel[k]
                            ),
                        );
                    }
                }
            }
            let o = if same {
                // ceil(len / s)
                op2('/', &op2('+', &len, &int(s - 1)), &int(s))
            } else {
                let num = op2('-', &op2('+', &len, &int(pad)), &int(span));
                let num = if ceil {
                    op2('+', &num, &int(s - 1))
                } else {
                    num
                };
                op2('+', &op2('/', &num, &int(s)), &int(1))
            };
            out.push(o);
        }
        Some(out)
    }

    fn gather(&mut self, n: &NodeProto, a: &Attrs) {
        let inp = |k: usize| n.input.get(k).map(String::as_str).unwrap_or("");
        let (Some(data), Some(idx)) = (self.shape(inp(0)), self.shape(inp(1))) else {
            return;
        };
        let Some(axis) = norm_axis(a.i("axis").unwrap_or(0), data.len()) else {
            return;
        };
        let mut s = data[..axis].to_vec();
        s.extend(idx.iter().cloned());
        s.extend(data[axis + 1..].iter().cloned());
        if let (Some(vals), Some(ix), Some(o), 0) = (
            self.ints(inp(0)),
            self.const_ints(inp(1)),
            n.output.first(),
            axis,
        ) {
            let picked: Option<Vec<Sym>> = ix
                .iter()
                .map(|&i| {
                    let i = if i < 0 { i + vals.len() as i64 } else { i };
                    usize::try_from(i).ok().and_then(|i| vals.get(i).cloned())
                })
                .collect();
            if let Some(p) = picked {
                self.values.insert(o.clone(), p);
            }
        }
        self.set(n.output.first(), Some(s));
    }

    fn squeeze(&mut self, n: &NodeProto, a: &Attrs, unsqueeze: bool) {
        let inp = |k: usize| n.input.get(k).map(String::as_str).unwrap_or("");
        let Some(s) = self.shape(inp(0)) else {
            return;
        };
        let axes = self
            .const_ints(inp(1))
            .or_else(|| a.ints("axes").map(<[i64]>::to_vec));
        let out = if unsqueeze {
            let Some(axes) = axes else {
                return;
            };
            let r = s.len() + axes.len();
            let mut ax: Vec<usize> = axes.iter().filter_map(|&k| norm_axis(k, r)).collect();
            ax.sort_unstable();
            let mut it = s.iter();
            (0..r)
                .map(|k| {
                    if ax.contains(&k) {
                        int(1)
                    } else {
                        it.next().cloned().flatten()
                    }
                })
                .collect()
        } else {
            match axes {
                Some(axes) => {
                    let ax: Vec<usize> =
                        axes.iter().filter_map(|&k| norm_axis(k, s.len())).collect();
                    s.iter()
                        .enumerate()
                        .filter(|(k, _)| !ax.contains(k))
                        .map(|(_, d)| d.clone())
                        .collect()
                }
                None => {
                    if s.iter()
                        .any(|d| d.as_ref().and_then(DimExpr::constant).is_none())
                    {
                        return;
                    }
                    s.into_iter()
                        .filter(|d| d.as_ref().and_then(DimExpr::constant) != Some(1))
                        .collect()
                }
            }
        };
        if let (Some(v), Some(o)) = (self.ints(inp(0)), n.output.first()) {
            self.values.insert(o.clone(), v);
        }
        self.set(n.output.first(), Some(out));
    }

    fn concat(&mut self, n: &NodeProto, a: &Attrs) {
        let shapes: Option<Vec<Vec<Sym>>> = n.input.iter().map(|i| self.shape(i)).collect();
        let Some(shapes) = shapes else {
            return;
        };
        let Some(first) = shapes.first().cloned() else {
            return;
        };
        let Some(axis) = norm_axis(a.i("axis").unwrap_or(0), first.len()) else {
            return;
        };
        if shapes.iter().any(|s| s.len() != first.len()) {
            return;
        }
        let mut out = first.clone();
        out[axis] = shapes.iter().try_fold(DimExpr::Int(0), |acc, s| {
            DimExpr::op('+', &acc, s[axis].as_ref()?)
        });
        for s in &shapes[1..] {
            for k in (0..first.len()).filter(|&k| k != axis) {
                self.eq(&out[k].clone(), &s[k], || {
                    format!("Concat along axis {axis} keeps axis {k}")
                });
            }
        }
        let vals: Option<Vec<Vec<Sym>>> = n.input.iter().map(|i| self.ints(i)).collect();
        if let (Some(v), Some(o)) = (vals, n.output.first()) {
            if first.len() <= 1 {
                self.values.insert(o.clone(), v.concat());
            }
        }
        self.set(n.output.first(), Some(out));
    }

    fn slice(&mut self, n: &NodeProto) {
        let inp = |k: usize| n.input.get(k).map(String::as_str).unwrap_or("");
        let Some(s) = self.shape(inp(0)) else {
            return;
        };
        let (Some(starts), Some(ends)) = (self.const_ints(inp(1)), self.const_ints(inp(2))) else {
            // Unknown bounds: the rank is kept, the sliced axes are unknown.
            return;
        };
        let axes: Vec<i64> = self
            .const_ints(inp(3))
            .unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = self
            .const_ints(inp(4))
            .unwrap_or_else(|| vec![1; starts.len()]);
        if axes.len() != starts.len() || ends.len() != starts.len() || steps.len() != starts.len() {
            return;
        }
        let mut out = s.clone();
        let vals = self.ints(inp(0));
        let mut picked: Option<Vec<Sym>> = None;
        for k in 0..starts.len() {
            let Some(ax) = norm_axis(axes[k], s.len()) else {
                return;
            };
            let (b, e, st) = (starts[k], ends[k], steps[k]);
            // Only the common forms: a constant axis length, or a step of 1 with a start and
            // an end that are constants from the front or to the end.
            let len = &s[ax];
            out[ax] = match len.as_ref().and_then(DimExpr::constant) {
                Some(l) if st != 0 => {
                    let (b, e) = (clamp_slice(b, l, st), clamp_slice(e, l, st));
                    let n = if st > 0 {
                        (e - b).max(0)
                    } else {
                        (b - e).max(0)
                    };
                    int((n + st.abs() - 1) / st.abs())
                }
                _ if st == 1 && b >= 0 && e >= i64::MAX / 2 => op2('-', len, &int(b)),
                _ if st == 1 && b < 0 && e >= i64::MAX / 2 => int(-b),
                _ => None,
            };
            if ax == 0 && s.len() == 1 {
                if let Some(v) = &vals {
                    let l = v.len() as i64;
                    if st != 0 {
                        let (b, e) = (clamp_slice(b, l, st), clamp_slice(e, l, st));
                        let mut p = Vec::new();
                        let mut i = b;
                        while (st > 0 && i < e) || (st < 0 && i > e) {
                            p.push(v[i as usize].clone());
                            i += st;
                        }
                        picked = Some(p);
                    }
                }
            }
        }
        if let (Some(p), Some(o)) = (picked, n.output.first()) {
            self.values.insert(o.clone(), p);
        }
        self.set(n.output.first(), Some(out));
    }

    fn reshape(&mut self, n: &NodeProto, a: &Attrs) {
        let inp = |k: usize| n.input.get(k).map(String::as_str).unwrap_or("");
        let Some(target) = self.ints(inp(1)) else {
            return;
        };
        let src = self.shape(inp(0));
        let allowzero = a.i("allowzero").unwrap_or(0) != 0;
        let mut out: Vec<Sym> = Vec::with_capacity(target.len());
        let mut infer_at = None;
        for (k, t) in target.iter().enumerate() {
            match t.as_ref().and_then(DimExpr::constant) {
                Some(0) if !allowzero => {
                    out.push(src.as_ref().and_then(|s| s.get(k).cloned()).flatten())
                }
                Some(-1) => {
                    infer_at = Some(k);
                    out.push(None);
                }
                _ => out.push(t.clone()),
            }
        }
        if let (Some(k), Some(src)) = (infer_at, &src) {
            out[k] = infer_minus_one(src, &out);
        }
        if let (Some(v), Some(o)) = (self.ints(inp(0)), n.output.first()) {
            self.values.insert(o.clone(), v);
        }
        self.set(n.output.first(), Some(out));
    }

    fn reduce(&mut self, n: &NodeProto, a: &Attrs, op: &str) {
        let inp = |k: usize| n.input.get(k).map(String::as_str).unwrap_or("");
        let Some(s) = self.shape(inp(0)) else {
            return;
        };
        let keep = a.i("keepdims").unwrap_or(1) != 0;
        let axes: Vec<i64> = if op.starts_with("Arg") {
            vec![a.i("axis").unwrap_or(0)]
        } else {
            match self
                .const_ints(inp(1))
                .or_else(|| a.ints("axes").map(<[i64]>::to_vec))
            {
                Some(ax) if !ax.is_empty() => ax,
                _ if a.i("noop_with_empty_axes").unwrap_or(0) != 0 => {
                    self.set(n.output.first(), Some(s));
                    return;
                }
                _ => (0..s.len() as i64).collect(),
            }
        };
        let ax: Vec<usize> = axes.iter().filter_map(|&k| norm_axis(k, s.len())).collect();
        let out = s
            .iter()
            .enumerate()
            .filter_map(|(k, d)| match (ax.contains(&k), keep) {
                (true, true) => Some(int(1)),
                (true, false) => None,
                (false, _) => Some(d.clone()),
            })
            .collect();
        self.set(n.output.first(), Some(out));
    }

    /// The head size an attention op computes with: the query width over `heads` (described
    /// as `what`).
    fn head_size(&self, width: &Sym, heads: i64, what: &str) -> Option<(i64, String)> {
        let w = width.as_ref()?.constant()?;
        (heads > 0 && w % heads == 0).then(|| {
            (
                w / heads,
                format!("head size {} = {what} width {w} / {heads}", w / heads),
            )
        })
    }

    /// com.microsoft GroupQueryAttention: head counts and size fix the past's axes 1 and 3; the
    /// total length is the past length plus the new tokens (separate past and present
    /// buffers), or at most the past buffer (a shared buffer).
    fn gqa(&mut self, n: &NodeProto, a: &Attrs) {
        let inp = |k: usize| n.input.get(k).map(String::as_str).unwrap_or("");
        let (Some(nh), Some(kvh)) = (a.i("num_heads"), a.i("kv_num_heads")) else {
            return;
        };
        let Some(q) = self.shape(inp(0)) else {
            return;
        };
        if q.len() != 3 {
            return;
        }
        let packed = inp(1).is_empty();
        let head = if packed {
            self.head_size(
                &q[2],
                nh + 2 * kvh,
                &format!("(num_heads {nh} + 2 × kv_num_heads {kvh} heads in the) packed QKV"),
            )
        } else {
            self.head_size(&q[2], nh, &format!("(num_heads {nh} heads in the) query"))
        };
        let (batch, new) = (q[0].clone(), q[1].clone());
        for (k, what) in [(3, "past_key"), (4, "past_value")] {
            self.past_axes(inp(k), what, &batch, (kvh, "kv_num_heads"), &head);
        }
        let past = self.dim(inp(3), 2);
        let total = self.ints(inp(6)).and_then(|v| v.first().cloned().flatten());
        let present_axis = n.output.get(1).and_then(|o| {
            self.declared
                .get(o.as_str())
                .and_then(|s| s.get(2).cloned())
        });
        let shared = matches!((&present_axis, &past), (Some(Some(x)), Some(p)) if x.same(p));
        if let (Some(p), Some(t)) = (&past, &total) {
            if shared {
                if let Some(room) = DimExpr::op('-', p, t) {
                    self.fact(
                        Rule::AtLeast(room, 0),
                        "the past buffer (shared with the present) holds the total length".into(),
                    );
                }
            } else if let Some(sum) = op2('+', &past, &new) {
                self.fact(
                    Rule::Eq(t.clone(), sum),
                    "total_sequence_length (input 6) = the past length (past_key axis 2) + the new \
                     tokens (query axis 1)"
                        .into(),
                );
            }
        }
        if let Some(sk) = self.shape(inp(5)) {
            if let Some(d) = sk.first() {
                self.eq(d, &batch, || "seqlens_k has one entry per batch row".into());
            }
        }
        if let (Some(t), Some(cos)) = (&total, self.weight_dims(inp(7))) {
            if let Some(&rows) = cos.first() {
                if let Some(room) = DimExpr::op('-', &DimExpr::Int(rows), t) {
                    self.fact(
                        Rule::AtLeast(room, 0),
                        format!("the rotary cache (input 7) has {rows} positions"),
                    );
                }
            }
        }
        if let (Some(b), Some(p), Some(s)) = (&batch, &past, &new) {
            self.fact(
                Rule::OnePromptWithPast {
                    batch: b.clone(),
                    past: p.clone(),
                    new: s.clone(),
                },
                "onnxruntime's CPU GroupQueryAttention runs more than one new token after a past \
                 only at batch 1"
                    .into(),
            );
        }
        let width = head.as_ref().map(|(h, _)| h * nh);
        self.set(
            n.output.first(),
            Some(vec![batch.clone(), new.clone(), width.and_then(int)]),
        );
        let t = if shared { past.clone() } else { total.clone() };
        self.presents(n, &batch, kvh, &t, &head);
    }

    /// A past key or value `[B, heads, P, head]` (BNSH) of an attention op: its batch, head
    /// count and head size.
    fn past_axes(
        &mut self,
        v: &str,
        what: &str,
        batch: &Sym,
        (heads, attr): (i64, &str),
        head: &Option<(i64, String)>,
    ) {
        let Some(p) = self.shape(v).filter(|p| p.len() == 4) else {
            return;
        };
        self.eq(&p[0], batch, || {
            format!("{what} axis 0 is the query's batch")
        });
        self.eq(&p[1], &int(heads), || {
            format!("{what} axis 1 is {attr} = {heads}")
        });
        if let Some((h, why)) = head {
            self.eq(&p[3], &int(*h), || format!("{what} axis 3 is the {why}"));
        }
    }

    /// The present key and value (outputs 1 and 2) of an attention op: `[B, heads, len, head]`.
    fn presents(
        &mut self,
        n: &NodeProto,
        batch: &Sym,
        heads: i64,
        len: &Sym,
        head: &Option<(i64, String)>,
    ) {
        for o in n.output.iter().skip(1).take(2) {
            let s = vec![
                batch.clone(),
                int(heads),
                len.clone(),
                head.as_ref().and_then(|h| int(h.0)),
            ];
            self.set(Some(o), Some(s));
        }
    }

    /// com.microsoft MultiHeadAttention: with a past in BNSH layout, its head count and size; the
    /// attention bias spans the past plus the new keys.
    fn mha(&mut self, n: &NodeProto, a: &Attrs) {
        let inp = |k: usize| n.input.get(k).map(String::as_str).unwrap_or("");
        let Some(nh) = a.i("num_heads") else {
            return;
        };
        let Some(q) = self.shape(inp(0)) else {
            return;
        };
        if q.len() != 3 {
            return;
        }
        let head = self.head_size(&q[2], nh, &format!("(num_heads {nh} heads in the) query"));
        let (batch, new) = (q[0].clone(), q[1].clone());
        // Keys: [B, L, D] (or BNSH [B, N, L, H] for cross attention).
        let kv_len = self.shape(inp(1)).and_then(|k| match k.len() {
            3 => Some(k[1].clone()),
            4 => Some(k[2].clone()),
            _ => None,
        });
        let mut total = kv_len.clone().unwrap_or_else(|| new.clone());
        for (k, what) in [(6, "past_key"), (7, "past_value")] {
            self.past_axes(inp(k), what, &batch, (nh, "num_heads"), &head);
        }
        if let Some(p) = self.shape(inp(6)).filter(|p| p.len() == 4) {
            total = op2('+', &p[2], &total);
        }
        if let Some(bias) = self.shape(inp(5)) {
            if bias.len() == 4 {
                let full = vec![batch.clone(), int(nh), new.clone(), total.clone()];
                self.broadcast(&[bias, full], "the attention bias (input 5)");
            }
        }
        if let Some(mask) = self.shape(inp(4)) {
            if mask.len() == 2 {
                self.eq(&mask[1], &total, || {
                    "key_padding_mask (input 4) spans the past and new keys".into()
                });
            }
        }
        let width = head.as_ref().map(|(h, _)| h * nh);
        self.set(
            n.output.first(),
            Some(vec![batch.clone(), new, width.and_then(int)]),
        );
        self.presents(n, &batch, nh, &total, &head);
    }

    /// com.microsoft Attention (packed weights): the input width is the weight's rows; a past
    /// `[2, B, N, P, H]` has the head count and size; a 2-D mask spans past + new.
    fn attention(&mut self, n: &NodeProto, a: &Attrs) {
        let inp = |k: usize| n.input.get(k).map(String::as_str).unwrap_or("");
        let Some(nh) = a.i("num_heads") else {
            return;
        };
        let Some(x) = self.shape(inp(0)) else {
            return;
        };
        if x.len() != 3 {
            return;
        }
        let w = self.weight_dims(inp(1));
        if let Some(w) = &w {
            if let Some(&rows) = w.first() {
                self.eq(&x[2], &int(rows), || {
                    format!("the input width is the packed weight's {rows} rows")
                });
            }
        }
        let qkv: Option<Vec<i64>> = a
            .ints("qkv_hidden_sizes")
            .map(<[i64]>::to_vec)
            .filter(|v| v.len() == 3)
            .or_else(|| w.as_ref().and_then(|w| w.get(1)).map(|&c| vec![c / 3; 3]));
        let head = qkv
            .as_ref()
            .and_then(|v| (nh > 0 && v[1] % nh == 0).then(|| v[1] / nh));
        let (batch, new) = (x[0].clone(), x[1].clone());
        let mut total = new.clone();
        if let Some(p) = self.shape(inp(4)) {
            if p.len() == 5 {
                self.eq(&p[0], &int(2), || "past axis 0 stacks key and value".into());
                self.eq(&p[1], &batch, || "past axis 1 is the input's batch".into());
                self.eq(&p[2], &int(nh), || {
                    format!("past axis 2 is num_heads = {nh}")
                });
                if let Some(h) = head {
                    self.eq(&p[4], &int(h), || {
                        format!("past axis 4 is the head size {h}")
                    });
                }
                total = op2('+', &p[3], &new);
            }
        }
        if let Some(m) = self.shape(inp(3)) {
            if m.len() == 2 {
                self.eq(&m[0], &batch, || "mask_index axis 0 is the batch".into());
                self.eq(&m[1], &total, || {
                    "a 2-D mask_index spans the past and the new tokens".into()
                });
            }
        }
        let width = qkv.as_ref().map(|v| v[2]);
        self.set(
            n.output.first(),
            Some(vec![batch.clone(), new, width.and_then(int)]),
        );
        self.set(
            n.output.get(1),
            Some(vec![int(2), batch, int(nh), total, head.and_then(int)]),
        );
    }
}

/// A negative axis counted from the end, checked against the rank.
fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

fn clamp_index(i: i64, r: i64) -> usize {
    let i = if i < 0 { i + r } else { i };
    i.clamp(0, r) as usize
}

/// ONNX Slice's clamping of a start or end on an axis of known length `l`.
fn clamp_slice(i: i64, l: i64, step: i64) -> i64 {
    let i = if i < 0 { i.saturating_add(l) } else { i };
    if step > 0 {
        i.clamp(0, l)
    } else {
        i.clamp(-1, l - 1)
    }
}

/// The size of a Reshape's `-1` axis: the input's element count divided by the other target
/// sizes, when both are products whose factors cancel (names and constants).
fn infer_minus_one(src: &[Sym], target: &[Sym]) -> Sym {
    let factors = |ds: &[Sym]| -> Option<(Vec<DimExpr>, i64)> {
        let mut names = Vec::new();
        let mut c: i64 = 1;
        for d in ds {
            let d = d.as_ref()?;
            match d.constant() {
                Some(v) => c = c.checked_mul(v)?,
                None => names.push(d.linear()?.expr()),
            }
        }
        Some((names, c))
    };
    let (mut num, cn) = factors(src)?;
    let others: Vec<Sym> = target.iter().filter(|d| d.is_some()).cloned().collect();
    if others.len() + 1 != target.len() {
        return None;
    }
    let (den, cd) = factors(&others)?;
    for d in den {
        let k = num.iter().position(|x| x.same(&d))?;
        num.remove(k);
    }
    if cd == 0 || cn % cd != 0 {
        return None;
    }
    num.iter()
        .try_fold(DimExpr::Int(cn / cd), |acc, d| DimExpr::op('*', &acc, d))
}

/// The symbolic size of axis `axis` of input `i` as the propagation names it: the declared size,
/// name or expression, or `INPUT[AXIS]` for an axis with neither.
pub(crate) fn input_dim(i: &ValueSpec, axis: usize, d: &Dim) -> DimExpr {
    match d {
        Dim::Fixed(v) => DimExpr::Int(*v as i64),
        Dim::Param(p) => DimExpr::Name(p.clone()),
        Dim::Expr(_, e) => e.clone(),
        Dim::Unknown => DimExpr::Name(format!("{}[{}]", i.name, axis)),
    }
}

/// Collect the facts `graph` states about the sizes of `inputs` (its real inputs).
pub(crate) fn collect(graph: &GraphProto, inputs: &[ValueSpec]) -> Vec<Fact> {
    let mut inf = Infer {
        shapes: HashMap::new(),
        values: HashMap::new(),
        consts: HashMap::new(),
        facts: Vec::new(),
        source: String::new(),
        declared: HashMap::new(),
    };
    for t in &graph.initializer {
        if let Some(n) = t.name.as_deref() {
            inf.consts.insert(n, t);
            inf.shapes
                .insert(n.to_string(), t.dims.iter().map(|&d| int(d)).collect());
        }
    }
    for i in inputs {
        if let Some(dims) = &i.dims {
            let s = dims
                .iter()
                .enumerate()
                .map(|(k, d)| Some(input_dim(i, k, d)))
                .collect();
            inf.shapes.insert(i.name.clone(), s);
        }
    }
    for o in &graph.output {
        let Some(name) = o.name.as_deref() else {
            continue;
        };
        let dims = o
            .r#type
            .as_ref()
            .and_then(|t| t.tensor_type.as_ref())
            .and_then(|t| t.shape.as_ref());
        if let Some(shape) = dims {
            let s: Vec<Sym> = shape
                .dim
                .iter()
                .map(|d| match (d.dim_value, d.dim_param.as_deref()) {
                    (Some(v), _) if v >= 0 => int(v),
                    (_, Some(p)) if !p.trim().is_empty() => match Dim::from_param(p) {
                        Dim::Fixed(v) => int(v as i64),
                        Dim::Param(p) => Some(DimExpr::Name(p)),
                        Dim::Expr(_, e) => Some(e),
                        Dim::Unknown => None,
                    },
                    _ => None,
                })
                .collect();
            inf.declared.insert(name, s);
        }
    }
    for n in &graph.node {
        inf.node(n);
    }
    // A graph output's declared size names the size the graph computes for it.
    for o in &graph.output {
        let Some(name) = o.name.as_deref() else {
            continue;
        };
        let (Some(decl), Some(got)) = (
            inf.declared.get(name).cloned(),
            inf.shapes.get(name).cloned(),
        ) else {
            continue;
        };
        if decl.len() != got.len() {
            continue;
        }
        inf.source = format!("graph output \"{name}\"");
        for (k, (d, g)) in decl.iter().zip(&got).enumerate() {
            // Only sizes named by input dims say something (an output-only name is free).
            inf.eq(d, g, || format!("its declared axis {k}"));
        }
    }
    inf.facts
}
