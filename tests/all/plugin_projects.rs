//! `flow plugin init|build|test`: a new project in each language and world (derivation,
//! capture, materialization) with a template (Rust, Python, JavaScript, TypeScript, C) builds
//! with its toolchain and passes its own catalog tests,
//! deployed to a running host makes the same SQLite table as the repository's Rust plugin, and
//! gives the conformance catalog's results (state, errors as values, logs, a schema violation)
//! word for word; what cannot be done says what to do.

use std::path::Path;
use std::process::Command;

/// Run `flow` with `args`, with `envs` set: (success, stdout + stderr).
fn flow(args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(flow_tests::Proc::binary());
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Deploy `component` as the acme pipeline's derivation on a running host, with
/// materialize-sqlite: the table it makes is the one the repository's Rust plugin makes
/// (`e2e::deploy_publish_ingest` checks the rows).
fn makes_the_acme_table(component: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let served = flow_tests::Served::start(None).await;
        let http = reqwest::Client::new();
        let views = served.dir.path().join("views.db");
        crate::e2e::deploy_publish_ingest(
            &served,
            &http,
            &views,
            [
                component.to_str().unwrap(),
                flow_tests::plugins::MATERIALIZE_SQLITE,
            ],
        )
        .await;
    });
}

/// The report of the conformance catalog of `world` (`tests/conformance/WORLD.flow.yaml`) for
/// `component` standing for its plugin, with what differs from run to run (`_meta`) and from
/// language to language (`110` or `110.0`) evened out, is `tests/conformance/WORLD.expected.txt`.
fn conforms(world: &str, component: &Path) {
    let catalog = root().join(format!("tests/conformance/{world}.flow.yaml"));
    let plugin = match world {
        "capture" => "acme/orders-source",
        _ => "acme/totals",
    };
    let out = Command::new(flow_tests::Proc::binary())
        .args(["catalog", "test", "--source"])
        .arg(&catalog)
        .arg("--plugin")
        .arg(format!("{plugin}={}", component.display()))
        .output()
        .unwrap();
    let report = normalized(&String::from_utf8_lossy(&out.stdout));
    let expected_at = root().join(format!("tests/conformance/{world}.expected.txt"));
    let expected = std::fs::read_to_string(&expected_at).unwrap();
    assert!(
        report == expected,
        "{} gives, for {}:\n{report}\nnot {}:\n{expected}",
        catalog.display(),
        component.display(),
        expected_at.display()
    );
}

