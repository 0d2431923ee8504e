//! Provenance: what a rewritten model records about its rewrite, in its `metadata_props`.
//!
//! Keys (all under [`PREFIX`]): `version`, `target`, `emit`, `fold`, `norms_rewritten`,
//! `norms_refused`, `input_file` (the input's file name, no folder), `input_sha256` (SHA-256 of
//! the input model file's bytes; external data files are not part of it).
//!
//! Invariant: entries already in the input are kept as they are, in their order; ours are
//! appended after them ([`record`]). A model carrying [`PREFIX`]`version` was written by this
//! tool, and a second rewrite refuses it ([`already_rewritten`]).
//!
//! The record ([`Provenance`]) is the report's: `passes::report` defines it and builds it from a
//! rewrite's report; this module keeps it in a model and reads it back.

use crate::proto::{ModelProto, StringStringEntryProto};
use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// The prefix of our metadata keys.
pub const PREFIX: &str = "onnx_normopt.";

pub use crate::passes::report::{Provenance, VERSION};

/// The metadata entries of a record (keys without [`PREFIX`]), in their order.
fn entries(p: &Provenance) -> [(&'static str, &str); 8] {
    [
        ("version", &p.version),
        ("target", &p.target),
        ("emit", &p.emit),
        ("fold", &p.fold),
        ("norms_rewritten", &p.norms_rewritten),
        ("norms_refused", &p.norms_refused),
        ("input_file", &p.input_file),
        ("input_sha256", &p.input_sha256),
    ]
}

/// Append `p` to the model's `metadata_props`. Entries already there are not touched; an input
/// carrying our keys is refused before this point ([`already_rewritten`]).
pub fn record(header: &mut ModelProto, p: &Provenance) {
    for (k, v) in entries(p) {
        header.metadata_props.push(StringStringEntryProto {
            key: Some(format!("{PREFIX}{k}")),
            value: Some(v.to_string()),
        });
    }
}

/// The provenance recorded in a model, if this tool wrote it.
pub fn read(header: &ModelProto) -> Option<Provenance> {
    let get = |k: &str| {
        header
            .metadata_props
            .iter()
            .rev()
            .find(|e| e.key.as_deref() == Some(&format!("{PREFIX}{k}")))
            .and_then(|e| e.value.clone())
    };
    let version = get("version")?;
    Some(Provenance {
        version,
        target: get("target").unwrap_or_default(),
        emit: get("emit").unwrap_or_default(),
        fold: get("fold").unwrap_or_default(),
        norms_rewritten: get("norms_rewritten").unwrap_or_default(),
        norms_refused: get("norms_refused").unwrap_or_default(),
        input_file: get("input_file").unwrap_or_default(),
        input_sha256: get("input_sha256").unwrap_or_default(),
    })
}

/// Why a model this tool already rewrote is not rewritten again (for `target`), or `None` when
/// it carries no provenance.
pub fn already_rewritten(header: &ModelProto, target: &str) -> Option<String> {
    let p = read(header)?;
    let mut why = format!("already rewritten by {}", p.describe());
    if p.target == "rmsnorm" && target == "crmsnorm" {
        why.push_str(
            ": compressing an already-rewritten model to CRMSNorm is not supported (its graph \
             does not show that the streams are zero-mean); rewrite the original model with \
             --target crmsnorm",
        );
    } else {
        why.push_str("; rewrite the original model instead");
    }
    Some(why)
}

/// SHA-256 of a file's bytes, read in 1 MiB blocks (models can be gigabytes), hex. Stops with
/// `None` when `cancel` is set.
pub fn sha256_file(path: &Path, cancel: &AtomicBool) -> Result<Option<String>> {
    let rd = |e: std::io::Error| Error::Read {
        path: path.into(),
        reason: e.to_string(),
    };
    let mut f = std::fs::File::open(path).map_err(rd)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(rd(e)),
        };
        h.update(&buf[..n]);
    }
    Ok(Some(hex(&h.finalize())))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A digest computed on another thread while the model is rewritten.
pub struct PendingDigest {
    cancel: std::sync::Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Result<Option<String>>>>,
}

impl PendingDigest {
    /// Start hashing `path`.
    pub fn start(path: &Path) -> PendingDigest {
        let cancel = std::sync::Arc::new(AtomicBool::new(false));
        let (c, p) = (cancel.clone(), path.to_path_buf());
        let handle = std::thread::Builder::new()
            .name("sha256".into())
            .spawn(move || sha256_file(&p, &c))
            .ok();
        PendingDigest { cancel, handle }
    }

    /// Wait for the digest (computed here if the thread could not start).
    pub fn finish(mut self, path: &Path) -> Result<String> {
        let r = match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| Error::Internal("the digest thread panicked".into()))?,
            None => sha256_file(path, &AtomicBool::new(false)),
        };
        r?.ok_or_else(|| Error::Internal("digest cancelled".into()))
    }
}

impl Drop for PendingDigest {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p, &AtomicBool::new(false)).unwrap().unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(PendingDigest::start(&p).finish(&p).unwrap().len(), 64);
    }

    #[test]
    fn record_appends_and_read_finds_it() {
        let mut h = ModelProto::default();
        h.metadata_props.push(StringStringEntryProto {
            key: Some("author".into()),
            value: Some("me".into()),
        });
        let before = h.metadata_props.clone();
        let report = crate::passes::report::Report {
            target: "rmsnorm".into(),
            emit: "standard".into(),
            norms_rewritten: 5,
            ..Default::default()
        };
        let p = report.provenance(true, Path::new("/x/model.onnx"), "00ff");
        record(&mut h, &p);
        assert_eq!(&h.metadata_props[..1], &before[..]);
        assert_eq!(read(&h), Some(p));
        let why = already_rewritten(&h, "rmsnorm").unwrap();
        assert!(
            why.starts_with("already rewritten by onnx-normopt "),
            "{why}"
        );
        assert!(already_rewritten(&h, "crmsnorm")
            .unwrap()
            .contains("not supported"));
        assert!(already_rewritten(&ModelProto::default(), "rmsnorm").is_none());
    }
}
