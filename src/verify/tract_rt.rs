//! Running a model in tract, in process.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use tract_onnx::prelude::*;

use super::source::ModelSource;
use super::tensor::HostTensor;
use super::VerifyError;
use crate::proto::data_type as dt;

/// The tract ONNX loader with every extra operator registration this crate needs.
///
/// tract 0.23.9 already understands most operators the rewrite emits in the ONNX and
/// `com.microsoft` domains (`SimplifiedLayerNormalization`, `RMSNormalization`,
/// `SkipLayerNormalization`, ...). Its `SkipSimplifiedLayerNormalization` ignores the optional
/// `bias` input, which onnxruntime adds, so that builder is replaced here by one that adds it.
///
/// It also registers this crate's own op, `ai.onnx_normopt:CRMSNormalization` (written by
/// `--target crmsnorm --emit custom`), as one fused tract operator,
/// [`CrmsNormalization`](crate::ops::CrmsNormalization), which stays one node through
/// `into_optimized()`. Load rewritten models in a tract pipeline with it:
///
/// ```no_run
/// use tract_onnx::prelude::*;
/// let model = onnx_normopt::tract_onnx_with_extensions()
///     .model_for_path("vit_crms_custom.onnx")?
///     .into_optimized()?
///     .into_runnable()?;
/// # Ok::<(), TractError>(())
/// ```
///
/// tract looks operators up by `op_type` alone (the node's domain is not consulted), so a custom
/// operator of this crate's own domain is registered in `tract_ext::register` with
/// `onnx.op_register.insert("OpType", builder)` — the one place to do it; verification and any
/// other in-process use load models through this function. onnxruntime's fused operators are
/// registered by `tract_ms::register`.
pub fn tract_onnx_with_extensions() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    super::tract_ext::register(&mut onnx);
    super::tract_ms::register(&mut onnx);
    onnx
}

/// tract's reader of external tensor data: reads exactly the tensor's byte range (tract's own
/// default maps the whole data file for every tensor, which reserves the file's size in address
/// space each time: a multi-GB data file under the verifier's `RLIMIT_AS` would not load).
struct RangeReader;

impl tract_onnx::data_resolver::ModelDataResolver for RangeReader {
    fn read_bytes_from_path(
        &self,
        buf: &mut Vec<u8>,
        p: &Path,
        offset: usize,
        length: Option<usize>,
    ) -> TractResult<()> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file =
            std::fs::File::open(p).map_err(|e| TractError::msg(format!("Opening {p:?}: {e}")))?;
        let size = file.metadata()?.len() as usize;
        let end = match length {
            Some(l) => offset.saturating_add(l),
            None => size,
        };
        if offset > end || end > size {
            return Err(TractError::msg(format!(
                "external data range {offset}..{end} is out of bounds ({size} bytes)"
            )));
        }
        let start = buf.len();
        buf.resize(start + (end - offset), 0);
        file.seek(SeekFrom::Start(offset as u64))?;
        file.read_exact(&mut buf[start..])?;
        Ok(())
    }
}

/// tract's datum type for an ONNX `data_type` code (`None`: one tract cannot hold).
pub(crate) fn tract_datum_type(elem_type: i32) -> Option<DatumType> {
    Some(match elem_type {
        dt::FLOAT => DatumType::F32,
        dt::FLOAT16 => DatumType::F16,
        dt::DOUBLE => DatumType::F64,
        dt::INT8 => DatumType::I8,
        dt::INT16 => DatumType::I16,
        dt::INT32 => DatumType::I32,
        dt::INT64 => DatumType::I64,
        dt::UINT8 => DatumType::U8,
        dt::UINT16 => DatumType::U16,
        dt::UINT32 => DatumType::U32,
        dt::UINT64 => DatumType::U64,
        dt::BOOL => DatumType::Bool,
        _ => return None,
    })
}

fn datum_type(path: &Path, name: &str, elem_type: i32) -> Result<DatumType, VerifyError> {
    tract_datum_type(elem_type).ok_or_else(|| VerifyError::Tract {
        stage: "load",
        path: path.to_path_buf(),
        message: format!(
            "input `{name}` has element type {}, which tract does not support \
             (use --runtime ort)",
            dt::name(elem_type)
        ),
    })
}

