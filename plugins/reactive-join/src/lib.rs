//! A reactive outer join purely by reductions: each side publishes a delta shaped for the
//! derived schema (`LHS` summed, `RHS` appended), and the host's combiner joins them by key.
//! No state, no windows: the join is the reduction.
//!
//! Transforms (by name): `fromInts` publishes `{Key, LHS: Int}`, `fromStrings` publishes
//! `{Key, RHS: [String]}`.
//!
//! Build: cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml

use flow_sdk::{Derivation, DerivationSpec, Error, Publisher, Source, json};

struct ReactiveJoin;

impl Derivation for ReactiveJoin {
    fn open(_spec: DerivationSpec) -> Result<Self, Error> {
        Ok(ReactiveJoin)
    }

    fn transform(&mut self, source: Source<'_>, out: &mut Publisher) -> Result<(), Error> {
        let key = &source.doc["Key"];
        match source.transform_name {
            "fromInts" => out.publish(&json!({"Key": key, "LHS": source.doc["Int"]})),
            "fromStrings" => out.publish(&json!({"Key": key, "RHS": [source.doc["String"]]})),
            other => return Err(Error::new(format!("unknown transform {other}"))),
        }
        Ok(())
    }
}

flow_sdk::export_derivation!(ReactiveJoin);
