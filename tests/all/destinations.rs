//! What the tests of server destinations share (PostgreSQL, MySQL, Redis): a host with
//! every server's password in its environment, requests, the task's status, waiting on a
//! database's own client, the demo pipeline materialized into any connector, and the bodies
//! of the tests every SQL server passes alike (an outage caught up, a stale instance fenced).

use flow_tests::{MY_PASSWORD, PG_PASSWORD, Proc, REDIS_PASSWORD};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The servers' passwords, as `flow serve`'s environment has them.
pub fn passwords() -> [(&'static str, &'static str); 3] {
    [
        (crate::postgres::PASSWORD_ENV, PG_PASSWORD),
        (crate::mysql::PASSWORD_ENV, MY_PASSWORD),
        (crate::redis::PASSWORD_ENV, REDIS_PASSWORD),
    ]
}

/// Start `flow serve` with every server's password in its environment.
pub async fn serve(dir: &std::path::Path) -> Proc {
    Proc::start_with(&dir.join("data"), &dir.join("serve.log"), &[], &passwords()).await
}

/// POST `body` to `path`; the status and the JSON answer.
pub async fn post(http: &reqwest::Client, p: &Proc, path: &str, body: &Value) -> (u16, Value) {
    let r = http.post(p.url(path)).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub async fn ingest(http: &reqwest::Client, p: &Proc, collection: &str, docs: &[Value]) {
    let body: String = docs.iter().map(|d| format!("{d}\n")).collect();
    let r = http
        .post(p.url(&format!(
            "/v1/collections/{}/documents",
            collection.replace('/', "%2F")
        )))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// The task's status.
pub async fn task(http: &reqwest::Client, p: &Proc, name: &str) -> Value {
    let tasks: Value = flow_tests::get_json(http, &p.base, "/v1/tasks").await;
    tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Poll a database's own client (`run`) until `sql` answers `want`, failing with the task
/// statuses and the host's log.
pub async fn wait_for_answer(
    http: &reqwest::Client,
    p: &Proc,
    run: impl Fn(&str) -> Result<String, String>,
    sql: &str,
    want: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = run(sql).unwrap_or_else(|e| e);
        if got == want {
            return;
        }
        if Instant::now() > deadline {
            let tasks: Value = flow_tests::get_json(http, &p.base, "/v1/tasks").await;
            panic!(
                "{sql} answered {got:?}, not {want:?}\ntasks: {tasks}\nlog:\n{}",
                p.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The demo pipeline (`e2e::bundle`'s orders and customer totals) with `acme/profiles`,
/// materialized as `name` through `connector` and `plugin` with endpoint `config`.
pub fn bundle_into(name: &str, connector: &str, plugin: &str, config: Value) -> Value {
    let mut b = crate::e2e::bundle(std::path::Path::new("unused.db"));
    b["source"] = json!("destinations.rs");
    let catalog = &mut b["catalog"];
    catalog["collections"]["acme/profiles"] = json!({
        "schema": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "select": {"type": "string"},
                "we\"ird": {"type": "boolean"},
                "seen": {"type": "string", "format": "date-time"},
                "address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string"}}},
                "deleted": {"type": "boolean"},
            },
            "required": ["id"],
            // The root strategy is chosen per document: a delete, or a merge.
            "if": {"properties": {"deleted": {"const": true}}, "required": ["deleted"]},
            "then": {"reduce": {"strategy": "lastWriteWins", "delete": true}},
            "else": {"reduce": {"strategy": "merge"}},
        },
        "key": ["/id"],
        // A nested field as a column of its own name.
        "projections": {"city": "/address/city"},
    });
    catalog["materializations"] = json!({name: {
        "endpoint": {
            "connector": connector,
            "wasm": {"plugin": plugin, "config": config},
        },
        "bindings": [
            {"source": "acme/customer-totals", "resource": {"table": "customer_totals"}},
            {"source": "acme/customer-totals", "resource": {"table": "customer_totals_log"}, "deltaUpdates": true},
            // Another nested field by its pointer; `deleted` left out.
            {"source": "acme/profiles", "resource": {"table": "profiles"},
             "fields": {"include": ["/address/zip"], "exclude": ["deleted"]}},
        ],
    }});
    b
}

/// The password is in no answer of the API (the catalog, the tasks, `plugin`'s log) and
/// nowhere in the host's log.
pub async fn assert_password_shown_nowhere(
    http: &reqwest::Client,
    p: &Proc,
    plugin: &str,
    password: &str,
) {
    for path in [
        "/v1/catalog".to_string(),
        "/v1/tasks".into(),
        format!("/v1/plugins/{plugin}/logs"),
    ] {
        let text = flow_tests::get_text(http, &p.base, &path).await;
        assert!(
            !text.contains(password),
            "{path} shows the password: {text}"
        );
    }
    assert!(
        !p.log_tail().contains(password),
        "the log shows the password"
    );
}

/// Wait until task `name` is in `state`; its status.
pub async fn wait_for_state(http: &reqwest::Client, p: &Proc, name: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = task(http, p, name).await;
        if t["state"] == state {
            return t;
        }
        assert!(Instant::now() < deadline, "{name} is not {state}: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A SQL server a test materializes the demo pipeline (`bundle_into`) into, read with its own
/// client.
pub trait SqlServer {
    /// The materialization's name.
    const TASK: &'static str;
    /// How messages name its endpoints, up to the port: `postgres endpoint flow@127.0.0.1:`.
    const ENDPOINT: &'static str;
    /// Run `sql` with the server's own client: rows a line each, columns split by `|`, or
    /// the client's error.
    fn try_sql(&self, sql: &str) -> Result<String, String>;
    /// `try_sql`, failing the test on an error.
    fn sql(&self, sql: &str) -> String {
        self.try_sql(sql)
            .unwrap_or_else(|e| panic!("{sql:?} failed: {e}"))
    }
    /// Take the server down at once, as a crash or an outage would; bring it back.
    fn stop(&self);
    fn restart(&self);
    /// The demo pipeline materialized into it.
    fn bundle(&self) -> Value;
    /// The password the host connects with, which nothing may show.
    const PASSWORD: &'static str;
    /// The materialization plugin.
    const PLUGIN: &'static str;
    /// Deploy the pipeline's plugins.
    async fn deploy(&self, http: &reqwest::Client, p: &Proc);
}

/// Poll the server's client until `sql` answers `want`.
pub async fn wait_for_sql(
    http: &reqwest::Client,
    p: &Proc,
    db: &impl SqlServer,
    sql: &str,
    want: &str,
) {
    wait_for_answer(http, p, |q| db.try_sql(q), sql, want).await
}

/// What the end-to-end test expects of a dialect: queries in it and their answers.
pub struct Dialect {
    /// Reads member `total` of bob's `flow_document` (the whole document is JSON).
    pub bobs_total_from_json: &'static str,
    /// The columns of `profiles` as `name:type`, by name; and the answer.
    pub profile_columns: (&'static str, &'static str),
    /// Profile 1's `select`, `we"ird`, `seen` (in UTC), `address` city from JSON, `city`,
    /// `address_zip`; and the answer.
    pub profile_1: (&'static str, &'static str),
    /// Profile 2's `select` and `we"ird`; and the answer once `we"ird` is false.
    pub profile_2: (&'static str, &'static str),
    /// The ids of `profiles`, comma-separated.
    pub profile_ids: &'static str,
}

/// The demo pipeline end to end: standard and delta updates of the totals, real column types
/// (nested fields projected, reserved and quoted names), a partial update merged onto the
/// stored row, a root delete, the checkpoint and fence, and the password shown nowhere.
pub async fn standard_delta_deletes_and_types<D: SqlServer>(db: &D, d: &Dialect) {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let p = serve(dir.path()).await;
    db.deploy(&http, &p).await;
    let (status, body) = post(&http, &p, "/v1/catalog", &db.bundle()).await;
    assert_eq!(status, 200, "{body}");

    let order = |id: u64, customer: &str, amount: f64| json!({"id": id, "customer": customer, "amount": amount});
    ingest(
        &http,
        &p,
        "acme/orders",
        &[order(1, "alice", 5.0), order(2, "bob", 7.5)],
    )
    .await;
    ingest(&http, &p, "acme/orders", &[order(3, "alice", 10.0)]).await;
    let totals = "SELECT customer, total, orders FROM customer_totals ORDER BY customer";
    wait_for_sql(&http, &p, db, totals, "alice|15|2\nbob|7.5|1").await;
    // Every combined delta of a materialization transaction is a row of the log: alice's
    // first total too, unless both of her derived documents landed in one transaction.
    wait_for_sql(
        &http,
        &p,
        db,
        "SELECT customer, max(total), max(orders) FROM customer_totals_log GROUP BY customer ORDER BY customer",
        "alice|15|2\nbob|7.5|1",
    )
    .await;
    let log =
        db.sql("SELECT customer, total, orders FROM customer_totals_log ORDER BY customer, orders");
    assert!(
        log == "alice|5|1\nalice|15|2\nbob|7.5|1" || log == "alice|15|2\nbob|7.5|1",
        "{log}"
    );
    assert_eq!(db.sql(d.bobs_total_from_json), "7.5");

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
    wait_for_sql(&http, &p, db, "SELECT count(*) FROM profiles", "2").await;
    assert_eq!(db.sql(d.profile_columns.0), d.profile_columns.1);
    assert_eq!(db.sql(d.profile_1.0), d.profile_1.1);
    // A partial update merges onto the stored row (loaded, reduced, upserted)...
    ingest(
        &http,
        &p,
        "acme/profiles",
        &[json!({"id": 2, "we\"ird": false})],
    )
    .await;
    wait_for_sql(&http, &p, db, d.profile_2.0, d.profile_2.1).await;
    // ... and a root delete removes it.
    ingest(
        &http,
        &p,
        "acme/profiles",
        &[json!({"id": 1, "deleted": true})],
    )
    .await;
    wait_for_sql(&http, &p, db, d.profile_ids, "2").await;

    // The checkpoint is in the same database, with the fence this instance took.
    assert_eq!(
        db.sql("SELECT materialization, fence FROM flow_checkpoints"),
        format!("{}|1", D::TASK)
    );

    assert_password_shown_nowhere(&http, &p, D::PLUGIN, D::PASSWORD).await;
    p.kill();
}

/// The server stops mid-stream: the task shows `retrying` with the reason and when it tries
/// again, ingest goes on, and once the server is back the table catches up: nothing lost,
/// nothing written twice.
pub async fn an_outage_is_retried_and_caught_up<D: SqlServer>(db: &D) {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let p = serve(dir.path()).await;
    db.deploy(&http, &p).await;
    let (status, body) = post(&http, &p, "/v1/catalog", &db.bundle()).await;
    assert_eq!(status, 200, "{body}");
    let orders = |from: u64, to: u64| -> Vec<Value> {
        (from..to)
            .map(|i| json!({"id": i, "customer": format!("c{}", i % 3), "amount": 1}))
            .collect()
    };
    let sum = "SELECT sum(orders) FROM customer_totals";
    ingest(&http, &p, "acme/orders", &orders(0, 30)).await;
    wait_for_sql(&http, &p, db, sum, "30").await;

    db.stop();
    ingest(&http, &p, "acme/orders", &orders(30, 60)).await;
    let retrying = wait_for_state(&http, &p, D::TASK, "retrying").await;
    let why = retrying["lastError"].as_str().unwrap();
    assert!(why.contains(D::ENDPOINT), "{retrying}");
    assert!(retrying["retryAtMs"].as_u64().is_some(), "{retrying}");
    // Ingest and the derivation go on meanwhile.
    ingest(&http, &p, "acme/orders", &orders(60, 90)).await;
    assert_eq!(
        task(&http, &p, "acme/customer-totals").await["state"],
        "running"
    );

    db.restart();
    wait_for_sql(&http, &p, db, sum, "90").await;
    assert_eq!(
        db.sql("SELECT customer, total, orders FROM customer_totals ORDER BY customer"),
        "c0|30|30\nc1|30|30\nc2|30|30"
    );
    // The delta log has no row twice: each (customer, orders) once.
    assert_eq!(
        db.sql("SELECT count(*) FROM (SELECT customer, orders FROM customer_totals_log GROUP BY customer, orders HAVING count(*) > 1) twice"),
        "0"
    );
    wait_for_state(&http, &p, D::TASK, "running").await;
    p.kill();
}

/// Two hosts materialize the same task into one database: the one that opened last holds the
/// fence, and the other's next commit fails, writing nothing.
pub async fn a_stale_instance_cannot_commit<D: SqlServer>(db: &D) {
    let http = reqwest::Client::new();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = serve(a_dir.path()).await;
    db.deploy(&http, &a).await;
    assert_eq!(post(&http, &a, "/v1/catalog", &db.bundle()).await.0, 200);
    let order = |id: u64, customer: &str| [json!({"id": id, "customer": customer, "amount": 1})];
    ingest(&http, &a, "acme/orders", &order(1, "alice")).await;
    wait_for_sql(
        &http,
        &a,
        db,
        "SELECT customer, orders FROM customer_totals",
        "alice|1",
    )
    .await;

    // B takes over the task (a host restored elsewhere, say): its open takes the next fence.
    let b = serve(b_dir.path()).await;
    db.deploy(&http, &b).await;
    assert_eq!(post(&http, &b, "/v1/catalog", &db.bundle()).await.0, 200);
    wait_for_sql(&http, &b, db, "SELECT fence FROM flow_checkpoints", "2").await;

    // A, stale, processes a new order: its commit is refused.
    ingest(&http, &a, "acme/orders", &order(2, "zed")).await;
    let failed = wait_for_state(&http, &a, D::TASK, "failed").await;
    assert!(
        failed["lastError"].as_str().unwrap().contains("fenced"),
        "{failed}"
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM customer_totals WHERE customer = 'zed'"),
        "0"
    );
    // B goes on writing. (Its journals are its own: it resumes at A's checkpoint, so it first
    // takes the order A had, which gives its derived journal the same length.)
    ingest(&http, &b, "acme/orders", &order(1, "alice")).await;
    ingest(&http, &b, "acme/orders", &order(9, "bob")).await;
    wait_for_sql(
        &http,
        &b,
        db,
        "SELECT orders FROM customer_totals WHERE customer = 'bob'",
        "1",
    )
    .await;
    a.kill();
    b.kill();
}

/// `bundle` with the endpoint config of materialization `name` changed by `edit`.
pub fn with_config(mut bundle: Value, name: &str, edit: impl FnOnce(&mut Value)) -> Value {
    edit(&mut bundle["catalog"]["materializations"][name]["endpoint"]["wasm"]["config"]);
    bundle
}

/// Publish `bundle`, which must be refused: the error message.
pub async fn refused(http: &reqwest::Client, p: &Proc, bundle: &Value) -> String {
    let (status, body) = post(http, p, "/v1/catalog", bundle).await;
    assert_eq!(status, 400, "{body}");
    body["error"]["message"].as_str().unwrap().to_string()
}

/// Publish `bundle`, which must be accepted, and wait until task `name` is in `state`
/// (`failed`, `retrying`): its last error.
pub async fn publish_until(
    http: &reqwest::Client,
    p: &Proc,
    bundle: &Value,
    name: &str,
    state: &str,
) -> String {
    let (status, body) = post(http, p, "/v1/catalog", bundle).await;
    assert_eq!(status, 200, "{body}");
    let t = wait_for_state(http, p, name, state).await;
    t["lastError"].as_str().unwrap_or_default().to_string()
}
