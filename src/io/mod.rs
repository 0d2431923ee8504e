//! Model I/O: decode a file (memory-mapped, external data resolved lazily and safely), encode it
//! back atomically.
//!
//! Invariants:
//! - the input is only ever opened read-only and mapped, never written;
//! - an external-data `location` must be a relative path inside the model's folder (no absolute
//!   path, no `..`), and `offset + length` must lie inside that file: checked when the model is
//!   loaded, before any byte of it is used;
//! - the output is written to a temporary file in the destination folder and renamed into place
//!   only once complete, so a failure never leaves a partial output.

mod external;
mod write;

pub use external::*;
pub use write::*;

use crate::error::{Error, Result};
use crate::proto::{data_location, GraphProto, ModelProto, StringStringEntryProto, TensorProto};
use bytes::Bytes;
use memmap2::Mmap;
use prost::Message;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A decoded model file and the means to read its external data.
#[derive(Debug)]
pub struct ModelFile {
    /// The decoded protobuf, exactly as in the file.
    pub proto: ModelProto,
    /// The file it came from.
    pub path: PathBuf,
    /// Resolves external tensor data.
    pub store: Arc<ExternalStore>,
    /// Whether any tensor used external data.
    pub had_external_data: bool,
    /// Size of the model file in bytes.
    pub file_size: u64,
}

