//! Materializing into a real MariaDB server, started by each test on loopback
//! (`flow_tests::MyServer`), read back with MariaDB's own client, `mariadb`. The host connects
//! with a password it takes from its environment (`password: {env: ...}`). The pipeline is
//! PostgreSQL's (`postgres::bundle_into`), through `materialize-mysql`.
//!
//!   cargo build -p flow-host && cargo test -p flow-tests --test all mysql

use crate::plugins;
use crate::postgres::{bundle_into, ingest, post, serve, task, wait_for_answer};
use flow_tests::{MY_PASSWORD, MyServer, Proc};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The environment variable a test's host takes the MySQL password from.
pub const PASSWORD_ENV: &str = "FLOW_TEST_MYSQL_PASSWORD";
/// The materialization's name.
const TASK: &str = "acme/my";

fn bundle(my: &MyServer) -> Value {
    bundle_into(
        TASK,
        "mysql",
        "materialize-mysql",
        my.endpoint_config(PASSWORD_ENV),
    )
}

async fn deploy_plugins(http: &reqwest::Client, p: &Proc) {
    for (name, path) in [
        ("totals", plugins::CUSTOMER_TOTALS),
        ("materialize-mysql", plugins::MATERIALIZE_MYSQL),
    ] {
        flow_tests::deploy(http, &p.url(""), name, path).await;
    }
}

async fn wait_for_sql(http: &reqwest::Client, p: &Proc, my: &MyServer, sql: &str, want: &str) {
    wait_for_answer(http, p, |q| my.try_sql(q), sql, want).await
}

