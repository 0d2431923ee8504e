//! Running the pieces in order, in each runtime and case (see the module docs of
//! [`super`] for what is run on what and why that verifies the whole models).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::super::compare::{b_failed, compare, filled_cache_inputs, rtol_for};
use super::super::ort_rt::OrtModel;
use super::super::report::{
    default_tolerance, Accum, NotRun, Row, Runtime, VerifyReport, CANNOT_RUN_ORIGINAL,
};
use super::super::source::ModelSource;
use super::super::spec::ModelSpec;
use super::super::tensor::is_float;
use super::super::{
    case_notes, child, excluded_by_custom_ops, ort_for_run, prepare, report_of, runtime_failure,
    unverified_cases, GeneratedInputs, HostTensor, Ran, Runtimes, TractModel, VerifyError,
    VerifyOptions,
};
use super::build::piece_bytes;
use super::cut::{Dag, Part};
use super::relation::{self, Relation};
use super::{plan, PieceCheck, PiecesReport, Plan, ValueCheck};
use crate::proto::{data_type as dt, ModelProto};

/// Values by name, one tensor per sample.
type Values = HashMap<String, Vec<HostTensor>>;

/// A runtime to run pieces in.
enum Engine {
    Tract,
    Ort {
        env: ort::environment::Environment,
        lib: PathBuf,
        optimize: bool,
        device: super::super::OrtDevice,
    },
}

/// A piece loaded in a runtime.
enum Loaded {
    Tract(TractModel),
    Ort(OrtModel),
}

impl Engine {
    fn runtime(&self) -> Runtime {
        match self {
            Engine::Tract => Runtime::Tract,
            Engine::Ort { .. } => Runtime::Ort,
        }
    }

    fn load(&self, source: ModelSource, sample: &[HostTensor]) -> Result<Loaded, VerifyError> {
        match self {
            Engine::Tract => {
                let all: HashSet<String> = sample.iter().map(|t| t.name.clone()).collect();
                // Boolean inputs of one value decide the `If`s they reach (as for whole models).
                let fixed: HashSet<String> = sample
                    .iter()
                    .filter(|t| t.elem_type == dt::BOOL && t.len() == 1)
                    .map(|t| t.name.clone())
                    .collect();
                TractModel::load(source, sample, &all, &fixed).map(Loaded::Tract)
            }
            Engine::Ort {
                env,
                lib,
                optimize,
                device,
            } => OrtModel::load_source(env, lib, source, *optimize, *device, &[]).map(Loaded::Ort),
        }
    }
}

impl Loaded {
    /// Run one sample (exactly the piece's inputs); its outputs by name.
    fn run(&mut self, feed: &[HostTensor], names: &[String]) -> Result<Values1, VerifyError> {
        let outs = match self {
            Loaded::Tract(m) => m.run(feed, names)?,
            Loaded::Ort(m) => m.run(feed)?,
        };
        Ok(names.iter().cloned().zip(outs).collect())
    }
}

/// One sample's values by name.
type Values1 = HashMap<String, HostTensor>;

/// One model's share of the work: its graph, file, parts.
struct Side<'a> {
    model: &'a ModelProto,
    dag: &'a Dag<'a>,
    dir: PathBuf,
    path: &'a Path,
    /// `A` or `B` (the child's progress marks).
    mark: &'static str,
}

/// Integer and boolean inputs of at most this many elements that are the same in every run of
/// a piece become constants of the piece.
const BAKE_ELEMENTS: usize = 1024;

/// Why a part could not give its outputs.
enum PartError {
    /// Loading or running failed (the runtime's error).
    Runtime(VerifyError),
    /// Anything else (an error of this tool's).
    Other(VerifyError),
}

