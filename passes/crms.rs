//! Pre-RMSNorm → Pre-CRMSNorm: compress each rewritten stream from width D to D−1 (design §4).

use super::Options;
use crate::ir::Model;
use crate::{Error, Result};
use std::collections::BTreeMap;

/// What compression did.
#[derive(Debug, Default)]
pub struct Compressed {
    /// New width per stream id.
    pub widths: BTreeMap<usize, usize>,
    /// Bytes added.
    pub bytes_added: usize,
}

/// Compress the streams of a model already rewritten to Pre-RMSNorm.
pub fn compress(_model: &mut Model, _opts: &Options) -> Result<Compressed> {
    Err(Error::Usage(
        "--target crmsnorm is not implemented yet in this build".into(),
    ))
}
