//! The native half of the Python package `onnx_normopt` (its Python half, `onnx_normopt/`, holds
//! the public API, the argument checks, the exceptions and the report classes).
//!
//! Every function here is a thin client of the library, like the CLI (`src/main.rs`): a rewrite
//! is the library's one pipeline, [`onnx_normopt::flow::rewrite`] (a folder:
//! [`onnx_normopt::folder::run`]), with a verifier that finds the Python package's onnxruntime.
//! Nothing of the pass or the pipeline is reimplemented. Invariants kept at this edge:
//! - the GIL is released while a model is loaded, rewritten, written or verified;
//! - no panic crosses into Python: each call runs under `catch_unwind`, and a panic becomes an
//!   `internal` error;
//! - arguments arrive as one JSON object (plus the model's bytes), results leave as one JSON
//!   object: `{"ok": {...}}`, or `{"error": {"kind", "message", "reasons", "report", "table"}}`
//!   whose kind (`usage`, `invalid`, `write`, `verification`, `nothing`, `internal`) the Python
//!   half turns into the exception class mirroring the CLI's exit status;
//! - reports are the library's own serialisation, exactly the CLI's `--report` / `--json`.
//!
//! The module is written with pyo3's plain API (no `#[pymodule]`/`#[pyfunction]`): pyo3's proc
//! macros would change the features of `syn` for the whole build and make Cargo rebuild every
//! deriving crate instead of reusing the CLI's release build (see Cargo.toml).

use onnx_normopt::flow::{self, FileResult, Output, Settings, VerifyWhen, Written};
use onnx_normopt::ir::Model;
use onnx_normopt::passes::{self, report::Report, Options, OutputForm, Target};
use onnx_normopt::verify::{self, Runtimes, VerifyOptions};
use onnx_normopt::{folder, io, progress, Error};
use prost::Message;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyCFunction, PyDict, PyTuple};
use serde_json::json;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// What went wrong, in the categories of the Python exceptions (and of the CLI's exit codes).
enum Fail {
    /// A library error; its variant picks the category.
    Lib(Error),
    /// Nothing could be rewritten (exit 3).
    Nothing {
        message: String,
        reasons: Vec<String>,
        report: Option<String>,
    },
    /// Verification failed or could not be carried out (exit 1); nothing was written.
    Verification {
        message: String,
        table: Option<String>,
        report: Option<String>,
    },
    /// A panic or a broken invariant (exit 1).
    Internal(String),
    /// A folder run that stopped: its kind (as above), message, reasons (one per refused
    /// file) and the folder report (JSON text, under `folder_report`).
    Folder {
        kind: &'static str,
        message: String,
        reasons: Vec<String>,
        table: Option<String>,
        report: String,
    },
}

impl Fail {
    fn usage(message: impl Into<String>) -> Fail {
        Fail::Lib(Error::Usage(message.into()))
    }

    /// `{"error": {kind, message, reasons, report, table}}`, paths relabelled; `report` and
    /// `table` are the library's JSON text, embedded as they are.
    fn into_json(self, labels: &Labels) -> String {
        let raw = |v: Option<String>| v.map(|v| labels.json(&v)).unwrap_or_else(|| "null".into());
        let mut folder = raw(None);
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
                let reasons = match &e {
                    Error::NotRewritable(why) => vec![why.clone()],
                    _ => Vec::new(),
                };
                (kind, e.to_string(), reasons, raw(None), raw(None))
            }
            Fail::Nothing {
                message,
                reasons,
                report,
            } => ("nothing", message, reasons, raw(report), raw(None)),
            Fail::Verification {
                message,
                table,
                report,
            } => ("verification", message, Vec::new(), raw(report), raw(table)),
            Fail::Internal(m) => (
                "internal",
                format!("internal error: {m}"),
                Vec::new(),
                raw(None),
                raw(None),
            ),
            Fail::Folder {
                kind,
                message,
                reasons,
                table,
                report,
            } => {
                folder = raw(Some(report));
                (kind, message, reasons, raw(None), raw(table))
            }
        };
        let reasons: Vec<String> = reasons.iter().map(|r| labels.text(r)).collect();
        format!(
            r#"{{"error": {{"kind": {}, "message": {}, "reasons": {}, "report": {report}, "table": {table}, "folder_report": {folder}}}}}"#,
            json!(kind),
            json!(labels.text(&message)),
            json!(reasons),
        )
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

    /// The same replacements inside JSON text (strings compared in their escaped form). The
    /// text is not parsed again: its numbers stay exactly as the library printed them.
    fn json(&self, text: &str) -> String {
        let escaped = |s: &str| {
            let q = json!(s).to_string();
            q[1..q.len() - 1].to_string()
        };
        let mut text = text.to_string();
        for (from, to) in &self.0 {
            text = text.replace(&escaped(from), &escaped(to));
        }
        text
    }
}

