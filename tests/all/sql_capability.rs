//! The `sql` capability against a hostile connector (`plugins/sql-probe`), over a real `flow
//! serve` process so its memory can be read: a query returning 1 GiB, a query without end, and
//! transaction control and other databases in disguise. Each ends as a clean task error naming
//! the limit or the rule; the host's memory stays bounded, a publish does not wait on a
//! plugin's query, and a healthy task beside them keeps deriving.

use crate::plugins;
use flow_tests::Proc;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const LIMITS: &str =
    r#"{"callDeadlineMs": 200, "docBytesMax": 1048576, "hostResultBytesMax": 4194304}"#;

/// (mode, parts of the task's error)
const CASES: &[(&str, &[&str])] = &[
    (
        "huge",
        &["over the cap of 4194304 bytes per host call (hostResultBytesMax)"],
    ),
    ("slow", &["CPU deadline of 200 ms per call"]),
    ("control", &["control: "]),
];

fn bundle(dir: &std::path::Path) -> Value {
    let mut materializations = serde_json::Map::new();
    for (mode, _) in CASES {
        materializations.insert(
            format!("m/{mode}"),
            json!({
                "endpoint": {"wasm": {"module": "sql.wasm", "config": {
                    "mode": mode, "path": dir.join(format!("{mode}.db"))}}},
                "bindings": [{"source": "s/in", "resource": {}}],
            }),
        );
    }
    json!({
        "source": "sql-capability",
        "catalog": {
            "collections": {
                "s/in": {"schema": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}, "key": ["/id"]},
                "s/ok": {"schema": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}, "key": ["/id"],
                         "derive": {"using": {"wasm": {"module": "pass.wasm"}},
                                    "transforms": [{"name": "fromIn", "source": "s/in"}]}},
            },
            "materializations": materializations,
        },
        "modules": {
            "sql.wasm": flow_tests::module_base64(plugins::SQL_PROBE),
            "pass.wasm": flow_tests::module_base64(plugins::PASSTHROUGH),
        },
    })
}

async fn tasks(http: &reqwest::Client, p: &Proc) -> Vec<Value> {
    flow_tests::get_json(http, &p.base, "/v1/tasks").await["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Publish `bundle` and wait until each case's materialization failed: (name, error), each
/// error checked for its case's parts.
async fn failures(http: &reqwest::Client, p: &Proc, bundle: &Value) -> Vec<(String, String)> {
    flow_tests::publish(http, &p.base, bundle).await;
    let mut out = Vec::new();
    for (mode, parts) in CASES {
        let name = format!("m/{mode}");
        let error = failed(http, p, &name).await;
        for part in *parts {
            assert!(
                error.contains(part),
                "{name}: expected {part:?} in {error:?}"
            );
        }
        out.push((name, error));
    }
    out
}

/// Wait until task `name` failed: its error.
async fn failed(http: &reqwest::Client, p: &Proc, name: &str) -> String {
    let mut error = String::new();
    wait_for(&format!("{name} to fail"), async || {
        let t = tasks(http, p).await;
        match t
            .iter()
            .find(|t| t["name"] == name && t["state"] == "failed")
        {
            Some(s) => {
                error = s["lastError"].as_str().unwrap_or_default().to_string();
                true
            }
            None => false,
        }
    })
    .await;
    error
}

/// `flow serve` in `dir` with `LIMITS`, taking a database password from the environment.
async fn serve_with_password(dir: &std::path::Path, password: (&str, &str)) -> Proc {
    Proc::start_with(
        &dir.join("data"),
        &dir.join("flow.log"),
        &["--limits", LIMITS],
        &[password],
    )
    .await
}

async fn wait_for(what: &str, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sql_is_bounded_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("flow.log");
    let p = Proc::start_with(&dir.path().join("data"), &log, &["--limits", LIMITS], &[]).await;
    let http = reqwest::Client::new();
    let (baseline, _) = p.rss();
    let bundle = bundle(dir.path());
    for (name, error) in failures(&http, &p, &bundle).await {
        if name == "m/control" {
            assert!(!error.contains("ACCEPTED"), "{name}: {error}");
            assert_eq!(
                error.matches("\": refused (").count(),
                13,
                "{name}: {error}"
            );
            assert!(
                error.contains("transaction control is the host's"),
                "{name}: {error}"
            );
            assert!(
                error.contains("ATTACH and DETACH are refused"),
                "{name}: {error}"
            );
        }
    }

    // A publish restarts every task; none of them may hold it up with a query.
    let started = Instant::now();
    let r = http
        .post(p.url("/v1/catalog"))
        .json(&bundle)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "a publish waited {took:?} on plugin queries"
    );

    // The healthy derivation beside them derives.
    let docs: String = (0..5).map(|id| format!("{{\"id\": {id}}}\n")).collect();
    let r = http
        .post(p.url("/v1/collections/s%2Fin/documents"))
        .body(docs)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "ingest: {}", r.text().await.unwrap());
    let target = flow_tests::collection_head(&http, &p.base, "s/in").await;
    // The healthy derivation has read (and committed) everything ingested.
    wait_for("s/ok to derive", async || {
        tasks(&http, &p).await.iter().any(|t| {
            t["name"] == "s/ok" && t["sources"][0]["offset"].as_u64().unwrap_or(0) >= target
        })
    })
    .await;

    // A query of 1 GiB left the host's memory where it was, give or take 256 MiB.
    let (_, peak) = p.rss();
    eprintln!(
        "host RSS: baseline {} MiB, peak {} MiB",
        baseline >> 20,
        peak >> 20
    );
    assert!(
        peak < baseline + (256 << 20),
        "host peak RSS {} MiB over a baseline of {} MiB",
        peak >> 20,
        baseline >> 20
    );
}