impl Side<'_> {
    /// Run `part` (piece `k` of `n`) in `engine` once per feed (each feed: one tensor per
    /// `part.inputs`, in order, named like them): the outputs of each run by name. Inputs that
    /// are small integers, the same in every feed (shapes), are baked into the piece.
    fn run(
        &self,
        engine: &Engine,
        part: &Part,
        feeds: &[Vec<HostTensor>],
        k: usize,
        n: usize,
    ) -> Result<Vec<Values1>, PartError> {
        let Some(first) = feeds.first() else {
            return Ok(Vec::new());
        };
        let bake: Vec<bool> = (0..part.inputs.len())
            .map(|i| {
                let t = &first[i];
                !is_float(t.elem_type)
                    && t.len() <= BAKE_ELEMENTS
                    && feeds.iter().all(|f| f[i] == *t)
            })
            .collect();
        let baked: Vec<HostTensor> = first
            .iter()
            .zip(&bake)
            .filter(|(_, b)| **b)
            .map(|(t, _)| t.clone())
            .collect();
        let strip = |f: &Vec<HostTensor>| -> Vec<HostTensor> {
            f.iter()
                .zip(&bake)
                .filter(|(_, b)| !**b)
                .map(|(t, _)| t.clone())
                .collect()
        };
        let fed0 = strip(first);
        let label = PathBuf::from(format!("{} [piece {}/{n}]", self.path.display(), k + 1));
        let bytes = piece_bytes(
            self.model,
            self.dag,
            part,
            &fed0,
            &baked,
            &label.to_string_lossy(),
        );
        child::mark(
            engine.runtime().name(),
            &format!("{}:{}/{n}", self.mark, k + 1),
        );
        let source = ModelSource::Bytes {
            bytes: &bytes,
            dir: &self.dir,
            label: &label,
        };
        let classify = |e: VerifyError| {
            if runtime_failure(&e) {
                PartError::Runtime(e)
            } else {
                PartError::Other(e)
            }
        };
        let mut m = engine.load(source, &fed0).map_err(classify)?;
        let mut outs = Vec::with_capacity(feeds.len());
        for f in feeds {
            outs.push(m.run(&strip(f), &part.outputs).map_err(classify)?);
        }
        drop(m);
        child::release_freed_memory();
        Ok(outs)
    }
}

/// The feed of one sample: each input of `part` from the first of `sources` that has it,
/// named like the input.
fn feed(part: &Part, s: usize, sources: &[&Values]) -> Option<Vec<HostTensor>> {
    part.inputs
        .iter()
        .map(|n| {
            let t = sources.iter().find_map(|v| v.get(n))?.get(s)?;
            Some(HostTensor {
                name: n.clone(),
                ..t.clone()
            })
        })
        .collect()
}

/// The feeds of every sample (`None`: an input is missing, a bug).
fn feeds(part: &Part, samples: usize, sources: &[&Values]) -> Option<Vec<Vec<HostTensor>>> {
    (0..samples).map(|s| feed(part, s, sources)).collect()
}

/// Per-run outputs gathered by name, one tensor per run.
fn by_name(runs: Vec<Values1>) -> Values {
    let mut out: Values = HashMap::new();
    for r in runs {
        for (name, t) in r {
            out.entry(name).or_default().push(t);
        }
    }
    out
}

/// What one chain (one runtime, one case) gave.
enum Chain {
    /// It ran to the end: the graph outputs of both models (per sample, in graph output
    /// order), failing comparisons on the original's activations, the checks per piece, the
    /// float values that crossed a cut with no relation.
    Ran {
        outs_a: Vec<Vec<HostTensor>>,
        outs_b: Vec<Vec<HostTensor>>,
        rows: Vec<Row>,
        checks: Vec<PieceCheck>,
        unrelated: Vec<String>,
    },
    /// The runtime cannot run a piece of the original: why.
    CannotRunOriginal(String),
    /// The rewrite's piece cannot be run where the original's ran: failed rows.
    BFailed(Vec<Row>),
}

/// For each piece k, the names read by the parts after it.
fn read_after(parts: &[&Part]) -> Vec<HashSet<String>> {
    let mut out = vec![HashSet::new(); parts.len()];
    let mut acc: HashSet<String> = HashSet::new();
    for k in (0..parts.len()).rev() {
        out[k] = acc.clone();
        acc.extend(parts[k].inputs.iter().cloned());
    }
    out
}

struct Ctx<'a> {
    plan: &'a Plan<'a>,
    a: Side<'a>,
    b: Side<'a>,
    spec_a: &'a ModelSpec,
    opts: &'a VerifyOptions,
}

