//! Complete history (issue 4): journals sealed into fragments in object storage, read back by
//! new tasks and by a host with an empty data directory; an S3-compatible server (moto) on
//! loopback; a failing store; kills between the steps of sealing.

use crate::plugins;
use flow_tests::{Proc, S3Server};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const EVENTS: &str = "acme/events";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A catalog of `acme/events` with the given `journals.fragments`, and optionally a
/// pass-through derivation of it (`acme/copy`).
fn bundle(fragments: Value, derive: bool) -> Value {
    let schema =
        json!({"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]});
    let mut b = json!({
        "source": "fragments-test",
        "catalog": {"collections": {
            EVENTS: {"schema": schema, "key": ["/id"], "journals": {"fragments": fragments}},
        }},
    });
    if derive {
        b["catalog"]["collections"]["acme/copy"] = json!({
            "schema": schema, "key": ["/id"], "journals": {"fragments": fragments},
            "derive": {"using": {"wasm": {"module": "p.wasm"}},
                       "transforms": [{"name": "all", "source": EVENTS}]},
        });
        b["modules"] = json!({"p.wasm": flow_tests::module_base64(plugins::PASSTHROUGH)});
    }
    b
}

fn events(from: u64, n: u64) -> Vec<Value> {
    (from..from + n)
        .map(|id| json!({"id": id, "note": format!("event {id} with some padding to fill fragments")}))
        .collect()
}

/// POST documents; the status and body.
async fn ingest(http: &reqwest::Client, p: &Proc, docs: &[Value]) -> (u16, String) {
    let body: String = docs.iter().map(|d| format!("{d}\n")).collect();
    let r = http
        .post(p.url(&format!(
            "/v1/collections/{}/documents",
            EVENTS.replace('/', "%2F")
        )))
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The ids of every document of `collection`, read from offset 0 (fragments, then the head).
async fn ids(http: &reqwest::Client, p: &Proc, collection: &str) -> Vec<u64> {
    let path = format!(
        "/v1/collections/{}/documents?offset=0",
        collection.replace('/', "%2F")
    );
    flow_tests::read_ndjson(http, &p.base, &path)
        .await
        .iter()
        .map(|d| d["id"].as_u64().expect("a document without an id"))
        .collect()
}

/// `GET /v1/collections` entry of `collection`.
async fn collection_status(http: &reqwest::Client, p: &Proc, collection: &str) -> Value {
    let v: Value = flow_tests::get_json(http, &p.base, "/v1/collections").await;
    v["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == collection)
        .cloned()
        .unwrap_or_else(|| panic!("{collection} is not listed: {v}"))
}

/// Wait until everything written to `collection` is persisted (no unsealed bytes).
async fn wait_persisted(http: &reqwest::Client, p: &Proc, collection: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let c = collection_status(http, p, collection).await;
        if c["fragments"]["unsealedBytes"] == 0 && c["head"].as_u64() > Some(0) {
            assert_eq!(c["fragments"]["persistedThrough"], c["head"], "{c}");
            return c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not persisted within 60 s: {c}\n{}",
            p.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until task `name` is in `state`; its status.
async fn wait_task_state(http: &reqwest::Client, p: &Proc, name: &str, state: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let t: Value = flow_tests::get_json(
            http,
            &p.base,
            &format!("/v1/tasks/{}", name.replace('/', "%2F")),
        )
        .await;
        if t["state"] == state {
            return t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "task {name} is not {state}: {t}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Tiny fragments, sealed within 300 ms: tests see many of them quickly.
fn tiny() -> Value {
    json!({"length": 0.004, "flushInterval": "300ms"})
}

/// A `file://` store at `DIR/store`, shared by hosts over `DIR/<data>` that log to
/// `DIR/flow.log`.
struct FileStore {
    dir: std::path::PathBuf,
    root: std::path::PathBuf,
    url: String,
}

impl FileStore {
    fn new(dir: &Path) -> FileStore {
        let root = dir.join("store");
        let url = format!("file://{}", root.display());
        FileStore {
            dir: dir.to_path_buf(),
            root,
            url,
        }
    }

    /// A host over `DIR/<data>` on this store, with `acme/events` published in tiny fragments.
    async fn host(&self, http: &reqwest::Client, data: &str) -> Proc {
        let p = Proc::start_with(
            &self.dir.join(data),
            &self.dir.join("flow.log"),
            &["--store", &self.url],
            &[],
        )
        .await;
        flow_tests::publish(http, &p.base, &bundle(tiny(), false)).await;
        p
    }
}

/// Ingest `batches` batches of 25 events (ids from 0) and wait until all is persisted; the
/// collection's status.
async fn ingest_persisted(http: &reqwest::Client, p: &Proc, batches: u64) -> Value {
    for batch in 0..batches {
        let (status, body) = ingest(http, p, &events(batch * 25, 25)).await;
        assert_eq!(status, 200, "{body}");
    }
    wait_persisted(http, p, EVENTS).await
}

/// The documents of a gzip NDJSON fragment file, read with plain gzip and `serde_json`.
fn gzip_docs(path: &Path) -> Vec<Value> {
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()),
        &mut text,
    )
    .unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

/// Sealed history in the default `file://` store: external tools can read the files, a
/// derivation created afterwards backfills from the first document, and a host with an empty
/// data directory given the same store and catalog reads all of it and appends after it.
#[tokio::test(flavor = "multi_thread")]
async fn history_in_a_file_store_backfills_new_tasks_and_outlives_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let http = http();
    let files_store = FileStore::new(dir.path());
    let store = &files_store.root;
    let p = files_store.host(&http, "data1").await;
    let c = ingest_persisted(&http, &p, 20).await;
    assert!(c["fragments"]["fragments"].as_u64().unwrap() >= 5, "{c}");
    let all: Vec<u64> = (0..500).collect();
    assert_eq!(ids(&http, &p, EVENTS).await, all);

    // Files are Hive-partitioned gzip NDJSON that any tool can read.
    let files = files_under(store);
    assert_eq!(
        files.len() as u64,
        c["fragments"]["fragments"].as_u64().unwrap()
    );
    let mut from_files = Vec::new();
    for f in &files {
        let rel = f
            .strip_prefix(store)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let parts: Vec<&str> = rel.split('/').collect();
        assert_eq!(parts[..3], ["acme", "events", "pivot=00"], "{rel}");
        assert!(
            parts[3].starts_with("utc_date=") && parts[4].starts_with("utc_hour="),
            "{rel}"
        );
        assert!(rel.ends_with(".ndjson.gz"), "{rel}");
        for doc in gzip_docs(f) {
            assert!(doc["_meta"]["uuid"].is_string());
            from_files.push(doc["id"].as_u64().unwrap());
        }
    }
    from_files.sort();
    assert_eq!(from_files, all);

    // A derivation published now starts from the beginning of history.
    flow_tests::publish(&http, &p.base, &bundle(tiny(), true)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut got = ids(&http, &p, "acme/copy").await;
        if got.len() >= 500 {
            got.sort();
            assert_eq!(got, all, "the derivation saw every document once");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "backfill stalled at {}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p.kill();

    // An empty data directory, the same store and catalog: the whole history is there.
    let q = files_store.host(&http, "data2").await;
    assert_eq!(ids(&http, &q, EVENTS).await, all);
    let head = collection_status(&http, &q, EVENTS).await["head"].clone();
    assert_eq!(
        head, c["head"],
        "the write head continues after the history"
    );
    let (status, body) = ingest(&http, &q, &events(500, 1)).await;
    assert_eq!(status, 200, "{body}");
    let resp: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(resp["begin"], head);
    assert_eq!(ids(&http, &q, EVENTS).await, (0..501).collect::<Vec<_>>());
}

/// An S3-compatible server: fragments land under the store's prefix with the documented
/// layout, history reads back, and a fresh host reads it from the bucket alone.
#[tokio::test(flavor = "multi_thread")]
async fn history_in_s3_reads_back_and_outlives_the_data_dir() {
    let s3 = S3Server::start(0).await;
    s3.create_bucket("flow-history").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("flow.log");
    let env = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let args = ["--store", "s3://flow-history/tenant-a"];
    let http = http();
    let p = Proc::start_with(&dir.path().join("data1"), &log, &args, &env).await;
    let fragments = json!({"length": 0.004, "flushInterval": "300ms", "compressionCodec": "zstd"});
    flow_tests::publish(&http, &p.base, &bundle(fragments.clone(), false)).await;
    for batch in 0..8 {
        let (status, body) = ingest(&http, &p, &events(batch * 25, 25)).await;
        assert_eq!(status, 200, "{body}");
    }
    let c = wait_persisted(&http, &p, EVENTS).await;
    let keys = s3.keys("flow-history", "tenant-a/").await;
    assert_eq!(
        keys.len() as u64,
        c["fragments"]["fragments"].as_u64().unwrap(),
        "{keys:?}"
    );
    for k in &keys {
        assert!(
            k.starts_with("tenant-a/acme/events/pivot=00/utc_date=") && k.ends_with(".ndjson.zst"),
            "{k}"
        );
    }
    let all: Vec<u64> = (0..200).collect();
    assert_eq!(ids(&http, &p, EVENTS).await, all);
    p.kill();

    let q = Proc::start_with(&dir.path().join("data2"), &log, &args, &env).await;
    flow_tests::publish(&http, &q.base, &bundle(fragments, false)).await;
    assert_eq!(ids(&http, &q, EVENTS).await, all);
}

/// The store becomes unreachable: ingests are accepted up to the head bound, then refused
/// with 503 and a message naming the store and the error, and status shows the failures. Once
/// the store is back, sealing resumes by itself, ingests are accepted again, and every
/// accepted document is read once, in order.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_store_applies_backpressure_and_recovers() {
    let s3 = S3Server::start(0).await;
    s3.create_bucket("flow-flaky").await;
    let proxy = flow_tests::Outage::start(s3.port).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("flow.log");
    let env = flow_tests::s3_env(&proxy.endpoint());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let args = [
        "--store",
        "s3://flow-flaky",
        "--limits",
        r#"{"journalHeadBytesMax": 20000}"#,
    ];
    let http = http();
    let p = Proc::start_with(&dir.path().join("data"), &log, &args, &env).await;
    flow_tests::publish(
        &http,
        &p.base,
        &bundle(json!({"length": 0.002, "flushInterval": "200ms"}), true),
    )
    .await;
    let (status, body) = ingest(&http, &p, &events(0, 20)).await;
    assert_eq!(status, 200, "{body}");
    let mut accepted = 20u64;
    let before = wait_persisted(&http, &p, EVENTS).await;

    proxy.set_up(false);
    let refusal = loop {
        let (status, body) = ingest(&http, &p, &events(accepted, 20)).await;
        match status {
            200 => accepted += 20,
            503 => break body,
            s => panic!("ingest answered {s}: {body}"),
        }
        assert!(
            accepted < 2000,
            "no backpressure after {accepted} documents"
        );
    };
    assert!(
        refusal.contains("acme/events")
            && refusal.contains("waiting to be persisted")
            && refusal.contains("s3://flow-flaky"),
        "{refusal}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let c = loop {
        let c = collection_status(&http, &p, EVENTS).await;
        if c["fragments"]["failures"].as_u64() >= Some(1) {
            break c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failure reported: {c}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let unsealed = c["fragments"]["unsealedBytes"].as_u64().unwrap();
    assert!(
        unsealed > 20000,
        "refused at {unsealed} unsealed bytes: {c}"
    );
    assert_eq!(
        c["fragments"]["persistedThrough"], before["head"],
        "nothing sealed since: {c}"
    );
    assert!(c["fragments"]["lastError"].as_str().is_some(), "{c}");
    assert!(
        p.log_tail().contains("fragment maintenance failed"),
        "{}",
        p.log_tail()
    );
    // The derivation writing acme/copy pauses instead of failing.
    let task = wait_task_state(&http, &p, "acme/copy", "backpressure").await;
    assert!(
        task["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("acme/copy") && e.contains("waiting to be persisted")),
        "{task}"
    );
    // A collection added now cannot list its history in the store, so it takes no appends:
    // they could reuse offsets of a history it cannot see.
    let mut with_later = bundle(json!({"length": 0.002, "flushInterval": "200ms"}), true);
    with_later["catalog"]["collections"]["acme/later"] =
        with_later["catalog"]["collections"][EVENTS].clone();
    flow_tests::publish(&http, &p.base, &with_later).await;
    let later = p.url("/v1/collections/acme%2Flater/documents");
    let r = http
        .post(&later)
        .body("{\"id\": 1}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert!(body.contains("could not be listed yet"), "{body}");

    // The store is back; sealing catches up and appends resume.
    proxy.set_up(true);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let (status, body) = ingest(&http, &p, &events(accepted, 20)).await;
        if status == 200 {
            accepted += 20;
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            std::time::Instant::now() < deadline,
            "still refused: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let c = wait_persisted(&http, &p, EVENTS).await;
    assert_eq!(c["fragments"]["failures"], 0, "{c}");
    // acme/later is listed on its own retry schedule; then it takes appends.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = http
            .post(&later)
            .body("{\"id\": 1}\n")
            .send()
            .await
            .unwrap();
        let (status, body) = (r.status(), r.text().await.unwrap());
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            std::time::Instant::now() < deadline,
            "acme/later still refuses: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        ids(&http, &p, EVENTS).await,
        (0..accepted).collect::<Vec<_>>()
    );
    assert!(p.log_tail().contains("works again"), "{}", p.log_tail());
    // The derivation resumed and copied every accepted document once.
    wait_task_state(&http, &p, "acme/copy", "running").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut copied = ids(&http, &p, "acme/copy").await;
        copied.sort();
        if copied.len() as u64 >= accepted {
            assert_eq!(copied, (0..accepted).collect::<Vec<_>>());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "acme/copy stalled at {}",
            copied.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `kill -9` at each step of sealing: after the upload but before the index records it, and
/// after the record but before the trim. After a restart every acknowledged document is read
/// exactly once, in order, the history is complete in the store, and appends go on.
#[tokio::test(flavor = "multi_thread")]
async fn kills_between_upload_index_and_trim_lose_and_duplicate_nothing() {
    for point in ["sealed-uploaded", "sealed-indexed"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let log = dir.path().join("flow.log");
        let http = http();
        let p = Proc::start_with(&data, &log, &[], &[("FLOW_PAUSE_AT", point)]).await;
        flow_tests::publish(
            &http,
            &p.base,
            &bundle(json!({"length": 0.003, "flushInterval": "200ms"}), false),
        )
        .await;
        let mut acked = 0;
        for _ in 0..4 {
            let (status, body) = ingest(&http, &p, &events(acked, 25)).await;
            assert_eq!(status, 200, "{body}");
            acked += 25;
        }
        p.wait_for_log(&format!("paused at {point}"), Duration::from_secs(30))
            .await;
        // Appends still work while sealing is stuck.
        let (status, body) = ingest(&http, &p, &events(acked, 25)).await;
        assert_eq!(status, 200, "{body}");
        acked += 25;
        p.kill();

        let q = Proc::start(&data, &log).await;
        let all: Vec<u64> = (0..acked).collect();
        assert_eq!(
            ids(&http, &q, EVENTS).await,
            all,
            "{point}: right after the restart"
        );
        let c = wait_persisted(&http, &q, EVENTS).await;
        assert_eq!(
            ids(&http, &q, EVENTS).await,
            all,
            "{point}: once all is sealed"
        );
        // The store alone holds the history: no gaps, no overlaps, nothing else.
        let (ranges, others) = flow_tests::fragment_files(&data.join("fragments"), EVENTS);
        assert!(others.is_empty(), "{point}: {others:?}");
        assert_eq!(
            Some(flow_tests::tiled_end(&ranges, point)),
            c["head"].as_u64(),
            "{point}"
        );
        let (status, body) = ingest(&http, &q, &events(acked, 1)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            ids(&http, &q, EVENTS).await,
            (0..=acked).collect::<Vec<_>>()
        );
        q.kill();
    }
}

/// A corrupted fragment and foreign files in the store: a host given the store reports them
/// and reads the rest of the history in order; nothing crashes.
#[tokio::test(flavor = "multi_thread")]
async fn corrupt_and_foreign_files_are_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let http = http();
    let files_store = FileStore::new(dir.path());
    let store = &files_store.root;
    let p = files_store.host(&http, "data1").await;
    ingest_persisted(&http, &p, 8).await;
    p.kill();

    // Flip bytes in the middle of the second fragment; add files no host wrote.
    let files = files_under(store);
    assert!(files.len() >= 3, "{files:?}");
    let victim = &files[1];
    let lost: Vec<u64> = gzip_docs(victim)
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect();
    let mut bytes = std::fs::read(victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(victim, bytes).unwrap();
    let name = victim.file_name().unwrap().to_string_lossy().into_owned();
    let partition = store.join("acme/events/pivot=00");
    std::fs::write(partition.join("_SUCCESS"), "").unwrap();
    std::fs::write(victim.with_file_name("part-00000.parquet"), "PAR1").unwrap();

    let q = files_store.host(&http, "data2").await;
    let path = format!(
        "/v1/collections/{}/documents?offset=0",
        EVENTS.replace('/', "%2F")
    );
    let docs = flow_tests::read_ndjson(&http, &q.base, &path).await;
    let got: Vec<u64> = docs.iter().map(|d| d["id"].as_u64().unwrap()).collect();
    let expected: Vec<u64> = (0..200).filter(|id| !lost.contains(id)).collect();
    assert!(!lost.is_empty());
    assert_eq!(
        got, expected,
        "everything but the corrupt fragment, in order, once"
    );
    let c = collection_status(&http, &q, EVENTS).await;
    let skipped: Vec<&str> = c["fragments"]["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(skipped.len(), 3, "{c}");
    assert!(
        skipped
            .iter()
            .any(|s| s.contains(&name) && s.contains("digest")),
        "{skipped:?}"
    );
    assert!(
        skipped.iter().any(|s| s.contains("_SUCCESS")),
        "{skipped:?}"
    );
    assert!(
        skipped.iter().any(|s| s.contains("part-00000.parquet")),
        "{skipped:?}"
    );
    let (status, body) = ingest(&http, &q, &events(1000, 1)).await;
    assert_eq!(status, 200, "{body}");
    let all = flow_tests::read_ndjson(&http, &q.base, &path).await;
    assert_eq!(
        all.len(),
        got.len() + 1,
        "the host keeps serving after the skip"
    );
}
