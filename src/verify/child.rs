//! Verification in a child process, so a runtime cannot take the tool (or the machine) down.
//!
//! The command line verifies through [`verify_isolated`]: it first checks the memory budget
//! ([`super::budget::plan`], which may choose smaller dynamic dims, or verification in pieces
//! when the two whole models do not fit), then runs [`super::verify_files`] — or
//! [`super::pieces`] — in a child process of the same executable (`onnx-normopt
//! __verify-child`, a hidden subcommand; the binary's `main` hands it to [`child_main`]). The
//! request goes to the child's stdin as JSON, the report comes back on its stdout as JSON. The
//! child limits its own address space (`setrlimit(RLIMIT_AS)`, before it loads any model or
//! runtime) and the parent kills it after the wall-time limit (`--verify-timeout`; in pieces,
//! the limit applies to each piece, so that a model of any size can finish). While it works
//! the child writes progress markers to stderr (which runtime, which model, which piece), so a
//! crash, a signal, an allocation failure or a timeout is reported as one line naming them:
//! `verification could not complete: onnxruntime crashed on the original model (signal 11)`
//! ([`VerifyError::Incomplete`], exit status 5).
//!
//! The library function [`super::verify_files`] keeps running in the caller's process (no
//! budget, no limits, no child): a library user who needs isolation can call
//! [`verify_isolated`] from a binary whose `main` dispatches [`CHILD_ARG`] to [`child_main`].
//!
//! Test hook: the environment variable `NORMOPT_TEST_CHILD_ABORT`, honoured only by the child,
//! simulates a runtime failure: `1` (or `segv`) dies of SIGSEGV as if onnxruntime crashed on
//! model A, `oom` allocates past the memory limit, `hang` sleeps until killed. It exists for the
//! tests in `tests/budget.rs`.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::budget::{self, BudgetEstimate};
use super::{OrtDevice, Runtimes, VerifyError, VerifyOptions};
use crate::passes::report::Coverage;

/// The hidden subcommand that makes the executable a verification child.
pub const CHILD_ARG: &str = "__verify-child";

/// The prefix of the child's progress lines on stderr.
const MARK: &str = "\u{1}normopt-stage";

static MARKERS: AtomicBool = AtomicBool::new(false);

/// In a verification child, tell the parent which runtime and model (`A`, `B`, or `lib` while
/// loading onnxruntime) come next. Elsewhere, nothing.
pub(crate) fn mark(runtime: &str, model: &str) {
    if MARKERS.load(Ordering::Relaxed) {
        let mut e = std::io::stderr().lock();
        let _ = writeln!(e, "{MARK} {runtime} {model}");
        let _ = e.flush();
    }
}

