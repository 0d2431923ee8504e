//! The one pipeline from a model file to its rewrite, which the command line (one file, and
//! each model of a folder) and the Python package all run: load → refuse an already-rewritten
//! model → `passes::run` → record provenance → stage the output (not yet visible) → verify the
//! staged file against the input.
//!
//! - [`rewrite`] is a whole single-file run: the usage checks (output ≠ input, report ≠ either,
//!   output folder exists), [`stage`], then the JSON report ([`Settings::report`]) and the
//!   output renamed into place ([`Output::File`]) or read back ([`Output::Memory`]).
//! - [`stage`] stops at the verified, staged output: the folder mode ([`crate::folder`]) runs it
//!   on each model and commits them itself.
//!
//! What a caller chooses is in [`Settings`]: the pass's options, when to verify
//! ([`VerifyWhen`], with the one default policy), how ([`Verifier`]), fsync, the report path.
//! Nothing here prints but the write progress bar: the caller reports the [`FileResult`].

use crate::ir::Model;
use crate::passes::report::{Coverage, Report, VerifiedAs};
use crate::passes::{self, Options};
use crate::progress;
use crate::provenance::{self, PendingDigest};
use crate::verify::{self, VerifyOptions, VerifyReport};
use crate::{io, Error};
use std::path::{Path, PathBuf};

/// When a rewrite is verified.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VerifyWhen {
    /// As the default policy says ([`default_policy`]).
    #[default]
    Default,
    /// Always (`--verify`, Python's `verify=True`).
    Always,
    /// Never (`--no-verify`, Python's `verify=False`).
    Never,
}

impl VerifyWhen {
    /// `None` when the rewrite is verified, else why it is not (one line).
    pub fn skip_reason(self) -> Option<String> {
        match self {
            VerifyWhen::Always => None,
            VerifyWhen::Never => Some("not verified (--no-verify)".into()),
            VerifyWhen::Default => default_policy(),
        }
    }
}

/// The default policy, the one place it is written: every rewrite is verified, whatever the
/// model's size (`None`; `Some(why not)` would skip it). How is the budget's choice, not the
/// policy's: whole models when their two copies fit the verification budget, else piece by
/// piece (`verify::budget::plan`, `verify::pieces`).
pub fn default_policy() -> Option<String> {
    None
}

/// How every file is rewritten.
pub struct Settings {
    /// The pass options.
    pub opts: Options,
    /// When to verify.
    pub verify: VerifyWhen,
    /// Verification options.
    pub verify_opts: VerifyOptions,
    /// What progress to show: the write's bar and, in folder mode, the progress lines
    /// (`Off`: nothing, the command line's `-q`).
    pub progress: progress::Show,
    /// Wait for every written file to reach the disk before it is renamed into place
    /// ([`io::StageOptions::fsync`]).
    pub fsync: bool,
    /// Where to write the JSON report (a single file's [`Report`], or the folder's report) when
    /// the run succeeds.
    pub report: Option<PathBuf>,
    /// The input's name as the output's provenance records it (`input_file`), instead of the
    /// input file's name: a model given in memory (Python) is staged in a private file whose
    /// name says nothing.
    pub input_name: Option<String>,
    /// Runs the verification of a staged output against its input (see [`Verifier`]).
    pub verifier: Box<Verifier>,
}

/// Verifies `b` against `a` (the arguments: `a`, `b`, how the table names `b` — the output the
/// user asked for, not its staged path —, the options): the verifier's result, or
/// `Err(one line)` when it panicked. The default ([`verify_guarded`]) catches panics itself;
/// the CLI passes one that verifies in a child process ([`verify::verify_isolated`]), the
/// Python package one that finds its onnxruntime.
pub type Verifier = dyn Fn(
        &Path,
        &Path,
        &Path,
        &VerifyOptions,
    ) -> Result<Result<Verification, verify::VerifyError>, String>
    + Send
    + Sync;

impl Settings {
    /// Whether the run shows no progress at all (the folder mode's lines included).
    pub fn quiet(&self) -> bool {
        self.progress == progress::Show::Off
    }

