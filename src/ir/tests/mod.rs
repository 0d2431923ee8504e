//! Unit tests of the IR, one module per part: the text form, shape inference, load/save.

mod io;
mod shape;
mod text;
