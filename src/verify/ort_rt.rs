//! Running a model in onnxruntime through `ort` with `load-dynamic`: finding the shared library,
//! initialising it once per process, sessions with graph optimisations off.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::memory::Allocator;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{DynTensor, DynTensorValueType, DynValue, Tensor, TensorElementType, ValueType};

use super::source::ModelSource;
use super::tensor::HostTensor;
use super::{OrtDevice, VerifyError};
use crate::proto::data_type as dt;

/// Where an onnxruntime shared library was found, or every place that was tried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrtLibrary {
    /// The library, and how it was found (`--ort-lib`, `ORT_DYLIB_PATH`, `python3`, a search path).
    Found {
        /// The library file.
        path: PathBuf,
        /// How it was found.
        how: String,
    },
    /// Not found: the places tried, in order.
    NotFound {
        /// Every lookup made.
        tried: Vec<String>,
    },
}

/// Library file names: the exact unversioned names first, then versioned ones.
fn is_ort_lib_name(name: &str) -> bool {
    if cfg!(target_os = "windows") {
        name.eq_ignore_ascii_case("onnxruntime.dll")
    } else if cfg!(target_os = "macos") {
        name.starts_with("libonnxruntime") && name.ends_with(".dylib") && !name.contains("provider")
    } else {
        name.starts_with("libonnxruntime.so")
    }
}

/// The onnxruntime library in a directory, if any (prefers the most specific versioned name, which
/// is the real file in pip wheels: `libonnxruntime.so.1.32.0`).
fn lib_in_dir(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(is_ort_lib_name))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    found.into_iter().next()
}

/// Subdirectories of `dir` whose name starts with `prefix` (sorted, newest-looking last).
fn subdirs(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.starts_with(prefix))
                })
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Ask an installed Python where the `onnxruntime` package is, without importing it (fast).
fn python_package_dir() -> Result<PathBuf, String> {
    let script = "import importlib.util as u, os\n\
                  s = u.find_spec('onnxruntime')\n\
                  print(os.path.dirname(s.origin) if s and s.origin else '')";
    let mut last = String::new();
    for py in ["python3", "python"] {
        match std::process::Command::new(py)
            .arg("-c")
            .arg(script)
            .output()
        {
            Ok(o) if o.status.success() => {
                let s = String::from_utf8_lossy(&o.stdout).trim().to_string();
                if s.is_empty() {
                    return Err(format!("{py}: no `onnxruntime` package installed"));
                }
                return Ok(PathBuf::from(s));
            }
            Ok(o) => last = format!("{py}: exited with {}", o.status),
            Err(e) => last = format!("{py}: {e}"),
        }
    }
    Err(last)
}

/// Directories where pip / conda / system packages commonly put the library (without Python).
fn common_dirs() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(v) = std::env::var_os(var) {
            roots.push(PathBuf::from(v).join("lib"));
        }
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if let Some(h) = &home {
        roots.push(h.join(".local/lib"));
        for v in subdirs(&h.join(".pyenv/versions"), "") {
            roots.push(v.join("lib"));
        }
        roots.push(h.join("miniconda3/lib"));
        roots.push(h.join("anaconda3/lib"));
    }
    for r in [
        "/usr/local/lib",
        "/usr/lib",
        "/usr/lib64",
        "/opt/conda/lib",
        "/opt/venv/lib",
    ] {
        roots.push(PathBuf::from(r));
    }
    let mut dirs = Vec::new();
    for root in &roots {
        for py in subdirs(root, "python3").into_iter().rev() {
            for pk in ["site-packages", "dist-packages"] {
                dirs.push(py.join(pk).join("onnxruntime").join("capi"));
            }
        }
    }
    // Plain system installs of the C library.
    for d in [
        "/usr/local/lib",
        "/usr/lib",
        "/usr/lib64",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
    ] {
        dirs.push(PathBuf::from(d));
    }
    dirs
}