    /// Settings for `opts`: verification as [`VerifyWhen::Default`] says with the default
    /// options, in process ([`verify_guarded`]); no progress shown; fsync; no report.
    pub fn new(opts: Options) -> Settings {
        Settings {
            opts,
            verify: VerifyWhen::Default,
            verify_opts: VerifyOptions::default(),
            progress: progress::Show::Off,
            fsync: true,
            report: None,
            input_name: None,
            verifier: Box::new(verify_guarded),
        }
    }
}

/// A verification that ran to the end, as the flow reports it: the table as JSON (the
/// `--report`'s `verification`) and as text, and whether it passed. The in-process verifier
/// ([`verify::verify_within`]) and the isolated one ([`verify::verify_isolated`], the CLI's) both
/// give one.
#[derive(Clone, Debug)]
pub struct Verification {
    /// The table as JSON.
    pub json: serde_json::Value,
    /// The table as text.
    pub text: String,
    /// Whether every row passed.
    pub passed: bool,
    /// What it covered (whole or in pieces, what was not checked).
    pub coverage: Coverage,
}

impl Verification {
    /// Whether every row passed.
    pub fn passed(&self) -> bool {
        self.passed
    }
}

impl From<VerifyReport> for Verification {
    fn from(rep: VerifyReport) -> Verification {
        Verification {
            json: serde_json::to_value(&rep).unwrap_or_default(),
            text: rep.to_string(),
            passed: rep.passed(),
            coverage: rep.coverage(),
        }
    }
}

impl From<verify::Checked> for Verification {
    fn from(c: verify::Checked) -> Verification {
        Verification {
            passed: c.passed(),
            json: c.json,
            text: c.text,
            coverage: c.coverage,
        }
    }
}

impl std::fmt::Display for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// [`verify::verify_within`] the default budget (in process: whole models, or piece by piece
/// when they do not fit) with a panic turned into `Err(one line)`; the table names B as
/// `shown`.
pub fn verify_guarded(
    a: &Path,
    b: &Path,
    shown: &Path,
    opts: &VerifyOptions,
) -> Result<Result<Verification, verify::VerifyError>, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        verify::verify_within(a, b, opts, None).map(|mut rep| {
            rep.b = shown.to_path_buf();
            Verification::from(rep)
        })
    }))
    .map_err(|p| panic_line(p.as_ref()))
}

/// The one line a caught verification panic becomes.
pub fn panic_line(p: &(dyn std::any::Any + Send)) -> String {
    let msg = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into());
    format!(
        "internal error during verification (a bug in this tool): {}",
        one_line(&msg)
    )
}

/// Whether and how the rewritten model was verified.
pub enum Verified {
    /// Verified: the table.
    Passed(Box<Verification>),
    /// Not verified, and why (`--no-verify`).
    Skipped(String),
}

/// What happened to one file; `W` is what a rewrite leaves: the staged output ([`stage`]) or
/// what was written ([`rewrite`]).
pub enum FileResult<W = io::Staged> {
    /// Rewritten and verified when asked.
    Rewritten {
        /// The output: staged (`commit()` puts it into place), or written.
        output: W,
        /// What was done (verification included).
        report: Box<Report>,
        /// Verification.
        verified: Verified,
    },
    /// Nothing rewritten (exit 3): why, and the report when the pass ran.
    Refused {
        /// One line.
        why: String,
        /// The pass's report.
        report: Option<Box<Report>>,
    },
    /// The rewritten model differs from the input, or could not be verified (exit 1).
    VerifyFailed {
        /// One line.
        why: String,
        /// 1 (the rewrite differs, or a runtime that runs the original cannot run it) or 4
        /// (no runtime could run the original: nothing was checked).
        code: u8,
        /// The pass's report (with the verification table when it ran).
        report: Box<Report>,
        /// The table, when it ran.
        table: Option<Box<Verification>>,
    },
    /// An error (bad input, write failure, internal error).
    Error(Error),
}

impl<W> FileResult<W> {
    /// The exit status of a single-file run ending here (0 when rewritten).
    pub fn exit_code(&self) -> u8 {
        match self {
            FileResult::Rewritten { .. } => 0,
            FileResult::Refused { .. } => 3,
            FileResult::VerifyFailed { code, .. } => *code,
            FileResult::Error(e) => e.exit_code() as u8,
        }
    }
}

