//! The rewrite report: JSON (`--report`) and a short human summary.
//!
//! Reasons are typed ([`Refusal`], [`Why`], [`KeptAffine`], [`StreamStatus`]): their `Display` is
//! the report's text, and the JSON holds that text, so code tells reasons apart by variant and
//! people read the same words in both.

pub(crate) mod build;

use super::norms::NoMatch;
use serde::{Deserialize, Serialize, Serializer};
use std::fmt::{self, Display, Write};

/// Serialise a value by its `Display` text.
fn as_text<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Serialise a list of values as a list of their `Display` texts.
fn as_texts<T: Display, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(ToString::to_string))
}

/// Serialise an optional value as its `Display` text, or null.
fn as_opt_text<T: Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// Why the decide phase refuses a stream (its norms stay LayerNorms). `Display` is the report's
/// text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A norm reads a constant, not a residual stream.
    ConstantInput {
        /// The constant.
        input: String,
        /// The norm.
        norm: String,
    },
    /// The stream reaches values of another stream (the analysis met a leaf from both sides).
    SharesValues {
        /// The other stream.
        stream: usize,
    },
    /// The width D of the seed norm's stream is not known.
    WidthUnknown {
        /// The norm.
        norm: String,
    },
    /// A stream value is a graph output: its mean is observed.
    GraphOutput {
        /// The value.
        value: String,
    },
    /// A stream value is read inside a subgraph.
    ReadInSubgraph {
        /// The value.
        value: String,
        /// The node holding the subgraph.
        node: String,
    },
    /// Post-LN: a norm's output is the residual stream and is also read outside it.
    PostLn {
        /// The norm.
        norm: String,
        /// Who reads it (op and node).
        reader: String,
    },
    /// The analysis cannot tell what the rewrite would do to a stream value (an op without a
    /// rule, a rank or an axis it cannot establish): it refuses rather than guess.
    Unknown {
        /// The value.
        value: String,
        /// What it cannot tell, naming the node.
        why: String,
    },
    /// A stream value is read by a node that sees its mean.
    ObservedBy {
        /// The value.
        value: String,
        /// Who reads it (op and node, and how).
        reader: String,
    },
    /// Norms of different widths read the stream.
    MixedWidths {
        /// The stream's width.
        width: usize,
        /// The other norm's width.
        other: usize,
    },
    /// No LayerNorm reads the stream: it is already on RMSNorm.
    AlreadyRms,
    /// The Mean output of a LayerNorm is read.
    MeanOutputRead {
        /// The norm.
        norm: String,
    },
    /// A LayerNorm normalises over more than the last axis.
    NotLastAxis {
        /// The norm.
        norm: String,
        /// Its axis.
        axis: i64,
    },
    /// A constant that centring would edit is stored in a type that cannot hold the edit
    /// (the detail names the constant, its node and its type).
    Unwritable(String),
    /// Explicit centering nodes would be needed, and centering is disabled.
    CenteringDisabled {
        /// How many.
        explicit: usize,
    },
    /// Writers of the stream are quantized (integer weights: `MatMulInteger`, `MatMulNBits`, a
    /// weight read through `DequantizeLinear`, …): their weights cannot be centred exactly, so
    /// each would need an explicit centering node (and then there is no gain, [`Refusal::NoGain`]).
    Quantized {
        /// How many of the stream's explicit leaves are quantized writers.
        writers: usize,
        /// The first one (its node).
        example: String,
    },
    /// The stream would need at least as many explicit centering nodes as norms it converts.
    NoGain {
        /// Explicit centering nodes needed.
        explicit: usize,
        /// LayerNorms converted.
        converted: usize,
    },
    /// A LayerNorm of this stream feeds a refused stream, so it stays and so does this stream.
    Upstream {
        /// The norm.
        norm: String,
        /// The refused stream.
        stream: usize,
    },
}

