//! Why a matcher did not match: one variant per structural reason, carrying the values and nodes
//! it cites. `Display` is the text of the report ("not a LayerNorm pattern: …"); code that needs
//! to tell reasons apart matches on the variant, never on the text.

use std::fmt;

/// Why the pattern anchored at a node is not a normalisation the pass knows.
#[derive(Clone, Debug, PartialEq)]
pub enum NoMatch {
    // --- the anchor itself ---
    /// The anchor is not one of the fused normalisation ops.
    NotFused {
        /// Its op type.
        op: String,
    },
    /// The anchor is not a `SimplifiedLayerNormalization`.
    NotSimplified,
    /// The anchor is not a `ReduceMean`.
    NotReduceMean,
    /// The anchor is not a `Pow(x, 2)`.
    NotSquare,
    /// A node of the pattern has no first output.
    NoOutput {
        /// Op type of the node.
        op: String,
        /// Its label.
        node: String,
    },
    /// The fused norm has no (non-empty) first output.
    FusedNoOutput,
    /// The fused norm has no input.
    NoInput,
    /// A node of the pattern has no input where the pattern needs one.
    WithoutInput {
        /// What lacks the input ("Sub", "ReduceMean", "Skip norm", …).
        what: &'static str,
    },
    /// A Skip norm without its skip input (input 1).
    SkipWithoutSkip,

    // --- scale, shift, bias ---
    /// γ or β is not a constant.
    AffineNotConst {
        /// The value.
        value: String,
    },
    /// γ or β has more entries than fit a `usize`.
    AffineTooLarge {
        /// The value.
        value: String,
    },
    /// γ or β has no entry.
    AffineEmpty {
        /// The value.
        value: String,
    },
    /// γ or β is not a vector along the normalised (last) axis.
    AffineNotVector {
        /// The value.
        value: String,
        /// Its dims.
        dims: Vec<usize>,
    },
    /// γ or β has another width than the normalised axis.
    AffineWidth {
        /// The value.
        value: String,
        /// Its entries.
        entries: usize,
        /// The normalised axis's width.
        width: i64,
    },
    /// The Skip norm's bias is not a constant.
    BiasNotConst {
        /// The value.
        value: String,
    },
    /// The split LayerNorm's scale is not a constant.
    ScaleNotConst {
        /// The value.
        value: String,
    },

    // --- the mean and the centred value ---
    /// The split LayerNorm's input is not produced by a `Sub`.
    InputNotDifference,
    /// The centred value `x − mean(x)` is read outside the norm.
    CentredOtherReaders,
    /// The `Sub` does not subtract `ReduceMean` of its own first input.
    NotMeanDifference,
    /// The mean is read outside the norm (split form).
    MeanOtherReaders,
    /// The ReduceMean's axes are not constant.
    AxesNotConst,
    /// The ReduceMean reduces more than the last axis.
    NotLastAxis {
        /// Its axes.
        axes: Vec<i64>,
    },
    /// The ReduceMean has `keepdims=0`.
    DropsAxis,
    /// `SimplifiedLayerNormalization` normalises from another axis than the last.
    SimplifiedAxis {
        /// Its axis.
        axis: i64,
    },
    /// The split LayerNorm's InvStdDev output is read.
    InvStdDevRead,
    /// The mean is read by more than the `Sub` (decomposed form).
    MeanSeveralReaders,
    /// The mean is not subtracted from the ReduceMean's own input.
    MeanNotSubtracted,
    /// The centred value is a graph output.
    CentredIsOutput,
    /// The centred value is read inside a subgraph.
    CentredInSubgraph,
    /// Two different nodes square the centred value.
    SquaredTwice,
    /// Two different nodes divide (or multiply) the centred value.
    DividedTwice,
    /// The centred value is read by a node that is neither the square nor the division.
    CentredReadBy {
        /// Op type of the reader.
        op: String,
        /// Its label.
        node: String,
    },
    /// Nothing squares the centred value.
    NotSquared,
    /// Nothing divides the centred value.
    NotDivided,

    // --- variance and deviation (LayerNorm) ---
    /// The square is read by more than the variance's ReduceMean.
    SquareSeveralReaders,
    /// The square is not averaged over the same axes as the mean.
    SquareNotAveraged,
    /// The variance is read by more than `Add(ε)`.
    VarianceSeveralReaders,
    /// The variance is not followed by `Add(ε)`.
    NoEpsilonAdd,
    /// ε is not a constant scalar.
    EpsilonNotConst,
    /// `variance + ε` is not followed by `Sqrt`.
    NoSqrt,
    /// The division is not by the deviation (or the deviation has other readers).
    NotDivByDeviation,
    /// The deviation is not followed by `Reciprocal`.
    DeviationNotInverted,
    /// The centred value is not multiplied by the inverse deviation.
    NotMulByInverse,
    /// An fp16 LayerNorm widened by a `Cast` is not cast back.
    NotCastBack,

