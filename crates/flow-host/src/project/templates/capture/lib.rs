//! Orders from an HTTP API: a Flow capture in Rust (`flow plugin init --world capture`).
//!
//! It GETs `config.url` (a JSON array of orders, oldest first), then `config.url?after=ID`
//! with the id of the last order it captured, and captures each order into its binding's
//! collection. Its checkpoint is that last id, committed with the orders, so after a restart
//! it resumes exactly where the last committed poll ended: every order once.
//!
//! Build: flow plugin build (cargo build --release --target wasm32-wasip2, then plugin.wasm)

use flow_sdk::{Capture, CaptureSpec, Captured, Error, Poll, Value, http, json};

struct OrdersApi {
    url: String,
    /// The id of the last order captured, if any.
    after: Option<i64>,
}

impl Capture for OrdersApi {
    fn open(spec: CaptureSpec, checkpoint: Option<Value>) -> Result<Self, Error> {
        let url = spec.config["url"].as_str().ok_or_else(|| {
            Error::new("config.url must be the orders API's URL, e.g. https://api.example.com/orders")
        })?;
        let after = checkpoint.as_ref().and_then(|c| c["after"].as_i64());
        match after {
            Some(id) => flow_sdk::log(&format!("opening {} at {url}, after order {id}", spec.name)),
            None => flow_sdk::log(&format!("opening {} at {url}, from the start", spec.name)),
        }
        Ok(OrdersApi {
            url: url.to_string(),
            after,
        })
    }

    fn poll(&mut self, out: &mut Captured) -> Result<Poll, Error> {
        let url = match self.after {
            Some(id) => format!("{}?after={id}", self.url),
            None => self.url.clone(),
        };
        let response = http::get(&url, &[("accept", "application/json")])
            .map_err(|e| Error::new(format!("GET {url}: {e}")))?;
        if response.status != 200 {
            return Err(Error::new(format!("GET {url}: HTTP {}", response.status)));
        }
        let orders: Vec<Value> = flow_sdk::serde_json::from_slice(&response.body)
            .map_err(|_| Error::new(format!("GET {url}: the response is not a JSON array of orders")))?;
        for order in &orders {
            let id = order["id"]
                .as_i64()
                .ok_or_else(|| Error::new(format!("GET {url}: an order has no integer id")))?;
            out.document(0, order);
            self.after = Some(id);
        }
        if orders.is_empty() {
            return Ok(Poll::Idle);
        }
        out.checkpoint(&json!({ "after": self.after }));
        Ok(Poll::More)
    }
}

flow_sdk::export_capture!(OrdersApi);