/// `t`'s bytes as a tract tensor of type `dt`.
fn raw_tensor(dt: DatumType, t: &HostTensor) -> TractResult<Tensor> {
    // SAFETY: `dt` is a plain-old-data type and `t.data` holds exactly `len * size_of(dt)`
    // little-endian bytes, which is tract's in-memory layout (booleans are one byte, 0 or 1).
    unsafe { Tensor::from_raw_dt(dt, &t.shape, &t.data) }
}

impl HostTensor {
    /// This tensor as a tract tensor (its bytes copied once).
    pub fn to_tract(&self) -> Result<Tensor, String> {
        let dt = tract_datum_type(self.elem_type).ok_or_else(|| {
            format!(
                "input `{}`: element type {} is not supported by tract",
                self.name,
                dt::name(self.elem_type)
            )
        })?;
        raw_tensor(dt, self).map_err(|e| format!("{e:#}"))
    }
}

fn onnx_type(d: DatumType) -> Option<i32> {
    Some(match d {
        DatumType::F32 => dt::FLOAT,
        DatumType::F16 => dt::FLOAT16,
        DatumType::F64 => dt::DOUBLE,
        DatumType::I8 => dt::INT8,
        DatumType::I16 => dt::INT16,
        DatumType::I32 => dt::INT32,
        DatumType::I64 => dt::INT64,
        DatumType::U8 => dt::UINT8,
        DatumType::U16 => dt::UINT16,
        DatumType::U32 => dt::UINT32,
        DatumType::U64 => dt::UINT64,
        DatumType::Bool => dt::BOOL,
        _ => return None,
    })
}

/// Replace every top-level `If` whose condition is known (from `known`: boolean graph inputs
/// with one value, carried through `Identity`, `Not`, `Cast` to bool and shape-only ops) by the
/// nodes of the branch it takes: the branch's initializers move to the graph, and each branch
/// output is copied to the `If`'s output by an `Identity` (unless it already has that name).
/// Nodes stay in order, so the graph stays topologically sorted.
pub(crate) fn inline_decided_ifs(
    graph: &mut tract_onnx::pb::GraphProto,
    mut known: std::collections::HashMap<String, bool>,
) -> usize {
    use tract_onnx::pb::NodeProto;
    let mut inlined = 0;
    let nodes = std::mem::take(&mut graph.node);
    let mut out: Vec<NodeProto> = Vec::with_capacity(nodes.len());
    for n in nodes {
        let first = n.input.first().and_then(|i| known.get(i)).copied();
        let plain = n.domain.is_empty() || n.domain == "ai.onnx";
        match (plain, n.op_type.as_str(), first) {
            (
                true,
                "Identity" | "Squeeze" | "Unsqueeze" | "Reshape" | "Flatten" | "Expand",
                Some(v),
            )
            | (true, "Cast", Some(v)) => {
                let to_bool =
                    n.op_type != "Cast" || n.attribute.iter().any(|a| a.name == "to" && a.i == 9);
                if to_bool {
                    if let Some(o) = n.output.first() {
                        known.insert(o.clone(), v);
                    }
                }
                out.push(n);
            }
            (true, "Not", Some(v)) => {
                if let Some(o) = n.output.first() {
                    known.insert(o.clone(), !v);
                }
                out.push(n);
            }
            (true, "If", Some(v)) => {
                let which = if v { "then_branch" } else { "else_branch" };
                let Some(branch) = n
                    .attribute
                    .iter()
                    .find(|a| a.name == which)
                    .and_then(|a| a.g.clone())
                else {
                    out.push(n);
                    continue;
                };
                if branch.output.len() != n.output.len() {
                    out.push(n);
                    continue;
                }
                graph.initializer.extend(branch.initializer);
                out.extend(branch.node);
                for (k, (bo, io)) in branch.output.iter().zip(&n.output).enumerate() {
                    if io.is_empty() || &bo.name == io {
                        continue;
                    }
                    out.push(NodeProto {
                        name: format!("{}.branch_output_{k}", n.name),
                        op_type: "Identity".into(),
                        input: vec![bo.name.clone()],
                        output: vec![io.clone()],
                        ..NodeProto::default()
                    });
                }
                inlined += 1;
            }
            _ => out.push(n),
        }
    }
    graph.node = out;
    inlined
}

