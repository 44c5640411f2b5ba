//! The whole path over HTTP on loopback: deploy plugins, publish a catalog, ingest, and watch
//! the SQLite table that a Wasm derivation and the materialize-sqlite plugin keep fresh.

use crate::{Served, plugins};
use flow_tests::{deploy, get_text, read_ndjson};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

pub fn bundle(views_db: &std::path::Path) -> Value {
    json!({
        "source": "e2e",
        "catalog": {
            "collections": {
                "acme/orders": {
                    "schema": {"type": "object",
                               "properties": {"id": {"type": "integer"}, "customer": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
                               "required": ["id", "customer", "amount"]},
                    "key": ["/id"],
                },
                "acme/customer-totals": {
                    "schema": {"type": "object",
                               "properties": {"customer": {"type": "string"}, "total": {"type": "number"}, "orders": {"type": "integer"}},
                               "required": ["customer", "total", "orders"]},
                    "key": ["/customer"],
                    "derive": {
                        "using": {"wasm": {"plugin": "totals"}},
                        "transforms": [{"name": "fromOrders", "source": "acme/orders", "shuffle": {"key": ["/customer"]}}],
                    },
                },
            },
            "materializations": {
                "acme/views": {
                    "endpoint": {"wasm": {"plugin": "materialize-sqlite", "config": {"path": views_db}}},
                    "bindings": [{"source": "acme/customer-totals", "resource": {"table": "customer_totals"}}],
                },
            },
        },
    })
}

/// Rows of `customer_totals`, once the table has `n` rows (or panic after a deadline).
pub fn wait_for_rows(db: &std::path::Path, n: usize) -> Vec<(String, f64, i64)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows: Vec<(String, f64, i64)> = rusqlite::Connection::open(db)
            .and_then(|c| {
                let mut stmt = c.prepare(
                    "SELECT customer, total, orders FROM customer_totals ORDER BY customer",
                )?;
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .unwrap_or_default();
        if rows.len() >= n {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} rows, have {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Deploy the derivation and materialize-sqlite from `files` (as `totals` and
/// `materialize-sqlite`), publish the demo pipeline into `views`, ingest three orders, and
/// check the table they make.
pub(crate) async fn deploy_publish_ingest(
    served: &Served,
    http: &reqwest::Client,
    views: &std::path::Path,
    files: [&str; 2],
) {
    for (name, path) in ["totals", "materialize-sqlite"].into_iter().zip(files) {
        let v = deploy(http, &served.base, name, path).await;
        assert_eq!(v["seq"], 1, "{v}");
        assert!(v["digest"].as_str().unwrap().starts_with("sha256:"));
    }
    let r = http
        .post(served.url("/v1/catalog"))
        .json(&bundle(views))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let ndjson = "{\"id\":1,\"customer\":\"alice\",\"amount\":5}\n{\"id\":2,\"customer\":\"bob\",\"amount\":7.5}\n{\"id\":3,\"customer\":\"alice\",\"amount\":10}\n";
    let r: Value = http
        .post(served.url("/v1/collections/acme%2Forders/documents"))
        .body(ndjson)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["docs"], 3, "{r}");

    let views = views.to_path_buf();
    let rows = tokio::task::spawn_blocking(move || wait_for_rows(&views, 2))
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![("alice".into(), 15.0, 2), ("bob".into(), 7.5, 1)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_publish_ingest_materialize() {
    let served = Served::start(None).await;
    let http = reqwest::Client::new();
    let views = served.dir.path().join("views.db");
    deploy_publish_ingest(
        &served,
        &http,
        &views,
        [plugins::CUSTOMER_TOTALS, plugins::MATERIALIZE_SQLITE],
    )
    .await;

    // The derived collection is readable over HTTP, each document stamped with _meta.
    let docs = read_ndjson(
        &http,
        &served.base,
        "/v1/collections/acme%2Fcustomer-totals/documents",
    )
    .await;
    // Outputs of one transaction are combined by the derived key: alice's two orders came in
    // one ingest, so there is at most one document per customer per transaction.
    assert!((2..=3).contains(&docs.len()), "{docs:?}");
    assert!(docs.iter().all(|d| d["_meta"]["uuid"].is_string()));

    // Status shows both tasks running and caught up; metrics expose them.
    let tasks: Value = flow_tests::get_json(&http, &served.base, "/v1/tasks").await;
    for t in tasks["tasks"].as_array().unwrap() {
        assert_eq!(t["state"], "running", "{t}");
    }
    let metrics = get_text(&http, &served.base, "/metrics").await;
    assert!(
        metrics.contains("flow_task_docs_in_total{task=\"acme/customer-totals\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("flow_journal_seal_failures{collection=\"acme/orders\"} 0")
            && metrics.contains("flow_journal_unsealed_bytes{collection=\"acme/orders\"}"),
        "{metrics}"
    );

    // The plugin's log line arrived.
    let logs = get_text(&http, &served.base, "/v1/plugins/totals/logs").await;
    assert!(logs.contains("deployed version 1"), "{logs}");
}

/// A follower of a collection receives documents appended after it started, without polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_follow_streams_new_documents() {
    use futures::StreamExt;
    let served = Served::start(None).await;
    let http = reqwest::Client::new();
    let views = served.dir.path().join("views.db");
    for (name, path) in [
        ("totals", plugins::CUSTOMER_TOTALS),
        ("materialize-sqlite", plugins::MATERIALIZE_SQLITE),
    ] {
        deploy(&http, &served.base, name, path).await;
    }
    http.post(served.url("/v1/catalog"))
        .json(&bundle(&views))
        .send()
        .await
        .unwrap();

    let resp = http
        .get(served.url("/v1/collections/acme%2Forders/documents?offset=end&follow=true"))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    http.post(served.url("/v1/collections/acme%2Forders/documents"))
        .body("{\"id\":7,\"customer\":\"zed\",\"amount\":1}")
        .send()
        .await
        .unwrap();
    let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("no document within 10s")
        .unwrap()
        .unwrap();
    let doc: Value = serde_json::from_slice(chunk.strip_suffix(b"\n").unwrap()).unwrap();
    assert_eq!(doc["customer"], "zed");
}

/// With a token configured, every route but health requires it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_is_required() {
    let served = Served::start(Some("s3cret")).await;
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(served.url("/v1/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = http
        .get(served.url("/v1/collections"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let r = http
        .get(served.url("/v1/collections"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The scheme is case-insensitive; a wrong token of any length, or a prefix of the right
    // one, is refused.
    for (header, status) in [
        ("bearer s3cret", 200),
        ("BEARER s3cret", 200),
        ("Bearer s3cre", 401),
        ("Bearer s3cret!", 401),
        ("Bearer ", 401),
        ("Basic s3cret", 401),
        ("s3cret", 401),
    ] {
        let r = http
            .get(served.url("/v1/collections"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "Authorization: {header}");
    }
    let r = http
        .get(served.url("/v1/openapi.json"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    let doc: Value = r.json().await.unwrap();
    assert!(doc["paths"]["/v1/collections/{name}/documents"].is_object());
}

/// Plugins built against `flow:plugin@0.1.0` (before `kv` and `fields` were added) keep working:
/// the customer-totals derivation and materialize-sqlite as they were built then
/// (`tests/fixtures/wit-0.1.0`) run the same pipeline on today's host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_built_against_wit_0_1_0_keep_working() {
    let served = Served::start(None).await;
    let http = reqwest::Client::new();
    let views = served.dir.path().join("views.db");
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/wit-0.1.0");
    deploy_publish_ingest(
        &served,
        &http,
        &views,
        [
            &format!("{fixtures}/customer_totals.wasm"),
            &format!("{fixtures}/materialize_sqlite.wasm"),
        ],
    )
    .await;
}

/// A publish that would change a kept table's key or a column's type is refused, naming the
/// table, the column and the reason, and changes nothing; adding a field is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_changes_that_cannot_apply_in_place_are_refused_at_publish() {
    let served = Served::start(None).await;
    let http = reqwest::Client::new();
    let views = served.dir.path().join("views.db");
    for (name, path) in [
        ("totals", plugins::CUSTOMER_TOTALS),
        ("materialize-sqlite", plugins::MATERIALIZE_SQLITE),
    ] {
        deploy(&http, &served.base, name, path).await;
    }
    let publish = async |b: &Value| {
        let r = http
            .post(served.url("/v1/catalog"))
            .json(b)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    let original = bundle(&views);
    assert_eq!(publish(&original).await.0, 200);

    let totals = "/catalog/collections/acme~1customer-totals/schema/properties";
    let mut narrowed = original.clone();
    *narrowed.pointer_mut(&format!("{totals}/orders")).unwrap() = json!({"type": "string"});
    let (status, body) = publish(&narrowed).await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("materialization acme/views: binding 0 (table customer_totals)")
            && message.contains("column orders holds integer values")
            && message.contains("now makes it string"),
        "{message}"
    );
    // Nothing of it was recorded.
    let catalog: Value = flow_tests::get_json(&http, &served.base, "/v1/catalog").await;
    assert!(
        !catalog
            .to_string()
            .contains(r#""orders":{"type":"string"}"#),
        "{catalog}"
    );

    let mut widened = original.clone();
    widened
        .pointer_mut(totals)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .insert("region".into(), json!({"type": "string"}));
    assert_eq!(publish(&widened).await.0, 200);
}

/// `txnTimeMinMs` (Flow's `minTxnDuration`): a transaction that found documents lasts at
/// least that long, so what arrives meanwhile is combined into the next one. Two ingests
/// made during the first transaction's wait become one delta row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minimum_transaction_time_combines_what_arrives_meanwhile() {
    let served = Served::start(None).await;
    let http = reqwest::Client::new();
    let views = served.dir.path().join("views.db");
    deploy(
        &http,
        &served.base,
        "materialize-sqlite",
        plugins::MATERIALIZE_SQLITE,
    )
    .await;
    let bundle = json!({
        "source": "min-txn-time",
        "catalog": {
            "collections": {"acme/counts": {
                "schema": {"type": "object", "reduce": {"strategy": "merge"},
                           "properties": {"k": {"type": "string"}, "n": {"type": "integer", "reduce": {"strategy": "sum"}}},
                           "required": ["k", "n"]},
                "key": ["/k"],
            }},
            "materializations": {"acme/log": {
                "endpoint": {"wasm": {"plugin": "materialize-sqlite", "config": {"path": views}}},
                "bindings": [{"source": "acme/counts", "resource": {"table": "counts_log"}, "deltaUpdates": true}],
                "limits": {"txnTimeMinMs": 3000, "txnTimeMaxMs": 5000},
            }},
        },
    });
    let r = http
        .post(served.url("/v1/catalog"))
        .json(&bundle)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let ingest = async |n: u64| {
        let r = http
            .post(served.url("/v1/collections/acme%2Fcounts/documents"))
            .body(format!("{{\"k\": \"a\", \"n\": {n}}}\n"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    };
    let rows = |views: std::path::PathBuf| -> Vec<i64> {
        rusqlite::Connection::open(views)
            .and_then(|c| {
                c.prepare("SELECT n FROM counts_log ORDER BY rowid")?
                    .query_map([], |r| r.get(0))?
                    .collect()
            })
            .unwrap_or_default()
    };
    ingest(1).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while rows(views.clone()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the first transaction did not land"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The first transaction waits out its 3 s: these two arrive meanwhile.
    ingest(2).await;
    ingest(4).await;
    while rows(views.clone()).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the second transaction did not land"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rows(views.clone()), [1, 6]);
}
