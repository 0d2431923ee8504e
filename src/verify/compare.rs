//! Checks on the two models and their outputs: same interface, inputs that fit the declared
//! shapes, output counts, and the element-wise comparison of A's and B's outputs.

use super::tensor::from_f64_fn;
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

/// Whether a case with a filled cache exercises it: run the original (`run`) again on `samples`
/// with every non-empty past input `x` replaced by `1 − x`, and compare the outputs that are not
/// the cache itself with `outs` (the original's outputs on `samples`). `None` when the case
/// has no filled past input, or the second run fails.
/// The positions in `sample` of the filled (non-empty, float) past-cache inputs.
pub(super) fn filled_cache_inputs(sample: &[HostTensor]) -> Vec<usize> {
    sample
        .iter()
        .enumerate()
        .filter(|(_, t)| {
            super::tensor::is_float(t.elem_type)
                && !t.is_empty()
                && spec::looks_like_cache_input(&t.name)
        })
        .map(|(k, _)| k)
        .collect()
}

pub(super) fn cache_check(
    runtime: Runtime,
    spec: &ModelSpec,
    samples: &[Vec<HostTensor>],
    outs: &[Vec<HostTensor>],
    run: impl FnOnce(&[Vec<HostTensor>]) -> Result<Vec<Vec<HostTensor>>, VerifyError>,
) -> Option<CacheCheck> {
    let first = samples.first()?;
    let past = filled_cache_inputs(first);
    if past.is_empty() {
        return None;
    }
    let changed: Vec<Vec<HostTensor>> = samples
        .iter()
        .map(|s| {
            s.iter()
                .enumerate()
                .map(|(k, t)| {
                    if !past.contains(&k) {
                        return t.clone();
                    }
                    let v = t.to_f64().unwrap_or_default();
                    let mut it = v.iter();
                    from_f64_fn(&t.name, t.elem_type, &t.shape, || {
                        1.0 - it.next().copied().unwrap_or(0.0)
                    })
                })
                .collect()
        })
        .collect();
    let again = run(&changed).ok()?;
    let compared: Vec<usize> = {
        let not_cache: Vec<usize> = spec
            .outputs
            .iter()
            .enumerate()
            .filter(|(_, o)| {
                let l = o.name.to_ascii_lowercase();
                !(l.starts_with("present") || spec::looks_like_cache_input(&o.name))
            })
            .map(|(k, _)| k)
            .collect();
        if not_cache.is_empty() {
            (0..spec.outputs.len()).collect()
        } else {
            not_cache
        }
    };
    let pick = |o: &[Vec<HostTensor>]| -> Vec<HostTensor> {
        o.iter()
            .flat_map(|s| compared.iter().filter_map(|&k| s.get(k).cloned()))
            .collect()
    };
    let change = report::max_rel(&pick(outs), &pick(&again))?;
    // More than rounding: ten times the loosest tolerance of the outputs compared.
    let tol = compared
        .iter()
        .filter_map(|&k| outs.first()?.get(k))
        .map(|t| default_tolerance(t.elem_type))
        .fold(0f64, f64::max);
    Some(CacheCheck {
        runtime,
        perturbed: past.iter().map(|&k| first[k].name.clone()).collect(),
        outputs: compared
            .iter()
            .map(|&k| spec.outputs[k].name.clone())
            .collect(),
        max_rel_change: change,
        reads: change > 10.0 * tol,
    })
}

/// Draws of nudged originals for the floor; more when the rewrite differs beyond the float
/// tolerance (a near-tie the rewrite crossed is crossed by about half of the draws).
const FLOOR_DRAWS: (usize, usize) = (4, 16);

/// Measure the original's own floor ([`QuantFloor`]) in onnxruntime: run it with its
/// [`ModelSpec::nudge_targets`] moved by one ulp on each case's samples, against its outputs
/// there (`refs[k]`), then judge `rows` against it — a row that failed on numbers alone passes
/// when its difference is within the floor (tract rows too: the floor is the model's).
#[allow(clippy::too_many_arguments)]
pub(super) fn quant_floor(
    env: &ort::environment::Environment,
    lib: &Path,
    spec: &ModelSpec,
    opts: &VerifyOptions,
    cases: &[GeneratedInputs],
    refs: &[Option<Vec<Vec<HostTensor>>>],
    rows: &mut [Row],
) -> QuantFloor {
    let mut q = QuantFloor {
        ops: spec.quantized.clone(),
        nudged: spec.nudge_targets.clone(),
        draws: 0,
        floor: BTreeMap::new(),
        rewrite: BTreeMap::new(),
        not_measured: None,
    };
    for r in rows.iter().filter(|r| r.runtime == Runtime::Ort) {
        let w = q.rewrite.entry(r.output.clone()).or_insert(0.0);
        *w = w.max(r.max_rel);
    }
    let numeric_fail = |r: &Row| !r.pass && r.detail.is_none() && r.nonfinite == 0;
    if spec.nudge_targets.is_empty() {
        q.not_measured = Some("the graph has no float norm weights to nudge".into());
        return q;
    }
    if refs.iter().all(Option::is_none) {
        q.not_measured = Some("onnxruntime did not run the original".into());
        return q;
    }
    let draws = if rows.iter().any(numeric_fail) {
        FLOOR_DRAWS.1
    } else {
        FLOOR_DRAWS.0
    };
    for d in 0..draws {
        let mut run = || -> Result<(), String> {
            let inits =
                spec::quant::nudged(&spec.path, &spec.nudge_targets, 0x5eed_0000 + d as u64)?;
            let mut m = ort_rt::OrtModel::load_with(
                env,
                lib,
                &spec.path,
                opts.ort_optimize,
                opts.ort_device,
                &inits,
            )
            .map_err(|e| e.short())?;
            for (c, r) in cases.iter().zip(refs) {
                let Some(r) = r else { continue };
                let outs = run_ort_with(&mut m, spec, &c.samples).map_err(|e| e.short())?;
                for (k, o) in spec.outputs.iter().enumerate() {
                    let a: Vec<HostTensor> = r.iter().filter_map(|s| s.get(k).cloned()).collect();
                    let b: Vec<HostTensor> =
                        outs.iter().filter_map(|s| s.get(k).cloned()).collect();
                    if let Some(x) = report::max_rel(&a, &b) {
                        let f = q.floor.entry(o.name.clone()).or_insert(0.0);
                        *f = f.max(x);
                    }
                }
            }
            Ok(())
        };
        if let Err(e) = run() {
            q.not_measured = Some(format!("a nudged copy of the original did not run: {e}"));
            q.floor.clear();
            return q;
        }
        q.draws = d + 1;
    }
    for r in rows.iter_mut() {
        let Some(&fl) = q.floor.get(&r.output) else {
            continue;
        };
        r.floor = Some(fl);
        if numeric_fail(r) && r.max_rel <= fl {
            r.pass = true;
            r.detail = Some(format!(
                "beyond {:.2e} but within the original's own floor {fl:.2e}",
                r.tolerance
            ));
        }
    }
    q
}
