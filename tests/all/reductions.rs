//! Reductions where documents meet: ingest combines within a transaction, materializations
//! load the stored row and fully reduce it with the deltas (or append deltas), root deletes
//! delete rows, and reduction errors fail the transaction with nothing committed.

use crate::{Served, plugin_bytes, plugins};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn bundle(views: &std::path::Path) -> Value {
    json!({
        "source": "reductions.rs",
        "catalog": {
            "collections": {
                "ex/counts": {
                    "schema": {
                        "type": "object",
                        "properties": {"key": {"type": "string"}, "n": {"reduce": {"strategy": "sum"}}, "delete": {"type": "boolean"}},
                        "required": ["key"],
                        // The root strategy is chosen per document: a delete, or a merge.
                        "if": {"properties": {"delete": {"const": true}}, "required": ["delete"]},
                        "then": {"reduce": {"strategy": "lastWriteWins", "delete": true}},
                        "else": {"reduce": {"strategy": "merge"}},
                    },
                    "key": ["/key"],
                },
            },
            "materializations": {
                "ex/views": {
                    "endpoint": {"wasm": {"plugin": "materialize-sqlite", "config": {"path": views}}},
                    "bindings": [
                        {"source": "ex/counts", "resource": {"table": "counts"}},
                        {"source": "ex/counts", "resource": {"table": "count_deltas"}, "deltaUpdates": true},
                    ],
                },
            },
        },
    })
}