impl Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Refusal::*;
        match self {
            ConstantInput { input, norm } => write!(
                f,
                "the input {input:?} of norm {norm:?} is a constant, not a residual stream"
            ),
            SharesValues { stream } => write!(f, "it shares values with stream {stream}"),
            WidthUnknown { norm } => write!(f, "cannot tell the hidden width of norm {norm:?}"),
            GraphOutput { value } => write!(f, "{value:?} is a graph output"),
            ReadInSubgraph { value, node } => {
                write!(f, "{value:?} is read inside a subgraph of {node:?}")
            }
            PostLn { norm, reader } => write!(
                f,
                "Post-LN: the output of norm {norm:?} is both the residual stream and read by \
                 {reader} (the norm sits after the residual Add)"
            ),
            Unknown { value, why } => write!(
                f,
                "cannot tell what the rewrite of {value:?} would change: {why}"
            ),
            ObservedBy { value, reader } => {
                write!(f, "{value:?} is read by {reader}, which observes the mean")
            }
            MixedWidths { width, other } => {
                write!(
                    f,
                    "norms of widths {width} and {other} read the same stream"
                )
            }
            AlreadyRms => f.write_str("already RMSNorm: no LayerNorm reads this stream"),
            MeanOutputRead { norm } => write!(
                f,
                "the Mean output of LayerNorm {norm:?} is read: the stream's mean is observed"
            ),
            NotLastAxis { norm, axis } => write!(
                f,
                "LayerNorm {norm:?} normalises from axis {axis}, not the last axis alone"
            ),
            Unwritable(detail) => f.write_str(detail),
            CenteringDisabled { explicit } => write!(
                f,
                "{explicit} explicit centering node(s) would be needed and centering is disabled"
            ),
            Quantized { writers, example } => {
                let who = match writers {
                    1 => format!("1 writer of the stream ({example:?}) has"),
                    n => format!("{n} writers of the stream ({example:?}, …) have"),
                };
                write!(
                    f,
                    "the model is quantized: {who} integer weights, which cannot be centred \
                     exactly; rewrite the float model, then quantize it"
                )
            }
            NoGain {
                explicit,
                converted,
            } => write!(
                f,
                "{explicit} explicit centering node(s) for {converted} LayerNorm(s): no gain"
            ),
            Upstream { norm, stream } => write!(
                f,
                "its LayerNorm {norm:?} feeds stream {stream}, which is refused"
            ),
        }
    }
}

/// Why a norm was left alone.
#[derive(Clone, Debug, PartialEq)]
pub enum Why {
    /// Its stream was refused, for these reasons (text: joined with "; ").
    Stream(Vec<Refusal>),
    /// A LayerNorm-looking pattern that is not one.
    NotAPattern(NoMatch),
    /// Its stream is rewritten, but the norm's optional outputs are read.
    OptionalOutputsRead,
    /// The graph has no normalisation at all (reported with norm "-").
    NothingFound,
}

impl Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Stream(reasons) => {
                for (i, r) in reasons.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{r}")?;
                }
                Ok(())
            }
            Why::NotAPattern(m) => write!(f, "not a LayerNorm pattern: {m}"),
            Why::OptionalOutputsRead => f.write_str("its optional outputs are read"),
            Why::NothingFound => f.write_str("no normalisation found in the graph"),
        }
    }
}

/// Why γ/β stayed on a rewritten norm instead of folding into its readers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeptAffine {
    /// Folding was turned off (`--no-fold`).
    FoldingDisabled,
    /// The readers cannot take the fold (the detail says which and why).
    NotFoldable(String),
}

impl Display for KeptAffine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeptAffine::FoldingDisabled => f.write_str("folding disabled"),
            KeptAffine::NotFoldable(why) => f.write_str(why),
        }
    }
}

/// What happened to a stream. Serialised as its text: "rewritten", "refused",
/// "precomputed into its embedding table".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum StreamStatus {
    /// Centred, its LayerNorms rewritten.
    #[serde(rename = "rewritten")]
    Rewritten,
    /// Left alone (see its reasons).
    #[serde(rename = "refused")]
    Refused,
    /// Its only norm is an embedding LayerNorm precomputed into the table of the stream it
    /// feeds.
    #[serde(rename = "precomputed into its embedding table")]
    Precomputed,
}

