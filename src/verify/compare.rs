//! Checks on the two models and their outputs: same interface, inputs that fit the declared
//! shapes, output counts, and the element-wise comparison of A's and B's outputs.

use super::*;

pub(super) fn check_interfaces(a: &ModelSpec, b: &ModelSpec) -> Result<(), VerifyError> {
    let mismatch = |message: String| VerifyError::Mismatch {
        a: a.path.clone(),
        b: b.path.clone(),
        message,
    };
    let names = |v: &[spec::ValueSpec]| v.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
    let (mut ia, mut ib) = (names(&a.inputs), names(&b.inputs));
    ia.sort();
    ib.sort();
    if ia != ib {
        return Err(mismatch(format!(
            "inputs differ: A has {ia:?}, B has {ib:?}"
        )));
    }
    for i in &a.inputs {
        let j = b
            .inputs
            .iter()
            .find(|j| j.name == i.name)
            .expect("same names");
        if i.elem_type != j.elem_type {
            return Err(mismatch(format!(
                "input `{}` is {} in A but {} in B",
                i.name,
                crate::proto::data_type::name(i.elem_type),
                crate::proto::data_type::name(j.elem_type)
            )));
        }
    }
    if a.outputs.len() != b.outputs.len() {
        return Err(mismatch(format!(
            "A has {} outputs {:?}, B has {} {:?}",
            a.outputs.len(),
            names(&a.outputs),
            b.outputs.len(),
            names(&b.outputs)
        )));
    }
    for (k, (x, y)) in a.outputs.iter().zip(&b.outputs).enumerate() {
        if x.name != y.name {
            return Err(mismatch(format!(
                "output #{k} is `{}` in A but `{}` in B",
                x.name, y.name
            )));
        }
        if x.elem_type != y.elem_type && x.elem_type != 0 && y.elem_type != 0 {
            return Err(mismatch(format!(
                "output `{}` is {} in A but {} in B",
                x.name,
                crate::proto::data_type::name(x.elem_type),
                crate::proto::data_type::name(y.elem_type)
            )));
        }
    }
    Ok(())
}

/// Check that the generated shapes (from A) fit B's declared fixed dims.
pub(super) fn check_shapes_fit(
    a: &ModelSpec,
    b: &ModelSpec,
    sample: &[HostTensor],
) -> Result<(), VerifyError> {
    for t in sample {
        let Some(j) = b.inputs.iter().find(|j| j.name == t.name) else {
            continue;
        };
        let Some(dims) = &j.dims else { continue };
        let fits = dims.len() == t.shape.len()
            && dims
                .iter()
                .zip(&t.shape)
                .all(|(d, &s)| !matches!(d, Dim::Fixed(v) if *v != s));
        if !fits {
            return Err(VerifyError::Mismatch {
                a: a.path.clone(),
                b: b.path.clone(),
                message: format!(
                    "input `{}` gets shape {:?} from A's declaration, which B's declared shape \
                     {:?} does not accept",
                    t.name, t.shape, dims
                ),
            });
        }
    }
    Ok(())
}

/// The relative tolerance override for a value of `elem_type` computed by `a`: `rtol` when given;
/// else, for an f32/f64 value of a graph that computes in f16 or bf16, that type's tolerance (it
/// is only as exact as that); else `None` (the element type's own, [`default_tolerance`]).
pub(super) fn rtol_for(a: &ModelSpec, elem_type: i32, rtol: Option<f64>) -> Option<f64> {
    let tol_type = match a.low_precision {
        Some(low)
            if elem_type == crate::proto::data_type::FLOAT
                || elem_type == crate::proto::data_type::DOUBLE =>
        {
            low
        }
        _ => elem_type,
    };
    rtol.or((tol_type != elem_type).then(|| default_tolerance(tol_type)))
}

/// Compare B's outputs with A's (per sample, per output position) into one row per output.
pub(super) fn compare(
    runtime: Runtime,
    case: Option<&str>,
    a: &ModelSpec,
    outs_a: &[Vec<HostTensor>],
    outs_b: &[Vec<HostTensor>],
    rtol: Option<f64>,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for (k, o) in a.outputs.iter().enumerate() {
        let elem_type = if o.elem_type != 0 {
            o.elem_type
        } else {
            outs_a
                .first()
                .and_then(|s| s.get(k))
                .map(|t| t.elem_type)
                .unwrap_or(0)
        };
        let mut acc = Accum::new(runtime, k, &o.name, elem_type, rtol_for(a, elem_type, rtol));
        for (sa, sb) in outs_a.iter().zip(outs_b) {
            acc.add(&sa[k], &sb[k]);
        }
        let mut row = acc.finish();
        row.case = case.map(str::to_string);
        rows.push(row);
    }
    rows
}

/// Whether `e` is a runtime failing on a model (which, on model A, makes that runtime "not
/// run"), rather than a setup error (a CUDA request it cannot honour, an unreadable file, ...)
/// that stays an error.
pub(super) fn runtime_failure(e: &VerifyError) -> bool {
    matches!(e, VerifyError::Tract { .. } | VerifyError::Ort { .. })
}

/// Model B could not be run where A could: one failed row per output of A, or, when B ran out
/// of memory (the budget's estimate fell short of what the runtime allocated), a verification
/// that could not complete — a resource limit says nothing about the rewrite.
pub(super) fn b_failed(
    runtime: Runtime,
    case: Option<&str>,
    a: &ModelSpec,
    e: &VerifyError,
) -> Result<Vec<Row>, VerifyError> {
    if e.out_of_memory() {
        return Err(VerifyError::Incomplete(format!(
            "the rewritten model ran out of memory in {} where the original ran ({}); verify \
             with a larger --verify-budget or smaller --dim sizes",
            runtime.name(),
            e.short()
        )));
    }
    Ok(failed_rows(runtime, case, a, e))
}

/// One failed row per output of A: model B could not be run where A could.
fn failed_rows(runtime: Runtime, case: Option<&str>, a: &ModelSpec, e: &VerifyError) -> Vec<Row> {
    a.outputs
        .iter()
        .enumerate()
        .map(|(k, o)| {
            let mut acc = Accum::new(runtime, k, &o.name, o.elem_type, None);
            acc.fail(format!("B cannot be run: {}", e.short()));
            let mut row = acc.finish();
            row.case = case.map(str::to_string);
            row
        })
        .collect()
}

pub(super) fn check_count(
    runtime: Runtime,
    spec: &ModelSpec,
    outs: &[HostTensor],
) -> Result<(), VerifyError> {
    if outs.len() != spec.outputs.len() {
        let message = format!(
            "the graph declares {} outputs but {} returned {}",
            spec.outputs.len(),
            runtime.name(),
            outs.len()
        );
        return Err(match runtime {
            Runtime::Tract => VerifyError::Tract {
                stage: "run",
                path: spec.path.clone(),
                message,
            },
            Runtime::Ort => VerifyError::Ort {
                stage: "run",
                path: spec.path.clone(),
                message,
            },
        });
    }
    Ok(())
}
