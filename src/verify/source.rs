//! Where a runtime reads a model from: a file, or an encoded model held in memory whose external
//! data stays in its files (a piece of a larger model, [`super::pieces`]).

use std::path::{Path, PathBuf};

/// A model to load in a runtime.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ModelSource<'a> {
    /// A model file; its external data files are beside it.
    File(&'a Path),
    /// An encoded `ModelProto` in memory. Its external data locations are relative to `dir`
    /// (the folder of the model it was cut from: nothing is copied); `label` names it in
    /// messages (`model.onnx [piece 3/12]`).
    Bytes {
        /// The encoded model.
        bytes: &'a [u8],
        /// The folder its external data locations are relative to.
        dir: &'a Path,
        /// What messages call it.
        label: &'a Path,
    },
}

impl ModelSource<'_> {
    /// What messages call the model.
    pub fn label(&self) -> PathBuf {
        match self {
            ModelSource::File(p) => p.to_path_buf(),
            ModelSource::Bytes { label, .. } => label.to_path_buf(),
        }
    }

    /// The folder external data locations are relative to.
    pub fn data_dir(&self) -> PathBuf {
        match self {
            ModelSource::File(p) => p.parent().map(Path::to_path_buf).unwrap_or_default(),
            ModelSource::Bytes { dir, .. } => dir.to_path_buf(),
        }
    }
}
