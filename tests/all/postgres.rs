//! Materializing into a real PostgreSQL server, started by each test on loopback
//! (`flow_tests::PgServer`), read back with PostgreSQL's own client, `psql`. The host connects
//! with a password it takes from its environment (`password: {env: ...}`).
//!
//!   cargo build -p flow-host && cargo test -p flow-tests --test all postgres

use crate::destinations::{
    SqlServer, a_stale_instance_cannot_commit, an_outage_is_retried_and_caught_up, bundle_into,
    ingest, post, serve, task, wait_for_answer,
};
use crate::plugins;
use flow_tests::{PG_PASSWORD, PgServer, Proc};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The environment variable a test's host takes the PostgreSQL password from.
pub const PASSWORD_ENV: &str = "FLOW_TEST_PG_PASSWORD";

/// Poll `psql` until `sql` answers `want`, failing with the task statuses and the host's log.
async fn wait_for_psql(http: &reqwest::Client, p: &Proc, pg: &PgServer, sql: &str, want: &str) {
    wait_for_answer(http, p, |q| pg.try_psql(q), sql, want).await
}

/// Deploy the plugins of the demo pipeline into PostgreSQL.
pub async fn deploy_plugins(http: &reqwest::Client, p: &Proc) {
    for (name, path) in [
        ("totals", plugins::CUSTOMER_TOTALS),
        ("materialize-postgres", plugins::MATERIALIZE_POSTGRES),
    ] {
        flow_tests::deploy(http, &p.url(""), name, path).await;
    }
}

