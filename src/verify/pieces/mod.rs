//! Verification piece by piece, for models whose two whole copies do not fit the memory budget.
//!
//! Both graphs are cut at the same values (`cut.rs`): the original's nodes in topological order
//! are split where the values crossing the cut are smallest (in a Pre-LN transformer, the
//! residual stream between blocks), each piece as large as the budget allows; the rewrite's
//! nodes go into the piece that computes the same values in the original. Each piece becomes a
//! model of its own (`build.rs`) whose initializers point into the original file's external data
//! (location, offset, length: nothing is copied), so a runtime reads only that piece's weights.
//! In each runtime and verification case the pieces run in order (`run.rs`); never more than one
//! piece's weights and activations (and the values crossing its cuts) are held at once:
//!
//! - piece k of the original runs on the original's own values from pieces < k: a chain of
//!   pieces is the whole model, exactly (the same nodes on the same values);
//! - piece k of the rewrite runs twice. **On the original's activations**: each value crossing
//!   into it is the original's value mapped by the relation found for it where it was computed
//!   (`relation.rs`: identity, minus its mean over one axis — the RMSNorm target's stream — or
//!   that described by D−1 numbers — the CRMSNorm target's: its first D−1 entries, or its
//!   coordinates in an orthonormal basis), and every value it gives is
//!   compared with the original's under the relation that holds (a value with none — a shape
//!   the compressed width changed, a value cut mid-block — is the rewrite's own and crosses as
//!   such: the two pieces are in effect merged for it). **On its own values**: the rewrite's
//!   chain of pieces is the whole rewrite, exactly;
//! - the graph outputs of both chains are compared by identity, row by row, as a whole-model
//!   verification compares them — the verdict. The per-piece comparisons on the original's
//!   activations say where the two first part (a failing graph output there is a failure
//!   too).
//!
//! By induction over the pieces the two chains compute the two whole models on the same random
//! inputs; no claim of the pass is used (the relations are read off the numbers). What is not
//! covered is said: a runtime that cannot run a piece of the original is listed as not run.

mod build;
pub(crate) mod cut;
pub(crate) mod relation;
mod run;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use serde::Serialize;

pub use relation::Relation;
pub(crate) use run::verify_pieces;

use super::report::Runtime;
use super::spec::ModelSpec;
use crate::proto::ModelProto;
use cut::{Costs, Dag, Piece};

/// How the pieces of one plan were chosen and what the largest needs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PiecesSummary {
    /// Number of pieces.
    pub count: usize,
    /// The piece (1-based) estimated to need the most memory.
    pub largest: usize,
    /// Its estimated memory: weights × the runtimes' factor, activations, boundary values.
    pub largest_bytes: u64,
    /// Its weights (the larger of the original's and the rewrite's part).
    pub largest_weight_bytes: u64,
    /// The memory a piece could have (the budget less what every piece shares).
    pub piece_limit: u64,
}

/// What was found at one piece in one runtime: how each value the rewrite's piece gives relates
/// to the original's.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PieceCheck {
    /// The runtime.
    pub runtime: Runtime,
    /// The verification case, when there are several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
    /// The piece (1-based).
    pub piece: usize,
    /// Each value checked.
    pub values: Vec<ValueCheck>,
}

/// One value both models' pieces gave.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ValueCheck {
    /// The value's name.
    pub name: String,
    /// The relation that holds (`None`: none does; the rewrite's own value crosses the cut).
    pub relation: Option<Relation>,
    /// The largest max|Δ|/max|ref| under it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rel: Option<f64>,
    /// Whether it is a graph output (compared by identity).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub graph_output: bool,
}

/// The pieces verification ran in, for the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PiecesReport {
    /// The plan.
    #[serde(flatten)]
    pub summary: PiecesSummary,
    /// Each piece's values checked, per runtime and case.
    pub checks: Vec<PieceCheck>,
}

