//! Matchers for the normalisations found in exported graphs (design §5).
//!
//! Each matcher looks at one anchor node and returns `Ok(NormMatch)` or `Err(NoMatch)`: "no
//! match, because …" is a value ([`NoMatch`], one variant per reason), not a failure. A match owns every node of its pattern; its
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

mod decomposed;
pub mod foreign;
mod fused;
mod no_match;

pub use no_match::NoMatch;

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
    /// Flax through jax2tf and tf2onnx: max(0, `E[x²]` − `E[x]`²) ([`foreign`]).
    JaxLayerNorm,
    /// Keras through tf2onnx: x·r + (β − μ·r) ([`foreign`]).
    KerasLayerNorm,
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
            NormForm::JaxLayerNorm => "decomposed LayerNorm (Flax/jax2tf: max(0, E[x²] − E[x]²))",
            NormForm::KerasLayerNorm => "decomposed LayerNorm (Keras/tf2onnx: x·r + (β − μ·r))",
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
fn out0(n: &NodeProto) -> Result<String, NoMatch> {
    n.out(0)
        .map(str::to_string)
        .ok_or_else(|| NoMatch::NoOutput {
            op: n.op().to_string(),
            node: n.label(),
        })
}

fn is_const(g: &Graph, v: &str) -> bool {
    g.constant_tensor(v).is_some()
}

/// A scale/shift: a constant, or a float `Cast` of one (onnxruntime's fp16 optimisation casts
/// fp16 γ/β for f32 norms). Only read, never written: the fold reads the cast values.
fn is_affine_const(ctx: &Ctx, v: &str) -> bool {
    is_const(ctx.g, v) || crate::ir::cast_of_const(ctx.g, ctx.ix, v).is_some()
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
    /// Structurally equal nodes: one value under several names (an optimiser's duplicates).
    pub canon: &'a crate::passes::stream::Canon,
}

impl Ctx<'_> {
    fn node(&self, id: NodeId) -> &NodeProto {
        self.g.node(id)
    }

    /// Whether constant `c` can be the scale/shift of a norm of `v` (the normalised values): one
    /// entry (a scalar that broadcasts) or D entries along its last axis (other axes 1), D the
    /// last dim of `v` when known. Else why not.
    fn affine_fits(&self, c: &str, v: &str) -> Result<(), NoMatch> {
        let value = || c.to_string();
        let dims = crate::ir::const_dims_through(self.g, self.ix, c)
            .ok_or_else(|| NoMatch::AffineNotConst { value: value() })?;
        let n = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| NoMatch::AffineTooLarge { value: value() })?;
        if n == 0 {
            return Err(NoMatch::AffineEmpty { value: value() });
        }
        if n == 1 {
            return Ok(());
        }
        if dims.last() != Some(&n) {
            return Err(NoMatch::AffineNotVector {
                value: value(),
                dims,
            });
        }
        match self.shapes.last(v) {
            Some(w) if w != n as i64 => Err(NoMatch::AffineWidth {
                value: value(),
                entries: n,
                width: w,
            }),
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
pub fn find_norms(ctx: &Ctx) -> (Vec<NormMatch>, Vec<(NodeId, NoMatch)>) {
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
            // Other frameworks' forms (foreign.rs).
            "ReduceSum" | "GlobalAveragePool" => foreign::find(ctx, id),
            "ReduceMean" => {
                let r = ctx.decomposed_layernorm(id);
                // A ReduceMean that is not a mean subtraction is ordinary; only report the
                // ones that looked like the start of a LayerNorm.
                match &r {
                    Err(_) if foreign::find(ctx, id).is_some() => foreign::find(ctx, id),
                    Err(e) if e.ordinary_reduce_mean() || split_ahead(ctx, id) => None,
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
