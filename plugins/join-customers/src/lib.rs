//! An inner join through state: orders enriched with the latest record of their customer.
//!
//! Both transforms shuffle on the customer id, so a customer's record and its orders meet
//! under one key. `fromCustomers` keeps the customer's `name` and `tier` in state and
//! publishes nothing; `fromOrders` publishes the order with the customer's `name` and `tier`,
//! or nothing if the customer is not known yet (inner join). The host orders both sources by
//! publish time, so a replay joins exactly as the live run did.
//!
//! Fields are carried as raw JSON text (`serde_json::value::RawValue`): an order's values are
//! checked as JSON but never built into a tree, and are written out as they came.
//!
//! Build: cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml

use flow_sdk::{Derivation, DerivationSpec, Error, Publisher, Source, state};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;

struct JoinCustomers;

/// What an order is enriched with: the customer's fields, as their JSON text.
#[derive(Serialize, Deserialize)]
struct Customer {
    name: Box<RawValue>,
    tier: Box<RawValue>,
}

impl Derivation for JoinCustomers {
    fn open(_spec: DerivationSpec) -> Result<Self, Error> {
        Ok(JoinCustomers)
    }

    fn transform(&mut self, source: Source<'_>, out: &mut Publisher) -> Result<(), Error> {
        match source.transform_name {
            "fromCustomers" => {
                let customer: Customer = source.parse()?;
                state::set(&source.key, &customer);
            }
            "fromOrders" => {
                if let Some(customer) = state::get_as::<Customer>(&source.key) {
                    // The order's properties, each its JSON text; `_meta` is the host's.
                    let mut order: BTreeMap<Cow<str>, &RawValue> = source.parse()?;
                    order.remove("_meta");
                    order.insert("name".into(), &customer.name);
                    order.insert("tier".into(), &customer.tier);
                    out.publish(&order);
                }
            }
            other => return Err(Error::new(format!("unknown transform {other}"))),
        }
        Ok(())
    }
}

flow_sdk::export_derivation!(JoinCustomers);
