//! The text form of graphs ([`crate::ir::text`]): parse, dump, errors.

use crate::ir::{dump::dump, text};
use crate::testing::{check, rms};

const PRE_LN: &str = "
input %x: f32[2,3,8]
output %y: f32[2,3,8]
init @w: f32[8,8] = random(1)
init @b: f32[8] = random(2)
%ln = LayerNormalization[ln](%x, @g:f32[8], @beta:f32[8]) axis=-1 epsilon=1e-5
%h = MatMul[fc](%ln, @w)
%hb = Add[fc_bias](%h, @b)
%s = Add[residual](%x, %hb)
%y = LayerNormalization[ln_f](%s, @g2:f32[8], @beta2:f32[8]) epsilon=1e-5
";

#[test]
fn first() {
    check!(PRE_LN, rms(), @r#"
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
          %normopt/rms = Mul[normopt/Mul_1](%normopt/Div_2, @g2:f32[8])
          %y = Add[normopt/Add_4](%normopt/rms, @beta2:f32[8])

        rewritten 2
        stream 0 width 8 -> 8: rewritten
          leaf %h linear [fc]: MatMul weight centred over its output axis
          leaf %x explicit centering []: x - ReduceMean(x): "x" is a graph input
          leaf %b constant [fc_bias]: centred over the last axis
          norm ln: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [fc]
          norm ln_f: LayerNormalization -> decomposed RMSNorm, eps 9.999999747378752e-6, folded into [], kept affine: "y" is a graph output or read by a subgraph
    "#);
}

#[test]
fn dump_of_parse_is_stable() {
    let once = dump(&text::parse(PRE_LN).unwrap().graph);
    let twice = dump(&text::parse(&once).unwrap().graph);
    assert_eq!(once, twice);
}
