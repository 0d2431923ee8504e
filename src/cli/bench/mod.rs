//! Speed benchmarks: time several models on the same inputs in onnxruntime and tract, in one
//! process, with interleaved rounds, and report robust statistics.
//!
//! The first model is the baseline `A`; every other model `X` gets per-round ratios `t_X / t_A`.
//! With [`BenchArgs::limit`] the last model is the "physical limit" `L` (e.g. the model with
//! every LayerNorm replaced by Identity) and every model in between also gets the *captured
//! fraction* `(t_A − t_X) / (t_A − t_L)` per round: the share of the largest possible saving the
//! model actually realises.
//!
//! Method (per runtime, one runtime after the other so that onnxruntime's spinning thread pool
//! never competes with tract):
//! - every model is loaded once: onnxruntime with **default** session options (all graph
//!   optimisations, default intra-op thread count) unless `--ort-threads`; tract as an optimised
//!   runnable plan with the inputs' concrete shapes (tract 0.23 runs single-threaded);
//! - one input set is generated from model A exactly as `verify` would ([`generate_inputs`]) and
//!   converted once to each runtime's tensors (conversion is not timed);
//! - `warmup + runs` rounds run each model once, rotating the starting model every round
//!   (A B C, B C A, C A B, ...) so no model always runs after the same one; warm-up rounds are
//!   dropped; every run's wall time (inputs in, outputs out and dropped) is recorded;
//! - statistics are median and quartiles (p25, p75, linear interpolation) of the per-run times
//!   and of the per-round ratios, which cancel slow drifts of a noisy machine;
//! - besides wall time, every run's **CPU time** of the whole process is recorded (all threads,
//!   `CLOCK_PROCESS_CPUTIME_ID`, 64-bit Linux only): time the process was descheduled
//!   for other processes does not count, which makes it far steadier than wall time on a shared
//!   machine. For single-threaded runs (tract; onnxruntime with `--ort-threads 1`) it is the
//!   compute time; with an onnxruntime thread pool it also counts the pool's spin-waiting.
//!
//! `--profile N` adds N profiled rounds after the timing (interleaved like the timed ones):
//! per-op-type time from tract
//! (an eval hook around every node of the plan) and from onnxruntime's own profiler (its JSON
//! trace, per `op_name`, so fused kernels show up under their fused name). `--ops` prints the op
//! histogram of tract's optimised model (what tract actually runs).

mod report;
mod runners;

pub use report::*;
use runners::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::args::{parse_dim, runtimes};
use onnx_normopt::verify::{
    self, generate_inputs, HostTensor, InputSummary, Runtimes, VerifyOptions,
};

