//! Publishes every source document unchanged (the host replaces `_meta`): the baseline for
//! measuring what the Wasm boundary costs.
//!
//! Build: cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml

use flow_sdk::{Derivation, DerivationSpec, Error, Publisher, Source};

struct Passthrough;

impl Derivation for Passthrough {
    fn open(_spec: DerivationSpec) -> Result<Self, Error> {
        Ok(Passthrough)
    }

    fn transform(&mut self, source: Source<'_>, out: &mut Publisher) -> Result<(), Error> {
        out.publish(&source.doc);
        Ok(())
    }
}

flow_sdk::export_derivation!(Passthrough);