    // --- decomposed RMSNorm ---
    /// The squared value is a difference: the start of a LayerNorm, not of an RMSNorm.
    SquaresDifference,
    /// The square is not averaged by a sole `ReduceMean`.
    RmsSquareNotAveraged,
    /// The mean square is not followed by `Add(ε)`.
    RmsNoEpsilonAdd,
    /// ε is not a constant.
    RmsEpsilonNotConst,
    /// `mean square + ε` is not followed by `Sqrt`.
    RmsNoSqrt,
    /// The deviation has several readers.
    RmsDeviationReadTwice,
    /// The inverse deviation does not multiply the input.
    RmsInverseNotApplied,
    /// The deviation neither divides the input nor is inverted.
    RmsDeviationNotApplied,

    // --- other frameworks' LayerNorms (foreign.rs) ---
    /// jax2tf: `E[x²]` is not `ReduceSum(x·x)`.
    ForeignNoSquareOfX,
    /// jax2tf: `x·x` is not summed over the mean's axis.
    ForeignSquareNotSummed,
    /// jax2tf: the sum of `x·x` is not divided by the width.
    ForeignSumNotDivided,
    /// jax2tf: the variance is not `E[x²]` − μ·μ.
    ForeignNotMomentDifference,
    /// The deviation `Sqrt(σ² + ε)` is read by more than its inversion.
    ForeignDeviationSeveralReaders,
    /// A value computed inside the pattern is a graph output.
    ForeignIntermediateIsOutput {
        /// The value.
        value: String,
    },
    /// A value computed inside the pattern is read inside a subgraph.
    ForeignIntermediateInSubgraph {
        /// The value.
        value: String,
    },
    /// A value computed inside the pattern is read by a node outside it.
    ForeignIntermediateReadBy {
        /// The value.
        value: String,
        /// Op type of the reader.
        op: String,
        /// Its label.
        node: String,
    },
    /// Keras: the inverse deviation is read by something else than x·r and μ·r.
    ForeignInverseReadBy {
        /// Op type of the reader.
        op: String,
        /// Its label.
        node: String,
    },
    /// Keras: x is not multiplied by the inverse deviation.
    ForeignXNotScaled,
    /// Keras: the mean is not multiplied by the inverse deviation.
    ForeignMeanNotScaled,
    /// Keras: μ·r is not subtracted.
    ForeignMeanScaledNotSubtracted,
    /// Keras: the shift is not β − μ·r with β a constant.
    ForeignShiftNotBeta,
    /// Keras: x·r and β − μ·r are not added.
    ForeignNotAdded,
    /// Keras: x·r is read outside the norm.
    ForeignScaledOtherReaders,
}

impl NoMatch {
    /// For a miss anchored at a `ReduceMean`: whether it failed before the mean subtraction was
    /// established, so that the ReduceMean is an ordinary one, not the start of a LayerNorm (such
    /// misses are not reported).
    pub fn ordinary_reduce_mean(&self) -> bool {
        matches!(
            self,
            NoMatch::MeanNotSubtracted
                | NoMatch::MeanSeveralReaders
                | NoMatch::SquareSeveralReaders
                | NoMatch::VarianceSeveralReaders
                | NoMatch::NotLastAxis { .. }
        )
    }
}