/// Give the memory a runtime freed back to the system (glibc keeps freed heap pages for reuse):
/// without it, what tract freed after the last model stays resident while onnxruntime loads
/// its sessions (measured: about half of one model's weights more at the peak).
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap memory to the system; no pointer is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[derive(Serialize, Deserialize)]
struct Request {
    a: PathBuf,
    b: PathBuf,
    samples: usize,
    seed: u64,
    dims: std::collections::BTreeMap<String, usize>,
    rtol: Option<f64>,
    ort_lib: Option<PathBuf>,
    ort_device: OrtDevice,
    ort_optimize: bool,
    runtimes: Runtimes,
    require_ort: bool,
    /// Address-space limit for the child, bytes (0: none).
    mem_limit: u64,
    /// Notes to add to the report (dims the budget reduced).
    notes: Vec<String>,
    /// Verify piece by piece, each piece within this many bytes (`None`: whole models).
    #[serde(default)]
    pieces: Option<u64>,
    /// The path the report names as model B ([`Isolation::b_shown`]).
    b_shown: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
enum Response {
    Ok {
        report: serde_json::Value,
        text: String,
        passed: bool,
        coverage: Coverage,
    },
    Err {
        message: String,
        code: u8,
    },
}

/// How to isolate a verification.
#[derive(Clone, Debug)]
pub struct Isolation {
    /// Memory budget in bytes (`None`: [`budget::default_budget`]).
    pub budget: Option<u64>,
    /// Wall-time limit (`None`: no limit).
    pub timeout: Option<Duration>,
    /// How to call models A and B in messages (`the original model`, `the rewritten model`).
    pub names: [String; 2],
    /// The path the report names as model B instead of `b` (a rewrite is verified while it is
    /// staged in a private folder: the table names the output the user asked for).
    pub b_shown: Option<PathBuf>,
}

/// The outcome of an isolated verification that ran to the end.
#[derive(Clone, Debug)]
pub struct Checked {
    /// The [`super::VerifyReport`] as JSON, with the budget estimate under `budget`.
    pub json: serde_json::Value,
    /// The report as text (its `Display`).
    pub text: String,
    /// Whether every row passed.
    pub passed: bool,
    /// The budget estimate it ran under.
    pub estimate: BudgetEstimate,
    /// What it covered ([`super::VerifyReport::coverage`]).
    pub coverage: Coverage,
}

impl Checked {
    /// Whether verification passed.
    pub fn passed(&self) -> bool {
        self.passed
    }
}

impl std::fmt::Display for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Address space granted above the estimate: onnxruntime with its thread pools and allocator
/// arenas maps a few hundred MiB it never touches (about 300 MiB measured on the deployed
/// corpus).
const HEADROOM: u64 = 3 << 30;

/// The child's address-space limit: generous headroom over the estimate, because runtimes
/// reserve virtual memory they never touch (thread stacks, allocator arenas, the onnxruntime
/// library itself) — the limit stops a runaway, the budget is what is checked up front.
fn mem_limit(est: &BudgetEstimate) -> u64 {
    let base = est.budget_bytes.max(est.total_bytes);
    // Whole models: the weights of both (each runtime may map or copy them); in pieces, the
    // largest piece's.
    let weights = match &est.mode {
        budget::Mode::Whole => est.weight_bytes,
        budget::Mode::Pieces(p) => p.largest_weight_bytes,
    };
    base.saturating_mul(2)
        .saturating_add(weights.saturating_mul(2))
        .saturating_add(HEADROOM)
}

/// Verify `b` against `a` like [`super::verify_files`], but with the memory budget checked first
/// and the runtimes in a child process of the current executable (see the module docs).
pub fn verify_isolated(
    a: &Path,
    b: &Path,
    opts: &VerifyOptions,
    iso: &Isolation,
) -> Result<Checked, VerifyError> {
    let budget = iso.budget.unwrap_or_else(budget::default_budget);
    let subject = if iso.names[0].starts_with("the original") {
        "verification".to_string()
    } else {
        format!("verifying {}", iso.names[0])
    };
    let (opts, estimate) = budget::plan_as(a, b, opts, budget, &subject)?;
    let notes = plan_notes(&estimate, budget);
    let req = Request {
        a: a.to_path_buf(),
        b: b.to_path_buf(),
        samples: opts.samples,
        seed: opts.seed,
        dims: opts.dims.clone(),
        rtol: opts.rtol,
        ort_lib: opts.ort_lib.clone(),
        ort_device: opts.ort_device,
        ort_optimize: opts.ort_optimize,
        runtimes: opts.runtimes,
        require_ort: opts.require_ort,
        mem_limit: mem_limit(&estimate),
        notes,
        pieces: match &estimate.mode {
            budget::Mode::Whole => None,
            budget::Mode::Pieces(p) => Some(p.piece_limit),
        },
        b_shown: iso.b_shown.clone(),
    };
    let body = serde_json::to_vec(&req)
        .map_err(|e| VerifyError::Incomplete(format!("could not encode the request: {e}")))?;
    let exe = std::env::current_exe().map_err(|e| {
        VerifyError::Incomplete(format!(
            "could not find this program to run the verifier: {e}"
        ))
    })?;
    let mut child = Command::new(&exe)
        .arg(CHILD_ARG)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            VerifyError::Incomplete(format!(
                "could not start the verifier process {}: {e}",
                exe.display()
            ))
        })?;
    // The request is small; the child reads it whole before doing anything.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&body);
    }
    let mut stdout = child.stdout.take().expect("piped");
    let out_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let stage: Arc<Mutex<Option<(String, String)>>> = Arc::new(Mutex::new(None));
    // When the last piece started (verification in pieces: the time limit is per piece).
    let piece_start: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let oom = Arc::new(AtomicBool::new(false));
    let stderr = child.stderr.take().expect("piped");
    let err_thread = {
        let (stage, oom, piece_start) = (stage.clone(), oom.clone(), piece_start.clone());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line);
                if let Some(rest) = line.strip_prefix(MARK) {
                    let mut it = rest.split_whitespace();
                    if let (Some(r), Some(m)) = (it.next(), it.next()) {
                        if m.contains(':') {
                            *piece_start.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(Instant::now());
                        }
                        *stage.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some((r.to_string(), m.to_string()));
                    }
                } else if (line.contains("memory allocation of") && line.contains("failed"))
                    || line.contains("bad_alloc")
                    || line.contains("out of memory")
                {
                    oom.store(true, Ordering::SeqCst);
                }
            }
        })
    };
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) => {}
            Err(_) => break None,
        }
        let since = piece_start
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or(start);
        if iso.timeout.is_some_and(|t| since.elapsed() >= t) {
            let _ = child.kill();
            timed_out = true;
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = out_thread.join().unwrap_or_default();
    let _ = err_thread.join();
    let stage = stage.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (who, at) = match &stage {
        Some((r, m)) if m == "lib" => (r.clone(), "while loading its library".to_string()),
        // `A`, `B`, or `A:3/12` (a piece of A).
        Some((r, m)) => {
            let (model, piece) = m.split_once(':').unwrap_or((m, ""));
            let name = match model {
                "A" => iso.names[0].as_str(),
                "B" => iso.names[1].as_str(),
                other => other,
            };
            let piece = if piece.is_empty() {
                String::new()
            } else {
                format!(" (piece {piece})")
            };
            (r.clone(), format!("on {name}{piece}"))
        }
        None => (
            "the verifier".to_string(),
            "before running any model".to_string(),
        ),
    };
    if timed_out {
        return Err(VerifyError::Incomplete(format!(
            "{who} did not finish {at} within {} s (--verify-timeout{}); the verifier was stopped",
            iso.timeout.map_or(0, |t| t.as_secs()),
            if req.pieces.is_some() {
                ", per piece"
            } else {
                ""
            }
        )));
    }
    if let Ok(resp) = serde_json::from_slice::<Response>(&out) {
        return match resp {
            Response::Ok {
                mut report,
                text,
                passed,
                coverage,
            } => {
                if let Some(o) = report.as_object_mut() {
                    o.insert(
                        "budget".into(),
                        serde_json::to_value(&estimate).unwrap_or_default(),
                    );
                }
                Ok(Checked {
                    json: report,
                    text,
                    passed,
                    estimate,
                    coverage,
                })
            }
            Response::Err { message, code } => Err(VerifyError::Child { message, code }),
        };
    }
    let limit = budget::human(req.mem_limit);
    let why = match status {
        #[cfg(unix)]
        Some(st) if std::os::unix::process::ExitStatusExt::signal(&st).is_some() => {
            let sig = std::os::unix::process::ExitStatusExt::signal(&st).unwrap_or(0);
            if oom.load(Ordering::SeqCst) {
                format!(
                    "{who} ran out of memory {at} (the verifier's limit is {limit}; raise \
                     --verify-budget or pass --no-verify)"
                )
            } else if sig == 9 {
                format!("{who} was killed {at} (signal 9, e.g. by the out-of-memory killer)")
            } else {
                format!("{who} crashed {at} (signal {sig})")
            }
        }
        _ if oom.load(Ordering::SeqCst) => format!(
            "{who} ran out of memory {at} (the verifier's limit is {limit}; raise \
             --verify-budget or pass --no-verify)"
        ),
        Some(st) => format!(
            "{who} stopped {at} without a report (exit status {})",
            st.code().map_or("unknown".into(), |c| c.to_string())
        ),
        None => format!("{who} stopped {at} without a report"),
    };
    Err(VerifyError::Incomplete(why))
}

