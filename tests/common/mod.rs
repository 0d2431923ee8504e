//! What the integration tests share (`mod common;` in each): one fixture style.
//!
//! - A graph written by hand is text: [`text`] (the `ir::text` form, as in the unit tests).
//! - Graphs the text form cannot hold or that a test generates: the one set of builders,
//!   [`build`]; the hostile and tiny models of the robustness tests and fuzzers, [`hostile`].
//! - Every rewrite a test runs checks the graph after each patch: through the library,
//!   [`pass::run`] / [`pass::checked`]; through the binary, [`cli::run`] / [`cli::command`].
//! - Verification options and onnxruntime's presence: [`pass::verify_opts`], [`pass::have_ort`].
//! - Random numbers: [`rng::Rng`].
#![allow(dead_code, unused_imports)]

pub mod build;
pub mod cli;
pub mod hostile;
pub mod pass;
pub mod rng;
pub mod text;