/// The external data files a loaded model references (locations, relative to its folder).
pub fn external_files(model: &Model) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeSet::new();
    if model.had_external_data {
        io::for_each_tensor(&model.to_proto_pending(), &mut |t| {
            for e in &t.external_data {
                if e.key.as_deref() == Some("location") {
                    seen.insert(e.value.clone().unwrap_or_default());
                }
            }
        });
    }
    seen
}

/// `s` with control characters escaped: reasons quote names from the file, and the reason
/// line must stay one line.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The folder a file path is in (`.` for a bare file name).
pub fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Whether `a` and `b` name the same file: the same canonical path, or (when either cannot be
/// resolved, e.g. an output not written yet) the same path as given.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Where [`stage`] writes: the staging destination, the data file's name (external layout;
/// `None`: `OUT.data`), and the path the user asked for, which the verification table names as
/// model B (the folder mode stages into a private folder of its own).
#[derive(Clone, Copy, Debug)]
pub struct Dest<'a> {
    /// Where the output goes when committed.
    pub path: &'a Path,
    /// The data file's name (external layout).
    pub data_name: Option<&'a str>,
    /// The output as the user named it.
    pub shown: &'a Path,
}

impl<'a> Dest<'a> {
    /// `path`, as the user named it, with the default data file name.
    pub fn file(path: &'a Path) -> Dest<'a> {
        Dest {
            path,
            data_name: None,
            shown: path,
        }
    }
}

/// Rewrite `input` into a staged output for `dest`, verified when `s.verify` says so.
pub fn stage(input: &Path, dest: &Dest, s: &Settings) -> FileResult {
    stage_checked(input, dest, s, |_| Ok(()))
}

/// [`stage`], with `check` run on the pass's outcome before anything is written (an in-memory
/// output refuses one that needs external data).
fn stage_checked(
    input: &Path,
    dest: &Dest,
    s: &Settings,
    check: impl Fn(io::DataLayout) -> Result<(), Error>,
) -> FileResult {
    let model = match Model::load(input) {
        Ok(m) => m,
        Err(e) => return FileResult::Error(e),
    };
    if let Some(why) = provenance::already_rewritten(&model.header, s.opts.form.target().name()) {
        return FileResult::Refused { why, report: None };
    }
    let digest = PendingDigest::start(input);
    let mut outcome = match passes::run(model, &s.opts) {
        Ok(o) => o,
        Err(Error::NotRewritable(why)) => return FileResult::Refused { why, report: None },
        Err(e) => return FileResult::Error(e),
    };
    if !outcome.rewritten() {
        let why = headline(&outcome.report);
        return FileResult::Refused {
            why,
            report: Some(Box::new(outcome.report)),
        };
    }
    let sha = match digest.finish(input) {
        Ok(d) => d,
        Err(e) => return FileResult::Error(e),
    };
    let mut prov = outcome.report.provenance(s.opts.fold, input, &sha);
    if let Some(name) = &s.input_name {
        prov.input_file = name.clone();
    }
    provenance::record(&mut outcome.model.header, &prov);
    let proto = outcome.model.to_proto_pending();
    let layout = io::choose_layout(&proto, &outcome.model, outcome.model.had_external_data);
    if let Err(e) = check(layout) {
        return FileResult::Error(e);
    }
    let mut bar = progress::Bar::new(s.progress, "writing");
    let how = io::StageOptions {
        data_name: dest.data_name,
        fsync: s.fsync,
    };
    let staged = io::stage_as(
        &proto,
        &outcome.model.store,
        &outcome.model,
        dest.path,
        layout,
        &how,
        &mut |d, t| bar.set(d, t),
    );
    bar.finish();
    let staged = match staged {
        Ok(st) => st,
        Err(e) => return FileResult::Error(e),
    };
    let mut report = Box::new(outcome.report);
    if let Some(why) = s.verify.skip_reason() {
        return FileResult::Rewritten {
            output: staged,
            report,
            verified: Verified::Skipped(why),
        };
    }
    let result = (s.verifier)(input, staged.model_path(), dest.shown, &s.verify_opts);
    match result {
        Ok(Ok(rep)) => {
            report.add_verification(&rep.json, rep.coverage.clone());
            if rep.passed() {
                FileResult::Rewritten {
                    output: staged,
                    report,
                    verified: Verified::Passed(Box::new(rep)),
                }
            } else {
                FileResult::VerifyFailed {
                    why: "verification failed: the rewritten model differs".into(),
                    code: 1,
                    report,
                    table: Some(Box::new(rep)),
                }
            }
        }
        Ok(Err(e)) => FileResult::VerifyFailed {
            why: format!("could not verify the rewritten model: {e}"),
            code: e.exit_code(),
            report,
            table: None,
        },
        Err(panic) => FileResult::VerifyFailed {
            why: panic,
            code: 1,
            report,
            table: None,
        },
    }
}

/// The one line that says why nothing was rewritten: the reasons of the norm whose refusal is
/// the most telling (the first norm among equals). A structural reason (Post-LN, a quantized
/// model, an observed mean, …) tells more than its consequence ("no gain": the centering it
/// would need) or a refusal that flowed from another stream: a Post-LN model's headline is
/// Post-LN, not the "no gain" of its embedding LayerNorm.
pub fn headline(report: &Report) -> String {
    use passes::report::{Refusal, Why};
    let rank = |r: &Refusal| match r {
        Refusal::Upstream { .. } => 2,
        Refusal::NoGain { .. } | Refusal::CenteringDisabled { .. } => 1,
        _ => 0,
    };
    let telling = |w: &Why| match w {
        Why::Stream(reasons) => reasons.iter().map(rank).min().unwrap_or(0),
        _ => 0,
    };
    report
        .refusals
        .iter()
        .min_by_key(|r| telling(&r.why))
        .map(|r| r.why.to_string())
        .unwrap_or_else(|| "no LayerNorm on a residual stream".into())
}

/// Where a single-file run puts the rewritten model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// This file (its folder must exist), renamed into place once verified.
    File(PathBuf),
    /// Handed back as bytes (staged in a private temporary folder, removed afterwards). The
    /// rewritten model must fit in one protobuf (2 GiB, no external data).
    Memory,
}