/// The notes of a budget plan for the report: dynamic dims it made smaller.
fn plan_notes(estimate: &BudgetEstimate, budget: u64) -> Vec<String> {
    if estimate.reduced.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "dynamic dims reduced to fit the verification budget of {}: {}",
        budget::human(budget),
        estimate
            .reduced
            .iter()
            .map(|d| format!("{} {}→{}", d.name, d.from, d.to))
            .collect::<Vec<_>>()
            .join(", ")
    )]
}

/// Verify `b` against `a` within `budget` bytes (`None`: [`budget::default_budget`]) as
/// [`verify_isolated`] plans it — whole models, or piece by piece when they do not fit, dynamic
/// dims made smaller when neither does — but in the caller's process: no address-space limit,
/// no timeout, a crashing runtime takes the caller with it. For library users without the
/// child entry point (the Python package).
pub fn verify_within(
    a: &Path,
    b: &Path,
    opts: &VerifyOptions,
    budget: Option<u64>,
) -> Result<super::VerifyReport, VerifyError> {
    let budget = budget.unwrap_or_else(budget::default_budget);
    let (opts, estimate) = budget::plan(a, b, opts, budget)?;
    let mut rep = match &estimate.mode {
        budget::Mode::Whole => super::verify_files(a, b, &opts)?,
        budget::Mode::Pieces(p) => super::pieces::verify_pieces(a, b, &opts, p.piece_limit)?,
    };
    rep.notes.extend(plan_notes(&estimate, budget));
    Ok(rep)
}

