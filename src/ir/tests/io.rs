//! Load and save.
