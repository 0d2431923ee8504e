//! The pass's interface: what it is asked ([`Options`]: the target and output form, folding,
//! patch checks) and what it gives back ([`Outcome`]). Its own module, below the phases, so
//! that they read the options without importing the pipeline that runs them.

use super::emit::Emit;
use super::math::Basis;
use super::report::Report;
use crate::ir::Model;
use crate::{Error, Result};

/// By default, constants at least this large are edited at write time, row block by row block.
pub const DEFER_BYTES: usize = 1 << 20;

/// Which normalisation the rewrite targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Pre-RMSNorm: same width, RMSNorm instead of LayerNorm.
    #[default]
    Rmsnorm,
    /// Pre-CRMSNorm: streams compressed to width D−1.
    Crmsnorm,
}

impl Target {
    /// Every target, in the order the command line lists them.
    pub const ALL: [Target; 2] = [Target::Rmsnorm, Target::Crmsnorm];

    /// The target's name: `rmsnorm` or `crmsnorm` (`--target`, the report, provenance). The one
    /// mapping between targets and words: [`Target::from_name`] is its inverse.
    pub fn name(self) -> &'static str {
        match self {
            Target::Rmsnorm => "rmsnorm",
            Target::Crmsnorm => "crmsnorm",
        }
    }

    /// The target named `name` ([`Target::name`]); a usage error for another word.
    pub fn from_name(name: &str) -> Result<Target> {
        Target::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "target must be \"rmsnorm\" or \"crmsnorm\", not {name:?}"
                ))
            })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How CRMSNorm is written (`--target crmsnorm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CrmsEmit {
    /// The stream in an orthonormal basis of the zero-mean subspace (passes/README.md,
    /// "Compress"), where CRMSNorm is an RMSNorm over D−1 entries, written as `--target
    /// rmsnorm` writes RMSNorm in standard ops (`RMSNormalization` at opset ≥ 23, else the
    /// decomposed chain that onnxruntime, OpenVINO and tract fuse).
    #[default]
    Standard,
    /// As `Standard`, with onnxruntime's `SimplifiedLayerNormalization` for the RMSNorm over
    /// D−1 entries; the model also imports onnxruntime's `com.microsoft` domain when a Skip
    /// norm was rewritten, as `--emit onnxruntime` does for RMSNorm.
    Onnxruntime,
    /// One op `ai.onnx_normopt:CRMSNormalization` (schema in [`crate::ops`]; tract runs it
    /// as one fused op through [`crate::verify::tract_onnx_with_extensions`], onnxruntime cannot
    /// run it). The model imports `ai.onnx_normopt` version 1. The stream is in the paper's
    /// coordinates x̃ = x[0:D−1], which the op is defined on.
    Custom,
}

impl CrmsEmit {
    /// The basis the compressed stream is written in.
    pub(crate) fn basis(self) -> Basis {
        match self {
            CrmsEmit::Standard | CrmsEmit::Onnxruntime => Basis::Orthonormal,
            CrmsEmit::Custom => Basis::Coordinate,
        }
    }
}

/// What the rewrite writes: the target normalisation and the ops it is written in. One value,
/// so that an invalid combination (CRMSNorm's custom op on an RMSNorm target) cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputForm {
    /// Pre-RMSNorm: same width, RMSNorm written as [`Emit`] says.
    Rms(Emit),
    /// Pre-CRMSNorm: streams compressed to width D−1, CRMSNorm written as [`CrmsEmit`] says.
    Crms(CrmsEmit),
}

impl Default for OutputForm {
    fn default() -> Self {
        OutputForm::Rms(Emit::Standard)
    }
}

impl OutputForm {
    /// The form for the command line's `--target` and `--emit` (`standard`, `onnxruntime`,
    /// `custom`): a usage error for `custom` without `--target crmsnorm`, or another word.
    pub fn from_flags(target: Target, emit: &str) -> Result<OutputForm> {
        match (target, emit) {
            (Target::Rmsnorm, "standard") => Ok(OutputForm::Rms(Emit::Standard)),
            (Target::Rmsnorm, "onnxruntime") => Ok(OutputForm::Rms(Emit::Onnxruntime)),
            (Target::Crmsnorm, "standard") => Ok(OutputForm::Crms(CrmsEmit::Standard)),
            (Target::Crmsnorm, "onnxruntime") => Ok(OutputForm::Crms(CrmsEmit::Onnxruntime)),
            (Target::Crmsnorm, "custom") => Ok(OutputForm::Crms(CrmsEmit::Custom)),
            (Target::Rmsnorm, "custom") => Err(Error::Usage(
                "--emit custom writes CRMSNorm as one custom op, so it needs --target crmsnorm \
                 (for RMSNorm use --emit standard or --emit onnxruntime)"
                    .into(),
            )),
            (_, e) => Err(Error::Usage(format!(
                "emit must be \"standard\", \"onnxruntime\" or \"custom\", not {e:?}"
            ))),
        }
    }

