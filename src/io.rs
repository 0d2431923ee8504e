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

use crate::error::{Error, Result};
use crate::proto::{data_location, GraphProto, ModelProto, StringStringEntryProto, TensorProto};
use bytes::Bytes;
use memmap2::Mmap;
use prost::Message;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where the byte payload of an external tensor lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalRef {
    /// The data file, relative to the model's folder.
    pub location: String,
    /// Byte offset in the data file.
    pub offset: u64,
    /// Byte length.
    pub length: u64,
}

/// Resolves external tensor data of one loaded model through read-only memory maps.
#[derive(Debug, Default)]
pub struct ExternalStore {
    dir: PathBuf,
    model_path: PathBuf,
    maps: Mutex<HashMap<String, Arc<Mmap>>>,
    /// The map of the model file itself (inline tensors point into it).
    model_map: Mutex<Option<Arc<Mmap>>>,
}

impl ExternalStore {
    /// A store for a model file (its folder is where data files are looked up).
    pub fn new(model_path: &Path) -> Self {
        let dir = model_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        ExternalStore {
            dir,
            model_path: model_path.to_path_buf(),
            maps: Mutex::default(),
            model_map: Mutex::default(),
        }
    }

    /// Tell the system that `slice`, a payload read from one of the input's maps, will not be
    /// read again soon: its pages leave this process's resident set (they stay in the page
    /// cache and are read back on the next access). Streaming a large model through the
    /// rewrite thus keeps only the tensors in flight resident. Slices of other memory are
    /// ignored.
    pub fn release(&self, slice: &[u8]) {
        let (p, n) = (slice.as_ptr() as usize, slice.len());
        let mut maps: Vec<Arc<Mmap>> = match self.maps.lock() {
            Ok(m) => m.values().cloned().collect(),
            Err(_) => return,
        };
        if let Ok(Some(m)) = self.model_map.lock().as_deref() {
            maps.push(m.clone());
        }
        for m in maps {
            let start = m.as_ptr() as usize;
            if p >= start && p + n <= start + m.len() && n > 0 {
                // SAFETY: a read-only, never written, file-backed map: MADV_DONTNEED only drops
                // resident pages, and a later read faults the same bytes back in from the file.
                // The map is alive (we hold an Arc to it).
                let _ = unsafe {
                    m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, p - start, n)
                };
                return;
            }
        }
    }

    fn map(&self, location: &str) -> Result<Arc<Mmap>> {
        let mut maps = self
            .maps
            .lock()
            .map_err(|_| Error::Internal("external store lock poisoned".into()))?;
        if let Some(m) = maps.get(location) {
            return Ok(m.clone());
        }
        let path = self.dir.join(location);
        let file = std::fs::File::open(&path).map_err(|e| {
            Error::invalid(
                &self.model_path,
                format!("external data file {location:?}: {e}"),
            )
        })?;
        // SAFETY: the map is read-only; we never write through it. If another process truncates
        // the file while we run, reads could fault: the same contract every mmap-based ONNX
        // loader has. Lengths are checked against the file size at load.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| {
            Error::invalid(&self.model_path, format!("cannot map {location:?}: {e}"))
        })?;
        let map = Arc::new(map);
        maps.insert(location.to_string(), map.clone());
        Ok(map)
    }

    /// Whether `p` is the input model or one of the data files its tensors reference (all
    /// are mapped at load), so that writing `p` would destroy the input.
    pub fn is_input_file(&self, p: &Path) -> bool {
        let Ok(p) = p.canonicalize() else {
            return false;
        };
        let same = |a: &Path| a.canonicalize().is_ok_and(|a| a == p);
        if same(&self.model_path) {
            return true;
        }
        match self.maps.lock() {
            Ok(maps) => maps.keys().any(|l| same(&self.dir.join(l))),
            Err(_) => true,
        }
    }

    /// The bytes of an external tensor (borrowed from the map, no copy).
    pub fn bytes(&self, r: &ExternalRef) -> Result<Bytes> {
        let map = self.map(&r.location)?;
        let end = r
            .offset
            .checked_add(r.length)
            .filter(|&e| e <= map.len() as u64)
            .ok_or_else(|| {
                Error::invalid(
                    &self.model_path,
                    format!(
                        "external data {:?} offset {} length {} lies beyond the file ({} bytes)",
                        r.location,
                        r.offset,
                        r.length,
                        map.len()
                    ),
                )
            })?;
        let owner = MapSlice {
            map,
            start: r.offset as usize,
            end: end as usize,
        };
        Ok(Bytes::from_owner(owner))
    }

    /// Check a tensor's external reference: a safe relative location, an existing file, and
    /// a range inside it. Returns the reference.
    pub fn check(&self, t: &TensorProto) -> Result<ExternalRef> {
        let name = t.name.as_deref().unwrap_or("");
        let r = external_ref(t)
            .map_err(|e| Error::invalid(&self.model_path, format!("tensor {name:?}: {e}")))?;
        let p = Path::new(&r.location);
        let safe = !r.location.is_empty()
            && p.components().all(|c| matches!(c, Component::Normal(_)))
            && !r.location.contains('\\');
        if !safe {
            return Err(Error::invalid(
                &self.model_path,
                format!("tensor {name:?}: external data location {:?} is not a relative path inside the model's folder", r.location),
            ));
        }
        let map = self.map(&r.location)?;
        let len = map.len() as u64;
        if r.offset > len || r.length > len - r.offset {
            return Err(Error::invalid(
                &self.model_path,
                format!(
                    "tensor {name:?}: external data {:?} offset {} length {} lies beyond the file ({len} bytes)",
                    r.location, r.offset, r.length
                ),
            ));
        }
        Ok(r)
    }
}