/// Wait until the task is in `state`; its status.
async fn wait_for_state(http: &reqwest::Client, p: &Proc, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = task(http, p, TASK).await;
        if t["state"] == state {
            return t;
        }
        assert!(Instant::now() < deadline, "the task is not {state}: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn materialize_into_mysql_standard_delta_deletes_and_types() {
    let my = MyServer::start();
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let p = serve(dir.path()).await;
    deploy_plugins(&http, &p).await;
    let (status, body) = post(&http, &p, "/v1/catalog", &bundle(&my)).await;
    assert_eq!(status, 200, "{body}");

    ingest(
        &http,
        &p,
        "acme/orders",
        &[
            json!({"id": 1, "customer": "alice", "amount": 5}),
            json!({"id": 2, "customer": "bob", "amount": 7.5}),
        ],
    )
    .await;
    ingest(
        &http,
        &p,
        "acme/orders",
        &[json!({"id": 3, "customer": "alice", "amount": 10})],
    )
    .await;
    wait_for_sql(
        &http,
        &p,
        &my,
        "SELECT customer, total, orders FROM customer_totals ORDER BY customer",
        "alice\t15\t2\nbob\t7.5\t1",
    )
    .await;
    wait_for_sql(
        &http,
        &p,
        &my,
        "SELECT customer, max(total), max(orders) FROM customer_totals_log GROUP BY customer ORDER BY customer",
        "alice\t15\t2\nbob\t7.5\t1",
    )
    .await;
    let log =
        my.sql("SELECT customer, total, orders FROM customer_totals_log ORDER BY customer, orders");
    assert!(
        log == "alice\t5\t1\nalice\t15\t2\nbob\t7.5\t1" || log == "alice\t15\t2\nbob\t7.5\t1",
        "{log}"
    );
    // The whole document is JSON, queryable as such.
    assert_eq!(
        my.sql("SELECT JSON_VALUE(flow_document, '$.total') FROM customer_totals WHERE customer = 'bob'"),
        "7.5"
    );

    // Real types from the schema; names that need quoting are quoted.
    ingest(
        &http,
        &p,
        "acme/profiles",
        &[
            json!({"id": 1, "select": "a", "we\"ird": true, "seen": "2026-12-06T10:00:00.25+01:00", "address": {"city": "Lyon", "zip": "69001"}}),
            json!({"id": 2, "select": "b"}),
        ],
    )
    .await;
    wait_for_sql(&http, &p, &my, "SELECT count(*) FROM profiles", "2").await;
    assert_eq!(
        my.sql(
            "SELECT concat(column_name, ':', column_type) FROM information_schema.columns \
             WHERE table_schema = 'views' AND table_name = 'profiles' ORDER BY column_name"
        ),
        "address:longtext\naddress_zip:longtext\ncity:longtext\nflow_document:longtext\nid:bigint(20)\nseen:datetime(6)\nselect:longtext\nwe\"ird:tinyint(1)"
    );
    // MariaDB's JSON is LONGTEXT with a validity check.
    assert!(
        my.sql("SHOW CREATE TABLE profiles")
            .contains("CHECK (json_valid(`flow_document`))"),
    );
    assert_eq!(
        my.sql("SELECT `select`, `we\"ird`, seen, JSON_VALUE(address, '$.city'), city, address_zip FROM profiles WHERE id = 1"),
        "a\t1\t2026-12-06 09:00:00.250000\tLyon\tLyon\t69001"
    );
    // A partial update merges onto the stored row (loaded, reduced, upserted)...
    ingest(
        &http,
        &p,
        "acme/profiles",
        &[json!({"id": 2, "we\"ird": false})],
    )
    .await;
    wait_for_sql(
        &http,
        &p,
        &my,
        "SELECT `select`, `we\"ird` FROM profiles WHERE id = 2",
        "b\t0",
    )
    .await;
    // ... and a root delete removes it.
    ingest(
        &http,
        &p,
        "acme/profiles",
        &[json!({"id": 1, "deleted": true})],
    )
    .await;
    wait_for_sql(&http, &p, &my, "SELECT group_concat(id) FROM profiles", "2").await;

    // The checkpoint is in the same database, with the fence this instance took.
    assert_eq!(
        my.sql("SELECT materialization, fence FROM flow_checkpoints"),
        "acme/my\t1"
    );

    // The password is in no answer of the API and nowhere in the host's log.
    for path in [
        "/v1/catalog",
        "/v1/tasks",
        "/v1/plugins/materialize-mysql/logs",
    ] {
        let text = http
            .get(p.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !text.contains(MY_PASSWORD),
            "{path} shows the password: {text}"
        );
    }
    assert!(
        !p.log_tail().contains(MY_PASSWORD),
        "the log shows the password"
    );
    p.kill();
}

/// The server is killed mid-stream: the task shows `retrying` with the reason and when it
/// tries again, ingest goes on, and once the server is back the table catches up: nothing
/// lost, nothing written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mysql_that_goes_away_is_retried_and_caught_up() {
    let my = MyServer::start();
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let p = serve(dir.path()).await;
    deploy_plugins(&http, &p).await;
    let (status, body) = post(&http, &p, "/v1/catalog", &bundle(&my)).await;
    assert_eq!(status, 200, "{body}");
    let orders = |from: u64, to: u64| -> Vec<Value> {
        (from..to)
            .map(|i| json!({"id": i, "customer": format!("c{}", i % 3), "amount": 1}))
            .collect()
    };
    ingest(&http, &p, "acme/orders", &orders(0, 30)).await;
    wait_for_sql(
        &http,
        &p,
        &my,
        "SELECT sum(orders) FROM customer_totals",
        "30",
    )
    .await;

    my.stop();
    ingest(&http, &p, "acme/orders", &orders(30, 60)).await;
    let retrying = wait_for_state(&http, &p, "retrying").await;
    let why = retrying["lastError"].as_str().unwrap();
    assert!(why.contains("mysql endpoint flow@127.0.0.1:"), "{retrying}");
    assert!(retrying["retryAtMs"].as_u64().is_some(), "{retrying}");
    ingest(&http, &p, "acme/orders", &orders(60, 90)).await;
    assert_eq!(
        task(&http, &p, "acme/customer-totals").await["state"],
        "running"
    );

    my.restart();
    wait_for_sql(
        &http,
        &p,
        &my,
        "SELECT sum(orders) FROM customer_totals",
        "90",
    )
    .await;
    assert_eq!(
        my.sql("SELECT customer, total, orders FROM customer_totals ORDER BY customer"),
        "c0\t30\t30\nc1\t30\t30\nc2\t30\t30"
    );
    // The delta log has no row twice: each (customer, orders) once.
    assert_eq!(
        my.sql("SELECT count(*) - count(DISTINCT customer, orders) FROM customer_totals_log"),
        "0"
    );
    wait_for_state(&http, &p, "running").await;
    p.kill();
}