/// A model loaded and optimised by tract for the input types and shapes of one sample (see
/// [`tract_plan`](super::tract_plan)).
pub struct TractModel {
    path: std::path::PathBuf,
    /// The optimised, runnable plan.
    pub plan: std::sync::Arc<TypedRunnableModel>,
    /// For each plan input (in tract's order), the index of its tensor in the sample.
    pub feed: Vec<usize>,
}

impl TractModel {
    /// Load `path` and optimise it for the types and shapes of `sample`.
    ///
    /// First with every input fixed to its concrete shape and the graph's `value_info` ignored
    /// (its symbols, such as `seq`, would clash with the concrete sizes); if tract cannot analyse
    /// or optimise that, again with the graph's declared input facts (symbolic dims stay
    /// symbols, `value_info` is used), fixing only the inputs in `concrete` (those whose declared
    /// shape is missing or partly unknown). Concrete shapes avoid tract's symbolic reasoning,
    /// which mis-broadcasts some attention masks (bloom, falcon, gpt-j: "Can not broadcast 8
    /// against 2" at run time).
    ///
    /// Inputs named in `fixed` (the boolean flags that choose an `If` branch) have their value in
    /// `sample` taken as given: every top-level `If` they decide is replaced by the chosen branch
    /// before tract parses the graph ([`inline_decided_ifs`]). tract requires both branches of an
    /// `If` to produce outputs of the same shape, and a merged decoder's branches do not (its
    /// cache branch returns past+seq positions, the other seq).
    pub(crate) fn load(
        source: ModelSource,
        sample: &[HostTensor],
        concrete: &HashSet<String>,
        fixed: &HashSet<String>,
    ) -> Result<TractModel, VerifyError> {
        match Self::load_with(source, sample, None, fixed) {
            Ok(m) => Ok(m),
            Err(first) => match Self::load_with(source, sample, Some(concrete), fixed) {
                Ok(m) => Ok(m),
                Err(VerifyError::Tract { message, .. }) => match first {
                    VerifyError::Tract {
                        stage,
                        path,
                        message: m1,
                    } => Err(VerifyError::Tract {
                        stage,
                        path,
                        message: format!("{m1} (and with symbolic input shapes: {message})"),
                    }),
                    other => Err(other),
                },
                Err(_) => Err(first),
            },
        }
    }