/// The state of one chain between pieces: the original's values, the rewrite's on the
/// original's activations (`mapped`) and on its own (`own`), and the values the rewrite gave
/// before the original computed them (their relation is checked once it has).
#[derive(Default)]
struct State {
    original: Values,
    mapped: Values,
    own: Values,
    pending: HashSet<String>,
    unrelated: Vec<String>,
}

impl Ctx<'_> {
    /// The tolerance of the comparison of a value of `elem_type`.
    fn tolerance(&self, elem_type: i32) -> f64 {
        match rtol_for(self.spec_a, elem_type, self.opts.rtol) {
            Some(r) if is_float(elem_type) => r,
            _ => default_tolerance(elem_type),
        }
    }

    /// Check the rewrite's `name` (on the original's activations: `y`) against the original's
    /// `x`: the relation found (recorded in `check`), and what the rewrite's later pieces get
    /// on the original's activations — the original's value mapped by it, or `y` itself.
    fn relate(
        &self,
        name: &str,
        x: &[HostTensor],
        y: Vec<HostTensor>,
        check: &mut PieceCheck,
        st: &mut State,
    ) -> Vec<HostTensor> {
        let found = relation::find(x, &y, self.tolerance(x[0].elem_type));
        check.values.push(ValueCheck {
            name: name.to_string(),
            relation: found.map(|f| f.0),
            max_rel: found.map(|f| f.1),
            graph_output: false,
        });
        match found {
            Some((r, _)) => x.iter().map(|t| relation::apply(r, t)).collect(),
            None => {
                if is_float(x[0].elem_type) && !st.unrelated.iter().any(|u| u == name) {
                    st.unrelated.push(name.to_string());
                }
                y
            }
        }
    }

    /// Run every piece of both models in `engine` on the inputs of case `c`.
    fn chain(
        &self,
        engine: &Engine,
        c: &GeneratedInputs,
        case: Option<&str>,
    ) -> Result<Chain, VerifyError> {
        let runtime = engine.runtime();
        let pieces = &self.plan.pieces;
        let n = pieces.len();
        let samples = c.samples.len();
        let a_after = read_after(&pieces.iter().map(|p| &p.a).collect::<Vec<_>>());
        let b_after = read_after(&pieces.iter().map(|p| &p.b).collect::<Vec<_>>());
        let outputs: Vec<String> = self.spec_a.outputs.iter().map(|o| o.name.clone()).collect();
        let mut inputs: Values = HashMap::new();
        for s in &c.samples {
            for t in s {
                inputs.entry(t.name.clone()).or_default().push(t.clone());
            }
        }
        let mut st = State::default();
        let mut got_a: Values = HashMap::new();
        let mut got_b: Values = HashMap::new();
        let (mut rows, mut checks) = (Vec::new(), Vec::new());
        let missing = |k: usize, part: &Part, sources: &[&Values]| {
            let lacking: Vec<&String> = part
                .inputs
                .iter()
                .filter(|n| !sources.iter().any(|v| v.contains_key(*n)))
                .collect();
            internal(k, &format!("a piece lacks its input(s) {lacking:?}"))
        };
        for (k, piece) in pieces.iter().enumerate() {
            let mut check = PieceCheck {
                runtime,
                case: case.map(str::to_string),
                piece: k + 1,
                values: Vec::new(),
            };
            // The original's piece, on its own values.
            let fa = feeds(&piece.a, samples, &[&inputs, &st.original])
                .ok_or_else(|| missing(k, &piece.a, &[&inputs, &st.original]))?;
            match self.a.run(engine, &piece.a, &fa, k, n) {
                Ok(runs) => {
                    for (name, v) in by_name(runs) {
                        if outputs.contains(&name) {
                            got_a.insert(name.clone(), v.clone());
                        }
                        st.original.insert(name, v);
                    }
                }
                Err(PartError::Runtime(e)) => {
                    return Ok(Chain::CannotRunOriginal(format!(
                        "piece {}/{n}: {}",
                        k + 1,
                        e.short()
                    )))
                }
                Err(PartError::Other(e)) => return Err(e),
            }
            // A value the rewrite gave before the original computed it may relate now.
            let ready: Vec<String> = st
                .pending
                .iter()
                .filter(|v| st.original.contains_key(*v) && st.mapped.contains_key(*v))
                .cloned()
                .collect();
            for name in ready {
                st.pending.remove(&name);
                let x = st.original[&name].clone();
                let y = st.mapped.remove(&name).unwrap_or_default();
                let fed = self.relate(&name, &x, y, &mut check, &mut st);
                st.mapped.insert(name, fed);
            }
            // The rewrite's piece, on the original's activations and on its own values.
            if !piece.b.nodes.is_empty() {
                let fm = feeds(&piece.b, samples, &[&inputs, &st.mapped])
                    .ok_or_else(|| missing(k, &piece.b, &[&inputs, &st.mapped]))?;
                let fo = feeds(&piece.b, samples, &[&inputs, &st.own])
                    .ok_or_else(|| missing(k, &piece.b, &[&inputs, &st.own]))?;
                let all: Vec<Vec<HostTensor>> = fm.into_iter().chain(fo).collect();
                let mut runs = match self.b.run(engine, &piece.b, &all, k, n) {
                    Ok(r) => r,
                    Err(PartError::Runtime(e)) => {
                        return b_cannot(runtime, case, self.spec_a, k, n, &e)
                    }
                    Err(PartError::Other(e)) => return Err(e),
                };
                let mut own = by_name(runs.split_off(samples));
                let mut mapped = by_name(runs);
                for name in &piece.b.outputs {
                    let (Some(ym), Some(yo)) = (mapped.remove(name), own.remove(name)) else {
                        continue;
                    };
                    if let Some(idx) = outputs.iter().position(|o| o == name) {
                        // A graph output: by identity, also on the original's activations (the
                        // own chain's row is the verdict's).
                        if let Some(x) = st.original.get(name) {
                            let tol = self.tolerance(x[0].elem_type);
                            let mut acc = Accum::new(runtime, idx, name, x[0].elem_type, Some(tol));
                            for (p, q) in x.iter().zip(&ym) {
                                acc.add(p, q);
                            }
                            let mut row = acc.finish();
                            check.values.push(ValueCheck {
                                name: name.clone(),
                                relation: Some(Relation::Identity),
                                max_rel: Some(row.max_rel),
                                graph_output: true,
                            });
                            if !row.pass {
                                row.case = case.map(str::to_string);
                                row.output = format!(
                                    "{name} (piece {}/{n}, on the original's activations)",
                                    k + 1
                                );
                                rows.push(row);
                            }
                        }
                        got_b.insert(name.clone(), yo.clone());
                        // A graph output later pieces read too (a KV cache's `present`) crosses
                        // as the rewrite's own.
                        if b_after[k].contains(name) {
                            st.mapped.insert(name.clone(), ym);
                            st.own.insert(name.clone(), yo);
                        }
                        continue;
                    }
                    let fed = match st.original.get(name).cloned() {
                        Some(x) => self.relate(name, &x, ym, &mut check, &mut st),
                        None => {
                            st.pending.insert(name.clone());
                            ym
                        }
                    };
                    st.mapped.insert(name.clone(), fed);
                    st.own.insert(name.clone(), yo);
                }
            }
            // Keep what later pieces read (the original's values also where the rewrite may
            // need them mapped).
            st.original
                .retain(|v, _| a_after[k].contains(v) || b_after[k].contains(v));
            st.mapped.retain(|v, _| b_after[k].contains(v));
            st.own.retain(|v, _| b_after[k].contains(v));
            st.pending.retain(|v| b_after[k].contains(v));
            checks.push(check);
        }
        let collect = |got: &mut Values, who: &str| -> Result<Vec<Vec<HostTensor>>, VerifyError> {
            let per_output: Vec<Vec<HostTensor>> = outputs
                .iter()
                .map(|o| got.remove(o))
                .collect::<Option<_>>()
                .ok_or_else(|| internal(n - 1, &format!("an output of {who} was not computed")))?;
            Ok((0..samples)
                .map(|s| per_output.iter().map(|v| v[s].clone()).collect())
                .collect())
        };
        let outs_a = collect(&mut got_a, "the original")?;
        let outs_b = collect(&mut got_b, "the rewrite")?;
        Ok(Chain::Ran {
            outs_a,
            outs_b,
            rows,
            checks,
            unrelated: st.unrelated,
        })
    }
}

