//! Shape inference ([`crate::ir::shape::Shapes`]) on small graphs: each node output's dims.

use crate::ir::shape::Shapes;
use crate::testing::parse;
use std::fmt::Write;

/// Every node output of `text` with its inferred dims (`?` when the rank is unknown).
fn shapes(text: &str) -> String {
    let m = parse(text);
    let s = Shapes::infer(&m.graph);
    let mut out = String::new();
    for n in m.to_proto().unwrap().graph.unwrap().node {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            let dims = s
                .get(o)
                .map(|d| {
                    d.iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .map(|d| format!("[{d}]"))
                .unwrap_or_else(|| "?".into());
            let value = s
                .value(o)
                .map(|v| {
                    let v: Vec<String> = v.iter().map(|d| d.to_string()).collect();
                    format!(" = [{}]", v.join(","))
                })
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{} %{o}: {dims}{value}",
                n.op_type.as_deref().unwrap_or("")
            );
        }
    }
    out
}

#[test]
fn linear_ops() {
    insta::assert_snapshot!(shapes("
input %x: f32[batch,3,8]
input %x2: f32[6,8]
%m = MatMul[m](%x, @w:f32[8,4])
%g = Gemm[g](%x2, @wt:f32[5,8], @c:f32[5]) transB=1
%a = Add[a](%m, @b:f32[4])
%cv = Conv[conv](@img:f32[1,3,8,8], @k:f32[4,3,2,2]) strides=[2, 2]
"), @r#"
        MatMul %m: [batch,3,4]
        Gemm %g: [6,5]
        Add %a: [batch,3,4]
        Conv %cv: [1,4,4,4]
    "#);
}

/// Shape → Gather → Unsqueeze → Concat computes a Reshape target: its value is followed.
#[test]
fn shape_values_and_reshape() {
    insta::assert_snapshot!(shapes("
opset 13
input %x: f32[batch,3,8]
init @idx: i64[] = [1]
init @axes: i64[1] = [0]
init @minus1: i64[1] = [-1]
init @four: i64[1] = [4]
init @target: i64[3] = [0, -1, 4]
%s = Shape[s](%x)
%d1 = Gather[g](%s, @idx)
%u = Unsqueeze[u](%d1, @axes)
%t = Concat[cat](@minus1, %u, @four) axis=0
%r = Reshape[r](%x, %t)
%r2 = Reshape[r2](%x, @target)
"), @r#"
        Shape %s: [3] = [batch,3,8]
        Gather %d1: [] = [3]
        Unsqueeze %u: [1] = [3]
        Concat %t: [3] = [-1,3,4]
        Reshape %r: [?,3,4]
        Reshape %r2: [batch,?,4]
    "#);
}

#[test]
fn layout_ops() {
    insta::assert_snapshot!(shapes("
opset 13
input %x: f32[batch,3,8]
init @st: i64[1] = [0]
init @en: i64[1] = [2]
init @ax: i64[1] = [1]
init @ids: i64[2,3] = [0, 1, 2, 3, 4, 5]
%p = Transpose[p](%x) perm=[0, 2, 1]
%k = Concat[k](%x, %x) axis=1
%sl = Slice[sl](%x, @st, @en, @ax)
%rm = ReduceMean[rm](%x) axes=[-1] keepdims=1
%rs = ReduceMean[rs](%x) axes=[1] keepdims=0
%e = Gather[emb](@table:f32[10,8], @ids)
"), @r#"
        Transpose %p: [batch,8,3]
        Concat %k: [batch,6,8]
        Slice %sl: [batch,2,8]
        ReduceMean %rm: [batch,3,1]
        ReduceMean %rs: [batch,8]
        Gather %e: [2,3,8] = [?,?,?,?,?,?]
    "#);
}

/// Gather (axis 0) from a 2-D integer constant picks rows: the value of `Gather(T, [1])` with
/// T = [[2, 12], [3, 8]] is [3, 8], and a Reshape to it has shape [3, 8].
#[test]
fn gather_rows_of_a_2d_constant() {
    let out = shapes(
        "
input %x: f32[4,6]
init @table: i64[2,2] = [2, 12, 3, 8]
init @one: i64[1] = [1]
init @zero: i64[] = [0]
%row = Gather[g](@table, @one)
%t = Squeeze[sq](%row, @zero)
%r = Reshape[r](%x, %t)
",
    );
    assert!(out.contains("Reshape %r: [3,8]"), "{out}");
}

/// A graph output declared with its element type only says nothing about its rank, even where
/// a `value_info` of the same name has a shape (the soundness fuzzer's finding: a ViT's patch
/// `Transpose` exposed as such an output was taken for a scalar, and its stream lost a centring).
#[test]
fn an_output_without_a_shape_keeps_the_declared_rank() {
    use crate::proto::{
        tensor_shape_proto, type_proto, TensorShapeProto, TypeProto, ValueInfoProto,
    };
    let text = "input %x: f32[2,3]\noutput %t: f32[*]\n%t = Transpose[t](%x) perm=[1, 0]";
    let mut p = crate::ir::text::parse_proto(text).unwrap();
    let dim = |v: i64| tensor_shape_proto::Dimension {
        dim_value: Some(v),
        ..Default::default()
    };
    let g = p.graph.as_mut().unwrap();
    g.value_info.push(ValueInfoProto {
        name: Some("t".into()),
        r#type: Some(TypeProto {
            tensor_type: Some(type_proto::Tensor {
                elem_type: Some(crate::proto::data_type::FLOAT),
                shape: Some(TensorShapeProto {
                    dim: vec![dim(3), dim(2)],
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let s = Shapes::infer(&crate::ir::Graph::from_proto(p.graph.unwrap()));
    assert_eq!(s.get("t").map(<[_]>::len), Some(2));
}
