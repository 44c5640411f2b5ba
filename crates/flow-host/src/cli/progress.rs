//! Progress on stderr for what takes a while (an ingest's upload and the host's checking, a
//! deploy's compile, a publish): a bar or a spinner on a terminal, nothing otherwise, so
//! scripts and logs get only the final line.

use std::io::IsTerminal;
use std::time::Duration;

pub struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    /// A bar of `total` bytes.
    pub fn bytes(total: u64, message: &str) -> Self {
        Self::shown(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {elapsed}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_message(message.to_string());
            bar
        })
    }

    /// A spinner saying `message`, with the time it has taken.
    pub fn spinner(message: &str) -> Self {
        Self::shown(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .expect("a valid template"),
            );
            bar.set_message(message.to_string());
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        })
    }

    fn shown(make: impl FnOnce() -> indicatif::ProgressBar) -> Self {
        Progress(std::io::stderr().is_terminal().then(make))
    }

    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }

    /// Once everything is sent: the rest is the host's.
    pub fn waiting(&self, message: &str) {
        if let Some(b) = &self.0 {
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .expect("a valid template"),
            );
            b.set_message(message.to_string());
            b.enable_steady_tick(Duration::from_millis(100));
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}