fn internal(k: usize, what: &str) -> VerifyError {
    VerifyError::Incomplete(format!(
        "internal error while verifying in pieces (a bug in this tool): piece {}: {what}",
        k + 1
    ))
}

/// The rewrite's piece `k` cannot be loaded or run where the original's could.
fn b_cannot(
    runtime: Runtime,
    case: Option<&str>,
    spec_a: &ModelSpec,
    k: usize,
    n: usize,
    e: &VerifyError,
) -> Result<Chain, VerifyError> {
    let mut rows = b_failed(runtime, case, spec_a, e)?;
    for r in &mut rows {
        r.detail = Some(format!(
            "B cannot be run (piece {}/{n}): {}",
            k + 1,
            e.short()
        ));
    }
    Ok(Chain::BFailed(rows))
}

/// Verify `b` against `a` piece by piece (see the module docs of [`super`]), each piece within
/// `limit` bytes as [`super::plan`] estimates them. The report has the same rows as a whole
/// verification and says how it was cut.
pub(crate) fn verify_pieces(
    a: &Path,
    b: &Path,
    opts: &VerifyOptions,
    limit: u64,
) -> Result<VerifyReport, VerifyError> {
    // Never the whole original to find a size for the hint: it does not fit.
    super::super::at_runnable_size(a, opts, super::super::Probe::NamesOnly, |o| {
        pieces_at(a, b, o, limit)
    })
}

