//! What the verifier reads from a model file: its graph inputs and outputs (names, element types,
//! shapes with symbolic dimensions) and, for integer inputs, the size of the embedding tables they
//! index.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

mod cases;
mod dims;
mod facts;
pub(crate) mod quant;
mod solve;

pub use cases::*;
pub(crate) use dims::*;
pub(crate) use facts::Fact;

use super::VerifyError;
use crate::proto::{GraphProto, ModelProto, TensorProto, ValueInfoProto};

/// One axis of a graph input or output as declared in the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A named symbolic size (`dim_param`).
    Param(String),
    /// A `dim_param` that is an expression over names and integers
    /// (`past_sequence_length + sequence_length`): the text as written, and its parse.
    Expr(String, DimExpr),
    /// Neither a size nor a name.
    Unknown,
}

/// A graph input or output: name, element type and declared shape (`None` when no shape is
/// declared at all).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ValueSpec {
    pub name: String,
    pub elem_type: i32,
    pub dims: Option<Vec<Dim>>,
}

/// The part of a model the verifier needs.
#[derive(Clone, Debug)]
pub(crate) struct ModelSpec {
    pub path: PathBuf,
    /// Graph inputs that are real inputs (not initializers listed as inputs).
    pub inputs: Vec<ValueSpec>,
    pub outputs: Vec<ValueSpec>,
    /// For each integer input that (through shape-only ops) indexes constant tables with `Gather`:
    /// the smallest indexed axis length, and the table's name.
    pub vocab: HashMap<String, (usize, String)>,
    /// A half-precision type (f16/bf16) the graph computes in, when its weights use one: float
    /// outputs are then only as exact as that type, whatever their own element type.
    pub low_precision: Option<i32>,
    /// Ops of this crate's own domain the graph uses (`ai.onnx_normopt:CRMSNormalization`):
    /// only tract, through [`tract_onnx_with_extensions`](super::tract_onnx_with_extensions),
    /// can run them.
    pub custom_ops: Vec<String>,
    /// Boolean inputs that choose the branch of an `If` (a merged decoder's
    /// `use_cache_branch`): verified with both values.
    pub branch_flags: Vec<String>,
    /// What the graph itself says about the sizes of its inputs' dynamic dims (an attention
    /// op's head size, a Conv's channels and shortest input, a mask length = past + new), each
    /// with the node that says it ([`facts::collect`]). The sizes are solved from them
    /// ([`resolve_shapes`]); `--dim` wins.
    pub facts: Vec<Fact>,
    /// The ops that quantize activations inside the graph, grouped
    /// ([`quant::quantized_ops`]): the rewrite is then judged against the original's own
    /// sensitivity floor.
    pub quantized: Vec<String>,
    /// For such a graph, the float weights nudged by one ulp to measure the original's own
    /// floor ([`quant::nudge_targets`]).
    pub nudge_targets: Vec<String>,
}

/// Load an ONNX file with the crate's one reader ([`crate::io::load`]: memory-mapped, external
/// data references checked but not read: only the graph structure and tensor dims are used).
pub(crate) fn read_model(path: &Path) -> Result<ModelProto, VerifyError> {
    Ok(crate::io::load(path)?.proto)
}

fn value_spec(path: &Path, vi: &ValueInfoProto, what: &str) -> Result<ValueSpec, VerifyError> {
    let name = vi.name.clone().unwrap_or_default();
    let tensor = vi
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .ok_or_else(|| VerifyError::Model {
            path: path.to_path_buf(),
            message: format!("graph {what} `{name}` is not a tensor (or has no type)"),
        })?;
    let elem_type = tensor.elem_type.unwrap_or(0);
    let dims = tensor.shape.as_ref().map(|s| {
        s.dim
            .iter()
            .map(|d| match (d.dim_value, d.dim_param.as_deref()) {
                (Some(v), _) if v >= 0 => Dim::Fixed(v as usize),
                (_, Some(p)) if !p.trim().is_empty() => Dim::from_param(p),
                _ => Dim::Unknown,
            })
            .collect()
    });
    Ok(ValueSpec {
        name,
        elem_type,
        dims,
    })
}

impl ModelSpec {
    /// Read the spec of the model at `path`.
    pub fn from_path(path: &Path) -> Result<ModelSpec, VerifyError> {
        let model = read_model(path)?;
        Self::from_model(path, &model)
    }