    /// One loading attempt: `concrete` is `Some(inputs to fix)` for the declared-facts mode,
    /// `None` to fix every input.
    fn load_with(
        source: ModelSource,
        sample: &[HostTensor],
        concrete: Option<&HashSet<String>>,
        fixed: &HashSet<String>,
    ) -> Result<TractModel, VerifyError> {
        let path = source.label();
        let err = |stage: &'static str, message: String| VerifyError::Tract {
            stage,
            path: path.clone(),
            message,
        };
        let r = catch_unwind(AssertUnwindSafe(|| -> Result<TractModel, VerifyError> {
            let mut onnx = tract_onnx_with_extensions();
            onnx.ignore_value_info = concrete.is_none();
            onnx.provider = std::sync::Arc::new(RangeReader);
            let mut proto = match source {
                ModelSource::File(p) => onnx.proto_model_for_path(p),
                ModelSource::Bytes { mut bytes, .. } => onnx.proto_model_for_read(&mut bytes),
            }
            .map_err(|e| err("load", format!("{e:#}")))?;
            if !fixed.is_empty() {
                let mut known = std::collections::HashMap::new();
                for t in sample.iter().filter(|t| fixed.contains(&t.name)) {
                    if let Some(&b) = t.data.first() {
                        if t.data.iter().all(|&x| (x != 0) == (b != 0)) {
                            known.insert(t.name.clone(), b != 0);
                        }
                    }
                }
                if let Some(g) = proto.graph.as_mut() {
                    inline_decided_ifs(g, known);
                }
            }
            let dir = source.data_dir();
            let parsed = onnx
                .parse(&proto, dir.to_str())
                .map_err(|e| err("load", format!("{e:#}")))?;
            if !parsed.unresolved_inputs.is_empty() {
                return Err(err(
                    "load",
                    format!(
                        "could not resolve inputs at top level: {:?}",
                        parsed.unresolved_inputs
                    ),
                ));
            }
            let mut model = parsed.model;
            let outlets = model
                .input_outlets()
                .map_err(|e| err("load", format!("{e:#}")))?
                .to_vec();
            let mut feed = Vec::with_capacity(outlets.len());
            for (ix, o) in outlets.iter().enumerate() {
                let name = model.node(o.node).name.clone();
                let si = sample.iter().position(|t| t.name == name).ok_or_else(|| {
                    err(
                        "load",
                        format!("tract sees an input `{name}` that the graph does not declare"),
                    )
                })?;
                let t = &sample[si];
                if concrete.is_none_or(|c| c.contains(&name)) {
                    let dt = datum_type(&path, &t.name, t.elem_type)?;
                    model
                        .set_input_fact(ix, InferenceFact::dt_shape(dt, &t.shape))
                        .map_err(|e| err("load", format!("{e:#}")))?;
                }
                feed.push(si);
            }
            let plan = model
                .into_optimized()
                .map_err(|e| err("optimise", format!("{e:#}")))?
                .into_runnable()
                .map_err(|e| err("prepare", format!("{e:#}")))?;
            Ok(TractModel {
                path: path.clone(),
                plan,
                feed,
            })
        }));
        r.unwrap_or_else(|p| Err(err("load", super::panic_message(p))))
    }

    /// Run one sample (tensors named like the graph inputs, in any order, as
    /// [`generate_inputs`](super::generate_inputs) makes them); outputs in graph output order,
    /// named `names`.
    pub fn run(
        &self,
        sample: &[HostTensor],
        names: &[String],
    ) -> Result<Vec<HostTensor>, VerifyError> {
        let err = |message: String| VerifyError::Tract {
            stage: "run",
            path: self.path.clone(),
            message,
        };
        let r = catch_unwind(AssertUnwindSafe(
            || -> Result<Vec<HostTensor>, VerifyError> {
                let mut inputs: TVec<TValue> = tvec![];
                for &si in &self.feed {
                    let t = &sample[si];
                    let dt = datum_type(&self.path, &t.name, t.elem_type)?;
                    let tensor = raw_tensor(dt, t).map_err(|e| err(format!("{e:#}")))?;
                    inputs.push(tensor.into_tvalue());
                }
                let outs = self.plan.run(inputs).map_err(|e| err(format!("{e:#}")))?;
                let mut result = Vec::with_capacity(outs.len());
                for (i, o) in outs.iter().enumerate() {
                    let name = names.get(i).cloned().unwrap_or_else(|| format!("#{i}"));
                    let t: std::borrow::Cow<Tensor> = if o.datum_type() == DatumType::TDim {
                        std::borrow::Cow::Owned(
                            o.cast_to_dt(DatumType::I64)
                                .map_err(|e| err(format!("{e:#}")))?
                                .into_owned(),
                        )
                    } else {
                        std::borrow::Cow::Borrowed(&**o)
                    };
                    let elem_type = onnx_type(t.datum_type()).ok_or_else(|| {
                        err(format!(
                            "output `{name}` has type {:?}, which cannot be compared",
                            t.datum_type()
                        ))
                    })?;
                    let size = dt::byte_size(elem_type).unwrap_or(1);
                    let bytes = t
                        .as_plain_ram_storage()
                        .ok_or_else(|| {
                            err(format!("output `{name}` is not stored in plain memory"))
                        })?
                        .as_bytes();
                    let data = bytes.get(..t.len() * size).unwrap_or(bytes).to_vec();
                    result.push(HostTensor {
                        name,
                        elem_type,
                        shape: t.shape().to_vec(),
                        data,
                    });
                }
                Ok(result)
            },
        ));
        r.unwrap_or_else(|p| Err(err(super::panic_message(p))))
    }
}
