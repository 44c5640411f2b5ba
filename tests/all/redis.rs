//! Materializing into a real Redis server, started by each test on loopback
//! (`flow_tests::RedisServer`), read back with Redis's own client, `redis-cli`. The host
//! connects with a password it takes from its environment (`password: {env: ...}`) and
//! applies each transaction's writes in one MULTI/EXEC.
//!
//!   cargo build -p flow-host && cargo test -p flow-tests --test all redis

use crate::destinations::{
    assert_password_shown_nowhere, bundle_into, ingest, post, publish_until, refused, serve, task,
    wait_for_answer, wait_for_state, with_config,
};
use crate::plugins;
use flow_tests::{Proc, REDIS_PASSWORD, RedisServer};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The environment variable a test's host takes the Redis password from.
pub const PASSWORD_ENV: &str = "FLOW_TEST_REDIS_PASSWORD";
const TASK: &str = "acme/redis";

/// The demo pipeline into Redis: customer totals as JSON strings at `totals:<customer>`, and
/// profiles (merged by key, deleted on `deleted: true`) as hashes at `profile:<id>` that
/// expire after an hour.
fn bundle(r: &RedisServer) -> Value {
    let mut b = bundle_into(
        TASK,
        "redis",
        "materialize-redis",
        r.endpoint_config(PASSWORD_ENV),
    );
    b["catalog"]["materializations"][TASK]["bindings"] = json!([
        {"source": "acme/customer-totals", "resource": {"prefix": "totals:"}},
        {"source": "acme/profiles", "resource": {"prefix": "profile:", "as": "hash", "ttlSeconds": 3600}},
    ]);
    b
}

async fn deploy_plugins(http: &reqwest::Client, p: &Proc) {
    for (name, path) in [
        ("totals", plugins::CUSTOMER_TOTALS),
        ("materialize-redis", plugins::MATERIALIZE_REDIS),
    ] {
        flow_tests::deploy(http, &p.url(""), name, path).await;
    }
}

/// Wait until `redis-cli args...` answers `want`.
async fn wait_for_cli(http: &reqwest::Client, p: &Proc, r: &RedisServer, args: &str, want: &str) {
    wait_for_answer(
        http,
        p,
        |q| r.try_cli(&q.split(' ').collect::<Vec<_>>()),
        args,
        want,
    )
    .await
}

