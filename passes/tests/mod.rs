//! Unit tests of the pass, one module per rule family, each case a graph in the text form
//! ([`crate::ir::text`]) checked by [`crate::testing`]: `check!` proves a rewrite in tract and
//! snapshots the result, `check_no_match!` proves the graph is left alone and snapshots why.

mod emit;
mod norms;
mod rewrite;
mod stream;

/// The block every family starts from: one Pre-LN block and a final LayerNorm, width 8, with
/// the `LN` placeholder replaced by a LayerNorm of `%x` into `%ln` in the form under test.
pub(super) fn block(ln: &str) -> String {
    format!(
        "
input %x: f32[2,3,8]
output %y: f32[2,3,8]
{ln}
%h = MatMul[fc](%ln, @w:f32[8,8])
%hb = Add[fc_bias](%h, @b:f32[8])
%s = Add[residual](%x, %hb)
%y = LayerNormalization[ln_f](%s, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5
"
    )
}
