//! Folder mode: `onnx-normopt DIR -o OUT_DIR` rewrites every `.onnx` file under DIR (recursively:
//! Optimum exports keep `model.onnx` or encoder/decoder files beside `config.json`,
//! transformers.js keeps them under `onnx/`) with the same options, each through the
//! single-file pipeline ([`crate::flow::stage`]), and copies every other file unchanged.
//! The CLI and the Python package (`rewrite_dir`) both call [`run`]; it prints nothing itself
//! but hands the lines to show to a `log` callback, and returns an [`Outcome`].
//! (One file, though over 600 lines: staging, copying, per-model rewriting and the summary all
//! serve the invariants below, which are easiest to check in one place.)
//!
//! Invariants:
//! - nothing is written under OUT_DIR unless the whole run succeeds: everything is staged in a
//!   private folder beside OUT_DIR, which is renamed into place at the end (OUT_DIR must not
//!   exist, or be empty; it must not be inside DIR);
//! - a refused model is copied unchanged, with the external data files it references; so is a
//!   file that is not a valid model (not ONNX, truncated, or invalid — an Optimum merged
//!   decoder whose subgraph returns an outer value): the others are still rewritten, and the
//!   table gives it status `invalid` with the reason (a file that cannot be read at all stops
//!   the run);
//! - an external data file referenced only by rewritten models is not copied: each rewritten
//!   model writes its own (under the input's data file name when it was the only model
//!   reading it). No output file is written twice, and every output model's external data
//!   references are checked (by loading it) before the folder is renamed into place.
//!
//! Exit status: 0 when every model was rewritten (and verified, unless verification was
//! skipped), refused with a reason or invalid (copied unchanged), and at least one was
//! rewritten; 1 when a verification failed; 2 for usage or bad input (including a folder
//! without any `.onnx` file, and one where no model was rewritten and some are invalid); 3 when
//! nothing could be rewritten (every model refused).

use crate::flow::{self, one_line, Dest, FileResult, Settings, Verified};
use crate::passes::report::Report;
use crate::{io, Error};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What happened to one model of the folder.
#[derive(Debug, serde::Serialize)]
pub struct FileRow {
    /// Path relative to DIR.
    pub file: String,
    /// rewritten, refused, invalid (copied unchanged), verification failed.
    pub status: String,
    /// Why it was refused or failed.
    pub reason: Option<String>,
    /// Norms rewritten.
    pub norms_rewritten: usize,
    /// Norms left alone.
    pub norms_refused: usize,
    /// One line about the verification.
    pub verification: String,
    /// The external data file the output references (rewritten models), relative to OUT_DIR.
    pub data_file: Option<String>,
    /// The pass's report.
    pub report: Option<Box<Report>>,
}

/// The JSON `--report` of a folder run.
#[derive(Debug, Default, serde::Serialize)]
pub struct FolderReport {
    /// DIR, as given.
    pub input: String,
    /// OUT_DIR, as given.
    pub output: String,
    /// `rmsnorm` or `crmsnorm`.
    pub target: String,
    /// One row per model, in path order (the models handled before a run stopped).
    pub files: Vec<FileRow>,
    /// Other files, copied unchanged.
    pub copied: Vec<String>,
    /// External data files of rewritten models, replaced by the rewritten models' own.
    pub replaced_data_files: Vec<String>,
    /// The table the CLI prints at the end (empty when the run stopped before it).
    #[serde(skip)]
    pub table: String,
}

/// How a folder run ended, in the categories of the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Written (exit 0).
    Done,
    /// A usage error (exit 2): OUT_DIR not empty, inside DIR, no `.onnx` file...
    Usage,
    /// A model (or the folder) cannot be read or is not a valid model (exit 2).
    Invalid,
    /// The output could not be written (exit 2).
    Write,
    /// A verification failed or could not be carried out (exit 1 or 4).
    Verification,
    /// Every model was refused (exit 3).
    Nothing,
    /// A bug (exit 1).
    Internal,
}