impl Display for StreamStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StreamStatus::Rewritten => "rewritten",
            StreamStatus::Refused => "refused",
            StreamStatus::Precomputed => "precomputed into its embedding table",
        })
    }
}

/// What a leaf (source or writer) of a stream is. `Display` is the report's `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafKind {
    /// An embedding table read by a Gather.
    Embedding,
    /// A MatMul or Gemm writer.
    Linear,
    /// A Conv patch embedding.
    PatchEmbedding,
    /// A constant added into the stream.
    Constant,
    /// A LayerNorm over an embedding table.
    EmbeddingLayerNorm,
    /// A value centred by an explicit `x − mean(x)`.
    ExplicitCentering,
}

impl Display for LeafKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LeafKind::Embedding => "embedding",
            LeafKind::Linear => "linear",
            LeafKind::PatchEmbedding => "patch embedding",
            LeafKind::Constant => "constant",
            LeafKind::EmbeddingLayerNorm => "embedding LayerNorm",
            LeafKind::ExplicitCentering => "explicit centering",
        })
    }
}

/// Which axis of a constant leaf is centred.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstantAxis {
    /// It broadcasts over the hidden axis (size 1 there): centring zeroes it.
    Broadcast,
    /// Its hidden axis, where it sits when the constant reaches the stream through other ops.
    Hidden(usize),
    /// Its last axis.
    Last,
}

/// How a leaf is centred (or that it is not, on a refused stream). `Display` is the report's
/// `how`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Centring {
    /// A constant added into the stream, centred over `over`; it reaches the stream through the
    /// ops `through` (outermost first), which pass a zero mean through.
    Constant {
        /// The axis centred.
        over: ConstantAxis,
        /// The ops between it and the stream.
        through: Vec<String>,
    },
    /// A MatMul (`gemm_trans_b` = None) or Gemm weight centred over its output axis. With
    /// `layer_scale` (the writer had a tail of biases and scales), the scales folded into it
    /// and the biases, which are centred too; the scaling nodes named there are removed.
    Linear {
        /// A Gemm's transB.
        gemm_trans_b: Option<bool>,
        /// The LayerScale nodes removed (op and name), when the writer had a tail.
        layer_scale: Option<Vec<String>>,
    },
    /// An embedding table's rows centred.
    Table,
    /// A Conv's weight and bias centred over output channels.
    Conv,
    /// An embedding LayerNorm (named) precomputed into its table, the rows centred.
    LnTable {
        /// The LayerNorm.
        norm: String,
    },
    /// An explicit `x − ReduceMean(x)`, and why.
    Explicit {
        /// Why the value is centred explicitly.
        why: String,
    },
    /// A leaf of a refused stream: nothing done; `why` an explicit centering would be needed.
    NotApplied {
        /// Why, for an explicit centering.
        why: Option<String>,
    },
}

impl Display for Centring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Centring::Constant { over, through } => {
                match over {
                    ConstantAxis::Broadcast => f.write_str("broadcast constant zeroed")?,
                    ConstantAxis::Hidden(axis) => write!(f, "centred over its hidden axis {axis}")?,
                    ConstantAxis::Last => f.write_str("centred over the last axis")?,
                }
                if !through.is_empty() {
                    write!(
                        f,
                        "; it reaches the stream through {} (linear and the same on every \
                         channel: they pass a zero mean through)",
                        through.join(", ")
                    )?;
                }
                Ok(())
            }
            Centring::Linear {
                gemm_trans_b,
                layer_scale,
            } => {
                match gemm_trans_b {
                    Some(t) => write!(
                        f,
                        "Gemm weight centred over its output axis (transB={})",
                        u8::from(*t)
                    )?,
                    None => f.write_str("MatMul weight centred over its output axis")?,
                }
                if let Some(removed) = layer_scale {
                    write!(
                        f,
                        ", after the scales that followed it; LayerScale folded ({} removed), \
                         biases scaled and centred",
                        removed.join(", ")
                    )?;
                }
                Ok(())
            }
            Centring::Table => f.write_str("table rows centred"),
            Centring::Conv => f.write_str("Conv weight and bias centred over output channels"),
            Centring::LnTable { norm } => {
                write!(
                    f,
                    "LayerNorm {norm:?} precomputed into the table, rows centred"
                )
            }
            Centring::Explicit { why } => write!(f, "x - ReduceMean(x): {why}"),
            Centring::NotApplied { why: None } => f.write_str("not applied"),
            Centring::NotApplied { why: Some(why) } => write!(f, "not applied: {why}"),
        }
    }
}

