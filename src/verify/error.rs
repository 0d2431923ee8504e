//! Why verification could not be carried out ([`VerifyError`]), and its exit statuses.

use super::*;

/// Why verification could not be carried out (a failed comparison is not an error: it is a
/// report whose [`VerifyReport::passed`] is false).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A model file could not be loaded ([`crate::io::load`]: unreadable, not ONNX, invalid).
    #[error(transparent)]
    Load(#[from] crate::Error),
    /// A model's graph cannot be verified (no graph, an input type that cannot be generated, ...).
    #[error("{}: {message}", path.display())]
    Model {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The two models do not have the same interface (inputs or outputs).
    #[error("{} and {} cannot be compared: {message}", a.display(), b.display())]
    Mismatch {
        /// Model A.
        a: PathBuf,
        /// Model B.
        b: PathBuf,
        /// What differs.
        message: String,
    },
    /// tract failed on a model.
    #[error("tract could not {stage} {}: {message}", path.display())]
    Tract {
        /// `load`, `optimise`, `prepare` or `run`.
        stage: &'static str,
        /// The file.
        path: PathBuf,
        /// tract's message.
        message: String,
    },
    /// onnxruntime failed on a model.
    #[error("onnxruntime could not {stage} {}: {message}", path.display())]
    Ort {
        /// `load` or `run`.
        stage: &'static str,
        /// The file.
        path: PathBuf,
        /// onnxruntime's message.
        message: String,
    },
    /// The onnxruntime library was required but not found.
    #[error(
        "onnxruntime library not found (tried: {}); install it (`pip install onnxruntime`), \
         pass --ort-lib PATH or set ORT_DYLIB_PATH",
        tried.join("; ")
    )]
    OrtNotFound {
        /// Every lookup made.
        tried: Vec<String>,
    },
    /// The onnxruntime library was found but could not be loaded.
    #[error("could not load the onnxruntime library {}: {message}", path.display())]
    OrtLoad {
        /// The library file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// `--ort-device cuda` in a build without the `cuda` feature.
    #[error("built without CUDA support: rebuild with `--features cuda` to use --ort-device cuda")]
    CudaNotBuilt,
    /// `--ort-device cuda` with an onnxruntime library that cannot run CUDA.
    #[error(
        "the onnxruntime library {} cannot use CUDA: {message} (install onnxruntime-gpu)",
        path.display()
    )]
    CudaUnavailable {
        /// The library file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The options are invalid.
    #[error("invalid verify options: {0}")]
    Options(String),
    /// Verification would exceed its memory budget even with the smallest dynamic dims
    /// ([`budget::plan`]); nothing was run.
    #[error("{message}")]
    OverBudget {
        /// Model A (the message does not repeat it: callers name it).
        path: PathBuf,
        /// What it would need, what causes it, and what to do.
        message: String,
    },
    /// The isolated verification process ([`super::verify_isolated`]) crashed, was killed, ran out of memory or
    /// time: `verification could not complete: onnxruntime crashed on the original model
    /// (signal 11)`.
    #[error("verification could not complete: {0}")]
    Incomplete(String),
    /// An error reported by the isolated verification process, as it was displayed there.
    #[error("{message}")]
    Child {
        /// The error's text.
        message: String,
        /// Its exit status.
        code: u8,
    },
    /// No runtime asked for could run the reference model A, so nothing was checked.
    #[error(
        "no runtime could run the original model {}, so the rewrite cannot be verified: {}; \
         {}pass --no-verify to write it unverified",
        path.display(),
        reasons.join("; "),
        hint.as_ref().map(|h| format!("{h}; or ")).unwrap_or_default()
    )]
    NoRuntime {
        /// Model A.
        path: PathBuf,
        /// Each runtime (and case) with why it could not run A.
        reasons: Vec<String>,
        /// The dims the graph did not size, and the `--dim` with which the original runs when
        /// one was found (`kv_cache_dim was not sized by the graph (default 8): the original
        /// runs with --dim kv_cache_dim=32`).
        hint: Option<String>,
    },
}

/// A verification error at the library edge: a model that could not be loaded is that load
/// error; the rest are [`crate::Error::Verify`].
impl From<VerifyError> for crate::Error {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Load(e) => e,
            e => crate::Error::Verify {
                code: e.exit_code(),
                error: Box::new(e),
            },
        }
    }
}

impl VerifyError {
    /// The CLI exit status for this error: 4 when no runtime could run the original model
    /// ([`VerifyError::NoRuntime`]: not a verdict on the rewrite); 5 when verification would
    /// exceed its budget or could not complete ([`VerifyError::OverBudget`],
    /// [`VerifyError::Incomplete`]); 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            VerifyError::NoRuntime { .. } => 4,
            VerifyError::OverBudget { .. } | VerifyError::Incomplete(_) => 5,
            VerifyError::Child { code, .. } => *code,
            _ => 1,
        }
    }

    /// Whether a runtime failed because an allocation failed (tract's allocation panic,
    /// onnxruntime's arena), not because of the model.
    pub fn out_of_memory(&self) -> bool {
        match self {
            VerifyError::Tract { message, .. } | VerifyError::Ort { message, .. } => {
                message.contains("failed to allocate")
                    || message.contains("AllocateRawInternal")
                    || message.contains("bad_alloc")
                    || message.contains("out of memory")
                    || (message.contains("memory allocation of") && message.contains("failed"))
            }
            _ => false,
        }
    }

    /// A one-line, bounded form of the error's runtime message, for tables (`optimise: …`).
    pub fn short(&self) -> String {
        let (stage, message) = match self {
            VerifyError::Tract { stage, message, .. } | VerifyError::Ort { stage, message, .. } => {
                (*stage, message.as_str())
            }
            other => return shorten(&other.to_string()),
        };
        let message = message
            .split(" (and with symbolic input shapes:")
            .next()
            .unwrap_or(message);
        shorten(&format!("could not {stage}: {message}"))
    }
}

/// The first line of `s`, at most 240 characters.
pub(crate) fn shorten(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    if line.chars().count() > 240 {
        let mut t: String = line.chars().take(237).collect();
        t.push('…');
        t
    } else {
        line.to_string()
    }
}

pub(crate) fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = p.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}
