//! What verification is asked to do: runtimes, samples, tolerances, dims (the library's
//! [`VerifyOptions`]), and the command-line flags that fill them ([`VerifyArgs`]).

use super::*;

/// Where onnxruntime runs the models.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum OrtDevice {
    /// The CPU execution provider.
    #[default]
    Cpu,
    /// The CUDA execution provider (needs this crate built with the `cuda` feature and an
    /// onnxruntime library with CUDA, e.g. from `pip install onnxruntime-gpu`).
    Cuda,
}

/// Which runtimes to verify in.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Runtimes {
    /// tract only.
    Tract,
    /// onnxruntime only (an error when its library cannot be loaded).
    Ort,
    /// Both (onnxruntime is skipped, with a note, when its library cannot be found, unless
    /// [`VerifyOptions::require_ort`]).
    #[default]
    Both,
}

/// How to verify; [`Default`] gives 3 samples, seed 0, default dims and tolerances, both
/// runtimes, onnxruntime on the CPU with optimisations off, onnxruntime optional.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifyOptions {
    /// Number of random input samples (at least 1).
    pub samples: usize,
    /// Seed of the input generator.
    pub seed: u64,
    /// Values for dynamic input dimensions, by `dim_param` name (or `INPUT[AXIS]` for an axis
    /// with neither size nor name).
    pub dims: BTreeMap<String, usize>,
    /// Tolerance on max |Δ| / max |ref| for every float output, replacing [`default_tolerance`].
    pub rtol: Option<f64>,
    /// The onnxruntime shared library (a file, or a folder holding it).
    pub ort_lib: Option<PathBuf>,
    /// The onnxruntime execution provider.
    pub ort_device: OrtDevice,
    /// Run onnxruntime with all graph optimisations (default: none, `ORT_DISABLE_ALL`, so the
    /// graphs run as written).
    pub ort_optimize: bool,
    /// Which runtimes to use.
    pub runtimes: Runtimes,
    /// Fail when onnxruntime cannot be loaded instead of verifying with tract alone (set it when
    /// the environment has `CI=true`; see [`ci_requires_ort`]).
    pub require_ort: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            samples: 3,
            seed: 0,
            dims: BTreeMap::new(),
            rtol: None,
            ort_lib: None,
            ort_device: OrtDevice::Cpu,
            ort_optimize: false,
            runtimes: Runtimes::Both,
            require_ort: false,
        }
    }
}

/// Whether the environment says onnxruntime is required: `CI` is `true` (or `1`).
pub fn ci_requires_ort() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
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
    #[arg(long, value_enum, default_value_t = OrtDevice::Cpu)]
    pub ort_device: OrtDevice,
    /// Let onnxruntime optimise the graphs (default: optimisations off, graphs run as written).
    #[arg(long)]
    pub ort_optimize: bool,
    /// Runtimes to verify in.
    #[arg(long, value_enum, default_value_t = Runtimes::Both)]
    pub runtime: Runtimes,
    /// Fail if onnxruntime cannot be loaded instead of verifying with tract alone (implied by
    /// the environment variable CI=true).
    #[arg(long)]
    pub require_ort: bool,
    /// Memory verification may use (e.g. 2G, 512M; default: the smaller of 2 GiB and a quarter
    /// of the available memory). Checked before anything runs: dynamic dims are made smaller to
    /// fit; when fixed dims cannot fit, nothing runs and the exit status is 5.
    #[arg(long, value_name = "BYTES", value_parser = budget::parse_bytes)]
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
    /// The isolation these flags ask for ([`child::verify_isolated`]), naming models A and B
    /// `names` in messages.
    pub fn isolation(&self, names: [&str; 2]) -> child::Isolation {
        child::Isolation {
            budget: self.verify_budget,
            timeout: (self.verify_timeout > 0)
                .then(|| std::time::Duration::from_secs(self.verify_timeout)),
            names: names.map(str::to_string),
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