/// How one leaf (source or writer) of a stream was centred.
#[derive(Clone, Debug, Serialize)]
pub struct LeafReport {
    /// The stream value it produces.
    pub value: String,
    /// What it is.
    #[serde(serialize_with = "as_text")]
    pub kind: LeafKind,
    /// The node.
    pub node: String,
    /// What was done.
    #[serde(serialize_with = "as_text")]
    pub how: Centring,
}

/// One norm that was rewritten.
#[derive(Clone, Debug, Serialize)]
pub struct NormReport {
    /// Node name.
    pub name: String,
    /// Form in the input.
    pub form_in: String,
    /// Form in the output.
    pub form_out: String,
    /// ε, copied.
    pub epsilon: f32,
    /// Nodes γ and β were folded into.
    pub folded_into: Vec<String>,
    /// Why γ/β stayed on the norm, when they did.
    #[serde(serialize_with = "as_opt_text")]
    pub kept_affine: Option<KeptAffine>,
    /// Index of the norm among the pass's matches (pairs the report with what was applied).
    #[serde(skip)]
    pub(crate) norm: usize,
}

/// A norm left alone, and why.
#[derive(Clone, Debug, Serialize)]
pub struct LeftAlone {
    /// Node name.
    pub norm: String,
    /// Its form.
    pub form: String,
    /// Why.
    #[serde(serialize_with = "as_text")]
    pub why: Why,
    /// The subgraph holding the norm (e.g. `If "/If" then_branch`), when not the main graph.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subgraph: Option<String>,
}

/// One residual stream.
#[derive(Clone, Debug, Serialize)]
pub struct StreamReport {
    /// Stream number.
    pub id: usize,
    /// Width D.
    pub width: Option<usize>,
    /// Width after the rewrite (D−1 for CRMSNorm).
    pub new_width: Option<usize>,
    /// Rewritten, refused or precomputed.
    pub status: StreamStatus,
    /// Why it was refused.
    #[serde(serialize_with = "as_texts")]
    pub reasons: Vec<Refusal>,
    /// Sources and writers, and how each was centred.
    pub leaves: Vec<LeafReport>,
    /// Norms rewritten.
    pub norms: Vec<NormReport>,
    /// Names of the norms reading the stream.
    pub norm_names: Vec<String>,
    /// The subgraph holding the stream (e.g. `If "/If" then_branch`), when not the main graph.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subgraph: Option<String>,
}

/// The whole report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Input file.
    pub model: String,
    /// rmsnorm or crmsnorm.
    pub target: String,
    /// standard or onnxruntime.
    pub emit: String,
    /// Norms found, by form.
    pub norms_found: Vec<(String, usize)>,
    /// Streams.
    pub streams: Vec<StreamReport>,
    /// Norms left alone.
    pub refusals: Vec<LeftAlone>,
    /// Norms rewritten.
    pub norms_rewritten: usize,
    /// Explicit centering nodes added.
    pub centering_nodes: usize,
    /// Bytes of new initializers (untied copies, new biases).
    pub bytes_added: usize,
    /// Op counts before and after.
    pub ops_before: std::collections::BTreeMap<String, usize>,
    /// Op counts after the rewrite.
    pub ops_after: std::collections::BTreeMap<String, usize>,
    /// Verification table, when run ([`Report::add_verification`]).
    pub verification: Option<Verification>,
    /// `inspect` of a model this tool rewrote: what its metadata records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewritten_by: Option<Provenance>,
    /// Remarks on the input (e.g. nodes sorted into topological order on load).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The verification of a rewritten model, as its report carries it: the verifier's table as
