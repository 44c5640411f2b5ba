//! The capture side of the SDK.

use crate::Error;
use crate::capture_bindings::exports::flow::plugin::source as wit;
use crate::capture_bindings::flow::plugin::types::PluginError;
use serde_json::Value;
use std::any::Any;
use std::cell::RefCell;

/// A capture: brings documents in from an external system. The host calls [`Capture::open`]
/// with the checkpoint last committed, then [`Capture::poll`] in a loop. Each poll is one host
/// transaction: the documents it captured are validated against their binding's collection
/// and committed together with the checkpoint it set, or not at all. Resuming from the
/// checkpoint `open` gets is what makes a capture exactly once: set one that says where the
/// next poll starts, after exactly the documents of this one.
pub trait Capture: Sized + 'static {
    /// Start, from `checkpoint` (None: the capture never committed one).
    fn open(spec: CaptureSpec, checkpoint: Option<Value>) -> Result<Self, Error>;
    /// Capture what comes next into `out`, and say whether the source has more right now
    /// ([`Poll::More`]: the host polls again at once) or not ([`Poll::Idle`]: the host waits,
    /// longer while it stays idle, up to the capture's `interval`).
    fn poll(&mut self, out: &mut Captured) -> Result<Poll, Error>;
}

/// Whether the source has more right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    More,
    Idle,
}

#[derive(Debug, Clone)]
pub struct CaptureSpec {
    pub name: String,
    pub config: Value,
    pub bindings: Vec<CaptureBinding>,
}

#[derive(Debug, Clone)]
pub struct CaptureBinding {
    /// The collection its documents go to.
    pub target: String,
    pub resource: Value,
}

/// What one poll captured.
#[derive(Default)]
pub struct Captured {
    documents: Vec<wit::Captured>,
    checkpoint: Option<String>,
}

impl Captured {
    /// Capture `doc` for binding `binding`.
    pub fn document(&mut self, binding: usize, doc: &Value) {
        self.document_text(binding, crate::json_text(doc));
    }

    /// Capture a document given as JSON text (as a source returned it), without parsing it.
    pub fn document_text(&mut self, binding: usize, text: String) {
        self.documents.push(wit::Captured {
            binding: binding as u32,
            document: text,
        });
    }

    /// Where the next poll starts: committed with this poll's documents and passed to `open`
    /// after a restart. Left unset, the last committed checkpoint stays.
    pub fn checkpoint(&mut self, checkpoint: &Value) {
        self.checkpoint = Some(crate::json_text(checkpoint));
    }

    /// How many documents this poll captured so far.
    pub fn len(&self) -> usize {
        self.documents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.documents.is_empty()
    }
}

thread_local! {
    static RUNNING: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

fn to_wit(e: Error) -> PluginError {
    PluginError {
        message: e.message,
        document: e.document,
    }
}

fn parse(what: &str, s: &str) -> Result<Value, PluginError> {
    serde_json::from_str(s).map_err(|e| to_wit(Error::new(format!("{what} is not JSON: {e}"))))
}

#[doc(hidden)]
pub fn open<T: Capture>(
    spec: wit::CaptureSpec,
    checkpoint: Option<String>,
) -> Result<(), PluginError> {
    let mut bindings = Vec::new();
    for b in spec.bindings {
        bindings.push(CaptureBinding {
            resource: parse(
                &format!("the resource of binding {}", b.target),
                &b.resource,
            )?,
            target: b.target,
        });
    }
    let config = parse("the endpoint config", &spec.config)?;
    let checkpoint = checkpoint
        .map(|c| parse("the checkpoint", &c))
        .transpose()?;
    let instance = T::open(
        CaptureSpec {
            name: spec.name,
            config,
            bindings,
        },
        checkpoint,
    )
    .map_err(to_wit)?;
    RUNNING.with(|r| *r.borrow_mut() = Some(Box::new(instance)));
    Ok(())
}

#[doc(hidden)]
pub fn poll<T: Capture>() -> Result<wit::PollResult, PluginError> {
    RUNNING.with(|r| {
        let mut r = r.borrow_mut();
        let instance = r
            .as_mut()
            .ok_or_else(|| PluginError {
                message: "poll called before open".into(),
                document: None,
            })?
            .downcast_mut::<T>()
            .expect("one capture type per component");
        let mut out = Captured::default();
        let poll = instance.poll(&mut out).map_err(to_wit)?;
        Ok(wit::PollResult {
            documents: out.documents,
            checkpoint: out.checkpoint,
            idle: poll == Poll::Idle,
        })
    })
}

/// Tell the host when the source committed the last change this poll captured (ms since the
/// Unix epoch, by the source's clock): it shows the capture's lag behind its source. Needs a
/// host of WIT 0.1.4 or later.
pub fn source_time(ms: u64) {
    crate::capture_bindings::flow::plugin::progress::source_time(ms)
}

/// Outgoing HTTP to the hosts on the task's allow-list (`endpoint.http.allow`). A request to
/// any other host is refused (and logged by the host); a response over the host's cap
/// (`hostResultBytesMax`) is an error, so page big reads.
pub mod http {
    use crate::materialization_bindings::flow::plugin::http as wit;
    pub use wit::{Request, Response};

    /// Send a request and wait for the whole response.
    pub fn send(request: &Request) -> Result<Response, String> {
        wit::send(request)
    }

    /// GET `url` with `headers`.
    pub fn get(url: &str, headers: &[(&str, &str)]) -> Result<Response, String> {
        send(&Request {
            method: "GET".into(),
            url: url.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
        })
    }

    /// The value of header `name` (case-insensitive) of `response`, if it has one.
    pub fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
        response
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Export `$t` (a [`Capture`]) as this component's capture.
#[macro_export]
macro_rules! export_capture {
    ($t:ty) => {
        #[doc(hidden)]
        pub struct __FlowCaptureExport;

        impl $crate::capture_bindings::exports::flow::plugin::source::Guest for __FlowCaptureExport {
            fn open(
                spec: $crate::capture_bindings::exports::flow::plugin::source::CaptureSpec,
                checkpoint: Option<String>,
            ) -> Result<(), $crate::capture_bindings::flow::plugin::types::PluginError> {
                $crate::__capture::open::<$t>(spec, checkpoint)
            }
            fn poll() -> Result<
                $crate::capture_bindings::exports::flow::plugin::source::PollResult,
                $crate::capture_bindings::flow::plugin::types::PluginError,
            > {
                $crate::__capture::poll::<$t>()
            }
        }

        $crate::capture_bindings::__export_capture_world!(__FlowCaptureExport with_types_in $crate::capture_bindings);
    };
}