/// The end of a folder run.
#[derive(Debug)]
pub struct Outcome {
    /// The exit status.
    pub code: u8,
    /// Its category.
    pub kind: Kind,
    /// The last line when the run failed (the CLI prints it after `onnx-normopt: `).
    pub message: Option<String>,
    /// What was done (complete when the run reached its end).
    pub report: FolderReport,
}

/// A run stopped early: exit status, category, last line.
struct Stop(u8, Kind, String);

impl Stop {
    fn of(e: &Error, suffix: &str) -> Stop {
        let kind = match e {
            Error::Usage(_) => Kind::Usage,
            Error::Write { .. } => Kind::Write,
            Error::NotRewritable(_) => Kind::Nothing,
            Error::Internal(_) => Kind::Internal,
            _ => Kind::Invalid,
        };
        Stop(e.exit_code() as u8, kind, format!("{e}{suffix}"))
    }
}

/// A staging folder removed on drop unless committed.
struct StageDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for StageDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn usage(msg: String) -> Result<(), Stop> {
    Err(Stop(2, Kind::Usage, msg))
}

fn rel_str(p: &Path) -> String {
    p.to_string_lossy().replace('\\', "/")
}

/// What [`walk`] finds: files, folders, and notes on what it did not follow.
type Walked = (Vec<PathBuf>, Vec<PathBuf>, Vec<String>);

/// Files (and folders) under `dir`, relative, sorted. Symbolic links to folders are not
/// followed (a link loop would never end); links to files are copied as files.
fn walk(dir: &Path) -> Result<Walked, Error> {
    let mut files = vec![];
    let mut dirs = vec![];
    let mut skipped = vec![];
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = dir.join(&rel);
        let rd = std::fs::read_dir(&full).map_err(|e| Error::Read {
            path: full.clone(),
            reason: e.to_string(),
        })?;
        for ent in rd {
            let ent = ent.map_err(|e| Error::Read {
                path: full.clone(),
                reason: e.to_string(),
            })?;
            let r = rel.join(ent.file_name());
            let p = dir.join(&r);
            let lmeta = std::fs::symlink_metadata(&p).map_err(|e| Error::Read {
                path: p.clone(),
                reason: e.to_string(),
            })?;
            let meta = std::fs::metadata(&p);
            match meta {
                Ok(m) if m.is_dir() && !lmeta.file_type().is_symlink() => {
                    dirs.push(r.clone());
                    stack.push(r);
                }
                Ok(m) if m.is_file() => files.push(r),
                _ => skipped.push(rel_str(&r)),
            }
        }
    }
    files.sort();
    dirs.sort();
    skipped.sort();
    Ok((files, dirs, skipped))
}

/// Whether `e` says the file is not a valid model (not ONNX, truncated, or breaking a rule of
/// the format, such as a subgraph returning an outer value): such a model is copied unchanged,
/// like a refused one, with the reason in the table. An error of the environment (a file that
/// cannot be read or written) stops the run.
fn invalid_model(e: &Error) -> bool {
    matches!(e, Error::NotOnnx { .. } | Error::Invalid { .. })
}

fn is_model(p: &Path) -> bool {
    p.extension()
        .is_some_and(|e| e.to_string_lossy().eq_ignore_ascii_case("onnx"))
}

/// The external data files a model file references, relative to DIR.
fn data_files_of(dir: &Path, rel: &Path) -> Result<BTreeSet<PathBuf>, Error> {
    let file = io::load(&dir.join(rel))?;
    let mut out = BTreeSet::new();
    let base = rel.parent().unwrap_or(Path::new("")).to_path_buf();
    io::for_each_tensor(&file.proto, &mut |t| {
        for e in &t.external_data {
            if e.key.as_deref() == Some("location") {
                if let Some(v) = &e.value {
                    out.insert(base.join(v));
                }
            }
        }
    });
    Ok(out)
}

fn copy_file(from: &Path, to: &Path, fsync: bool) -> Result<(), Error> {
    let w = |e: std::io::Error| Error::Write {
        path: to.into(),
        reason: e.to_string(),
    };
    if to.exists() {
        return Err(Error::Internal(format!(
            "{}: would be written twice",
            to.display()
        )));
    }
    std::fs::copy(from, to).map_err(|e| Error::Write {
        path: to.into(),
        reason: format!("copying {}: {e}", from.display()),
    })?;
    if fsync {
        std::fs::File::open(to)
            .and_then(|f| f.sync_all())
            .map_err(w)?;
    }
    Ok(())
}