struct MapSlice {
    map: Arc<Mmap>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for MapSlice {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.start..self.end]
    }
}

/// True when a tensor keeps its payload in an external file.
pub fn is_external(t: &TensorProto) -> bool {
    t.data_location == Some(data_location::EXTERNAL)
}

/// Parse the `external_data` entries of a tensor (length defaults to "to the end of the file",
/// resolved by the caller; here a missing length is an error only if it cannot be resolved).
fn external_ref(t: &TensorProto) -> std::result::Result<ExternalRef, String> {
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for e in &t.external_data {
        let v = e.value.as_deref().unwrap_or("");
        match e.key.as_deref() {
            Some("location") => location = Some(v.to_string()),
            Some("offset") => {
                offset = v
                    .parse()
                    .map_err(|_| format!("bad external offset {v:?}"))?
            }
            Some("length") => {
                length = Some(
                    v.parse()
                        .map_err(|_| format!("bad external length {v:?}"))?,
                )
            }
            _ => {}
        }
    }
    let location = location.ok_or("external data without a location")?;
    let length = match length {
        Some(l) => l,
        None => {
            // The format allows omitting length: the payload is dims x element size.
            let n = crate::tensor::element_count(&t.dims)?;
            let size = crate::proto::data_type::byte_size(t.data_type.unwrap_or(0))
                .ok_or("external data of a type without a fixed size")?;
            (n as u64)
                .checked_mul(size as u64)
                .ok_or("external length overflows")?
        }
    };
    Ok(ExternalRef {
        location,
        offset,
        length,
    })
}

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

/// How the output stores tensor payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataLayout {
    /// Everything inline in the protobuf.
    Inline,
    /// Large tensors in one data file beside the output (`OUT.data`), offsets aligned to 4096.
    External,
}

/// Tensors smaller than this stay inline when writing external data.
pub const EXTERNAL_THRESHOLD: usize = 1024;
/// Alignment of tensor offsets in a written data file.
pub const EXTERNAL_ALIGN: u64 = 4096;
/// Protobuf's hard limit on a message size.
pub const PROTOBUF_LIMIT: usize = (2u64 << 30) as usize - 1;

