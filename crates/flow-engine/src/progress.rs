//! The `progress` capability, granted to captures: the source's own time of what the
//! current poll captured, from which the host shows the capture's lag.

use super::bindings::capture::flow::plugin::progress;

/// What the plugin reported during the current call.
#[derive(Default)]
pub(crate) struct ProgressGrant {
    pub(crate) source_ms: Option<u64>,
}

impl progress::Host for ProgressGrant {
    fn source_time(&mut self, ms: u64) {
        self.source_ms = Some(ms);
    }
}
