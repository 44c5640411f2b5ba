//! Version 3 of the counter derivation, for state-migration tests: it keeps its count under
//! `n` instead of `count`, and migrates state written by earlier versions
//! (`{"count": c}` -> `{"n": c}`) when a task switches to it.
//!
//! Build: cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml

use flow_sdk::{Derivation, DerivationSpec, Error, Migrate, Publisher, Source, Value, json, state};

struct Counter;

impl Derivation for Counter {
    fn open(_spec: DerivationSpec) -> Result<Self, Error> {
        flow_sdk::log("counter v3 opened");
        Ok(Counter)
    }

    fn transform(&mut self, source: Source<'_>, out: &mut Publisher) -> Result<(), Error> {
        let n = state::get(&source.key)
            .and_then(|s| s["n"].as_u64())
            .unwrap_or(0)
            + 1;
        state::set(&source.key, &json!({"n": n}));
        out.publish(
            &json!({"id": source.doc["id"], "key": source.key[0], "count": n, "version": 3}),
        );
        Ok(())
    }
}

impl Migrate for Counter {
    fn migrate(_from_digest: &str, _key: &Value, state: Value) -> Result<Option<Value>, Error> {
        match state["count"].as_u64() {
            Some(c) => Ok(Some(json!({"n": c}))),
            None if state["n"].is_u64() => Ok(None),
            None => Err(Error::new(format!("unknown counter state {state}"))),
        }
    }
}

flow_sdk::export_migrating_derivation!(Counter);
