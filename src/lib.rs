//! # onnx-normopt
//!
//! Rewrites Pre-LN transformer ONNX graphs into exactly equivalent Pre-RMSNorm graphs
//! (Jiang et al., NeurIPS 2023): keep every residual stream zero-mean by centring the weights
//! that write into it, and every LayerNorm on it equals an RMSNorm with the same γ, β, ε.
//!
//! ```no_run
//! use onnx_normopt::{ir::Model, passes};
//! let model = Model::load("model.onnx".as_ref())?;
//! let outcome = passes::run(model, &passes::Options::default())?;
//! println!("{}", outcome.report.summary());
//! onnx_normopt::save(&outcome.model, "out.onnx".as_ref())?;
//! # Ok::<(), onnx_normopt::Error>(())
//! ```

pub mod bench;
pub mod error;
pub mod io;
pub mod ir;
pub mod proto;
pub mod tensor;
pub mod verify;

#[path = "../passes/mod.rs"]
pub mod passes;

pub use error::{Error, Result};

/// Save a model to `out` atomically (external data kept external when the input had it).
pub fn save(model: &ir::Model, out: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let proto = model.to_proto();
    let layout = io::choose_layout(&proto, model.had_external_data);
    io::save(&proto, &model.store, out, layout)
}