/// The same hostile connector against MariaDB, in MySQL's SQL: the result cap and the deadline
/// hold, transaction control in MySQL's disguises is refused, DDL after a write (which MySQL
/// would commit implicitly) is refused, and the host's transaction was never broken: the
/// probe's write is rolled back with the failed `open`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sql_into_mysql_is_bounded_and_refused() {
    let my = flow_tests::MyServer::start();
    let dir = tempfile::tempdir().unwrap();
    let p = serve_with_password(
        dir.path(),
        (crate::mysql::PASSWORD_ENV, flow_tests::MY_PASSWORD),
    )
    .await;
    let http = reqwest::Client::new();
    let mut bundle = bundle(dir.path());
    for (mode, _) in CASES {
        let mut config = my.endpoint_config(crate::mysql::PASSWORD_ENV);
        config["mode"] = json!(mode);
        config["dialect"] = json!("mysql");
        bundle["catalog"]["materializations"][format!("m/{mode}")]["endpoint"] =
            json!({"connector": "mysql", "wasm": {"module": "sql.wasm", "config": config}});
    }
    for (name, error) in failures(&http, &p, &bundle).await {
        let mode = name.trim_start_matches("m/");
        if mode == "control" {
            // Everything is refused but creating a table before any write, and a write.
            let accepted: Vec<&str> = error
                .split("; ")
                .filter(|s| s.ends_with(": ACCEPTED"))
                .collect();
            assert_eq!(
                accepted,
                [
                    "\"CREATE TABLE IF NOT EXISTS flow_probe (i INT)\": ACCEPTED",
                    "\"INSERT INTO flow_probe VALUES (1)\": ACCEPTED"
                ],
                "{error}"
            );
            assert_eq!(error.matches("\": refused (").count(), 15, "{error}");
            for part in [
                "transaction control is the host's",
                "executable comments",
                "session settings are the host's",
                "in MySQL a DDL statement commits the open transaction",
            ] {
                assert!(error.contains(part), "{part}: {error}");
            }
        }
    }
    // The probe's insert went with its failed transaction: nothing ended it early.
    assert_eq!(my.sql("SELECT count(*) FROM flow_probe"), "0");
    p.kill();
}

/// The `send` probe into a server: its task's error.
async fn send_probe(dir: &std::path::Path, password: (&str, &str), endpoint: Value) -> String {
    let p = serve_with_password(dir, password).await;
    let http = reqwest::Client::new();
    let mut bundle = bundle(dir);
    bundle["catalog"]["materializations"] = json!({"m/send": {
        "endpoint": endpoint,
        "bindings": [{"source": "s/in", "resource": {}}],
    }});
    flow_tests::publish(&http, &p.base, &bundle).await;
    let error = failed(&http, &p, "m/send").await;
    p.kill();
    error
}

/// Statements a plugin sends without waiting (`sql.send`, WIT 0.1.3) into PostgreSQL, where
/// they run on a worker while the plugin goes on: transaction control is refused at once, a
/// sent insert that fails is the answer of the next call that waits (naming the statement and
/// the server's reason), and the failed transaction leaves nothing behind (not even its table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_sent_into_postgres_fail_the_transaction_with_their_error() {
    let pg = flow_tests::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = pg.endpoint_config(crate::postgres::PASSWORD_ENV);
    config["mode"] = json!("send");
    let error = send_probe(
        dir.path(),
        (crate::postgres::PASSWORD_ENV, flow_tests::PG_PASSWORD),
        json!({"connector": "postgres", "wasm": {"module": "sql.wasm", "config": config}}),
    )
    .await;
    for part in [
        "COMMIT: refused (statement refused: COMMIT: transaction control is the host's",
        "then: a statement sent earlier (INSERT INTO flow_probe VALUES ($1)) failed: ERROR: duplicate key value violates unique constraint",
    ] {
        assert!(error.contains(part), "{part}: {error}");
    }
    assert!(!error.contains("then: 1 row"), "{error}");
    // The table went with the failed transaction.
    assert_eq!(pg.psql("SELECT to_regclass('flow_probe') IS NULL"), "t");
}

/// The same into MariaDB: sent statements run on a worker as well; DDL cannot be sent (MySQL
/// commits it implicitly, so it runs only when executed), and the failed transaction's rows
/// are rolled back (its table, created by DDL, stays, empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_sent_into_mysql_fail_the_transaction_with_their_error() {
    let my = flow_tests::MyServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = my.endpoint_config(crate::mysql::PASSWORD_ENV);
    config["mode"] = json!("send");
    config["dialect"] = json!("mysql");
    let error = send_probe(
        dir.path(),
        (crate::mysql::PASSWORD_ENV, flow_tests::MY_PASSWORD),
        json!({"connector": "mysql", "wasm": {"module": "sql.wasm", "config": config}}),
    )
    .await;
    for part in [
        "COMMIT: refused (statement refused: COMMIT: transaction control is the host's",
        "send DDL: refused (statement refused: CREATE: in MySQL a DDL statement commits the open transaction, so it is executed, not sent)",
        "then: a statement sent earlier (INSERT INTO flow_probe VALUES (?)) failed: ",
        "Duplicate entry '1'",
    ] {
        assert!(error.contains(part), "{part}: {error}");
    }
    assert_eq!(my.sql("SELECT count(*) FROM flow_probe"), "0");
}
