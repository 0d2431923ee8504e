//! One loaded model in one runtime, run once per call: tract (an optimised plan, through
//! verification's loader) and onnxruntime (a session with the benchmark's options), each with
//! its per-op profile.

use super::*;

/// A runner: one loaded model in one runtime.
pub(super) trait Runner {
    fn run_once(&mut self) -> Result<(), BenchError>;
}

// ---------------------------------------------------------------- tract

pub(super) struct TractRunner {
    state: tract_onnx::prelude::TypedSimpleState,
    inputs: tract_onnx::prelude::TVec<tract_onnx::prelude::TValue>,
    path: PathBuf,
}

/// Load `path` in tract with concrete input shapes from `sample` and optimise it, as
/// verification does ([`verify::tract_plan`]); returns the runner and the optimised model's op
/// histogram.
pub(super) fn tract_load(
    path: &Path,
    sample: &[HostTensor],
) -> Result<(TractRunner, BTreeMap<String, usize>), BenchError> {
    use tract_onnx::prelude::*;
    let model = verify::tract_plan(path, sample).map_err(err)?;
    let e =
        |stage: &str, m: String| err(format!("tract could not {stage} {}: {m}", path.display()));
    let mut inputs: TVec<TValue> = tvec![];
    for &si in &model.feed {
        inputs.push(
            sample[si]
                .to_tract()
                .map_err(|m| e("load", m))?
                .into_tvalue(),
        );
    }
    let mut ops = BTreeMap::new();
    for n in model.plan.model().nodes() {
        *ops.entry(n.op.name().to_string()).or_insert(0) += 1;
    }
    let state = model
        .plan
        .spawn()
        .map_err(|x| e("prepare", format!("{x:#}")))?;
    Ok((
        TractRunner {
            state,
            inputs,
            path: path.to_path_buf(),
        },
        ops,
    ))
}

impl Runner for TractRunner {
    fn run_once(&mut self) -> Result<(), BenchError> {
        let outs = self.state.run(self.inputs.clone()).map_err(|x| {
            err(format!(
                "tract could not run {}: {x:#}",
                self.path.display()
            ))
        })?;
        drop(outs);
        Ok(())
    }
}

/// Per op name: the node ids seen and the seconds spent.
pub(super) type OpAcc = BTreeMap<String, (std::collections::HashSet<usize>, f64)>;

impl TractRunner {
    /// Run once timing every node into `acc`.
    pub(super) fn profile_once(&mut self, acc: &mut OpAcc) -> Result<(), BenchError> {
        {
            let r = self
                .state
                .run_plan_with_eval(self.inputs.clone(), |ctx, st, node, inp| {
                    let t = Instant::now();
                    let r = tract_core::plan::eval(ctx, st, node, inp);
                    let e = acc.entry(node.op.name().to_string()).or_default();
                    e.0.insert(node.id);
                    e.1 += t.elapsed().as_secs_f64();
                    r
                });
            r.map_err(|x| {
                err(format!(
                    "tract could not run {}: {x:#}",
                    self.path.display()
                ))
            })?;
        }
        Ok(())
    }
}

pub(super) fn sorted_ops(it: impl Iterator<Item = (String, usize, f64)>) -> Vec<OpTime> {
    let mut v: Vec<OpTime> = it
        .map(|(op, nodes, ms_per_run)| OpTime {
            op,
            nodes,
            ms_per_run,
        })
        .collect();
    v.sort_by(|a, b| {
        b.ms_per_run
            .partial_cmp(&a.ms_per_run)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    v
}

// ---------------------------------------------------------------- onnxruntime

pub(super) struct OrtRunner {
    pub(super) session: ort::session::Session,
    inputs: Vec<(String, ort::value::DynTensor)>,
    path: PathBuf,
}

pub(super) struct OrtOptions<'a> {
    pub(super) threads: Option<usize>,
    pub(super) optimized_out: Option<PathBuf>,
    pub(super) profile_prefix: Option<&'a Path>,
}

pub(super) fn ort_load(
    env: &ort::environment::Environment,
    path: &Path,
    sample: &[HostTensor],
    o: &OrtOptions,
) -> Result<OrtRunner, BenchError> {
    use ort::session::Session;
    let e = |m: String| {
        err(format!(
            "onnxruntime could not load {}: {m}",
            path.display()
        ))
    };
    let mut b = Session::builder(env)
        .map_err(|x| e(x.to_string()))?
        .with_log_level(ort::logging::LogLevel::Error)
        .map_err(|x| e(x.to_string()))?;
    if let Some(n) = o.threads {
        b = b.with_intra_threads(n).map_err(|x| e(x.to_string()))?;
    }
    if let Some(p) = &o.optimized_out {
        b = b
            .with_optimized_model_path(p)
            .map_err(|x| e(x.to_string()))?;
    }
    if let Some(p) = o.profile_prefix {
        b = b.with_profiling(p).map_err(|x| e(x.to_string()))?;
    }
    let session = b.commit_from_file(path).map_err(|x| e(x.to_string()))?;
    let allocator = ort::memory::Allocator::default();
    let mut inputs = Vec::with_capacity(sample.len());
    for t in sample {
        inputs.push((t.name.clone(), t.to_ort(&allocator).map_err(e)?));
    }
    Ok(OrtRunner {
        session,
        inputs,
        path: path.to_path_buf(),
    })
}

impl Runner for OrtRunner {
    fn run_once(&mut self) -> Result<(), BenchError> {
        let feed: Vec<(&str, &ort::value::DynTensor)> =
            self.inputs.iter().map(|(n, v)| (n.as_str(), v)).collect();
        let outs = self.session.run(feed).map_err(|x| {
            err(format!(
                "onnxruntime could not run {}: {x}",
                self.path.display()
            ))
        })?;
        drop(outs);
        Ok(())
    }
}

/// Aggregate an onnxruntime profile (Chrome trace JSON) per `op_name`, over `n` runs.
pub(super) fn parse_ort_profile(file: &Path, n: usize) -> Result<Vec<OpTime>, BenchError> {
    let text =
        std::fs::read_to_string(file).map_err(|x| err(format!("{}: {x}", file.display())))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|x| err(format!("{}: {x}", file.display())))?;
    let mut acc: BTreeMap<String, (std::collections::HashSet<String>, f64)> = BTreeMap::new();
    for ev in v.as_array().into_iter().flatten() {
        if ev.get("cat").and_then(|c| c.as_str()) != Some("Node") {
            continue;
        }
        let Some(name) = ev.get("name").and_then(|c| c.as_str()) else {
            continue;
        };
        let Some(node) = name.strip_suffix("_kernel_time") else {
            continue;
        };
        let op = ev
            .pointer("/args/op_name")
            .and_then(|c| c.as_str())
            .unwrap_or("?")
            .to_string();
        let dur = ev.get("dur").and_then(|d| d.as_f64()).unwrap_or(0.0);
        let e = acc.entry(op).or_default();
        e.0.insert(node.to_string());
        e.1 += dur;
    }
    Ok(sorted_ops(
        acc.into_iter()
            .map(|(k, (ids, us))| (k, ids.len(), us / 1e3 / n as f64)),
    ))
}

/// Lets a `&mut R` be boxed as a runner.
pub(super) struct RunnerRef<'a, R: Runner>(pub(super) &'a mut R);

impl<R: Runner> Runner for RunnerRef<'_, R> {
    fn run_once(&mut self) -> Result<(), BenchError> {
        self.0.run_once()
    }
}