/// `"_meta":{...}` for every document's own, and whole numbers without `.0`.
fn normalized(report: &str) -> String {
    let mut out = String::new();
    let mut rest = report;
    while let Some(at) = rest.find("\"_meta\":{") {
        out.push_str(&rest[..at]);
        out.push_str("\"_meta\":{...}");
        let after = &rest[at..];
        rest = &after[after.find('}').unwrap() + 1..];
    }
    out.push_str(rest);
    let chars: Vec<char> = out.chars().collect();
    let mut even = String::new();
    let mut i = 0;
    while i < chars.len() {
        let whole = chars[i] == '.'
            && chars.get(i + 1) == Some(&'0')
            && i > 0
            && chars[i - 1].is_ascii_digit()
            && !chars.get(i + 2).is_some_and(|c| c.is_ascii_digit());
        if whole {
            i += 2;
        } else {
            even.push(chars[i]);
            i += 1;
        }
    }
    even
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn a_rust_project_builds_and_passes_its_tests() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("totals");
    let d = dir.to_str().unwrap();
    let (ok, out) = flow(
        &[
            "plugin",
            "init",
            d,
            "--lang",
            "rust",
            "--name",
            "acme/totals",
        ],
        &[],
    );
    assert!(ok, "{out}");
    let manifest = std::fs::read_to_string(dir.join("flow-plugin.yaml")).unwrap();
    assert!(
        manifest.contains("name: acme/totals\nlang: rust\nworld: derivation"),
        "{manifest}"
    );
    // The versions the plugins workspace is built with, and its build directory: the same
    // dependencies are not compiled twice.
    std::fs::copy(root().join("plugins/Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let target = root().join("plugins/target");
    let (ok, out) = flow(
        &["plugin", "test", d],
        &[("CARGO_TARGET_DIR", target.to_str().unwrap())],
    );
    assert!(ok && out.contains("PASS acme/tests/totals"), "{out}");
    assert!(out.contains("catalog tests: 1 passed, 0 failed"), "{out}");
    // Each test's log lines are under it: the plugin's own, then the host's about its task.
    assert!(
        out.contains(
            "PASS acme/tests/totals\n  log acme/totals (acme/customer-totals) info: opening \
             acme/customer-totals with 1 transform(s)\n"
        ),
        "{out}"
    );
    makes_the_acme_table(&dir.join("plugin.wasm"));
    conforms("derivation", &dir.join("plugin.wasm"));
}

#[test]
fn a_python_project_builds_and_passes_its_tests_and_a_wrong_expectation_fails() {
    let tmp = tempfile::tempdir().unwrap();
    // The name defaults to the folder's.
    let dir = tmp.path().join("py-totals");
    let d = dir.to_str().unwrap();
    let (ok, out) = flow(&["plugin", "init", d, "--lang", "python"], &[]);
    assert!(ok && out.contains("flow plugin test"), "{out}");
    let catalog = std::fs::read_to_string(dir.join("flow.yaml")).unwrap();
    assert!(
        catalog.contains(r#"wasm: { plugin: "py-totals" }"#),
        "{catalog}"
    );
    let (ok, out) = flow(&["plugin", "test", d], &[]);
    assert!(
        ok && out.contains("catalog tests: 1 passed, 0 failed"),
        "{out}"
    );
    makes_the_acme_table(&dir.join("plugin.wasm"));
    conforms("derivation", &dir.join("plugin.wasm"));

    // The plugin's own result is what is tested: a changed expectation fails, with a diff;
    // an order the plugin refuses (the SDK's `Error`) fails its task, naming the document.
    let changed = catalog.replace(
        "{ customer: bob, total: 10, orders: 2 }",
        "{ customer: bob, total: 11, orders: 2 }",
    );
    assert_ne!(changed, catalog);
    std::fs::write(dir.join("flow.yaml"), changed + NEGATIVE_TEST).unwrap();
    let (ok, out) = flow(&["plugin", "test", d], &[]);
    assert!(!ok && out.contains("FAIL acme/tests/totals"), "{out}");
    assert!(out.contains("FAIL acme/tests/negative"), "{out}");
    assert!(
        out.contains(
            "the plugin returned an error: order amount must not be negative, got -3; document: {"
        ),
        "{out}"
    );
    assert!(out.contains(r#""customer":"eve""#), "{out}");
    assert!(out.contains("catalog tests: 0 passed, 2 failed"), "{out}");
}

/// An order the plugin refuses fails its task, naming the document and the reason.
const NEGATIVE_TEST: &str = "
  acme/tests/negative:
    - ingest:
        collection: acme/orders
        documents: [ { id: 9, customer: eve, amount: -3 } ]
    - verify:
        collection: acme/customer-totals
        documents: []
";

#[test]
fn a_js_project_builds_and_passes_its_tests_and_errors_name_the_document() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("js-totals");
    let d = dir.to_str().unwrap();
    let (ok, out) = flow(&["plugin", "init", d, "--lang", "js"], &[]);
    assert!(ok, "{out}");
    let package = std::fs::read_to_string(dir.join("package.json")).unwrap();
    assert!(package.contains("-d http -d fetch-event"), "{package}");
    let catalog = std::fs::read_to_string(dir.join("flow.yaml")).unwrap();
    std::fs::write(dir.join("flow.yaml"), catalog + NEGATIVE_TEST).unwrap();
    // npm installs the pinned componentize-js into the project, then `npm run build`.
    let (ok, out) = flow(&["plugin", "test", d], &[]);
    assert!(!ok && out.contains("PASS acme/tests/totals"), "{out}");
    assert!(out.contains("FAIL acme/tests/negative"), "{out}");
    assert!(
        out.contains(
            "the plugin returned an error: order amount must not be negative, got -3; document: {"
        ),
        "{out}"
    );
    assert!(out.contains("catalog tests: 1 passed, 1 failed"), "{out}");
    makes_the_acme_table(&dir.join("plugin.wasm"));
    conforms("derivation", &dir.join("plugin.wasm"));
}

/// A new `lang` project in `tmp/folder` passes its own tests, makes the acme table on a host
/// and answers the conformance catalog as every language does; returns its folder.
fn a_working_project(tmp: &Path, folder: &str, lang: &str) -> std::path::PathBuf {
    let dir = tmp.join(folder);
    let d = dir.to_str().unwrap();
    let (ok, out) = flow(&["plugin", "init", d, "--lang", lang], &[]);
    assert!(ok, "{out}");
    let (ok, out) = flow(&["plugin", "test", d], &[]);
    assert!(
        ok && out.contains("catalog tests: 1 passed, 0 failed"),
        "{out}"
    );
    makes_the_acme_table(&dir.join("plugin.wasm"));
    conforms("derivation", &dir.join("plugin.wasm"));
    dir
}

/// `flow plugin build` of the project in `dir` after `from` became `to` in its `file`: it
/// fails, builds nothing, and says what failed (returned).
fn a_broken_build(dir: &Path, file: &str, from: &str, to: &str) -> String {
    let source = std::fs::read_to_string(dir.join(file)).unwrap();
    let broken = source.replace(from, to);
    assert_ne!(broken, source);
    std::fs::write(dir.join(file), broken).unwrap();
    let (ok, out) = flow(&["plugin", "build", dir.to_str().unwrap()], &[]);
    assert!(!ok, "{out}");
    assert!(!dir.join("plugin.wasm").exists());
    out
}

#[test]
fn a_ts_project_is_type_checked_against_the_contract_and_passes_its_tests() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = a_working_project(tmp.path(), "ts-totals", "ts");
    // The types `jco types` made from wit/ are the SDK's: a plugin that breaks them is
    // refused by tsc, and nothing is built.
    let out = a_broken_build(
        &dir,
        "app.ts",
        "totals.orders += 1;",
        "totals.orders += '1';",
    );
    assert!(out.contains("error TS2322"), "{out}");
    assert!(out.contains("`npm run build` in"), "{out}");
}

#[test]
fn a_c_project_builds_with_the_bindings_flow_makes_and_passes_its_tests() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = a_working_project(tmp.path(), "c-totals", "c");
    // The bindings come from this flow's own WIT, rewritten each build: the packed world,
    // which the SDK's glue speaks.
    let header = std::fs::read_to_string(dir.join("gen/derivation_packed.h")).unwrap();
    assert!(header.contains("exports_flow_plugin_derive_packed_transform("));
    // `flow catalog test` of a project's catalog takes the project's last build.
    let catalog = dir.join("flow.yaml");
    let catalog = catalog.to_str().unwrap();
    let (ok, out) = flow(&["catalog", "test", "--source", catalog], &[]);
    assert!(
        ok && out.contains("the project's last build")
            && out.contains("catalog tests: 1 passed, 0 failed"),
        "{out}"
    );

    // clang's errors are shown, and nothing is built.
    let out = a_broken_build(
        &dir,
        "app.c",
        "orders += 1;",
        "orders += 1; no_such_function();",
    );
    assert!(
        out.contains("implicit declaration of function 'no_such_function'"),
        "{out}"
    );
    assert!(out.contains("failed to compile"), "{out}");
    let (ok, out) = flow(&["catalog", "test", "--source", catalog], &[]);
    assert!(!ok && out.contains("is not built yet"), "{out}");
}

/// A `world` project named `name` in every language passes its template's own test, whose
/// output shows `line`, and answers the world's conformance catalog.
fn every_language_answers_alike(world: &str, name: &str, line: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let target = root().join("plugins/target");
    for lang in ["c", "rust", "python", "js", "ts"] {
        let dir = tmp.path().join(format!("{lang}-{world}"));
        let d = dir.to_str().unwrap();
        let (ok, out) = flow(
            &[
                "plugin", "init", d, "--lang", lang, "--world", world, "--name", name,
            ],
            &[],
        );
        assert!(ok, "{lang}: {out}");
        let manifest = std::fs::read_to_string(dir.join("flow-plugin.yaml")).unwrap();
        assert!(manifest.contains(&format!("world: {world}")), "{manifest}");
        if lang == "rust" {
            std::fs::copy(root().join("plugins/Cargo.lock"), dir.join("Cargo.lock")).unwrap();
        }
        let (ok, out) = flow(
            &["plugin", "test", d],
            &[("CARGO_TARGET_DIR", target.to_str().unwrap())],
        );
        assert!(
            ok && out.contains("catalog tests: 1 passed, 0 failed"),
            "{lang}: {out}"
        );
        assert!(out.contains(line), "{lang}: {out}");
        conforms(world, &dir.join("plugin.wasm"));
    }
}

#[test]
fn a_capture_project_in_every_language_answers_the_conformance_catalog_alike() {
    // The template's own test: pages, then a resume after the last order.
    every_language_answers_alike(
        "capture",
        "acme/orders-source",
        "info: opening acme/orders-api at https://api.example.com/orders, after order 2",
    );
}

#[test]
fn a_materialization_project_in_every_language_answers_the_conformance_catalog_alike() {
    // The template's own test: rows, then a resume that loads and reduces a stored row.
    every_language_answers_alike(
        "materialization",
        "acme/totals",
        "info: opening acme/totals-view with 1 binding(s)",
    );
}

/// What each language adds to its derivation template for a state migration that records
/// which component wrote the state it migrated: (language, file, text appended).
const MIGRATIONS: [(&str, &str, &str); 5] = [
    (
        "python",
        "app.py",
        "\nfrom flow_sdk import export_migration\n\nMigrate = export_migration(lambda from_digest, key, state: {**state, \"from\": from_digest})\n",
    ),
    (
        "js",
        "app.js",
        "\nimport { exportMigration } from './flow_migrate.js';\n\nexport const migrate = exportMigration((fromDigest, key, state) => ({ ...state, from: fromDigest }));\n",
    ),
    (
        "ts",
        "app.ts",
        "\nimport { exportMigration } from './flow_migrate.js';\n\nexport const migrate = exportMigration((fromDigest: string, key: unknown[], state: object) => ({ ...state, from: fromDigest }));\n",
    ),
    (
        "c",
        "app.c",
        "\nflow_error *flow_migrate(flow_str from_digest, flow_str key, flow_str state, flow_buf *out) {\n    (void)key;\n    flow_buf_append(out, state.ptr, state.len - 1);\n    flow_buf_puts(out, \",\\\"from\\\":\");\n    flow_buf_string(out, from_digest);\n    flow_buf_puts(out, \"}\");\n    return NULL;\n}\n",
    ),
    (
        "rust",
        "src/lib.rs",
        "\nimpl flow_sdk::Migrate for CustomerTotals {\n    fn migrate(from_digest: &str, _key: &flow_sdk::Value, mut state: flow_sdk::Value) -> Result<Option<flow_sdk::Value>, flow_sdk::Error> {\n        state[\"from\"] = from_digest.into();\n        Ok(Some(state))\n    }\n}\n",
    ),
];

#[test]
fn a_derivation_project_migrates_the_state_its_earlier_version_wrote_in_every_language() {
    use flow_host::{Host, HostOptions};
    use serde_json::{Value, json};
    let tmp = tempfile::tempdir().unwrap();
    let target = root().join("plugins/target");
    let env = [("CARGO_TARGET_DIR", target.to_str().unwrap())];
    for (lang, file, migration) in MIGRATIONS {
        let dir = tmp.path().join(format!("{lang}-totals"));
        let d = dir.to_str().unwrap();
        let (ok, out) = flow(
            &["plugin", "init", d, "--lang", lang, "--name", "totals"],
            &[],
        );
        assert!(ok, "{lang}: {out}");
        if lang == "rust" {
            std::fs::copy(root().join("plugins/Cargo.lock"), dir.join("Cargo.lock")).unwrap();
        }
        let (ok, out) = flow(&["plugin", "build", d], &env);
        assert!(ok, "{lang}: {out}");
        let v1 = tmp.path().join(format!("{lang}-v1.wasm"));
        std::fs::copy(dir.join("plugin.wasm"), &v1).unwrap();

        let mut source = std::fs::read_to_string(dir.join(file)).unwrap() + migration;
        if lang == "rust" {
            source = source.replace(
                "flow_sdk::export_derivation!(CustomerTotals);",
                "flow_sdk::export_migrating_derivation!(CustomerTotals);",
            );
        }
        std::fs::write(dir.join(file), source).unwrap();
        if lang == "js" || lang == "ts" {
            // Its package.json names the world it builds on: not changed, the build says so.
            let (ok, out) = flow(&["plugin", "build", d], &env);
            assert!(
                !ok && out.contains("exports a state migration (exportMigration)")
                    && out.contains("flow:plugin/migrating-derivation@"),
                "{lang}: {out}"
            );
            let package = std::fs::read_to_string(dir.join("package.json")).unwrap();
            std::fs::write(
                dir.join("package.json"),
                package.replace(
                    "flow:plugin/derivation@",
                    "flow:plugin/migrating-derivation@",
                ),
            )
            .unwrap();
        }
        let (ok, out) = flow(&["plugin", "build", d], &env);
        assert!(ok, "{lang}: {out}");
        let v2 = std::fs::read(dir.join("plugin.wasm")).unwrap();

        let host = Host::open(HostOptions::new(tmp.path().join(format!("{lang}-host")))).unwrap();
        host.registry
            .deploy("totals", &std::fs::read(&v1).unwrap())
            .unwrap();
        host.publish(flow_host::catalog::load(&dir.join("flow.yaml")).unwrap())
            .unwrap();
        let orders = |docs: Value| {
            host.ingest("acme/orders", docs.as_array().unwrap().clone())
                .unwrap();
            host.wait_idle(std::time::Duration::from_secs(60)).unwrap();
        };
        orders(json!([
            {"id": 1, "customer": "alice", "amount": 5},
            {"id": 2, "customer": "bob", "amount": 7.5},
            {"id": 3, "customer": "alice", "amount": 10}
        ]));
        host.registry.deploy("totals", &v2).unwrap();
        host.plugin_deployed("totals");
        orders(json!([{"id": 4, "customer": "bob", "amount": 2.5}]));

        let state = |key: &str| -> Value {
            let text = host
                .store
                .state("acme/customer-totals", key)
                .unwrap()
                .unwrap();
            serde_json::from_str(&text).unwrap()
        };
        let from = flow_tests::digest(v1.to_str().unwrap());
        let alice = state(r#"["alice"]"#);
        assert_eq!(alice["from"], from.as_str(), "{lang}: {alice}");
        assert_eq!(alice["total"].as_f64(), Some(15.0), "{lang}: {alice}");
        // Counting goes on from the migrated state.
        let bob = state(r#"["bob"]"#);
        assert_eq!(
            (bob["total"].as_f64(), bob["orders"].as_u64()),
            (Some(10.0), Some(2)),
            "{lang}: {bob}"
        );
        let logs = host.registry.logs().read("totals", 0);
        let migrated = format!("migrated the state of 2 of 2 keys written by {from}");
        assert!(
            logs.iter().any(|l| l.message.contains(&migrated)),
            "{lang}: {migrated:?} not in {logs:?}"
        );
        host.shutdown();
    }
}

/// Each SDK's `kv` against a real Redis: a materialization (`tests/fixtures/kv_view.*`, in
/// C, Python and JavaScript) that keeps documents as strings, loads them back to reduce them,
/// writes a hash, and fences its checkpoint with `expect`; after a restart it reads its
/// checkpoint and hash back. Its `http` reaches the host, which refuses a host off the
/// allow-list.
#[test]
fn a_materialization_keeps_a_redis_destination_through_each_sdks_kv() {
    for (lang, app) in [("python", "app.py"), ("c", "app.c"), ("js", "app.js")] {
        keeps_redis_through_kv(lang, app);
    }
}

fn keeps_redis_through_kv(lang: &str, app: &str) {
    use flow_host::{Host, HostOptions};
    let redis = flow_tests::RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kv-view");
    let d = dir.to_str().unwrap();
    let (ok, out) = flow(
        &[
            "plugin",
            "init",
            d,
            "--lang",
            lang,
            "--world",
            "materialization",
            "--name",
            "kv",
        ],
        &[],
    );
    assert!(ok, "{out}");
    let fixture = format!("tests/fixtures/kv_view.{}", app.rsplit('.').next().unwrap());
    std::fs::copy(root().join(fixture), dir.join(app)).unwrap();
    let (ok, out) = flow(&["plugin", "build", d], &[]);
    assert!(ok, "{out}");
    let password = tmp.path().join("password");
    std::fs::write(&password, flow_tests::REDIS_PASSWORD).unwrap();
    let catalog = tmp.path().join("flow.yaml");
    std::fs::write(
        &catalog,
        format!(
            "collections:\n  acme/totals:\n    schema:\n      type: object\n      reduce: {{ strategy: merge }}\n      properties:\n        customer: {{ type: string }}\n        total: {{ type: number, reduce: {{ strategy: sum }} }}\n      required: [customer, total]\n    key: [/customer]\nmaterializations:\n  acme/kv-view:\n    endpoint:\n      connector: redis\n      wasm:\n        plugin: kv\n        config: {{ address: \"{}\", password: {{ file: {} }} }}\n    bindings:\n      - source: acme/totals\n",
            redis.address(),
            password.display()
        ),
    )
    .unwrap();
    let host = Host::open(HostOptions::new(tmp.path().join("host"))).unwrap();
    host.registry
        .deploy("kv", &std::fs::read(dir.join("plugin.wasm")).unwrap())
        .unwrap();
    host.publish(flow_host::catalog::load(&catalog).unwrap())
        .unwrap();
    let totals = |docs: serde_json::Value| {
        host.ingest("acme/totals", docs.as_array().unwrap().clone())
            .unwrap();
        if let Err(e) = host.wait_idle(std::time::Duration::from_secs(60)) {
            let logs = host.registry.logs().read("kv", 0);
            panic!("{lang}: {e}; the plugin's log: {logs:?}");
        }
    };
    totals(serde_json::json!([{"customer": "alice", "total": 5}, {"customer": "bob", "total": 1}]));
    totals(serde_json::json!([{"customer": "alice", "total": 10}]));
    // alice's document was loaded (GET) and reduced with the new one.
    let alice: serde_json::Value =
        serde_json::from_str(redis.cli(&["GET", "totals:[\"alice\"]"]).trim()).unwrap();
    assert_eq!(alice["total"].as_f64(), Some(15.0), "{lang}: {alice}");
    assert_eq!(
        redis.cli(&["HGET", "flow:meta", "last"]).trim(),
        "[\"alice\"]"
    );
    // A restart reads its checkpoint and its hash back.
    host.shutdown();
    drop(host);
    let host = Host::open(HostOptions::new(tmp.path().join("host"))).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let wanted = "meta has 1 field(s); last written [\"alice\"]";
    while !host
        .registry
        .logs()
        .read("kv", 0)
        .iter()
        .any(|l| l.message.contains(wanted))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no {wanted:?} in the plugin's log"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The world's `http`, through the SDK: the host's refusal of a host off the allow-list.
    let logs = host.registry.logs().read("kv", 0);
    assert!(
        logs.iter().any(|l| l.message.starts_with("http: ")
            && l.message
                .contains("refused: this task's endpoint allows no host")),
        "{lang}: {logs:?}"
    );
    host.shutdown();
}

#[test]
fn what_a_project_cannot_do_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let at = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();

    let (ok, out) = flow(
        &[
            "plugin",
            "init",
            &at("x"),
            "--lang",
            "python",
            "--name",
            "a b",
        ],
        &[],
    );
    assert!(
        !ok && out.contains("plugin name: invalid name 'a b'"),
        "{out}"
    );
    assert!(
        !tmp.path().join("x").exists(),
        "nothing is written for a refused init"
    );

    // A project is written once; a folder that holds something is not overwritten.
    let (ok, out) = flow(&["plugin", "init", &at("p"), "--lang", "python"], &[]);
    assert!(ok, "{out}");
    let (ok, out) = flow(&["plugin", "init", &at("p"), "--lang", "rust"], &[]);
    assert!(!ok && out.contains("exists and is not empty"), "{out}");

    // Missing toolchains are named with the command that installs them.
    let (ok, out) = flow(&["plugin", "build", &at("p")], &[("PATH", "/nonexistent")]);
    assert!(
        !ok && out.contains("componentize-py is not installed")
            && out.contains("pip install componentize-py==0.25.1"),
        "{out}"
    );
    let (ok, out) = flow(&["plugin", "init", &at("r"), "--lang", "rust"], &[]);
    assert!(ok, "{out}");
    let (ok, out) = flow(&["plugin", "init", &at("j"), "--lang", "js"], &[]);
    assert!(ok, "{out}");
    let (ok, out) = flow(&["plugin", "build", &at("j")], &[("PATH", "/nonexistent")]);
    assert!(
        !ok && out.contains("npm is not installed") && out.contains("Node.js 18 or newer"),
        "{out}"
    );
    let (ok, out) = flow(&["plugin", "init", &at("c"), "--lang", "c"], &[]);
    assert!(ok, "{out}");
    let (ok, out) = flow(&["plugin", "build", &at("c")], &[("PATH", "/nonexistent")]);
    assert!(
        !ok && out.contains("clang is not installed")
            && out.contains("apt-get install clang lld wasi-libc libclang-rt-dev-wasm32"),
        "{out}"
    );
    let (ok, out) = flow(&["plugin", "build", &at("c")], &[("CC", "gcc")]);
    assert!(
        !ok && out.contains("gcc cannot build for wasm32-wasi"),
        "{out}"
    );
    let (ok, out) = flow(&["plugin", "build", &at("r")], &[("PATH", "/nonexistent")]);
    assert!(
        !ok && out.contains("cargo is not installed")
            && out.contains("rustup target add wasm32-wasip2"),
        "{out}"
    );

    // A project whose catalog has no tests says so rather than passing.
    let catalog = std::fs::read_to_string(tmp.path().join("p/flow.yaml")).unwrap();
    let untested = &catalog[..catalog.find("\ntests:").unwrap()];
    std::fs::write(tmp.path().join("p/flow.yaml"), untested).unwrap();
    let (ok, out) = flow(&["plugin", "test", &at("p")], &[]);
    assert!(!ok && out.contains("flow.yaml has no tests"), "{out}");

    // A folder that is not a project says how to make one.
    let (ok, out) = flow(&["plugin", "test", tmp.path().to_str().unwrap()], &[]);
    assert!(
        !ok && out.contains("a plugin project? `flow plugin init DIR` makes one"),
        "{out}"
    );
}
