//! The native half of the Python package `onnx_normopt` (its Python half, `onnx_normopt/`, holds
//! the public API, the exceptions and the report classes).
//!
//! Every function here is a thin client of the library, like the CLI (`src/main.rs`): load →
//! `passes::run` → stage the output → `verify::verify_files` → commit. Nothing of the pass is
//! reimplemented. Invariants kept at this edge:
//! - the GIL is released while a model is loaded, rewritten, written or verified;
//! - no panic crosses into Python: each call runs under `catch_unwind` and a panic becomes an
//!   internal error;
//! - every failure reaches Python as one `NativeError(kind, message, reasons, report, table)`,
//!   which the Python half turns into the exception class of its kind (`usage`, `invalid`,
//!   `write`, `verification`, `nothing`, `internal`), mirroring the CLI's exit codes;
//! - reports cross as JSON text, exactly the CLI's `--report` / `--json` serialisation.

use onnx_normopt::ir::Model;
use onnx_normopt::passes::{self, emit::Emit, report::Report, CrmsEmit, Options, Target};
use onnx_normopt::verify::{self, Runtimes, VerifyOptions};
use onnx_normopt::{io, Error};
use prost::Message;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

create_exception!(
    _onnx_normopt,
    NativeError,
    PyException,
    "Raised by the native module with args (kind, message, reasons, report_json, table_json); \
     the public functions of onnx_normopt turn it into the exception class of its kind."
);

/// Models up to this many bytes (file plus external data) are verified when `verify` is None
/// (the CLI's default rule).
const VERIFY_BY_DEFAULT_BELOW: u64 = 512 << 20;

/// What went wrong, in the categories of the Python exceptions (and of the CLI's exit codes).
enum Fail {
    /// A library error; its variant picks the category.
    Lib(Error),
    /// Nothing could be rewritten (exit 3).
    Nothing {
        message: String,
        reasons: Vec<String>,
        report: Option<serde_json::Value>,
    },
    /// Verification failed or could not be carried out (exit 1); nothing was written.
    Verification {
        message: String,
        table: Option<serde_json::Value>,
        report: Option<serde_json::Value>,
    },
    /// A panic or a broken invariant (exit 1).
    Internal(String),
}

impl Fail {
    fn usage(message: impl Into<String>) -> Fail {
        Fail::Lib(Error::Usage(message.into()))
    }

    /// `NativeError(kind, message, reasons, report_json, table_json)`, paths relabelled.
    fn into_py(self, labels: &Labels) -> PyErr {
        let json = |v: Option<serde_json::Value>| v.map(|v| labels.json(v).to_string());
        let (kind, message, reasons, report, table) = match self {
            Fail::Lib(e) => {
                let kind = match &e {
                    Error::Usage(_) => "usage",
                    Error::Write { .. } => "write",
                    Error::NotRewritable(_) => "nothing",
                    Error::Internal(_) => "internal",
                    _ if e.exit_code() == 2 => "invalid",
                    _ => "internal",
                };
                let message = e.to_string();
                let reasons = match &e {
                    Error::NotRewritable(why) => vec![why.clone()],
                    _ => Vec::new(),
                };
                (kind, message, reasons, None, None)
            }
            Fail::Nothing {
                message,
                reasons,
                report,
            } => ("nothing", message, reasons, json(report), None),
            Fail::Verification {
                message,
                table,
                report,
            } => ("verification", message, Vec::new(), json(report), json(table)),
            Fail::Internal(m) => ("internal", format!("internal error: {m}"), Vec::new(), None, None),
        };
        let reasons: Vec<String> = reasons.iter().map(|r| labels.text(r)).collect();
        NativeError::new_err((kind, labels.text(&message), reasons, report, table))
    }
}

/// Replaces the paths of a private temporary folder (in-memory models) by readable labels in
/// messages and reports.
#[derive(Default)]
struct Labels(Vec<(String, String)>);

impl Labels {
    fn text(&self, s: &str) -> String {
        let mut s = s.to_string();
        for (from, to) in &self.0 {
            s = s.replace(from.as_str(), to);
        }
        s
    }

    fn json(&self, v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        if self.0.is_empty() {
            return v;
        }
        match v {
            Value::String(s) => Value::String(self.text(&s)),
            Value::Array(a) => Value::Array(a.into_iter().map(|x| self.json(x)).collect()),
            Value::Object(o) => Value::Object(o.into_iter().map(|(k, x)| (k, self.json(x))).collect()),
            v => v,
        }
    }
}

