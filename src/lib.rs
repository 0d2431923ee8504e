//! # onnx-normopt
//!
//! Rewrites Pre-LN transformer ONNX graphs into exactly equivalent Pre-RMSNorm graphs
//! (Jiang et al., NeurIPS 2023): keep every residual stream zero-mean by centring the weights
//! that write into it, and every LayerNorm on it equals an RMSNorm with the same γ, β, ε.
//!
//! ## What a pipeline user gets
//!
//! - **Load**: [`ir::Model::load`] (one reader, [`io::load`], used by verification too).
//! - **Rewrite**: [`passes::run`] (or [`passes::inspect`] to see what it would do), with
//!   [`passes::Options`] (its [`passes::OutputForm`] says the target and the ops written) and a
//!   [`passes::report::Report`] whose reasons are typed (`Refusal`, `Why`, `StreamStatus`).
//!   The phases behind them (matching, stream analysis, decision, planning, applying) are
//!   internal.
//! - **Save**: [`save`] (atomic; external data kept external).
//! - **Verify**: [`verify::verify_files`] (tract and onnxruntime on random inputs), or
//!   [`verify::verify_isolated`] in a child process with a memory budget.
//! - **The command line's workflow** as a library: [`flow`] (one file: load, rewrite, verify,
//!   write) and [`folder`] (a folder of models).
//! - **Running rewritten models in tract**: [`tract_onnx_with_extensions`], which knows this
//!   crate's own op ([`ops`]).
//! - **One error type**: [`Error`], with `From<`[`verify::VerifyError`]`>`.
//!
//! [`ir`], [`proto`], [`tensor`] and [`io`] are the graph, its protobuf messages and their I/O;
//! [`dot`] and [`provenance`] serve `inspect --dot` and the metadata of rewritten models.
//!
//! ```
//! use onnx_normopt::{ir::Model, passes, verify};
//! // Load (memory-mapped; external data resolved inside the model's folder only).
//! let model = Model::load("testdata/models/gpt2_dynamo18_fp32.onnx".as_ref())?;
//! // Run the pass: Pre-LN → Pre-RMSNorm (or `Target::Crmsnorm`), standard ONNX ops.
//! let opts = passes::Options { form: passes::Target::Rmsnorm.into(), ..Default::default() };
//! let outcome = passes::run(model, &opts)?;
//! assert_eq!(outcome.report.norms_rewritten, 5);
//! println!("{}", outcome.report.summary());
//! // Save atomically, then verify against the original in tract.
//! let dir = std::env::temp_dir().join(format!("normopt-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).map_err(|e| onnx_normopt::Error::Write { path: dir.clone(), reason: e.to_string() })?;
//! let out = dir.join("gpt2_rms.onnx");
//! onnx_normopt::save(&outcome.model, &out)?;
//! let check = verify::VerifyOptions { runtimes: verify::Runtimes::Tract, ..Default::default() };
//! let table = verify::verify_files("testdata/models/gpt2_dynamo18_fp32.onnx".as_ref(), &out, &check)?;
//! assert!(table.passed(), "{table}");
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), onnx_normopt::Error>(())
//! ```

#![warn(missing_docs)]

pub mod dot;
pub mod error;
pub mod flow;
pub mod folder;
pub mod io;
pub mod ir;
pub mod ops;
pub mod proto;
pub mod provenance;
pub mod tensor;
pub mod verify;

#[path = "../passes/mod.rs"]
pub mod passes;
pub mod progress;
#[cfg(test)]
mod testing;

pub use error::{Error, Result};

/// The tract ONNX loader that runs every model this crate writes, including
/// `ai.onnx_normopt:CRMSNormalization` (`--emit custom`) as one fused op: load rewritten models
/// with it in a tract pipeline (`tract_onnx_with_extensions().model_for_path(..)`).
pub use verify::tract_onnx_with_extensions;

/// Save a model to `out` atomically (external data kept external when the input had it).
pub fn save(model: &ir::Model, out: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let proto = model.to_proto_pending();
    let layout = io::choose_layout(&proto, model, model.had_external_data);
    io::stage(&proto, &model.store, model, out, layout, &mut |_, _| {})?.commit()
}
