//! What the verifier reads from a model file: its graph inputs and outputs (names, element types,
//! shapes with symbolic dimensions) and, for integer inputs, the size of the embedding tables they
//! index.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

use prost::Message;

use super::VerifyError;
use crate::proto::{GraphProto, ModelProto, TensorProto, ValueInfoProto};

/// One axis of a graph input or output as declared in the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A named symbolic size (`dim_param`).
    Param(String),
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
}

/// Decode an ONNX file with the crate's prost types (external data is not needed: only the graph
/// structure and tensor dims are read).
pub(crate) fn read_model(path: &Path) -> Result<ModelProto, VerifyError> {
    let bytes = std::fs::read(path).map_err(|e| VerifyError::Read {
        path: path.to_path_buf(),
        source: e,
    })?;
    ModelProto::decode(bytes::Bytes::from(bytes)).map_err(|e| VerifyError::Decode {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
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
                (_, Some(p)) if !p.is_empty() => Dim::Param(p.to_string()),
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
            .filter(|n| n.domain.as_deref() == Some(crate::passes::emit::NORMOPT_DOMAIN))
            .map(|n| {
                format!(
                    "{}:{}",
                    crate::passes::emit::NORMOPT_DOMAIN,
                    n.op_type.as_deref().unwrap_or("")
                )
            })
            .collect();
        custom_ops.sort();
        custom_ops.dedup();
        Ok(ModelSpec {
            path: path.to_path_buf(),
            inputs,
            outputs,
            vocab,
            low_precision,
            custom_ops,
        })
    }
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

/// Whether a symbolic dimension name looks like a batch axis.
fn looks_like_batch(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    l.contains("batch") || matches!(l.as_str(), "n" | "b" | "bs" | "bsz" | "num_images")
}

/// Whether a symbolic dimension name looks like a sequence/length axis (never a batch default).
fn looks_like_length(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    [
        "seq", "len", "token", "time", "pos", "past", "width", "height",
    ]
    .iter()
    .any(|k| l.contains(k))
}

/// Default batch size for a dynamic batch axis.
pub const DEFAULT_BATCH: usize = 2;
/// Default size for every other dynamic axis (sequence length, ...).
pub const DEFAULT_OTHER: usize = 8;

/// Resolve every input's shape: fixed sizes as declared; a `dim_param` set in `overrides` wins;
/// otherwise a batch-looking name (or the first axis of a rank ≥ 2 input, unless its name looks
/// like a length) gets [`DEFAULT_BATCH`] and everything else [`DEFAULT_OTHER`]. An axis with
/// neither size nor name is keyed `INPUT[AXIS]` (settable the same way). Returns the shapes in
/// input order and the dims used (every dynamic axis key with its value).
pub(crate) fn resolve_shapes(
    inputs: &[ValueSpec],
    overrides: &BTreeMap<String, usize>,
) -> (Vec<Vec<usize>>, BTreeMap<String, usize>) {
    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    let mut shapes = Vec::new();
    for i in inputs {
        let dims = i.dims.clone().unwrap_or_default();
        let rank = dims.len();
        let mut shape = Vec::with_capacity(rank);
        for (axis, d) in dims.iter().enumerate() {
            let default_for = |name: &str| {
                if looks_like_batch(name) || (axis == 0 && rank >= 2 && !looks_like_length(name)) {
                    DEFAULT_BATCH
                } else {
                    DEFAULT_OTHER
                }
            };
            let v = match d {
                Dim::Fixed(v) => *v,
                Dim::Param(p) => {
                    let v = overrides
                        .get(p)
                        .copied()
                        .or_else(|| used.get(p).copied())
                        .unwrap_or_else(|| default_for(p));
                    used.insert(p.clone(), v);
                    v
                }
                Dim::Unknown => {
                    let key = format!("{}[{}]", i.name, axis);
                    let v = overrides
                        .get(&key)
                        .copied()
                        .unwrap_or_else(|| default_for(""));
                    used.insert(key, v);
                    v
                }
            };
            shape.push(v);
        }
        shapes.push(shape);
    }
    (shapes, used)
}
