//! A progress bar on stderr for long writes: shown only when stderr is a terminal, the run is
//! not `--quiet`, and there is enough to write for it to matter.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// Below this many payload bytes no bar is drawn.
const MIN_BYTES: u64 = 64 << 20;

/// A lazily created byte progress bar.
pub struct Bar {
    enabled: bool,
    what: &'static str,
    bar: Option<ProgressBar>,
}

impl Bar {
    /// A bar labelled `what`, drawn only if `wanted` and stderr is a terminal.
    pub fn new(wanted: bool, what: &'static str) -> Bar {
        Bar {
            enabled: wanted && std::io::stderr().is_terminal(),
            what,
            bar: None,
        }
    }

    /// `done` of `total` bytes.
    pub fn set(&mut self, done: u64, total: u64) {
        if !self.enabled || total < MIN_BYTES {
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