impl fmt::Display for NoMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use NoMatch::*;
        match self {
            NotFused { op } => write!(f, "{} is not a fused normalisation", op.escape_debug()),
            NotSimplified => f.write_str("not a SimplifiedLayerNormalization"),
            NotReduceMean => f.write_str("not a ReduceMean"),
            NotSquare => f.write_str("not a square"),
            NoOutput { op, node } => write!(f, "{} {node:?} has no output", op.escape_debug()),
            FusedNoOutput => f.write_str("no output"),
            NoInput => f.write_str("no input"),
            WithoutInput { what } => write!(f, "{what} without input"),
            SkipWithoutSkip => f.write_str("Skip norm without skip input"),
            AffineNotConst { value } => write!(f, "its scale/shift {value:?} is not a constant"),
            AffineTooLarge { value } => write!(f, "its scale/shift {value:?} is too large"),
            AffineEmpty { value } => write!(f, "its scale/shift {value:?} is empty"),
            AffineNotVector { value, dims } => write!(
                f,
                "its scale/shift {value:?} of dims {dims:?} is not a vector along the normalised axis"
            ),
            AffineWidth {
                value,
                entries,
                width,
            } => write!(
                f,
                "its scale/shift {value:?} has {entries} entries, the normalised axis {width}"
            ),
            BiasNotConst { value } => write!(f, "its bias {value:?} is not a constant"),
            ScaleNotConst { value } => write!(f, "its scale {value:?} is not a constant"),
            InputNotDifference => f.write_str("its input is not a difference"),
            CentredOtherReaders => f.write_str("the centred value has other readers"),
            NotMeanDifference => {
                f.write_str("the difference does not subtract the mean of its input")
            }
            MeanOtherReaders => f.write_str("the mean has other readers"),
            AxesNotConst => f.write_str("ReduceMean axes are not constant"),
            NotLastAxis { axes } => write!(
                f,
                "ReduceMean reduces axes {axes:?}, not the last axis alone"
            ),
            DropsAxis => f.write_str("ReduceMean drops the reduced axis"),
            SimplifiedAxis { axis } => write!(
                f,
                "SimplifiedLayerNormalization normalises from axis {axis}"
            ),
            InvStdDevRead => f.write_str("its inverse deviation output is read"),
            MeanSeveralReaders => f.write_str("the mean has several readers"),
            MeanNotSubtracted => f.write_str("the mean is not subtracted from its input"),
            CentredIsOutput => f.write_str("the centred value is a graph output"),
            CentredInSubgraph => f.write_str("the centred value is read inside a subgraph"),
            SquaredTwice => f.write_str("the centred value is squared twice"),
            DividedTwice => f.write_str("the centred value is divided twice"),
            CentredReadBy { op, node } => write!(
                f,
                "the centred value is read by {} {node:?}",
                op.escape_debug()
            ),
            NotSquared => f.write_str("the centred value is not squared"),
            NotDivided => f.write_str("the centred value is not divided by its deviation"),
            SquareSeveralReaders => f.write_str("the square has several readers"),
            SquareNotAveraged => f.write_str("the square is not averaged over the same axis"),
            VarianceSeveralReaders => f.write_str("the variance has several readers"),
            NoEpsilonAdd => f.write_str("the variance is not followed by Add(ε)"),
            EpsilonNotConst => f.write_str("ε is not a constant scalar"),
            NoSqrt => f.write_str("variance + ε is not followed by Sqrt"),
            NotDivByDeviation => f.write_str("the division is not by the deviation"),
            DeviationNotInverted => f.write_str("the deviation is not inverted"),
            NotMulByInverse => {
                f.write_str("the centred value is not multiplied by the inverse deviation")
            }
            NotCastBack => f.write_str("the widened LayerNorm is not cast back"),
            SquaresDifference => f.write_str("squares a difference (LayerNorm)"),
            RmsSquareNotAveraged => f.write_str("square not averaged"),
            RmsNoEpsilonAdd => f.write_str("no Add(ε)"),
            RmsEpsilonNotConst => f.write_str("ε not constant"),
            RmsNoSqrt => f.write_str("no Sqrt"),
            RmsDeviationReadTwice => f.write_str("deviation read twice"),
            RmsInverseNotApplied => f.write_str("inverse not applied"),
            RmsDeviationNotApplied => f.write_str("deviation not applied"),
            ForeignNoSquareOfX => f.write_str("E[x²] is not computed from x·x"),
            ForeignSquareNotSummed => f.write_str("x·x is not summed over the same axis"),
            ForeignSumNotDivided => f.write_str("the sum of x·x is not divided by n"),
            ForeignNotMomentDifference => f.write_str("the variance is not E[x²] − E[x]²"),
            ForeignDeviationSeveralReaders => f.write_str("the deviation has several readers"),
            ForeignIntermediateIsOutput { value } => {
                write!(f, "its intermediate value {value:?} is a graph output")
            }
            ForeignIntermediateInSubgraph { value } => {
                write!(f, "its intermediate value {value:?} is read inside a subgraph")
            }
            ForeignIntermediateReadBy { value, op, node } => write!(
                f,
                "its intermediate value {value:?} is also read by {} {node:?}",
                op.escape_debug()
            ),
            ForeignInverseReadBy { op, node } => write!(
                f,
                "the inverse deviation is read by {} {node:?}",
                op.escape_debug()
            ),
            ForeignXNotScaled => f.write_str("x is not multiplied by the inverse deviation"),
            ForeignMeanNotScaled => {
                f.write_str("the mean is not multiplied by the inverse deviation")
            }
            ForeignMeanScaledNotSubtracted => f.write_str("μ·r is not subtracted"),
            ForeignShiftNotBeta => f.write_str("the shift is not β − μ·r with β constant"),
            ForeignNotAdded => f.write_str("x·r + (β − μ·r) is not added"),
            ForeignScaledOtherReaders => f.write_str("x·r has other readers"),
        }
    }
}

impl std::error::Error for NoMatch {}