/// Two hosts materialize the same task into one database: the one that opened last holds the
/// fence, and the other's next commit fails, writing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_mysql_instance_cannot_commit() {
    let my = MyServer::start();
    let http = reqwest::Client::new();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = serve(a_dir.path()).await;
    deploy_plugins(&http, &a).await;
    assert_eq!(post(&http, &a, "/v1/catalog", &bundle(&my)).await.0, 200);
    ingest(
        &http,
        &a,
        "acme/orders",
        &[json!({"id": 1, "customer": "alice", "amount": 1})],
    )
    .await;
    wait_for_sql(
        &http,
        &a,
        &my,
        "SELECT customer, orders FROM customer_totals",
        "alice\t1",
    )
    .await;

    let b = serve(b_dir.path()).await;
    deploy_plugins(&http, &b).await;
    assert_eq!(post(&http, &b, "/v1/catalog", &bundle(&my)).await.0, 200);
    wait_for_sql(&http, &b, &my, "SELECT fence FROM flow_checkpoints", "2").await;

    ingest(
        &http,
        &a,
        "acme/orders",
        &[json!({"id": 2, "customer": "zed", "amount": 1})],
    )
    .await;
    let failed = wait_for_state(&http, &a, "failed").await;
    assert!(
        failed["lastError"].as_str().unwrap().contains("fenced"),
        "{failed}"
    );
    assert_eq!(
        my.sql("SELECT count(*) FROM customer_totals WHERE customer = 'zed'"),
        "0"
    );
    ingest(
        &http,
        &b,
        "acme/orders",
        &[json!({"id": 1, "customer": "alice", "amount": 1})],
    )
    .await;
    ingest(
        &http,
        &b,
        "acme/orders",
        &[json!({"id": 9, "customer": "bob", "amount": 2})],
    )
    .await;
    wait_for_sql(
        &http,
        &b,
        &my,
        "SELECT orders FROM customer_totals WHERE customer = 'bob'",
        "1",
    )
    .await;
    a.kill();
    b.kill();
}

/// Bad configuration: the task fails (or, for a server that does not answer, retries) with a
/// message naming the endpoint and the server's reason; nothing is written. (What publish
/// checks without connecting is shared with PostgreSQL and tested there.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_mysql_configuration_is_named() {
    let my = MyServer::start();
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let p = serve(dir.path()).await;
    deploy_plugins(&http, &p).await;
    let with_config = |edit: &dyn Fn(&mut Value)| {
        let mut b = bundle(&my);
        edit(&mut b["catalog"]["materializations"][TASK]["endpoint"]["wasm"]["config"]);
        b
    };

    // Refused at publish: a missing field, an inline secret.
    let (status, body) = post(
        &http,
        &p,
        "/v1/catalog",
        &with_config(&|c: &mut Value| c["password"] = json!("inline-secret")),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`password` must be {env: NAME} or {file: PATH}"),
        "{message}"
    );
    assert!(!message.contains("inline-secret"), "{message}");

    // Fails the task, naming the endpoint and the server's reason.
    for (edit, expect) in [
        (
            Box::new(|c: &mut Value| c["user"] = json!("nobody")) as Box<dyn Fn(&mut Value)>,
            "Access denied for user 'nobody'",
        ),
        (
            Box::new(|c: &mut Value| c["database"] = json!("nosuchdb")),
            "Access denied for user 'flow'@'127.0.0.1' to database 'nosuchdb'",
        ),
    ] {
        let (status, body) = post(&http, &p, "/v1/catalog", &with_config(&*edit)).await;
        assert_eq!(status, 200, "{body}");
        let t = wait_for_state(&http, &p, "failed").await;
        let why = t["lastError"].as_str().unwrap();
        assert!(why.contains(expect), "{why}");
        assert!(why.contains("mysql endpoint"), "{why}");
        assert!(!why.contains(MY_PASSWORD), "{why}");
    }

    // A server that does not answer (a wrong port): retried, with the reason.
    let (status, body) = post(
        &http,
        &p,
        "/v1/catalog",
        &with_config(&|c: &mut Value| {
            c["address"] = json!(format!("127.0.0.1:{}", flow_tests::free_port()))
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let t = wait_for_state(&http, &p, "retrying").await;
    assert!(
        t["lastError"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("refused"),
        "{t}"
    );

    // A table that exists with a column of another type: named, not altered, nothing written.
    my.sql("CREATE TABLE customer_totals (customer VARCHAR(255) PRIMARY KEY, total TEXT, flow_document JSON NOT NULL)");
    let (status, body) = post(&http, &p, "/v1/catalog", &bundle(&my)).await;
    assert_eq!(status, 200, "{body}");
    ingest(
        &http,
        &p,
        "acme/orders",
        &[json!({"id": 1, "customer": "alice", "amount": 1})],
    )
    .await;
    let t = wait_for_state(&http, &p, "failed").await;
    let why = t["lastError"].as_str().unwrap();
    assert!(
        why.contains("table customer_totals") && why.contains("column total exists with type text"),
        "{why}"
    );
    assert_eq!(my.sql("SELECT count(*) FROM customer_totals"), "0");
    p.kill();
}