/// The command-line flags of `onnx-normopt bench` (flatten into a subcommand).
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct BenchArgs {
    /// The models: the first is the baseline A, ratios are given against it. All must take the
    /// same inputs.
    #[arg(required = true, value_name = "MODEL")]
    pub models: Vec<PathBuf>,
    /// Short names of the models, in order (default: file stems).
    #[arg(long = "label", value_name = "NAME")]
    pub labels: Vec<String>,
    /// Runtimes to benchmark in.
    #[arg(long, value_parser = runtimes(), default_value_t = Runtimes::Both)]
    pub runtime: Runtimes,
    /// Timed rounds (each round runs every model once).
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub runs: usize,
    /// Untimed rounds first.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub warmup: usize,
    /// Size of a dynamic input dimension, by its name (as in `verify`); defaults: batch-like
    /// axes 2, others 8.
    #[arg(long = "dim", value_name = "NAME=VALUE", value_parser = parse_dim)]
    pub dims: Vec<(String, usize)>,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub seed: u64,
    /// The last model is the no-normalisation limit: also report, for every model between the
    /// first and the last, the captured fraction (t_A − t_X)/(t_A − t_last) per round.
    #[arg(long)]
    pub limit: bool,
    /// The onnxruntime shared library (default: as `verify` finds it).
    #[arg(long, value_name = "PATH")]
    pub ort_lib: Option<PathBuf>,
    /// onnxruntime intra-op threads (default: onnxruntime's default, one per physical core).
    #[arg(long, value_name = "N")]
    pub ort_threads: Option<usize>,
    /// Save the graph onnxruntime actually runs (after its optimisations) as DIR/LABEL.onnx.
    #[arg(long, value_name = "DIR")]
    pub ort_optimized_dir: Option<PathBuf>,
    /// Print the op histogram of tract's optimised model for every model.
    #[arg(long)]
    pub ops: bool,
    /// After timing, profile N more runs per model: time per op type in each runtime.
    #[arg(long, value_name = "N")]
    pub profile: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl Default for BenchArgs {
    fn default() -> Self {
        BenchArgs {
            models: Vec::new(),
            labels: Vec::new(),
            runtime: Runtimes::Both,
            runs: 30,
            warmup: 3,
            dims: Vec::new(),
            seed: 0,
            limit: false,
            ort_lib: None,
            ort_threads: None,
            ort_optimized_dir: None,
            ops: false,
            profile: None,
            json: false,
        }
    }
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BenchError(String);

fn err(m: impl std::fmt::Display) -> BenchError {
    BenchError(m.to_string())
}

// ---------------------------------------------------------------- driver

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!(
        "{cpu}, {n} logical CPUs, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// CPU time of this process so far, in ns (all threads): `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`,
/// which is exact (`/proc/self/task/*/schedstat` only advances at scheduler ticks). `None` where
/// not implemented (non-Linux, 32-bit).
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn process_cpu_ns() -> Option<u64> {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut t = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable `struct timespec` (two 64-bit fields on 64-bit Linux);
    // libc's clock_gettime only writes it.
    let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    (rc == 0).then(|| t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64)
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn process_cpu_ns() -> Option<u64> {
    None
}

/// Per-model run times (ms), round by round: wall and process CPU time (empty when it cannot
/// be read).
struct Timings {
    wall: Vec<Vec<f64>>,
    cpu: Vec<Vec<f64>>,
}

/// Interleaved timing of `runners`, rotating the starting model every round.
fn time_rounds(
    runners: &mut [Box<dyn Runner + '_>],
    warmup: usize,
    runs: usize,
) -> Result<Timings, BenchError> {
    let n = runners.len();
    let mut wall = vec![Vec::with_capacity(runs); n];
    let mut cpu = vec![Vec::with_capacity(runs); n];
    let mut cpu_ok = true;
    for round in 0..warmup + runs {
        for k in 0..n {
            let m = (round + k) % n;
            let c0 = process_cpu_ns();
            let t = Instant::now();
            runners[m].run_once()?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let c1 = process_cpu_ns();
            if round >= warmup {
                wall[m].push(ms);
                match (c0, c1) {
                    (Some(a), Some(b)) => cpu[m].push(b.saturating_sub(a) as f64 / 1e6),
                    _ => cpu_ok = false,
                }
            }
        }
    }
    if !cpu_ok {
        cpu.iter_mut().for_each(Vec::clear);
    }
    Ok(Timings { wall, cpu })
}

fn relative(labels: &[String], times: &[Vec<f64>], limit: bool) -> (Vec<Relative>, Vec<Relative>) {
    if times.iter().any(Vec::is_empty) {
        return (Vec::new(), Vec::new());
    }
    let a = &times[0];
    let mut ratios = Vec::new();
    let mut captured = Vec::new();
    for (k, t) in times.iter().enumerate().skip(1) {
        let r: Vec<f64> = a.iter().zip(t).map(|(a, x)| x / a).collect();
        ratios.push(Relative {
            label: labels[k].clone(),
            stats: Stats::of(&r),
        });
    }
    if limit && times.len() >= 3 {
        let l = times.last().unwrap();
        for (k, t) in times.iter().enumerate().take(times.len() - 1).skip(1) {
            let c: Vec<f64> = a
                .iter()
                .zip(t)
                .zip(l)
                .map(|((a, x), l)| {
                    if a - l == 0.0 {
                        f64::NAN
                    } else {
                        (a - x) / (a - l)
                    }
                })
                .collect();
            captured.push(Relative {
                label: labels[k].clone(),
                stats: Stats::of(&c),
            });
        }
    }
    (ratios, captured)
}

/// The process's onnxruntime environment, shared with verification
/// ([`verify::ort_environment`]: from `--ort-lib` or as `verify` finds the library).
fn ort_env(args: &BenchArgs) -> Result<(ort::environment::Environment, PathBuf), BenchError> {
    verify::ort_environment(args.ort_lib.as_deref()).map_err(err)
}

/// Run the benchmark described by `args` and return its report.
pub fn bench(args: &BenchArgs) -> Result<BenchReport, BenchError> {
    if args.models.is_empty() {
        return Err(err("give at least one model"));
    }
    if args.runs == 0 {
        return Err(err("--runs must be at least 1"));
    }
    if args.limit && args.models.len() < 3 {
        return Err(err(
            "--limit needs at least three models: baseline, candidate(s), limit",
        ));
    }
    if !args.labels.is_empty() && args.labels.len() != args.models.len() {
        return Err(err(format!(
            "{} labels for {} models",
            args.labels.len(),
            args.models.len()
        )));
    }
    let labels: Vec<String> = if args.labels.is_empty() {
        args.models
            .iter()
            .map(|p| {
                p.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect()
    } else {
        args.labels.clone()
    };
    let opts = VerifyOptions {
        samples: 1,
        seed: args.seed,
        dims: args.dims.iter().cloned().collect(),
        ..VerifyOptions::default()
    };
    let gen = generate_inputs(&args.models[0], &opts).map_err(err)?;
    let sample = &gen.samples[0];
    let mut notes = gen.notes.clone();
    let mut results = Vec::new();

    // This crate's own ops (`--emit custom`) run in tract only.
    let mut custom = Vec::new();
    for p in &args.models {
        custom.extend(
            verify::custom_ops(p)
                .iter()
                .map(|o| format!("{} ({o})", p.display())),
        );
    }
    let ort = match args.runtime {
        Runtimes::Tract => None,
        Runtimes::Ort | Runtimes::Both if !custom.is_empty() => {
            if args.runtime == Runtimes::Ort {
                return Err(err(format!(
                    "onnxruntime cannot run this crate's own ops: {}; use --runtime tract",
                    custom.join(", ")
                )));
            }
            notes.push(format!(
                "onnxruntime NOT benchmarked: {} only run in tract",
                custom.join(", ")
            ));
            None
        }
        Runtimes::Ort => Some(ort_env(args)?),
        Runtimes::Both => match ort_env(args) {
            Ok(x) => Some(x),
            Err(e) if args.ort_lib.is_none() => {
                notes.push(format!("onnxruntime NOT benchmarked: {e}"));
                None
            }
            Err(e) => return Err(e),
        },
    };
    if let Some((env, lib)) = ort {
        let mut runners: Vec<OrtRunner> = Vec::new();
        let mut load_ms = Vec::new();
        for (p, label) in args.models.iter().zip(&labels) {
            let t = Instant::now();
            let o = OrtOptions {
                threads: args.ort_threads,
                optimized_out: args
                    .ort_optimized_dir
                    .as_ref()
                    .map(|d| d.join(format!("{label}.onnx"))),
                profile_prefix: None,
            };
            runners.push(ort_load(&env, p, sample, &o)?);
            load_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let times = {
            let mut boxed: Vec<Box<dyn Runner + '_>> = runners
                .iter_mut()
                .map(|r| Box::new(RunnerRef(r)) as Box<dyn Runner>)
                .collect();
            time_rounds(&mut boxed, args.warmup, args.runs)?
        };
        drop(runners);
        let mut profiles: Vec<Option<Vec<OpTime>>> = vec![None; args.models.len()];
        if let Some(n) = args.profile.filter(|&n| n > 0) {
            let dir =
                std::env::temp_dir().join(format!("onnx-normopt-bench-{}", std::process::id()));
            std::fs::create_dir_all(&dir).map_err(|x| err(format!("{}: {x}", dir.display())))?;
            let mut prof: Vec<OrtRunner> = Vec::new();
            for (k, p) in args.models.iter().enumerate() {
                let prefix = dir.join(format!("m{k}"));
                let o = OrtOptions {
                    threads: args.ort_threads,
                    optimized_out: None,
                    profile_prefix: Some(&prefix),
                };
                prof.push(ort_load(&env, p, sample, &o)?);
            }
            // The profile starts at session creation: the warm-up runs are counted too.
            for round in 0..args.warmup + n {
                let np = prof.len();
                for k in 0..np {
                    prof[(round + k) % np].run_once()?;
                }
            }
            for (k, mut r) in prof.into_iter().enumerate() {
                let file = r
                    .session
                    .end_profiling()
                    .map_err(|x| err(format!("onnxruntime profiling: {x}")))?;
                let file = PathBuf::from(file);
                profiles[k] = Some(parse_ort_profile(&file, n + args.warmup)?);
                let _ = std::fs::remove_file(&file);
            }
            let _ = std::fs::remove_dir(&dir);
            notes.push(format!(
                "onnxruntime profile: {} interleaved rounds incl. {} warm-up, per op_name of the optimised graph",
                n + args.warmup,
                args.warmup
            ));
        }
        let (ratios, captured) = relative(&labels, &times.wall, args.limit);
        let (cpu_ratios, cpu_captured) = relative(&labels, &times.cpu, args.limit);
        let threads = args
            .ort_threads
            .map(|n| format!("{n} intra-op threads"))
            .unwrap_or_else(|| "default intra-op threads".into());
        results.push(RuntimeResult {
            runtime: "onnxruntime".into(),
            settings: format!(
                "{}; default session options (graph optimisation ALL), {threads}, CPU EP",
                lib.display()
            ),
            models: models(
                &labels,
                args,
                &load_ms,
                times,
                vec![None; args.models.len()],
                profiles,
            ),
            ratios,
            captured,
            cpu_ratios,
            cpu_captured,
        });
    }

    if matches!(args.runtime, Runtimes::Tract | Runtimes::Both) {
        let mut runners: Vec<TractRunner> = Vec::new();
        let mut load_ms = Vec::new();
        let mut hist = Vec::new();
        for p in &args.models {
            let t = Instant::now();
            let (r, ops) = tract_load(p, sample)?;
            runners.push(r);
            load_ms.push(t.elapsed().as_secs_f64() * 1e3);
            hist.push(if args.ops { Some(ops) } else { None });
        }
        let times = {
            let mut boxed: Vec<Box<dyn Runner + '_>> = runners
                .iter_mut()
                .map(|r| Box::new(RunnerRef(r)) as Box<dyn Runner>)
                .collect();
            time_rounds(&mut boxed, args.warmup, args.runs)?
        };
        let mut profiles = vec![None; args.models.len()];
        if let Some(n) = args.profile.filter(|&n| n > 0) {
            let mut accs: Vec<OpAcc> = vec![OpAcc::new(); runners.len()];
            for round in 0..n {
                for k in 0..runners.len() {
                    let m = (round + k) % runners.len();
                    runners[m].profile_once(&mut accs[m])?;
                }
            }
            for (k, acc) in accs.into_iter().enumerate() {
                profiles[k] = Some(sorted_ops(
                    acc.into_iter()
                        .map(|(op, (ids, s))| (op, ids.len(), s * 1e3 / n as f64)),
                ));
            }
            notes.push(format!(
                "tract profile: {n} interleaved rounds, per op name of the optimised plan"
            ));
        }
        drop(runners);
        let (ratios, captured) = relative(&labels, &times.wall, args.limit);
        let (cpu_ratios, cpu_captured) = relative(&labels, &times.cpu, args.limit);
        results.push(RuntimeResult {
            runtime: "tract".into(),
            settings: "tract-onnx 0.23, into_optimized().into_runnable(), concrete input shapes, single thread".into(),
            models: models(&labels, args, &load_ms, times, hist, profiles),
            ratios,
            captured,
            cpu_ratios,
            cpu_captured,
        });
    }

    Ok(BenchReport {
        machine: machine(),
        runs: args.runs,
        warmup: args.warmup,
        seed: args.seed,
        inputs: gen.summary.clone(),
        runtimes: results,
        notes,
    })
}

fn models(
    labels: &[String],
    args: &BenchArgs,
    load_ms: &[f64],
    times: Timings,
    ops: Vec<Option<BTreeMap<String, usize>>>,
    profiles: Vec<Option<Vec<OpTime>>>,
) -> Vec<ModelResult> {
    times
        .wall
        .into_iter()
        .zip(times.cpu)
        .zip(ops)
        .zip(profiles)
        .enumerate()
        .map(|(k, (((t, c), ops), profile))| ModelResult {
            label: labels[k].clone(),
            path: args.models[k].clone(),
            load_ms: load_ms[k],
            ms: Stats::of(&t),
            runs_ms: t,
            cpu_ms: (!c.is_empty()).then(|| Stats::of(&c)),
            runs_cpu_ms: c,
            ops,
            profile,
        })
        .collect()
}

/// Run the benchmark and print the table (or JSON with `--json`). Returns the exit status:
/// 0 done, 2 could not benchmark (message on stderr).
pub fn run(args: &BenchArgs) -> u8 {
    match bench(args) {
        Ok(r) => {
            if args.json {
                match serde_json::to_string_pretty(&r) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return 2;
                    }
                }
            } else {
                print!("{r}");
            }
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_interpolate() {
        let s = Stats::of(&[4.0, 1.0, 3.0, 2.0, 5.0]);
        assert_eq!(
            (s.n, s.median, s.p25, s.p75, s.min),
            (5, 3.0, 2.0, 4.0, 1.0)
        );
        let s = Stats::of(&[1.0, 2.0]);
        assert_eq!((s.median, s.p25, s.p75), (1.5, 1.25, 1.75));
    }

    #[test]
    fn captured_fraction() {
        let labels = vec!["a".into(), "b".into(), "l".into()];
        let times = vec![vec![10.0, 12.0], vec![9.0, 11.0], vec![8.0, 8.0]];
        let (ratios, cap) = relative(&labels, &times, true);
        assert_eq!(ratios.len(), 2);
        assert_eq!(cap.len(), 1);
        assert!((cap[0].stats.median - (0.5 + 0.25) / 2.0).abs() < 1e-12);
    }
}
