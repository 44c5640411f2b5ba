//! Logical partitions (issue 14): a collection with `partition: true` projections keeps one
//! journal per combination of values, with fragments of its own under
//! `{collection}/{field}={value}/pivot=00/`; readers (derivations, materializations, the read
//! API) read them as one collection or as their selectors say, and resume each where it was.

use crate::{plugin_bytes, plugins};
use flow_host::catalog::{Bundle, Catalog};
use flow_host::{Host, HostOptions};
use flow_tests::Proc;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const TICKS: &str = "acme/ticks";

fn ticks_def(fragments: Value) -> Value {
    json!({
        "schema": {"type": "object",
                   "properties": {"id": {"type": "integer"}, "exchange": {"type": "string"},
                                  "price": {"type": "number"}},
                   "required": ["id", "exchange", "price"]},
        "key": ["/id"],
        "projections": {"exchange": {"location": "/exchange", "partition": true}},
        "journals": {"fragments": fragments},
    })
}

fn tick(id: u64) -> Value {
    let exchange = ["NYSE", "NYSE Arca", "LSE"][(id % 3) as usize];
    json!({"id": id, "exchange": exchange, "price": id as f64 / 4.0})
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn ingest(http: &reqwest::Client, p: &Proc, docs: &[Value]) -> Value {
    let body: String = docs.iter().map(|d| format!("{d}\n")).collect();
    let r = http
        .post(p.url(&format!(
            "/v1/collections/{}/documents",
            TICKS.replace('/', "%2F")
        )))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// GET a read of `TICKS` with `query`: the status and the ids read (or the body).
async fn read(http: &reqwest::Client, p: &Proc, query: &str) -> (u16, Result<Vec<u64>, String>) {
    let r = http
        .get(p.url(&format!(
            "/v1/collections/{}/documents?{query}",
            TICKS.replace('/', "%2F")
        )))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    if status != 200 {
        return (status, Err(text));
    }
    let mut ids: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    ids.sort();
    (status, Ok(ids))
}

async fn collection(http: &reqwest::Client, p: &Proc) -> Value {
    let v: Value = flow_tests::get_json(http, &p.base, "/v1/collections").await;
    v["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == TICKS)
        .cloned()
        .unwrap()
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// Each partition is a journal with fragments of its own under its values' directory; the
/// read API reads one or all; a host with an empty data directory finds every partition's
/// history in the store and appends after it.
#[tokio::test(flavor = "multi_thread")]
async fn partitions_are_journals_with_fragments_of_their_own_and_outlive_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let http = http();
    let store = dir.path().join("store");
    let url = format!("file://{}", store.display());
    let bundle = json!({"source": "partitions.rs", "catalog": {"collections": {
        TICKS: ticks_def(json!({"length": 0.004, "flushInterval": "300ms"})),
    }}});
    let log = dir.path().join("flow.log");
    let p = Proc::start_with(&dir.path().join("data1"), &log, &["--store", &url], &[]).await;
    flow_tests::publish(&http, &p.base, &bundle).await;
    // No partition yet: nothing to read, and nothing to follow.
    assert_eq!(read(&http, &p, "offset=0").await, (200, Ok(vec![])));
    let (status, body) = read(&http, &p, "follow=true").await;
    assert!(status == 400 && body.unwrap_err().contains("none has documents yet"));
    for batch in 0..6 {
        let docs: Vec<Value> = (batch * 30..batch * 30 + 30).map(tick).collect();
        let r = ingest(&http, &p, &docs).await;
        assert_eq!(r["journals"].as_array().unwrap().len(), 3, "{r}");
    }
    // Everything persisted.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let c = loop {
        let c = collection(&http, &p).await;
        if c["fragments"]["unsealedBytes"] == 0 {
            break c;
        }
        assert!(std::time::Instant::now() < deadline, "not persisted: {c}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let journals: Vec<&str> = c["journals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        journals,
        [
            "acme/ticks/exchange=LSE",
            "acme/ticks/exchange=NYSE",
            "acme/ticks/exchange=NYSE+20Arca"
        ],
        "{c}"
    );
    assert_eq!(c["partitions"], json!(["exchange"]));

    // Each file holds documents of its partition only, under the partition's directory.
    let files = files_under(&store);
    assert!(files.len() >= 6, "{files:?}");
    for f in &files {
        let rel = f
            .strip_prefix(&store)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let parts: Vec<&str> = rel.split('/').collect();
        assert_eq!(parts[..2], ["acme", "ticks"], "{rel}");
        assert!(
            parts[3] == "pivot=00" && parts[4].starts_with("utc_date="),
            "{rel}"
        );
        let exchange = match parts[2] {
            "exchange=NYSE" => "NYSE",
            "exchange=NYSE+20Arca" => "NYSE Arca",
            "exchange=LSE" => "LSE",
            other => panic!("unexpected directory {other}"),
        };
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(f).unwrap()),
            &mut text,
        )
        .unwrap();
        for line in text.lines() {
            let doc: Value = serde_json::from_str(line).unwrap();
            assert_eq!(doc["exchange"], exchange, "{rel}: {doc}");
        }
    }

    // The read API: every partition one after another, or one of them; a follow needs one.
    let all: Vec<u64> = (0..180).collect();
    assert_eq!(read(&http, &p, "offset=0").await.1.unwrap(), all);
    let lse: Vec<u64> = (0..180).filter(|i| i % 3 == 2).collect();
    let (status, ids) = read(&http, &p, "offset=0&journal=acme%2Fticks%2Fexchange%3DLSE").await;
    assert_eq!((status, ids.unwrap()), (200, lse));
    let (status, body) = read(&http, &p, "offset=end&follow=true").await;
    let body = body.unwrap_err();
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("has logical partitions") && body.contains("acme/ticks/exchange=NYSE+20Arca"),
        "{body}"
    );
    let (status, body) = read(&http, &p, "offset=0&journal=acme%2Fticks").await;
    assert_eq!(status, 404, "{body:?}");
    let nyse_head = c["journals"][1]["head"].clone();
    p.kill();

    // An empty data directory on the same store: every partition's history, and appends
    // after it.
    let q = Proc::start_with(&dir.path().join("data2"), &log, &["--store", &url], &[]).await;
    flow_tests::publish(&http, &q.base, &bundle).await;
    assert_eq!(read(&http, &q, "offset=0").await.1.unwrap(), all);
    let r = ingest(&http, &q, &[tick(180)]).await;
    assert_eq!(
        r["journals"][0]["journal"], "acme/ticks/exchange=NYSE",
        "{r}"
    );
    assert_eq!(r["journals"][0]["begin"], nyse_head, "{r}");
}

