//! Planning and applying the rewrite (`passes/rewrite/`, `passes/edit.rs`): the whole
//! result on a one-block Pre-LN graph for each target, folds into linear readers, centring of
//! writers, LayerScale.

use crate::testing::{check, crms, rms};

/// A one-block Pre-LN transformer: token embedding, one block (LayerNorm → MatMul + bias, added
/// back), a final LayerNorm read by the head.
const ONE_BLOCK: &str = "
input %ids: i64[2,3]
output %logits: f32[2,3,10]
%x = Gather[embed](@table:f32[10,8], %ids)
%ln = LayerNormalization[ln_1](%x, @g:f32[8], @beta:f32[8]) epsilon=1e-5
%h = MatMul[fc](%ln, @w:f32[8,8])
%hb = Add[fc_bias](%h, @b:f32[8])
%s = Add[residual](%x, %hb)
%f = LayerNormalization[ln_f](%s, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5
%logits = MatMul[head](%f, @w_head:f32[8,10])
";

#[test]
fn one_block_rmsnorm() {
    check!(ONE_BLOCK, rms(), @r#"
        graph "text"
          input  %ids: i64[2,3]
          output %logits: f32[2,3,10]
          11 initializers, 1040 bytes inline
          %x = Gather[embed](@table:f32[10,8], %ids)
          %normopt/Pow = Pow[normopt/Pow_1](%x, @normopt/two:f32[])
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%normopt/Pow) axes=[-1] keepdims=1
          %normopt/Add = Add[normopt/Add_1](%normopt/ReduceMean, @normopt/epsilon:f32[])
          %normopt/Sqrt = Sqrt[normopt/Sqrt_1](%normopt/Add)
          %normopt/Div = Div[normopt/Div_1](%x, %normopt/Sqrt)
          %ln = Mul[normopt/Mul](%normopt/Div, @normopt/ones:f32[8])
          %h = MatMul[fc](%ln, @w:f32[8,8])
          %hb = Add[fc_bias](%h, @b:f32[8])
          %s = Add[residual](%x, %hb)
          %normopt/Pow_2 = Pow[normopt/Pow_3](%s, @normopt/two_1:f32[])
          %normopt/ReduceMean_2 = ReduceMean[normopt/ReduceMean_3](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_2 = Add[normopt/Add_3](%normopt/ReduceMean_2, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_2)
          %normopt/Div_2 = Div[normopt/Div_3](%s, %normopt/Sqrt_2)
          %normopt/rms = Mul[normopt/Mul_1](%normopt/Div_2, @g_f:f32[8])
          %f = Add[normopt/Add_4](%normopt/rms, @b_f:f32[8])
          %logits = MatMul[head](%f, @w_head:f32[8,10])

        rewritten 2
        stream 0 width 8 -> 8: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x embedding [embed]: table rows centred
          leaf %b constant [fc_bias]: centred over the last axis
          norm ln_1: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [], kept affine: folding β would add biases of total width 10 > 8 to "head" (10)
    "#);
}

#[test]
fn one_block_crmsnorm() {
    check!(ONE_BLOCK, crms(), @r#"
        graph "text"
          input  %ids: i64[2,3]
          output %logits: f32[2,3,10]
          15 initializers, 976 bytes inline
          %x = Gather[embed](@table:f32[10,7], %ids)
          %normopt/Pow = Pow[normopt/Pow_1](%x, @normopt/two:f32[])
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%normopt/Pow) axes=[-1] keepdims=1
          %normopt/Add = Add[normopt/Add_1](%normopt/ReduceMean, @normopt/epsilon:f32[])
          %normopt/Sqrt = Sqrt[normopt/Sqrt_1](%normopt/Add)
          %normopt/Div = Div[normopt/Div_1](%x, %normopt/Sqrt)
          %ln = Mul[normopt/Mul](%normopt/Div, @normopt/ones:f32[7])
          %h = MatMul[fc](%ln, @w:f32[7,7])
          %hb = Add[fc_bias](%h, @b:f32[7])
          %s = Add[residual](%x, %hb)
          %normopt/Pow_2 = Pow[normopt/Pow_3](%s, @normopt/two_1:f32[])
          %normopt/ReduceMean_2 = ReduceMean[normopt/ReduceMean_3](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_2 = Add[normopt/Add_3](%normopt/ReduceMean_2, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_2)
          %normopt/Div_2 = Div[normopt/Div_3](%s, %normopt/Sqrt_2)
          %normopt/crms = Mul[normopt/Mul_1](%normopt/Div_2, @normopt/scale:f32[7])
          %normopt/ReduceSum = ReduceSum[normopt/ReduceSum_1](%normopt/crms, @normopt/axes:i64[1]) keepdims=1
          %normopt/Mul_2 = Mul[normopt/Mul_3](%normopt/ReduceSum, @normopt/k:f32[])
          %normopt/Sub = Sub[normopt/Sub_1](%normopt/crms, %normopt/Mul_2)
          %normopt/Mul_4 = Mul[normopt/Mul_5](%normopt/ReduceSum, @normopt/tail:f32[])
          %normopt/Concat = Concat[normopt/Concat_1](%normopt/Sub, %normopt/Mul_4) axis=-1
          %normopt/Mul_6 = Mul[normopt/Mul_7](%normopt/Concat, @g_f:f32[8])
          %f = Add[normopt/Add_4](%normopt/Mul_6, @b_f:f32[8])
          %logits = MatMul[head](%f, @w_head:f32[8,10])

        rewritten 2
        stream 0 width 8 -> 7: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x embedding [embed]: table rows centred
          leaf %b constant [fc_bias]: centred over the last axis
          norm ln_1: LayerNormalization -> CRMSNorm as decomposed RMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> CRMSNorm as decomposed RMSNorm + decompression, eps 9.999999747378752e-6, folded into [], kept affine: folding β would add biases of total width 10 > 8 to "head" (10)
    "#);
}

/// β folds into readers as new biases (b' = β·W) only when that adds no more bias entries
/// than the norm's width: two bias-less readers keep γ and β on the norm.
#[test]
fn fold_refused_when_it_adds_biases() {
    let g = "
input %x: f32[2,3,8]
output %y: f32[2,3,8]
%ln = LayerNormalization[ln](%x, @g:f32[8], @beta:f32[8]) epsilon=1e-5
%q = MatMul[q](%ln, @wq:f32[8,8])
%k = MatMul[k](%ln, @wk:f32[8,8])
%qk = Mul[gate](%q, %k)
%o = MatMul[o](%qk, @wo:f32[8,8])
%s = Add[residual](%x, %o)
%y = LayerNormalization[ln_f](%s, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5
";
    check!(g, rms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,3,8]
          11 initializers, 912 bytes inline
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%x) axes=[-1] keepdims=1
          %normopt/Sub = Sub[normopt/Sub_1](%x, %normopt/ReduceMean)
          %normopt/Pow = Pow[normopt/Pow_1](%normopt/Sub, @normopt/two:f32[])
          %normopt/ReduceMean_2 = ReduceMean[normopt/ReduceMean_3](%normopt/Pow) axes=[-1] keepdims=1
          %normopt/Add = Add[normopt/Add_1](%normopt/ReduceMean_2, @normopt/epsilon:f32[])
          %normopt/Sqrt = Sqrt[normopt/Sqrt_1](%normopt/Add)
          %normopt/Div = Div[normopt/Div_1](%normopt/Sub, %normopt/Sqrt)
          %normopt/rms = Mul[normopt/Mul](%normopt/Div, @g:f32[8])
          %ln = Add[normopt/Add_2](%normopt/rms, @beta:f32[8])
          %q = MatMul[q](%ln, @wq:f32[8,8])
          %k = MatMul[k](%ln, @wk:f32[8,8])
          %qk = Mul[gate](%q, %k)
          %o = MatMul[o](%qk, @wo:f32[8,8])
          %s = Add[residual](%normopt/Sub, %o)
          %normopt/Pow_2 = Pow[normopt/Pow_3](%s, @normopt/two_1:f32[])
          %normopt/ReduceMean_4 = ReduceMean[normopt/ReduceMean_5](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_3 = Add[normopt/Add_4](%normopt/ReduceMean_4, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_3)
          %normopt/Div_2 = Div[normopt/Div_3](%s, %normopt/Sqrt_2)
          %normopt/rms_1 = Mul[normopt/Mul_1](%normopt/Div_2, @g_f:f32[8])
          %y = Add[normopt/Add_5](%normopt/rms_1, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 8: rewritten
          leaf %o linear [o]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          norm ln: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [], kept affine: folding β would add biases of total width 16 > 8 to "q" (8), "k" (8)
          norm ln_f: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

/// γ, β fold into every reader when all are constant-weight MatMuls with a bias
/// (W' = diag(γ)·W, b' = b + β·W); the norm is left without affine.
#[test]
fn fold_into_several_matmul_readers() {
    let g = "
input %x: f32[2,3,8]
output %y: f32[2,3,8]
%ln = LayerNormalization[ln](%x, @g:f32[8], @beta:f32[8]) epsilon=1e-5
%q0 = MatMul[q](%ln, @wq:f32[8,8])
%q = Add[q_bias](%q0, @bq:f32[8])
%k0 = MatMul[k](%ln, @wk:f32[8,8])
%k = Add[k_bias](%k0, @bk:f32[8])
%qk = Mul[gate](%q, %k)
%o = MatMul[o](%qk, @wo:f32[8,8])
%s = Add[residual](%x, %o)
%y = LayerNormalization[ln_f](%s, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5
";
    check!(g, rms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,3,8]
          12 initializers, 944 bytes inline
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%x) axes=[-1] keepdims=1
          %normopt/Sub = Sub[normopt/Sub_1](%x, %normopt/ReduceMean)
          %normopt/Pow = Pow[normopt/Pow_1](%normopt/Sub, @normopt/two:f32[])
          %normopt/ReduceMean_2 = ReduceMean[normopt/ReduceMean_3](%normopt/Pow) axes=[-1] keepdims=1
          %normopt/Add = Add[normopt/Add_1](%normopt/ReduceMean_2, @normopt/epsilon:f32[])
          %normopt/Sqrt = Sqrt[normopt/Sqrt_1](%normopt/Add)
          %normopt/Div = Div[normopt/Div_1](%normopt/Sub, %normopt/Sqrt)
          %ln = Mul[normopt/Mul](%normopt/Div, @normopt/ones:f32[8])
          %q0 = MatMul[q](%ln, @wq:f32[8,8])
          %q = Add[q_bias](%q0, @bq:f32[8])
          %k0 = MatMul[k](%ln, @wk:f32[8,8])
          %k = Add[k_bias](%k0, @bk:f32[8])
          %qk = Mul[gate](%q, %k)
          %o = MatMul[o](%qk, @wo:f32[8,8])
          %s = Add[residual](%normopt/Sub, %o)
          %normopt/Pow_2 = Pow[normopt/Pow_3](%s, @normopt/two_1:f32[])
          %normopt/ReduceMean_4 = ReduceMean[normopt/ReduceMean_5](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_2 = Add[normopt/Add_3](%normopt/ReduceMean_4, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_2)
          %normopt/Div_2 = Div[normopt/Div_3](%s, %normopt/Sqrt_2)
          %normopt/rms = Mul[normopt/Mul_1](%normopt/Div_2, @g_f:f32[8])
          %y = Add[normopt/Add_4](%normopt/rms, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 8: rewritten
          leaf %o linear [o]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          norm ln: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [q, k]
          norm ln_f: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

/// A reader that is not linear keeps γ and β on the norm.
#[test]
fn nonlinear_reader_keeps_the_affine() {
    let g = "
input %x: f32[2,3,8]
output %y: f32[2,3,8]
%ln = LayerNormalization[ln](%x, @g:f32[8], @beta:f32[8]) epsilon=1e-5
%a = Relu[act](%ln)
%h = MatMul[fc](%a, @w:f32[8,8])
%s = Add[residual](%x, %h)
%y = LayerNormalization[ln_f](%s, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5
";
    check!(g, rms(), @r#"
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
          %normopt/rms = Mul[normopt/Mul](%normopt/Div, @g:f32[8])
          %ln = Add[normopt/Add_2](%normopt/rms, @beta:f32[8])
          %a = Relu[act](%ln)
          %h = MatMul[fc](%a, @w:f32[8,8])
          %s = Add[residual](%normopt/Sub, %h)
          %normopt/Pow_2 = Pow[normopt/Pow_3](%s, @normopt/two_1:f32[])
          %normopt/ReduceMean_4 = ReduceMean[normopt/ReduceMean_5](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_3 = Add[normopt/Add_4](%normopt/ReduceMean_4, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_3)
          %normopt/Div_2 = Div[normopt/Div_3](%s, %normopt/Sqrt_2)
          %normopt/rms_1 = Mul[normopt/Mul_1](%normopt/Div_2, @g_f:f32[8])
          %y = Add[normopt/Add_5](%normopt/rms_1, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 8: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          norm ln: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [], kept affine: Relu "act" is not a constant-weight linear op
          norm ln_f: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

/// A Gemm writer with transB=1 stores W as [D, K]: centred over axis 0, its bias too.
#[test]
fn gemm_writer_is_centred() {
    let g = "
input %x: f32[6,8]
output %y: f32[6,8]
%ln = LayerNormalization[ln](%x, @g:f32[8], @beta:f32[8]) epsilon=1e-5
%h = Gemm[fc](%ln, @w:f32[8,8], @c:f32[8]) transB=1
%s = Add[residual](%x, %h)
%y = LayerNormalization[ln_f](%s, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5
";
    check!(g, rms(), @r#"
        graph "text"
          input  %x: f32[6,8]
          output %y: f32[6,8]
          9 initializers, 400 bytes inline
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%x) axes=[-1] keepdims=1
          %normopt/Sub = Sub[normopt/Sub_1](%x, %normopt/ReduceMean)
          %normopt/Pow = Pow[normopt/Pow_1](%normopt/Sub, @normopt/two:f32[])
          %normopt/ReduceMean_2 = ReduceMean[normopt/ReduceMean_3](%normopt/Pow) axes=[-1] keepdims=1
          %normopt/Add = Add[normopt/Add_1](%normopt/ReduceMean_2, @normopt/epsilon:f32[])
          %normopt/Sqrt = Sqrt[normopt/Sqrt_1](%normopt/Add)
          %normopt/Div = Div[normopt/Div_1](%normopt/Sub, %normopt/Sqrt)
          %ln = Mul[normopt/Mul](%normopt/Div, @normopt/ones:f32[8])
          %h = Gemm[fc](%ln, @w:f32[8,8], @c:f32[8]) transB=1
          %s = Add[residual](%normopt/Sub, %h)
          %normopt/Pow_2 = Pow[normopt/Pow_3](%s, @normopt/two_1:f32[])
          %normopt/ReduceMean_4 = ReduceMean[normopt/ReduceMean_5](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_2 = Add[normopt/Add_3](%normopt/ReduceMean_4, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_2)
          %normopt/Div_2 = Div[normopt/Div_3](%s, %normopt/Sqrt_2)
          %normopt/rms = Mul[normopt/Mul_1](%normopt/Div_2, @g_f:f32[8])
          %y = Add[normopt/Add_4](%normopt/rms, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 8: rewritten
          leaf %h linear [fc]: Gemm weight centred over its output axis (transB=1)
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          norm ln: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

/// LayerScale (`x + λ ⊙ (W·h + b)`): λ folds into W and b, which are then centred, and the
/// Mul goes.
#[test]
fn layerscale_mul_is_folded() {
    let g = "
input %x: f32[2,3,8]
output %y: f32[2,3,8]
%ln = LayerNormalization[ln](%x, @g:f32[8], @beta:f32[8]) epsilon=1e-5
%h = MatMul[fc](%ln, @w:f32[8,8])
%hb = Add[fc_bias](%h, @b:f32[8])
%ls = Mul[layer_scale](%hb, @lambda:f32[8])
%s = Add[residual](%x, %ls)
%y = LayerNormalization[ln_f](%s, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5
";
    check!(g, rms(), @r#"
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
          %ls = Add[fc_bias](%h, @b:f32[8])
          %s = Add[residual](%normopt/Sub, %ls)
          %normopt/Pow_2 = Pow[normopt/Pow_3](%s, @normopt/two_1:f32[])
          %normopt/ReduceMean_4 = ReduceMean[normopt/ReduceMean_5](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_2 = Add[normopt/Add_3](%normopt/ReduceMean_4, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_2)
          %normopt/Div_2 = Div[normopt/Div_3](%s, %normopt/Sqrt_2)
          %normopt/rms = Mul[normopt/Mul_1](%normopt/Div_2, @g_f:f32[8])
          %y = Add[normopt/Add_4](%normopt/rms, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 8: rewritten
          leaf %ls linear [fc]: MatMul weight centred over its output axis, after the scales that followed it; LayerScale folded (Mul "layer_scale" removed), biases scaled and centred
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          norm ln: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}