/// [`verify_pieces`] at the sizes `opts` gives (no search).
fn pieces_at(
    a: &Path,
    b: &Path,
    opts: &VerifyOptions,
    limit: u64,
) -> Result<VerifyReport, VerifyError> {
    let start = Instant::now();
    let (spec_a, spec_b, cases) = prepare(a, b, opts)?;
    // The graphs only: the loaded files' maps of their external data files (several GB for the
    // models verified in pieces) are released at once, so that they do not count against the
    // child's address-space limit (the runtimes read each piece's weights themselves).
    let pa = crate::io::load(a)?.proto;
    let pb = crate::io::load(b)?.proto;
    let shapes: Vec<Vec<Vec<usize>>> = cases
        .iter()
        .map(|c| {
            spec_a
                .inputs
                .iter()
                .map(|i| {
                    c.samples[0]
                        .iter()
                        .find(|t| t.name == i.name)
                        .map(|t| t.shape.clone())
                        .unwrap_or_default()
                })
                .collect()
        })
        .collect();
    let plan =
        plan((&pa, &spec_a), (&pb, &spec_b), &shapes, opts.samples, limit).map_err(|message| {
            VerifyError::Model {
                path: a.to_path_buf(),
                message: format!("cannot be verified in pieces: {message}"),
            }
        })?;
    let dir = |p: &Path| p.parent().map(Path::to_path_buf).unwrap_or_default();
    let ctx = Ctx {
        plan: &plan,
        a: Side {
            model: &pa,
            dag: &plan.a,
            dir: dir(a),
            path: a,
            mark: "A",
        },
        b: Side {
            model: &pb,
            dag: &plan.b,
            dir: dir(b),
            path: b,
            mark: "B",
        },
        spec_a: &spec_a,
        opts,
    };
    let multi = cases.len() > 1;
    let label = |c: &GeneratedInputs| multi.then(|| c.case.clone());
    let mut notes = case_notes(&cases);
    let mut engines = Vec::new();
    if matches!(opts.runtimes, Runtimes::Tract | Runtimes::Both) {
        engines.push(Engine::Tract);
    }
    let mut not_run = Vec::new();
    let mut ort_library = None;
    if matches!(opts.runtimes, Runtimes::Ort | Runtimes::Both)
        && !excluded_by_custom_ops(&spec_a, &spec_b, opts, &mut not_run, &mut notes)?
    {
        child::mark("onnxruntime", "lib");
        if let Some((env, lib)) = ort_for_run(opts, &mut notes)? {
            ort_library = Some(lib.clone());
            engines.push(Engine::Ort {
                env,
                lib,
                optimize: opts.ort_optimize,
                device: opts.ort_device,
            });
        }
    }
    let mut rows = Vec::new();
    let mut ran = Vec::new();
    let mut checks = Vec::new();
    let mut cannot: Vec<String> = Vec::new();
    let mut unrelated_all: Vec<(Runtime, String)> = Vec::new();
    for engine in &engines {
        let runtime = engine.runtime();
        for c in &cases {
            let case = label(c);
            match ctx.chain(engine, c, case.as_deref())? {
                Chain::Ran {
                    outs_a,
                    outs_b,
                    rows: piece_rows,
                    checks: cs,
                    unrelated,
                } => {
                    rows.extend(compare(
                        runtime,
                        case.as_deref(),
                        &spec_a,
                        &outs_a,
                        &outs_b,
                        opts.rtol,
                    ));
                    rows.extend(piece_rows);
                    checks.extend(cs);
                    for u in unrelated {
                        if !unrelated_all.contains(&(runtime, u.clone())) {
                            unrelated_all.push((runtime, u));
                        }
                    }
                    if !ran.contains(&runtime) {
                        ran.push(runtime);
                    }
                }
                Chain::BFailed(r) => {
                    rows.extend(r);
                    if !ran.contains(&runtime) {
                        ran.push(runtime);
                    }
                }
                Chain::CannotRunOriginal(why) => {
                    cannot.push(format!("{}: {why}", runtime.name()));
                    not_run.push(NotRun {
                        runtime,
                        case: case.clone(),
                        why: format!("{CANNOT_RUN_ORIGINAL}: {why}"),
                    });
                }
            }
        }
    }
    if rows.is_empty() && !cannot.is_empty() {
        return Err(VerifyError::NoRuntime {
            path: a.to_path_buf(),
            reasons: cannot,
            hint: None,
        });
    }
    let s = &plan.summary;
    notes.push(format!(
        "verified in {} piece{} (the two whole models need more than the budget): the largest, \
         piece {}, about {} with {} of weights",
        s.count,
        if s.count == 1 { "" } else { "s" },
        s.largest,
        super::super::budget::human(s.largest_bytes),
        super::super::budget::human(s.largest_weight_bytes)
    ));
    let mut not_covered = unverified_cases(&cases, &rows, |k| {
        let case = label(&cases[k]);
        not_run
            .iter()
            .filter(|n| n.case == case && n.why.starts_with(CANNOT_RUN_ORIGINAL))
            .map(|n| format!("{}: {}", n.runtime.name(), n.why))
            .collect()
    });
    if !spec_a.quantized.is_empty() {
        not_covered.push(
            "in pieces, a quantized model's own rounding floor is not measured (rows are \
             judged at the float tolerance; whole verification judges them against the floor)"
                .into(),
        );
    }
    for c in &cases {
        if c.samples
            .first()
            .is_some_and(|s| !filled_cache_inputs(s).is_empty())
        {
            not_covered.push(format!(
                "in pieces, whether the original reads its filled cache is not checked (case {})",
                c.case
            ));
        }
    }
    if !unrelated_all.is_empty() {
        let shown: Vec<String> = unrelated_all
            .iter()
            .take(6)
            .map(|(r, v)| format!("`{v}` ({})", r.name()))
            .collect();
        notes.push(format!(
            "{} float value(s) crossing a cut relate to the original's by no identity, centring \
             or compression, and crossed as the rewrite's own: {}{}",
            unrelated_all.len(),
            shown.join(", "),
            if unrelated_all.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        ));
    }
    let mut report = report_of(
        (a, b),
        opts,
        &cases,
        Ran {
            runtimes: ran,
            ort_library,
            rows,
            notes,
            not_run,
            not_covered,
            cache: vec![None; cases.len()],
            quantized: None,
        },
        start,
    );
    report.pieces = Some(PiecesReport {
        summary: plan.summary.clone(),
        checks,
    });
    Ok(report)
}