fn bundle(views: &Path) -> Bundle {
    let catalog: Catalog = serde_json::from_value(json!({
        "collections": {
            TICKS: ticks_def(json!({})),
            "acme/copy": {
                "schema": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]},
                "key": ["/id"],
                "derive": {"using": {"wasm": {"module": "passthrough.wasm"}},
                           "transforms": [{"name": "all", "source": TICKS}]},
            },
        },
        "materializations": {
            "acme/views": {
                "endpoint": {"wasm": {"module": "sqlite.wasm", "config": {"path": views}}},
                "bindings": [{
                    "source": {"name": TICKS, "partitions": {"exclude": {"exchange": ["LSE"]}}},
                    "resource": {"table": "ticks"},
                }],
            },
        },
    }))
    .unwrap();
    let mut b = Bundle {
        source: "partitions.rs".into(),
        catalog,
        modules: Default::default(),
        origins: Default::default(),
    };
    b.modules.insert(
        "passthrough.wasm".into(),
        plugin_bytes(plugins::PASSTHROUGH),
    );
    b.modules.insert(
        "sqlite.wasm".into(),
        plugin_bytes(plugins::MATERIALIZE_SQLITE),
    );
    b
}

/// A derivation and a materialization read every partition (or those a selector admits),
/// including one that appears later, and after a restart resume each partition where they
/// were: every document once.
#[test]
fn readers_resume_each_partition_where_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views.db");
    let data = dir.path().join("data");
    let ids_of = |host: &Host, collection: &str| {
        let catalog = host.catalog();
        let c = catalog.collection(collection).unwrap();
        let mut ids = Vec::new();
        host.for_each_document_of(c, None, |d| {
            ids.push(d["id"].as_u64().unwrap());
            Ok(())
        })
        .unwrap();
        ids.sort();
        ids
    };
    let rows = || -> Vec<(u64, String)> {
        let db = rusqlite::Connection::open(&views).unwrap();
        let mut s = db
            .prepare("SELECT id, exchange FROM ticks ORDER BY id")
            .unwrap();
        s.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    {
        let host = Host::open(HostOptions::new(&data)).unwrap();
        host.publish(bundle(&views)).unwrap();
        // Two exchanges first.
        host.ingest(TICKS, (0..40).filter(|i| i % 3 != 1).map(tick).collect())
            .unwrap();
        host.wait_idle(Duration::from_secs(60)).unwrap();
        assert_eq!(ids_of(&host, "acme/copy").len(), 27);
        // A partition that appears while they run.
        host.ingest(TICKS, (0..40).filter(|i| i % 3 == 1).map(tick).collect())
            .unwrap();
        host.wait_idle(Duration::from_secs(60)).unwrap();
        assert_eq!(ids_of(&host, "acme/copy"), (0..40).collect::<Vec<_>>());
        let status = host.task_status("acme/copy").unwrap();
        assert_eq!(status.sources.len(), 3, "{status:?}");
    }
    let host = Host::open(HostOptions::new(&data)).unwrap();
    host.ingest(TICKS, (40..60).map(tick).collect()).unwrap();
    host.wait_idle(Duration::from_secs(60)).unwrap();
    assert_eq!(
        ids_of(&host, "acme/copy"),
        (0..60).collect::<Vec<_>>(),
        "each document derived once"
    );
    // Counters run across restarts: 40 before, 20 after, none read twice.
    let status = host.task_status("acme/copy").unwrap();
    assert_eq!(status.docs_in, 60, "resumed where it was: {status:?}");
    let expected: Vec<(u64, String)> = (0..60)
        .map(tick)
        .filter(|t| t["exchange"] != "LSE")
        .map(|t| {
            (
                t["id"].as_u64().unwrap(),
                t["exchange"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(rows(), expected);
    let status = host.task_status("acme/views").unwrap();
    assert_eq!(
        status.docs_in,
        expected.len() as u64,
        "resumed where it was: {status:?}"
    );
}

/// Partition fields and selectors are checked at publish, and a document is checked for the
/// journal its values name; the partition fields of a collection with documents cannot change.
#[test]
fn partition_fields_and_selectors_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::open(HostOptions::new(dir.path().join("data"))).unwrap();
    let publish = |collections: Value| -> Result<(), String> {
        let catalog: Catalog = serde_json::from_value(json!({"collections": collections})).unwrap();
        host.publish(Bundle {
            source: "partitions.rs".into(),
            catalog,
            modules: Default::default(),
            origins: Default::default(),
        })
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    let refused = |collections: Value, want: &str| {
        let e = publish(collections).unwrap_err();
        assert!(e.contains(want), "{want:?} not in {e}");
    };
    let with_projections = |projections: Value| {
        let mut ticks = ticks_def(json!({}));
        ticks["projections"] = projections;
        json!({TICKS: ticks})
    };
    let mut optional = ticks_def(json!({}));
    optional["schema"]["required"] = json!(["id", "price"]);
    refused(
        json!({TICKS: optional}),
        "projection exchange: a partition field must be a location every document has, but 'exchange' is not listed in `required`",
    );
    refused(
        with_projections(json!({"price": {"location": "/price", "partition": true}})),
        "a partition field is of one type, string, integer or boolean, but /price is number",
    );
    refused(
        with_projections(json!({"ex/change": {"location": "/exchange", "partition": true}})),
        "projection ex/change: a partition field's name is 1-50 letters",
    );
    refused(
        with_projections(json!({"pivot": {"location": "/exchange", "partition": true}})),
        "projection pivot: 'pivot' names the directories of fragments",
    );
    let mut misspelled = ticks_def(json!({}));
    misspelled["projections"] = json!({"exchange": {"location": "/exchange", "partiton": true}});
    let catalog: Result<Catalog, _> =
        serde_json::from_value(json!({"collections": {TICKS: misspelled}}));
    assert!(catalog.is_err(), "a misspelled `partition` is refused");

    let reader = |selector: Value| {
        json!({
            TICKS: ticks_def(json!({})),
            "acme/copy": {
                "schema": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]},
                "key": ["/id"],
                "derive": {"using": {"wasm": {"plugin": "p"}},
                           "transforms": [{"name": "all", "source": {"name": TICKS, "partitions": selector}}]},
            },
        })
    };
    refused(
        reader(json!({"include": {"venue": ["NYSE"]}})),
        "partitions.include: 'venue' is not a partition field of acme/ticks (it has exchange)",
    );
    refused(
        reader(json!({"exclude": {"exchange": [3]}})),
        "partitions.exclude.exchange: 3 is not a value of the field (a string)",
    );

    // Published; a document whose values name too long a journal is refused, nothing appended.
    publish(json!({TICKS: ticks_def(json!({}))})).unwrap();
    let long = json!({"id": 1, "exchange": "é".repeat(200), "price": 1});
    let e = host
        .ingest(TICKS, vec![tick(0), long])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("document 2: partition field exchange (/exchange) is 1200 bytes as a journal name writes it, over the limit of 200"),
        "{e}"
    );
    assert!(
        host.journals_to_read(TICKS, None).unwrap().is_empty(),
        "nothing was appended"
    );
    host.ingest(TICKS, vec![tick(0)]).unwrap();
    refused(
        with_projections(json!({})),
        "collection acme/ticks: its logical partition fields were exchange (/exchange) and would be none",
    );
}
