//! The typed error at the library edge. Every variant names the file (and the node or tensor when
//! it matters); the CLI prints it on one line and maps it to an exit status.
//!
//! This module is at the bottom of the crate (`io`, `ir` and `passes` return it), so it names
//! nothing above it: verification's error enters as [`Error::Verify`], built by
//! `From<`[`crate::verify::VerifyError`]`>` in `verify`.

use std::path::PathBuf;

/// What can go wrong when loading, rewriting, verifying or saving a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read (missing, a directory, permissions).
    #[error("{path}: cannot read: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        reason: String,
    },
    /// The bytes are not an ONNX model (empty, not protobuf, truncated, no graph).
    #[error("{path}: not a valid ONNX model: {reason}")]
    NotOnnx {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The model decodes but breaks a rule of the format we rely on (undefined value, cycle,
    /// tensor data that does not match its dims, an external-data location outside the folder...).
    #[error("{path}: invalid model: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why, naming the node or tensor.
        reason: String,
    },
    /// The command line or options are wrong (output equal to input, missing output folder...).
    #[error("{0}")]
    Usage(String),
    /// Writing the output failed; nothing was left behind.
    #[error("{path}: cannot write: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        reason: String,
    },
    /// The model is valid but the requested rewrite cannot be done exactly (exit 3).
    #[error("{0}")]
    NotRewritable(String),
    /// A broken internal invariant (a bug in this tool, not in the user's file).
    #[error("internal error: {0}")]
    Internal(String),
    /// Verification could not be carried out (a failed comparison is a report, not an error).
    /// `error` is a [`crate::verify::VerifyError`] (downcast it to look inside); `code` is the
    /// exit status it means.
    #[error("{error}")]
    Verify {
        /// The verifier's error.
        error: Box<dyn std::error::Error + Send + Sync>,
        /// Its exit status (1, 4 or 5).
        code: u8,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The CLI exit status for this error: 2 for bad input or usage, 3 when nothing can be
    /// rewritten, the verifier's status for [`Error::Verify`], 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Read { .. }
            | Error::NotOnnx { .. }
            | Error::Invalid { .. }
            | Error::Usage(_) => 2,
            Error::Write { .. } => 2,
            Error::NotRewritable(_) => 3,
            Error::Internal(_) => 1,
            Error::Verify { code, .. } => i32::from(*code),
        }
    }

    pub(crate) fn invalid(path: &std::path::Path, reason: impl Into<String>) -> Self {
        Error::Invalid {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}
