//! Operators of this crate's own ONNX domain, `ai.onnx_normopt`: each op's schema and its tract
//! kernel in one place, below both the passes (which write the op) and verification (which runs
//! it).

mod crms;

pub(crate) use crms::crms_normalization;
pub use crms::{crms_attributes, CrmsNormalization, CRMS_OP};

/// The domain of our own ops (version [`NORMOPT_DOMAIN_VERSION`]: [`CRMS_OP`]).
pub const NORMOPT_DOMAIN: &str = "ai.onnx_normopt";

/// The version of [`NORMOPT_DOMAIN`] a model using our ops imports.
pub const NORMOPT_DOMAIN_VERSION: i64 = 1;
