//! Writing a model: choose inline or external layout, stage the output in a temporary file beside
//! the destination (streaming tensor payloads, computed ones included), and rename it into place
//! only once complete.

use super::*;

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
/// deferred weight edits, see `ir::Deferred`).
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

/// How [`stage_as`] writes, beyond the model and its destination.
#[derive(Clone, Copy, Debug)]
pub struct StageOptions<'a> {
    /// The data file's name (external layout): a plain file name beside the output, instead of
    /// `OUT.data` (the folder mode keeps the input's data file name, or avoids a file of the
    /// input folder that is copied under that name).
    pub data_name: Option<&'a str>,
    /// Wait for each written file to reach the disk (`fsync`) before it can be renamed into
    /// place (default yes: after a power loss the output is either complete or absent). Off,
    /// a crash of the machine right after the write could leave a renamed file whose data
    /// never reached the disk; the write itself is faster.
    pub fsync: bool,
}

impl Default for StageOptions<'_> {
    fn default() -> Self {
        StageOptions {
            data_name: None,
            fsync: true,
        }
    }
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
    stage_as(
        model,
        store,
        computed,
        out,
        layout,
        &StageOptions::default(),
        progress,
    )
}

/// [`stage`] as `how` says: the data file's name, and whether to wait for the disk.
pub fn stage_as(
    model: &ModelProto,
    store: &ExternalStore,
    computed: &dyn Computed,
    out: &Path,
    layout: DataLayout,
    how: &StageOptions,
    progress: Progress,
) -> Result<Staged> {
    let (data_name, fsync) = (how.data_name, how.fsync);
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
        finish(w, fsync).map_err(wr)?;
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
    finish(w, fsync).map_err(wr)?;
    Ok(staged)
}

/// Flush a written file and, when `fsync`, wait for it to reach the disk.
pub(super) fn finish(w: std::io::BufWriter<std::fs::File>, fsync: bool) -> std::io::Result<()> {
    let f = w.into_inner().map_err(|e| e.into_error())?;
    if fsync {
        f.sync_all()?;
    }
    Ok(())
}

/// Bytes a `raw_data` field (tag 9) of `n` bytes adds to a TensorProto.
pub(super) fn raw_data_field_len(n: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(n as u64) + n
}

/// Bytes a message of `n` bytes takes as a repeated field entry (tag < 16).
pub(super) fn entry_len(n: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(n as u64) + n
}

/// Why [`write_model_streaming_with`] stopped.
pub(super) enum StreamError {
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
pub(super) fn write_model_streaming_with(
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

pub(super) fn kv(k: &str, v: &str) -> StringStringEntryProto {
    StringStringEntryProto {
        key: Some(k.into()),
        value: Some(v.into()),
    }
}