/// Run `f` without the GIL and without letting a panic escape.
fn detached<T: Send>(py: Python<'_>, f: impl FnOnce() -> Result<T, Fail> + Send) -> Result<T, Fail> {
    py.detach(|| {
        catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
            let what = if let Some(s) = p.downcast_ref::<&str>() {
                (*s).to_string()
            } else if let Some(s) = p.downcast_ref::<String>() {
                s.clone()
            } else {
                "unknown panic".to_string()
            };
            Err(Fail::Internal(format!("panicked: {what}")))
        })
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

fn options(target: &str, emit: &str, fold: bool) -> Result<Options, Fail> {
    let target = match target {
        "rmsnorm" => Target::Rmsnorm,
        "crmsnorm" => Target::Crmsnorm,
        t => {
            return Err(Fail::usage(format!(
                "target must be \"rmsnorm\" or \"crmsnorm\", not {t:?}"
            )))
        }
    };
    let (emit, crms_emit) = match emit {
        "standard" => (Emit::Standard, CrmsEmit::Standard),
        "onnxruntime" => (Emit::Onnxruntime, CrmsEmit::Standard),
        "custom" => (Emit::Standard, CrmsEmit::Custom),
        e => {
            return Err(Fail::usage(format!(
                "emit must be \"standard\", \"onnxruntime\" or \"custom\", not {e:?}"
            )))
        }
    };
    Ok(Options {
        target,
        emit,
        crms_emit,
        fold,
        ..Options::default()
    })
}

/// How to verify, as given from Python.
#[derive(Clone)]
struct Check {
    opts: VerifyOptions,
    /// The onnxruntime library of the installed Python package, used when neither `ort_lib`
    /// nor `ORT_DYLIB_PATH` names one.
    default_ort: Option<PathBuf>,
}

#[allow(clippy::too_many_arguments)]
fn check(
    runtimes: &str,
    dims: Option<BTreeMap<String, usize>>,
    rtol: Option<f64>,
    samples: usize,
    seed: u64,
    ort_lib: Option<PathBuf>,
    default_ort_lib: Option<PathBuf>,
) -> Result<Check, Fail> {
    let runtimes = match runtimes {
        "both" => Runtimes::Both,
        "tract" => Runtimes::Tract,
        "onnxruntime" => Runtimes::Ort,
        r => {
            return Err(Fail::usage(format!(
                "runtimes must name \"tract\" and/or \"onnxruntime\", not {r:?}"
            )))
        }
    };
    Ok(Check {
        opts: VerifyOptions {
            samples,
            seed,
            dims: dims.unwrap_or_default(),
            rtol,
            ort_lib,
            runtimes,
            require_ort: verify::ci_requires_ort(),
            ..VerifyOptions::default()
        },
        default_ort: default_ort_lib,
    })
}

impl Check {
    /// Verify `b` against `a`. The Python package's onnxruntime is loaded first when nothing
    /// else names a library; if it cannot be loaded, the library's own search runs (and its
    /// report says what happened), with a note saying why the package's library was not used.
    fn run(&self, a: &Path, b: &Path) -> Result<verify::VerifyReport, verify::VerifyError> {
        let mut opts = self.opts.clone();
        let mut notes = Vec::new();
        let env_set = std::env::var_os("ORT_DYLIB_PATH").is_some_and(|v| !v.is_empty());
        if opts.runtimes != Runtimes::Tract && opts.ort_lib.is_none() && !env_set {
            if let Some(lib) = &self.default_ort {
                match verify::ort_environment(Some(lib)) {
                    Ok((_, loaded)) => opts.ort_lib = Some(loaded),
                    Err(e) => notes.push(format!(
                        "the onnxruntime library of the installed Python package was not used: {e}"
                    )),
                }
            }
        }
        let mut rep = verify::verify_files(a, b, &opts)?;
        rep.notes.extend(notes);
        Ok(rep)
    }
}

/// A byte progress bar on stderr for the write, drawn only when asked (and stderr is a
/// terminal: indicatif hides it otherwise).
struct Bar {
    enabled: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl Bar {
    fn set(&mut self, done: u64, total: u64) {
        if !self.enabled {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let b = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_message("writing");
            b
        });
        bar.set_length(total);
        bar.set_position(done);
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// The model file plus the external data files it references (what the CLI's default
/// verification rule counts).
fn total_size(path: &Path, model: &Model) -> u64 {
    let mut n = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if model.had_external_data {
        if let Some(dir) = path.parent() {
            let mut seen = std::collections::BTreeSet::new();
            io::for_each_tensor(&model.to_proto_pending(), &mut |t| {
                for e in &t.external_data {
                    if e.key.as_deref() == Some("location") {
                        seen.insert(e.value.clone().unwrap_or_default());
                    }
                }
            });
            n += seen
                .iter()
                .map(|l| std::fs::metadata(dir.join(l)).map(|m| m.len()).unwrap_or(0))
                .sum::<u64>();
        }
    }
    n
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Fail> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let w = |e: std::io::Error| {
        Fail::Lib(Error::Write {
            path: path.into(),
            reason: e.to_string(),
        })
    };
    std::fs::write(&tmp, bytes).map_err(w)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        w(e)
    })
}

/// One rewrite, as the CLI's rewrite command does it.
struct Job {
    input: PathBuf,
    out: PathBuf,
    report_path: Option<PathBuf>,
    opts: Options,
    /// `None`: the CLI's rule (verify models up to 512 MiB).
    verify: Option<bool>,
    check: Check,
    progress: bool,
    fsync: bool,
    /// Return the output's bytes instead of committing it (in-memory models).
    in_memory: bool,
}

struct Done {
    report: Report,
    bytes: Option<Vec<u8>>,
}

fn refusal_reasons(report: &Report) -> Vec<String> {
    report
        .refusals
        .iter()
        .map(|r| format!("{} ({}): {}", r.norm, r.form, r.why))
        .collect()
}

fn run_rewrite(job: &Job) -> Result<Done, Fail> {
    let (input, out) = (job.input.as_path(), job.out.as_path());
    if same_file(input, out) {
        return Err(Fail::usage(format!(
            "{}: the output must not be the input",
            out.display()
        )));
    }
    if let Some(rp) = &job.report_path {
        if same_file(input, rp) || rp == out {
            return Err(Fail::usage(format!(
                "{}: the report must not be the input or the output model",
                rp.display()
            )));
        }
    }
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(Fail::usage(format!(
            "{}: the output folder {} does not exist",
            out.display(),
            dir.display()
        )));
    }
    let model = Model::load(input).map_err(Fail::Lib)?;
    if job.in_memory && model.had_external_data {
        return Err(Fail::usage(EXTERNAL_IN_MEMORY));
    }
    let size = total_size(input, &model);
    let mut outcome = passes::run(model, &job.opts).map_err(|e| match e {
        Error::NotRewritable(why) => Fail::Nothing {
            message: format!("{}: nothing rewritten: {why}", input.display()),
            reasons: vec![why],
            report: None,
        },
        e => Fail::Lib(e),
    })?;
    if !outcome.rewritten() {
        let first = outcome
            .report
            .refusals
            .first()
            .map(|r| r.why.clone())
            .unwrap_or_else(|| "no LayerNorm on a residual stream".into());
        let mut reasons = refusal_reasons(&outcome.report);
        if reasons.is_empty() {
            reasons.push(first.clone());
        }
        return Err(Fail::Nothing {
            message: format!("{}: nothing rewritten: {first}", input.display()),
            reasons,
            report: Some(to_json(&outcome.report)),
        });
    }
    io::set_fsync(job.fsync);
    let proto = outcome.model.to_proto_pending();
    let layout = io::choose_layout(&proto, &outcome.model, outcome.model.had_external_data);
    if job.in_memory && layout == io::DataLayout::External {
        return Err(Fail::usage(
            "the rewritten model would not fit in one protobuf (2 GiB): save the model with \
             external data and use onnx_normopt.rewrite(src, dst)",
        ));
    }
    let mut bar = Bar {
        enabled: job.progress,
        bar: None,
    };
    let staged = io::stage(
        &proto,
        &outcome.model.store,
        &outcome.model,
        out,
        layout,
        &mut |d, t| bar.set(d, t),
    );
    bar.finish();
    let staged = staged.map_err(Fail::Lib)?;
    let do_verify = job.verify.unwrap_or(size <= VERIFY_BY_DEFAULT_BELOW);
    if do_verify {
        match job.check.run(input, staged.model_path()) {
            Ok(rep) => {
                let table = to_json(&rep);
                outcome.report.verification = Some(table.clone());
                if !rep.passed() {
                    return Err(Fail::Verification {
                        message: format!(
                            "{}: verification failed: the rewritten model differs; nothing \
                             written\n{rep}",
                            input.display()
                        ),
                        table: Some(table),
                        report: Some(to_json(&outcome.report)),
                    });
                }
            }
            Err(e) => {
                return Err(Fail::Verification {
                    message: format!(
                        "{}: could not verify the rewritten model: {e}; nothing written",
                        input.display()
                    ),
                    table: None,
                    report: Some(to_json(&outcome.report)),
                })
            }
        }
    }
    if job.in_memory {
        let bytes = std::fs::read(staged.model_path()).map_err(|e| {
            Fail::Lib(Error::Write {
                path: staged.model_path().into(),
                reason: e.to_string(),
            })
        })?;
        return Ok(Done {
            report: outcome.report,
            bytes: Some(bytes),
        });
    }
    if let Some(rp) = &job.report_path {
        let text = serde_json::to_string_pretty(&outcome.report).unwrap_or_default();
        write_atomic(rp, text.as_bytes())?;
    }
    staged.commit().map_err(Fail::Lib)?;
    Ok(Done {
        report: outcome.report,
        bytes: None,
    })
}