/// Choose the layout for an output: external when the input used external data or the encoded
/// model would pass the 2 GiB protobuf limit.
/// `computed` payloads count with their final size.
pub fn choose_layout(
    model: &ModelProto,
    computed: &dyn Computed,
    input_had_external: bool,
) -> DataLayout {
    let mut extra = 0usize;
    for_each_tensor(model, &mut |t| {
        if computed.is_computed(t) {
            extra += computed.computed_len(t) + 16;
        }
    });
    if input_had_external || model.encoded_len() + extra > PROTOBUF_LIMIT - (64 << 20) {
        DataLayout::External
    } else {
        DataLayout::Inline
    }
}

/// An output written into a private staging folder beside its destination, not yet visible
/// under its final name. [`Staged::commit`] renames it into place; dropping it removes it.
#[derive(Debug)]
pub struct Staged {
    stage: PathBuf,
    files: Vec<(PathBuf, PathBuf)>,
    committed: bool,
}

impl Staged {
    /// The staged model file (complete, with its data file beside it): verify this one.
    pub fn model_path(&self) -> &Path {
        &self.files[0].0
    }

    /// Move the staged files to their final names (model last). Returns the final paths.
    pub fn commit(mut self) -> Result<Vec<PathBuf>> {
        for (from, to) in self.files.iter().rev() {
            std::fs::rename(from, to).map_err(|e| Error::Write {
                path: to.clone(),
                reason: e.to_string(),
            })?;
        }
        self.committed = true;
        let _ = std::fs::remove_dir_all(&self.stage);
        Ok(self.files.iter().map(|(_, to)| to.clone()).collect())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.stage);
        }
    }
}

