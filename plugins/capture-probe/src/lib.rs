//! A hostile capture for the capture tests, written against the raw bindings (not the SDK's
//! `Capture`, which cannot misbehave this way): `config.mode` picks what its first poll does.
//!
//! - `bad-checkpoint`: returns a valid document with a checkpoint that is not JSON;
//! - `unknown-binding`: returns a valid document for binding 7 of a one-binding capture;
//! - `flood`: returns 5,000 documents from one poll (the output cap must stop it);
//! - `http`: GETs `config.url` (whatever host it names) and fails with the answer it got;
//! - `count`: returns `{"id": n, "n": n}` for n = checkpoint + 1, ..., 10 at a time up to
//!   `config.upTo`, with the checkpoint `n`: a source of numbered documents.
//!
//! Build: cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml

use flow_sdk::capture_bindings::exports::flow::plugin::source::{
    CaptureSpec, Captured, Guest, PollResult,
};
use flow_sdk::capture_bindings::flow::plugin::types::PluginError;
use flow_sdk::{Value, http, serde_json};
use std::cell::RefCell;

struct Probe {
    mode: String,
    url: String,
    next: u64,
    up_to: u64,
}

thread_local! {
    static PROBE: RefCell<Option<Probe>> = const { RefCell::new(None) };
}

fn error(message: String) -> PluginError {
    PluginError {
        message,
        document: None,
    }
}

fn doc(binding: u32, id: u64) -> Captured {
    Captured {
        binding,
        document: format!("{{\"id\":{id},\"n\":{id}}}"),
    }
}

struct Export;

impl Guest for Export {
    fn open(spec: CaptureSpec, checkpoint: Option<String>) -> Result<(), PluginError> {
        let config: Value = serde_json::from_str(&spec.config).map_err(|e| error(e.to_string()))?;
        let next = checkpoint
            .map(|c| {
                c.parse::<u64>()
                    .map_err(|e| error(format!("checkpoint {c}: {e}")))
            })
            .transpose()?
            .map_or(1, |n| n + 1);
        PROBE.with(|p| {
            *p.borrow_mut() = Some(Probe {
                mode: config["mode"].as_str().unwrap_or("").to_string(),
                url: config["url"].as_str().unwrap_or("").to_string(),
                next,
                up_to: config["upTo"].as_u64().unwrap_or(0),
            })
        });
        Ok(())
    }

    fn poll() -> Result<PollResult, PluginError> {
        PROBE.with(|p| {
            let mut p = p.borrow_mut();
            let p = p.as_mut().ok_or_else(|| error("poll before open".into()))?;
            let result = |documents, checkpoint| PollResult {
                documents,
                checkpoint,
                idle: false,
            };
            match p.mode.as_str() {
                "bad-checkpoint" => Ok(result(vec![doc(0, 1)], Some("{not json".into()))),
                "unknown-binding" => Ok(result(vec![doc(0, 1), doc(7, 2)], None)),
                "flood" => Ok(result((1..=5000).map(|i| doc(0, i)).collect(), None)),
                "http" => match http::get(&p.url, &[]) {
                    Ok(r) => Err(error(format!("the host answered {}", r.status))),
                    Err(e) => Err(error(e)),
                },
                "count" => {
                    let end = (p.next + 10).min(p.up_to + 1);
                    let docs: Vec<Captured> = (p.next..end).map(|i| doc(0, i)).collect();
                    if docs.is_empty() {
                        return Ok(PollResult {
                            documents: docs,
                            checkpoint: None,
                            idle: true,
                        });
                    }
                    p.next = end;
                    Ok(result(docs, Some((end - 1).to_string())))
                }
                other => Err(error(format!("unknown mode {other:?}"))),
            }
        })
    }
}

flow_sdk::capture_bindings::__export_capture_world!(Export with_types_in flow_sdk::capture_bindings);