const EXTERNAL_IN_MEMORY: &str = "the model keeps tensors in external data files, which an \
     in-memory model cannot carry: save it and use onnx_normopt.rewrite(src, dst) on the path";

/// A private temporary folder holding an in-memory model as `model.onnx`, and the labels that
/// replace its paths in messages.
struct Scratch {
    dir: tempfile::TempDir,
    labels: Labels,
}

impl Scratch {
    fn new(data: &[u8]) -> Result<Scratch, Fail> {
        let dir = tempfile::Builder::new()
            .prefix("onnx-normopt-")
            .tempdir()
            .map_err(|e| Fail::Internal(format!("cannot create a temporary folder: {e}")))?;
        let labels = Labels(vec![
            (
                dir.path().join("model.onnx").display().to_string(),
                "<in-memory model>".into(),
            ),
            (dir.path().display().to_string(), "<temporary folder>".into()),
        ]);
        let s = Scratch { dir, labels };
        // Bytes that decode as a model naming external data: say so, instead of "file not
        // found" in a folder the user never saw. Other bytes are left to the loader.
        if let Ok(m) = onnx_normopt::proto::ModelProto::decode(data) {
            let mut external = false;
            io::for_each_tensor(&m, &mut |t| external |= io::is_external(t));
            if external {
                return Err(Fail::usage(EXTERNAL_IN_MEMORY));
            }
        }
        std::fs::write(s.model(), data)
            .map_err(|e| Fail::Internal(format!("cannot write a temporary file: {e}")))?;
        Ok(s)
    }