/// The name of the data file a rewritten `model` (relative to DIR) writes: the input's own data
/// file name when the model was its only reader, else `NAME.data` or a variant that names no
/// file of the input folder.
fn data_name_for(
    model: &Path,
    data: &BTreeSet<PathBuf>,
    readers: &BTreeMap<PathBuf, Vec<PathBuf>>,
    all_files: &BTreeSet<PathBuf>,
) -> String {
    let parent = model.parent().unwrap_or(Path::new(""));
    let file = model
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    if data.len() == 1 {
        let d = data.iter().next().unwrap_or(&PathBuf::new()).clone();
        let alone = readers.get(&d).is_some_and(|r| r.len() == 1);
        if alone && d.parent() == Some(parent) {
            if let Some(n) = d.file_name() {
                let n = n.to_string_lossy().into_owned();
                if n != file {
                    return n;
                }
            }
        }
    }
    let free = |n: &str| {
        let p = parent.join(n);
        !all_files.contains(&p) && !readers.contains_key(&p)
    };
    let mut name = format!("{file}.data");
    let mut k = 0;
    while !free(&name) {
        name = if k == 0 {
            format!("{file}.normopt.data")
        } else {
            format!("{file}.normopt{k}.data")
        };
        k += 1;
    }
    name
}

/// Rewrite the folder `dir` into `out` (see the module's documentation), writing the JSON
/// report to `s.report` on success. The lines the CLI shows on stderr go to `log`, each
/// ending with a newline (progress lines only unless `s.quiet()`); the last line of a failed
/// run is the outcome's `message`.
pub fn run(dir: &Path, out: &Path, s: &Settings, log: &mut dyn FnMut(&str)) -> Outcome {
    let mut report = FolderReport {
        input: dir.display().to_string(),
        output: out.display().to_string(),
        target: s.opts.form.target().name().into(),
        ..FolderReport::default()
    };
    match run_inner(dir, out, s, log, &mut report) {
        Ok(()) => Outcome {
            code: 0,
            kind: Kind::Done,
            message: None,
            report,
        },
        Err(Stop(code, kind, message)) => Outcome {
            code,
            kind,
            message: Some(message),
            report,
        },
    }
}

