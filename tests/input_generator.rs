//! Property test of the verifier's input generator (issue #11 item 5): random graph inputs whose
//! declared shapes mix fixed sizes, names, expressions over names (`a + b`,
//! `past_sequence_length + sequence_length`, `(a + 1) / 2`, `b - a`, divisions by zero),
//! unparsable text and unknown axes, with random `--dim` overrides, go through
//! `verify::generate_cases`. It must never panic; a success must give every input a shape of
//! its declared rank that agrees with the declaration (fixed sizes kept, one size per name,
//! expressions equal to their value over the sizes used, overrides obeyed) and tensors of that
//! shape; an error must name the dimension (its text) or the input.
//!
//! Iterations: `NORMOPT_PROP_ITERS` (default 400); seed `NORMOPT_PROP_SEED`.

mod common;

use common::build::{dp, dv, graph, model, node_in, save, vi_dims};
use common::rng::Rng;
use onnx_normopt::proto::{data_type as dt, tensor_shape_proto::Dimension, ValueInfoProto};
use onnx_normopt::verify::{self, VerifyOptions};
use std::collections::BTreeMap;
const NAMES: [&str; 8] = [
    "batch",
    "batch_size",
    "sequence_length",
    "past_sequence_length",
    "a",
    "b",
    "seq",
    "height",
];