/// A JSON field of the document at `key`.
fn field(r: &RedisServer, key: &str, f: &str) -> Value {
    let doc: Value = serde_json::from_str(&r.cli(&["GET", key])).unwrap_or(Value::Null);
    doc[f].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn materialize_into_redis_json_hashes_ttl_and_deletes() {
    let r = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let p = serve(dir.path()).await;
    deploy_plugins(&http, &p).await;
    let (status, body) = post(&http, &p, "/v1/catalog", &bundle(&r)).await;
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
    let deadline = Instant::now() + Duration::from_secs(60);
    while field(&r, "totals:alice", "orders") != json!(2) {
        assert!(
            Instant::now() < deadline,
            "totals:alice is {:?}; task {}",
            r.try_cli(&["GET", "totals:alice"]),
            task(&http, &p, TASK).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(field(&r, "totals:alice", "total").as_f64(), Some(15.0));
    assert_eq!(field(&r, "totals:bob", "total").as_f64(), Some(7.5));
    // JSON strings do not expire; the hashes of the other binding do.
    assert_eq!(r.cli(&["TTL", "totals:alice"]), "-1");

    ingest(
        &http,
        &p,
        "acme/profiles",
        &[
            json!({"id": 1, "select": "a", "we\"ird": true, "address": {"city": "Lyon"}}),
            json!({"id": 2, "select": "b"}),
        ],
    )
    .await;
    wait_for_cli(&http, &p, &r, "HGET profile:2 select", "b").await;
    assert_eq!(r.cli(&["HGET", "profile:1", "select"]), "a");
    assert_eq!(r.cli(&["HGET", "profile:1", "we\"ird"]), "true");
    assert_eq!(
        r.cli(&["HGET", "profile:1", "address"]),
        "{\"city\":\"Lyon\"}"
    );
    let ttl: i64 = r.cli(&["TTL", "profile:1"]).parse().unwrap();
    assert!((3500..=3600).contains(&ttl), "TTL {ttl}");
    // A partial update merges onto the stored document (loaded from flow_document)...
    ingest(
        &http,
        &p,
        "acme/profiles",
        &[json!({"id": 2, "we\"ird": false})],
    )
    .await;
    wait_for_cli(&http, &p, &r, "HGET profile:2 we\"ird", "false").await;
    assert_eq!(r.cli(&["HGET", "profile:2", "select"]), "b");
    // ... and a root delete removes the key.
    ingest(
        &http,
        &p,
        "acme/profiles",
        &[json!({"id": 1, "deleted": true})],
    )
    .await;
    wait_for_cli(&http, &p, &r, "EXISTS profile:1", "0").await;
    assert_eq!(r.cli(&["EXISTS", "profile:2"]), "1");

    // The checkpoint and the fence, written with the values.
    assert_eq!(r.cli(&["GET", "flow:fence:acme/redis"]), "1");
    assert!(
        r.cli(&["GET", "flow:checkpoint:acme/redis"])
            .starts_with('{')
    );

    assert_password_shown_nowhere(&http, &p, "materialize-redis", REDIS_PASSWORD).await;

    // Delta updates cannot be one value per key: refused with the reason, nothing written.
    let mut b = bundle(&r);
    b["catalog"]["materializations"][TASK]["bindings"][0]["deltaUpdates"] = json!(true);
    b["catalog"]["materializations"][TASK]["bindings"][0]["resource"]["prefix"] = json!("log:");
    assert_eq!(post(&http, &p, "/v1/catalog", &b).await.0, 200);
    let t = wait_for_state(&http, &p, TASK, "failed").await;
    assert!(
        t["lastError"]
            .as_str()
            .unwrap()
            .contains("deltaUpdates is not supported"),
        "{t}"
    );
    assert_eq!(r.cli(&["KEYS", "log:*"]), "");
    p.kill();
}

/// The server is killed mid-stream: the task retries with the reason, ingest goes on, and
/// once the server is back (with its append-only file) the values catch up exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_goes_away_is_retried_and_caught_up() {
    let r = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let p = serve(dir.path()).await;
    deploy_plugins(&http, &p).await;
    assert_eq!(post(&http, &p, "/v1/catalog", &bundle(&r)).await.0, 200);
    let orders = |from: u64, to: u64| -> Vec<Value> {
        (from..to)
            .map(|i| json!({"id": i, "customer": format!("c{}", i % 3), "amount": 1}))
            .collect()
    };
    let total_orders = |r: &RedisServer| -> i64 {
        (0..3)
            .map(|c| {
                field(r, &format!("totals:c{c}"), "orders")
                    .as_i64()
                    .unwrap_or(0)
            })
            .sum()
    };
    ingest(&http, &p, "acme/orders", &orders(0, 30)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while total_orders(&r) != 30 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    r.stop();
    ingest(&http, &p, "acme/orders", &orders(30, 60)).await;
    let t = wait_for_state(&http, &p, TASK, "retrying").await;
    assert!(
        t["lastError"]
            .as_str()
            .unwrap()
            .contains("redis endpoint default@127.0.0.1:"),
        "{t}"
    );
    assert!(t["retryAtMs"].as_u64().is_some(), "{t}");
    ingest(&http, &p, "acme/orders", &orders(60, 90)).await;

    r.restart();
    let deadline = Instant::now() + Duration::from_secs(90);
    while total_orders(&r) != 90 {
        assert!(
            Instant::now() < deadline,
            "{} orders; task {}",
            total_orders(&r),
            task(&http, &p, TASK).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for c in 0..3 {
        assert_eq!(
            field(&r, &format!("totals:c{c}"), "total").as_f64(),
            Some(30.0)
        );
    }
    wait_for_state(&http, &p, TASK, "running").await;
    p.kill();
}

/// Two hosts materialize the same task into one Redis: the one that opened last holds the
/// fence, and the other's next commit fails, writing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_redis_instance_cannot_commit() {
    let r = RedisServer::start();
    let http = reqwest::Client::new();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = serve(a_dir.path()).await;
    deploy_plugins(&http, &a).await;
    assert_eq!(post(&http, &a, "/v1/catalog", &bundle(&r)).await.0, 200);
    ingest(
        &http,
        &a,
        "acme/orders",
        &[json!({"id": 1, "customer": "alice", "amount": 1})],
    )
    .await;
    wait_for_cli(&http, &a, &r, "EXISTS totals:alice", "1").await;

    let b = serve(b_dir.path()).await;
    deploy_plugins(&http, &b).await;
    assert_eq!(post(&http, &b, "/v1/catalog", &bundle(&r)).await.0, 200);
    wait_for_cli(&http, &b, &r, "GET flow:fence:acme/redis", "2").await;

    ingest(
        &http,
        &a,
        "acme/orders",
        &[json!({"id": 2, "customer": "zed", "amount": 1})],
    )
    .await;
    let failed = wait_for_state(&http, &a, TASK, "failed").await;
    assert!(
        failed["lastError"].as_str().unwrap().contains("fenced"),
        "{failed}"
    );
    assert_eq!(r.cli(&["EXISTS", "totals:zed"]), "0");
    // B's journals are its own: it resumes at A's checkpoint, so it first takes the order A
    // had, which gives its derived journal the same length.
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
    wait_for_cli(&http, &b, &r, "EXISTS totals:bob", "1").await;
    a.kill();
    b.kill();
}

/// Bad configuration: refused at publish where it can be checked without connecting, or the
/// task fails (or, for a server that does not answer, retries) with a message naming the
/// endpoint and the reason; nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_redis_configuration_is_refused_or_named() {
    let r = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let p = serve(dir.path()).await;
    deploy_plugins(&http, &p).await;
    let config = |edit: &dyn Fn(&mut Value)| with_config(bundle(&r), TASK, edit);
    for (edit, expect) in [
        (
            Box::new(|c: &mut Value| c["password"] = json!("inline-secret"))
                as Box<dyn Fn(&mut Value)>,
            "`password` must be {env: NAME} or {file: PATH}",
        ),
        (
            Box::new(|c: &mut Value| c["database"] = json!("first")),
            "a Redis database is a number",
        ),
        (
            Box::new(|c: &mut Value| c["address"] = json!("127.0.0.1:port")),
            "is not a port number",
        ),
    ] {
        let message = refused(&http, &p, &config(&*edit)).await;
        assert!(message.contains(expect), "{message}");
        assert!(!message.contains("inline-secret"), "{message}");
    }

    // A wrong password: the server refuses; the task fails naming the endpoint.
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-password").unwrap();
    let why = publish_until(
        &http,
        &p,
        &config(&|c: &mut Value| c["password"] = json!({"file": wrong})),
        TASK,
        "failed",
    )
    .await;
    assert!(why.contains("redis endpoint default@127.0.0.1:"), "{why}");
    assert!(
        why.to_lowercase().contains("authentication failed"),
        "{why}"
    );
    assert!(!why.contains("not-the-password"), "{why}");

    // A server that does not answer: retried, with the reason.
    let elsewhere = config(&|c: &mut Value| {
        c["address"] = json!(format!("127.0.0.1:{}", flow_tests::free_port()))
    });
    let why = publish_until(&http, &p, &elsewhere, TASK, "retrying").await;
    assert!(why.to_lowercase().contains("refused"), "{why}");
    assert_eq!(r.cli(&["DBSIZE"]), "0");
    p.kill();
}