/// Find the onnxruntime shared library: `explicit` (`--ort-lib`), else env `ORT_DYLIB_PATH`, else
/// the `capi/` folder of an installed Python `onnxruntime` package (asking `python3`), else common
/// site-packages and system library folders.
pub fn find_ort_library(explicit: Option<&Path>) -> OrtLibrary {
    let mut tried = Vec::new();
    if let Some(p) = explicit {
        if p.is_file() {
            return OrtLibrary::Found {
                path: p.to_path_buf(),
                how: "--ort-lib".into(),
            };
        }
        if p.is_dir() {
            if let Some(l) = lib_in_dir(p) {
                return OrtLibrary::Found {
                    path: l,
                    how: "--ort-lib (folder)".into(),
                };
            }
        }
        tried.push(format!("--ort-lib {}: no such library file", p.display()));
        return OrtLibrary::NotFound { tried };
    }
    match std::env::var_os("ORT_DYLIB_PATH") {
        Some(v) if !v.is_empty() => {
            let p = PathBuf::from(&v);
            if p.is_file() {
                return OrtLibrary::Found {
                    path: p,
                    how: "ORT_DYLIB_PATH".into(),
                };
            }
            tried.push(format!("ORT_DYLIB_PATH={}: no such file", p.display()));
        }
        _ => tried.push("ORT_DYLIB_PATH: not set".into()),
    }
    match python_package_dir() {
        Ok(d) => {
            let capi = d.join("capi");
            if let Some(l) = lib_in_dir(&capi) {
                return OrtLibrary::Found {
                    path: l,
                    how: "python3 onnxruntime package".into(),
                };
            }
            tried.push(format!("{}: no libonnxruntime", capi.display()));
        }
        Err(e) => tried.push(e),
    }
    let dirs = common_dirs();
    for d in &dirs {
        if let Some(l) = lib_in_dir(d) {
            return OrtLibrary::Found {
                path: l,
                how: format!("search path {}", d.display()),
            };
        }
    }
    tried.push(format!(
        "{} common site-packages/system library folders",
        dirs.len()
    ));
    OrtLibrary::NotFound { tried }
}

/// The process-wide onnxruntime environment and the library it was loaded from.
struct OrtState {
    env: Environment,
    path: PathBuf,
}

static ORT: Mutex<Option<OrtState>> = Mutex::new(None);

/// Initialise onnxruntime from `lib` unless this process already did (onnxruntime can be loaded
/// once per process). Returns the environment and the library actually in use.
pub(crate) fn ensure_init(lib: &Path) -> Result<(Environment, PathBuf), VerifyError> {
    let mut g = ORT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = g.as_ref() {
        return Ok((s.env.clone(), s.path.clone()));
    }
    let load_err = |message: String| VerifyError::OrtLoad {
        path: lib.to_path_buf(),
        message,
    };
    let env = catch_unwind(AssertUnwindSafe(|| -> Result<Environment, VerifyError> {
        ort::init_from(lib)
            .map_err(|e| load_err(e.to_string()))?
            .with_name("onnx-normopt-verify")
            .with_telemetry(false)
            .build()
            .map_err(|e| load_err(e.to_string()))
    }))
    .unwrap_or_else(|p| Err(load_err(super::panic_message(p))))?;
    *g = Some(OrtState {
        env: env.clone(),
        path: lib.to_path_buf(),
    });
    Ok((env, lib.to_path_buf()))
}

/// The library onnxruntime was loaded from in this process, if it was.
pub(crate) fn loaded_library() -> Option<PathBuf> {
    ORT.lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|s| s.path.clone())
}

/// onnxruntime's element type for an ONNX `data_type` code (`None`: one it cannot hold).
pub(crate) fn ort_element_type(elem_type: i32) -> Option<TensorElementType> {
    Some(match elem_type {
        dt::FLOAT => TensorElementType::Float32,
        dt::FLOAT16 => TensorElementType::Float16,
        dt::BFLOAT16 => TensorElementType::Bfloat16,
        dt::DOUBLE => TensorElementType::Float64,
        dt::INT8 => TensorElementType::Int8,
        dt::INT16 => TensorElementType::Int16,
        dt::INT32 => TensorElementType::Int32,
        dt::INT64 => TensorElementType::Int64,
        dt::UINT8 => TensorElementType::Uint8,
        dt::UINT16 => TensorElementType::Uint16,
        dt::UINT32 => TensorElementType::Uint32,
        dt::UINT64 => TensorElementType::Uint64,
        dt::BOOL => TensorElementType::Bool,
        _ => return None,
    })
}

fn onnx_type(t: TensorElementType) -> Option<i32> {
    Some(match t {
        TensorElementType::Float32 => dt::FLOAT,
        TensorElementType::Float16 => dt::FLOAT16,
        TensorElementType::Bfloat16 => dt::BFLOAT16,
        TensorElementType::Float64 => dt::DOUBLE,
        TensorElementType::Int8 => dt::INT8,
        TensorElementType::Int16 => dt::INT16,
        TensorElementType::Int32 => dt::INT32,
        TensorElementType::Int64 => dt::INT64,
        TensorElementType::Uint8 => dt::UINT8,
        TensorElementType::Uint16 => dt::UINT16,
        TensorElementType::Uint32 => dt::UINT32,
        TensorElementType::Uint64 => dt::UINT64,
        TensorElementType::Bool => dt::BOOL,
        _ => return None,
    })
}