/// What a single-file run wrote.
#[derive(Debug)]
pub enum Written {
    /// The files written, model first (then its external data file, if any).
    Files(Vec<PathBuf>),
    /// The rewritten model's bytes ([`Output::Memory`]).
    Bytes(Vec<u8>),
}

/// How an in-memory output ([`Output::Memory`]) is named in the verification table.
pub const MEMORY_OUTPUT: &str = "<in-memory output>";

/// A single-file run: the usage checks, [`stage`], then, when rewritten, the JSON report
/// (`s.report`) and the output into place or read back. Nothing is written unless the result
/// is [`FileResult::Rewritten`].
pub fn rewrite(input: &Path, output: &Output, s: &Settings) -> FileResult<Written> {
    let usage = |m: String| FileResult::Error(Error::Usage(m));
    if let Output::File(out) = output {
        if same_file(input, out) {
            return usage(format!(
                "{}: the output must not be the input",
                out.display()
            ));
        }
        let dir = folder_of(out);
        if !dir.is_dir() {
            return usage(format!(
                "{}: the output folder {} does not exist",
                out.display(),
                dir.display()
            ));
        }
    }
    if let Some(rp) = &s.report {
        if same_file(input, rp) || matches!(output, Output::File(out) if same_file(rp, out)) {
            return usage(format!(
                "{}: the report must not be the input or the output model",
                rp.display()
            ));
        }
    }
    let scratch = match output {
        Output::File(_) => None,
        Output::Memory => match PrivateDir::new() {
            Ok(d) => Some(d),
            Err(e) => return FileResult::Error(e),
        },
    };
    let dest = match (&scratch, output) {
        (Some(d), _) => Dest {
            path: d.path(),
            data_name: None,
            shown: Path::new(MEMORY_OUTPUT),
        },
        (None, Output::File(out)) => Dest::file(out),
        (None, Output::Memory) => {
            return FileResult::Error(Error::Internal(
                "no temporary folder for an in-memory output".into(),
            ))
        }
    };
    let in_memory = scratch.is_some();
    let check = |layout| {
        if in_memory && layout == io::DataLayout::External {
            return Err(Error::Usage(
                "the rewritten model would not fit in one protobuf (2 GiB), so it cannot be \
                 returned in memory: save the model with external data and rewrite its file"
                    .into(),
            ));
        }
        Ok(())
    };
    let (staged, report, verified) = match stage_checked(input, &dest, s, check) {
        FileResult::Rewritten {
            output,
            report,
            verified,
        } => (output, report, verified),
        FileResult::Refused { why, report } => return FileResult::Refused { why, report },
        FileResult::VerifyFailed {
            why,
            code,
            report,
            table,
        } => {
            return FileResult::VerifyFailed {
                why,
                code,
                report,
                table,
            }
        }
        FileResult::Error(e) => return FileResult::Error(e),
    };
    if let Some(rp) = &s.report {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        if let Err(e) = write_atomic(rp, text.as_bytes()) {
            return FileResult::Error(e);
        }
    }
    let written = match output {
        Output::File(_) => staged.commit().map(Written::Files),
        Output::Memory => std::fs::read(staged.model_path())
            .map(Written::Bytes)
            .map_err(|e| Error::Write {
                path: staged.model_path().into(),
                reason: e.to_string(),
            }),
    };
    match written {
        Ok(output) => FileResult::Rewritten {
            output,
            report,
            verified,
        },
        Err(e) => FileResult::Error(e),
    }
}