#[cfg(unix)]
fn limit_address_space(bytes: u64) {
    if bytes == 0 {
        return;
    }
    let lim = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct we pass; no memory is shared.
    unsafe {
        libc::setrlimit(libc::RLIMIT_AS, &lim);
    }
}

#[cfg(not(unix))]
fn limit_address_space(_bytes: u64) {}

fn test_hook(mem_limit: u64) {
    let Ok(v) = std::env::var("NORMOPT_TEST_CHILD_ABORT") else {
        return;
    };
    match v.as_str() {
        "1" | "segv" => {
            mark("onnxruntime", "A");
            #[cfg(unix)]
            // SAFETY: restoring the default action and raising a signal at ourselves, to die
            // the way a crashing runtime does.
            unsafe {
                libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                libc::raise(libc::SIGSEGV);
            }
            std::process::abort();
        }
        "oom" => {
            mark("tract", "B");
            let n = (mem_limit.max(1 << 30) as usize).saturating_add(1 << 20);
            let v = vec![1u8; n];
            std::hint::black_box(&v);
        }
        "hang" => {
            mark("tract", "A");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        _ => {}
    }
}

/// The body of `onnx-normopt __verify-child`: read a request on stdin, limit the address
/// space, verify, write the response on stdout. Returns the process exit status (0 whenever a
/// response was written; the verdict is in the response).
pub fn child_main() -> u8 {
    // Runtime panics are caught by the verifier and reported in the response: print nothing.
    std::panic::set_hook(Box::new(|_| {}));
    let mut body = Vec::new();
    if std::io::stdin().read_to_end(&mut body).is_err() {
        return 2;
    }
    let Ok(req) = serde_json::from_slice::<Request>(&body) else {
        eprintln!("onnx-normopt: {CHILD_ARG} is internal: it reads a request from onnx-normopt");
        return 2;
    };
    limit_address_space(req.mem_limit);
    MARKERS.store(true, Ordering::Relaxed);
    test_hook(req.mem_limit);
    let opts = VerifyOptions {
        samples: req.samples,
        seed: req.seed,
        dims: req.dims.clone(),
        rtol: req.rtol,
        ort_lib: req.ort_lib.clone(),
        ort_device: req.ort_device,
        ort_optimize: req.ort_optimize,
        runtimes: req.runtimes,
        require_ort: req.require_ort,
    };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match req.pieces {
        Some(limit) => super::pieces::verify_pieces(&req.a, &req.b, &opts, limit),
        None => super::verify_files(&req.a, &req.b, &opts),
    }));
    let resp = match r {
        Ok(Ok(mut rep)) => {
            rep.notes.extend(req.notes.iter().cloned());
            if let Some(b) = &req.b_shown {
                rep.b = b.clone();
            }
            Response::Ok {
                report: serde_json::to_value(&rep).unwrap_or_default(),
                text: rep.to_string(),
                passed: rep.passed(),
                coverage: rep.coverage(),
            }
        }
        Ok(Err(e)) => Response::Err {
            message: e.to_string(),
            code: e.exit_code(),
        },
        Err(p) => Response::Err {
            message: format!(
                "internal error during verification (a bug in this tool): {}",
                super::shorten(&super::panic_message(p))
            ),
            code: 1,
        },
    };
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, &resp);
    let _ = out.flush();
    0
}