/// the verifier serialises it (the report embeds it and does not read it), with what the
/// verification covered ([`Coverage`], under the table's `coverage` key). It serialises as
/// that JSON; `Display` is that JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct Verification {
    json: serde_json::Value,
    coverage: Coverage,
}

impl Verification {
    /// The table as JSON (with `coverage`).
    pub fn json(&self) -> &serde_json::Value {
        &self.json
    }

    /// What the verification covered.
    pub fn coverage(&self) -> &Coverage {
        &self.coverage
    }
}

impl Serialize for Verification {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(s)
    }
}

impl Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.json)
    }
}

/// What a verification covered: the two whole models, or the two cut into pieces at the same
/// values, and what it did not check.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// Whole, or in pieces.
    pub how: VerifiedAs,
    /// What was not checked, one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_covered: Vec<String>,
}

/// How the two models were run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VerifiedAs {
    /// Each whole model in each runtime.
    #[default]
    Whole,
    /// Piece by piece, one piece held at a time.
    Pieces {
        /// Number of pieces.
        count: usize,
        /// The piece (1-based) estimated to need the most memory.
        largest: usize,
        /// Its estimated memory, bytes.
        largest_bytes: u64,
        /// Its weights, bytes.
        largest_weight_bytes: u64,
    },
}

/// This tool's version, as a rewritten model records it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a rewritten model records about its rewrite ([`Report::provenance`] makes it; the
/// `provenance` module writes it into a model's metadata and reads it back).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Provenance {
    /// Tool version.
    pub version: String,
    /// rmsnorm or crmsnorm.
    pub target: String,
    /// standard, onnxruntime or custom.
    pub emit: String,
    /// Whether γ/β were folded into readers ("true"/"false").
    pub fold: String,
    /// Norms rewritten.
    pub norms_rewritten: String,
    /// Norms left alone.
    pub norms_refused: String,
    /// The input's file name.
    pub input_file: String,
    /// SHA-256 of the input model file, hex.
    pub input_sha256: String,
}

impl Provenance {
    /// One line: "onnx-normopt 0.1.0 (target rmsnorm, emit standard, 5 norm(s) rewritten, ...)".
    pub fn describe(&self) -> String {
        format!(
            "onnx-normopt {} (target {}, emit {}, fold {}, {} norm(s) rewritten, {} left alone; input {} sha256 {})",
            self.version,
            self.target,
            self.emit,
            self.fold,
            self.norms_rewritten,
            self.norms_refused,
            if self.input_file.is_empty() { "?" } else { &self.input_file },
            if self.input_sha256.is_empty() { "?" } else { &self.input_sha256 },
        )
    }
}

/// " in If \"/If\" then_branch" for a subgraph, "" for the main graph.
fn in_subgraph(s: &Option<String>) -> String {
    s.as_ref().map(|s| format!(" in {s}")).unwrap_or_default()
}

impl Report {
    /// Record the verification of the rewritten model: the verifier's table `table` and what
    /// it covered (`coverage`, added to the table's JSON as `coverage`).
    pub fn add_verification(&mut self, table: &impl Serialize, coverage: Coverage) {
        let mut json = serde_json::to_value(table).unwrap_or_default();
        if let Some(o) = json.as_object_mut() {
            o.insert(
                "coverage".into(),
                serde_json::to_value(&coverage).unwrap_or_default(),
            );
        }
        self.verification = Some(Verification { json, coverage });
    }

