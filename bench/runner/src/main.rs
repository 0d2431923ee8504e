//! `normopt-bench MODEL_A MODEL_B ... [flags]`: the same as `onnx-normopt bench` will be.
use clap::Parser;

#[derive(Parser)]
#[command(name = "normopt-bench")]
struct Cli {
    #[command(flatten)]
    args: onnx_normopt::bench::BenchArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    std::process::ExitCode::from(onnx_normopt::bench::run(&cli.args))
}
