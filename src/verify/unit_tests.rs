//! Unit tests of the pure parts: shape defaults, the generator, the comparison.

use std::collections::BTreeMap;

use super::inputs::Rng;
use super::report::{Accum, Runtime};
use super::spec::{resolve_shapes, Dim, ValueSpec};
use super::tensor::{from_f64_fn, HostTensor};
use crate::proto::data_type as dt;

fn spec(name: &str, dims: Vec<Dim>) -> ValueSpec {
    ValueSpec {
        name: name.into(),
        elem_type: dt::INT64,
        dims: Some(dims),
    }
}

#[test]
fn dynamic_dims_default_by_name_and_position() {
    let p = |s: &str| Dim::Param(s.into());
    let inputs = vec![
        spec("ids", vec![p("batch_size"), p("sequence_length")]),
        spec("mask", vec![p("batch_size"), p("sequence_length")]),
        spec(
            "pix",
            vec![p("s0"), Dim::Fixed(3), Dim::Unknown, p("width")],
        ),
        spec("pos", vec![p("n")]),
        spec("len_first", vec![p("seq"), Dim::Fixed(4)]),
    ];
    let (shapes, used) = resolve_shapes(&inputs, &BTreeMap::new());
    assert_eq!(shapes[0], vec![2, 8]);
    assert_eq!(shapes[1], vec![2, 8]);
    assert_eq!(shapes[2], vec![2, 3, 8, 8]);
    assert_eq!(shapes[3], vec![2]); // "n" looks like a batch
    assert_eq!(shapes[4], vec![8, 4]); // a length-like name is never a batch
    assert_eq!(used.get("pix[2]"), Some(&8));
    let overrides = BTreeMap::from([("sequence_length".into(), 3), ("pix[2]".into(), 5)]);
    let (shapes, used) = resolve_shapes(&inputs, &overrides);
    assert_eq!(shapes[0], vec![2, 3]);
    assert_eq!(shapes[2], vec![2, 3, 5, 8]);
    assert_eq!(used["sequence_length"], 3);
}

#[test]
fn generator_is_deterministic_and_roughly_standard_normal() {
    let mut a = Rng::new(1);
    let mut b = Rng::new(1);
    let xs: Vec<f64> = (0..20000).map(|_| a.normal()).collect();
    let ys: Vec<f64> = (0..20000).map(|_| b.normal()).collect();
    assert_eq!(xs, ys);
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
    assert!(
        mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
        "mean {mean} var {var}"
    );
    let mut c = Rng::new(2);
    assert!((0..1000).all(|_| c.below(7) < 7));
}

fn t(values: &[f64]) -> HostTensor {
    let mut it = values.iter().copied();
    from_f64_fn("y", dt::FLOAT, &[values.len()], || it.next().unwrap())
}

#[test]
fn comparison_is_relative_to_the_largest_reference_and_flags_non_finite() {
    let mut acc = Accum::new(Runtime::Tract, 0, "y", dt::FLOAT, None);
    acc.add(&t(&[1.0, -4.0, 2.0]), &t(&[1.0, -4.0, 2.0002]));
    let row = acc.finish();
    assert!(row.pass);
    assert!((row.max_abs - 2e-4).abs() < 1e-6);
    assert!((row.max_rel - 5e-5).abs() < 1e-6, "{}", row.max_rel);
    assert_eq!(row.max_ref, 4.0);

    let mut acc = Accum::new(Runtime::Ort, 0, "y", dt::FLOAT, None);
    acc.add(&t(&[1.0, 2.0]), &t(&[1.0, f64::NAN]));
    let row = acc.finish();
    assert!(!row.pass && row.nonfinite == 1, "{row:?}");

    // Same non-finite values in both: not a mismatch, but noted.
    let mut acc = Accum::new(Runtime::Ort, 0, "y", dt::FLOAT, None);
    acc.add(&t(&[f64::INFINITY, 2.0]), &t(&[f64::INFINITY, 2.0]));
    let row = acc.finish();
    assert!(
        row.pass && row.detail.as_deref().unwrap().contains("non-finite"),
        "{row:?}"
    );

    // All-zero reference: any difference is an infinite relative error.
    let mut acc = Accum::new(Runtime::Tract, 0, "y", dt::FLOAT, Some(0.5));
    acc.add(&t(&[0.0, 0.0]), &t(&[0.0, 1e-3]));
    let row = acc.finish();
    assert!(!row.pass && row.max_rel.is_infinite() && row.tolerance == 0.5);

    // Shapes and element types must match.
    let mut acc = Accum::new(Runtime::Tract, 0, "y", dt::FLOAT, None);
    acc.add(&t(&[1.0, 2.0]), &t(&[1.0, 2.0, 3.0]));
    assert!(!acc.finish().pass);
    let mut acc = Accum::new(Runtime::Tract, 0, "y", dt::FLOAT, None);
    let mut it = [1.0, 2.0].into_iter();
    let d = from_f64_fn("y", dt::DOUBLE, &[2], || it.next().unwrap());
    acc.add(&t(&[1.0, 2.0]), &d);
    assert!(!acc.finish().pass);

    // Integer outputs must match exactly, whatever --rtol says.
    let ints = |v: &[f64]| {
        let mut it = v.iter().copied();
        from_f64_fn("i", dt::INT64, &[v.len()], || it.next().unwrap())
    };
    let mut acc = Accum::new(Runtime::Tract, 0, "i", dt::INT64, Some(0.5));
    acc.add(&ints(&[100.0, 7.0]), &ints(&[100.0, 8.0]));
    let row = acc.finish();
    assert!(!row.pass && row.tolerance == 0.0);
}