/// Tensor payloads computed while the model is written, a block at a time (the rewrite's
/// deferred weight edits, see [`crate::ir::Deferred`]).
pub trait Computed {
    /// Whether the payload of `t` is computed here.
    fn is_computed(&self, t: &TensorProto) -> bool;
    /// Its encoded byte length.
    fn computed_len(&self, t: &TensorProto) -> usize;
    /// Compute it into `sink`, block by block.
    fn write_computed(
        &self,
        t: &TensorProto,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()>;
}

/// No computed payloads: every tensor carries its own.
pub struct NothingComputed;

impl Computed for NothingComputed {
    fn is_computed(&self, _: &TensorProto) -> bool {
        false
    }
    fn computed_len(&self, _: &TensorProto) -> usize {
        0
    }
    fn write_computed(
        &self,
        _: &TensorProto,
        _: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        Ok(())
    }
}

static FSYNC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether written files are flushed to disk (`fsync`) before they are renamed into place
/// (default yes: after a power loss the output is either complete or absent). Off, a crash of
/// the machine right after the write could leave a renamed file whose data never reached the
/// disk; the write itself is faster (no wait for the disk).
pub fn set_fsync(on: bool) {
    FSYNC.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether written files are flushed to disk before they are renamed into place (see
/// [`set_fsync`]).
pub fn fsync_enabled() -> bool {
    FSYNC.load(std::sync::atomic::Ordering::Relaxed)
}

/// Progress of a write, in payload bytes: called with (done, total).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Write `model` to `out` atomically (stage, then commit). See [`stage`].
pub fn save(
    model: &ModelProto,
    store: &ExternalStore,
    out: &Path,
    layout: DataLayout,
) -> Result<Vec<PathBuf>> {
    stage(model, store, &NothingComputed, out, layout, &mut |_, _| {})?.commit()
}

/// Write `model` for destination `out` into a staging folder beside it. External tensors of the
/// input are read through `store`. With [`DataLayout::External`], tensors of at least
/// [`EXTERNAL_THRESHOLD`] bytes go to `OUT.data` (named after the output file), offsets aligned
/// to [`EXTERNAL_ALIGN`]; the rest stay inline.
///
/// Payloads are streamed: input tensors are copied from their memory maps (whose pages are
/// released after each tensor), computed tensors are produced block by block, so peak memory
/// does not grow with the model. `progress` is told the payload bytes written.
pub fn stage(
    model: &ModelProto,
    store: &ExternalStore,
    computed: &dyn Computed,
    out: &Path,
    layout: DataLayout,
    progress: Progress,
) -> Result<Staged> {
    stage_as(model, store, computed, out, layout, None, progress)
}

/// [`stage`] with the data file (external layout) named `data_name` (a plain file name beside
/// the output) instead of `OUT.data`: the folder mode keeps the input's data file name, or
/// avoids a file of the input folder that is copied under that name.
pub fn stage_as(
    model: &ModelProto,
    store: &ExternalStore,
    computed: &dyn Computed,
    out: &Path,
    layout: DataLayout,
    data_name: Option<&str>,
    progress: Progress,
) -> Result<Staged> {
    let wr = |e: std::io::Error| Error::Write {
        path: out.into(),
        reason: e.to_string(),
    };
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Error::Usage(format!(
            "{}: the output folder {} does not exist",
            out.display(),
            dir.display()
        )));
    }
    let file_name = out
        .file_name()
        .ok_or_else(|| Error::Usage(format!("{}: not a file name", out.display())))?
        .to_string_lossy()
        .to_string();
    // Renaming into place must never replace the input model or one of its data files.
    let data_name = match data_name {
        Some(d) => {
            let plain = Path::new(d).file_name().map(|f| f.to_string_lossy() == d);
            if plain != Some(true) || d == file_name {
                return Err(Error::Usage(format!(
                    "{}: {d:?} is not a usable data file name",
                    out.display()
                )));
            }
            d.to_string()
        }
        None => format!("{file_name}.data"),
    };
    let mut targets = vec![out.to_path_buf()];
    if layout == DataLayout::External {
        targets.push(dir.join(&data_name));
    }
    if let Some(t) = targets.iter().find(|t| store.is_input_file(t)) {
        return Err(Error::Usage(format!(
            "{}: writing {} would overwrite the input (its model or external data file)",
            out.display(),
            t.display()
        )));
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let stage_dir = dir.join(format!(
        ".{file_name}.{}.{nanos}.staging",
        std::process::id()
    ));
    std::fs::create_dir(&stage_dir).map_err(wr)?;
    let mut staged = Staged {
        stage: stage_dir.clone(),
        files: vec![(stage_dir.join(&file_name), out.to_path_buf())],
        committed: false,
    };
    let mut model = model.clone();
    let payload_len = |t: &TensorProto| -> u64 {
        if computed.is_computed(t) {
            computed.computed_len(t) as u64
        } else if is_external(t) {
            store.check(t).map_or(0, |r| r.length)
        } else {
            t.raw_data.as_ref().map_or(0, |b| b.len() as u64)
        }
    };
    let mut total = 0u64;
    for_each_tensor(&model, &mut |t| total += payload_len(t));
    let mut done = 0u64;
    if layout == DataLayout::External {
        let data_tmp = stage_dir.join(&data_name);
        let mut w = std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(&data_tmp).map_err(wr)?,
        );
        let mut pos: u64 = 0;
        let mut fail: Option<Error> = None;
        for_each_tensor_mut(&mut model, &mut |t| {
            if fail.is_some() {
                return;
            }
            let r = (|| -> Result<()> {
                let is_computed = computed.is_computed(t);
                let payload = if is_computed {
                    None
                } else if is_external(t) {
                    let r = store.check(t)?;
                    Some(store.bytes(&r)?)
                } else {
                    match &t.raw_data {
                        Some(b) if b.len() >= EXTERNAL_THRESHOLD => Some(b.clone()),
                        _ => return Ok(()),
                    }
                };
                let pad = (EXTERNAL_ALIGN - pos % EXTERNAL_ALIGN) % EXTERNAL_ALIGN;
                w.write_all(&vec![0u8; pad as usize]).map_err(wr)?;
                pos += pad;
                let len = match payload {
                    Some(p) => {
                        w.write_all(&p).map_err(wr)?;
                        store.release(&p);
                        p.len() as u64
                    }
                    None => {
                        let mut n = 0u64;
                        computed.write_computed(t, &mut |b| {
                            n += b.len() as u64;
                            w.write_all(b).map_err(wr)
                        })?;
                        n
                    }
                };
                t.raw_data = None;
                t.data_location = Some(data_location::EXTERNAL);
                t.external_data = vec![
                    kv("location", &data_name),
                    kv("offset", &pos.to_string()),
                    kv("length", &len.to_string()),
                ];
                pos += len;
                done += len;
                progress(done, total);
                Ok(())
            })();
            if let Err(e) = r {
                fail = Some(e);
            }
        });
        if let Some(e) = fail {
            return Err(e);
        }
        finish(w).map_err(wr)?;
        staged.files.push((data_tmp, dir.join(&data_name)));
    } else {
        // Inline: pull any external payload into raw_data (still borrowed from its map).
        let mut fail: Option<Error> = None;
        for_each_tensor_mut(&mut model, &mut |t| {
            if fail.is_none() && is_external(t) {
                match store.check(t).and_then(|r| store.bytes(&r)) {
                    Ok(b) => {
                        t.raw_data = Some(b);
                        t.data_location = None;
                        t.external_data.clear();
                    }
                    Err(e) => fail = Some(e),
                }
            }
        });
        if let Some(e) = fail {
            return Err(e);
        }
    }
    // Computed initializers still to be filled in (inline layout): their payloads count.
    let extra: usize = model
        .graph
        .iter()
        .flat_map(|g| &g.initializer)
        .filter(|t| computed.is_computed(t))
        .map(|t| {
            let before = t.encoded_len();
            let after = before + raw_data_field_len(computed.computed_len(t));
            entry_len(after) - entry_len(before)
        })
        .sum();
    let len = model.encoded_len() + extra;
    if len > PROTOBUF_LIMIT {
        return Err(Error::Write {
            path: out.into(),
            reason: format!("the model protobuf would be {len} bytes, over the 2 GiB limit"),
        });
    }
    let mut w = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(staged.model_path()).map_err(wr)?,
    );
    let mut fill = |t: &TensorProto| -> Result<Option<TensorProto>> {
        if !computed.is_computed(t) {
            return Ok(None);
        }
        let mut buf = Vec::with_capacity(computed.computed_len(t));
        computed.write_computed(t, &mut |b| {
            buf.extend_from_slice(b);
            Ok(())
        })?;
        let mut t = t.clone();
        t.raw_data = Some(Bytes::from(buf));
        Ok(Some(t))
    };
    let mut after = |t: &TensorProto| {
        if let Some(b) = &t.raw_data {
            done += b.len() as u64;
            store.release(b);
            progress(done, total);
        }
    };
    write_model_streaming_with(&model, extra, &mut fill, &mut after, &mut w).map_err(
        |e| match e {
            StreamError::Io(e) => wr(e),
            StreamError::Fill(e) => e,
        },
    )?;
    finish(w).map_err(wr)?;
    Ok(staged)
}