    /// The target normalisation.
    pub fn target(self) -> Target {
        match self {
            OutputForm::Rms(_) => Target::Rmsnorm,
            OutputForm::Crms(_) => Target::Crmsnorm,
        }
    }

    /// The `--emit` word of this form (the report's `emit`).
    pub fn emit_name(self) -> &'static str {
        match self {
            OutputForm::Rms(Emit::Standard) | OutputForm::Crms(CrmsEmit::Standard) => "standard",
            OutputForm::Rms(Emit::Onnxruntime) | OutputForm::Crms(CrmsEmit::Onnxruntime) => {
                "onnxruntime"
            }
            OutputForm::Crms(CrmsEmit::Custom) => "custom",
        }
    }

    /// How RMSNorm (and the Skip norms' domain import) is written.
    pub(crate) fn rms_emit(self) -> Emit {
        match self {
            OutputForm::Rms(e) => e,
            OutputForm::Crms(CrmsEmit::Onnxruntime) => Emit::Onnxruntime,
            OutputForm::Crms(_) => Emit::Standard,
        }
    }

    /// The basis of the compressed streams: `None` for RMSNorm (no compression).
    pub(crate) fn basis(self) -> Option<Basis> {
        match self {
            OutputForm::Rms(_) => None,
            OutputForm::Crms(c) => Some(c.basis()),
        }
    }

    /// How CRMSNorm is written.
    pub(crate) fn crms_emit(self) -> CrmsEmit {
        match self {
            OutputForm::Rms(_) => CrmsEmit::Standard,
            OutputForm::Crms(c) => c,
        }
    }
}

/// The target written in standard ONNX ops.
impl From<Target> for OutputForm {
    fn from(t: Target) -> Self {
        match t {
            Target::Rmsnorm => OutputForm::Rms(Emit::Standard),
            Target::Crmsnorm => OutputForm::Crms(CrmsEmit::Standard),
        }
    }
}

/// Options of the pass.
#[derive(Clone, Debug)]
pub struct Options {
    /// Target normalisation and op form.
    pub form: OutputForm,
    /// Fold γ/β into linear readers.
    pub fold: bool,
    /// Allow explicit centering nodes at all.
    pub allow_centering: bool,
    /// Weight edits of initializers of at least this many bytes run while the model is
    /// written, a block of rows at a time (bounded memory); smaller ones in memory at once.
    pub defer_bytes: usize,
    /// Check the graph after each patch of the rewrite (the patch driver), not only at the
    /// end (CLI `--check-patches`; the test suite always sets it).
    pub check_each_patch: bool,
    /// Apply only the first N patches, over the main graph then its subgraphs (CLI
    /// `--stop-after N`, to bisect a broken rewrite: the result is valid but in general not
    /// equivalent).
    pub stop_after: Option<usize>,
    /// Told the description of each patch before it is applied (CLI `-v`).
    pub patch_log: Option<PatchLog>,
}

/// A callback that is told each patch's one-line description, in order (in a subgraph, the
/// description starts with the body's label).
#[derive(Clone)]
pub struct PatchLog(pub std::sync::Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for PatchLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PatchLog")
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            form: OutputForm::default(),
            fold: true,
            allow_centering: true,
            defer_bytes: DEFER_BYTES,
            check_each_patch: false,
            stop_after: None,
            patch_log: None,
        }
    }
}

/// The result of a pass: the rewritten model and what was done.
#[derive(Debug)]
pub struct Outcome {
    /// The model (unchanged when nothing was rewritten).
    pub model: Model,
    /// The report.
    pub report: Report,
    /// How many patches were applied (main graph and subgraphs).
    pub patches: usize,
}

impl Outcome {
    /// Whether any norm was rewritten.
    pub fn rewritten(&self) -> bool {
        self.report.norms_rewritten > 0
    }
}
