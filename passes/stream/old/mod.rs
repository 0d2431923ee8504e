//! The analysis before the abstract interpretation, kept while the port is compared with it.
#![allow(dead_code, missing_docs)]

mod chain;
mod grow;
mod pass_through;
