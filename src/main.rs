//! The `onnx-normopt` command line: a thin client of the library.
//!
//! Exit status: 0 rewritten; 1 verification failed; 2 bad input or usage; 3 nothing could be
//! rewritten (reasons printed, no output written); 4 not verifiable: no runtime could run the
//! original model (nothing written); 5 verification would exceed its budget or could not
//! complete (nothing written).

#[path = "cli/args.rs"]
mod args;
#[path = "cli/bench/mod.rs"]
mod bench;

use args::VerifyArgs;
use clap::{Args, Parser, Subcommand, ValueEnum};
use onnx_normopt::flow::{self, same_file, write_atomic, VerifyWhen};
use onnx_normopt::ir::{dump, Model};
use onnx_normopt::passes::{self, Options, OutputForm, Target};
use onnx_normopt::verify;
use onnx_normopt::{folder, io, progress, Error};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Rewrite Pre-LN transformer ONNX models into exactly equivalent Pre-RMSNorm (or Pre-CRMSNorm)
/// models, and prove it by running both in tract and onnxruntime.
///
/// Exit status: 0 rewritten; 1 verification failed; 2 bad input or usage;
/// 3 nothing could be rewritten (reasons printed, nothing written); 4 not verifiable: no runtime
/// could run the original model (nothing written; --no-verify skips verification);
/// 5 verification would exceed its memory budget (--verify-budget) or could not complete (the
/// verifier crashed, ran out of memory, or passed --verify-timeout; nothing written).
#[derive(Parser, Debug)]
#[command(
    name = "onnx-normopt",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    rewrite: RewriteArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Show the residual streams, their LayerNorms and forms, what the rewrite would do, and
    /// why any LayerNorm would be left alone. Changes nothing.
    Inspect {
        /// The model.
        model: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Also print the graph as text.
        #[arg(long)]
        graph: bool,
        /// Also print the shape the pass infers for every value (and the values of small
        /// shape tensors it can compute).
        #[arg(long)]
        shapes: bool,
        /// Target to analyse for.
        #[arg(long, value_parser = args::targets(), default_value_t = Target::Rmsnorm)]
        target: Target,
        /// Write Graphviz DOT of the residual streams (sources, writers, norms, readers,
        /// coloured by what the rewrite does to each; repeated blocks collapsed) to stdout, or
        /// to FILE with `--dot=FILE`. Render with `dot -Tsvg`.
        #[arg(long, value_name = "FILE", num_args = 0..=1, require_equals = true, default_missing_value = "-")]
        dot: Option<PathBuf>,
    },
    /// Time models side by side (interleaved rounds, one process) in onnxruntime (default
    /// session options) and tract: medians, quartiles, and ratios against the first model.
    Bench {
        #[command(flatten)]
        args: bench::BenchArgs,
    },
    /// Compare two models on the same random inputs in tract and onnxruntime.
    /// Exit 0 when they agree, 1 when they differ, 4 when no runtime can run A, 5 when
    /// verification would exceed its budget or could not complete.
    Verify {
        /// The reference model.
        a: PathBuf,
        /// The model to compare with it.
        b: PathBuf,
        #[command(flatten)]
        args: VerifyArgs,
        /// Print the table as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
struct RewriteArgs {
    /// The input model (never modified).
    #[arg(required = true)]
    model: Option<PathBuf>,
    /// Where to write the rewritten model (must differ from the input; its folder must exist).
    #[arg(short, long, required = true, value_name = "OUT")]
    output: Option<PathBuf>,
    /// The normalisation to rewrite to.
    #[arg(long, value_parser = args::targets(), default_value_t = Target::Rmsnorm)]
    target: Target,
    /// How to write RMSNorm: `standard` (ONNX RMSNormalization at opset >= 23, else standard
    /// ops; passes onnx.checker) or `onnxruntime` (SimplifiedLayerNormalization and
    /// com.microsoft:SkipSimplifiedLayerNormalization; fastest in onnxruntime). With
    /// `--target crmsnorm`, `custom` writes each CRMSNorm as one op
    /// ai.onnx_normopt:CRMSNormalization, which only tract (with this crate's registration) runs;
    /// the model is then verified in tract alone. `--emit custom` with `--target rmsnorm` is a
    /// usage error (exit 2).
    #[arg(long, value_enum, default_value_t = EmitArg::Standard)]
    emit: EmitArg,
    /// Keep γ and β on the RMSNorm instead of folding them into the linear readers.
    #[arg(long)]
    no_fold: bool,
    /// Verify the result in tract and onnxruntime before writing it (the default, at any size:
    /// a model whose two whole copies do not fit --verify-budget is verified piece by piece).
    #[arg(long, overrides_with = "no_verify")]
    verify: bool,
    /// Do not verify.
    #[arg(long)]
    no_verify: bool,
    /// Write a JSON report of what was done.
    #[arg(long, value_name = "R.json")]
    report: Option<PathBuf>,
    /// Print nothing but errors (and no progress bar).
    #[arg(short, long)]
    quiet: bool,
    /// Do not wait for the output to reach the disk (fsync) before renaming it into place:
    /// faster, but a machine crash right after could leave an incomplete output.
    #[arg(long)]
    no_fsync: bool,
    /// Print each patch of the rewrite as it is applied ("patch #N: what it does").
    #[arg(short, long)]
    verbose: bool,
    /// Check the graph after each patch of the rewrite, not only at the end (slower; the test
    /// suite always does).
    #[arg(long)]
    check_patches: bool,
    /// Apply only the first N patches of the rewrite (see -v for the list), to bisect a broken
    /// rewrite. The result is a valid graph but in general not equivalent to the input, so
    /// verification usually fails: add --no-verify to write it.
    #[arg(long, value_name = "N")]
    stop_after: Option<usize>,
    #[command(flatten)]
    verify_args: VerifyArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum EmitArg {
    /// Portable ONNX.
    Standard,
    /// onnxruntime contrib ops.
    Onnxruntime,
    /// CRMSNorm as one custom op ai.onnx_normopt:CRMSNormalization (tract only; needs
    /// --target crmsnorm).
    Custom,
}

/// The pass's options for `--target`, `--emit` and `--no-fold`: a usage error for `--emit custom`
/// without `--target crmsnorm`.
fn options(target: Target, emit: EmitArg, fold: bool) -> Result<Options, Error> {
    let emit = match emit {
        EmitArg::Standard => "standard",
        EmitArg::Onnxruntime => "onnxruntime",
        EmitArg::Custom => "custom",
    };
    Ok(Options {
        form: OutputForm::from_flags(target, emit)?,
        fold,
        ..Options::default()
    })
}

/// The pass's options for `inspect` (standard ops, folding on).
fn inspect_options(target: Target) -> Options {
    Options {
        form: target.into(),
        ..Options::default()
    }
}

/// Panics never reach the user as a backtrace: they print one line naming the place, as a bug of
/// this tool. (Runtimes run in the verifier's child process, which reports their panics itself.)
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "onnx-normopt: internal error (a bug in this tool, please report it): {}{at}",
            one_line(&msg)
        );
    }));
}

