//! External tensor data: where a tensor's payload lives, checked to lie inside the model's
//! folder and file, and read through one shared memory map per data file.

use super::*;

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
    pub(super) model_map: Mutex<Option<Arc<Mmap>>>,
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

pub(super) struct MapSlice {
    pub(super) map: Arc<Mmap>,
    pub(super) start: usize,
    pub(super) end: usize,
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
pub(super) fn external_ref(t: &TensorProto) -> std::result::Result<ExternalRef, String> {
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
