//! Materializing into a real PostgreSQL server, started by each test on loopback
//! (`flow_tests::PgServer`), read back with PostgreSQL's own client, `psql`. The host connects
//! with a password it takes from its environment (`password: {env: ...}`).
//!
//!   cargo build -p flow-host && cargo test -p flow-tests --test all postgres

use crate::destinations::{
    Dialect, SqlServer, a_stale_instance_cannot_commit, an_outage_is_retried_and_caught_up,
    bundle_into, publish_until, refused, serve, standard_delta_deletes_and_types, with_config,
};
use crate::plugins;
use flow_tests::{PG_PASSWORD, PgServer, Proc};
use serde_json::{Value, json};

/// The environment variable a test's host takes the PostgreSQL password from.
pub const PASSWORD_ENV: &str = "FLOW_TEST_PG_PASSWORD";

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
    standard_delta_deletes_and_types(
        &PgServer::start(),
        &Dialect {
            bobs_total_from_json: "SELECT flow_document->>'total' FROM customer_totals WHERE customer = 'bob'",
            profile_columns: (
                "SELECT column_name || ':' || data_type FROM information_schema.columns WHERE table_name = 'profiles' ORDER BY column_name",
                "address:jsonb\naddress_zip:text\ncity:text\nflow_document:jsonb\nid:bigint\nseen:timestamp with time zone\nselect:text\nwe\"ird:boolean",
            ),
            profile_1: (
                "SELECT \"select\", \"we\"\"ird\", seen AT TIME ZONE 'UTC', address->>'city', city, address_zip FROM profiles WHERE id = 1",
                "a|t|2026-12-06 09:00:00.25|Lyon|Lyon|69001",
            ),
            profile_2: (
                "SELECT \"select\", \"we\"\"ird\" FROM profiles WHERE id = 2",
                "b|f",
            ),
            profile_ids: "SELECT string_agg(id::text, ',') FROM profiles",
        },
    )
    .await;
}

impl SqlServer for PgServer {
    const TASK: &'static str = "acme/pg";
    const PASSWORD: &'static str = PG_PASSWORD;
    const PLUGIN: &'static str = "materialize-postgres";
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
    let config = |edit: &dyn Fn(&mut Value)| with_config(bundle(&pg), "acme/pg", edit);

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
        let message = refused(&http, &p, &config(&*edit)).await;
        assert!(message.contains(expect), "{message}");
        assert!(message.contains("acme/pg"), "{message}");
        assert!(!message.contains("inline-secret"), "{message}");
    }

    // Fails the task, naming the endpoint and the server's reason.
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
        let why = publish_until(&http, &p, &config(&*edit), "acme/pg", "failed").await;
        assert!(why.contains(expect), "{why}");
        assert!(why.contains("postgres endpoint"), "{why}");
    }

    // A server that does not answer (a wrong port): retried, with the reason.
    let elsewhere = config(&|c: &mut Value| {
        c["address"] = json!(format!("127.0.0.1:{}", flow_tests::free_port()))
    });
    let why = publish_until(&http, &p, &elsewhere, "acme/pg", "retrying").await;
    assert!(why.to_lowercase().contains("refused"), "{why}");

    // A table that exists with another key, or a column of another type: named, not altered.
    pg.psql("CREATE TABLE customer_totals (customer INTEGER PRIMARY KEY, total TEXT, flow_document JSONB NOT NULL)");
    let why = publish_until(&http, &p, &bundle(&pg), "acme/pg", "failed").await;
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
