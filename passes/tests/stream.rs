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
          18 initializers, 448 bytes inline
          %normopt/MatMul = MatMul[normopt/MatMul_1](%x, @normopt/shift_weights:f32[8,1])
          %normopt/Slice = Slice[normopt/Slice_1](%x, @normopt/starts:i64[1], @normopt/ends:i64[1], @normopt/axes:i64[1])
          %normopt/Sub = Sub[normopt/Sub_1](%normopt/Slice, %normopt/MatMul)
          %normopt/Pow = Pow[normopt/Pow_1](%normopt/Sub, @normopt/two:f32[])
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%normopt/Pow) axes=[-1] keepdims=1
          %normopt/Add_1 = Add[normopt/Add_2](%normopt/ReduceMean, @normopt/epsilon:f32[])
          %normopt/Sqrt = Sqrt[normopt/Sqrt_1](%normopt/Add_1)
          %normopt/Div = Div[normopt/Div_1](%normopt/Sub, %normopt/Sqrt)
          %ln = Mul[normopt/Mul](%normopt/Div, @normopt/ones:f32[7])
          %normopt/matmul = MatMul[fc](%ln, @w:f32[7,7])
          %h = Add[normopt/Add](%normopt/matmul, @normopt/bias:f32[7])
          %s = Add[residual](%normopt/Sub, %h)
          %r = Reshape[flatten](%s, @shape:i64[2])
          %i = Identity[same](%r)
          %dr = Dropout[drop](%i)
          %normopt/Pow_2 = Pow[normopt/Pow_3](%dr, @normopt/two_1:f32[])
          %normopt/ReduceMean_2 = ReduceMean[normopt/ReduceMean_3](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_3 = Add[normopt/Add_4](%normopt/ReduceMean_2, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_3)
          %normopt/Div_2 = Div[normopt/Div_3](%dr, %normopt/Sqrt_2)
          %normopt/crms = Mul[normopt/Mul_1](%normopt/Div_2, @normopt/scale:f32[7])
          %normopt/ReduceSum = ReduceSum[normopt/ReduceSum_1](%normopt/crms, @normopt/axes_1:i64[1]) keepdims=1
          %normopt/Mul_2 = Mul[normopt/Mul_3](%normopt/ReduceSum, @normopt/k:f32[])
          %normopt/Sub_2 = Sub[normopt/Sub_3](%normopt/crms, %normopt/Mul_2)
          %normopt/Mul_4 = Mul[normopt/Mul_5](%normopt/ReduceSum, @normopt/tail:f32[])
          %normopt/Concat = Concat[normopt/Concat_1](%normopt/Sub_2, %normopt/Mul_4) axis=-1
          %normopt/Mul_6 = Mul[normopt/Mul_7](%normopt/Concat, @g_f:f32[8])
          %y = Add[normopt/Add_5](%normopt/Mul_6, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 7: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          norm ln: LayerNormalization -> CRMSNorm as decomposed RMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> CRMSNorm as decomposed RMSNorm + decompression, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
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
          17 initializers, 432 bytes inline
          %normopt/MatMul = MatMul[normopt/MatMul_1](%x, @normopt/shift_weights:f32[8,1])
          %normopt/Slice = Slice[normopt/Slice_1](%x, @normopt/starts:i64[1], @normopt/ends:i64[1], @normopt/axes:i64[1])
          %normopt/Sub = Sub[normopt/Sub_1](%normopt/Slice, %normopt/MatMul)
          %normopt/Pow = Pow[normopt/Pow_1](%normopt/Sub, @normopt/two:f32[])
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%normopt/Pow) axes=[-1] keepdims=1
          %normopt/Add_1 = Add[normopt/Add_2](%normopt/ReduceMean, @normopt/epsilon:f32[])
          %normopt/Sqrt = Sqrt[normopt/Sqrt_1](%normopt/Add_1)
          %normopt/Div = Div[normopt/Div_1](%normopt/Sub, %normopt/Sqrt)
          %ln = Mul[normopt/Mul](%normopt/Div, @normopt/ones:f32[7])
          %normopt/matmul = MatMul[fc](%ln, @w:f32[7,7])
          %h = Add[normopt/Add](%normopt/matmul, @normopt/bias:f32[7])
          %s = Add[residual](%normopt/Sub, %h)
          %sh = Shape[shape](%s)
          %r = Reshape[reshape](%s, %sh)
          %normopt/Pow_2 = Pow[normopt/Pow_3](%r, @normopt/two_1:f32[])
          %normopt/ReduceMean_2 = ReduceMean[normopt/ReduceMean_3](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_3 = Add[normopt/Add_4](%normopt/ReduceMean_2, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_3)
          %normopt/Div_2 = Div[normopt/Div_3](%r, %normopt/Sqrt_2)
          %normopt/crms = Mul[normopt/Mul_1](%normopt/Div_2, @normopt/scale:f32[7])
          %normopt/ReduceSum = ReduceSum[normopt/ReduceSum_1](%normopt/crms, @normopt/axes_1:i64[1]) keepdims=1
          %normopt/Mul_2 = Mul[normopt/Mul_3](%normopt/ReduceSum, @normopt/k:f32[])
          %normopt/Sub_2 = Sub[normopt/Sub_3](%normopt/crms, %normopt/Mul_2)
          %normopt/Mul_4 = Mul[normopt/Mul_5](%normopt/ReduceSum, @normopt/tail:f32[])
          %normopt/Concat = Concat[normopt/Concat_1](%normopt/Sub_2, %normopt/Mul_4) axis=-1
          %normopt/Mul_6 = Mul[normopt/Mul_7](%normopt/Concat, @g_f:f32[8])
          %y = Add[normopt/Add_5](%normopt/Mul_6, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 7: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          norm ln: LayerNormalization -> CRMSNorm as decomposed RMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> CRMSNorm as decomposed RMSNorm + decompression, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
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

// ---- The transfer rules (passes/README.md, "Analyse"): one case per rule. ----

/// A pre-LN block of width 8 on `%x` whose stream `%s` then goes through `tail`, which ends
/// in `%y`.
fn block_then(tail: &str, out: &str) -> String {
    format!(
        "
input %x: f32[2,3,8]
output %y: {out}
%ln = LayerNormalization[ln](%x, @g:f32[8], @beta:f32[8]) epsilon=1e-5
%h = MatMul[fc](%ln, @w:f32[8,8])
%s = Add[residual](%x, %h)
{tail}"
    )
}

/// A mean over tokens keeps each token's channel centring: m(mean_t x_t) = mean_t m(x_t) = 0.
#[test]
fn mean_over_tokens_keeps_centring() {
    let g = block_then(
        "%p = ReduceMean[pool](%s) axes=[1] keepdims=0
%y = LayerNormalization[ln_f](%p, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5",
        "f32[2,8]",
    );
    check!(&g, rms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,8]
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
          %p = ReduceMean[pool](%s) axes=[1] keepdims=0
          %normopt/Pow_2 = Pow[normopt/Pow_3](%p, @normopt/two_1:f32[])
          %normopt/ReduceMean_4 = ReduceMean[normopt/ReduceMean_5](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_3 = Add[normopt/Add_4](%normopt/ReduceMean_4, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_3)
          %normopt/Div_2 = Div[normopt/Div_3](%p, %normopt/Sqrt_2)
          %normopt/rms = Mul[normopt/Mul_1](%normopt/Div_2, @g_f:f32[8])
          %y = Add[normopt/Add_5](%normopt/rms, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 8: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          norm ln: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
    check!(&g, crms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,8]
          17 initializers, 432 bytes inline
          %normopt/MatMul = MatMul[normopt/MatMul_1](%x, @normopt/shift_weights:f32[8,1])
          %normopt/Slice = Slice[normopt/Slice_1](%x, @normopt/starts:i64[1], @normopt/ends:i64[1], @normopt/axes:i64[1])
          %normopt/Sub = Sub[normopt/Sub_1](%normopt/Slice, %normopt/MatMul)
          %normopt/Pow = Pow[normopt/Pow_1](%normopt/Sub, @normopt/two:f32[])
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%normopt/Pow) axes=[-1] keepdims=1
          %normopt/Add_1 = Add[normopt/Add_2](%normopt/ReduceMean, @normopt/epsilon:f32[])
          %normopt/Sqrt = Sqrt[normopt/Sqrt_1](%normopt/Add_1)
          %normopt/Div = Div[normopt/Div_1](%normopt/Sub, %normopt/Sqrt)
          %ln = Mul[normopt/Mul](%normopt/Div, @normopt/ones:f32[7])
          %normopt/matmul = MatMul[fc](%ln, @w:f32[7,7])
          %h = Add[normopt/Add](%normopt/matmul, @normopt/bias:f32[7])
          %s = Add[residual](%normopt/Sub, %h)
          %p = ReduceMean[pool](%s) axes=[1] keepdims=0
          %normopt/Pow_2 = Pow[normopt/Pow_3](%p, @normopt/two_1:f32[])
          %normopt/ReduceMean_2 = ReduceMean[normopt/ReduceMean_3](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_3 = Add[normopt/Add_4](%normopt/ReduceMean_2, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_3)
          %normopt/Div_2 = Div[normopt/Div_3](%p, %normopt/Sqrt_2)
          %normopt/crms = Mul[normopt/Mul_1](%normopt/Div_2, @normopt/scale:f32[7])
          %normopt/ReduceSum = ReduceSum[normopt/ReduceSum_1](%normopt/crms, @normopt/axes_1:i64[1]) keepdims=1
          %normopt/Mul_2 = Mul[normopt/Mul_3](%normopt/ReduceSum, @normopt/k:f32[])
          %normopt/Sub_2 = Sub[normopt/Sub_3](%normopt/crms, %normopt/Mul_2)
          %normopt/Mul_4 = Mul[normopt/Mul_5](%normopt/ReduceSum, @normopt/tail:f32[])
          %normopt/Concat = Concat[normopt/Concat_1](%normopt/Sub_2, %normopt/Mul_4) axis=-1
          %normopt/Mul_6 = Mul[normopt/Mul_7](%normopt/Concat, @g_f:f32[8])
          %y = Add[normopt/Add_5](%normopt/Mul_6, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 7: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          norm ln: LayerNormalization -> CRMSNorm as decomposed RMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> CRMSNorm as decomposed RMSNorm + decompression, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

/// Hiera's pooler: the hidden axis moves to axis 1 (Transpose), a global average over the
/// tokens keeps it, Flatten brings it back last.
#[test]
fn transpose_pool_flatten_follow_the_hidden_axis() {
    let g = block_then(
        "%t = Transpose[to_channels](%s) perm=[0, 2, 1]
%p = GlobalAveragePool[pool](%t)
%f = Flatten[flat](%p) axis=1
%y = LayerNormalization[ln_f](%f, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5",
        "f32[2,8]",
    );
    check!(&g, rms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,8]
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
          %t = Transpose[to_channels](%s) perm=[0, 2, 1]
          %p = GlobalAveragePool[pool](%t)
          %f = Flatten[flat](%p) axis=1
          %normopt/Pow_2 = Pow[normopt/Pow_3](%f, @normopt/two_1:f32[])
          %normopt/ReduceMean_4 = ReduceMean[normopt/ReduceMean_5](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_3 = Add[normopt/Add_4](%normopt/ReduceMean_4, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_3)
          %normopt/Div_2 = Div[normopt/Div_3](%f, %normopt/Sqrt_2)
          %normopt/rms = Mul[normopt/Mul_1](%normopt/Div_2, @g_f:f32[8])
          %y = Add[normopt/Add_5](%normopt/rms, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 8: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          norm ln: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
    check!(&g, crms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,8]
          17 initializers, 432 bytes inline
          %normopt/MatMul = MatMul[normopt/MatMul_1](%x, @normopt/shift_weights:f32[8,1])
          %normopt/Slice = Slice[normopt/Slice_1](%x, @normopt/starts:i64[1], @normopt/ends:i64[1], @normopt/axes:i64[1])
          %normopt/Sub = Sub[normopt/Sub_1](%normopt/Slice, %normopt/MatMul)
          %normopt/Pow = Pow[normopt/Pow_1](%normopt/Sub, @normopt/two:f32[])
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%normopt/Pow) axes=[-1] keepdims=1
          %normopt/Add_1 = Add[normopt/Add_2](%normopt/ReduceMean, @normopt/epsilon:f32[])
          %normopt/Sqrt = Sqrt[normopt/Sqrt_1](%normopt/Add_1)
          %normopt/Div = Div[normopt/Div_1](%normopt/Sub, %normopt/Sqrt)
          %ln = Mul[normopt/Mul](%normopt/Div, @normopt/ones:f32[7])
          %normopt/matmul = MatMul[fc](%ln, @w:f32[7,7])
          %h = Add[normopt/Add](%normopt/matmul, @normopt/bias:f32[7])
          %s = Add[residual](%normopt/Sub, %h)
          %t = Transpose[to_channels](%s) perm=[0, 2, 1]
          %p = GlobalAveragePool[pool](%t)
          %f = Flatten[flat](%p) axis=1
          %normopt/Pow_2 = Pow[normopt/Pow_3](%f, @normopt/two_1:f32[])
          %normopt/ReduceMean_2 = ReduceMean[normopt/ReduceMean_3](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_3 = Add[normopt/Add_4](%normopt/ReduceMean_2, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_3)
          %normopt/Div_2 = Div[normopt/Div_3](%f, %normopt/Sqrt_2)
          %normopt/crms = Mul[normopt/Mul_1](%normopt/Div_2, @normopt/scale:f32[7])
          %normopt/ReduceSum = ReduceSum[normopt/ReduceSum_1](%normopt/crms, @normopt/axes_1:i64[1]) keepdims=1
          %normopt/Mul_2 = Mul[normopt/Mul_3](%normopt/ReduceSum, @normopt/k:f32[])
          %normopt/Sub_2 = Sub[normopt/Sub_3](%normopt/crms, %normopt/Mul_2)
          %normopt/Mul_4 = Mul[normopt/Mul_5](%normopt/ReduceSum, @normopt/tail:f32[])
          %normopt/Concat = Concat[normopt/Concat_1](%normopt/Sub_2, %normopt/Mul_4) axis=-1
          %normopt/Mul_6 = Mul[normopt/Mul_7](%normopt/Concat, @g_f:f32[8])
          %y = Add[normopt/Add_5](%normopt/Mul_6, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 7: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          norm ln: LayerNormalization -> CRMSNorm as decomposed RMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> CRMSNorm as decomposed RMSNorm + decompression, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

/// A constant added while the hidden axis is not last (channels first) is centred along the
/// axis where the hidden axis is in it.
#[test]
fn constant_centred_along_a_moved_hidden_axis() {
    let g = block_then(
        "%t = Transpose[to_channels](%s) perm=[0, 2, 1]
%b = Add[channel_bias](%t, @c:f32[8,1])
%u = Transpose[back](%b) perm=[0, 2, 1]
%y = LayerNormalization[ln_f](%u, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5",
        "f32[2,3,8]",
    );
    check!(&g, rms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,3,8]
          10 initializers, 432 bytes inline
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
          %t = Transpose[to_channels](%s) perm=[0, 2, 1]
          %b = Add[channel_bias](%t, @c:f32[8,1])
          %u = Transpose[back](%b) perm=[0, 2, 1]
          %normopt/Pow_2 = Pow[normopt/Pow_3](%u, @normopt/two_1:f32[])
          %normopt/ReduceMean_4 = ReduceMean[normopt/ReduceMean_5](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_3 = Add[normopt/Add_4](%normopt/ReduceMean_4, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_3)
          %normopt/Div_2 = Div[normopt/Div_3](%u, %normopt/Sqrt_2)
          %normopt/rms = Mul[normopt/Mul_1](%normopt/Div_2, @g_f:f32[8])
          %y = Add[normopt/Add_5](%normopt/rms, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 8: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          leaf %c constant [channel_bias]: centred over its hidden axis 0; it reaches the stream through Add "channel_bias" (linear and the same on every channel: they pass a zero mean through)
          norm ln: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

/// Scaling each token by its own factor keeps the centring: m(s·x) = s·m(x).
#[test]
fn per_token_factor_keeps_centring() {
    let g = block_then(
        "%y = LayerNormalization[ln_f](%z, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5
%z = Mul[per_token](%s, %m)",
        "f32[2,3,8]",
    )
    .replace(
        "input %x: f32[2,3,8]",
        "input %x: f32[2,3,8]\ninput %m: f32[2,3,1]",
    );
    check!(&g, rms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          input  %m: f32[2,3,1]
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
          %z = Mul[per_token](%s, %m)
          %normopt/Pow_2 = Pow[normopt/Pow_3](%z, @normopt/two_1:f32[])
          %normopt/ReduceMean_4 = ReduceMean[normopt/ReduceMean_5](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_3 = Add[normopt/Add_4](%normopt/ReduceMean_4, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_3)
          %normopt/Div_2 = Div[normopt/Div_3](%z, %normopt/Sqrt_2)
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

/// Scaling each channel by its own factor (not a writer's LayerScale) does not: the stream is
/// refused, the reason names the node.
#[test]
fn per_channel_factor_is_observed() {
    let g = block_then(
        "%z = Mul[per_channel](%s, @lam:f32[8])
%y = LayerNormalization[ln_f](%z, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5",
        "f32[2,3,8]",
    );
    check_no_match!(&g, rms(), @r#"
        ln (LayerNormalization): "s" is read by Mul "per_channel" (scales the hidden axis per channel), which observes the mean; 1 explicit centering node(s) for 1 LayerNorm(s): no gain
        ln_f (LayerNormalization): 1 explicit centering node(s) for 1 LayerNorm(s): no gain
    "#);
}

/// Swin's patch merging: a Concat along the hidden axis of two parts of the stream. Each
/// centred part makes a centred join, but not the original join shifted by one value: the
/// merge's LayerNorm over 2D would see the difference of the parts' means (see
/// `concat_along_the_hidden_axis_is_not_a_shift`). The first stage is refused.
#[test]
fn concat_along_the_hidden_axis_is_observed() {
    let g = "
input %x: f32[2,4,8]
output %y: f32[2,2,16]
init @even: i64[1] = [0]
init @odd: i64[1] = [1]
init @end: i64[1] = [4]
init @ax: i64[1] = [1]
init @two: i64[1] = [2]
%ln = LayerNormalization[ln](%x, @g:f32[8], @beta:f32[8]) epsilon=1e-5
%h = MatMul[fc](%ln, @w:f32[8,8])
%s = Add[residual](%x, %h)
%a = Slice[even_tokens](%s, @even, @end, @ax, @two)
%b = Slice[odd_tokens](%s, @odd, @end, @ax, @two)
%c = Concat[merge](%a, %b) axis=-1
%y = LayerNormalization[merge_ln](%c, @g2:f32[16], @b2:f32[16]) epsilon=1e-5
";
    check_no_match!(g, rms(), @r#"
        ln (LayerNormalization): "a" is read by Concat "merge" (along the hidden axis: the parts are centred, their join is not a shift of the original), which observes the mean; "b" is read by Concat "merge" (along the hidden axis: the parts are centred, their join is not a shift of the original), which observes the mean; 1 explicit centering node(s) for 1 LayerNorm(s): no gain
        merge_ln (LayerNormalization): 1 explicit centering node(s) for 1 LayerNorm(s): no gain
    "#);
}

/// The identity behind [`concat_along_the_hidden_axis_is_observed`]: with x₁ = [1, 3] and
/// x₂ = [0, 0], LN(Concat(x₁, x₂)) ≠ RMS(Concat(C x₁, C x₂)).
#[test]
fn concat_along_the_hidden_axis_is_not_a_shift() {
    let ln = |v: &[f64]| {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64;
        v.iter().map(|x| (x - m) / var.sqrt()).collect::<Vec<_>>()
    };
    let rms = |v: &[f64]| {
        let ms = v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64;
        v.iter().map(|x| x / ms.sqrt()).collect::<Vec<_>>()
    };
    let centre = |v: &[f64]| {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        v.iter().map(|x| x - m).collect::<Vec<_>>()
    };
    let (x1, x2) = ([1.0, 3.0], [0.0, 0.0]);
    let joined: Vec<f64> = x1.iter().chain(&x2).copied().collect();
    let centred: Vec<f64> = centre(&x1).into_iter().chain(centre(&x2)).collect();
    assert!(
        centred.iter().sum::<f64>().abs() < 1e-12,
        "the join of centred parts is centred"
    );
    let (a, b) = (ln(&joined), rms(&centred));
    assert!(
        a.iter().zip(&b).any(|(p, q)| (p - q).abs() > 0.1),
        "{a:?} vs {b:?}"
    );
}

/// An op of a domain the analysis has no rule for: it may see the mean, and the stream value
/// it reads is not a leaf: refused, naming the node.
#[test]
fn op_without_a_rule_is_unknown() {
    let g = block_then(
        "%y = LayerNormalization[ln_f](%s, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5
%z = vendor.ops:Mystery[mystery](%s)",
        "f32[2,3,8]",
    )
    .replace(
        "output %y: f32[2,3,8]",
        "output %y: f32[2,3,8]\noutput %z: ?",
    );
    check_no_match!(&g, rms(), @r#"
        ln (LayerNormalization): cannot tell what the rewrite of "s" would change: vendor.ops:Mystery "mystery" (no rule for this op: it may see the mean)
        ln_f (LayerNormalization): cannot tell what the rewrite of "s" would change: vendor.ops:Mystery "mystery" (no rule for this op: it may see the mean)
    "#);
}

/// Two names for one value (an optimiser duplicated the MatMul): the split LayerNorm's `Sub`
/// reads one, its `ReduceMean` the other. Structurally equal nodes are one value: it is a
/// LayerNorm, and both writers are centred.
#[test]
fn duplicated_node_is_one_value() {
    let g = "
input %x: f32[2,3,8]
output %y: f32[2,3,8]
%h = MatMul[fc](%x, @w:f32[8,8])
%h2 = MatMul[fc_copy](%x, @w:f32[8,8])
%m = ReduceMean[rm](%h2) axes=[-1] keepdims=1
%c = Sub[sub](%h, %m)
%y = SimplifiedLayerNormalization[sln](%c, @g:f32[8]) axis=-1 epsilon=1e-5
";
    check!(g, rms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,3,8]
          5 initializers, 552 bytes inline
          %h = MatMul[fc](%x, @w_normopt:f32[8,8])
          %h2 = MatMul[fc_copy](%x, @w:f32[8,8])
          %normopt/Pow = Pow[normopt/Pow_1](%h, @normopt/two:f32[])
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%normopt/Pow) axes=[-1] keepdims=1
          %normopt/Add = Add[normopt/Add_1](%normopt/ReduceMean, @normopt/epsilon:f32[])
          %normopt/Sqrt = Sqrt[normopt/Sqrt_1](%normopt/Add)
          %normopt/Div = Div[normopt/Div_1](%h, %normopt/Sqrt)
          %y = Mul[normopt/Mul](%normopt/Div, @g:f32[8])

        rewritten 1
        stream 0 width 8 -> 8: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %h2 linear [fc_copy]: MatMul weight centred over its output axis
          norm sln: ReduceMean→Sub→SimplifiedLayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

/// Wav2Vec2 with `do_stable_layer_norm`: the feature projection P is read raw by the
/// positional Conv before the stream P + act(Conv(P)) reaches its first norm. P keeps its
/// value, and the sum is centred once (not P and the activation each).
#[test]
fn raw_read_before_the_first_norm_centres_the_sum_once() {
    let g = "
input %x: f32[2,3,8]
output %y: f32[2,3,8]
%p = MatMul[proj](%x, @wp:f32[8,8])
%pb = Add[proj_bias](%p, @bp:f32[8])
%t = Transpose[to_conv](%pb) perm=[0, 2, 1]
%c = Conv[pos_conv](%t, @wc:f32[8,8,3]) pads=[1, 1]
%a = Relu[act](%c)
%pt = Transpose[from_conv](%a) perm=[0, 2, 1]
%s0 = Add[add_pos](%pb, %pt)
%ln = LayerNormalization[ln](%s0, @g:f32[8], @beta:f32[8]) epsilon=1e-5
%h = MatMul[fc](%ln, @w:f32[8,8])
%s = Add[residual](%s0, %h)
%y = LayerNormalization[ln_f](%s, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5
";
    check!(g, rms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,3,8]
          12 initializers, 1456 bytes inline
          %p = MatMul[proj](%x, @wp:f32[8,8])
          %pb = Add[proj_bias](%p, @bp:f32[8])
          %t = Transpose[to_conv](%pb) perm=[0, 2, 1]
          %c = Conv[pos_conv](%t, @wc:f32[8,8,3]) pads=[1, 1]
          %a = Relu[act](%c)
          %pt = Transpose[from_conv](%a) perm=[0, 2, 1]
          %s0 = Add[add_pos](%pb, %pt)
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%s0) axes=[-1] keepdims=1
          %normopt/Sub = Sub[normopt/Sub_1](%s0, %normopt/ReduceMean)
          %normopt/Pow = Pow[normopt/Pow_1](%normopt/Sub, @normopt/two:f32[])
          %normopt/ReduceMean_2 = ReduceMean[normopt/ReduceMean_3](%normopt/Pow) axes=[-1] keepdims=1
          %normopt/Add_1 = Add[normopt/Add_2](%normopt/ReduceMean_2, @normopt/epsilon:f32[])
          %normopt/Sqrt = Sqrt[normopt/Sqrt_1](%normopt/Add_1)
          %normopt/Div = Div[normopt/Div_1](%normopt/Sub, %normopt/Sqrt)
          %ln = Mul[normopt/Mul](%normopt/Div, @normopt/ones:f32[8])
          %normopt/matmul = MatMul[fc](%ln, @w:f32[8,8])
          %h = Add[normopt/Add](%normopt/matmul, @normopt/bias:f32[8])
          %s = Add[residual](%normopt/Sub, %h)
          %normopt/Pow_2 = Pow[normopt/Pow_3](%s, @normopt/two_1:f32[])
          %normopt/ReduceMean_4 = ReduceMean[normopt/ReduceMean_5](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_3 = Add[normopt/Add_4](%normopt/ReduceMean_4, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_3)
          %normopt/Div_2 = Div[normopt/Div_3](%s, %normopt/Sqrt_2)
          %normopt/rms = Mul[normopt/Mul_1](%normopt/Div_2, @g_f:f32[8])
          %y = Add[normopt/Add_5](%normopt/rms, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 8: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %s0 explicit centering [add_pos]: x - ReduceMean(x): it is the first value computed from 2 explicit centrings' values: centred once
          norm ln: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
    check!(g, crms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,3,8]
          20 initializers, 1488 bytes inline
          %p = MatMul[proj](%x, @wp:f32[8,8])
          %pb = Add[proj_bias](%p, @bp:f32[8])
          %t = Transpose[to_conv](%pb) perm=[0, 2, 1]
          %c = Conv[pos_conv](%t, @wc:f32[8,8,3]) pads=[1, 1]
          %a = Relu[act](%c)
          %pt = Transpose[from_conv](%a) perm=[0, 2, 1]
          %s0 = Add[add_pos](%pb, %pt)
          %normopt/MatMul = MatMul[normopt/MatMul_1](%s0, @normopt/shift_weights:f32[8,1])
          %normopt/Slice = Slice[normopt/Slice_1](%s0, @normopt/starts:i64[1], @normopt/ends:i64[1], @normopt/axes:i64[1])
          %normopt/Sub = Sub[normopt/Sub_1](%normopt/Slice, %normopt/MatMul)
          %normopt/Pow = Pow[normopt/Pow_1](%normopt/Sub, @normopt/two:f32[])
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%normopt/Pow) axes=[-1] keepdims=1
          %normopt/Add_1 = Add[normopt/Add_2](%normopt/ReduceMean, @normopt/epsilon:f32[])
          %normopt/Sqrt = Sqrt[normopt/Sqrt_1](%normopt/Add_1)
          %normopt/Div = Div[normopt/Div_1](%normopt/Sub, %normopt/Sqrt)
          %ln = Mul[normopt/Mul](%normopt/Div, @normopt/ones:f32[7])
          %normopt/matmul = MatMul[fc](%ln, @w:f32[7,7])
          %h = Add[normopt/Add](%normopt/matmul, @normopt/bias:f32[7])
          %s = Add[residual](%normopt/Sub, %h)
          %normopt/Pow_2 = Pow[normopt/Pow_3](%s, @normopt/two_1:f32[])
          %normopt/ReduceMean_2 = ReduceMean[normopt/ReduceMean_3](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_3 = Add[normopt/Add_4](%normopt/ReduceMean_2, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_3)
          %normopt/Div_2 = Div[normopt/Div_3](%s, %normopt/Sqrt_2)
          %normopt/crms = Mul[normopt/Mul_1](%normopt/Div_2, @normopt/scale:f32[7])
          %normopt/ReduceSum = ReduceSum[normopt/ReduceSum_1](%normopt/crms, @normopt/axes_1:i64[1]) keepdims=1
          %normopt/Mul_2 = Mul[normopt/Mul_3](%normopt/ReduceSum, @normopt/k:f32[])
          %normopt/Sub_2 = Sub[normopt/Sub_3](%normopt/crms, %normopt/Mul_2)
          %normopt/Mul_4 = Mul[normopt/Mul_5](%normopt/ReduceSum, @normopt/tail:f32[])
          %normopt/Concat = Concat[normopt/Concat_1](%normopt/Sub_2, %normopt/Mul_4) axis=-1
          %normopt/Mul_6 = Mul[normopt/Mul_7](%normopt/Concat, @g_f:f32[8])
          %y = Add[normopt/Add_5](%normopt/Mul_6, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 7: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %s0 explicit centering [add_pos]: x - ReduceMean(x): it is the first value computed from 2 explicit centrings' values: centred once
          norm ln: LayerNormalization -> CRMSNorm as decomposed RMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> CRMSNorm as decomposed RMSNorm + decompression, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

/// nanoGPT's `ln2` under a soundness fuzz mutation: the normalised value (the Div before γ)
/// has a second reader, so γ and β are not part of the match and the norm has no affine.
/// CRMSNorm gives its readers the decompressed width-D vector (found by soundness_fuzz:
/// onnxruntime could not load the output, `Incompatible dimensions` at the γ Mul).
#[test]
fn norm_without_affine_and_a_second_reader_decompresses() {
    let g = "
input %x: f32[2,3,8]
output %y: f32[2,3,8]
output %r: f32[2,3,8]
init @two: f32[] = [2]
init @eps: f32[] = [1e-5]
%m = ReduceMean[rm](%x) axes=[-1] keepdims=1
%d = Sub[sub](%x, %m)
%sq = Pow[pow](%d, @two:f32[])
%var = ReduceMean[rm2](%sq) axes=[-1] keepdims=1
%ve = Add[add_eps](%var, @eps:f32[])
%sd = Sqrt[sqrt](%ve)
%n = Div[div](%d, %sd)
%ng = Mul[gamma](%n, @g:f32[8])
%ln = Add[beta](%ng, @beta:f32[8])
%r = Relu[peek](%n)
%h = MatMul[fc](%ln, @w:f32[8,8])
%s = Add[residual](%x, %h)
%y = LayerNormalization[ln_f](%s, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5
";
    check!(g, crms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,3,8]
          output %r: f32[2,3,8]
          21 initializers, 512 bytes inline
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
          %n = Concat[normopt/Concat](%normopt/Sub_2, %normopt/Mul_3) axis=-1
          %ng = Mul[gamma](%n, @g:f32[8])
          %ln = Add[beta](%ng, @beta:f32[8])
          %r = Relu[peek](%n)
          %h = MatMul[fc](%ln, @w:f32[8,7])
          %s = Add[residual](%normopt/Sub, %h)
          %normopt/Pow_2 = Pow[normopt/Pow_3](%s, @normopt/two_1:f32[])
          %normopt/ReduceMean_2 = ReduceMean[normopt/ReduceMean_3](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_2 = Add[normopt/Add_3](%normopt/ReduceMean_2, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_2)
          %normopt/Div_2 = Div[normopt/Div_3](%s, %normopt/Sqrt_2)
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
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          norm rm: decomposed LayerNorm -> CRMSNorm as decomposed RMSNorm + decompression, eps 9.999999747378752e-6, folded into []
          norm ln_f: LayerNormalization -> CRMSNorm as decomposed RMSNorm + decompression, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

/// A norm without affine read only by a linear op: CRMSNorm folds the last entry into it.
#[test]
fn norm_without_affine_folds_the_last_entry_in() {
    let g = "
input %x: f32[2,3,8]
output %y: f32[2,3,8]
init @two: f32[] = [2]
init @eps: f32[] = [1e-5]
%m = ReduceMean[rm](%x) axes=[-1] keepdims=1
%d = Sub[sub](%x, %m)
%sq = Pow[pow](%d, @two:f32[])
%var = ReduceMean[rm2](%sq) axes=[-1] keepdims=1
%ve = Add[add_eps](%var, @eps:f32[])
%sd = Sqrt[sqrt](%ve)
%ln = Div[div](%d, %sd)
%h = MatMul[fc](%ln, @w:f32[8,8])
%s = Add[residual](%x, %h)
%y = LayerNormalization[ln_f](%s, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5
";
    check!(g, crms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,3,8]
          16 initializers, 404 bytes inline
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
          %s = Add[residual](%normopt/Sub, %h)
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
          norm rm: decomposed LayerNorm -> CRMSNorm as decomposed RMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> CRMSNorm as decomposed RMSNorm + decompression, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

/// A per-token choice between two stream values keeps the centring.
#[test]
fn where_per_token_keeps_centring() {
    let g = block_then(
        "%z = Where[choose](%keep, %s, %x)
%y = LayerNormalization[ln_f](%z, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5",
        "f32[2,3,8]",
    )
    .replace(
        "input %x: f32[2,3,8]",
        "input %x: f32[2,3,8]\ninput %k: f32[2,3,1]\n%keep = Greater[gt](%k, @zero:f32[])",
    );
    check!(&g, rms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          input  %k: f32[2,3,1]
          output %y: f32[2,3,8]
          10 initializers, 404 bytes inline
          %keep = Greater[gt](%k, @zero:f32[])
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
          %z = Where[choose](%keep, %s, %normopt/Sub)
          %normopt/Pow_2 = Pow[normopt/Pow_3](%z, @normopt/two_1:f32[])
          %normopt/ReduceMean_4 = ReduceMean[normopt/ReduceMean_5](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_3 = Add[normopt/Add_4](%normopt/ReduceMean_4, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_3)
          %normopt/Div_2 = Div[normopt/Div_3](%z, %normopt/Sqrt_2)
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

/// A pick along the hidden axis read only for its shape (mBART's TorchScript export sizes its
/// positions with `inputs_embeds[:, :, -1]`): the picked values change, the shape does not
/// (Gather replaces the hidden axis by the indices' shape), so it does not observe the mean —
/// also under CRMSNorm, where index −1 still exists on the width D−1.
#[test]
fn pick_read_only_for_its_shape_keeps_the_stream() {
    let g = block_then(
        "%p = Gather[pick](%s, @last) axis=-1
%sz = Shape[size](%p)
%y = LayerNormalization[ln_f](%s, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5",
        "f32[2,3,8]",
    )
    .replace(
        "output %y: f32[2,3,8]",
        "output %y: f32[2,3,8]\noutput %sz: i64[2]\ninit @last: i64[] = [-1]",
    );
    check!(&g, crms(), @r#"
        graph "text"
          input  %x: f32[2,3,8]
          output %y: f32[2,3,8]
          output %sz: i64[2]
          18 initializers, 440 bytes inline
          %normopt/MatMul = MatMul[normopt/MatMul_1](%x, @normopt/shift_weights:f32[8,1])
          %normopt/Slice = Slice[normopt/Slice_1](%x, @normopt/starts:i64[1], @normopt/ends:i64[1], @normopt/axes:i64[1])
          %normopt/Sub = Sub[normopt/Sub_1](%normopt/Slice, %normopt/MatMul)
          %normopt/Pow = Pow[normopt/Pow_1](%normopt/Sub, @normopt/two:f32[])
          %normopt/ReduceMean = ReduceMean[normopt/ReduceMean_1](%normopt/Pow) axes=[-1] keepdims=1
          %normopt/Add_1 = Add[normopt/Add_2](%normopt/ReduceMean, @normopt/epsilon:f32[])
          %normopt/Sqrt = Sqrt[normopt/Sqrt_1](%normopt/Add_1)
          %normopt/Div = Div[normopt/Div_1](%normopt/Sub, %normopt/Sqrt)
          %ln = Mul[normopt/Mul](%normopt/Div, @normopt/ones:f32[7])
          %normopt/matmul = MatMul[fc](%ln, @w:f32[7,7])
          %h = Add[normopt/Add](%normopt/matmul, @normopt/bias:f32[7])
          %s = Add[residual](%normopt/Sub, %h)
          %p = Gather[pick](%s, @last:i64[]) axis=-1
          %sz = Shape[size](%p)
          %normopt/Pow_2 = Pow[normopt/Pow_3](%s, @normopt/two_1:f32[])
          %normopt/ReduceMean_2 = ReduceMean[normopt/ReduceMean_3](%normopt/Pow_2) axes=[-1] keepdims=1
          %normopt/Add_3 = Add[normopt/Add_4](%normopt/ReduceMean_2, @normopt/epsilon_1:f32[])
          %normopt/Sqrt_2 = Sqrt[normopt/Sqrt_3](%normopt/Add_3)
          %normopt/Div_2 = Div[normopt/Div_3](%s, %normopt/Sqrt_2)
          %normopt/crms = Mul[normopt/Mul_1](%normopt/Div_2, @normopt/scale:f32[7])
          %normopt/ReduceSum = ReduceSum[normopt/ReduceSum_1](%normopt/crms, @normopt/axes_1:i64[1]) keepdims=1
          %normopt/Mul_2 = Mul[normopt/Mul_3](%normopt/ReduceSum, @normopt/k:f32[])
          %normopt/Sub_2 = Sub[normopt/Sub_3](%normopt/crms, %normopt/Mul_2)
          %normopt/Mul_4 = Mul[normopt/Mul_5](%normopt/ReduceSum, @normopt/tail:f32[])
          %normopt/Concat = Concat[normopt/Concat_1](%normopt/Sub_2, %normopt/Mul_4) axis=-1
          %normopt/Mul_6 = Mul[normopt/Mul_7](%normopt/Concat, @g_f:f32[8])
          %y = Add[normopt/Add_5](%normopt/Mul_6, @b_f:f32[8])

        rewritten 2
        stream 0 width 8 -> 7: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          norm ln: LayerNormalization -> CRMSNorm as decomposed RMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> CRMSNorm as decomposed RMSNorm + decompression, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

/// The same pick at index D−1 = 7 would not exist on the compressed width: it observes the
/// stream.
#[test]
fn pick_beyond_the_compressed_width_is_observed() {
    let g = block_then(
        "%p = Gather[pick](%s, @last) axis=-1
%sz = Shape[size](%p)
%y = LayerNormalization[ln_f](%s, @g_f:f32[8], @b_f:f32[8]) epsilon=1e-5",
        "f32[2,3,8]",
    )
    .replace(
        "output %y: f32[2,3,8]",
        "output %y: f32[2,3,8]\noutput %sz: i64[2]\ninit @last: i64[] = [7]",
    );
    check_no_match!(&g, rms(), @r#"
        ln (LayerNormalization): "s" is read by Gather "pick" (it gathers along the hidden axis), which observes the mean
        ln_f (LayerNormalization): "s" is read by Gather "pick" (it gathers along the hidden axis), which observes the mean
    "#);
}