/// A float tensor as an onnxruntime value over memory the value owns (what `AddInitializer`
/// requires; an allocator's tensor is refused).
fn owned_tensor(t: &HostTensor) -> Result<DynValue, String> {
    use half::{bf16, f16};
    let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
    let le = |w: usize| t.data.chunks_exact(w);
    let e = |e: ort::Error| format!("initializer `{}`: {e}", t.name);
    Ok(match t.elem_type {
        dt::FLOAT => {
            let v: Vec<f32> = le(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Tensor::from_array((shape, v)).map_err(e)?.into_dyn()
        }
        dt::DOUBLE => {
            let v: Vec<f64> = le(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect();
            Tensor::from_array((shape, v)).map_err(e)?.into_dyn()
        }
        dt::FLOAT16 => {
            let v: Vec<f16> = le(2).map(|c| f16::from_le_bytes([c[0], c[1]])).collect();
            Tensor::from_array((shape, v)).map_err(e)?.into_dyn()
        }
        dt::BFLOAT16 => {
            let v: Vec<bf16> = le(2).map(|c| bf16::from_le_bytes([c[0], c[1]])).collect();
            Tensor::from_array((shape, v)).map_err(e)?.into_dyn()
        }
        other => {
            return Err(format!(
                "initializer `{}`: not a float type ({})",
                t.name,
                dt::name(other)
            ))
        }
    })
}

impl HostTensor {
    /// This tensor as an onnxruntime tensor in CPU memory (its bytes copied once).
    pub fn to_ort(&self, allocator: &Allocator) -> Result<DynTensor, String> {
        let ty = ort_element_type(self.elem_type).ok_or_else(|| {
            format!(
                "input `{}`: unsupported element type {}",
                self.name,
                dt::name(self.elem_type)
            )
        })?;
        let mut v =
            DynTensor::new(allocator, ty, self.shape.as_slice()).map_err(|e| e.to_string())?;
        if !self.data.is_empty() {
            let p = v.data_ptr_mut().cast::<u8>();
            // SAFETY: the tensor was just allocated on the CPU with `self.shape` elements of
            // `ty`, i.e. exactly `self.data.len()` bytes (checked by the generator).
            unsafe { std::ptr::copy_nonoverlapping(self.data.as_ptr(), p, self.data.len()) };
        }
        Ok(v)
    }
}

/// An onnxruntime session for one model.
pub(crate) struct OrtModel {
    path: PathBuf,
    session: Session,
    output_names: Vec<String>,
}

impl OrtModel {
    /// Create a session for `path` (optimisations off unless `optimize`).
    pub fn load(
        env: &Environment,
        lib: &Path,
        path: &Path,
        optimize: bool,
        device: OrtDevice,
    ) -> Result<OrtModel, VerifyError> {
        Self::load_source(env, lib, ModelSource::File(path), optimize, device, &[])
    }

    /// [`OrtModel::load`] with some initializers of the file replaced by `initializers` (by
    /// name; onnxruntime's `AddInitializer`): the original with nudged weights, for the
    /// quantized models' sensitivity floor.
    pub fn load_with(
        env: &Environment,
        lib: &Path,
        path: &Path,
        optimize: bool,
        device: OrtDevice,
        initializers: &[HostTensor],
    ) -> Result<OrtModel, VerifyError> {
        Self::load_source(
            env,
            lib,
            ModelSource::File(path),
            optimize,
            device,
            initializers,
        )
    }

    /// Create a session for a model file or an encoded model in memory (whose external data
    /// onnxruntime then reads from the source's folder: the session option
    /// `session.model_external_initializers_file_folder_path`), with `initializers` replacing
    /// the model's of the same names.
    pub fn load_source(
        env: &Environment,
        lib: &Path,
        source: ModelSource,
        optimize: bool,
        device: OrtDevice,
        initializers: &[HostTensor],
    ) -> Result<OrtModel, VerifyError> {
        let path = source.label();
        let err = |message: String| VerifyError::Ort {
            stage: "load",
            path: path.clone(),
            message,
        };
        let r = catch_unwind(AssertUnwindSafe(|| -> Result<OrtModel, VerifyError> {
            let level = if optimize {
                GraphOptimizationLevel::All
            } else {
                GraphOptimizationLevel::Disable
            };
            // Without prepacking the session holds its weights once (with it, a second, packed
            // copy of every matrix: 1.6 bytes per byte of weights measured instead of 1.0);
            // verification runs each model a few times only.
            let mut b = Session::builder(env)
                .map_err(|e| err(e.to_string()))?
                .with_optimization_level(level)
                .map_err(|e| err(e.to_string()))?
                .with_log_level(ort::logging::LogLevel::Fatal)
                .map_err(|e| err(e.to_string()))?
                .with_prepacking(false)
                .map_err(|e| err(e.to_string()))?;
            if device == OrtDevice::Cuda {
                b = with_cuda(b, lib)?;
            }
            for t in initializers {
                b = b
                    .with_initializer(&t.name, owned_tensor(t).map_err(err)?)
                    .map_err(|e| err(e.to_string()))?;
            }
            let session = match source {
                ModelSource::File(p) => b.commit_from_file(p),
                ModelSource::Bytes { bytes, dir, .. } => b
                    .with_config_entry(
                        "session.model_external_initializers_file_folder_path",
                        dir.to_string_lossy(),
                    )
                    .map_err(|e| err(e.to_string()))?
                    .commit_from_memory(bytes),
            }
            .map_err(|e| err(e.to_string()))?;
            let output_names = session
                .outputs()
                .iter()
                .map(|o| o.name().to_string())
                .collect();
            Ok(OrtModel {
                path: path.clone(),
                session,
                output_names,
            })
        }));
        r.unwrap_or_else(|p| Err(err(super::panic_message(p))))
    }

    /// Run one sample (inputs fed by name); outputs in graph output order.
    pub fn run(&mut self, sample: &[HostTensor]) -> Result<Vec<HostTensor>, VerifyError> {
        let path = self.path.clone();
        let err = |message: String| VerifyError::Ort {
            stage: "run",
            path: path.clone(),
            message,
        };
        let r = catch_unwind(AssertUnwindSafe(
            || -> Result<Vec<HostTensor>, VerifyError> {
                let allocator = Allocator::default();
                let mut inputs: Vec<(String, DynTensor)> = Vec::with_capacity(sample.len());
                for t in sample {
                    inputs.push((t.name.clone(), t.to_ort(&allocator).map_err(err)?));
                }
                let outputs = self.session.run(inputs).map_err(|e| err(e.to_string()))?;
                let mut result = Vec::with_capacity(self.output_names.len());
                for name in &self.output_names {
                    let v = outputs
                        .get(name)
                        .ok_or_else(|| err(format!("onnxruntime returned no output `{name}`")))?;
                    let t = v
                        .view()
                        .downcast::<DynTensorValueType>()
                        .map_err(|e| err(format!("output `{name}` is not a tensor: {e}")))?;
                    let (ty, shape) = match t.dtype() {
                        ValueType::Tensor { ty, shape, .. } => (*ty, shape.to_vec()),
                        other => {
                            return Err(err(format!("output `{name}` is not a tensor: {other}")))
                        }
                    };
                    let elem_type = onnx_type(ty).ok_or_else(|| {
                        err(format!(
                            "output `{name}` has type {ty}, which cannot be compared"
                        ))
                    })?;
                    let shape: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
                    let n: usize = shape.iter().product();
                    let bytes = n * dt::byte_size(elem_type).unwrap_or(0);
                    let data = if bytes == 0 {
                        Vec::new()
                    } else {
                        if !t.memory_info().is_cpu_accessible() {
                            return Err(err(format!("output `{name}` is not in CPU memory")));
                        }
                        let p = t.data_ptr().cast::<u8>();
                        // SAFETY: a CPU-accessible tensor of `n` elements of `ty` is `bytes` long.
                        unsafe { std::slice::from_raw_parts(p, bytes) }.to_vec()
                    };
                    result.push(HostTensor {
                        name: name.clone(),
                        elem_type,
                        shape,
                        data,
                    });
                }
                Ok(result)
            },
        ));
        r.unwrap_or_else(|p| Err(err(super::panic_message(p))))
    }
}

#[cfg(feature = "cuda")]
fn with_cuda(
    b: ort::session::builder::SessionBuilder,
    lib: &Path,
) -> Result<ort::session::builder::SessionBuilder, VerifyError> {
    use ort::ep::ExecutionProvider;
    let unavailable = |message: String| VerifyError::CudaUnavailable {
        path: lib.to_path_buf(),
        message,
    };
    match ort::ep::CUDA::is_available() {
        Ok(true) => {}
        Ok(false) => {
            return Err(unavailable(
                "it was built without the CUDA execution provider".into(),
            ))
        }
        Err(e) => return Err(unavailable(e.to_string())),
    }
    b.with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
        .map_err(|e| unavailable(e.to_string()))
}

#[cfg(not(feature = "cuda"))]
fn with_cuda(
    _b: ort::session::builder::SessionBuilder,
    _lib: &Path,
) -> Result<ort::session::builder::SessionBuilder, VerifyError> {
    Err(VerifyError::CudaNotBuilt)
}
