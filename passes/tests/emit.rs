//! The nodes the rewrite emits (`passes/emit.rs`, each output form chosen by
//! `passes/rewrite/lower.rs`): RMSNorm as standard ops or `RMSNormalization` (opset 23), as
//! onnxruntime's `SimplifiedLayerNormalization`, CRMSNorm in the orthonormal basis as an RMSNorm over D−1 entries (in those forms) or as the
//! custom op.

use super::block;
use crate::passes;
use crate::testing::{check, crms, crms_custom, rms, rms_ort};

fn pre_ln() -> String {
    block("%ln = LayerNormalization[ln](%x, @g:f32[8], @beta:f32[8]) epsilon=1e-5")
}

/// Standard at opset 23: `RMSNormalization` (below 23 it is the decomposed chain: see the
/// matcher tests).
#[test]
fn standard_at_opset_23_is_rmsnormalization() {
    check!(&format!("opset 23\n{}", pre_ln()), rms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,3,8]
          6 initializers, 392 bytes inline
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%x, @normopt/axes:i64[1]) keepdims=1
          %normopt/Sub = Sub[normopt/Sub_1](%x, %normopt/ReduceMean)
          %ln = RMSNormalization[normopt/RMSNormalization](%normopt/Sub, @normopt/ones:f32[8]) axis=-1 epsilon=1e-5 stash_type=1
          %h = MatMul[fc](%ln, @w:f32[8,8])
          %hb = Add[fc_bias](%h, @b:f32[8])
          %s = Add[residual](%normopt/Sub, %hb)
          %normopt/rms = RMSNormalization[normopt/RMSNormalization_1](%s, @g_f:f32[8]) axis=-1 epsilon=1e-5 stash_type=1
          %y = Add[normopt/Add](%normopt/rms, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 8: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          leaf %b constant [fc_bias]: centred over the last axis
          norm ln: LayerNormalization -> RMSNormalization, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> RMSNormalization, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

/// onnxruntime: `SimplifiedLayerNormalization`.
#[test]
fn onnxruntime_simplified_layernormalization() {
    check!(&pre_ln(), rms_ort(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,3,8]
          5 initializers, 384 bytes inline
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%x) axes=[-1] keepdims=1
          %normopt/Sub = Sub[normopt/Sub_1](%x, %normopt/ReduceMean)
          %ln = SimplifiedLayerNormalization[normopt/SimplifiedLayerNormalization](%normopt/Sub, @normopt/ones:f32[8]) axis=-1 epsilon=1e-5 stash_type=1
          %h = MatMul[fc](%ln, @w:f32[8,8])
          %hb = Add[fc_bias](%h, @b:f32[8])
          %s = Add[residual](%normopt/Sub, %hb)
          %normopt/rms = SimplifiedLayerNormalization[normopt/SimplifiedLayerNormalization_1](%s, @g_f:f32[8]) axis=-1 epsilon=1e-5 stash_type=1
          %y = Add[normopt/Add](%normopt/rms, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 8: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          leaf %b constant [fc_bias]: centred over the last axis
          norm ln: LayerNormalization -> SimplifiedLayerNormalization, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> SimplifiedLayerNormalization, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

/// onnxruntime: a `SkipLayerNormalization` becomes `SkipSimplifiedLayerNormalization` (no
/// bias input: tract ignores it).
#[test]
fn onnxruntime_skip_simplified_layernormalization() {
    let g = "
input %x: f32[2,3,8]
output %y: f32[2,3,8]
%ln = LayerNormalization[ln](%x, @g:f32[8], @beta:f32[8]) epsilon=1e-5
%h = MatMul[fc](%ln, @w:f32[8,8])
%y, _, _, %s = com.microsoft:SkipLayerNormalization[skip_ln](%x, %h, @g2:f32[8], @b2:f32[8]) epsilon=1e-5
";
    check!(g, rms_ort(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,3,8]
          5 initializers, 384 bytes inline
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%x) axes=[-1] keepdims=1
          %normopt/Sub = Sub[normopt/Sub_1](%x, %normopt/ReduceMean)
          %ln = SimplifiedLayerNormalization[normopt/SimplifiedLayerNormalization](%normopt/Sub, @normopt/ones:f32[8]) axis=-1 epsilon=1e-5 stash_type=1
          %normopt/matmul = MatMul[fc](%ln, @w:f32[8,8])
          %h = Add[normopt/Add](%normopt/matmul, @normopt/bias:f32[8])
          %normopt/rms, _, _, _ = com.microsoft:SkipSimplifiedLayerNormalization[normopt/SkipSimplifiedLayerNormalization](%normopt/Sub, %h, @g2:f32[8]) epsilon=1e-5
          %y = Add[normopt/Add_3](%normopt/rms, @b2:f32[8])

        rewritten 2
        stream 0 width 8 -> 8: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          norm ln: LayerNormalization -> SimplifiedLayerNormalization, eps 9.999999747378752e-6, folded into [fc]
          norm skip_ln: SkipLayerNormalization -> com.microsoft:SkipSimplifiedLayerNormalization, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

/// CRMSNorm as standard ops.
#[test]
fn crms_standard() {
    check!(&pre_ln(), crms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,3,8]
          17 initializers, 432 bytes inline
          %normopt/MatMul = MatMul[normopt/MatMul_1](%x, @normopt/shift_weights:f32[8,1])
          %normopt/Slice = Slice[normopt/Slice_1](%x, @normopt/starts:i64[1], @normopt/ends:i64[1], @normopt/axes:i64[1])
          %normopt/Sub = Sub[normopt/Sub_1](%normopt/Slice, %normopt/MatMul)
          %normopt/Pow = Pow[normopt/Pow_1](%normopt/Sub, @normopt/two:f32[])
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%normopt/Pow) axes=[-1] keepdims=1
          %normopt/Add = Add[normopt/Add_1](%normopt/ReduceMean, @normopt/epsilon:f32[])
          %normopt/Sqrt = Sqrt[normopt/Sqrt_1](%normopt/Add)
          %normopt/Div = Div[normopt/Div_1](%normopt/Sub, %normopt/Sqrt)
          %ln = Mul[normopt/Mul](%normopt/Div, @normopt/ones:f32[7])
          %h = MatMul[fc](%ln, @w:f32[7,7])
          %hb = Add[fc_bias](%h, @b:f32[7])
          %s = Add[residual](%normopt/Sub, %hb)
          %normopt/Pow_2 = Pow[normopt/Pow_3](%s, @normopt/two_1:f32[])
          %normopt/ReduceMean_2 = ReduceMean[normopt/ReduceMean_3](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_2 = Add[normopt/Add_3](%normopt/ReduceMean_2, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_2)
          %normopt/Div_2 = Div[normopt/Div_3](%s, %normopt/Sqrt_2)
          %normopt/crms = Mul[normopt/Mul_1](%normopt/Div_2, @normopt/scale:f32[7])
          %normopt/ReduceSum = ReduceSum[normopt/ReduceSum_1](%normopt/crms, @normopt/axes_1:i64[1]) keepdims=1
          %normopt/Mul_2 = Mul[normopt/Mul_3](%normopt/ReduceSum, @normopt/k:f32[])
          %normopt/Sub_2 = Sub[normopt/Sub_3](%normopt/crms, %normopt/Mul_2)
          %normopt/Mul_4 = Mul[normopt/Mul_5](%normopt/ReduceSum, @normopt/tail:f32[])
          %normopt/Concat = Concat[normopt/Concat_1](%normopt/Sub_2, %normopt/Mul_4) axis=-1
          %normopt/Mul_6 = Mul[normopt/Mul_7](%normopt/Concat, @g_f:f32[8])
          %y = Add[normopt/Add_4](%normopt/Mul_6, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 7: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          leaf %b constant [fc_bias]: centred over the last axis
          norm ln: LayerNormalization -> CRMSNorm as decomposed RMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> CRMSNorm as decomposed RMSNorm + decompression, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

/// CRMSNorm as the one op `ai.onnx_normopt:CRMSNormalization` (tract runs it through the
/// crate's extension).
#[test]
fn crms_custom_op() {
    check!(&pre_ln(), crms_custom(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,3,8]
          8 initializers, 320 bytes inline
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%x) axes=[-1] keepdims=1
          %normopt/Sub = Sub[normopt/Sub_1](%x, %normopt/ReduceMean)
          %normopt/Slice = Slice[normopt/Slice_1](%normopt/Sub, @normopt/starts:i64[1], @normopt/ends:i64[1], @normopt/axes:i64[1])
          %ln = ai.onnx_normopt:CRMSNormalization[normopt/CRMSNormalization](%normopt/Slice) axis=-1 epsilon=1e-5 width=8
          %h = MatMul[fc](%ln, @w:f32[7,7])
          %hb = Add[fc_bias](%h, @b:f32[7])
          %s = Add[residual](%normopt/Slice, %hb)
          %normopt/CRMSNormalization_1 = ai.onnx_normopt:CRMSNormalization[normopt/CRMSNormalization_2](%s) axis=-1 epsilon=1e-5 width=8
          %normopt/ReduceSum = ReduceSum[normopt/ReduceSum_1](%normopt/CRMSNormalization_1, @normopt/axes_1:i64[1]) keepdims=1
          %normopt/Neg = Neg[normopt/Neg_1](%normopt/ReduceSum)
          %normopt/Concat = Concat[normopt/Concat_1](%normopt/CRMSNormalization_1, %normopt/Neg) axis=-1
          %normopt/Mul = Mul[normopt/Mul_1](%normopt/Concat, @g_f:f32[8])
          %y = Add[normopt/Add](%normopt/Mul, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 7: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          leaf %b constant [fc_bias]: centred over the last axis
          norm ln: LayerNormalization -> CRMSNormalization, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> CRMSNormalization + decompression, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

/// The custom op writes CRMSNorm only: with the RMSNorm target it is a usage error (the
/// options cannot even hold that combination; the flags are refused when mapped to a form).
#[test]
fn custom_op_needs_the_crmsnorm_target() {
    let e = passes::OutputForm::from_flags(passes::Target::Rmsnorm, "custom").unwrap_err();
    assert_eq!(e.exit_code(), 2);
    insta::assert_snapshot!(e, @r#"
        --emit custom writes CRMSNorm as one custom op, so it needs --target crmsnorm (for RMSNorm use --emit standard or --emit onnxruntime)
    "#);
}

/// A LayerNorm without γ and β whose output a non-linear op also reads (its readers are not
/// folded): the CRMSNorm output is decompressed to width D (without the decompression, the
/// MatMul's D-row weight read D−1 values).
const UNFOLDED_NO_AFFINE: &str = "
input %x: f32[2,3,8]
output %y: f32[2,3,8]
init @two: f32[] = [2]
init @eps: f32[] = [1e-5]
%m = ReduceMean[m](%x) axes=[-1] keepdims=1
%c = Sub[c](%x, %m)
%p = Pow[p](%c, @two)
%v = ReduceMean[v](%p) axes=[-1] keepdims=1
%a = Add[a](%v, @eps)
%s = Sqrt[s](%a)
%ln = Div[d](%c, %s)
%h = MatMul[fc](%ln, @w:f32[8,8])
%t = Tanh[t](%ln)
%u = MatMul[fc2](%t, @w2:f32[8,8])
%h2 = Add[r2](%h, %u)
%s2 = Add[residual](%x, %h2)
%y = LayerNormalization[ln_f](%s2, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5
";

#[test]
fn crms_unfolded_without_affine_is_decompressed() {
    check!(UNFOLDED_NO_AFFINE, crms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,3,8]
          20 initializers, 672 bytes inline
          %normopt/MatMul = MatMul[normopt/MatMul_1](%x, @normopt/shift_weights:f32[8,1])
          %normopt/Slice = Slice[normopt/Slice_1](%x, @normopt/starts:i64[1], @normopt/ends:i64[1], @normopt/axes:i64[1])
          %normopt/Sub = Sub[normopt/Sub_1](%normopt/Slice, %normopt/MatMul)
          %normopt/Pow = Pow[normopt/Pow_1](%normopt/Sub, @normopt/two:f32[])
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%normopt/Pow) axes=[-1] keepdims=1
          %normopt/Add = Add[normopt/Add_1](%normopt/ReduceMean, @normopt/epsilon:f32[])
          %normopt/Sqrt = Sqrt[normopt/Sqrt_1](%normopt/Add)
          %normopt/Div = Div[normopt/Div_1](%normopt/Sub, %normopt/Sqrt)
          %normopt/crms = Mul[normopt/Mul](%normopt/Div, @normopt/scale:f32[7])
          %normopt/ReduceSum = ReduceSum[normopt/ReduceSum_1](%normopt/crms, @normopt/axes_1:i64[1]) keepdims=1
          %normopt/Mul_1 = Mul[normopt/Mul_2](%normopt/ReduceSum, @normopt/k:f32[])
          %normopt/Sub_2 = Sub[normopt/Sub_3](%normopt/crms, %normopt/Mul_1)
          %normopt/Mul_3 = Mul[normopt/Mul_4](%normopt/ReduceSum, @normopt/tail:f32[])
          %ln = Concat[normopt/Concat](%normopt/Sub_2, %normopt/Mul_3) axis=-1
          %h = MatMul[fc](%ln, @w:f32[8,7])
          %t = Tanh[t](%ln)
          %u = MatMul[fc2](%t, @w2:f32[8,7])
          %h2 = Add[r2](%h, %u)
          %s2 = Add[residual](%normopt/Sub, %h2)
          %normopt/Pow_2 = Pow[normopt/Pow_3](%s2, @normopt/two_1:f32[])
          %normopt/ReduceMean_2 = ReduceMean[normopt/ReduceMean_3](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_2 = Add[normopt/Add_3](%normopt/ReduceMean_2, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_2)
          %normopt/Div_2 = Div[normopt/Div_3](%s2, %normopt/Sqrt_2)
          %normopt/crms_1 = Mul[normopt/Mul_5](%normopt/Div_2, @normopt/scale_1:f32[7])
          %normopt/ReduceSum_2 = ReduceSum[normopt/ReduceSum_3](%normopt/crms_1, @normopt/axes_2:i64[1]) keepdims=1
          %normopt/Mul_6 = Mul[normopt/Mul_7](%normopt/ReduceSum_2, @normopt/k_1:f32[])
          %normopt/Sub_4 = Sub[normopt/Sub_5](%normopt/crms_1, %normopt/Mul_6)
          %normopt/Mul_8 = Mul[normopt/Mul_9](%normopt/ReduceSum_2, @normopt/tail_1:f32[])
          %normopt/Concat_1 = Concat[normopt/Concat_2](%normopt/Sub_4, %normopt/Mul_8) axis=-1
          %normopt/Mul_10 = Mul[normopt/Mul_11](%normopt/Concat_1, @g_f:f32[8])
          %y = Add[normopt/Add_4](%normopt/Mul_10, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 7: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %u linear [fc2]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          norm m: decomposed LayerNorm -> CRMSNorm as decomposed RMSNorm + decompression, eps 9.999999747378752e-6, folded into []
          norm ln_f: LayerNormalization -> CRMSNorm as decomposed RMSNorm + decompression, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

#[test]
fn crms_custom_unfolded_without_affine_is_decompressed() {
    check!(UNFOLDED_NO_AFFINE, crms_custom(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,3,8]
          9 initializers, 552 bytes inline
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%x) axes=[-1] keepdims=1
          %normopt/Sub = Sub[normopt/Sub_1](%x, %normopt/ReduceMean)
          %normopt/Slice = Slice[normopt/Slice_1](%normopt/Sub, @normopt/starts:i64[1], @normopt/ends:i64[1], @normopt/axes:i64[1])
          %normopt/CRMSNormalization = ai.onnx_normopt:CRMSNormalization[normopt/CRMSNormalization_1](%normopt/Slice) axis=-1 epsilon=1e-5 width=8
          %normopt/ReduceSum = ReduceSum[normopt/ReduceSum_1](%normopt/CRMSNormalization, @normopt/axes_1:i64[1]) keepdims=1
          %normopt/Neg = Neg[normopt/Neg_1](%normopt/ReduceSum)
          %ln = Concat[normopt/Concat](%normopt/CRMSNormalization, %normopt/Neg) axis=-1
          %h = MatMul[fc](%ln, @w:f32[8,7])
          %t = Tanh[t](%ln)
          %u = MatMul[fc2](%t, @w2:f32[8,7])
          %h2 = Add[r2](%h, %u)
          %s2 = Add[residual](%normopt/Slice, %h2)
          %normopt/CRMSNormalization_2 = ai.onnx_normopt:CRMSNormalization[normopt/CRMSNormalization_3](%s2) axis=-1 epsilon=1e-5 width=8
          %normopt/ReduceSum_2 = ReduceSum[normopt/ReduceSum_3](%normopt/CRMSNormalization_2, @normopt/axes_2:i64[1]) keepdims=1
          %normopt/Neg_2 = Neg[normopt/Neg_3](%normopt/ReduceSum_2)
          %normopt/Concat_1 = Concat[normopt/Concat_2](%normopt/CRMSNormalization_2, %normopt/Neg_2) axis=-1
          %normopt/Mul = Mul[normopt/Mul_1](%normopt/Concat_1, @g_f:f32[8])
          %y = Add[normopt/Add](%normopt/Mul, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 7: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %u linear [fc2]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          norm m: decomposed LayerNorm -> CRMSNormalization + decompression, eps 9.999999747378752e-6, folded into []
          norm ln_f: LayerNormalization -> CRMSNormalization + decompression, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}