/// Run `f` without the GIL and without letting a panic escape.
fn detached<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> Result<T, Fail> + Send,
) -> Result<T, Fail> {
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

/// The library's JSON of `v`, as text (what the CLI prints).
fn text_of<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn options(target: &str, emit: &str, fold: bool) -> Result<Options, Fail> {
    let target = Target::from_name(target).map_err(Fail::Lib)?;
    // Unknown words and `custom` without `crmsnorm` are usage errors.
    Ok(Options {
        form: OutputForm::from_flags(target, emit).map_err(Fail::Lib)?,
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
        // Within the default memory budget: whole models, or piece by piece (#22).
        let mut rep = verify::verify_within(a, b, &opts, None)?;
        rep.notes.extend(notes);
        Ok(rep)
    }
}

/// The library's pipeline settings for these arguments: `verify` None is the CLI's default rule
/// ([`VerifyWhen::Default`]); the verifier is [`Check::run`] in this process, its panics caught.
fn settings(a: &Args, opts: Options, check: Check) -> Settings {
    let verify_opts = check.opts.clone();
    Settings {
        opts,
        verify: match a.verify {
            None => VerifyWhen::Default,
            Some(true) => VerifyWhen::Always,
            Some(false) => VerifyWhen::Never,
        },
        verify_opts,
        // Progress only when asked, then for every output (the CLI shows it for large ones).
        progress: if a.progress {
            progress::Show::Always
        } else {
            progress::Show::Off
        },
        fsync: a.fsync,
        report: a.report.clone(),
        input_name: None,
        verifier: Box::new(move |x: &Path, y: &Path, shown: &Path, _: &VerifyOptions| {
            catch_unwind(AssertUnwindSafe(|| {
                check.run(x, y).map(|mut rep| {
                    rep.b = shown.to_path_buf();
                    flow::Verification::from(rep)
                })
            }))
            .map_err(|p| flow::panic_line(p.as_ref()))
        }),
    }
}

fn refusal_reasons(report: &Report) -> Vec<String> {
    report
        .refusals
        .iter()
        .map(|r| format!("{} ({}): {}", r.norm, r.form, r.why))
        .collect()
}

/// A single-file run's result as the Python half expects it: the report, or the failure in
/// the categories of the exceptions (messages as the CLI prints them).
fn done(input: &Path, r: FileResult<Written>) -> Result<(Report, Option<Vec<u8>>), Fail> {
    match r {
        FileResult::Rewritten { output, report, .. } => {
            let bytes = match output {
                Written::Bytes(b) => Some(b),
                Written::Files(_) => None,
            };
            Ok((*report, bytes))
        }
        FileResult::Refused { why, report } => {
            let mut reasons = report.as_deref().map(refusal_reasons).unwrap_or_default();
            if reasons.is_empty() {
                reasons.push(why.clone());
            }
            Err(Fail::Nothing {
                message: format!("{}: nothing rewritten: {why}", input.display()),
                reasons,
                report: report.as_deref().map(text_of),
            })
        }
        FileResult::VerifyFailed {
            why, report, table, ..
        } => {
            let mut message = format!("{}: {why}; nothing written", input.display());
            if let Some(t) = &table {
                message.push('\n');
                message.push_str(&t.text);
            }
            Err(Fail::Verification {
                message,
                table: table.map(|t| text_of(&t.json)),
                report: Some(text_of(&report)),
            })
        }
        FileResult::Error(e) => Err(Fail::Lib(e)),
    }
}

const EXTERNAL_IN_MEMORY: &str = "the model keeps tensors in external data files, which an \
     in-memory model cannot carry: save it and use onnx_normopt.rewrite(src, dst) on the path";

/// A private temporary folder ([`flow::PrivateDir`]) holding an in-memory model as
/// `model.onnx`, removed when dropped, and the labels that replace its paths in messages.
struct Scratch {
    dir: flow::PrivateDir,
    labels: Labels,
}

impl Scratch {
    fn new(data: &[u8]) -> Result<Scratch, Fail> {
        let dir = flow::PrivateDir::new().map_err(Fail::Lib)?;
        let labels = Labels(vec![
            (dir.path().display().to_string(), IN_MEMORY.into()),
            (dir.dir().display().to_string(), "<temporary folder>".into()),
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

    fn model(&self) -> &Path {
        self.dir.path()
    }
}

/// How a model given in memory is named: in messages, reports and its rewrite's provenance.
const IN_MEMORY: &str = "<in-memory model>";

/// The arguments of every entry point, as the Python half sends them (one JSON object).
#[derive(serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Args {
    src: Option<PathBuf>,
    dst: Option<PathBuf>,
    a: Option<PathBuf>,
    b: Option<PathBuf>,
    target: String,
    emit: String,
    fold: bool,
    /// `None`: the CLI's rule (verify at any size).
    verify: Option<bool>,
    report: Option<PathBuf>,
    progress: bool,
    fsync: bool,
    runtimes: String,
    dims: Option<BTreeMap<String, usize>>,
    rtol: Option<f64>,
    samples: usize,
    seed: u64,
    ort_lib: Option<PathBuf>,
    default_ort_lib: Option<PathBuf>,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            src: None,
            dst: None,
            a: None,
            b: None,
            target: "rmsnorm".into(),
            emit: "standard".into(),
            fold: true,
            verify: Some(true),
            report: None,
            progress: false,
            fsync: true,
            runtimes: "both".into(),
            dims: None,
            rtol: None,
            samples: 3,
            seed: 0,
            ort_lib: None,
            default_ort_lib: None,
        }
    }
}

impl Args {
    fn parse(text: &str) -> Result<Args, Fail> {
        serde_json::from_str(text).map_err(|e| Fail::usage(format!("bad arguments: {e}")))
    }

    fn check(&self) -> Result<Check, Fail> {
        check(
            &self.runtimes,
            self.dims.clone(),
            self.rtol,
            self.samples,
            self.seed,
            self.ort_lib.clone(),
            self.default_ort_lib.clone(),
        )
    }
}

fn need(p: &Option<PathBuf>, what: &str) -> Result<PathBuf, Fail> {
    p.clone()
        .ok_or_else(|| Fail::usage(format!("missing argument {what}")))
}

/// `rewrite(args)`: `src` to `dst`, as `onnx-normopt SRC -o DST`.
fn rewrite_file(py: Python<'_>, text: &str) -> Result<Answer, Fail> {
    let a = Args::parse(text)?;
    let (src, dst) = (need(&a.src, "src")?, need(&a.dst, "dst")?);
    let s = settings(&a, options(&a.target, &a.emit, a.fold)?, a.check()?);
    let (report, _) = detached(py, || {
        done(&src, flow::rewrite(&src, &Output::File(dst.clone()), &s))
    })?;
    Ok(Answer::report(text_of(&report), report.summary()))
}

/// `rewrite_dir(args)`: the folder `src` to `dst`, as `onnx-normopt DIR -o OUT_DIR` (the
/// library's folder mode, [`onnx_normopt::folder::run`]). With `progress`, the lines the CLI
/// shows go to stderr.
fn rewrite_dir(py: Python<'_>, text: &str) -> Result<Answer, Fail> {
    let a = Args::parse(text)?;
    let (src, dst) = (need(&a.src, "src")?, need(&a.dst, "dst")?);
    let opts = options(&a.target, &a.emit, a.fold)?;
    let check = a.check()?;
    if !src.is_dir() {
        return Err(Fail::usage(format!(
            "{}: not a folder (rewrite_dir rewrites a folder; use rewrite for one file)",
            src.display()
        )));
    }
    let settings = settings(&a, opts, check);
    let progress = a.progress;
    let done = detached(py, || {
        let mut log = |m: &str| {
            if progress {
                eprint!("{m}");
            }
        };
        Ok(folder::run(&src, &dst, &settings, &mut log))
    })?;
    let json = text_of(&done.report);
    if done.kind == folder::Kind::Done {
        return Ok(Answer {
            key: "folder_report",
            json,
            summary: done.report.table.clone(),
        });
    }
    let kind = match done.kind {
        folder::Kind::Done | folder::Kind::Internal => "internal",
        folder::Kind::Usage => "usage",
        folder::Kind::Invalid => "invalid",
        folder::Kind::Write => "write",
        folder::Kind::Verification => "verification",
        folder::Kind::Nothing => "nothing",
    };
    let rows = &done.report.files;
    let reasons = rows
        .iter()
        .filter(|r| done.kind == folder::Kind::Nothing || r.status != "refused")
        .filter_map(|r| r.reason.as_ref().map(|why| format!("{}: {why}", r.file)))
        .collect();
    // The first failed file's verification table, when it ran.
    let table = rows
        .iter()
        .filter(|r| r.status == "verification failed")
        .find_map(|r| r.report.as_ref()?.verification.as_ref())
        .map(|t| t.to_string());
    Err(Fail::Folder {
        kind,
        message: done.message.unwrap_or_default(),
        reasons,
        table,
        report: json,
    })
}

/// `rewrite_bytes(data, args)`: a model in memory, through a private temporary folder.
fn rewrite_memory(
    py: Python<'_>,
    data: &[u8],
    text: &str,
    labels: &mut Labels,
) -> Result<(Vec<u8>, Answer), Fail> {
    let a = Args::parse(text)?;
    let mut s = settings(&a, options(&a.target, &a.emit, a.fold)?, a.check()?);
    // A private temporary file, read back at once: no need to wait for the disk.
    s.fsync = false;
    s.report = None;
    s.input_name = Some(IN_MEMORY.into());
    let (scratch, done) = detached(py, || {
        let scratch = Scratch::new(data)?;
        let done = done(
            scratch.model(),
            flow::rewrite(scratch.model(), &Output::Memory, &s),
        );
        Ok((scratch, done))
    })?;
    let mut scratch = scratch;
    *labels = std::mem::take(&mut scratch.labels);
    drop(scratch);
    let (report, bytes) = done?;
    let json = labels.json(&text_of(&report));
    let summary = labels.text(&report.summary());
    Ok((bytes.unwrap_or_default(), Answer::report(json, summary)))
}

/// `inspect(args, data)`: `src`, or the model's bytes when given.
fn inspect_any(
    py: Python<'_>,
    text: &str,
    data: Option<&[u8]>,
    labels: &mut Labels,
) -> Result<Answer, Fail> {
    let a = Args::parse(text)?;
    let opts = options(&a.target, "standard", true)?;
    let (scratch, report) = detached(py, || {
        let scratch = data.map(Scratch::new).transpose()?;
        let path = match &scratch {
            Some(s) => s.model().to_path_buf(),
            None => need(&a.src, "src")?,
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
    if let Some(mut s) = scratch {
        *labels = std::mem::take(&mut s.labels);
    }
    let report = report?;
    Ok(Answer::report(
        labels.json(&text_of(&report)),
        labels.text(&report.inspect_text()),
    ))
}

/// `verify(args)`: `b` against the reference `a`. A table that did not pass is a result, not
/// an error; an error means verification could not be carried out.
fn verify_files(py: Python<'_>, text: &str) -> Result<Answer, Fail> {
    let args = Args::parse(text)?;
    let (a, b) = (need(&args.a, "a")?, need(&args.b, "b")?);
    let check = args.check()?;
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
        Ok(Answer {
            key: "table",
            json: text_of(&rep),
            summary: rep.to_string(),
        })
    })
}

/// A successful result: the library's JSON text under `key`, and the CLI's text.
struct Answer {
    key: &'static str,
    json: String,
    summary: String,
}

impl Answer {
    fn report(json: String, summary: String) -> Answer {
        Answer {
            key: "report",
            json,
            summary,
        }
    }
}

/// `{"ok": {KEY: JSON, "summary": TEXT}}` or the error.
fn answer(r: Result<Answer, Fail>, labels: &Labels) -> String {
    match r {
        Ok(a) => format!(
            r#"{{"ok": {{"{}": {}, "summary": {}}}}}"#,
            a.key,
            a.json,
            json!(a.summary)
        ),
        Err(f) => f.into_json(labels),
    }
}

fn bytes_arg<'a>(args: &'a Bound<'_, PyTuple>, i: usize) -> PyResult<Option<Bound<'a, PyBytes>>> {
    let x = args.get_item(i)?;
    if x.is_none() {
        return Ok(None);
    }
    Ok(Some(x.cast_into::<PyBytes>()?))
}

fn add_functions(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(PyCFunction::new_closure(
        py,
        Some(c"rewrite"),
        Some(c"rewrite(args_json) -> result_json"),
        |args: &Bound<'_, PyTuple>, _: Option<&Bound<'_, PyDict>>| -> PyResult<String> {
            let text: String = args.get_item(0)?.extract()?;
            Ok(answer(rewrite_file(args.py(), &text), &Labels::default()))
        },
    )?)?;
    m.add_function(PyCFunction::new_closure(
        py,
        Some(c"rewrite_dir"),
        Some(c"rewrite_dir(args_json) -> result_json"),
        |args: &Bound<'_, PyTuple>, _: Option<&Bound<'_, PyDict>>| -> PyResult<String> {
            let text: String = args.get_item(0)?.extract()?;
            Ok(answer(rewrite_dir(args.py(), &text), &Labels::default()))
        },
    )?)?;
    m.add_function(PyCFunction::new_closure(
        py,
        Some(c"rewrite_bytes"),
        Some(c"rewrite_bytes(data, args_json) -> (bytes | None, result_json)"),
        |args: &Bound<'_, PyTuple>, _: Option<&Bound<'_, PyDict>>| -> PyResult<Py<PyAny>> {
            let py = args.py();
            let data = bytes_arg(args, 0)?;
            let data = data.as_ref().map(|d| d.as_bytes()).unwrap_or_default();
            let text: String = args.get_item(1)?.extract()?;
            let mut labels = Labels::default();
            let (bytes, result) = match rewrite_memory(py, data, &text, &mut labels) {
                Ok((bytes, v)) => (Some(PyBytes::new(py, &bytes)), answer(Ok(v), &labels)),
                Err(f) => (None, answer(Err(f), &labels)),
            };
            Ok((bytes, result).into_pyobject(py)?.into_any().unbind())
        },
    )?)?;
    m.add_function(PyCFunction::new_closure(
        py,
        Some(c"inspect"),
        Some(c"inspect(args_json, data: bytes | None) -> result_json"),
        |args: &Bound<'_, PyTuple>, _: Option<&Bound<'_, PyDict>>| -> PyResult<String> {
            let text: String = args.get_item(0)?.extract()?;
            let data = bytes_arg(args, 1)?;
            let mut labels = Labels::default();
            let r = inspect_any(
                args.py(),
                &text,
                data.as_ref().map(|d| d.as_bytes()),
                &mut labels,
            );
            Ok(answer(r, &labels))
        },
    )?)?;
    m.add_function(PyCFunction::new_closure(
        py,
        Some(c"verify"),
        Some(c"verify(args_json) -> result_json"),
        |args: &Bound<'_, PyTuple>, _: Option<&Bound<'_, PyDict>>| -> PyResult<String> {
            let text: String = args.get_item(0)?.extract()?;
            Ok(answer(verify_files(args.py(), &text), &Labels::default()))
        },
    )?)?;
    Ok(())
}

static mut MODULE_DEF: pyo3::ffi::PyModuleDef = pyo3::ffi::PyModuleDef {
    m_base: pyo3::ffi::PyModuleDef_HEAD_INIT,
    m_name: c"_onnx_normopt".as_ptr(),
    m_doc: c"The native half of onnx_normopt; use the functions of the onnx_normopt package."
        .as_ptr(),
    m_size: -1,
    m_methods: std::ptr::null_mut(),
    m_slots: std::ptr::null_mut(),
    m_traverse: None,
    m_clear: None,
    m_free: None,
};

/// The module's entry point (single-phase initialisation).
///
/// # Safety
/// Called by the Python interpreter, with the GIL held, once per process.
#[no_mangle]
pub unsafe extern "C" fn PyInit__onnx_normopt() -> *mut pyo3::ffi::PyObject {
    Python::attach(|py| {
        let made = catch_unwind(AssertUnwindSafe(|| -> PyResult<Py<PyModule>> {
            // SAFETY: MODULE_DEF is only handed to the interpreter, here, once.
            let m = unsafe { pyo3::ffi::PyModule_Create(std::ptr::addr_of_mut!(MODULE_DEF)) };
            // SAFETY: a new reference (or null, with the error set).
            let m = unsafe { Bound::from_owned_ptr_or_err(py, m) }?.cast_into::<PyModule>()?;
            add_functions(&m)?;
            Ok(m.unbind())
        }));
        match made {
            Ok(Ok(m)) => m.into_ptr(),
            Ok(Err(e)) => {
                e.restore(py);
                std::ptr::null_mut()
            }
            Err(_) => {
                pyo3::exceptions::PySystemError::new_err("onnx_normopt: module init panicked")
                    .restore(py);
                std::ptr::null_mut()
            }
        }
    })
}
