//! The `http` capability: outgoing requests to an allow-list of hosts. None is configurable
//! yet, so every request is refused with the reason.

use super::bindings::materialization::flow::plugin::http;
/// What a plugin instance was granted of `http`: the hosts it may reach. Empty: every request
/// is refused.
#[derive(Default)]
pub(crate) struct HttpGrant {
    pub(crate) allow: Vec<String>,
}

impl http::Host for HttpGrant {
    fn send(&mut self, request: http::Request) -> Result<http::Response, String> {
        // Outgoing HTTP is granted per task through an allow-list; none is configurable yet,
        // so every request is refused with the reason rather than silently dropped.
        Err(format!(
            "outgoing HTTP to {} refused: the host is not on this task's allow-list ({} hosts allowed)",
            request.url,
            self.allow.len()
        ))
    }
}
