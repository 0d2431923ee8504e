//! Shape inference.
