//! Materializing into a real MariaDB server, started by each test on loopback
//! (`flow_tests::MyServer`), read back with MariaDB's own client, `mariadb`. The host connects
//! with a password it takes from its environment (`password: {env: ...}`). The pipeline is
//! the destinations' (`destinations::bundle_into`), through `materialize-mysql`.
//!
//!   cargo build -p flow-host && cargo test -p flow-tests --test all mysql

use crate::destinations::{
    Dialect, SqlServer, a_stale_instance_cannot_commit, an_outage_is_retried_and_caught_up,
    bundle_into, publish_until, refused, serve, standard_delta_deletes_and_types, with_config,
};
use crate::plugins;
use flow_tests::{MY_PASSWORD, MyServer, Proc};
use serde_json::{Value, json};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn materialize_into_mysql_standard_delta_deletes_and_types() {
    let my = MyServer::start();
    standard_delta_deletes_and_types(
        &my,
        &Dialect {
            bobs_total_from_json: "SELECT JSON_VALUE(flow_document, '$.total') FROM customer_totals WHERE customer = 'bob'",
            profile_columns: (
                "SELECT concat(column_name, ':', column_type) FROM information_schema.columns \
                 WHERE table_schema = 'views' AND table_name = 'profiles' ORDER BY column_name",
                "address:longtext\naddress_zip:longtext\ncity:longtext\nflow_document:longtext\nid:bigint(20)\nseen:datetime(6)\nselect:longtext\nwe\"ird:tinyint(1)",
            ),
            profile_1: (
                "SELECT `select`, `we\"ird`, seen, JSON_VALUE(address, '$.city'), city, address_zip FROM profiles WHERE id = 1",
                "a|1|2026-12-06 09:00:00.250000|Lyon|Lyon|69001",
            ),
            profile_2: ("SELECT `select`, `we\"ird` FROM profiles WHERE id = 2", "b|0"),
            profile_ids: "SELECT group_concat(id) FROM profiles",
        },
    )
    .await;
    // MariaDB's JSON is LONGTEXT with a validity check.
    assert!(
        my.sql("SHOW CREATE TABLE profiles")
            .contains("CHECK (json_valid(`flow_document`))"),
    );
}

impl SqlServer for MyServer {
    const TASK: &'static str = TASK;
    const PASSWORD: &'static str = MY_PASSWORD;
    const PLUGIN: &'static str = "materialize-mysql";
    const ENDPOINT: &'static str = "mysql endpoint flow@127.0.0.1:";
    fn try_sql(&self, sql: &str) -> Result<String, String> {
        MyServer::try_sql(self, sql)
    }
    fn stop(&self) {
        MyServer::stop(self)
    }
    fn restart(&self) {
        MyServer::restart(self)
    }
    fn bundle(&self) -> Value {
        bundle(self)
    }
    async fn deploy(&self, http: &reqwest::Client, p: &Proc) {
        deploy_plugins(http, p).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mysql_that_goes_away_is_retried_and_caught_up() {
    an_outage_is_retried_and_caught_up(&MyServer::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_mysql_instance_cannot_commit() {
    a_stale_instance_cannot_commit(&MyServer::start()).await;
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
    let config = |edit: &dyn Fn(&mut Value)| with_config(bundle(&my), TASK, edit);

    // Refused at publish: an inline secret.
    let message = refused(
        &http,
        &p,
        &config(&|c: &mut Value| c["password"] = json!("inline-secret")),
    )
    .await;
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
        let why = publish_until(&http, &p, &config(&*edit), TASK, "failed").await;
        assert!(why.contains(expect), "{why}");
        assert!(why.contains("mysql endpoint"), "{why}");
        assert!(!why.contains(MY_PASSWORD), "{why}");
    }

    // A server that does not answer (a wrong port): retried, with the reason.
    let elsewhere = config(&|c: &mut Value| {
        c["address"] = json!(format!("127.0.0.1:{}", flow_tests::free_port()))
    });
    let why = publish_until(&http, &p, &elsewhere, TASK, "retrying").await;
    assert!(why.to_lowercase().contains("refused"), "{why}");

    // A table that exists with a column of another type: named, not altered, nothing written.
    my.sql("CREATE TABLE customer_totals (customer VARCHAR(255) PRIMARY KEY, total TEXT, flow_document JSON NOT NULL)");
    let why = publish_until(&http, &p, &bundle(&my), TASK, "failed").await;
    assert!(
        why.contains("table customer_totals") && why.contains("column total exists with type text"),
        "{why}"
    );
    assert_eq!(my.sql("SELECT count(*) FROM customer_totals"), "0");
    p.kill();
}
