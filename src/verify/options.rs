//! What verification is asked to do: runtimes, samples, tolerances, dims ([`VerifyOptions`]).
//! The command line's flags that fill them live with the command line (`src/cli/args.rs`).

use super::*;

/// Where onnxruntime runs the models.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
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
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
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

impl OrtDevice {
    /// Every device, in the order the command line lists them.
    pub const ALL: [OrtDevice; 2] = [OrtDevice::Cpu, OrtDevice::Cuda];

    /// The device's name (`--ort-device`): `cpu` or `cuda`.
    pub fn name(self) -> &'static str {
        match self {
            OrtDevice::Cpu => "cpu",
            OrtDevice::Cuda => "cuda",
        }
    }
}

impl Runtimes {
    /// Every choice, in the order the command line lists them.
    pub const ALL: [Runtimes; 3] = [Runtimes::Tract, Runtimes::Ort, Runtimes::Both];

    /// The choice's name (`--runtime`): `tract`, `ort` or `both`.
    pub fn name(self) -> &'static str {
        match self {
            Runtimes::Tract => "tract",
            Runtimes::Ort => "ort",
            Runtimes::Both => "both",
        }
    }
}

impl std::fmt::Display for OrtDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for Runtimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
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
    /// Tolerance on max |Δ| / max |ref| for every float output, replacing the default of its
    /// element type (f32 1e-4, f64 1e-8, f16 1e-2, bf16 5e-2).
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
