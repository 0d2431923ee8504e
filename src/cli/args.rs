//! The command line's flags shared by its commands: verification's ([`VerifyArgs`], flattened
//! into `verify A B` and the rewrite command; `--dim` is also `bench`'s), and a value parser
//! that names the library's enums by the library's own words ([`named`]).

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use onnx_normopt::passes::Target;
use onnx_normopt::verify::{self, ci_requires_ort, Isolation, OrtDevice, Runtimes, VerifyOptions};
use std::path::PathBuf;

/// A clap value parser for a library enum: the words are the library's (`name`, the one
/// mapping between the enum and its words), listed in `--help` with `help`.
#[derive(Clone)]
pub struct Named<T: 'static> {
    all: &'static [T],
    name: fn(T) -> &'static str,
    help: fn(T) -> &'static str,
}

/// [`Named`] over `all`.
pub fn named<T>(
    all: &'static [T],
    name: fn(T) -> &'static str,
    help: fn(T) -> &'static str,
) -> Named<T> {
    Named { all, name, help }
}

impl<T: Copy + Send + Sync + 'static> Named<T> {
    fn values(&self) -> impl Iterator<Item = PossibleValue> + '_ {
        self.all
            .iter()
            .map(|&t| PossibleValue::new((self.name)(t)).help((self.help)(t)))
    }
}

impl<T: Copy + Send + Sync + 'static> TypedValueParser for Named<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        // clap's own check (and message) for a word that is not one of ours.
        let word = PossibleValuesParser::new(self.values()).parse_ref(cmd, arg, value)?;
        self.all
            .iter()
            .copied()
            .find(|&t| (self.name)(t) == word)
            .ok_or_else(|| clap::Error::new(clap::error::ErrorKind::InvalidValue).with_cmd(cmd))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(self.values()))
    }
}

/// `--target`.
pub fn targets() -> Named<Target> {
    named(&Target::ALL, Target::name, |t| match t {
        Target::Rmsnorm => "Pre-RMSNorm (same width)",
        Target::Crmsnorm => {
            "Pre-CRMSNorm (streams compressed to D−1; exact, but slower than rmsnorm in \
             onnxruntime and OpenVINO: BENCHMARKS.md)"
        }
    })
}

/// `--runtime`.
pub fn runtimes() -> Named<Runtimes> {
    named(&Runtimes::ALL, Runtimes::name, |r| match r {
        Runtimes::Tract => "tract only",
        Runtimes::Ort => "onnxruntime only (an error when its library cannot be loaded)",
        Runtimes::Both => {
            "both (onnxruntime is skipped, with a note, when its library cannot be found)"
        }
    })
}

fn device_help(d: OrtDevice) -> &'static str {
    match d {
        OrtDevice::Cpu => "the CPU execution provider",
        OrtDevice::Cuda => "the CUDA execution provider (needs a build with the `cuda` feature and onnxruntime-gpu)",
    }
}

/// Parse `NAME=VALUE` for `--dim`.
pub fn parse_dim(s: &str) -> Result<(String, usize), String> {
    let (k, v) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got `{s}`"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("expected NAME=VALUE, got `{s}`"));
    }
    let v: usize = v
        .trim()
        .parse()
        .map_err(|_| format!("`{v}` is not a dimension size"))?;
    if v == 0 {
        return Err(format!("dimension `{k}` must be at least 1"));
    }
    Ok((k.to_string(), v))
}