/// Both models cut into pieces, with what the plan estimated.
pub(crate) struct Plan<'g> {
    pub a: Dag<'g>,
    pub b: Dag<'g>,
    pub pieces: Vec<Piece>,
    pub summary: PiecesSummary,
}

/// Resident bytes per byte of a piece's weights while a runtime holds it (tract reads the
/// weights into memory and packs its matrix products; onnxruntime's session holds them once).
/// Measured: see `budget.rs`.
pub(crate) const PIECE_WEIGHT_FACTOR: f64 = 1.5;

/// Copies of each boundary value held (per sample): the original's, and the rewrite's on the
/// original's activations and on its own.
const BOUNDARY_COPIES: u64 = 3;

/// Cut `a` and `b` (with the specs the verifier reads) into pieces of at most `limit` bytes
/// each, for inputs of `shapes` (one set per verification case) and `samples` samples.
/// `Err` says why the graphs cannot be cut (then only whole verification is possible).
pub(crate) fn plan<'g>(
    a: (&'g ModelProto, &ModelSpec),
    b: (&'g ModelProto, &ModelSpec),
    shapes: &[Vec<Vec<usize>>],
    samples: usize,
    limit: u64,
) -> Result<Plan<'g>, String> {
    let ga = a.0.graph.as_ref().ok_or("no graph")?;
    let gb = b.0.graph.as_ref().ok_or("no graph")?;
    let (da, db) = (Dag::new(ga)?, Dag::new(gb)?);
    let sizes = |m: (&ModelProto, &ModelSpec), which: &str| {
        let mut all: HashMap<String, u64> = HashMap::new();
        for s in shapes {
            for (k, v) in super::budget::value_sizes(m.0, m.1, which, s).bytes {
                let e = all.entry(k).or_default();
                *e = (*e).max(v);
            }
        }
        all
    };
    let (sa, sb) = (sizes(a, "A"), sizes(b, "B"));
    let costs = Costs {
        weight_factor: PIECE_WEIGHT_FACTOR,
        boundary_copies: BOUNDARY_COPIES * samples.max(1) as u64,
    };
    let boundary = |p: &cut::Part, s: &HashMap<String, u64>| -> u64 {
        p.inputs
            .iter()
            .chain(&p.outputs)
            .map(|v| s.get(v).copied().unwrap_or(0))
            .sum()
    };
    // The rewrite's parts follow the original's cuts and may come out a little larger: retry
    // with a smaller limit until every part fits (or the pieces stop getting smaller).
    let mut target = limit;
    let mut best: Option<(Vec<Piece>, PiecesSummary)> = None;
    for _ in 0..6 {
        let ranges = cut::select(&da, &sa, &costs, target);
        let pieces = cut::pieces(&da, &db, &ranges, &sa, &sb);
        let mut summary = PiecesSummary {
            count: pieces.len(),
            largest: 0,
            largest_bytes: 0,
            largest_weight_bytes: 0,
            piece_limit: limit,
        };
        for (k, p) in pieces.iter().enumerate() {
            let need = costs
                .of(&p.a, boundary(&p.a, &sa))
                .max(costs.of(&p.b, boundary(&p.b, &sb)));
            if need > summary.largest_bytes {
                summary.largest = k + 1;
                summary.largest_bytes = need;
                summary.largest_weight_bytes = p.a.weight_bytes.max(p.b.weight_bytes);
            }
        }
        let fits = summary.largest_bytes <= limit;
        let better = best
            .as_ref()
            .is_none_or(|(_, s)| summary.largest_bytes < s.largest_bytes);
        if better {
            best = Some((pieces, summary));
        }
        if fits || ranges.len() == da.order.len() {
            break;
        }
        target = target / 4 * 3;
    }
    let (pieces, summary) = best.ok_or("no plan")?;
    Ok(Plan {
        a: da,
        b: db,
        pieces,
        summary,
    })
}