fn run_inner(
    dir: &Path,
    out: &Path,
    s: &Settings,
    log: &mut dyn FnMut(&str),
    rep: &mut FolderReport,
) -> Result<(), Stop> {
    let quiet = s.quiet();
    let say = |log: &mut dyn FnMut(&str), m: String| {
        if !quiet {
            log(&format!("onnx-normopt: {m}\n"));
        }
    };
    // Usage checks: OUT_DIR empty or absent, not inside DIR; its parent exists.
    let Ok(dir_c) = dir.canonicalize() else {
        return usage(format!("{}: cannot read the folder", dir.display()));
    };
    if out.exists() {
        let empty = out.is_dir() && std::fs::read_dir(out).is_ok_and(|mut r| r.next().is_none());
        if !empty {
            return usage(format!(
                "{}: the output folder must not exist or must be empty",
                out.display()
            ));
        }
    }
    let parent = flow::folder_of(out);
    let Some(out_name) = out.file_name().map(|f| f.to_string_lossy().into_owned()) else {
        return usage(format!("{}: not a folder name", out.display()));
    };
    let Ok(parent_c) = parent.canonicalize() else {
        return usage(format!(
            "{}: the folder {} does not exist",
            out.display(),
            parent.display()
        ));
    };
    let out_c = parent_c.join(&out_name);
    if out_c.starts_with(&dir_c) || dir_c.starts_with(&out_c) {
        return usage(format!(
            "{}: the output folder must not be inside the input folder {} (or contain it)",
            out.display(),
            dir.display()
        ));
    }
    if let Some(rp) = &s.report {
        let rp_c = flow::folder_of(rp)
            .canonicalize()
            .map(|p| p.join(rp.file_name().unwrap_or_default()));
        if let Ok(rp_c) = rp_c {
            if rp_c.starts_with(&dir_c) || rp_c.starts_with(&out_c) {
                return usage(format!(
                    "{}: the report must not be inside the input or the output folder",
                    rp.display()
                ));
            }
        }
    }
    let (files, dirs, skipped) = match walk(dir) {
        Ok(w) => w,
        Err(e) => return Err(Stop::of(&e, "")),
    };
    for sk in &skipped {
        say(log, format!("{sk}: not a regular file or folder, skipped"));
    }
    let models: Vec<PathBuf> = files.iter().filter(|f| is_model(f)).cloned().collect();
    if models.is_empty() {
        return usage(format!(
            "{}: is a directory with no .onnx file under it (a folder is rewritten file by file)",
            dir.display()
        ));
    }
    // Which data files each model reads. A file that is not a valid model is copied unchanged
    // (see `invalid_model`); one that cannot be read stops the run (exit 2).
    let mut data_of: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    let mut readers: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    let mut unreadable: BTreeMap<PathBuf, Error> = BTreeMap::new();
    for m in &models {
        match data_files_of(dir, m) {
            Ok(d) => {
                for f in &d {
                    readers.entry(f.clone()).or_default().push(m.clone());
                }
                data_of.insert(m.clone(), d);
            }
            Err(e) if invalid_model(&e) => {
                unreadable.insert(m.clone(), e);
            }
            Err(e) => {
                return Err(Stop::of(&e, "; nothing written"));
            }
        }
    }
    let all_files: BTreeSet<PathBuf> = files.iter().cloned().collect();
    // Stage beside OUT_DIR.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut stage = StageDir {
        path: parent.join(format!(
            ".{out_name}.{}.{nanos}.staging",
            std::process::id()
        )),
        keep: false,
    };
    if let Err(e) = std::fs::create_dir(&stage.path) {
        return usage(format!("{}: cannot write: {e}", stage.path.display()));
    }
    for d in &dirs {
        if let Err(e) = std::fs::create_dir_all(stage.path.join(d)) {
            return usage(format!("{}: cannot write: {e}", out.join(d).display()));
        }
    }
    // Rewrite each model.
    let mut rows: Vec<FileRow> = vec![];
    let mut rewritten: BTreeSet<PathBuf> = BTreeSet::new();
    let n = models.len();
    for (i, m) in models.iter().enumerate() {
        let input = dir.join(m);
        let dst = stage.path.join(m);
        let data = data_of.get(m).cloned().unwrap_or_default();
        let data_name = data_name_for(m, &data, &readers, &all_files);
        let rel = rel_str(m);
        if !s.quiet() {
            log(&format!("onnx-normopt: [{}/{n}] {rel} ...\n", i + 1));
        }
        let mut row = FileRow {
            file: rel.clone(),
            status: String::new(),
            reason: None,
            norms_rewritten: 0,
            norms_refused: 0,
            verification: "-".into(),
            data_file: None,
            report: None,
        };
        let dest = Dest {
            path: &dst,
            data_name: Some(&data_name),
            shown: &out.join(m),
        };
        let result = match unreadable.remove(m) {
            Some(e) => FileResult::Error(e),
            None => flow::stage(&input, &dest, s),
        };
        match result {
            FileResult::Rewritten {
                output: staged,
                report,
                verified,
            } => {
                let written = match staged.commit() {
                    Ok(w) => w,
                    Err(e) => {
                        return Err(Stop::of(&e, "; nothing written"));
                    }
                };
                row.status = "rewritten".into();
                row.norms_rewritten = report.norms_rewritten;
                row.norms_refused = report.refusals.len();
                row.verification = match &verified {
                    Verified::Passed(t) => flow::verification_line(t),
                    Verified::Skipped(why) => why.clone(),
                };
                row.data_file = written
                    .get(1)
                    .and_then(|p| p.strip_prefix(&stage.path).ok())
                    .map(rel_str);
                row.report = Some(report);
                rewritten.insert(m.clone());
            }
            FileResult::Refused { why, report } => {
                if let Err(e) = copy_file(&input, &dst, s.fsync) {
                    return Err(Stop::of(&e, "; nothing written"));
                }
                row.status = "refused".into();
                row.reason = Some(one_line(&why));
                if let Some(r) = &report {
                    row.norms_refused = r.refusals.len();
                }
                row.verification = "- (copied unchanged)".into();
                row.report = report;
            }
            FileResult::VerifyFailed {
                why,
                report,
                table,
                code,
            } => {
                if let Some(t) = &table {
                    log(&t.to_string());
                }
                // The single-file verdict, by name (`verdict_code` reads it back).
                row.status = match code {
                    4 => NOT_VERIFIABLE,
                    5 => VERIFY_INCOMPLETE,
                    _ => VERIFY_FAILED,
                }
                .into();
                row.reason = Some(one_line(&why));
                row.norms_rewritten = report.norms_rewritten;
                row.norms_refused = report.refusals.len();
                row.verification = match &table {
                    Some(t) => flow::verification_line(t),
                    None => "not run".into(),
                };
                row.report = Some(report);
            }
            FileResult::Error(e) if invalid_model(&e) => {
                if let Err(e) = copy_file(&input, &dst, s.fsync) {
                    return Err(Stop::of(&e, "; nothing written"));
                }
                row.status = INVALID.into();
                row.reason = Some(one_line(&e.to_string()));
                row.verification = "- (copied unchanged)".into();
            }
            FileResult::Error(e) => {
                let mut stop = Stop::of(&e, "; nothing written");
                stop.2 = format!("{}; nothing written", one_line(&e.to_string()));
                return Err(stop);
            }
        }
        if !s.quiet() {
            let what = match row.status.as_str() {
                "rewritten" => format!(
                    "rewritten, {} norm(s), {} left alone; verification {}",
                    row.norms_rewritten, row.norms_refused, row.verification
                ),
                st => format!("{st}: {}", row.reason.clone().unwrap_or_default()),
            };
            log(&format!("onnx-normopt: [{}/{n}] {rel}: {what}\n", i + 1));
        }
        rows.push(row);
    }
    // Copy every other file, except data files only rewritten models read.
    let mut copied = vec![];
    let mut replaced = vec![];
    for f in files.iter().filter(|f| !is_model(f)) {
        let only_rewritten = readers
            .get(f)
            .is_some_and(|r| r.iter().all(|m| rewritten.contains(m)));
        if only_rewritten {
            replaced.push(rel_str(f));
            continue;
        }
        if let Err(e) = copy_file(&dir.join(f), &stage.path.join(f), s.fsync) {
            return Err(Stop::of(&e, "; nothing written"));
        }
        copied.push(rel_str(f));
    }
    // Every output model's external data must resolve inside the output (models whose
    // verification failed have no output).
    for (m, row) in models.iter().zip(&rows) {
        if verdict_code(&row.status).is_some() || row.status == INVALID {
            continue;
        }
        if let Err(e) = io::load(&stage.path.join(m)) {
            return Err(Stop(
                1,
                Kind::Internal,
                format!(
                    "internal error: the output {} does not load: {e}; nothing written",
                    out.join(m).display()
                ),
            ));
        }
    }
    // A file the rewrite differs for decides (1); else one whose verification could not
    // complete (5); else one no runtime could verify (4): each the exit status the file alone
    // gives.
    let verdicts: Vec<u8> = rows
        .iter()
        .filter_map(|r| verdict_code(&r.status))
        .collect();
    let failed = !verdicts.is_empty();
    let n_invalid = rows.iter().filter(|r| r.status == INVALID).count();
    let code = if verdicts.contains(&1) {
        1
    } else if verdicts.contains(&5) {
        5
    } else if failed {
        4
    } else if rewritten.is_empty() && n_invalid > 0 {
        2
    } else if rewritten.is_empty() {
        3
    } else {
        0
    };
    // The table.
    rep.table = table(&rows, copied.len(), &replaced);
    if !s.quiet() || code != 0 {
        log(&rep.table);
    }
    let n_failed = rows
        .iter()
        .filter(|r| verdict_code(&r.status).is_some())
        .count();
    let n_refused = rows.iter().filter(|r| r.status == "refused").count();
    rep.files = rows;
    rep.copied = copied;
    rep.replaced_data_files = replaced;
    match code {
        2 => {
            return Err(Stop(
                2,
                Kind::Invalid,
                format!(
                    "{}: nothing rewritten: {n_invalid} model(s) invalid, the others refused; \
                     nothing written",
                    dir.display()
                ),
            ));
        }
        1 | 4 | 5 => {
            let what = match code {
                1 => "verification failed",
                4 => "could not be verified (no runtime could run the original)",
                _ => "verification could not complete",
            };
            return Err(Stop(
                code,
                Kind::Verification,
                format!(
                    "{}: {what} for {n_failed} file(s); nothing written",
                    dir.display(),
                ),
            ));
        }
        3 => {
            return Err(Stop(
                3,
                Kind::Nothing,
                format!(
                    "{}: nothing rewritten: every model was refused; nothing written",
                    dir.display()
                ),
            ));
        }
        _ => {}
    }
    if let Some(rp) = &s.report {
        let text = serde_json::to_string_pretty(&*rep).unwrap_or_default();
        if let Err(e) = flow::write_atomic(rp, text.as_bytes()) {
            return Err(Stop::of(&e, "; nothing written"));
        }
    }
    // Into place: an empty OUT_DIR is replaced.
    if out.is_dir() {
        if let Err(e) = std::fs::remove_dir(out) {
            return Err(Stop(
                2,
                Kind::Write,
                format!("{}: cannot write: {e}; nothing written", out.display()),
            ));
        }
    }
    if let Err(e) = std::fs::rename(&stage.path, out) {
        return Err(Stop(
            2,
            Kind::Write,
            format!("{}: cannot write: {e}; nothing written", out.display()),
        ));
    }
    stage.keep = true;
    say(
        log,
        format!(
            "wrote {} ({} model(s) rewritten, {} refused and copied,{} {} other file(s) copied)",
            out.display(),
            rewritten.len(),
            n_refused,
            if n_invalid > 0 {
                format!(" {n_invalid} invalid and copied,")
            } else {
                String::new()
            },
            rep.copied.len()
        ),
    );
    Ok(())
}