/// Set in the environment of a command re-run by [`isolate_command`]: its address-space limit.
const ISOLATED_ENV: &str = "NORMOPT_ISOLATED_LIMIT";

/// Run the current command (`bench`) in a child process of the same executable, with the same
/// arguments, an address-space limit and `timeout`: returns `Some(exit status)` in the parent
/// (the child's own status; 5 with one line naming `what` when it crashed, ran out of memory or
/// time) and `None` in the child, which limits itself and carries on. The child's output goes
/// straight to the terminal.
pub fn isolate_command(what: &str, models: &[PathBuf], timeout: Option<Duration>) -> Option<u8> {
    if let Ok(v) = std::env::var(ISOLATED_ENV) {
        limit_address_space(v.parse().unwrap_or(0));
        if matches!(
            std::env::var("NORMOPT_TEST_CHILD_ABORT").as_deref(),
            Ok("1" | "segv")
        ) {
            test_hook(0);
        }
        return None;
    }
    let weights: u64 = models.iter().map(|m| budget_file_size(m)).sum();
    let limit = (budget::default_budget().saturating_mul(2))
        .saturating_add(weights.saturating_mul(4))
        .saturating_add(HEADROOM);
    let fail = |why: String| {
        eprintln!("onnx-normopt: {what} could not complete: {why}");
        Some(5)
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return fail(format!("could not find this program to run it: {e}")),
    };
    let mut child = match Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .env(ISOLATED_ENV, limit.to_string())
        .stdin(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return fail(format!("could not start {}: {e}", exe.display())),
    };
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => {}
            Err(e) => return fail(format!("lost the {what} process: {e}")),
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            let _ = child.kill();
            let _ = child.wait();
            return fail(format!(
                "it did not finish within {} s and was stopped",
                timeout.map_or(0, |t| t.as_secs())
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if let Some(c) = status.code() {
        return Some(u8::try_from(c).unwrap_or(1));
    }
    #[cfg(unix)]
    if let Some(sig) = std::os::unix::process::ExitStatusExt::signal(&status) {
        return fail(if sig == 6 {
            format!(
                "the {what} process aborted (signal 6; an allocation past its {} memory limit \
                 ends this way)",
                budget::human(limit)
            )
        } else {
            format!("the {what} process crashed (signal {sig})")
        });
    }
    fail(format!("the {what} process stopped without a status"))
}

fn budget_file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}