/// The command-line flags of verification, to flatten (`#[command(flatten)]`) into the
/// `verify A B` command and into the rewrite command.
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct VerifyArgs {
    /// Number of random input samples.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub samples: usize,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub seed: u64,
    /// Size of a dynamic input dimension, by its name (e.g. `--dim seq=16 --dim batch=1`); an
    /// unnamed axis is `INPUT[AXIS]`. Defaults: batch-like axes 2, others 8.
    #[arg(
        long = "dim",
        value_name = "NAME=VALUE",
        value_parser = parse_dim,
        help = "Size of a dynamic input dimension, by its name (e.g. --dim seq=16 --dim batch=1); \
                an unnamed axis is INPUT[AXIS]. Defaults: batch-like axes 2, others 8"
    )]
    pub dims: Vec<(String, usize)>,
    /// Tolerance on max|Δ|/max|ref| for float outputs (defaults: f32 1e-4, f64 1e-8, f16 1e-2,
    /// bf16 5e-2; integer outputs must match exactly).
    #[arg(long, value_name = "X")]
    pub rtol: Option<f64>,
    /// The onnxruntime shared library (default: ORT_DYLIB_PATH, then the Python onnxruntime
    /// package, then common install folders).
    #[arg(long, value_name = "PATH")]
    pub ort_lib: Option<PathBuf>,
    /// Execution provider for onnxruntime.
    #[arg(long, value_parser = named(&OrtDevice::ALL, OrtDevice::name, device_help), default_value_t = OrtDevice::Cpu)]
    pub ort_device: OrtDevice,
    /// Let onnxruntime optimise the graphs (default: optimisations off, graphs run as written).
    #[arg(long)]
    pub ort_optimize: bool,
    /// Runtimes to verify in.
    #[arg(long, value_parser = runtimes(), default_value_t = Runtimes::Both)]
    pub runtime: Runtimes,
    /// Fail if onnxruntime cannot be loaded instead of verifying with tract alone (implied by
    /// the environment variable CI=true).
    #[arg(long)]
    pub require_ort: bool,
    /// Memory verification may use (e.g. 2G, 512M; default: the smaller of 2 GiB and a quarter
    /// of the available memory). Checked before anything runs: dynamic dims are made smaller to
    /// fit; when fixed dims cannot fit, nothing runs and the exit status is 5.
    #[arg(long, value_name = "BYTES", value_parser = verify::budget::parse_bytes)]
    pub verify_budget: Option<u64>,
    /// Stop verification after this many seconds (0: no limit); exit status 5.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub verify_timeout: u64,
}

impl Default for VerifyArgs {
    fn default() -> Self {
        VerifyArgs {
            samples: 3,
            seed: 0,
            dims: Vec::new(),
            rtol: None,
            ort_lib: None,
            ort_device: OrtDevice::Cpu,
            ort_optimize: false,
            runtime: Runtimes::Both,
            require_ort: false,
            verify_budget: None,
            verify_timeout: 600,
        }
    }
}

impl VerifyArgs {
    /// The isolation these flags ask for ([`verify::verify_isolated`]), naming models A and B
    /// `names` in messages.
    pub fn isolation(&self, names: [&str; 2]) -> Isolation {
        Isolation {
            budget: self.verify_budget,
            timeout: (self.verify_timeout > 0)
                .then(|| std::time::Duration::from_secs(self.verify_timeout)),
            names: names.map(str::to_string),
            b_shown: None,
        }
    }

    /// The options these flags mean; `require_ort` is also set when the environment has
    /// `CI=true` ([`ci_requires_ort`]).
    pub fn to_options(&self) -> VerifyOptions {
        VerifyOptions {
            samples: self.samples,
            seed: self.seed,
            dims: self.dims.iter().cloned().collect(),
            rtol: self.rtol,
            ort_lib: self.ort_lib.clone(),
            ort_device: self.ort_device,
            ort_optimize: self.ort_optimize,
            runtimes: self.runtime,
            require_ort: self.require_ort || ci_requires_ort(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::collections::BTreeMap;

    #[test]
    fn verify_args_flatten_into_a_command() {
        #[derive(Parser)]
        struct Cli {
            a: PathBuf,
            #[command(flatten)]
            verify: VerifyArgs,
        }
        let cli = Cli::try_parse_from([
            "x",
            "m.onnx",
            "--samples",
            "5",
            "--seed",
            "9",
            "--dim",
            "seq=16",
            "--dim",
            "batch=1",
            "--rtol",
            "1e-4",
            "--ort-lib",
            "/opt/lib.so",
            "--ort-device",
            "cuda",
            "--ort-optimize",
            "--runtime",
            "tract",
        ])
        .unwrap();
        let o = cli.verify.to_options();
        assert_eq!(o.samples, 5);
        assert_eq!(o.seed, 9);
        assert_eq!(
            o.dims,
            BTreeMap::from([("seq".into(), 16), ("batch".into(), 1)])
        );
        assert_eq!(o.rtol, Some(1e-4));
        assert_eq!(o.ort_lib, Some(PathBuf::from("/opt/lib.so")));
        assert_eq!(o.ort_device, OrtDevice::Cuda);
        assert!(o.ort_optimize);
        assert_eq!(o.runtimes, Runtimes::Tract);
        assert_eq!(o.require_ort, ci_requires_ort());
        let d = Cli::try_parse_from(["x", "m.onnx"])
            .unwrap()
            .verify
            .to_options();
        assert_eq!(
            d,
            VerifyOptions {
                require_ort: ci_requires_ort(),
                ..VerifyOptions::default()
            }
        );
        assert!(Cli::try_parse_from(["x", "m.onnx", "--dim", "seq"]).is_err());
        assert!(Cli::try_parse_from(["x", "m.onnx", "--runtime", "cuda"]).is_err());
    }
}
