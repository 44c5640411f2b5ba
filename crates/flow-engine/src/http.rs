//! The `http` capability: outgoing requests to an allow-list of hosts. None is configurable
//! yet, so every request is refused with the reason.

use super::bindings::materialization::flow::plugin::http;
const URL_QUOTED_MAX: usize = 256;

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
        // The URL is the plugin's: the message quotes at most URL_QUOTED_MAX bytes of it.
        let mut end = request.url.len().min(URL_QUOTED_MAX);
        while !request.url.is_char_boundary(end) {
            end -= 1;
        }
        let more = if end < request.url.len() { "..." } else { "" };
        Err(format!(
            "outgoing HTTP to {}{more} refused: the host is not on this task's allow-list ({} hosts allowed)",
            &request.url[..end],
            self.allow.len()
        ))
    }
}