/// A new folder only this user can read (mode 0700), in the system's temporary folder, removed
/// with what it holds when dropped: where in-memory models are staged.
pub struct PrivateDir {
    dir: PathBuf,
    model: PathBuf,
}

impl PrivateDir {
    /// Create one.
    pub fn new() -> Result<PrivateDir, Error> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut last = None;
        for _ in 0..16 {
            let n = COUNT.fetch_add(1, Ordering::Relaxed);
            let dir = base.join(format!("onnx-normopt-{}-{n}-{nanos:x}", std::process::id()));
            let mut b = std::fs::DirBuilder::new();
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            match b.create(&dir) {
                Ok(()) => {
                    return Ok(PrivateDir {
                        model: dir.join("model.onnx"),
                        dir,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => {
                    last = Some(e);
                    break;
                }
            }
        }
        Err(Error::Write {
            path: base,
            reason: format!(
                "cannot create a temporary folder: {}",
                last.map(|e| e.to_string()).unwrap_or_default()
            ),
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `model.onnx` in it: the one file a private folder is for.
    pub fn path(&self) -> &Path {
        &self.model
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A short account of a verification table: runtimes and the largest relative error.
pub fn verification_line(rep: &Verification) -> String {
    let j = &rep.json;
    let runtimes: Vec<&str> = j["runtimes"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r.as_str()).collect())
        .unwrap_or_default();
    let worst = j["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r["max_abs"].as_f64())
                .fold(0.0f64, f64::max)
        })
        .unwrap_or(0.0);
    let pieces = match rep.coverage.how {
        VerifiedAs::Whole => String::new(),
        VerifiedAs::Pieces { count, .. } => format!(", in {count} pieces"),
    };
    let not_covered = match rep.coverage.not_covered.len() {
        0 => String::new(),
        n => format!("; {n} check(s) NOT covered"),
    };
    format!(
        "{} ({}, {} sample(s), max |Δ| {:.1e}{pieces}{not_covered})",
        if rep.passed() { "passed" } else { "FAILED" },
        if runtimes.is_empty() {
            "no runtime".to_string()
        } else {
            runtimes.join("+")
        },
        j["samples"].as_u64().unwrap_or(0),
        worst
    )
}

/// Write `bytes` to `path` through a temporary file beside it, renamed into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = folder_of(path);
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map(|f| f.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let w = |e: std::io::Error| Error::Write {
        path: path.into(),
        reason: e.to_string(),
    };
    std::fs::write(&tmp, bytes).map_err(w)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        w(e)
    })
}