fn main() -> ExitCode {
    // The isolated verifier (see onnx_normopt::verify::child): internal, not in --help.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == verify::CHILD_ARG)
    {
        return ExitCode::from(verify::child_main());
    }
    install_panic_hook();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let code = match cli.cmd {
        Some(Cmd::Inspect {
            model,
            json,
            graph,
            shapes,
            target,
            dot,
        }) => match dot {
            Some(d) => inspect_dot(&model, &d, target),
            None => inspect(&model, json, graph, shapes, target),
        },
        Some(Cmd::Verify { a, b, args, json }) => verify_cmd(&a, &b, &args, json),
        // In a child process with a memory limit: a runtime crash is one line, exit 5.
        Some(Cmd::Bench { args }) => verify::isolate_command("bench", &args.models, None)
            .unwrap_or_else(|| bench::run(&args)),
        None => rewrite(&cli.rewrite),
    };
    ExitCode::from(code)
}

fn fail(e: &Error) -> u8 {
    eprintln!("onnx-normopt: {e}");
    e.exit_code() as u8
}

/// Report an error of the pass on `input`: a refusal ([`Error::NotRewritable`]) names the file
/// like the "nothing rewritten" line does; other errors name it themselves.
fn fail_pass(input: &Path, e: &Error) -> u8 {
    match e {
        Error::NotRewritable(why) => {
            eprintln!(
                "onnx-normopt: {}: nothing rewritten: {}",
                input.display(),
                one_line(why)
            );
            e.exit_code() as u8
        }
        _ => fail(e),
    }
}