/// Read and decode `path`. Fails with [`Error::Read`] for a missing/unreadable file or a
/// directory, [`Error::NotOnnx`] for bytes that are not a model, [`Error::Invalid`] for an
/// external-data reference that escapes the folder or the file.
pub fn load(path: &Path) -> Result<ModelFile> {
    let meta = std::fs::metadata(path).map_err(|e| Error::Read {
        path: path.into(),
        reason: e.to_string(),
    })?;
    if meta.is_dir() {
        return Err(Error::Read {
            path: path.into(),
            reason: "is a directory".into(),
        });
    }
    if meta.len() == 0 {
        return Err(Error::NotOnnx {
            path: path.into(),
            reason: "the file is empty".into(),
        });
    }
    let file = std::fs::File::open(path).map_err(|e| Error::Read {
        path: path.into(),
        reason: e.to_string(),
    })?;
    // SAFETY: read-only map of the input; see ExternalStore::map.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::Read {
        path: path.into(),
        reason: e.to_string(),
    })?;
    let map = Arc::new(map);
    let bytes = Bytes::from_owner(MapSlice {
        start: 0,
        end: map.len(),
        map: map.clone(),
    });
    let proto = ModelProto::decode(bytes).map_err(|e| Error::NotOnnx {
        path: path.into(),
        reason: format!("protobuf decode failed ({})", short_decode_error(&e)),
    })?;
    if proto.graph.is_none() {
        return Err(Error::NotOnnx {
            path: path.into(),
            reason: "no graph in the model".into(),
        });
    }
    if proto.ir_version.is_none() && proto.opset_import.is_empty() {
        return Err(Error::NotOnnx {
            path: path.into(),
            reason: "no ir_version and no opset_import".into(),
        });
    }
    let store = ExternalStore::new(path);
    if let Ok(mut m) = store.model_map.lock() {
        *m = Some(map);
    }
    let store = Arc::new(store);
    let mut had_external_data = false;
    let mut err = None;
    for_each_tensor(&proto, &mut |t| {
        if err.is_some() {
            return;
        }
        let external = if is_external(t) {
            had_external_data = true;
            match store.check(t) {
                Ok(r) => Some(r.length),
                Err(e) => {
                    err = Some(e);
                    return;
                }
            }
        } else {
            None
        };
        if let Err(why) = check_payload(t, external) {
            err = Some(Error::invalid(
                path,
                format!("tensor {:?}: {why}", t.name.as_deref().unwrap_or("")),
            ));
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    Ok(ModelFile {
        proto,
        path: path.to_path_buf(),
        store,
        had_external_data,
        file_size: meta.len(),
    })
}

/// prost names every message on the path to a decode error; deep nesting makes that line
/// kilobytes long. Keep the head and the last few steps.
fn short_decode_error(e: &prost::DecodeError) -> String {
    let s = e.to_string();
    let parts: Vec<&str> = s.split(": ").collect();
    if parts.len() <= 6 {
        return s;
    }
    format!("{}: …: {}", parts[0], parts[parts.len() - 3..].join(": "))
}

/// Check that a tensor holds exactly the payload its dims and data type describe, without
/// reading it: `raw_data` (or the external length) in bytes, or the count of typed values.
/// Everything sized from a tensor's dims is then bounded by the file. Types whose size is not
/// known here (undefined, newer than this tool) and segmented tensors are left to the reader.
fn check_payload(t: &TensorProto, external_len: Option<u64>) -> std::result::Result<(), String> {
    use crate::proto::data_type as dt;
    if t.segment.is_some() {
        return Ok(());
    }
    let count = crate::tensor::element_count(&t.dims)? as u64;
    let data_type = t.data_type.unwrap_or(dt::UNDEFINED);
    // Bytes in raw form (sub-byte types are packed), and values in the typed fields.
    let (bytes, values) = match data_type {
        21..=23 => (Some(count.div_ceil(2)), count.div_ceil(2)),
        25 | 26 => (Some(count.div_ceil(4)), count.div_ceil(4)),
        dt::COMPLEX64 | dt::COMPLEX128 => (
            dt::byte_size(data_type).and_then(|s| count.checked_mul(s as u64)),
            count.saturating_mul(2),
        ),
        dt::STRING => (None, count),
        t if (1..=dt::MAX_KNOWN).contains(&t) => (
            dt::byte_size(t).and_then(|s| count.checked_mul(s as u64)),
            count,
        ),
        _ => return Ok(()),
    };
    let have = match (external_len, &t.raw_data) {
        (Some(len), _) => Some(len),
        (None, Some(raw)) => Some(raw.len() as u64),
        (None, None) => None,
    };
    match (have, bytes) {
        (Some(have), Some(need)) if have != need => Err(format!(
            "{} data has {have} bytes, its dims {:?} of {} need {need}",
            if external_len.is_some() {
                "external"
            } else {
                "raw"
            },
            t.dims,
            dt::name(data_type)
        )),
        (Some(_), _) => Ok(()),
        (None, _) => {
            let typed = t.float_data.len()
                + t.int32_data.len()
                + t.string_data.len()
                + t.int64_data.len()
                + t.double_data.len()
                + t.uint64_data.len();
            if typed as u64 != values {
                Err(format!(
                    "holds {typed} values, its dims {:?} of {} need {values}",
                    t.dims,
                    dt::name(data_type)
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// Visit every tensor of the model: initializers and Constant/attribute tensors, in the main
/// graph, subgraphs, training graphs and functions.
pub fn for_each_tensor(m: &ModelProto, f: &mut dyn FnMut(&TensorProto)) {
    fn graph(g: &GraphProto, f: &mut dyn FnMut(&TensorProto)) {
        g.initializer.iter().for_each(&mut *f);
        for s in &g.sparse_initializer {
            s.values.iter().chain(s.indices.iter()).for_each(&mut *f);
        }
        for n in &g.node {
            nodes_attrs(std::slice::from_ref(n), f);
        }
    }
    fn nodes_attrs(nodes: &[crate::proto::NodeProto], f: &mut dyn FnMut(&TensorProto)) {
        for n in nodes {
            for a in &n.attribute {
                a.t.iter().chain(a.tensors.iter()).for_each(&mut *f);
                a.g.iter().chain(a.graphs.iter()).for_each(|g| graph(g, f));
            }
        }
    }
    if let Some(g) = &m.graph {
        graph(g, f);
    }
    for t in &m.training_info {
        t.initialization
            .iter()
            .chain(t.algorithm.iter())
            .for_each(|g| graph(g, f));
    }
    for func in &m.functions {
        nodes_attrs(&func.node, f);
    }
}

/// Visit every tensor of the model mutably (same coverage as [`for_each_tensor`]).
pub fn for_each_tensor_mut(m: &mut ModelProto, f: &mut dyn FnMut(&mut TensorProto)) {
    fn graph(g: &mut GraphProto, f: &mut dyn FnMut(&mut TensorProto)) {
        g.initializer.iter_mut().for_each(&mut *f);
        for s in &mut g.sparse_initializer {
            s.values
                .iter_mut()
                .chain(s.indices.iter_mut())
                .for_each(&mut *f);
        }
        nodes_attrs(&mut g.node, f);
    }
    fn nodes_attrs(nodes: &mut [crate::proto::NodeProto], f: &mut dyn FnMut(&mut TensorProto)) {
        for n in nodes {
            for a in &mut n.attribute {
                a.t.iter_mut().chain(a.tensors.iter_mut()).for_each(&mut *f);
                a.g.iter_mut()
                    .chain(a.graphs.iter_mut())
                    .for_each(|g| graph(g, f));
            }
        }
    }
    if let Some(g) = &mut m.graph {
        graph(g, f);
    }
    for t in &mut m.training_info {
        t.initialization
            .iter_mut()
            .chain(t.algorithm.iter_mut())
            .for_each(|g| graph(g, f));
    }
    for func in &mut m.functions {
        nodes_attrs(&mut func.node, f);
    }
}
