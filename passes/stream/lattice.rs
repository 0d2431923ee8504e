//! The abstract values of the stream analysis (passes/README.md, "Analyse").
//!
//! The rewrite replaces each value v of a stream by C(v) = v − m(v)·1, its centred copy along
//! its hidden axis. For every value the analysis knows one [`Fact`]: whether the rewritten graph
//! computes the same value there, the centred copy, something else, or that it cannot tell.
//! Where a stream value's hidden axis sits is a [`Hidden`]: counted from the end, so that
//! broadcasting (which aligns shapes from the right) keeps it, with the rank when known.

use std::fmt;

/// Where the hidden axis of a value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hidden {
    /// The axis counted from the end: 0 is the last axis.
    pub from_end: usize,
    /// The value's rank, when known.
    pub rank: Option<usize>,
}

impl Hidden {
    /// The last axis of a value of rank `rank`.
    pub fn last(rank: Option<usize>) -> Hidden {
        Hidden { from_end: 0, rank }
    }

    /// The axis `axis` (counted from the start) of a value of rank `rank`.
    pub fn at(axis: usize, rank: usize) -> Option<Hidden> {
        (axis < rank).then(|| Hidden {
            from_end: rank - 1 - axis,
            rank: Some(rank),
        })
    }

    /// The axis counted from the start, when the rank is known.
    pub fn axis(&self) -> Option<usize> {
        self.rank.and_then(|r| r.checked_sub(self.from_end + 1))
    }

    /// Whether it is the last axis.
    pub fn is_last(&self) -> bool {
        self.from_end == 0
    }

    /// The same axis of a value of rank `rank` (broadcasting aligns from the right).
    pub fn with_rank(self, rank: Option<usize>) -> Hidden {
        Hidden {
            from_end: self.from_end,
            rank: rank.or(self.rank),
        }
    }

    /// Whether `other` can be the same axis of the same value (ranks agree where both known).
    pub fn agrees(&self, other: &Hidden) -> bool {
        self.from_end == other.from_end
            && match (self.rank, other.rank) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// An axis attribute `a` (negative counts from the end) is this axis: `None` when it cannot
    /// be told (a non-negative axis and no rank).
    pub fn is_axis(&self, a: i64) -> Option<bool> {
        if a < 0 {
            return Some((-a - 1) as u64 == self.from_end as u64);
        }
        self.axis().map(|x| x as i64 == a)
    }
}

impl fmt::Display for Hidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.axis(), self.rank) {
            (Some(a), Some(r)) => write!(f, "axis {a} of {r}"),
            _ => write!(f, "axis -{}", self.from_end + 1),
        }
    }
}

/// What the rewritten graph computes at one value (v' below), compared with the original v.
/// The order is ⊥ = `Same` < `Stream` < `Derived` < `Unknown` = ⊤.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fact {
    /// v' = v: the rewrite does not touch it. Anyone may read it.
    Same,
    /// v' = C(v) along the hidden axis: centred, and v' − v is constant along the axis. Read
    /// by carriers, norms over that axis (LN(v) = LN(v') = RMS(v')), `Shape` and `Size`.
    Stream(Hidden),
    /// v' differs from v by more than a value constant along the hidden axis (a Concat along
    /// the hidden axis of stream parts is centred but is not a shift of the original; a
    /// per-channel scaling or a non-linear op of a stream value is neither): only `Shape` and
    /// `Size` may read it. Why, naming the node.
    Derived(String),
    /// The analysis cannot tell (an op without a rule, a rank or an axis it cannot
    /// establish): the stream is refused. Why, naming the node.
    Unknown(String),
}