fn query(db: &std::path::Path, sql: &str) -> Vec<(String, Option<i64>)> {
    rusqlite::Connection::open(db)
        .and_then(|c| {
            let mut stmt = c.prepare(sql)?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .unwrap_or_default()
}

/// Poll until `sql` returns `want` (bounded).
async fn wait_for(db: &std::path::Path, sql: &str, want: &[(&str, Option<i64>)]) {
    let want: Vec<(String, Option<i64>)> = want.iter().map(|(k, n)| (k.to_string(), *n)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = query(db, sql);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql}: want {want:?}, have {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn materializations_reduce_stored_rows_append_deltas_and_delete() {
    let served = Served::start(None).await;
    let http = reqwest::Client::new();
    let views = served.dir.path().join("views.db");
    let r = http
        .post(served.url("/v1/plugins/materialize-sqlite"))
        .body(plugin_bytes(plugins::MATERIALIZE_SQLITE))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(served.url("/v1/catalog"))
        .json(&bundle(&views))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let ingest = |body: &'static str| {
        let (http, url) = (
            http.clone(),
            served.url("/v1/collections/ex%2Fcounts/documents"),
        );
        async move {
            let r = http.post(url).body(body).send().await.unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
            r.json::<Value>().await.unwrap()
        }
    };

    // Two documents of one key in one ingest are combined before they are appended.
    let r =
        ingest("{\"key\":\"a\",\"n\":1}\n{\"key\":\"a\",\"n\":2}\n{\"key\":\"b\",\"n\":5}").await;
    assert_eq!(
        (r["docs"].as_u64(), r["appended"].as_u64()),
        (Some(3), Some(2)),
        "{r}"
    );
    wait_for(
        &views,
        "SELECT key, n FROM counts ORDER BY key",
        &[("a", Some(3)), ("b", Some(5))],
    )
    .await;

    // A later transaction: the stored row is loaded and fully reduced with the delta.
    ingest("{\"key\":\"a\",\"n\":10}").await;
    wait_for(
        &views,
        "SELECT key, n FROM counts ORDER BY key",
        &[("a", Some(13)), ("b", Some(5))],
    )
    .await;
    // The delta binding appended one row per combined delta.
    wait_for(
        &views,
        "SELECT key, n FROM count_deltas ORDER BY rowid",
        &[("a", Some(3)), ("b", Some(5)), ("a", Some(10))],
    )
    .await;

    // A root delete (lastWriteWins with delete, chosen by a conditional) deletes the row.
    ingest("{\"key\":\"b\",\"delete\":true}").await;
    wait_for(
        &views,
        "SELECT key, n FROM counts ORDER BY key",
        &[("a", Some(13))],
    )
    .await;
    // ... and a later document of the key starts it again from nothing.
    ingest("{\"key\":\"b\",\"n\":1}").await;
    wait_for(
        &views,
        "SELECT key, n FROM counts ORDER BY key",
        &[("a", Some(13)), ("b", Some(1))],
    )
    .await;
    // A captured delete (`_meta/op` `d`, what source-postgres writes for a deleted row)
    // deletes the row whatever the annotations say, once it is the key's last change.
    ingest("{\"key\":\"a\",\"_meta\":{\"op\":\"d\"}}").await;
    wait_for(
        &views,
        "SELECT key, n FROM counts ORDER BY key",
        &[("b", Some(1))],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reduction_errors_fail_the_transaction() {
    let served = Served::start(None).await;
    let http = reqwest::Client::new();
    let views = served.dir.path().join("views.db");
    http.post(served.url("/v1/plugins/materialize-sqlite"))
        .body(plugin_bytes(plugins::MATERIALIZE_SQLITE))
        .send()
        .await
        .unwrap();
    http.post(served.url("/v1/catalog"))
        .json(&bundle(&views))
        .send()
        .await
        .unwrap();
    let url = served.url("/v1/collections/ex%2Fcounts/documents");

    let r = http
        .post(&url)
        .body("{\"key\":\"a\",\"n\":3}\n{\"key\":\"a\",\"n\":\"x\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("collection ex/counts"), "{m}");
    assert!(
        m.contains("at /n: 'sum' strategy expects numbers (lhs 3, rhs \"x\")"),
        "{m}"
    );
    let list: Value = flow_tests::get_json(&http, &served.base, "/v1/collections").await;
    assert_eq!(
        list["collections"][0]["head"], 0,
        "nothing may be appended: {list}"
    );

    // An unknown strategy is a publish-time error naming the schema location.
    let mut bad = bundle(&views);
    bad["catalog"]["collections"]["ex/counts"]["schema"]["properties"]["n"]["reduce"] =
        json!({"strategy": "average"});
    let r = http
        .post(served.url("/v1/catalog"))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("collection ex/counts") && m.contains("average") && m.contains("/properties/n"),
        "{m}"
    );

    // A stored row that cannot be reduced with a new delta fails the materialization, and
    // the destination keeps its last committed rows and checkpoint.
    http.post(&url)
        .body("{\"key\":\"z\",\"n\":1}")
        .send()
        .await
        .unwrap();
    wait_for(
        &views,
        "SELECT key, n FROM counts ORDER BY key",
        &[("z", Some(1))],
    )
    .await;
    rusqlite::Connection::open(&views)
        .unwrap()
        .execute(
            "UPDATE counts SET flow_document = '{\"key\":\"z\",\"n\":\"corrupt\"}' WHERE key = 'z'",
            [],
        )
        .unwrap();
    http.post(&url)
        .body("{\"key\":\"z\",\"n\":1}")
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let s = served.host.task_status("ex/views").unwrap();
        if s.state == "failed" {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the materialization did not fail: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let e = status.last_error.unwrap();
    assert!(e.contains("at /n: 'sum' strategy expects numbers"), "{e}");
    assert_eq!(
        query(&views, "SELECT key, n FROM counts"),
        vec![("z".to_string(), Some(1))]
    );
    let deltas = query(&views, "SELECT key, n FROM count_deltas");
    assert_eq!(
        deltas.len(),
        1,
        "the failed transaction's delta rows were rolled back: {deltas:?}"
    );
}

/// A collection with `writeSchema` and `readSchema`: its materialization combines what it
/// reads by the read schema's annotations, and a document the write schema took but the
/// read schema refuses fails the materialization, naming the collection, the offset and the
/// read schema, with the destination keeping its last committed rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn materializations_read_by_the_read_schema() {
    let served = Served::start(None).await;
    let http = reqwest::Client::new();
    let views = served.dir.path().join("views.db");
    flow_tests::deploy(
        &http,
        &served.base,
        "materialize-sqlite",
        plugins::MATERIALIZE_SQLITE,
    )
    .await;
    let catalog = json!({
        "source": "reductions.rs",
        "catalog": {
            "collections": {
                "ex/readings": {
                    "writeSchema": {
                        "type": "object",
                        "properties": {"key": {"type": "string"}, "n": {"type": "integer"}},
                        "required": ["key"],
                    },
                    "readSchema": {
                        "type": "object",
                        "reduce": {"strategy": "merge"},
                        "properties": {"key": {"type": "string"}, "n": {"type": "integer", "reduce": {"strategy": "sum"}}},
                        "required": ["key", "n"],
                    },
                    "key": ["/key"],
                },
            },
            "materializations": {
                "ex/views": {
                    "endpoint": {"wasm": {"plugin": "materialize-sqlite", "config": {"path": views}}},
                    "bindings": [{"source": "ex/readings", "resource": {"table": "readings"}}],
                },
            },
        },
    });
    let r = http
        .post(served.url("/v1/catalog"))
        .json(&catalog)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let url = served.url("/v1/collections/ex%2Freadings/documents");
    for body in ["{\"key\":\"a\",\"n\":1}", "{\"key\":\"a\",\"n\":2}"] {
        let r = http.post(&url).body(body).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    wait_for(
        &views,
        "SELECT key, n FROM readings ORDER BY key",
        &[("a", Some(3))],
    )
    .await;

    // Valid by the write schema (it is appended), not by the read schema.
    let r = http
        .post(&url)
        .body("{\"key\":\"b\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let failed =
        crate::captures::wait_for_task(&http, &served.base, "ex/views", |t| t["state"] == "failed")
            .await;
    let why = failed["lastError"].as_str().unwrap_or_default();
    assert!(
        why.contains("ex/readings offset")
            && why.contains("does not match the collection's readSchema")
            && why.contains("n"),
        "{failed:#}"
    );
    assert_eq!(
        query(&views, "SELECT key, n FROM readings ORDER BY key"),
        [("a".to_string(), Some(3))]
    );
}

/// A key deleted (`_meta/op: d`) and then written again is a row again, in a collection with
/// `reduce` annotations too (a root `merge` kept the deletion's `op` under the write, and the
/// row was deleted): whether both changes come in one ingest (combined as they are written)
/// or in two that one materialization transaction reads (combined as they are read). A
/// deletion is a document like the others to the reductions (a `sum` goes on over it; a
/// schema that wants it to reset says so: `if _meta/op is d then delete`); only the last
/// change of a key decides whether it is a row.
#[test]
fn a_write_after_a_delete_of_its_key_is_a_row_again() {
    use flow_host::catalog::{Bundle, Catalog};
    use flow_host::{Host, HostOptions};
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views.db");
    let host = Host::open(HostOptions::new(dir.path().join("data"))).unwrap();
    let counts = json!({
        "schema": {"type": "object", "reduce": {"strategy": "merge"},
                   "properties": {"id": {"type": "integer"},
                                  "n": {"type": "integer", "reduce": {"strategy": "sum"}}},
                   "required": ["id"]},
        "key": ["/id"],
    });
    let catalog = |with_views: bool| {
        let mut c = json!({"collections": {"r/counts": counts}});
        if with_views {
            c["materializations"] = json!({"r/views": {
                "endpoint": {"wasm": {"module": "sqlite.wasm", "config": {"path": views}}},
                "bindings": [{"source": "r/counts", "resource": {"table": "counts"}}],
            }});
        }
        let mut b = Bundle {
            source: "reductions.rs".into(),
            catalog: serde_json::from_value::<Catalog>(c).unwrap(),
            modules: Default::default(),
            origins: Default::default(),
        };
        b.modules.insert(
            "sqlite.wasm".into(),
            plugin_bytes(plugins::MATERIALIZE_SQLITE),
        );
        b
    };
    let rows = || -> Vec<(i64, Option<i64>)> {
        let db = rusqlite::Connection::open(&views).unwrap();
        let mut s = db.prepare("SELECT id, n FROM counts ORDER BY id").unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    host.publish(catalog(false)).unwrap();
    host.ingest(
        "r/counts",
        vec![json!({"id": 1, "n": 1}), json!({"id": 2, "n": 1})],
    )
    .unwrap();
    // Combined as read: a delete of 1 and a write of it, in two ingests one transaction reads.
    host.ingest("r/counts", vec![json!({"id": 1, "_meta": {"op": "d"}})])
        .unwrap();
    host.ingest("r/counts", vec![json!({"id": 1, "n": 5})])
        .unwrap();
    host.publish(catalog(true)).unwrap();
    host.wait_idle(Duration::from_secs(60)).unwrap();
    assert_eq!(host.task_status("r/views").unwrap().transactions, 1);
    assert_eq!(rows(), [(1, Some(6)), (2, Some(1))]);
    // Combined as written: both in one ingest.
    host.ingest(
        "r/counts",
        vec![
            json!({"id": 2, "_meta": {"op": "d"}}),
            json!({"id": 2, "n": 7}),
        ],
    )
    .unwrap();
    host.wait_idle(Duration::from_secs(60)).unwrap();
    assert_eq!(rows(), [(1, Some(6)), (2, Some(8))]);
    // And a delete after a write of one ingest deletes.
    host.ingest(
        "r/counts",
        vec![
            json!({"id": 1, "n": 1}),
            json!({"id": 1, "_meta": {"op": "d"}}),
        ],
    )
    .unwrap();
    host.wait_idle(Duration::from_secs(60)).unwrap();
    assert_eq!(rows(), [(2, Some(8))]);
}
