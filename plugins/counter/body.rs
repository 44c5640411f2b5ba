// Shared body of counter-v1 and counter-v2, which differ only in `VERSION`: a derivation that
// counts documents per shuffle key in host state and tags each output with the plugin version
// that produced it, so tests can see exactly where a hot-swap cut over.

use flow_sdk::{Derivation, DerivationSpec, Error, Publisher, Source, json, state};

struct Counter;

impl Derivation for Counter {
    fn open(_spec: DerivationSpec) -> Result<Self, Error> {
        flow_sdk::log(&format!("counter v{VERSION} opened"));
        Ok(Counter)
    }

    fn transform(&mut self, source: Source<'_>, out: &mut Publisher) -> Result<(), Error> {
        // Version 1 has a bug that version 2 fixes, for the fail / fix / resume tests.
        if VERSION == 1 && source.doc["poison"] == true {
            return Err(Error::new("v1 cannot handle poison documents"));
        }
        let count = state::get(&source.key).and_then(|s| s["count"].as_u64()).unwrap_or(0) + 1;
        state::set(&source.key, &json!({"count": count}));
        out.publish(&json!({"id": source.doc["id"], "key": source.key[0], "count": count, "version": VERSION}));
        Ok(())
    }
}

flow_sdk::export_derivation!(Counter);
