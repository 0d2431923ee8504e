//! The text form of graphs ([`crate::ir::text`]): values, attributes, the round trip through
//! the dump, and errors that name the line.

use crate::ir::{dump::dump, text};
use crate::proto::attribute_type as at;

const PRE_LN: &str = "
graph \"tiny\"
input %x: f32[batch,3,8]
output %y: f32[batch,3,8]
init @w: f32[8,8] = random(1)
%ln = LayerNormalization[ln](%x, @g:f32[8], @beta:f32[8]) axis=-1 epsilon=1e-5
%h = MatMul[fc](%ln, @w)
%hb = Add[fc_bias](%h, @b:f32[8])
%s = Add[residual](%x, %hb)
%y = LayerNormalization[ln_f](%s, @g2:f32[8], @beta2:f32[8]) epsilon=1e-5
";

#[test]
fn dump_of_parse_is_stable() {
    let once = dump(&text::parse(PRE_LN).unwrap().graph);
    let twice = dump(&text::parse(&once).unwrap().graph);
    assert_eq!(once, twice);
    insta::assert_snapshot!(once, @r#"
        graph "tiny"
          input  %x: f32[batch,3,8]
          output %y: f32[batch,3,8]
          6 initializers, 416 bytes inline
          %ln = LayerNormalization[ln](%x, @g:f32[8], @beta:f32[8]) axis=-1 epsilon=1e-5
          %h = MatMul[fc](%ln, @w:f32[8,8])
          %hb = Add[fc_bias](%h, @b:f32[8])
          %s = Add[residual](%x, %hb)
          %y = LayerNormalization[ln_f](%s, @g2:f32[8], @beta2:f32[8]) epsilon=1e-5
    "#);
}

#[test]
fn constant_values() {
    let m = text::parse(
        "
input %x: f32[2,4]
output %y: f32[2,4]
init @a: f32[2,2] = [1, 2.5, -3, 4e-1]
init @half: f32[4] = fill(0.5)
init @r: f64[3] = random(3)
init @ids: i64[3] = [0, 7, -2]
init @eps: f32[] = [1e-5]
%y = Add[add](%x, @half)
",
    )
    .unwrap();
    let get = |n: &str| m.constant(n).unwrap().unwrap();
    assert_eq!(get("a").data, [1.0, 2.5, -3.0, 0.4f32 as f64]);
    assert_eq!(get("a").dims, [2, 2]);
    assert_eq!(get("half").data, [0.5; 4]);
    let r = get("r").data;
    assert!(r.iter().all(|v| (-1.0..1.0).contains(v)), "{r:?}");
    assert!(r[0] != r[1] && r[1] != r[2], "{r:?}");
    let again = text::parse("output %r: f64[3]\ninit @r: f64[3] = random(3)\n%o = Identity[i](@r)");
    assert_eq!(again.unwrap().constant("r").unwrap().unwrap().data, r);
    assert_eq!(get("ids").data, [0.0, 7.0, -2.0]);
    assert!(get("eps").dims.is_empty());
    assert_eq!(get("eps").data, [1e-5f32 as f64]);
}

/// A typed constant with no `init` line gets values seeded by its name: the same in every
/// parse, different between names.
#[test]
fn undeclared_constants_are_seeded_by_name() {
    let g = "input %x: f32[4]\noutput %y: f32[4]\n%a = Add[a](%x, @p:f32[4])\n%y = Add[b](%a, @q:f32[4])";
    let (m1, m2) = (text::parse(g).unwrap(), text::parse(g).unwrap());
    let p = m1.constant("p").unwrap().unwrap().data;
    assert_eq!(p, m2.constant("p").unwrap().unwrap().data);
    assert_ne!(p, m1.constant("q").unwrap().unwrap().data);
}

#[test]
fn attributes_of_each_kind() {
    let m = text::parse(
        "
input %x: f32[2,3,4]
output %y: f32[4,3,2]
%y = Custom[c](%x) perm=[2, 1, 0] scales=[1.0, 0.5] mode=\"a \\\"b\\\"\" alpha=2e0 axis=-1 empty=[]
",
    )
    .unwrap();
    let n = &m.to_proto().unwrap().graph.unwrap().node[0];
    let a = |name: &str| {
        n.attribute
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
            .unwrap()
    };
    assert_eq!(
        (a("perm").r#type, a("perm").ints.clone()),
        (Some(at::INTS), vec![2, 1, 0])
    );
    assert_eq!(
        (a("scales").r#type, a("scales").floats.clone()),
        (Some(at::FLOATS), vec![1.0, 0.5])
    );
    assert_eq!(a("mode").s.as_deref(), Some(&b"a \"b\""[..]));
    assert_eq!(
        (a("alpha").r#type, a("alpha").f),
        (Some(at::FLOAT), Some(2.0))
    );
    assert_eq!((a("axis").r#type, a("axis").i), (Some(at::INT), Some(-1)));
    assert_eq!(a("empty").r#type, Some(at::INTS));
    // And back through the dump.
    let d = dump(&m.graph);
    assert_eq!(d, dump(&text::parse(&d).unwrap().graph));
}

#[test]
fn domains_slots_and_opsets() {
    let m = text::parse(
        "
opset 18
input %a: f32[2,8]
input %b: f32[2,8]
output %y: f32[2,8]
%y, _, _, %sum = com.microsoft:SkipLayerNormalization[](%a, %b, @g:f32[8], _, _) epsilon=1e-5
",
    )
    .unwrap();
    assert_eq!(m.onnx_opset(), 18);
    assert!(m.imports("com.microsoft"));
    let n = &m.to_proto().unwrap().graph.unwrap().node[0];
    assert_eq!(n.output, ["y", "", "", "sum"]);
    assert_eq!(n.input, ["a", "b", "g", "", ""]);
    assert_eq!(n.name, None);
    assert_eq!(n.domain.as_deref(), Some("com.microsoft"));
}

fn error(t: &str) -> String {
    text::parse(t).unwrap_err().to_string()
}

#[test]
fn errors_name_the_line() {
    insta::assert_snapshot!(error("input %x: f33[2]"), @r#"
        <text>: invalid model: line 1: unknown element type "f33": "input %x: f33[2]"
    "#);
    insta::assert_snapshot!(error("input %x: f32[2]\n\ninit @w: f32[2,2] = [1, 2, 3]"), @r#"
        <text>: invalid model: line 3: constant @w has 4 elements, the list 3: "init @w: f32[2,2] = [1, 2, 3]"
    "#);
    insta::assert_snapshot!(error("input %x: f32[2]\n%y = Relu[r](%x"), @r#"
        <text>: invalid model: line 2: expected `)` after the inputs: "%y = Relu[r](%x"
    "#);
    insta::assert_snapshot!(error("input %x: f32[2]\n%y = Add[a](%x, @w)"), @r#"
        <text>: invalid model: line 2: constant @w has no `init` line above and no type here: "%y = Add[a](%x, @w)"
    "#);
    insta::assert_snapshot!(error("init @w: f32[2] = [1, 2]\ninit @w: f32[2] = [1, 2]"), @r#"
        <text>: invalid model: line 2: constant @w is declared twice: "init @w: f32[2] = [1, 2]"
    "#);
    insta::assert_snapshot!(error("input %x: f32[2]\n%y = Add[a](%x, x)"), @r#"
        <text>: invalid model: line 2: input "x" is neither %value, @constant nor _: "%y = Add[a](%x, x)"
    "#);
    insta::assert_snapshot!(error("input %x: f32[2]\n%y = Add[a](%x, %x) t=<graph 1 nodes>"), @r#"
        <text>: invalid model: line 2: attribute t: tensor and graph attributes have no text form: "%y = Add[a](%x, %x) t=<graph 1 nodes>"
    "#);
    insta::assert_snapshot!(error("input %x: f32[2]\nwhat is this"), @r#"
        <text>: invalid model: line 2: expected a header line or `outputs = Op[name](inputs) attrs`: "what is this"
    "#);
}

/// A parsed graph is checked like a loaded file: an undefined value is refused, by name.
#[test]
fn undefined_values_are_refused() {
    insta::assert_snapshot!(error("input %x: f32[2]\noutput %y: f32[2]\n%y = Add[a](%x, %z)"), @r#"
        <text>: invalid model: node "a" (Add) reads undefined value "z"
    "#);
}
