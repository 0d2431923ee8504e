//! Residual-stream analysis (`passes/stream/`): what a stream passes through, how its
//! sources and writers are classified, and the streams it refuses (observed, Post-LN).

use super::block;
use crate::testing::{check, check_no_match, crms, rms};

/// Identity, Dropout and a Reshape that keeps the hidden axis last carry the stream.
const PASS_THROUGH: &str = "
input %x: f32[2,3,8]
output %y: f32[6,8]
init @shape: i64[2] = [6, 8]
%ln = LayerNormalization[ln](%x, @g:f32[8], @beta:f32[8]) epsilon=1e-5
%h = MatMul[fc](%ln, @w:f32[8,8])
%s = Add[residual](%x, %h)
%r = Reshape[flatten](%s, @shape)
%i = Identity[same](%r)
%dr = Dropout[drop](%i)
%y = LayerNormalization[ln_f](%dr, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5
";

#[test]
fn pass_through_ops() {
    check!(PASS_THROUGH, rms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[6,8]
          10 initializers, 416 bytes inline
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%x) axes=[-1] keepdims=1
          %normopt/Sub = Sub[normopt/Sub_1](%x, %normopt/ReduceMean)
          %normopt/Pow = Pow[normopt/Pow_1](%normopt/Sub, @normopt/two:f32[])
          %normopt/ReduceMean_2 = ReduceMean[normopt/ReduceMean_3](%normopt/Pow) axes=[-1] keepdims=1
          %normopt/Add_1 = Add[normopt/Add_2](%normopt/ReduceMean_2, @normopt/epsilon:f32[])
          %normopt/Sqrt = Sqrt[normopt/Sqrt_1](%normopt/Add_1)
          %normopt/Div = Div[normopt/Div_1](%normopt/Sub, %normopt/Sqrt)
          %ln = Mul[normopt/Mul](%normopt/Div, @normopt/ones:f32[8])
          %normopt/matmul = MatMul[fc](%ln, @w:f32[8,8])
          %h = Add[normopt/Add](%normopt/matmul, @normopt/bias:f32[8])
          %s = Add[residual](%normopt/Sub, %h)
          %r = Reshape[flatten](%s, @shape:i64[2])
          %i = Identity[same](%r)
          %dr = Dropout[drop](%i)
          %normopt/Pow_2 = Pow[normopt/Pow_3](%dr, @normopt/two_1:f32[])
          %normopt/ReduceMean_4 = ReduceMean[normopt/ReduceMean_5](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_3 = Add[normopt/Add_4](%normopt/ReduceMean_4, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_3)
          %normopt/Div_2 = Div[normopt/Div_3](%dr, %normopt/Sqrt_2)
          %normopt/rms = Mul[normopt/Mul_1](%normopt/Div_2, @g_f:f32[8])
          %y = Add[normopt/Add_5](%normopt/rms, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 8: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          norm ln: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

/// Compressed to D−1, the Reshape's constant target that hard-codes D says D−1.
#[test]
fn pass_through_ops_compressed() {
    let out = crate::passes::run(crate::testing::parse(PASS_THROUGH), &crms()).unwrap();
    let shape = out.model.constant("shape").unwrap().unwrap();
    assert_eq!(shape.data, [6.0, 7.0]);
    check!(PASS_THROUGH, crms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[6,8]
          17 initializers, 384 bytes inline
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%x) axes=[-1] keepdims=1
          %normopt/Sub = Sub[normopt/Sub_1](%x, %normopt/ReduceMean)
          %normopt/Slice = Slice[normopt/Slice_1](%normopt/Sub, @normopt/starts:i64[1], @normopt/ends:i64[1], @normopt/axes:i64[1])
          %normopt/Mul = Mul[normopt/Mul_1](%normopt/Slice, %normopt/Slice)
          %normopt/ReduceSum = ReduceSum[normopt/ReduceSum_1](%normopt/Mul, @normopt/axes_1:i64[1]) keepdims=1
          %normopt/ReduceSum_2 = ReduceSum[normopt/ReduceSum_3](%normopt/Slice, @normopt/axes_2:i64[1]) keepdims=1
          %normopt/Mul_2 = Mul[normopt/Mul_3](%normopt/ReduceSum_2, %normopt/ReduceSum_2)
          %normopt/Add_1 = Add[normopt/Add_2](%normopt/ReduceSum, %normopt/Mul_2)
          %normopt/Mul_4 = Mul[normopt/Mul_5](%normopt/Add_1, @normopt/inv_width:f32[])
          %normopt/Add_3 = Add[normopt/Add_4](%normopt/Mul_4, @normopt/epsilon:f32[])
          %normopt/Sqrt = Sqrt[normopt/Sqrt_1](%normopt/Add_3)
          %ln = Div[normopt/Div](%normopt/Slice, %normopt/Sqrt)
          %normopt/matmul = MatMul[fc](%ln, @w:f32[7,7])
          %h = Add[normopt/Add](%normopt/matmul, @normopt/bias:f32[7])
          %s = Add[residual](%normopt/Slice, %h)
          %r = Reshape[flatten](%s, @shape:i64[2])
          %i = Identity[same](%r)
          %dr = Dropout[drop](%i)
          %normopt/Mul_6 = Mul[normopt/Mul_7](%dr, %dr)
          %normopt/ReduceSum_4 = ReduceSum[normopt/ReduceSum_5](%normopt/Mul_6, @normopt/axes_3:i64[1]) keepdims=1
          %normopt/ReduceSum_6 = ReduceSum[normopt/ReduceSum_7](%dr, @normopt/axes_4:i64[1]) keepdims=1
          %normopt/Mul_8 = Mul[normopt/Mul_9](%normopt/ReduceSum_6, %normopt/ReduceSum_6)
          %normopt/Add_5 = Add[normopt/Add_6](%normopt/ReduceSum_4, %normopt/Mul_8)
          %normopt/Mul_10 = Mul[normopt/Mul_11](%normopt/Add_5, @normopt/inv_width_1:f32[])
          %normopt/Add_7 = Add[normopt/Add_8](%normopt/Mul_10, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_7)
          %normopt/Div_1 = Div[normopt/Div_2](%dr, %normopt/Sqrt_2)
          %normopt/ReduceSum_8 = ReduceSum[normopt/ReduceSum_9](%normopt/Div_1, @normopt/axes_5:i64[1]) keepdims=1
          %normopt/Neg = Neg[normopt/Neg_1](%normopt/ReduceSum_8)
          %normopt/Concat = Concat[normopt/Concat_1](%normopt/Div_1, %normopt/Neg) axis=-1
          %normopt/Mul_12 = Mul[normopt/Mul_13](%normopt/Concat, @g_f:f32[8])
          %y = Add[normopt/Add_9](%normopt/Mul_12, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 7: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          norm ln: LayerNormalization -> decomposed CRMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> decomposed CRMSNorm + decompression, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

/// `Shape` reads no values: it does not observe the mean (and a Reshape of the stream to its
/// own shape stays right when the stream is compressed).
#[test]
fn shape_reads_no_values() {
    let g = "
input %x: f32[2,3,8]
output %y: f32[2,3,8]
%ln = LayerNormalization[ln](%x, @g:f32[8], @beta:f32[8]) epsilon=1e-5
%h = MatMul[fc](%ln, @w:f32[8,8])
%s = Add[residual](%x, %h)
%sh = Shape[shape](%s)
%r = Reshape[reshape](%s, %sh)
%y = LayerNormalization[ln_f](%r, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5
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
          %normopt/Add_1 = Add[normopt/Add_2](%normopt/ReduceMean_2, @normopt/epsilon:f32[])
          %normopt/Sqrt = Sqrt[normopt/Sqrt_1](%normopt/Add_1)
          %normopt/Div = Div[normopt/Div_1](%normopt/Sub, %normopt/Sqrt)
          %ln = Mul[normopt/Mul](%normopt/Div, @normopt/ones:f32[8])
          %normopt/matmul = MatMul[fc](%ln, @w:f32[8,8])
          %h = Add[normopt/Add](%normopt/matmul, @normopt/bias:f32[8])
          %s = Add[residual](%normopt/Sub, %h)
          %sh = Shape[shape](%s)
          %r = Reshape[reshape](%s, %sh)
          %normopt/Pow_2 = Pow[normopt/Pow_3](%r, @normopt/two_1:f32[])
          %normopt/ReduceMean_4 = ReduceMean[normopt/ReduceMean_5](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_3 = Add[normopt/Add_4](%normopt/ReduceMean_4, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_3)
          %normopt/Div_2 = Div[normopt/Div_3](%r, %normopt/Sqrt_2)
          %normopt/rms = Mul[normopt/Mul_1](%normopt/Div_2, @g_f:f32[8])
          %y = Add[normopt/Add_5](%normopt/rms, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 8: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          norm ln: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
    check!(g, crms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,3,8]
          16 initializers, 368 bytes inline
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%x) axes=[-1] keepdims=1
          %normopt/Sub = Sub[normopt/Sub_1](%x, %normopt/ReduceMean)
          %normopt/Slice = Slice[normopt/Slice_1](%normopt/Sub, @normopt/starts:i64[1], @normopt/ends:i64[1], @normopt/axes:i64[1])
          %normopt/Mul = Mul[normopt/Mul_1](%normopt/Slice, %normopt/Slice)
          %normopt/ReduceSum = ReduceSum[normopt/ReduceSum_1](%normopt/Mul, @normopt/axes_1:i64[1]) keepdims=1
          %normopt/ReduceSum_2 = ReduceSum[normopt/ReduceSum_3](%normopt/Slice, @normopt/axes_2:i64[1]) keepdims=1
          %normopt/Mul_2 = Mul[normopt/Mul_3](%normopt/ReduceSum_2, %normopt/ReduceSum_2)
          %normopt/Add_1 = Add[normopt/Add_2](%normopt/ReduceSum, %normopt/Mul_2)
          %normopt/Mul_4 = Mul[normopt/Mul_5](%normopt/Add_1, @normopt/inv_width:f32[])
          %normopt/Add_3 = Add[normopt/Add_4](%normopt/Mul_4, @normopt/epsilon:f32[])
          %normopt/Sqrt = Sqrt[normopt/Sqrt_1](%normopt/Add_3)
          %ln = Div[normopt/Div](%normopt/Slice, %normopt/Sqrt)
          %normopt/matmul = MatMul[fc](%ln, @w:f32[7,7])
          %h = Add[normopt/Add](%normopt/matmul, @normopt/bias:f32[7])
          %s = Add[residual](%normopt/Slice, %h)
          %sh = Shape[shape](%s)
          %r = Reshape[reshape](%s, %sh)
          %normopt/Mul_6 = Mul[normopt/Mul_7](%r, %r)
          %normopt/ReduceSum_4 = ReduceSum[normopt/ReduceSum_5](%normopt/Mul_6, @normopt/axes_3:i64[1]) keepdims=1
          %normopt/ReduceSum_6 = ReduceSum[normopt/ReduceSum_7](%r, @normopt/axes_4:i64[1]) keepdims=1
          %normopt/Mul_8 = Mul[normopt/Mul_9](%normopt/ReduceSum_6, %normopt/ReduceSum_6)
          %normopt/Add_5 = Add[normopt/Add_6](%normopt/ReduceSum_4, %normopt/Mul_8)
          %normopt/Mul_10 = Mul[normopt/Mul_11](%normopt/Add_5, @normopt/inv_width_1:f32[])
          %normopt/Add_7 = Add[normopt/Add_8](%normopt/Mul_10, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_7)
          %normopt/Div_1 = Div[normopt/Div_2](%r, %normopt/Sqrt_2)
          %normopt/ReduceSum_8 = ReduceSum[normopt/ReduceSum_9](%normopt/Div_1, @normopt/axes_5:i64[1]) keepdims=1
          %normopt/Neg = Neg[normopt/Neg_1](%normopt/ReduceSum_8)
          %normopt/Concat = Concat[normopt/Concat_1](%normopt/Div_1, %normopt/Neg) axis=-1
          %normopt/Mul_12 = Mul[normopt/Mul_13](%normopt/Concat, @g_f:f32[8])
          %y = Add[normopt/Add_9](%normopt/Mul_12, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 7: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          norm ln: LayerNormalization -> decomposed CRMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> decomposed CRMSNorm + decompression, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

/// Sources and writers: an embedding table (Gather), a MatMul writer, its bias (a constant),
/// and a graph input (explicit centering).
#[test]
fn sources_and_writers() {
    let g = "
input %ids: i64[2,3]
input %extra: f32[2,3,8]
output %y: f32[2,3,8]
%e = Gather[embed](@table:f32[10,8], %ids)
%x = Add[add_extra](%e, %extra)
%ln = LayerNormalization[ln](%x, @g:f32[8], @beta:f32[8]) epsilon=1e-5
%h = MatMul[fc](%ln, @w:f32[8,8])
%hb = Add[fc_bias](%h, @b:f32[8])
%s = Add[residual](%x, %hb)
%y = LayerNormalization[ln_f](%s, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5
";
    check!(g, rms(), @r#"
        graph "text"
          input  %ids: i64[2,3]
          input  %extra: f32[2,3,8]
          output %y: f32[2,3,8]
          10 initializers, 720 bytes inline
          %e = Gather[embed](@table:f32[10,8], %ids)
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%extra) axes=[-1] keepdims=1
          %normopt/Sub = Sub[normopt/Sub_1](%extra, %normopt/ReduceMean)
          %x = Add[add_extra](%e, %normopt/Sub)
          %normopt/Pow = Pow[normopt/Pow_1](%x, @normopt/two:f32[])
          %normopt/ReduceMean_2 = ReduceMean[normopt/ReduceMean_3](%normopt/Pow) axes=[-1] keepdims=1
          %normopt/Add = Add[normopt/Add_1](%normopt/ReduceMean_2, @normopt/epsilon:f32[])
          %normopt/Sqrt = Sqrt[normopt/Sqrt_1](%normopt/Add)
          %normopt/Div = Div[normopt/Div_1](%x, %normopt/Sqrt)
          %ln = Mul[normopt/Mul](%normopt/Div, @normopt/ones:f32[8])
          %h = MatMul[fc](%ln, @w:f32[8,8])
          %hb = Add[fc_bias](%h, @b:f32[8])
          %s = Add[residual](%x, %hb)
          %normopt/Pow_2 = Pow[normopt/Pow_3](%s, @normopt/two_1:f32[])
          %normopt/ReduceMean_4 = ReduceMean[normopt/ReduceMean_5](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_2 = Add[normopt/Add_3](%normopt/ReduceMean_4, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_2)
          %normopt/Div_2 = Div[normopt/Div_3](%s, %normopt/Sqrt_2)
          %normopt/rms = Mul[normopt/Mul_1](%normopt/Div_2, @g_f:f32[8])
          %y = Add[normopt/Add_4](%normopt/rms, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 8: rewritten
          leaf %e embedding [embed]: table rows centred
          leaf %extra explicit centering []: x - ReduceMean(x): "extra" is a graph input
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %b constant [fc_bias]: centred over the last axis
          norm ln: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

/// A stream value read by a non-linear op observes the mean: the stream is left alone.
#[test]
fn observed_by_a_nonlinear_reader() {
    let g =
        block("%ln = LayerNormalization[ln](%x, @g:f32[8], @beta:f32[8]) epsilon=1e-5").replace(
            "output %y: f32[2,3,8]",
            "output %y: f32[2,3,8]\noutput %t: f32[2,3,8]",
        ) + "%t = Tanh[peek](%s)\n";
    check_no_match!(&g, rms(), @r#"
        ln (LayerNormalization): "s" is read by Tanh "peek", which observes the mean
        ln_f (LayerNormalization): "s" is read by Tanh "peek", which observes the mean
    "#);
}

/// A stream value that is a graph output observes the mean.
#[test]
fn observed_as_a_graph_output() {
    let g = block("%ln = LayerNormalization[ln](%x, @g:f32[8], @beta:f32[8]) epsilon=1e-5")
        .replace(
            "output %y: f32[2,3,8]",
            "output %y: f32[2,3,8]\noutput %s: f32[2,3,8]",
        );
    check_no_match!(&g, rms(), @r#"
        ln (LayerNormalization): "s" is a graph output
        ln_f (LayerNormalization): "s" is a graph output
    "#);
}

/// Post-LN (BERT): the LayerNorm sits after the residual Add, and its output is both the
/// next block's residual and its linear branch's input. There is no zero-mean stream.
#[test]
fn post_ln_is_refused() {
    let g = "
input %x: f32[2,3,8]
output %y: f32[2,3,8]
%h = MatMul[fc1](%x, @w1:f32[8,8])
%s = Add[res1](%x, %h)
%a = LayerNormalization[ln1](%s, @g1:f32[8], @b1:f32[8]) epsilon=1e-5
%h2 = MatMul[fc2](%a, @w2:f32[8,8])
%s2 = Add[res2](%a, %h2)
%y = LayerNormalization[ln2](%s2, @g2:f32[8], @b2:f32[8]) epsilon=1e-5
";
    check_no_match!(g, rms(), @r#"
        ln1 (LayerNormalization): 1 explicit centering node(s) for 1 LayerNorm(s): no gain
        ln2 (LayerNormalization): Post-LN: the output of norm "ln1" is both the residual stream and read by MatMul "fc2" (the norm sits after the residual Add); 1 explicit centering node(s) for 1 LayerNorm(s): no gain
    "#);
}

/// A quantized model (`quantize_dynamic`: `DynamicQuantizeLinear → MatMulInteger → Cast →
/// Mul(scale) → Add(bias)`; the text form cannot hold u8 constants, so the integer weight is an
/// input here): its writers' integer weights cannot be centred, so each needs an explicit
/// centering node; the reason says that the model is quantized, not only "no gain".
#[test]
fn quantized_writers_are_named() {
    let g = "
input %x: f32[2,3,8]
input %w: u8[8,8]
input %wz: u8[]
output %y: f32[2,3,8]
%a = LayerNormalization[ln1](%x, @g1:f32[8], @b1:f32[8]) epsilon=1e-5
%q, %qs, %qz = DynamicQuantizeLinear[dql](%a)
%mi = MatMulInteger[fc_quant](%q, %w, %qz, %wz)
%mf = Cast[cast](%mi) to=1
%sc = Mul[scale_mul](%qs, @ws:f32[])
%h = Mul[scale](%mf, %sc)
%hb = Add[bias](%h, @bias:f32[8])
%s = Add[res](%x, %hb)
%y = LayerNormalization[ln2](%s, @g2:f32[8], @b2:f32[8]) epsilon=1e-5
";
    check_no_match!(g, rms(), @r#"
        ln1 (LayerNormalization): the model is quantized: 1 writer of the stream ("fc_quant") has integer weights, which cannot be centred exactly; rewrite the float model, then quantize it; 2 explicit centering node(s) for 2 LayerNorm(s): no gain
        ln2 (LayerNormalization): the model is quantized: 1 writer of the stream ("fc_quant") has integer weights, which cannot be centred exactly; rewrite the float model, then quantize it; 2 explicit centering node(s) for 2 LayerNorm(s): no gain
    "#);
}

/// A stream read only by RMSNorms is already what the rewrite makes.
#[test]
fn already_rmsnorm() {
    let g = "
input %x: f32[2,3,8]
output %y: f32[2,3,8]
%ln = SimplifiedLayerNormalization[rms](%x, @g:f32[8]) axis=-1 epsilon=1e-5
%h = MatMul[fc](%ln, @w:f32[8,8])
%s = Add[residual](%x, %h)
%y = SimplifiedLayerNormalization[rms_f](%s, @g_f:f32[8]) axis=-1 epsilon=1e-5
";
    check_no_match!(g, rms(), @r#"
        rms (SimplifiedLayerNormalization): already RMSNorm: no LayerNorm reads this stream; 1 explicit centering node(s) for 0 LayerNorm(s): no gain
        rms_f (SimplifiedLayerNormalization): already RMSNorm: no LayerNorm reads this stream; 1 explicit centering node(s) for 0 LayerNorm(s): no gain
    "#);
}