/// Flush a written file and, unless [`set_fsync`] turned it off, wait for it to reach the disk.
fn finish(w: std::io::BufWriter<std::fs::File>) -> std::io::Result<()> {
    let f = w.into_inner().map_err(|e| e.into_error())?;
    if FSYNC.load(std::sync::atomic::Ordering::Relaxed) {
        f.sync_all()?;
    }
    Ok(())
}

/// Bytes a `raw_data` field (tag 9) of `n` bytes adds to a TensorProto.
fn raw_data_field_len(n: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(n as u64) + n
}

/// Bytes a message of `n` bytes takes as a repeated field entry (tag < 16).
fn entry_len(n: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(n as u64) + n
}

/// Why [`write_model_streaming_with`] stopped.
enum StreamError {
    Io(std::io::Error),
    Fill(Error),
}

impl From<std::io::Error> for StreamError {
    fn from(e: std::io::Error) -> Self {
        StreamError::Io(e)
    }
}

/// Encode `model` to `w` piece by piece, so that peak memory is one node or tensor, not the
/// whole protobuf. The bytes are exactly `model.encode_to_vec()`: prost and the reference
/// serialisers write fields in tag order, and a message is its fields concatenated, so the
/// ModelProto is written as [fields before `graph`] + graph (key, length, its fields one by one)
/// + [fields after `graph`], and the graph's repeated fields one element at a time.
pub fn write_model_streaming(model: &ModelProto, w: &mut impl Write) -> std::io::Result<()> {
    match write_model_streaming_with(model, 0, &mut |_| Ok(None), &mut |_| {}, w) {
        Ok(()) => Ok(()),
        Err(StreamError::Io(e)) => Err(e),
        Err(StreamError::Fill(e)) => Err(std::io::Error::other(e.to_string())),
    }
}