    fn model(&self) -> PathBuf {
        self.dir.path().join("model.onnx")
    }
}

/// `rewrite(src, dst, *, ...) -> (report_json, summary)`.
#[pyfunction]
#[pyo3(signature = (src, dst, *, target, emit, fold, verify, report, progress, fsync,
                    runtimes, dims, rtol, samples, seed, ort_lib, default_ort_lib))]
#[allow(clippy::too_many_arguments)]
fn rewrite(
    py: Python<'_>,
    src: PathBuf,
    dst: PathBuf,
    target: &str,
    emit: &str,
    fold: bool,
    verify: Option<bool>,
    report: Option<PathBuf>,
    progress: bool,
    fsync: bool,
    runtimes: &str,
    dims: Option<BTreeMap<String, usize>>,
    rtol: Option<f64>,
    samples: usize,
    seed: u64,
    ort_lib: Option<PathBuf>,
    default_ort_lib: Option<PathBuf>,
) -> PyResult<(String, String)> {
    let labels = Labels::default();
    let go = || -> Result<(String, String), Fail> {
        let job = Job {
            input: src,
            out: dst,
            report_path: report,
            opts: options(target, emit, fold)?,
            verify,
            check: check(runtimes, dims, rtol, samples, seed, ort_lib, default_ort_lib)?,
            progress,
            fsync,
            in_memory: false,
        };
        let done = detached(py, || run_rewrite(&job))?;
        Ok((to_json(&done.report).to_string(), done.report.summary()))
    };
    go().map_err(|f| f.into_py(&labels))
}

/// `rewrite_bytes(data, *, ...) -> (model_bytes, report_json, summary)`.
#[pyfunction]
#[pyo3(signature = (data, *, target, emit, fold, verify, progress,
                    runtimes, dims, rtol, samples, seed, ort_lib, default_ort_lib))]
