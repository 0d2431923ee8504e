//! The rewrite of one model file, shared by the single-file command and the folder mode:
//! load → refuse an already-rewritten model → `passes::run` → record provenance → stage the
//! output (not yet visible) → verify the staged file against the input.
//!
//! Nothing here prints but the write progress bar: the caller reports, and decides whether the
//! staged output is committed (see [`FileResult`]). The CLI (single files and folders) and the
//! Python package both run it.

use crate::ir::Model;
use crate::passes::{self, report::Report, Options};
use crate::progress;
use crate::provenance::{self, PendingDigest};
use crate::verify::{self, VerifyOptions, VerifyReport};
use crate::{io, Error};
use std::path::Path;

/// How every file is rewritten.
pub struct Settings {
    /// The pass options.
    pub opts: Options,
    /// `--verify` given.
    pub verify: bool,
    /// `--no-verify` given.
    pub no_verify: bool,
    /// Verification options.
    pub verify_opts: VerifyOptions,
    /// No progress bar.
    pub quiet: bool,
    /// Runs the verification of a staged output against its input (see [`Verifier`]).
    pub verifier: Box<Verifier>,
}

/// Verifies `b` against `a`: the verifier's result, or `Err(one line)` when it panicked. The
/// default ([`verify_guarded`]) catches panics itself; the CLI passes one that also keeps its
/// panic hook quiet while a runtime runs.
pub type Verifier = dyn Fn(&Path, &Path, &VerifyOptions) -> Result<Result<Verification, verify::VerifyError>, String>
    + Send
    + Sync;

impl Settings {
    /// Settings with the default verifier ([`verify_guarded`]).
    pub fn new(
        opts: Options,
        verify: bool,
        no_verify: bool,
        verify_opts: VerifyOptions,
        quiet: bool,
    ) -> Settings {
        Settings {
            opts,
            verify,
            no_verify,
            verify_opts,
            quiet,
            verifier: Box::new(verify_guarded),
        }
    }
}

/// A verification that ran to the end, as the flow reports it: the table as JSON (the
/// `--report`'s `verification`) and as text, and whether it passed. The in-process verifier
/// ([`verify::verify_files`]) and the isolated one ([`verify::verify_isolated`], the CLI's) both
/// give one.
#[derive(Clone, Debug)]
pub struct Verification {
    /// The table as JSON.
    pub json: serde_json::Value,
    /// The table as text.
    pub text: String,
    /// Whether every row passed.
    pub passed: bool,
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
        }
    }
}

impl From<verify::Checked> for Verification {
    fn from(c: verify::Checked) -> Verification {
        Verification {
            passed: c.passed(),
            json: c.json,
            text: c.text,
        }
    }
}

impl std::fmt::Display for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// `verify::verify_files` (in process) with a panic turned into `Err(one line)`.
pub fn verify_guarded(
    a: &Path,
    b: &Path,
    opts: &VerifyOptions,
) -> Result<Result<Verification, verify::VerifyError>, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        verify::verify_files(a, b, opts).map(Verification::from)
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

/// What happened to one file.
pub enum FileResult {
    /// Rewritten, staged, verified when asked: `staged.commit()` puts it into place.
    Rewritten {
        /// The staged output.
        staged: io::Staged,
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

impl FileResult {
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

/// Rewrite `input` into a staged output for `out` (its data file, if any, named `data_name`
/// or `OUT.data`).
pub fn rewrite_file(input: &Path, out: &Path, data_name: Option<&str>, s: &Settings) -> FileResult {
    let model = match Model::load(input) {
        Ok(m) => m,
        Err(e) => return FileResult::Error(e),
    };
    let target = match s.opts.form.target() {
        passes::Target::Rmsnorm => "rmsnorm",
        passes::Target::Crmsnorm => "crmsnorm",
    };
    if let Some(why) = provenance::already_rewritten(&model.header, target) {
        return FileResult::Refused { why, report: None };
    }
    let digest = PendingDigest::start(input);
    let mut outcome = match passes::run(model, &s.opts) {
        Ok(o) => o,
        Err(Error::NotRewritable(why)) => return FileResult::Refused { why, report: None },
        Err(e) => return FileResult::Error(e),
    };
    if !outcome.rewritten() {
        let why = outcome
            .report
            .refusals
            .first()
            .map(|r| r.why.to_string())
            .unwrap_or_else(|| "no LayerNorm on a residual stream".into());
        return FileResult::Refused {
            why,
            report: Some(Box::new(outcome.report)),
        };
    }
    let sha = match digest.finish(input) {
        Ok(d) => d,
        Err(e) => return FileResult::Error(e),
    };
    provenance::record(
        &mut outcome.model.header,
        &outcome.report.provenance(s.opts.fold, input, &sha),
    );
    let proto = outcome.model.to_proto_pending();
    let layout = io::choose_layout(&proto, &outcome.model, outcome.model.had_external_data);
    let mut bar = progress::Bar::new(!s.quiet, "writing");
    let staged = io::stage_as(
        &proto,
        &outcome.model.store,
        &outcome.model,
        out,
        layout,
        data_name,
        &mut |d, t| bar.set(d, t),
    );
    bar.finish();
    let staged = match staged {
        Ok(st) => st,
        Err(e) => return FileResult::Error(e),
    };
    // Every model is verified unless asked not to: one too large for the budget as two whole
    // models is verified piece by piece (`verify::pieces`).
    let mut report = Box::new(outcome.report);
    if s.no_verify {
        return FileResult::Rewritten {
            staged,
            report,
            verified: Verified::Skipped("not verified (--no-verify)".to_string()),
        };
    }
    let result = (s.verifier)(input, staged.model_path(), &s.verify_opts);
    match result {
        Ok(Ok(rep)) => {
            report.verification = Some(rep.json.clone());
            if rep.passed() {
                FileResult::Rewritten {
                    staged,
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
    let pieces = j["pieces"]["count"]
        .as_u64()
        .map(|n| format!(", in {n} pieces"))
        .unwrap_or_default();
    format!(
        "{} ({}, {} sample(s), max |Δ| {:.1e}{pieces})",
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
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
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
