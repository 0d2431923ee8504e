//! Planning and applying the Pre-LN → Pre-RMSNorm rewrite (design §3).
//!
//! Three steps, each in its own module:
//! - [`plan()`] (`plan.rs`, `fold.rs`) reads the analysis and decides, per accepted stream, every
//!   weight edit, every explicit centering node and every norm replacement; with `compress`,
//!   the CRMSNorm phase (`compress.rs`) then compresses what was planned for the stream.
//!   Nothing is mutated.
//! - [`lower`] (`patch.rs`) turns the plan into an ordered list of named [`Patch`]es.
//! - [`drive`] (`driver.rs`) applies them in order: the one place that mutates the graph. It can
//!   check the graph after each patch and stop after the first N (to bisect a broken rewrite).
//!
//! Weight edits on one constant slot are collected and applied together, as one patch, in a
//! fixed order — replace, scale (γ), shift (β·W), centre, compress — from the original f64
//! values, rounded once.

mod compress;
mod driver;
mod effect;
mod fold;
mod patch;
mod plan;
mod widths;

pub use driver::{drive, DriveOptions};
pub use patch::{lower, Patch};
pub use plan::plan;

/// By default, constants at least this large are edited at write time, row block by row block.
pub const DEFER_BYTES: usize = 1 << 20;

#[cfg(test)]
mod tests;
