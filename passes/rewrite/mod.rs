//! Planning and applying the Pre-LN → Pre-RMSNorm rewrite (design §3).
//!
//! Steps, each in its own module (imports go one way: `center`, `compress` → `fold` → `plan`;
//! `lower` → `patch`, `plan`; `driver`, `tally` → `patch`):
//! - [`plan()`] reads the analysis and decides, per accepted stream, every weight edit, every
//!   explicit centering node and every norm replacement (`center.rs`, folds in `fold.rs`); with
//!   `compress`, the CRMSNorm phase (`compress.rs`) then compresses what was planned for the
//!   stream. The plan is data (`plan.rs`). Nothing is mutated.
//! - [`lower`] (`lower.rs`) turns the plan into an ordered list of named [`Patch`]es
//!   (`patch.rs`), making every remaining choice: each norm's concrete output form, its scale,
//!   the Casts that go, the imports.
//! - [`drive`] (`driver.rs`) applies them in order: the one place that mutates the graph. It can
//!   check the graph after each patch and stop after the first N (to bisect a broken rewrite).
//! - [`tally`] (`tally.rs`) tells what applying them adds without applying them (`inspect`).
//!
//! Weight edits on one constant slot are collected and applied together, as one patch, in a
//! fixed order — replace, scale (γ), shift (β·W), centre, compress — from the original f64
//! values, rounded once.

mod center;
mod compress;
mod driver;
mod effect;
mod fold;
mod lower;
mod patch;
mod plan;
mod tally;
mod widths;

pub use driver::{drive, Applied, DriveOptions};
pub use lower::lower;
pub use patch::{Patch, PatchKind};

use super::edit::Edit;
use super::math::Basis;
use super::stream::{Analysis, Stream};
use crate::ir::Model;
use crate::{Error, Result};
use plan::read_value;
pub use plan::{Plan, StreamPart};
pub use tally::{check as check_tally, tally, Tally};

/// Plan the rewrite of the accepted streams. Returns the plan and per-stream report parts.
///
/// Two phases per stream, in stream order: the RMSNorm plan (`center.rs`: centre the leaves,
/// fold or keep each norm's affine), then, with a `compress` basis, the CRMSNorm compression of
/// what it planned into that basis (`compress.rs`).
pub fn plan(
    a: &Analysis,
    model: &Model,
    streams: &[(usize, &Stream)],
    fold: bool,
    compress: Option<Basis>,
) -> Result<(Plan, Vec<StreamPart>)> {
    let mut p = Plan::default();
    let mut reports = Vec::new();
    let read = |name: &str| read_value(a, model, name);
    let scales = fold::tail_scales(a, streams, &read)?;
    for &(sid, st) in streams {
        let d = st
            .width
            .ok_or_else(|| Error::Internal("accepted stream without width".into()))?;
        let s = center::plan_stream(a, model, &mut p, st, d, fold, &scales, &read)?;
        if let Some(basis) = compress {
            compress::compress_stream(a, &mut p, st, d, &s, basis)?;
        }
        reports.push(StreamPart {
            stream: sid,
            leaves: s.leaves,
            norm_plans: s.norm_plans,
        });
    }
    if compress.is_some() {
        widths::check(a, &mut p, streams)?;
    }
    // A centring added later (fold into a reader that is also a writer) must come after the fold.
    for e in p.edits.values_mut() {
        e.sort_by_key(Edit::rank);
    }
    Ok((p, reports))
}

#[cfg(test)]
mod tests;
