//! The `http` capability: outgoing requests, granted to connectors. The host's side
//! (`HttpAccess`) owns the client, the task's allow-list of hosts, and the bounds; a plugin
//! granted none has every request refused with the reason.

use super::bindings::materialization::flow::plugin::http;
use super::sql::SqlBounds;

pub use http::{Request as HttpRequest, Response as HttpResponse};

/// Outgoing HTTP owned by the host. `send` must refuse a URL whose host is not on the task's
/// allow-list (and say so), and stop at `bounds`: past the call's deadline, or with a
/// response (headers and body) over `result_bytes_max`, it returns an error naming the limit,
/// having kept no more than the cap in memory.
pub trait HttpAccess: Send {
    fn send(&mut self, request: HttpRequest, bounds: &SqlBounds) -> Result<HttpResponse, String>;
}

const URL_QUOTED_MAX: usize = 256;

/// The URL of a request as a message quotes it: at most `URL_QUOTED_MAX` bytes of it.
pub fn quoted_url(url: &str) -> String {
    let mut end = url.len().min(URL_QUOTED_MAX);
    while !url.is_char_boundary(end) {
        end -= 1;
    }
    let more = if end < url.len() { "..." } else { "" };
    format!("{}{more}", &url[..end])
}

/// What a plugin instance was granted of `http`, and the bounds of the current call.
#[derive(Default)]
pub(crate) struct HttpGrant {
    pub(crate) access: Option<Box<dyn HttpAccess>>,
    pub(crate) bounds: Option<SqlBounds>,
}

impl http::Host for HttpGrant {
    fn send(&mut self, request: http::Request) -> Result<http::Response, String> {
        let (Some(access), Some(bounds)) = (self.access.as_mut(), self.bounds) else {
            return Err(format!(
                "outgoing HTTP to {} refused: this task was granted no outgoing HTTP",
                quoted_url(&request.url)
            ));
        };
        access.send(request, &bounds)
    }
}