use flow::one_line;

fn inspect(path: &Path, json: bool, graph: bool, shapes: bool, target: Target) -> u8 {
    let model = match Model::load(path) {
        Ok(m) => m,
        Err(e) => return fail(&e),
    };
    let mut report = match passes::inspect(&model, &inspect_options(target)) {
        Ok(r) => r,
        Err(e) => return fail_pass(path, &e),
    };
    report.rewritten_by = onnx_normopt::provenance::read(&model.header);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", report.inspect_text());
        if graph {
            print!("\n{}", dump::dump(&model.graph));
        }
        if shapes {
            print!("\n{}", shapes_text(&model.graph));
        }
    }
    0
}

/// `inspect --shapes`: every node output with its inferred shape (and value, when known).
fn shapes_text(g: &onnx_normopt::ir::Graph) -> String {
    let shapes = onnx_normopt::ir::shape::Shapes::infer(g);
    let list = |v: &[onnx_normopt::ir::shape::Dim]| {
        v.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = String::from("shapes:\n");
    for o in g
        .nodes()
        .iter()
        .flat_map(|n| n.output.iter())
        .filter(|o| !o.is_empty())
    {
        let shape = shapes
            .get(o)
            .map(|d| format!("[{}]", list(d)))
            .unwrap_or_else(|| "unknown".into());
        let value = shapes
            .value(o)
            .map(|v| format!(" = [{}]", list(v)))
            .unwrap_or_default();
        s.push_str(&format!("  {o:?}: {shape}{value}\n"));
    }
    s
}

/// `inspect --dot`: the picture of the streams.
fn inspect_dot(path: &Path, dot_out: &Path, target: Target) -> u8 {
    let model = match Model::load(path) {
        Ok(m) => m,
        Err(e) => return fail(&e),
    };
    let report = match passes::inspect(&model, &inspect_options(target)) {
        Ok(r) => r,
        Err(e) => return fail_pass(path, &e),
    };
    let names = onnx_normopt::dot::display_names(&model.graph);
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut title = format!(
        "{file}: residual streams, target {} ({} norm(s) rewritten, {} left alone)",
        report.target,
        report.norms_rewritten,
        report.refusals.len()
    );
    if let Some(p) = onnx_normopt::provenance::read(&model.header) {
        title.push_str(&format!(" — already rewritten by {}", p.describe()));
    }
    let text = onnx_normopt::dot::streams_dot(
        &report,
        &|n| names.get(n).cloned().unwrap_or_else(|| n.to_string()),
        &title,
    );
    if dot_out == Path::new("-") {
        print!("{text}");
        return 0;
    }
    if same_file(path, dot_out) {
        return fail(&Error::Usage(format!(
            "{}: the DOT file must not be the model",
            dot_out.display()
        )));
    }
    match write_atomic(dot_out, text.as_bytes()) {
        Ok(()) => 0,
        Err(e) => fail(&e),
    }
}

fn verify_cmd(a: &Path, b: &Path, args: &VerifyArgs, json: bool) -> u8 {
    for p in [a, b] {
        if let Err(e) = io::load(p) {
            return fail(&e);
        }
    }
    let names = [
        format!("model A ({})", a.display()),
        format!("model B ({})", b.display()),
    ];
    let iso = args.isolation([&names[0], &names[1]]);
    match verify::verify_isolated(a, b, &args.to_options(), &iso) {
        Ok(rep) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rep.json).unwrap_or_default()
                );
            } else {
                print!("{rep}");
            }
            if rep.passed() {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("onnx-normopt: verify: {e}");
            e.exit_code()
        }
    }
}

