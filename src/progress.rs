//! A progress bar on stderr for writes: shown only when stderr is a terminal and [`Show`] says
//! so (the command line: unless `--quiet`, for outputs large enough for it to matter; Python:
//! when asked).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// Below this many payload bytes no bar is drawn for [`Show::Large`].
const MIN_BYTES: u64 = 64 << 20;

/// What progress a run shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Show {
    /// Nothing (`--quiet`; Python's default).
    #[default]
    Off,
    /// A bar for outputs of 64 MiB or more (the command line's default), and the folder mode's
    /// progress lines.
    Large,
    /// A bar for every output, and the folder mode's progress lines (Python's
    /// `progress=True`).
    Always,
}

/// A lazily created byte progress bar.
pub struct Bar {
    enabled: bool,
    min_bytes: u64,
    what: &'static str,
    bar: Option<ProgressBar>,
}

impl Bar {
    /// A bar labelled `what`, drawn as `show` says when stderr is a terminal.
    pub fn new(show: Show, what: &'static str) -> Bar {
        Bar {
            enabled: show != Show::Off && std::io::stderr().is_terminal(),
            min_bytes: if show == Show::Large { MIN_BYTES } else { 0 },
            what,
            bar: None,
        }
    }

    /// `done` of `total` bytes.
    pub fn set(&mut self, done: u64, total: u64) {
        if !self.enabled || total < self.min_bytes {
            return;
        }
        let what = self.what;
        let bar = self.bar.get_or_insert_with(|| {
            let b = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            b.set_style(style);
            b.set_message(what);
            b
        });
        bar.set_length(total);
        bar.set_position(done);
    }

    /// Remove the bar.
    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