/// An expression over names, printed as a `dim_param` and evaluated like the verifier should.
enum E {
    Int(i64),
    Name(&'static str),
    Bin(char, Box<E>, Box<E>),
}

impl E {
    fn text(&self) -> String {
        match self {
            E::Int(v) => v.to_string(),
            E::Name(n) => n.to_string(),
            E::Bin(op, a, b) => format!("({} {op} {})", a.text(), b.text()),
        }
    }
    /// `None`: overflow or division by zero.
    fn eval(&self, v: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        Some(match self {
            E::Int(x) => *x,
            E::Name(n) => v(n)?,
            E::Bin(op, a, b) => {
                let (x, y) = (a.eval(v)?, b.eval(v)?);
                match op {
                    '+' => x.checked_add(y)?,
                    '-' => x.checked_sub(y)?,
                    '*' => x.checked_mul(y)?,
                    '/' if y != 0 => x.checked_div_euclid(y)?,
                    '%' if y != 0 => x.checked_rem_euclid(y)?,
                    _ => return None,
                }
            }
        })
    }
    fn has_names(&self) -> bool {
        match self {
            E::Int(_) => false,
            E::Name(_) => true,
            E::Bin(_, a, b) => a.has_names() || b.has_names(),
        }
    }
    fn random(r: &mut Rng, depth: usize) -> E {
        if depth == 0 || r.below(3) == 0 {
            return if r.below(4) == 0 {
                E::Int(r.pick(&[0, 1, 2, 3, 7]))
            } else {
                E::Name(r.pick(&NAMES))
            };
        }
        let op = r.pick(&['+', '+', '+', '-', '*', '/', '%']);
        E::Bin(
            op,
            Box::new(E::random(r, depth - 1)),
            Box::new(E::random(r, depth - 1)),
        )
    }
}

/// One declared axis.
enum Axis {
    Fixed(i64),
    Name(&'static str),
    /// An expression (its text is the dim_param).
    Expr(E, String),
    /// Text the verifier cannot parse: treated as an opaque name.
    Garbage(String),
    Unknown,
}

const GARBAGE: [&str; 14] = [
    "garbage text",
    "a +",
    "((a",
    "1e3",
    "-",
    "a+b+",
    "🙂",
    "a\nb",
    "9223372036854775807 + 1",
    "a + 99999999999999999999",
    "sequence_length + sequence_length + sequence_length",
    "past_sequence_length+sequence_length",
    "  seq ",
    "a / (b - b)",
];

fn random_axis(r: &mut Rng) -> Axis {
    match r.below(10) {
        0 | 1 => Axis::Fixed(r.pick(&[0, 1, 2, 3, 5])),
        2..=4 => Axis::Name(r.pick(&NAMES)),
        5 => {
            let e = E::Bin(
                '+',
                Box::new(E::Name("past_sequence_length")),
                Box::new(E::Name("sequence_length")),
            );
            let t = if r.below(2) == 0 {
                "past_sequence_length + sequence_length".to_string()
            } else {
                e.text()
            };
            Axis::Expr(e, t)
        }
        6 | 7 => {
            let e = E::random(r, 3);
            let t = e.text();
            Axis::Expr(e, t)
        }
        8 => Axis::Garbage(r.pick(&GARBAGE).to_string()),
        _ => Axis::Unknown,
    }
}

fn dim_of(a: &Axis) -> Dimension {
    match a {
        Axis::Fixed(v) => dv(*v),
        Axis::Name(n) => dp(n),
        Axis::Expr(_, t) => dp(t),
        Axis::Garbage(t) => dp(t),
        Axis::Unknown => Dimension::default(),
    }
}

fn elem_size(t: i32) -> usize {
    match t {
        dt::FLOAT | dt::INT32 => 4,
        dt::INT64 | dt::DOUBLE => 8,
        dt::FLOAT16 => 2,
        _ => 1,
    }
}

#[test]
fn input_generator_properties() {
    let iters: usize = std::env::var("NORMOPT_PROP_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let seed: u64 = std::env::var("NORMOPT_PROP_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x1a2b_3c4d);
    let mut r = Rng(seed | 1);
    let tmp = tempfile::tempdir().unwrap();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failures: Vec<String> = Vec::new();
    let (mut ok, mut err) = (0, 0);
    for it in 0..iters {
        let n_inputs = 1 + r.below(3);
        let input_names = [
            "input_ids",
            "attention_mask",
            "x",
            "position_ids",
            "pixel_values",
        ];
        let mut decl: Vec<(String, i32, Vec<Axis>)> = Vec::new();
        for k in 0..n_inputs {
            let name = format!("{}{k}", r.pick(&input_names));
            let elem = r.pick(&[dt::FLOAT, dt::INT64, dt::BOOL, dt::FLOAT16, dt::INT32]);
            let rank = r.below(4);
            decl.push((name, elem, (0..rank).map(|_| random_axis(&mut r)).collect()));
        }
        let inputs: Vec<ValueInfoProto> = decl
            .iter()
            .map(|(n, e, axes)| vi_dims(n, *e, &axes.iter().map(dim_of).collect::<Vec<_>>()))
            .collect();
        let nodes = decl
            .iter()
            .map(|(n, _, _)| {
                node_in(
                    "Identity",
                    &format!("id_{n}"),
                    &[n],
                    &[&format!("{n}_out")],
                    vec![],
                )
            })
            .collect();
        let outputs = decl
            .iter()
            .map(|(n, e, _)| vi_dims(&format!("{n}_out"), *e, &[]))
            .collect();
        let m = model(graph(nodes, inputs, outputs, vec![]), 18);
        let path = save(tmp.path(), &format!("m{it}.onnx"), &m);
        // --dim overrides: names, whole expression texts, unknown axes.
        let mut dims: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..r.below(3) {
            let key = match r.below(3) {
                0 => r.pick(&NAMES).to_string(),
                1 => {
                    let (n, _, axes) = &decl[r.below(decl.len())];
                    match axes.get(r.below(axes.len().max(1))) {
                        Some(Axis::Expr(_, t)) | Some(Axis::Garbage(t)) => t.clone(),
                        _ => format!("{n}[0]"),
                    }
                }
                _ => "no_such_dim".to_string(),
            };
            dims.insert(key, r.pick(&[0, 1, 2, 4, 6]));
        }
        let opts = VerifyOptions {
            samples: 1 + r.below(2),
            seed: r.next_u64(),
            dims: dims.clone(),
            ..VerifyOptions::default()
        };
        let describe = || {
            let d: Vec<String> = decl
                .iter()
                .map(|(n, e, axes)| {
                    let a: Vec<String> = axes
                        .iter()
                        .map(|a| match a {
                            Axis::Fixed(v) => v.to_string(),
                            Axis::Name(n) => n.to_string(),
                            Axis::Expr(_, t) | Axis::Garbage(t) => format!("{t:?}"),
                            Axis::Unknown => "?".into(),
                        })
                        .collect();
                    format!("{n}:{e}[{}]", a.join(", "))
                })
                .collect();
            format!("inputs {} dims {dims:?}", d.join(" "))
        };
        let got = std::panic::catch_unwind(|| verify::generate_cases(&path, &opts));
        let cases = match got {
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("panic `{msg}` on {}", describe()));
                continue;
            }
            Ok(Err(e)) => {
                err += 1;
                let text = e.to_string();
                let names_it = decl.iter().any(|(n, _, axes)| {
                    text.contains(&format!("`{n}`"))
                        && axes.iter().any(|a| match a {
                            Axis::Expr(_, t) | Axis::Garbage(t) => text.contains(t.as_str()),
                            _ => false,
                        })
                });
                if !names_it || !text.contains(&path.display().to_string()) {
                    failures.push(format!(
                        "error names neither the dim nor the file: {text} on {}",
                        describe()
                    ));
                }
                // An error is right only when some expression cannot be computed.
                continue;
            }
            Ok(Ok(c)) => c,
        };
        ok += 1;
        if cases.is_empty() {
            failures.push(format!("no case generated on {}", describe()));
        }
        for case in &cases {
            let used = &case.dims;
            let mut problems: Vec<String> = Vec::new();
            if case.summary.len() != decl.len() {
                problems.push("one summary per input".into());
            }
            for (i, (name, elem, axes)) in decl.iter().enumerate() {
                let Some(sum) = case.summary.get(i) else {
                    continue;
                };
                let shape = &sum.shape;
                if shape.len() != axes.len() {
                    problems.push(format!("{name}: rank {} for {}", shape.len(), axes.len()));
                    continue;
                }
                for (ax, (a, &s)) in axes.iter().zip(shape).enumerate() {
                    let want: Option<usize> = match a {
                        Axis::Fixed(v) => Some(*v as usize),
                        Axis::Name(n) => {
                            Some(*dims.get(*n).or(used.get(*n)).unwrap_or(&usize::MAX))
                        }
                        Axis::Garbage(t) => used.get(t.as_str()).or(dims.get(t.as_str())).copied(),
                        // A constant expression is a fixed size (a `--dim` for its text
                        // matches nothing); otherwise a `--dim` for the whole text wins.
                        // A constant that is negative or cannot be computed is an opaque name
                        // (with a note), like unparsable text.
                        Axis::Expr(e, t)
                            if !e.has_names() && e.eval(&|_| None).is_none_or(|v| v < 0) =>
                        {
                            used.get(t.as_str()).or(dims.get(t.as_str())).copied()
                        }
                        Axis::Expr(e, t) => match dims.get(t.as_str()).filter(|_| e.has_names()) {
                            Some(&v) => Some(v),
                            None => e
                                .eval(&|n| used.get(n).map(|&v| v as i64))
                                .and_then(|v| usize::try_from(v).ok()),
                        },
                        Axis::Unknown => used.get(&format!("{name}[{ax}]")).copied(),
                    };
                    match want {
                        Some(w) if w != s => problems.push(format!(
                            "{name}[{ax}] is {s}, declared {} gives {w} (dims used {used:?})",
                            match a {
                                Axis::Expr(_, t) | Axis::Garbage(t) => t.clone(),
                                Axis::Name(n) => n.to_string(),
                                Axis::Fixed(v) => v.to_string(),
                                Axis::Unknown => "?".into(),
                            }
                        )),
                        // Garbage text that is a valid expression after all (e.g. with
                        // surrounding spaces) need not be in `used` under its text.
                        None if !matches!(a, Axis::Garbage(_)) => {
                            problems.push(format!("{name}[{ax}]: no size recorded in {used:?}"))
                        }
                        _ => {}
                    }
                }
                for sample in &case.samples {
                    let Some(t) = sample.get(i) else {
                        problems.push(format!("{name}: missing from a sample"));
                        continue;
                    };
                    let n: usize = shape.iter().product();
                    if t.name != *name
                        || t.shape != *shape
                        || t.elem_type != *elem
                        || t.data.len() != n * elem_size(*elem)
                    {
                        problems.push(format!(
                            "{name}: tensor {} {:?} {} bytes for shape {shape:?}",
                            t.name,
                            t.shape,
                            t.data.len()
                        ));
                    }
                }
            }
            if case.samples.iter().any(|s| s.len() != decl.len()) {
                problems.push("one tensor per input in every sample".into());
            }
            if !problems.is_empty() {
                failures.push(format!(
                    "case {}: {} on {}",
                    case.case,
                    problems.join("; "),
                    describe()
                ));
            }
        }
    }
    std::panic::set_hook(hook);
    eprintln!("input generator: {iters} models, {ok} generated, {err} refused with an error");
    assert!(
        ok > iters / 4 && err > 0,
        "the generator should mostly succeed: {ok} ok, {err} errors"
    );
    failures.dedup();
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