    /// The spec of an already decoded model (`path` is used in messages only).
    pub fn from_model(path: &Path, model: &ModelProto) -> Result<ModelSpec, VerifyError> {
        let graph = model.graph.as_ref().ok_or_else(|| VerifyError::Model {
            path: path.to_path_buf(),
            message: "the file has no graph".into(),
        })?;
        let inits: HashSet<&str> = graph
            .initializer
            .iter()
            .filter_map(|t| t.name.as_deref())
            .collect();
        let mut inputs = Vec::new();
        for vi in &graph.input {
            if inits.contains(vi.name.as_deref().unwrap_or("")) {
                continue;
            }
            inputs.push(value_spec(path, vi, "input")?);
        }
        let outputs = graph
            .output
            .iter()
            .map(|vi| value_spec(path, vi, "output"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut vocab = HashMap::new();
        for i in &inputs {
            if super::tensor::is_int(i.elem_type) {
                if let Some(v) = vocab_bound(graph, &i.name) {
                    vocab.insert(i.name.clone(), v);
                }
            }
        }
        let low_precision = graph
            .initializer
            .iter()
            .filter_map(|t| t.data_type)
            .find(|&t| {
                t == crate::proto::data_type::FLOAT16 || t == crate::proto::data_type::BFLOAT16
            });
        let mut custom_ops: Vec<String> = graph
            .node
            .iter()
            .filter(|n| n.domain.as_deref() == Some(crate::ops::NORMOPT_DOMAIN))
            .map(|n| {
                format!(
                    "{}:{}",
                    crate::ops::NORMOPT_DOMAIN,
                    n.op_type.as_deref().unwrap_or("")
                )
            })
            .collect();
        custom_ops.sort();
        custom_ops.dedup();
        let branch_flags = inputs
            .iter()
            .filter(|i| {
                i.elem_type == crate::proto::data_type::BOOL && chooses_branch(graph, &i.name)
            })
            .map(|i| i.name.clone())
            .collect();
        let facts = facts::collect(graph, &inputs);
        let quantized = quant::quantized_ops(graph);
        let nudge_targets = if quantized.is_empty() {
            Vec::new()
        } else {
            quant::nudge_targets(graph)
        };
        Ok(ModelSpec {
            path: path.to_path_buf(),
            inputs,
            outputs,
            vocab,
            low_precision,
            custom_ops,
            branch_flags,
            facts,
            quantized,
            nudge_targets,
        })
    }
}

/// The user's `--dim` values plus the sizes the graph's facts fix in every case (a head size,
/// a Conv's channels, the shortest input a Conv stack fits): what may not be shrunk to fit a
/// memory budget.
pub(crate) fn with_hints(
    spec: &ModelSpec,
    dims: &BTreeMap<String, usize>,
) -> BTreeMap<String, usize> {
    let mut all = dims.clone();
    let solved: Vec<Resolved> = plan_cases(spec, dims)
        .iter()
        .filter_map(|c| resolve_shapes(spec, dims, c).ok())
        .collect();
    if let Some(first) = solved.first() {
        for (k, o) in &first.origins {
            let same = solved.iter().all(|r| r.used.get(k) == first.used.get(k));
            if o.by_graph() && same {
                all.entry(k.clone()).or_insert(first.used[k]);
            }
        }
    }
    all
}

/// The dims whose size the graph's facts give in some case (a total length = past + new, a
/// head size): shrinking them to fit a memory budget would break the facts.
pub(crate) fn sized_by_graph(spec: &ModelSpec, dims: &BTreeMap<String, usize>) -> Vec<String> {
    let mut out: Vec<String> = plan_cases(spec, dims)
        .iter()
        .filter_map(|c| resolve_shapes(spec, dims, c).ok())
        .flat_map(|r| {
            r.origins
                .into_iter()
                .filter(|(_, o)| o.by_graph())
                .map(|(k, _)| k)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether the boolean input `input` reaches the condition of an `If` of `graph` (through ops that
/// keep or negate a boolean).
fn chooses_branch(graph: &GraphProto, input: &str) -> bool {
    const KEEP: &[&str] = &[
        "Identity",
        "Not",
        "Cast",
        "Squeeze",
        "Unsqueeze",
        "Reshape",
        "Flatten",
        "Expand",
    ];
    let mut seen: HashSet<&str> = HashSet::new();
    let mut queue: VecDeque<&str> = VecDeque::from([input]);
    while let Some(v) = queue.pop_front() {
        if !seen.insert(v) || seen.len() > 10_000 {
            continue;
        }
        for n in &graph.node {
            let op = n.op_type.as_deref().unwrap_or("");
            let domain = n.domain.as_deref().unwrap_or("");
            if !(domain.is_empty() || domain == "ai.onnx") {
                continue;
            }
            if op == "If" && n.input.first().map(String::as_str) == Some(v) {
                return true;
            }
            if KEEP.contains(&op) && n.input.first().map(String::as_str) == Some(v) {
                if let Some(o) = n.output.first() {
                    queue.push_back(o);
                }
            }
        }
    }
    false
}

/// Ops through which an integer id tensor keeps its values (only its shape or type changes).
const PASS_THROUGH: &[&str] = &[
    "Reshape",
    "Cast",
    "Unsqueeze",
    "Squeeze",
    "Flatten",
    "Identity",
    "Transpose",
    "Expand",
];

/// The smallest length of an indexed axis among the constant tables that `input` reaches as
/// `Gather` indices (following [`PASS_THROUGH`] ops on their data input), with that table's name.
/// Also understands `com.microsoft:EmbedLayerNormalization` (ids in input 0/1 index tables 2/3).
pub(crate) fn vocab_bound(graph: &GraphProto, input: &str) -> Option<(usize, String)> {
    // Constant tables: initializers and Constant node outputs, by name -> dims.
    let mut tables: HashMap<&str, &TensorProto> = HashMap::new();
    for t in &graph.initializer {
        if let Some(n) = t.name.as_deref() {
            tables.insert(n, t);
        }
    }
    for n in &graph.node {
        if n.op_type.as_deref() == Some("Constant") && n.domain.as_deref().unwrap_or("").is_empty()
        {
            if let (Some(out), Some(t)) = (
                n.output.first(),
                n.attribute
                    .iter()
                    .find(|a| a.name.as_deref() == Some("value"))
                    .and_then(|a| a.t.as_ref()),
            ) {
                tables.insert(out.as_str(), t);
            }
        }
    }
    let mut consumers: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
    for (ni, n) in graph.node.iter().enumerate() {
        for (pos, i) in n.input.iter().enumerate() {
            consumers.entry(i.as_str()).or_default().push((ni, pos));
        }
    }
    let axis_len = |table: &str, axis: i64| -> Option<(usize, String)> {
        let t = tables.get(table)?;
        let rank = t.dims.len() as i64;
        let axis = if axis < 0 { axis + rank } else { axis };
        let len = *t.dims.get(usize::try_from(axis).ok()?)?;
        (len > 0).then(|| (len as usize, table.to_string()))
    };
    let mut best: Option<(usize, String)> = None;
    let mut seen: HashSet<&str> = HashSet::new();
    let mut queue: VecDeque<&str> = VecDeque::from([input]);
    while let Some(v) = queue.pop_front() {
        if !seen.insert(v) {
            continue;
        }
        for &(ni, pos) in consumers.get(v).map(|c| c.as_slice()).unwrap_or(&[]) {
            let n = &graph.node[ni];
            let op = n.op_type.as_deref().unwrap_or("");
            let found = match op {
                "Gather" if pos == 1 => {
                    let axis = n
                        .attribute
                        .iter()
                        .find(|a| a.name.as_deref() == Some("axis"))
                        .and_then(|a| a.i)
                        .unwrap_or(0);
                    axis_len(&n.input[0], axis)
                }
                "EmbedLayerNormalization" if pos == 0 || pos == 1 => {
                    n.input.get(pos + 2).and_then(|t| axis_len(t, 0))
                }
                o if PASS_THROUGH.contains(&o) && pos == 0 => {
                    if let Some(out) = n.output.first() {
                        queue.push_back(out.as_str());
                    }
                    None
                }
                _ => None,
            };
            if let Some((len, name)) = found {
                if best.as_ref().is_none_or(|(b, _)| len < *b) {
                    best = Some((len, name));
                }
            }
        }
    }
    best
}
