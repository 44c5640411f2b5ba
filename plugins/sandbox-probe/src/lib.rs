//! A hostile derivation for sandbox tests: `config.mode` picks how it misbehaves on the first
//! document it transforms.
//!
//! - `spin`: loops forever (the CPU deadline must stop it);
//! - `memory`: allocates without end (the memory cap must stop it);
//! - `trap`: executes `unreachable`;
//! - `panic`: panics (the message must reach the plugin's log through stderr);
//! - `flood`: returns 5,000 documents from one call (the output cap must stop it);
//! - `state-hoard`: writes 12 state values of 1 MiB in one call (the per-transaction state
//!   cap, 8 MiB in the test, must stop it);
//! - `state-big`: writes one state value of 4 MiB (the state value cap must stop it);
//! - `log-flood`: writes 64 lines of 1 MiB to stderr, once (the log line cap must cut them);
//! - `escape`: tries a file, a socket, the environment and the clock, and returns what it got
//!   as an error value: every attempt must have been denied, the clock stuck at the epoch.
//!
//! Build: cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml

use flow_sdk::{Derivation, DerivationSpec, Error, Publisher, Source, json, state};

struct Probe {
    mode: String,
}

impl Derivation for Probe {
    fn open(spec: DerivationSpec) -> Result<Self, Error> {
        Ok(Probe {
            mode: spec.config["mode"].as_str().unwrap_or("").to_string(),
        })
    }

    fn transform(&mut self, source: Source<'_>, out: &mut Publisher) -> Result<(), Error> {
        match self.mode.as_str() {
            "spin" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => core::arch::wasm32::unreachable(),
            "panic" => panic!("boom: the probe panicked on purpose"),
            "flood" => {
                for i in 0..5_000 {
                    out.publish(&json!({"id": i}));
                }
                Ok(())
            }
            "state-hoard" => {
                let value = json!("x".repeat(1 << 20));
                for i in 0..12 {
                    state::set(&json!([i]), &value);
                }
                out.publish(&source.doc);
                Ok(())
            }
            "log-flood" => {
                // 64 lines of 1 MiB to stderr, once: the host keeps each cut to its line cap.
                static FLOODED: std::sync::atomic::AtomicBool =
                    std::sync::atomic::AtomicBool::new(false);
                if !FLOODED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    let line = "x".repeat(1 << 20);
                    for _ in 0..64 {
                        eprintln!("{line}");
                    }
                }
                out.publish(&source.doc);
                Ok(())
            }
            "state-big" => {
                state::set(&json!(["big"]), &json!("x".repeat(4 << 20)));
                out.publish(&source.doc);
                Ok(())
            }
            "escape" => {
                let fs = std::fs::read_to_string("/etc/passwd")
                    .map(|s| format!("READ {} bytes", s.len()))
                    .unwrap_or_else(|e| format!("denied ({e})"));
                let net = std::net::TcpStream::connect("127.0.0.1:9")
                    .map(|_| "CONNECTED".to_string())
                    .unwrap_or_else(|e| format!("denied ({e})"));
                let env = std::env::var("HOME")
                    .map(|v| format!("GOT {v}"))
                    .unwrap_or_else(|_| "none".to_string());
                let clock = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(u64::MAX);
                Err(Error::new(format!(
                    "fs: {fs}; net: {net}; env: {env}; clock: {clock}"
                )))
            }
            _ => {
                out.publish(&source.doc);
                Ok(())
            }
        }
    }
}

flow_sdk::export_derivation!(Probe);
