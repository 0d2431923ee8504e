//! The LayerNorm/RMSNorm matchers (`passes/norms/`): each form, and each reason a
//! LayerNorm-looking pattern is not one.

use super::block;
use crate::testing::{check, check_no_match, rms};

/// `LayerNormalization` (opset 17): one node.
#[test]
fn fused_layernormalization() {
    let g = block("%ln = LayerNormalization[ln](%x, @g:f32[8], @beta:f32[8]) axis=-1 epsilon=1e-5");
    check!(&g, rms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,3,8]
          9 initializers, 400 bytes inline
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%x) axes=[-1] keepdims=1
          %normopt/Sub = Sub[normopt/Sub_1](%x, %normopt/ReduceMean)
          %normopt/Pow = Pow[normopt/Pow_1](%normopt/Sub, @normopt/two:f32[])
          %normopt/ReduceMean_2 = ReduceMean[normopt/ReduceMean_3](%normopt/Pow) axes=[-1] keepdims=1
          %normopt/Add = Add[normopt/Add_1](%normopt/ReduceMean_2, @normopt/epsilon:f32[])
          %normopt/Sqrt = Sqrt[normopt/Sqrt_1](%normopt/Add)
          %normopt/Div = Div[normopt/Div_1](%normopt/Sub, %normopt/Sqrt)
          %ln = Mul[normopt/Mul](%normopt/Div, @normopt/ones:f32[8])
          %h = MatMul[fc](%ln, @w:f32[8,8])
          %hb = Add[fc_bias](%h, @b:f32[8])
          %s = Add[residual](%normopt/Sub, %hb)
          %normopt/Pow_2 = Pow[normopt/Pow_3](%s, @normopt/two_1:f32[])
          %normopt/ReduceMean_4 = ReduceMean[normopt/ReduceMean_5](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_2 = Add[normopt/Add_3](%normopt/ReduceMean_4, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_2)
          %normopt/Div_2 = Div[normopt/Div_3](%s, %normopt/Sqrt_2)
          %normopt/rms = Mul[normopt/Mul_1](%normopt/Div_2, @g_f:f32[8])
          %y = Add[normopt/Add_4](%normopt/rms, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 8: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          leaf %b constant [fc_bias]: centred over the last axis
          norm ln: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

/// onnxruntime's split LayerNorm: `Sub(x, ReduceMean(x))` feeding
/// `SimplifiedLayerNormalization`, β as a following Add.
#[test]
fn split_sub_simplified_layernormalization() {
    let g = block(
        "%m = ReduceMean[rm](%x) axes=[-1] keepdims=1
%c = Sub[sub](%x, %m)
%n = SimplifiedLayerNormalization[sln](%c, @g:f32[8]) axis=-1 epsilon=1e-5
%ln = Add[beta](%n, @beta:f32[8])",
    );
    check!(&g, rms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,3,8]
          9 initializers, 400 bytes inline
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%x) axes=[-1] keepdims=1
          %normopt/Sub = Sub[normopt/Sub_1](%x, %normopt/ReduceMean)
          %normopt/Pow = Pow[normopt/Pow_1](%normopt/Sub, @normopt/two:f32[])
          %normopt/ReduceMean_2 = ReduceMean[normopt/ReduceMean_3](%normopt/Pow) axes=[-1] keepdims=1
          %normopt/Add = Add[normopt/Add_1](%normopt/ReduceMean_2, @normopt/epsilon:f32[])
          %normopt/Sqrt = Sqrt[normopt/Sqrt_1](%normopt/Add)
          %normopt/Div = Div[normopt/Div_1](%normopt/Sub, %normopt/Sqrt)
          %ln = Mul[normopt/Mul](%normopt/Div, @normopt/ones:f32[8])
          %h = MatMul[fc](%ln, @w:f32[8,8])
          %hb = Add[fc_bias](%h, @b:f32[8])
          %s = Add[residual](%normopt/Sub, %hb)
          %normopt/Pow_2 = Pow[normopt/Pow_3](%s, @normopt/two_1:f32[])
          %normopt/ReduceMean_4 = ReduceMean[normopt/ReduceMean_5](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_2 = Add[normopt/Add_3](%normopt/ReduceMean_4, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_2)
          %normopt/Div_2 = Div[normopt/Div_3](%s, %normopt/Sqrt_2)
          %normopt/rms = Mul[normopt/Mul_1](%normopt/Div_2, @g_f:f32[8])
          %y = Add[normopt/Add_4](%normopt/rms, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 8: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          leaf %b constant [fc_bias]: centred over the last axis
          norm sln: ReduceMean→Sub→SimplifiedLayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

const DECOMPOSED_POW: &str = "%m = ReduceMean[rm](%x) axes=[-1] keepdims=1
%d = Sub[sub](%x, %m)
%sq = Pow[pow](%d, @two:f32[])
%var = ReduceMean[rm2](%sq) axes=[-1] keepdims=1
%ve = Add[add_eps](%var, @eps:f32[])
%sd = Sqrt[sqrt](%ve)
%n = Div[div](%d, %sd)
%ng = Mul[gamma](%n, @g:f32[8])
%ln = Add[beta](%ng, @beta:f32[8])";

fn decomposed(body: &str) -> String {
    format!(
        "init @two: f32[] = [2]\ninit @eps: f32[] = [1e-5]\n{}",
        block(body)
    )
}

/// Decomposed: ReduceMean → Sub → Pow(2) → ReduceMean → Add(ε) → Sqrt → Div → Mul(γ) → Add(β).
#[test]
fn decomposed_with_pow() {
    check!(&decomposed(DECOMPOSED_POW), rms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,3,8]
          9 initializers, 400 bytes inline
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%x) axes=[-1] keepdims=1
          %normopt/Sub = Sub[normopt/Sub_1](%x, %normopt/ReduceMean)
          %normopt/Pow = Pow[normopt/Pow_1](%normopt/Sub, @normopt/two:f32[])
          %normopt/ReduceMean_2 = ReduceMean[normopt/ReduceMean_3](%normopt/Pow) axes=[-1] keepdims=1
          %normopt/Add = Add[normopt/Add_1](%normopt/ReduceMean_2, @normopt/epsilon:f32[])
          %normopt/Sqrt = Sqrt[normopt/Sqrt_1](%normopt/Add)
          %normopt/Div = Div[normopt/Div_1](%normopt/Sub, %normopt/Sqrt)
          %ln = Mul[normopt/Mul](%normopt/Div, @normopt/ones:f32[8])
          %h = MatMul[fc](%ln, @w:f32[8,8])
          %hb = Add[fc_bias](%h, @b:f32[8])
          %s = Add[residual](%normopt/Sub, %hb)
          %normopt/Pow_2 = Pow[normopt/Pow_3](%s, @normopt/two_1:f32[])
          %normopt/ReduceMean_4 = ReduceMean[normopt/ReduceMean_5](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_2 = Add[normopt/Add_3](%normopt/ReduceMean_4, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_2)
          %normopt/Div_2 = Div[normopt/Div_3](%s, %normopt/Sqrt_2)
          %normopt/rms = Mul[normopt/Mul_1](%normopt/Div_2, @g_f:f32[8])
          %y = Add[normopt/Add_4](%normopt/rms, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 8: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          leaf %b constant [fc_bias]: centred over the last axis
          norm rm: decomposed LayerNorm -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

/// Decomposed with the variance as `Mul(d, d)` and the division as `Reciprocal` + `Mul`.
#[test]
fn decomposed_with_mul_and_reciprocal() {
    let body = "%m = ReduceMean[rm](%x) axes=[-1] keepdims=1
%d = Sub[sub](%x, %m)
%sq = Mul[square](%d, %d)
%var = ReduceMean[rm2](%sq) axes=[-1] keepdims=1
%ve = Add[add_eps](%var, @eps:f32[])
%sd = Sqrt[sqrt](%ve)
%inv = Reciprocal[recip](%sd)
%n = Mul[scale](%d, %inv)
%ln = Mul[gamma](%n, @g:f32[8])";
    check!(&decomposed(body), rms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,3,8]
          10 initializers, 404 bytes inline
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%x) axes=[-1] keepdims=1
          %normopt/Sub = Sub[normopt/Sub_1](%x, %normopt/ReduceMean)
          %normopt/Pow = Pow[normopt/Pow_1](%normopt/Sub, @normopt/two:f32[])
          %normopt/ReduceMean_2 = ReduceMean[normopt/ReduceMean_3](%normopt/Pow) axes=[-1] keepdims=1
          %normopt/Add = Add[normopt/Add_1](%normopt/ReduceMean_2, @normopt/epsilon:f32[])
          %normopt/Sqrt = Sqrt[normopt/Sqrt_1](%normopt/Add)
          %normopt/Div = Div[normopt/Div_1](%normopt/Sub, %normopt/Sqrt)
          %ln = Mul[normopt/Mul](%normopt/Div, @normopt/ones:f32[8])
          %h = MatMul[fc](%ln, @w:f32[8,8])
          %hb = Add[fc_bias](%h, @b:f32[8])
          %s = Add[residual](%normopt/Sub, %hb)
          %normopt/Pow_2 = Pow[normopt/Pow_3](%s, @normopt/two_1:f32[])
          %normopt/ReduceMean_4 = ReduceMean[normopt/ReduceMean_5](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_2 = Add[normopt/Add_3](%normopt/ReduceMean_4, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_2)
          %normopt/Div_2 = Div[normopt/Div_3](%s, %normopt/Sqrt_2)
          %normopt/rms = Mul[normopt/Mul_1](%normopt/Div_2, @g_f:f32[8])
          %y = Add[normopt/Add_4](%normopt/rms, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 8: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          leaf %b constant [fc_bias]: centred over the last axis
          norm rm: decomposed LayerNorm -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

/// Decomposed RMSNorm (Pow → ReduceMean → Add → Sqrt → Div, or Reciprocal + Mul): recognised,
/// and a stream read only by RMSNorms is already what the rewrite makes.
#[test]
fn decomposed_rms_is_already_rmsnorm() {
    let g = "init @two: f32[] = [2]
init @eps: f32[] = [1e-5]
input %x: f32[2,3,8]
output %y: f32[2,3,8]
%sq = Pow[pow](%x, @two)
%var = ReduceMean[rm](%sq) axes=[-1] keepdims=1
%ve = Add[add_eps](%var, @eps)
%sd = Sqrt[sqrt](%ve)
%n = Div[div](%x, %sd)
%ln = Mul[gamma](%n, @g:f32[8])
%h = MatMul[fc](%ln, @w:f32[8,8])
%s = Add[residual](%x, %h)
%sq2 = Pow[pow2](%s, @two)
%var2 = ReduceMean[rm2](%sq2) axes=[-1] keepdims=1
%ve2 = Add[add_eps2](%var2, @eps)
%sd2 = Sqrt[sqrt2](%ve2)
%inv = Reciprocal[recip](%sd2)
%y = Mul[scale](%s, %inv)";
    check_no_match!(g, rms(), @r#"
        pow (decomposed RMSNorm): already RMSNorm: no LayerNorm reads this stream; 1 explicit centering node(s) for 0 LayerNorm(s): no gain
        pow2 (decomposed RMSNorm): already RMSNorm: no LayerNorm reads this stream; 1 explicit centering node(s) for 0 LayerNorm(s): no gain
    "#);
}

/// A fused LayerNorm whose γ does not have the normalised width.
#[test]
fn no_match_gamma_of_another_width() {
    let g = block("%ln = LayerNormalization[ln](%x, @g:f32[4], @beta:f32[8]) epsilon=1e-5");
    check_no_match!(&g, rms(), @r#"
        ln (unrecognised): not a LayerNorm pattern: its scale/shift "g" has 4 entries, the normalised axis 8
        ln_f (LayerNormalization): 1 explicit centering node(s) for 1 LayerNorm(s): no gain
    "#);
}

/// The centred value of a decomposed LayerNorm read by a node outside the pattern.
#[test]
fn no_match_centred_value_read_outside() {
    let body = DECOMPOSED_POW.replace(
        "%ln = Add[beta](%ng, @beta:f32[8])",
        "%ln0 = Add[beta](%ng, @beta:f32[8])\n%r = Relu[leak](%d)\n%ln = Add[join](%ln0, %r)",
    );
    check_no_match!(&decomposed(&body), rms(), @r#"
        rm (unrecognised): not a LayerNorm pattern: the centred value is read by Relu "leak"
        ln_f (LayerNormalization): 1 explicit centering node(s) for 1 LayerNorm(s): no gain
    "#);
}

/// The centred value of a decomposed LayerNorm is a graph output.
#[test]
fn no_match_centred_value_is_output() {
    let g = decomposed(DECOMPOSED_POW).replace(
        "output %y: f32[2,3,8]",
        "output %y: f32[2,3,8]\noutput %d: f32[2,3,8]",
    );
    check_no_match!(&g, rms(), @r#"
        rm (unrecognised): not a LayerNorm pattern: the centred value is a graph output
        ln_f (LayerNormalization): 1 explicit centering node(s) for 1 LayerNorm(s): no gain
    "#);
}

/// ε is not a constant.
#[test]
fn no_match_epsilon_not_constant() {
    let body = DECOMPOSED_POW.replace(
        "%ve = Add[add_eps](%var, @eps:f32[])",
        "%ve = Add[add_eps](%var, %e)",
    );
    let g = decomposed(&body).replace(
        "input %x: f32[2,3,8]",
        "input %x: f32[2,3,8]\ninput %e: f32[]",
    );
    check_no_match!(&g, rms(), @r#"
        rm (unrecognised): not a LayerNorm pattern: ε is not a constant scalar
        ln_f (LayerNormalization): 1 explicit centering node(s) for 1 LayerNorm(s): no gain
    "#);
}

/// A mean subtraction over another axis than the last is not a LayerNorm at all.
#[test]
fn no_match_mean_over_another_axis() {
    let body = DECOMPOSED_POW.replace("axes=[-1]", "axes=[1]");
    let g = decomposed(&body).replace(
        "%y = LayerNormalization[ln_f](%s, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5",
        "%y = Relu[act](%s)",
    );
    check_no_match!(&g, rms(), @r#"
        - (-): no normalisation found in the graph
    "#);
}
