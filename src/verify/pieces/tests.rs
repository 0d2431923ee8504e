//! Unit tests of the cut selection and of the relation check.
