//! Folder mode: `onnx-normopt DIR -o OUT_DIR` rewrites every `.onnx` file under DIR (recursively:
//! Optimum exports keep `model.onnx` or encoder/decoder files beside `config.json`,
//! transformers.js keeps them under `onnx/`) with the same options, each through the
//! single-file flow ([`crate::flow::rewrite_file`]), and copies every other file unchanged.
//!
//! Invariants:
//! - nothing is written under OUT_DIR unless the whole run succeeds: everything is staged in a
//!   private folder beside OUT_DIR, which is renamed into place at the end (OUT_DIR must not
//!   exist, or be empty; it must not be inside DIR);
//! - a refused model is copied unchanged, with the external data files it references;
//! - an external data file referenced only by rewritten models is not copied: each rewritten
//!   model writes its own (under the input's data file name when it was the only model
//!   reading it). No output file is written twice, and every output model's external data
//!   references are checked (by loading it) before the folder is renamed into place.
//!
//! Exit status: 0 when every model was rewritten (and verified, unless verification was
//! skipped) or refused with a reason, and at least one was rewritten; 1 when a verification
//! failed; 2 for usage or bad input (including a folder without any `.onnx` file); 3 when
//! nothing could be rewritten.

use crate::flow::{self, one_line, FileResult, Settings, Verified};
use onnx_normopt::passes::report::Report;
use onnx_normopt::{io, Error};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What happened to one model of the folder.
#[derive(serde::Serialize)]
struct FileRow {
    /// Path relative to DIR.
    file: String,
    /// rewritten, refused, verification failed.
    status: String,
    /// Why it was refused or failed.
    reason: Option<String>,
    norms_rewritten: usize,
    norms_refused: usize,
    /// One line about the verification.
    verification: String,
    /// The external data file the output references (rewritten models), relative to OUT_DIR.
    data_file: Option<String>,
    /// The pass's report.
    report: Option<Box<Report>>,
}

/// The JSON `--report` of a folder run.
#[derive(serde::Serialize)]
struct FolderReport<'a> {
    input: String,
    output: String,
    target: &'a str,
    files: &'a [FileRow],
    /// Other files, copied unchanged.
    copied: Vec<String>,
    /// External data files of rewritten models, replaced by the rewritten models' own.
    replaced_data_files: Vec<String>,
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

