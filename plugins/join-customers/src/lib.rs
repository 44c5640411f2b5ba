//! An inner join through state: orders enriched with the latest record of their customer.
//!
//! Both transforms shuffle on the customer id, so a customer's record and its orders meet
//! under one key. `fromCustomers` keeps the latest customer record in state and publishes
//! nothing; `fromOrders` publishes the order with the customer's `name` and `tier`, or
//! nothing if the customer is not known yet (inner join). The host orders both sources by
//! publish time, so a replay joins exactly as the live run did.
//!
//! Build: cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml

use flow_sdk::{Derivation, DerivationSpec, Error, Publisher, Source, state};

struct JoinCustomers;

impl Derivation for JoinCustomers {
    fn open(_spec: DerivationSpec) -> Result<Self, Error> {
        Ok(JoinCustomers)
    }

    fn transform(&mut self, source: Source<'_>, out: &mut Publisher) -> Result<(), Error> {
        match source.transform_name {
            "fromCustomers" => {
                let mut customer = source.doc;
                if let Some(m) = customer.as_object_mut() {
                    m.remove("_meta");
                }
                state::set(&source.key, &customer);
            }
            "fromOrders" => {
                if let Some(customer) = state::get(&source.key) {
                    let mut order = source.doc;
                    order["name"] = customer["name"].clone();
                    order["tier"] = customer["tier"].clone();
                    out.publish(&order);
                }
            }
            other => return Err(Error::new(format!("unknown transform {other}"))),
        }
        Ok(())
    }
}

flow_sdk::export_derivation!(JoinCustomers);