/// The demo pipeline into PostgreSQL: orders -> customer totals (Wasm) -> `customer_totals`
/// (standard updates) and `customer_totals_log` (delta updates); and `profiles`, merged by
/// key, whose reductions delete a document (and so its row) on `deleted: true`, with nested
/// and timestamp fields and names that need quoting.
pub fn bundle(pg: &PgServer) -> Value {
    bundle_into(
        "acme/pg",
        "postgres",
        "materialize-postgres",
        pg.endpoint_config(PASSWORD_ENV),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn materialize_into_postgres_standard_delta_deletes_and_types() {
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let p = serve(dir.path()).await;
    deploy_plugins(&http, &p).await;
    let (status, body) = post(&http, &p, "/v1/catalog", &bundle(&pg)).await;
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
    wait_for_psql(
        &http,
        &p,
        &pg,
        "SELECT customer, total, orders FROM customer_totals ORDER BY customer",
        "alice|15|2\nbob|7.5|1",
    )
    .await;
    // Every combined delta of a materialization transaction is a row of the log: alice's
    // first total too, unless both of her derived documents landed in one transaction.
    wait_for_psql(
        &http,
        &p,
        &pg,
        "SELECT customer, max(total), max(orders) FROM customer_totals_log GROUP BY customer ORDER BY customer",
        "alice|15|2\nbob|7.5|1",
    )
    .await;
    let log = pg
        .psql("SELECT customer, total, orders FROM customer_totals_log ORDER BY customer, orders");
    assert!(
        log == "alice|5|1\nalice|15|2\nbob|7.5|1" || log == "alice|15|2\nbob|7.5|1",
        "{log}"
    );
    // The whole document is JSONB, queryable as such.
    assert_eq!(
        pg.psql("SELECT flow_document->>'total' FROM customer_totals WHERE customer = 'bob'"),
        "7.5"
    );

    // Real types from the schema; names that need quoting are quoted.
    ingest(
        &http,
        &p,
        "acme/profiles",
        &[
            json!({"id": 1, "select": "a", "we\"ird": true, "seen": "2026-12-06T10:00:00Z", "address": {"city": "Lyon", "zip": "69001"}}),
            json!({"id": 2, "select": "b"}),
        ],
    )
    .await;
    wait_for_psql(&http, &p, &pg, "SELECT count(*) FROM profiles", "2").await;
    assert_eq!(
        pg.psql(
            "SELECT column_name || ':' || data_type FROM information_schema.columns WHERE table_name = 'profiles' ORDER BY column_name"
        ),
        "address:jsonb\naddress_zip:text\ncity:text\nflow_document:jsonb\nid:bigint\nseen:timestamp with time zone\nselect:text\nwe\"ird:boolean"
    );
    assert_eq!(
        pg.psql("SELECT \"select\", \"we\"\"ird\", seen AT TIME ZONE 'UTC', address->>'city', city, address_zip FROM profiles WHERE id = 1"),
        "a|t|2026-12-06 10:00:00|Lyon|Lyon|69001"
    );
    // A partial update merges onto the stored row (loaded, reduced, upserted)...
    ingest(
        &http,
        &p,
        "acme/profiles",
        &[json!({"id": 2, "we\"ird": false})],
    )
    .await;
    wait_for_psql(
        &http,
        &p,
        &pg,
        "SELECT \"select\", \"we\"\"ird\" FROM profiles WHERE id = 2",
        "b|f",
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
    wait_for_psql(
        &http,
        &p,
        &pg,
        "SELECT string_agg(id::text, ',') FROM profiles",
        "2",
    )
    .await;

    // The checkpoint is in the same database, with the fence this instance took.
    assert_eq!(
        pg.psql("SELECT materialization, fence FROM flow_checkpoints"),
        "acme/pg|1"
    );

    // The password is in no answer of the API and nowhere in the host's log.
    for path in [
        "/v1/catalog",
        "/v1/tasks",
        "/v1/plugins/materialize-postgres/logs",
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
            !text.contains(PG_PASSWORD),
            "{path} shows the password: {text}"
        );
    }
    assert!(
        !p.log_tail().contains(PG_PASSWORD),
        "the log shows the password"
    );
    p.kill();
}

impl SqlServer for PgServer {
    const TASK: &'static str = "acme/pg";
    const ENDPOINT: &'static str = "postgres endpoint flow@127.0.0.1:";
    fn try_sql(&self, sql: &str) -> Result<String, String> {
        self.try_psql(sql)
    }
    fn stop(&self) {
        PgServer::stop(self)
    }
    fn restart(&self) {
        PgServer::restart(self)
    }
    fn bundle(&self) -> Value {
        bundle(self)
    }
    async fn deploy(&self, http: &reqwest::Client, p: &Proc) {
        deploy_plugins(http, p).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_goes_away_is_retried_and_caught_up() {
    an_outage_is_retried_and_caught_up(&PgServer::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_postgres_instance_cannot_commit() {
    a_stale_instance_cannot_commit(&PgServer::start()).await;
}

/// Bad configuration: refused at publish where it can be checked without connecting, or the
/// task fails (or, for a server that does not answer, retries) with a message naming the
/// endpoint and the reason; nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_refused_or_named() {
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let p = serve(dir.path()).await;
    deploy_plugins(&http, &p).await;
    let with_config = |edit: &dyn Fn(&mut Value)| {
        let mut b = bundle(&pg);
        edit(&mut b["catalog"]["materializations"]["acme/pg"]["endpoint"]["wasm"]["config"]);
        b
    };

    // Refused at publish.
    for (edit, expect) in [
        (
            Box::new(|c: &mut Value| c["password"] = json!("inline-secret"))
                as Box<dyn Fn(&mut Value)>,
            "`password` must be {env: NAME} or {file: PATH}",
        ),
        (
            Box::new(|c: &mut Value| c["password"] = json!({"env": "NO_SUCH_VARIABLE_X"})),
            "no environment variable NO_SUCH_VARIABLE_X",
        ),
        (
            Box::new(|c: &mut Value| {
                c.as_object_mut().unwrap().remove("database");
            }),
            "needs `database`",
        ),
        (
            Box::new(|c: &mut Value| c["address"] = json!("127.0.0.1:port")),
            "is not a port number",
        ),
    ] {
        let (status, body) = post(&http, &p, "/v1/catalog", &with_config(&*edit)).await;
        assert_eq!(status, 400, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(expect), "{message}");
        assert!(message.contains("acme/pg"), "{message}");
        assert!(!message.contains("inline-secret"), "{message}");
    }

    // Fails the task, naming the endpoint and the server's reason.
    let named = format!("postgres endpoint flow@{}/views", pg.address());
    for (edit, expect) in [
        (
            Box::new(|c: &mut Value| c["user"] = json!("nobody")) as Box<dyn Fn(&mut Value)>,
            "authentication failed",
        ),
        (
            Box::new(|c: &mut Value| c["database"] = json!("nosuchdb")),
            "does not exist",
        ),
    ] {
        let (status, body) = post(&http, &p, "/v1/catalog", &with_config(&*edit)).await;
        assert_eq!(status, 200, "{body}");
        let deadline = Instant::now() + Duration::from_secs(60);
        let t = loop {
            let t = task(&http, &p, "acme/pg").await;
            if t["state"] == "failed" {
                break t;
            }
            assert!(Instant::now() < deadline, "the task did not fail: {t}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let why = t["lastError"].as_str().unwrap();
        assert!(why.contains(expect), "{why}");
        assert!(why.contains("postgres endpoint"), "{why}");
        let _ = &named;
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
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = task(&http, &p, "acme/pg").await;
        if t["state"] == "retrying" {
            assert!(
                t["lastError"]
                    .as_str()
                    .unwrap()
                    .to_lowercase()
                    .contains("refused"),
                "{t}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the task did not retry: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A table that exists with another key, or a column of another type: named, not altered.
    pg.psql("CREATE TABLE customer_totals (customer INTEGER PRIMARY KEY, total TEXT, flow_document JSONB NOT NULL)");
    let (status, body) = post(&http, &p, "/v1/catalog", &bundle(&pg)).await;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let t = loop {
        let t = task(&http, &p, "acme/pg").await;
        if t["state"] == "failed" {
            break t;
        }
        assert!(Instant::now() < deadline, "the task did not fail: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let why = t["lastError"].as_str().unwrap();
    assert!(
        why.contains("table customer_totals")
            && why.contains("column customer exists with type integer"),
        "{why}"
    );
    assert_eq!(pg.psql("SELECT count(*) FROM customer_totals"), "0");
    // Nothing was created by the failed opens: the tables it would have made are absent.
    assert_eq!(
        pg.psql("SELECT count(*) FROM information_schema.tables WHERE table_name IN ('customer_totals_log', 'profiles', 'flow_checkpoints')"),
        "0"
    );
    p.kill();
}