fn usage(msg: String) -> u8 {
    eprintln!("onnx-normopt: {msg}");
    2
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

fn copy_file(from: &Path, to: &Path) -> Result<(), Error> {
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
    if io::fsync_enabled() {
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

/// Run the folder mode. Returns the exit status.
pub fn run(dir: &Path, out: &Path, report_path: Option<&Path>, s: &Settings) -> u8 {
    let say = |m: String| {
        if !s.quiet {
            eprintln!("onnx-normopt: {m}");
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
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
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
    if let Some(rp) = report_path {
        let rp_c = rp
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
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
        Err(e) => return usage(e.to_string()),
    };
    for sk in &skipped {
        say(format!("{sk}: not a regular file or folder, skipped"));
    }
    let models: Vec<PathBuf> = files.iter().filter(|f| is_model(f)).cloned().collect();
    if models.is_empty() {
        return usage(format!(
            "{}: is a directory with no .onnx file under it (a folder is rewritten file by file)",
            dir.display()
        ));
    }
    // Which data files each model reads (a model that cannot be read stops the run: exit 2).
    let mut data_of: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    let mut readers: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    for m in &models {
        match data_files_of(dir, m) {
            Ok(d) => {
                for f in &d {
                    readers.entry(f.clone()).or_default().push(m.clone());
                }
                data_of.insert(m.clone(), d);
            }
            Err(e) => {
                eprintln!("onnx-normopt: {e}; nothing written");
                return e.exit_code() as u8;
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
        if !s.quiet {
            eprintln!("onnx-normopt: [{}/{n}] {rel} ...", i + 1);
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
        match flow::rewrite_file(&input, &dst, Some(&data_name), s) {
            FileResult::Rewritten {
                staged,
                report,
                verified,
            } => {
                let written = match staged.commit() {
                    Ok(w) => w,
                    Err(e) => {
                        eprintln!("onnx-normopt: {e}; nothing written");
                        return e.exit_code() as u8;
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
                if let Err(e) = copy_file(&input, &dst) {
                    eprintln!("onnx-normopt: {e}; nothing written");
                    return e.exit_code() as u8;
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
                why, report, table, ..
            } => {
                if let Some(t) = &table {
                    eprint!("{t}");
                }
                row.status = "verification failed".into();
                row.reason = Some(one_line(&why));
                row.norms_rewritten = report.norms_rewritten;
                row.norms_refused = report.refusals.len();
                row.verification = match &table {
                    Some(t) => flow::verification_line(t),
                    None => "not run".into(),
                };
                row.report = Some(report);
            }
            FileResult::Error(e) => {
                eprintln!(
                    "onnx-normopt: {}; nothing written",
                    one_line(&e.to_string())
                );
                return e.exit_code() as u8;
            }
        }
        if !s.quiet {
            let what = match row.status.as_str() {
                "rewritten" => format!(
                    "rewritten, {} norm(s), {} left alone; verification {}",
                    row.norms_rewritten, row.norms_refused, row.verification
                ),
                st => format!("{st}: {}", row.reason.clone().unwrap_or_default()),
            };
            eprintln!("onnx-normopt: [{}/{n}] {rel}: {what}", i + 1);
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
        if let Err(e) = copy_file(&dir.join(f), &stage.path.join(f)) {
            eprintln!("onnx-normopt: {e}; nothing written");
            return e.exit_code() as u8;
        }
        copied.push(rel_str(f));
    }
    // Every output model's external data must resolve inside the output (models whose
    // verification failed have no output).
    for (m, row) in models.iter().zip(&rows) {
        if row.status == "verification failed" {
            continue;
        }
        if let Err(e) = io::load(&stage.path.join(m)) {
            eprintln!(
                "onnx-normopt: internal error: the output {} does not load: {e}; nothing written",
                out.join(m).display()
            );
            return 1;
        }
    }
    let failed = rows.iter().any(|r| r.status == "verification failed");
    let code = if failed {
        1
    } else if rewritten.is_empty() {
        3
    } else {
        0
    };
    // The table.
    if !s.quiet || code != 0 {
        eprint!("{}", table(&rows, copied.len(), &replaced));
    }
    match code {
        1 => {
            eprintln!(
                "onnx-normopt: {}: verification failed for {} file(s); nothing written",
                dir.display(),
                rows.iter()
                    .filter(|r| r.status == "verification failed")
                    .count()
            );
            return 1;
        }
        3 => {
            eprintln!(
                "onnx-normopt: {}: nothing rewritten: every model was refused; nothing written",
                dir.display()
            );
            return 3;
        }
        _ => {}
    }
    if let Some(rp) = report_path {
        let target = match s.opts.target {
            onnx_normopt::passes::Target::Rmsnorm => "rmsnorm",
            onnx_normopt::passes::Target::Crmsnorm => "crmsnorm",
        };
        let rep = FolderReport {
            input: dir.display().to_string(),
            output: out.display().to_string(),
            target,
            files: &rows,
            copied: copied.clone(),
            replaced_data_files: replaced.clone(),
        };
        let text = serde_json::to_string_pretty(&rep).unwrap_or_default();
        if let Err(e) = crate::write_atomic(rp, text.as_bytes()) {
            eprintln!("onnx-normopt: {e}; nothing written");
            return e.exit_code() as u8;
        }
    }
    // Into place: an empty OUT_DIR is replaced.
    if out.is_dir() {
        if let Err(e) = std::fs::remove_dir(out) {
            eprintln!(
                "onnx-normopt: {}: cannot write: {e}; nothing written",
                out.display()
            );
            return 2;
        }
    }
    if let Err(e) = std::fs::rename(&stage.path, out) {
        eprintln!(
            "onnx-normopt: {}: cannot write: {e}; nothing written",
            out.display()
        );
        return 2;
    }
    stage.keep = true;
    say(format!(
        "wrote {} ({} model(s) rewritten, {} refused and copied, {} other file(s) copied)",
        out.display(),
        rewritten.len(),
        rows.iter().filter(|r| r.status == "refused").count(),
        copied.len()
    ));
    0
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