/// [`write_model_streaming`] where `fill` may replace a top-level initializer just before it is
/// written (a computed payload, made one tensor at a time; `extra` is the bytes those
/// replacements add to the graph) and `after` sees each initializer written.
fn write_model_streaming_with(
    model: &ModelProto,
    extra: usize,
    fill: &mut dyn FnMut(&TensorProto) -> Result<Option<TensorProto>>,
    after: &mut dyn FnMut(&TensorProto),
    w: &mut impl Write,
) -> std::result::Result<(), StreamError> {
    let Some(graph) = &model.graph else {
        return Ok(w.write_all(&model.encode_to_vec())?);
    };
    let head = ModelProto {
        ir_version: model.ir_version,
        producer_name: model.producer_name.clone(),
        producer_version: model.producer_version.clone(),
        domain: model.domain.clone(),
        model_version: model.model_version,
        doc_string: model.doc_string.clone(),
        ..Default::default()
    };
    w.write_all(&head.encode_to_vec())?;
    let mut key = Vec::new();
    prost::encoding::encode_key(7, prost::encoding::WireType::LengthDelimited, &mut key);
    prost::encoding::encode_varint((graph.encoded_len() + extra) as u64, &mut key);
    w.write_all(&key)?;
    // GraphProto fields in tag order: node 1, name 2, initializer 5, then the rest (10..16).
    let mut buf = Vec::new();
    for n in &graph.node {
        buf.clear();
        prost::encoding::message::encode(1, n, &mut buf);
        w.write_all(&buf)?;
    }
    let name_only = GraphProto {
        name: graph.name.clone(),
        ..Default::default()
    };
    w.write_all(&name_only.encode_to_vec())?;
    for t in &graph.initializer {
        let filled = fill(t).map_err(StreamError::Fill)?;
        let t = filled.as_ref().unwrap_or(t);
        buf.clear();
        prost::encoding::message::encode(5, t, &mut buf);
        w.write_all(&buf)?;
        after(t);
    }
    let tail = GraphProto {
        doc_string: graph.doc_string.clone(),
        input: graph.input.clone(),
        output: graph.output.clone(),
        value_info: graph.value_info.clone(),
        quantization_annotation: graph.quantization_annotation.clone(),
        sparse_initializer: graph.sparse_initializer.clone(),
        metadata_props: graph.metadata_props.clone(),
        ..Default::default()
    };
    w.write_all(&tail.encode_to_vec())?;
    let rest = ModelProto {
        opset_import: model.opset_import.clone(),
        metadata_props: model.metadata_props.clone(),
        training_info: model.training_info.clone(),
        functions: model.functions.clone(),
        configuration: model.configuration.clone(),
        ..Default::default()
    };
    Ok(w.write_all(&rest.encode_to_vec())?)
}

fn kv(k: &str, v: &str) -> StringStringEntryProto {
    StringStringEntryProto {
        key: Some(k.into()),
        value: Some(v.into()),
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
