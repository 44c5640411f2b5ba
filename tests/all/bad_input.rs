//! Bad input is refused with a message naming the thing and the reason, and nothing that was
//! accepted before is lost or changed.

use crate::{Served, plugin_bytes, plugins};
use serde_json::{Value, json};

/// A host running the e2e pipeline (customer totals into SQLite), and a client for it that
/// sends `token`, if any.
pub(crate) async fn setup_with(token: Option<&str>) -> (Served, reqwest::Client) {
    let served = Served::start(token).await;
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
    }
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    for (name, path) in [
        ("totals", plugins::CUSTOMER_TOTALS),
        ("materialize-sqlite", plugins::MATERIALIZE_SQLITE),
        ("source-http", plugins::SOURCE_HTTP),
    ] {
        flow_tests::deploy(&http, &served.base, name, path).await;
    }
    let views = served.dir.path().join("views.db");
    let r = http
        .post(served.url("/v1/catalog"))
        .json(&crate::e2e::bundle(&views))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    (served, http)
}

async fn setup() -> (Served, reqwest::Client) {
    setup_with(None).await
}

async fn error(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    (
        status,
        v["error"]["code"].as_str().unwrap().to_string(),
        v["error"]["message"].as_str().unwrap().to_string(),
    )
}

async fn orders_head(served: &Served, http: &reqwest::Client) -> u64 {
    flow_tests::collection_head(http, &served.base, "acme/orders").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_errors_append_nothing() {
    let (served, http) = setup().await;
    let url = served.url("/v1/collections/acme%2Forders/documents");
    let ok = http
        .post(&url)
        .body("{\"id\":1,\"customer\":\"a\",\"amount\":1}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let head = orders_head(&served, &http).await;

    // (body, status, code, expected message parts)
    let cases: &[(&str, u16, &str, &[&str])] = &[
        (
            "{\"id\":2,\"customer\":\"b\",\"amount\":1}\n{\"id\": 3,",
            400,
            "invalid",
            &["line 2", "invalid JSON"],
        ),
        (
            "{\"id\":2,\"customer\":\"b\",\"amount\":1}\n{\"id\":3,\"customer\":\"c\",\"amount\":-1}\n",
            400,
            "invalid",
            &["line 2", "schema of acme/orders", "at /amount", "minimum"],
        ),
        (
            "{\"id\":\"x\",\"customer\":\"b\",\"amount\":1}",
            400,
            "invalid",
            &["line 1", "at /id", "integer"],
        ),
        (
            "[1,2]",
            400,
            "invalid",
            &["line 1", "must be a JSON object, not an array"],
        ),
        ("\n  \n", 400, "invalid", &["no documents"]),
        (
            // Beyond 64 bits, 2^64 and 2^64 + 1 read as one float: refused, not merged.
            "{\"id\":2,\"customer\":\"b\",\"amount\":1}\n{\"id\":18446744073709551617,\"customer\":\"c\",\"amount\":1}\n",
            400,
            "invalid",
            &[
                "line 2",
                "/id",
                "outside the 64-bit integer range",
                "send it as a string",
            ],
        ),
    ];
    for (body, status, code, parts) in cases {
        let (s, c, m) = error(http.post(&url).body(*body).send().await.unwrap()).await;
        assert_eq!((s, c.as_str()), (*status, *code), "{body}: {m}");
        for p in *parts {
            assert!(m.contains(p), "{body}: expected {p:?} in {m:?}");
        }
        assert_eq!(
            orders_head(&served, &http).await,
            head,
            "{body}: something was appended"
        );
    }

    // A line over the document limit is refused before it is parsed (it is not even JSON).
    let big = format!(
        "{{\"id\":2,\"customer\":\"b\",\"amount\":1}}\n{}",
        "[".repeat(17 << 20)
    );
    let (s, c, m) = error(http.post(&url).body(big).send().await.unwrap()).await;
    assert_eq!((s, c.as_str()), (400, "invalid"), "{m}");
    assert!(
        m.contains(
            "line 2: a document of 17825792 bytes, over the limit of 16777216 bytes (docBytesMax)"
        ),
        "{m}"
    );
    assert_eq!(orders_head(&served, &http).await, head);

    let (s, c, m) = error(
        http.post(served.url("/v1/collections/acme%2Fnope/documents"))
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, c.as_str()), (404, "not_found"));
    assert!(m.contains("unknown collection 'acme/nope'"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_catalogs_change_nothing() {
    let (served, http) = setup().await;
    let before: Value = flow_tests::get_json(&http, &served.base, "/v1/catalog").await;
    let views = served.dir.path().join("views.db");

    let mut unknown_field = crate::e2e::bundle(&views);
    unknown_field["catalog"]["collections"]["acme/orders"]["colour"] = json!("blue");
    let mut key_not_required = crate::e2e::bundle(&views);
    key_not_required["catalog"]["collections"]["acme/orders"]["key"] = json!(["/note"]);
    key_not_required["catalog"]["collections"]["acme/orders"]["schema"]["properties"]["note"] =
        json!({"type": "string"});
    let mut key_not_scalar = crate::e2e::bundle(&views);
    key_not_scalar["catalog"]["collections"]["acme/orders"]["schema"]["properties"]["id"] =
        json!({"type": "object"});
    let mut unknown_source = crate::e2e::bundle(&views);
    unknown_source["catalog"]["collections"]["acme/customer-totals"]["derive"]["transforms"][0]["source"] =
        json!("acme/nope");
    let mut missing_plugin = crate::e2e::bundle(&views);
    missing_plugin["catalog"]["collections"]["acme/customer-totals"]["derive"]["using"]["wasm"]["plugin"] =
        json!("ghost");
    let mut wrong_world = crate::e2e::bundle(&views);
    wrong_world["catalog"]["collections"]["acme/customer-totals"]["derive"]["using"]["wasm"]["plugin"] =
        json!("materialize-sqlite");

    let capture_def = |plugin: &str, target: &str, allow: Value| {
        json!({"acme/feed": {
            "endpoint": {"wasm": {"plugin": plugin, "config": {}}, "http": {"allow": allow}},
            "bindings": [{"target": target, "resource": {"url": "http://127.0.0.1:1/x", "offset": {"param": "o"}}}],
        }})
    };
    let mut capture_wrong_world = crate::e2e::bundle(&views);
    capture_wrong_world["catalog"]["captures"] =
        capture_def("totals", "acme/orders", json!(["127.0.0.1"]));
    let mut capture_into_derivation = crate::e2e::bundle(&views);
    capture_into_derivation["catalog"]["captures"] =
        capture_def("source-http", "acme/customer-totals", json!(["127.0.0.1"]));
    let mut capture_bad_allow = crate::e2e::bundle(&views);
    capture_bad_allow["catalog"]["captures"] =
        capture_def("source-http", "acme/orders", json!(["http://127.0.0.1/"]));
    let mut capture_bad_interval = crate::e2e::bundle(&views);
    capture_bad_interval["catalog"]["captures"] =
        capture_def("source-http", "acme/orders", json!([]));
    capture_bad_interval["catalog"]["captures"]["acme/feed"]["interval"] = json!("soon");
    let mut unknown_connector = crate::e2e::bundle(&views);
    unknown_connector["catalog"]["materializations"]["acme/views"]["endpoint"]["connector"] =
        json!("oracle");

    let cases: Vec<(Value, &[&str])> = vec![
        (unknown_field, &["unknown field `colour`"]),
        (
            capture_wrong_world,
            &[
                "acme/feed: plugin 'totals' implements the derivation world, but acme/feed needs a capture plugin",
            ],
        ),
        (
            capture_into_derivation,
            &[
                "capture acme/feed: binding 0: target collection 'acme/customer-totals' is a derivation",
            ],
        ),
        (
            capture_bad_allow,
            &["acme/feed: http.allow: 'http://127.0.0.1/' must be a host"],
        ),
        (
            capture_bad_interval,
            &["capture acme/feed: interval: 'soon' is not a duration"],
        ),
        (
            unknown_connector,
            &["acme/views: unknown connector 'oracle': this host has sqlite"],
        ),
        (
            key_not_required,
            &[
                "collection acme/orders",
                "key /note must point at a required location",
            ],
        ),
        (
            key_not_scalar,
            &[
                "collection acme/orders",
                "key /id must point at a scalar",
                "object",
            ],
        ),
        (
            unknown_source,
            &["transform fromOrders: unknown source collection 'acme/nope'"],
        ),
        (missing_plugin, &["no plugin named 'ghost' is deployed"]),
        (
            wrong_world,
            &[
                "'materialize-sqlite' implements the materialization world",
                "needs a derivation plugin",
            ],
        ),
    ];
    for (bundle, parts) in cases {
        let (s, c, m) = error(
            http.post(served.url("/v1/catalog"))
                .json(&bundle)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, c.as_str()), (400, "invalid"), "{m}");
        for p in parts {
            assert!(m.contains(p), "expected {p:?} in {m:?}");
        }
        let after: Value = flow_tests::get_json(&http, &served.base, "/v1/catalog").await;
        assert_eq!(after, before, "a refused publish changed the catalog");
    }
}

/// The smallest component importing `name` (an instance with nothing in it), exporting
/// nothing: what the host reads of a component before compiling it is its names.
fn component_importing(name: &str) -> Vec<u8> {
    let mut b = b"\0asm\x0d\0\x01\0".to_vec();
    // Type section: one instance type, no declarations.
    b.extend([7, 3, 1, 0x42, 0]);
    // Import section: one import of that instance type.
    let mut section = vec![1, 0, name.len() as u8];
    section.extend(name.as_bytes());
    section.extend([5, 0]);
    b.extend([10, section.len() as u8]);
    b.extend(section);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_components_are_refused() {
    let (served, http) = setup().await;
    let list = |http: reqwest::Client, url: String| async move {
        http.get(url).send().await.unwrap().text().await.unwrap()
    };
    let before = list(http.clone(), served.url("/v1/plugins")).await;

    let core_module: &[u8] = b"\0asm\x01\0\0\0";
    let cases: Vec<(Vec<u8>, &[&str])> = vec![
        (
            b"name: not wasm".to_vec(),
            &["not a WebAssembly component", "not WebAssembly at all"],
        ),
        (
            core_module.to_vec(),
            &["core WebAssembly module", "wasm32-wasip2"],
        ),
        (
            plugin_bytes(plugins::NO_WORLD),
            &["implements no known world", "flow:plugin/derive@0.1."],
        ),
        // What componentize-js builds by default: refused by name, before compiling.
        (
            component_importing("wasi:http/types@0.2.3"),
            &[
                "imports wasi:http/types@0.2.3, which this host grants no plugin",
                "componentize-js -d http fetch-event",
            ],
        ),
        (
            component_importing("flow:plugin/state@0.2.0"),
            &[
                "imports flow:plugin/state@0.2.0",
                "another version of the plugin contract",
            ],
        ),
    ];
    for (bytes, parts) in cases {
        let (s, c, m) = error(
            http.post(served.url("/v1/plugins/totals"))
                .body(bytes)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, c.as_str()), (400, "invalid"), "{m}");
        assert!(m.starts_with("plugin totals:"), "{m}");
        for p in parts {
            assert!(m.contains(p), "expected {p:?} in {m:?}");
        }
    }
    assert_eq!(
        list(http.clone(), served.url("/v1/plugins")).await,
        before,
        "a refused deploy changed the plugins"
    );
    // Nothing refused was compiled into the cache.
    let no_world = flow_tests::digest(plugins::NO_WORLD).replace(':', "-");
    let cached: Vec<String> = std::fs::read_dir(served.dir.path().join("data/compiled"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !cached.iter().any(|f| f.starts_with(&no_world)),
        "a refused component was cached: {cached:?}"
    );
    let history: Value =
        flow_tests::get_json(&http, &served.base, "/v1/plugins/totals/versions").await;
    assert_eq!(history["versions"].as_array().unwrap().len(), 1);

    // A catalog whose module implements no known world is refused as a whole.
    let mut bundle = crate::e2e::bundle(&served.dir.path().join("views.db"));
    bundle["catalog"]["collections"]["acme/customer-totals"]["derive"]["using"]["wasm"] =
        json!({"module": "x.wasm"});
    use base64::Engine as _;
    bundle["modules"] = json!({"x.wasm": base64::engine::general_purpose::STANDARD.encode(plugin_bytes(plugins::NO_WORLD))});
    let (s, _, m) = error(
        http.post(served.url("/v1/catalog"))
            .json(&bundle)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        m.contains("acme/customer-totals: module: the component implements no known world"),
        "{m}"
    );
    assert_eq!(list(http.clone(), served.url("/v1/plugins")).await, before);
}
