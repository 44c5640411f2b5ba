//! A lifetime aggregate per customer, kept in host-managed state: for every order
//! `{customer, amount}` it publishes `{customer, total, orders}` with the customer's running
//! totals. State commits atomically with the outputs, so totals survive restarts exactly.
//!
//! Build: cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml

use flow_sdk::{Derivation, DerivationSpec, Error, Publisher, Source, json, state};

struct CustomerTotals;

impl Derivation for CustomerTotals {
    fn open(spec: DerivationSpec) -> Result<Self, Error> {
        flow_sdk::log(&format!(
            "opening {} with {} transform(s)",
            spec.name,
            spec.transforms.len()
        ));
        Ok(CustomerTotals)
    }

    fn transform(&mut self, source: Source<'_>, out: &mut Publisher) -> Result<(), Error> {
        let customer = source.doc["customer"]
            .as_str()
            .ok_or("order has no /customer string")?;
        let amount = source.doc["amount"]
            .as_f64()
            .ok_or("order has no /amount number")?;
        if amount < 0.0 {
            return Err(Error::new(format!(
                "order amount must not be negative, got {amount}"
            )));
        }
        let prev = state::get(&source.key).unwrap_or(json!({"total": 0.0, "orders": 0}));
        let total = prev["total"].as_f64().unwrap_or(0.0) + amount;
        let orders = prev["orders"].as_u64().unwrap_or(0) + 1;
        let next = json!({"total": total, "orders": orders});
        state::set(&source.key, &next);
        out.publish(&json!({"customer": customer, "total": total, "orders": orders}));
        Ok(())
    }
}

flow_sdk::export_derivation!(CustomerTotals);