/// The table printed at the end.
fn table(rows: &[FileRow], copied: usize, replaced: &[String]) -> String {
    use std::fmt::Write;
    let w_file = rows
        .iter()
        .map(|r| r.file.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let w_status = rows
        .iter()
        .map(|r| r.status.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<w_file$}  {:<w_status$}  {:>9}  {:>10}  verification",
        "file", "status", "rewritten", "left alone"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:<w_file$}  {:<w_status$}  {:>9}  {:>10}  {}",
            r.file, r.status, r.norms_rewritten, r.norms_refused, r.verification
        );
    }
    for r in rows {
        if let Some(why) = &r.reason {
            let _ = writeln!(s, "  {} {}: {why}", r.file, r.status);
        }
    }
    let _ = writeln!(s, "{copied} other file(s) copied unchanged");
    if !replaced.is_empty() {
        let _ = writeln!(
            s,
            "external data replaced by the rewritten models' own: {}",
            replaced.join(", ")
        );
    }
    s
}

/// A file's status when its verification failed (exit 1 alone).
const VERIFY_FAILED: &str = "verification failed";
/// A file's status when no runtime could run the original (exit 4 alone).
const NOT_VERIFIABLE: &str = "not verifiable";
/// A file's status when its verification could not complete (exit 5 alone).
const VERIFY_INCOMPLETE: &str = "verification incomplete";
/// A file's status when it is not a valid model (copied unchanged, see [`invalid_model`]).
const INVALID: &str = "invalid";

/// The exit status a file with this status gives alone, when its verification did not pass.
fn verdict_code(status: &str) -> Option<u8> {
    match status {
        VERIFY_FAILED => Some(1),
        NOT_VERIFIABLE => Some(4),
        VERIFY_INCOMPLETE => Some(5),
        _ => None,
    }
}