    /// The provenance of a rewrite described by this report, of the input `input` with digest
    /// `sha256`.
    pub fn provenance(&self, fold: bool, input: &std::path::Path, sha256: &str) -> Provenance {
        Provenance {
            version: VERSION.into(),
            target: self.target.clone(),
            emit: self.emit.clone(),
            fold: fold.to_string(),
            norms_rewritten: self.norms_rewritten.to_string(),
            norms_refused: self.refusals.len().to_string(),
            input_file: input
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            input_sha256: sha256.into(),
        }
    }

    /// A few lines for stderr.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        for st in &self.streams {
            let w = st.width.map(|w| w.to_string()).unwrap_or("?".into());
            let nw = match (st.width, st.new_width) {
                (Some(a), Some(b)) if a != b => format!(" -> {b}"),
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "stream {}{} (width {w}{nw}): {}, {} norms, {} sources/writers",
                st.id,
                in_subgraph(&st.subgraph),
                st.status,
                st.norm_names.len(),
                st.leaves.len()
            );
            for r in &st.reasons {
                let _ = writeln!(s, "  refused: {r}");
            }
            for n in &st.norms {
                if let Some(why) = n
                    .kept_affine
                    .as_ref()
                    .filter(|w| **w != KeptAffine::FoldingDisabled)
                {
                    let _ = writeln!(s, "  γ/β not folded on {:?}: {why}", n.name);
                }
            }
        }
        let _ = writeln!(
            s,
            "{} norm(s) rewritten, {} left alone, {} explicit centering node(s), {} bytes added",
            self.norms_rewritten,
            self.refusals.len(),
            self.centering_nodes,
            self.bytes_added
        );
        for r in &self.refusals {
            let _ = writeln!(
                s,
                "  left alone: {}{} ({}): {}",
                r.norm,
                in_subgraph(&r.subgraph),
                r.form,
                r.why
            );
        }
        s
    }

    /// The human form of `inspect`: streams, their norms, leaves and what would be done.
    pub fn inspect_text(&self) -> String {
        let r = self;
        use std::fmt::Write;
        let mut s = String::new();
        if let Some(p) = &r.rewritten_by {
            let _ = writeln!(s, "{}: rewritten by {}", r.model, p.describe());
        }
        let found: Vec<String> = r
            .norms_found
            .iter()
            .map(|(f, n)| format!("{n} x {f}"))
            .collect();
        let _ = writeln!(
            s,
            "{}: {}",
            r.model,
            if found.is_empty() {
                "no normalisation found".into()
            } else {
                found.join(", ")
            }
        );
        for st in &r.streams {
            let _ = writeln!(
                s,
                "stream {}{} width {}: {}",
                st.id,
                in_subgraph(&st.subgraph),
                st.width.map(|w| w.to_string()).unwrap_or("?".into()),
                st.status
            );
            for why in &st.reasons {
                let _ = writeln!(s, "  refused: {why}");
            }
            let _ = writeln!(s, "  norms: {}", st.norm_names.join(", "));
            for l in &st.leaves {
                let _ = writeln!(s, "  {} {} ({}): {}", l.kind, l.value, l.node, l.how);
            }
            for n in &st.norms {
                let fold = if n.folded_into.is_empty() {
                    format!(
                        "affine kept{}",
                        n.kept_affine
                            .as_ref()
                            .map(|k| format!(" ({k})"))
                            .unwrap_or_default()
                    )
                } else {
                    format!("γ/β folded into {}", n.folded_into.join(", "))
                };
                let _ = writeln!(
                    s,
                    "  rewrite {} [{} -> {}, eps {:e}]: {fold}",
                    n.name, n.form_in, n.form_out, n.epsilon
                );
            }
        }
        for rf in &r.refusals {
            let _ = writeln!(
                s,
                "left alone: {}{} ({}): {}",
                rf.norm,
                in_subgraph(&rf.subgraph),
                rf.form,
                rf.why
            );
        }
        let _ = writeln!(
            s,
            "would rewrite {} norm(s), add {} centering node(s) and {} bytes",
            r.norms_rewritten, r.centering_nodes, r.bytes_added
        );
        s
    }
}