#[allow(clippy::too_many_arguments)]
fn rewrite_bytes<'py>(
    py: Python<'py>,
    data: &[u8],
    target: &str,
    emit: &str,
    fold: bool,
    verify: Option<bool>,
    progress: bool,
    runtimes: &str,
    dims: Option<BTreeMap<String, usize>>,
    rtol: Option<f64>,
    samples: usize,
    seed: u64,
    ort_lib: Option<PathBuf>,
    default_ort_lib: Option<PathBuf>,
) -> PyResult<(Bound<'py, PyBytes>, String, String)> {
    let mut labels = Labels::default();
    let mut go = || -> Result<(Vec<u8>, String, String), Fail> {
        let opts = options(target, emit, fold)?;
        let check = check(runtimes, dims, rtol, samples, seed, ort_lib, default_ort_lib)?;
        let (scratch, done) = detached(py, || {
            let scratch = Scratch::new(data)?;
            let job = Job {
                input: scratch.model(),
                out: scratch.dir.path().join("rewritten.onnx"),
                report_path: None,
                opts,
                verify,
                check,
                progress,
                // A private temporary file that is read back at once: no need to wait for
                // the disk.
                fsync: false,
                in_memory: true,
            };
            let done = run_rewrite(&job);
            Ok((scratch, done))
        })?;
        labels = std::mem::take(&mut { scratch }.labels);
        let done = done?;
        let report = labels.json(to_json(&done.report)).to_string();
        let summary = labels.text(&done.report.summary());
        Ok((done.bytes.unwrap_or_default(), report, summary))
    };
    let (bytes, report, summary) = go().map_err(|f| f.into_py(&labels))?;
    Ok((PyBytes::new(py, &bytes), report, summary))
}

/// `inspect(src, *, target, in_memory) -> (report_json, text)`; `src` is a path, or the model's
/// bytes when `data` is given.
#[pyfunction]
#[pyo3(signature = (src, *, target, data=None))]
fn inspect(
    py: Python<'_>,
    src: Option<PathBuf>,
    target: &str,
    data: Option<&[u8]>,
) -> PyResult<(String, String)> {
    let mut labels = Labels::default();
    let mut go = || -> Result<(String, String), Fail> {
        let opts = options(target, "standard", true)?;
        let (scratch, report) = detached(py, || {
            let scratch = data.map(Scratch::new).transpose()?;
            let path = match (&scratch, &src) {
                (Some(s), _) => s.model(),
                (None, Some(p)) => p.clone(),
                (None, None) => return Err(Fail::usage("inspect needs a path or model bytes")),
            };
            let report = Model::load(&path)
                .and_then(|m| passes::inspect(&m, &opts))
                .map_err(|e| match e {
                    Error::NotRewritable(why) => Fail::Nothing {
                        message: format!("{}: nothing rewritten: {why}", path.display()),
                        reasons: vec![why],
                        report: None,
                    },
                    e => Fail::Lib(e),
                });
            Ok((scratch, report))
        })?;
        if let Some(s) = scratch {
            labels = std::mem::take(&mut { s }.labels);
        }
        let report = report?;
        Ok((
            labels.json(to_json(&report)).to_string(),
            labels.text(&report.inspect_text()),
        ))
    };
    go().map_err(|f| f.into_py(&labels))
}

/// `verify(a, b, *, ...) -> (table_json, text)`: a table that did not pass is returned, not
/// raised; an error means verification could not be carried out.
#[pyfunction]
#[pyo3(signature = (a, b, *, runtimes, dims, rtol, samples, seed, ort_lib, default_ort_lib))]
#[allow(clippy::too_many_arguments)]
fn verify(
    py: Python<'_>,
    a: PathBuf,
    b: PathBuf,
    runtimes: &str,
    dims: Option<BTreeMap<String, usize>>,
    rtol: Option<f64>,
    samples: usize,
    seed: u64,
    ort_lib: Option<PathBuf>,
    default_ort_lib: Option<PathBuf>,
) -> PyResult<(String, String)> {
    let labels = Labels::default();
    let go = || -> Result<(String, String), Fail> {
        let check = check(runtimes, dims, rtol, samples, seed, ort_lib, default_ort_lib)?;
        detached(py, || {
            // As the CLI: a file that is not a model is bad input (exit 2), not a failed check.
            for p in [&a, &b] {
                io::load(p).map_err(Fail::Lib)?;
            }
            let rep = check.run(&a, &b).map_err(|e| Fail::Verification {
                message: format!("verify: {e}"),
                table: None,
                report: None,
            })?;
            Ok((to_json(&rep).to_string(), rep.to_string()))
        })
    };
    go().map_err(|f| f.into_py(&labels))
}

/// The native half of `onnx_normopt`.
#[pymodule]
fn _onnx_normopt(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("NativeError", m.py().get_type::<NativeError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(rewrite, m)?)?;
    m.add_function(wrap_pyfunction!(rewrite_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    Ok(())
}
