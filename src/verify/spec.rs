//! What the verifier reads from a model file: its graph inputs and outputs (names, element types,
//! shapes with symbolic dimensions) and, for integer inputs, the size of the embedding tables they
//! index.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

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
    /// Sizes the graph itself fixes for symbolic input dims, by name: the channel axis of an
    /// image input read by a `Conv` is the weight's input channels × group
    /// ([`conv_channel_hints`]). Used as defaults; `--dim` wins.
    pub dim_hints: BTreeMap<String, usize>,
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
        let dim_hints = conv_channel_hints(graph, &inputs);
        Ok(ModelSpec {
            path: path.to_path_buf(),
            inputs,
            outputs,
            vocab,
            low_precision,
            custom_ops,
            branch_flags,
            dim_hints,
        })
    }
}

/// The dims to generate with: the sizes the graph fixes ([`ModelSpec::dim_hints`]) under the
/// user's `--dim` values (which win).
pub(crate) fn with_hints(
    spec: &ModelSpec,
    dims: &BTreeMap<String, usize>,
) -> BTreeMap<String, usize> {
    let mut all = spec.dim_hints.clone();
    all.extend(dims.iter().map(|(k, v)| (k.clone(), *v)));
    all
}

/// For each input read (directly, or through `Cast`/`Identity`) as the data of a `Conv` whose
/// weight is a constant: its axis 1 (channels) has `W.dims[1] × group` entries. Returns the
/// symbolic names of such axes with that size (an Optimum ViT export declares
/// `[batch_size, num_channels, height, width]`).
pub(crate) fn conv_channel_hints(
    graph: &GraphProto,
    inputs: &[ValueSpec],
) -> BTreeMap<String, usize> {
    let weights: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref().map(|n| (n, t)))
        .collect();
    let mut hints = BTreeMap::new();
    for i in inputs {
        let Some(Dim::Param(name)) = i.dims.as_ref().and_then(|d| d.get(1)) else {
            continue;
        };
        let mut frontier = vec![i.name.as_str()];
        let mut steps = 0;
        while let Some(v) = frontier.pop() {
            steps += 1;
            if steps > 64 {
                break;
            }
            for n in graph
                .node
                .iter()
                .filter(|n| n.input.first().map(String::as_str) == Some(v))
            {
                match n.op_type.as_deref().unwrap_or("") {
                    "Cast" | "Identity" => frontier.extend(n.output.first().map(String::as_str)),
                    "Conv" if n.domain.as_deref().unwrap_or("").is_empty() => {
                        let group = n
                            .attribute
                            .iter()
                            .find(|a| a.name.as_deref() == Some("group"))
                            .and_then(|a| a.i)
                            .unwrap_or(1);
                        let w = n.input.get(1).and_then(|w| weights.get(w.as_str()));
                        if let Some(&cin) = w.and_then(|w| w.dims.get(1)) {
                            if let Some(c) = cin.checked_mul(group).filter(|&c| c > 0) {
                                hints.insert(name.clone(), c as usize);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    hints
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

/// A parsed `dim_param` expression: integers, names, `+ - * / %` (floor division and
/// remainder, as symbolic-shape printers write them), unary minus and parentheses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DimExpr {
    /// An integer literal.
    Int(i64),
    /// A symbolic size by name.
    Name(String),
    /// `-e`.
    Neg(Box<DimExpr>),
    /// `a op b` with `op` one of `+ - * / %`.
    Bin(char, Box<DimExpr>, Box<DimExpr>),
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

/// Whether `s` is a plain name: `[A-Za-z_][A-Za-z0-9_.-]*` (a hyphen without spaces is read as
/// part of a name, `sequence-length`, not as a subtraction).
fn is_plain_name(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next().is_some_and(is_name_start) && cs.all(|c| is_name_char(c) || c == '-')
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Int(i64),
    Name(String),
    Op(char),
}

fn tokens(s: &str) -> Option<Vec<Tok>> {
    let cs: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < cs.len() && cs[i].is_ascii_digit() {
                i += 1;
            }
            let text: String = cs[start..i].iter().collect();
            out.push(Tok::Int(text.parse().ok()?));
        } else if is_name_start(c) {
            let start = i;
            while i < cs.len() && is_name_char(cs[i]) {
                i += 1;
            }
            out.push(Tok::Name(cs[start..i].iter().collect()));
        } else if c == '/' && cs.get(i + 1) == Some(&'/') {
            out.push(Tok::Op('/'));
            i += 2;
        } else if "+-*/%()".contains(c) {
            out.push(Tok::Op(c));
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek_op(&self) -> Option<char> {
        match self.toks.get(self.pos) {
            Some(Tok::Op(c)) => Some(*c),
            _ => None,
        }
    }

    fn sum(&mut self) -> Option<DimExpr> {
        let mut e = self.product()?;
        while let Some(op @ ('+' | '-')) = self.peek_op() {
            self.pos += 1;
            e = DimExpr::Bin(op, Box::new(e), Box::new(self.product()?));
        }
        Some(e)
    }

    fn product(&mut self) -> Option<DimExpr> {
        let mut e = self.unary()?;
        while let Some(op @ ('*' | '/' | '%')) = self.peek_op() {
            self.pos += 1;
            e = DimExpr::Bin(op, Box::new(e), Box::new(self.unary()?));
        }
        Some(e)
    }

    fn unary(&mut self) -> Option<DimExpr> {
        // Bounded nesting: a hostile file cannot overflow the stack.
        self.depth += 1;
        if self.depth > 64 {
            return None;
        }
        let r = match self.toks.get(self.pos).cloned()? {
            Tok::Op('-') => {
                self.pos += 1;
                Some(DimExpr::Neg(Box::new(self.unary()?)))
            }
            Tok::Op('+') => {
                self.pos += 1;
                self.unary()
            }
            Tok::Op('(') => {
                self.pos += 1;
                let e = self.sum()?;
                (self.peek_op() == Some(')')).then_some(())?;
                self.pos += 1;
                Some(e)
            }
            Tok::Int(v) => {
                self.pos += 1;
                Some(DimExpr::Int(v))
            }
            Tok::Name(n) => {
                self.pos += 1;
                Some(DimExpr::Name(n))
            }
            Tok::Op(_) => None,
        };
        self.depth -= 1;
        r
    }
}

impl DimExpr {
    /// Parse `s`; `None` when it is not an expression of this grammar.
    pub fn parse(s: &str) -> Option<DimExpr> {
        let toks = tokens(s)?;
        let mut p = Parser {
            toks,
            pos: 0,
            depth: 0,
        };
        let e = p.sum()?;
        (p.pos == p.toks.len()).then_some(e)
    }

    /// The names the expression reads, in order of appearance (with repeats).
    pub fn names(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_names(&mut out);
        out
    }

    fn collect_names<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            DimExpr::Int(_) => {}
            DimExpr::Name(n) => out.push(n),
            DimExpr::Neg(e) => e.collect_names(out),
            DimExpr::Bin(_, a, b) => {
                a.collect_names(out);
                b.collect_names(out);
            }
        }
    }

    /// The names of the terms of a top-level sum (`a + b + 1` → `a`, `b`).
    pub fn summed_names(&self) -> Vec<&str> {
        match self {
            DimExpr::Name(n) => vec![n.as_str()],
            DimExpr::Bin('+', a, b) => {
                let mut v = a.summed_names();
                v.extend(b.summed_names());
                v
            }
            _ => Vec::new(),
        }
    }

    /// The value with every name read from `value` (checked arithmetic; `/` and `%` floor).
    pub fn eval(&self, value: &dyn Fn(&str) -> i64) -> Result<i64, String> {
        let overflow = || "overflows".to_string();
        Ok(match self {
            DimExpr::Int(v) => *v,
            DimExpr::Name(n) => value(n),
            DimExpr::Neg(e) => e.eval(value)?.checked_neg().ok_or_else(overflow)?,
            DimExpr::Bin(op, a, b) => {
                let (x, y) = (a.eval(value)?, b.eval(value)?);
                match op {
                    '+' => x.checked_add(y).ok_or_else(overflow)?,
                    '-' => x.checked_sub(y).ok_or_else(overflow)?,
                    '*' => x.checked_mul(y).ok_or_else(overflow)?,
                    '/' | '%' if y == 0 => return Err("divides by zero".into()),
                    '/' => x.checked_div_euclid(y).ok_or_else(overflow)?,
                    _ => x.checked_rem_euclid(y).ok_or_else(overflow)?,
                }
            }
        })
    }
}

impl Dim {
    /// The dim a non-empty `dim_param` declares: a plain name, an integer literal (`"1"`, as
    /// exporters write a traced size), or an expression over names; text that is neither stays
    /// an opaque name.
    pub(crate) fn from_param(p: &str) -> Dim {
        let t = p.trim();
        if is_plain_name(t) {
            return Dim::Param(p.to_string());
        }
        match DimExpr::parse(t) {
            Some(DimExpr::Int(v)) if v >= 0 => Dim::Fixed(v as usize),
            Some(e) if !e.names().is_empty() => Dim::Expr(p.to_string(), e),
            Some(e) => match e.eval(&|_| 0) {
                Ok(v) if v >= 0 => Dim::Fixed(v as usize),
                _ => Dim::Param(p.to_string()),
            },
            None => Dim::Param(p.to_string()),
        }
    }
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
/// The past (cache) lengths a KV-cache model is verified at: an empty cache, then a filled one.
pub const PAST_LENGTHS: [usize; 2] = [0, 8];
/// The new-token length of the filled-cache case (differs from the past length, so that a
/// mask or position mix-up between the two shows).
pub const NEW_TOKENS: usize = 4;

/// One verification case: values for some dims and for the branch-selecting boolean inputs
/// (merged decoders), on top of the `--dim` values and defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CasePlan {
    /// Short name for tables: `past_sequence_length=8 sequence_length=4`, or `default`.
    pub label: String,
    /// Dim values of this case (never overriding a `--dim`).
    pub dims: BTreeMap<String, usize>,
    /// Values of boolean inputs that choose an `If` branch.
    pub flags: BTreeMap<String, bool>,
}

/// Every shape resolved for one case.
#[derive(Clone, Debug, Default)]
pub(crate) struct Resolved {
    /// One shape per input, in input order.
    pub shapes: Vec<Vec<usize>>,
    /// Every dynamic dim used: names, expressions (`a + b`) and `INPUT[AXIS]` keys.
    pub used: BTreeMap<String, usize>,
    /// Remarks: an opaque `dim_param` the verifier could only guess.
    pub notes: Vec<String>,
}

/// The default size of a dim named `name` seen at `axis` of a rank-`rank` input (`None` when only
/// seen inside expressions).
fn default_for(name: &str, at: Option<(usize, usize)>) -> usize {
    let first_of_many = at.is_some_and(|(axis, rank)| axis == 0 && rank >= 2);
    if looks_like_batch(name) || (first_of_many && !looks_like_length(name)) {
        DEFAULT_BATCH
    } else {
        DEFAULT_OTHER
    }
}

/// Resolve every input's shape for one case: fixed sizes as declared; a name takes its `--dim`
/// (`overrides`) value, else the case's, else a default (a batch-looking name, or the first axis
/// of a rank ≥ 2 input unless its name looks like a length, gets [`DEFAULT_BATCH`]; everything
/// else [`DEFAULT_OTHER`]) — one value per name wherever it appears. An expression
/// (`past_sequence_length + sequence_length`) is computed from its names' values (a `--dim`
/// given for the whole expression text wins). An axis with neither size nor name is keyed
/// `INPUT[AXIS]` (settable the same way). An expression that cannot be computed or comes out
/// negative is an error naming it and the `--dim` flags that fix it.
pub(crate) fn resolve_shapes(
    inputs: &[ValueSpec],
    overrides: &BTreeMap<String, usize>,
    case: &BTreeMap<String, usize>,
) -> Result<Resolved, String> {
    let mut values: BTreeMap<String, usize> = BTreeMap::new();
    let mut notes = Vec::new();
    // Names first, where they appear as a whole axis (their position chooses the default)...
    for i in inputs {
        let dims = i.dims.as_deref().unwrap_or_default();
        for (axis, d) in dims.iter().enumerate() {
            if let Dim::Param(p) = d {
                if values.contains_key(p) {
                    continue;
                }
                let v = overrides
                    .get(p)
                    .or_else(|| case.get(p))
                    .copied()
                    .unwrap_or_else(|| default_for(p, Some((axis, dims.len()))));
                if !is_plain_name(p.trim()) && !overrides.contains_key(p) {
                    notes.push(format!(
                        "dimension `{p}` of input `{}` is not an expression the verifier \
                         understands; it was given {v} (set it with --dim '{p}=VALUE')",
                        i.name
                    ));
                }
                values.insert(p.clone(), v);
            }
        }
    }
    // ... then names seen only inside expressions.
    for i in inputs {
        for d in i.dims.as_deref().unwrap_or_default() {
            if let Dim::Expr(_, e) = d {
                for n in e.names() {
                    if !values.contains_key(n) {
                        let v = overrides
                            .get(n)
                            .or_else(|| case.get(n))
                            .copied()
                            .unwrap_or_else(|| default_for(n, None));
                        values.insert(n.to_string(), v);
                    }
                }
            }
        }
    }
    let mut used = values.clone();
    let mut shapes = Vec::with_capacity(inputs.len());
    for i in inputs {
        let dims = i.dims.as_deref().unwrap_or_default();
        let mut shape = Vec::with_capacity(dims.len());
        for (axis, d) in dims.iter().enumerate() {
            let v = match d {
                Dim::Fixed(v) => *v,
                Dim::Param(p) => values[p],
                Dim::Expr(text, e) => match overrides.get(text) {
                    Some(&v) => v,
                    None => {
                        let got = e.eval(&|n| values.get(n).map_or(0, |&v| v as i64));
                        let names: Vec<&str> = {
                            let mut n = e.names();
                            n.sort();
                            n.dedup();
                            n
                        };
                        let with = names
                            .iter()
                            .map(|n| format!("{n}={}", values.get(*n).copied().unwrap_or(0)))
                            .collect::<Vec<_>>()
                            .join(", ");
                        let fix = names
                            .iter()
                            .map(|n| format!("--dim {n}=VALUE"))
                            .collect::<Vec<_>>()
                            .join(" ");
                        let why = match got {
                            Ok(v) if v >= 0 => match usize::try_from(v) {
                                Ok(v) => {
                                    used.insert(text.clone(), v);
                                    shape.push(v);
                                    continue;
                                }
                                Err(_) => "is too large".to_string(),
                            },
                            Ok(v) => format!("comes out negative ({v})"),
                            Err(e) => e,
                        };
                        return Err(format!(
                            "cannot choose the size of axis {axis} of input `{}`: `{text}` {why} \
                             with {with}; set {fix} (or --dim '{text}=VALUE')",
                            i.name
                        ));
                    }
                },
                Dim::Unknown => {
                    let key = format!("{}[{}]", i.name, axis);
                    let v = overrides
                        .get(&key)
                        .copied()
                        .unwrap_or_else(|| default_for("", Some((axis, dims.len()))));
                    used.insert(key, v);
                    v
                }
            };
            shape.push(v);
        }
        shapes.push(shape);
    }
    Ok(Resolved {
        shapes,
        used,
        notes,
    })
}

/// Whether an input holds a past key/value cache: a float input named like `past_key_values.*`,
/// `past.*`, `*cache*` (not `use_cache*` / `cache_position`).
fn looks_like_cache_input(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    (l.starts_with("past") || l.contains("cache"))
        && !l.contains("use_cache")
        && !l.contains("position")
}

/// The past (cache) length names of a model: every dim name containing `past`, and the names
/// on the non-batch symbolic axes of cache inputs that are also summed in some expression
/// (`s1` of `s1 + s2`, as symbolic tracers name them).
pub(crate) fn past_names(spec: &ModelSpec) -> Vec<String> {
    let mut all: Vec<(&str, Option<&ValueSpec>)> = Vec::new();
    let mut summed: HashSet<&str> = HashSet::new();
    for v in spec.inputs.iter().chain(&spec.outputs) {
        let is_input = spec.inputs.iter().any(|i| std::ptr::eq(i, v));
        for d in v.dims.as_deref().unwrap_or_default() {
            match d {
                Dim::Param(p) => all.push((p, is_input.then_some(v))),
                Dim::Expr(_, e) => {
                    let s = e.summed_names();
                    if s.len() >= 2 {
                        summed.extend(s);
                    }
                    all.extend(e.names().into_iter().map(|n| (n, None)));
                }
                _ => {}
            }
        }
    }
    let mut out: Vec<String> = Vec::new();
    for (n, input) in all {
        let by_name = n.to_ascii_lowercase().contains("past");
        let by_cache = input.is_some_and(|i| {
            super::tensor::is_float(i.elem_type)
                && looks_like_cache_input(&i.name)
                && !looks_like_batch(n)
                && i.dims
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .position(|d| matches!(d, Dim::Param(p) if p == n))
                    .is_some_and(|axis| axis > 0)
                && summed.contains(n)
        });
        if (by_name || by_cache) && !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    out
}

/// The new-token length names: names summed with a past name in some expression
/// (`sequence_length` of `past_sequence_length + sequence_length`).
fn new_token_names(spec: &ModelSpec, past: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in spec.inputs.iter().chain(&spec.outputs) {
        for d in v.dims.as_deref().unwrap_or_default() {
            if let Dim::Expr(_, e) = d {
                let s = e.summed_names();
                if s.iter().any(|n| past.iter().any(|p| p == n)) {
                    for n in s {
                        if !past.iter().any(|p| p == n)
                            && !looks_like_batch(n)
                            && !out.iter().any(|o| o == n)
                        {
                            out.push(n.to_string());
                        }
                    }
                }
            }
        }
    }
    out
}

/// The cases to verify `spec` in, with the user's `--dim` values `overrides`:
/// - a KV-cache model (it has past-length dims, [`past_names`]) at an empty cache
///   ([`PAST_LENGTHS`]`[0]`) and at a filled one ([`PAST_LENGTHS`]`[1]`, with [`NEW_TOKENS`] new
///   tokens), unless `--dim` sets every past length;
/// - a merged decoder (boolean inputs choosing an `If` branch, [`ModelSpec::branch_flags`]) with
///   those inputs false (and an empty cache) and true (and a filled one);
/// - any other model in one case.
pub(crate) fn plan_cases(spec: &ModelSpec, overrides: &BTreeMap<String, usize>) -> Vec<CasePlan> {
    let past: Vec<String> = past_names(spec)
        .into_iter()
        .filter(|n| !overrides.contains_key(n))
        .collect();
    let new_tokens: Vec<String> = new_token_names(spec, &past)
        .into_iter()
        .filter(|n| !overrides.contains_key(n))
        .collect();
    let flags = &spec.branch_flags;
    if past.is_empty() && flags.is_empty() {
        return vec![CasePlan {
            label: "default".into(),
            ..CasePlan::default()
        }];
    }
    let mut cases = Vec::new();
    for (k, &past_len) in PAST_LENGTHS.iter().enumerate() {
        let filled = k > 0;
        let mut c = CasePlan::default();
        for f in flags {
            c.flags.insert(f.clone(), filled);
        }
        for p in &past {
            c.dims.insert(p.clone(), past_len);
        }
        if filled {
            for n in &new_tokens {
                c.dims.insert(n.clone(), NEW_TOKENS);
            }
        }
        let mut parts: Vec<String> = c.flags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.extend(c.dims.iter().map(|(k, v)| format!("{k}={v}")));
        c.label = parts.join(" ");
        cases.push(c);
    }
    cases
}