fn settings(a: &RewriteArgs, mut opts: Options) -> flow::Settings {
    let iso = a
        .verify_args
        .isolation(["the original model", "the rewritten model"]);
    opts.check_each_patch = a.check_patches;
    opts.stop_after = a.stop_after;
    if a.verbose {
        let n = std::sync::atomic::AtomicUsize::new(0);
        opts.patch_log = Some(passes::PatchLog(std::sync::Arc::new(move |p: &str| {
            let k = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            eprintln!("patch #{k}: {p}");
        })));
    }
    flow::Settings {
        opts,
        verify: if a.no_verify {
            VerifyWhen::Never
        } else if a.verify {
            VerifyWhen::Always
        } else {
            VerifyWhen::Default
        },
        verify_opts: a.verify_args.to_options(),
        progress: if a.quiet {
            progress::Show::Off
        } else {
            progress::Show::Large
        },
        fsync: !a.no_fsync,
        report: a.report.clone(),
        input_name: None,
        // In a child process, with the memory budget checked first (verify::child): a runtime
        // crash, an allocation failure or a timeout is one line, exit 5.
        verifier: Box::new(move |x, y, shown, o| {
            let iso = verify::Isolation {
                b_shown: Some(shown.to_path_buf()),
                ..iso.clone()
            };
            Ok(verify::verify_isolated(x, y, o, &iso).map(flow::Verification::from))
        }),
    }
}

/// What `--target crmsnorm` costs in speed, said when it is chosen (issue #24): the model is
/// exact and each CRMSNorm is one fused norm over D−1 entries, but end to end it measured up to
/// about 1% slower than `--target rmsnorm` in onnxruntime and OpenVINO (BENCHMARKS.md).
fn crms_speed_note(target: Target) {
    if target == Target::Crmsnorm {
        eprintln!(
            "onnx-normopt: note: --target crmsnorm is exact, but for speed prefer --target \
             rmsnorm: each CRMSNorm runs as one fused RMSNorm over D−1 entries, yet end to end it \
             measured up to about 1% slower than RMSNorm in onnxruntime and OpenVINO, and in OpenVINO \
             at bf16 no faster than the original (BENCHMARKS.md)"
        );
    }
}

fn rewrite(a: &RewriteArgs) -> u8 {
    let (Some(input), Some(out)) = (a.model.as_deref(), a.output.as_deref()) else {
        eprintln!("onnx-normopt: usage: onnx-normopt MODEL -o OUT (see --help)");
        return 2;
    };
    let opts = match options(a.target, a.emit, !a.no_fold) {
        Ok(o) => o,
        Err(e) => return fail(&e),
    };
    let s = settings(a, opts);
    if input.is_dir() {
        let done = folder::run(input, out, &s, &mut |m| eprint!("{m}"));
        if let Some(m) = &done.message {
            eprintln!("onnx-normopt: {m}");
        }
        if done.code == 0 && !a.quiet {
            crms_speed_note(a.target);
        }
        return done.code;
    }
    if let Some(n) = a.stop_after {
        eprintln!(
            "onnx-normopt: --stop-after {n}: only the first {n} patch(es) of the rewrite are applied; \
             the result is in general not equivalent to the input"
        );
    }
    let result = flow::rewrite(input, &flow::Output::File(out.into()), &s);
    let code = result.exit_code();
    match result {
        flow::FileResult::Error(e) => fail_pass(input, &e),
        flow::FileResult::Refused { why, report } => {
            if let (Some(r), false) = (&report, a.quiet) {
                eprint!("{}", r.summary());
            }
            eprintln!(
                "onnx-normopt: {}: nothing rewritten: {}",
                input.display(),
                one_line(&why)
            );
            code
        }
        flow::FileResult::VerifyFailed { why, table, .. } => {
            if let Some(t) = table {
                eprint!("{t}");
            }
            eprintln!(
                "onnx-normopt: {}: {}; nothing written",
                input.display(),
                one_line(&why)
            );
            code
        }
        flow::FileResult::Rewritten {
            report, verified, ..
        } => {
            if !a.quiet {
                match verified {
                    flow::Verified::Passed(t) => eprint!("{t}"),
                    flow::Verified::Skipped(why) if !a.no_verify => {
                        eprintln!("onnx-normopt: note: {}: {why}", input.display())
                    }
                    flow::Verified::Skipped(_) => {}
                }
                eprint!("{}", report.summary());
                eprintln!("onnx-normopt: wrote {}", out.display());
                crms_speed_note(a.target);
            }
            0
        }
    }
}
