//! A publish is one step under `kill -9`: the bundle's new plugin versions and its catalog
//! become live together, or neither does. The host is killed while paused at each window of
//! a publish (`FLOW_PAUSE_AT`: after the checks, inside the recording transaction, after it
//! committed) and at random moments of publishes in flight, then restarted and checked.

use crate::plugins;
use flow_tests::Proc;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// Derivations each published with its own module: 8 plugins recorded by one publish.
const TASKS: usize = 8;

/// Round `round`'s bundle: every derivation runs `module`, and collection `p/round-N` marks
/// which publish the catalog holds.
fn bundle(round: usize, module: &str) -> Value {
    let schema =
        json!({"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]});
    let mut collections = serde_json::Map::new();
    collections.insert("p/in".into(), json!({"schema": schema, "key": ["/id"]}));
    collections.insert(
        format!("p/round-{round}"),
        json!({"schema": schema, "key": ["/id"]}),
    );
    for t in 0..TASKS {
        collections.insert(
            format!("p/d{t}"),
            json!({"schema": schema, "key": ["/id"], "derive": {
                "using": {"wasm": {"module": format!("d{t}.wasm"), "config": {}}},
                "transforms": [{"name": "fromIn", "source": "p/in"}]}}),
        );
    }
    let modules: serde_json::Map<String, Value> = (0..TASKS)
        .map(|t| {
            (
                format!("d{t}.wasm"),
                json!(flow_tests::module_base64(module)),
            )
        })
        .collect();
    json!({"source": format!("round {round}"), "catalog": {"collections": collections}, "modules": modules})
}

/// Rounds alternate two components that both pass documents through.
fn module(round: usize) -> &'static str {
    if round.is_multiple_of(2) {
        plugins::PASSTHROUGH
    } else {
        plugins::SANDBOX_PROBE
    }
}

/// The round the catalog holds, and every derivation's live digest: all of them must be the
/// digest of that round's module, and no version of a later round's may exist.
async fn check(http: &reqwest::Client, p: &Proc, context: &str) -> usize {
    let catalog = flow_tests::get_json(http, &p.base, "/v1/catalog").await;
    let rounds: Vec<usize> = catalog["collections"]
        .as_object()
        .unwrap()
        .keys()
        .filter_map(|k| k.strip_prefix("p/round-")?.parse().ok())
        .collect();
    let round = *rounds.iter().max().expect("no round in the catalog");
    let want = flow_tests::digest(module(round));
    let plugins = flow_tests::get_json(http, &p.base, "/v1/plugins").await;
    for t in 0..TASKS {
        let name = format!("p/d{t}");
        let live = plugins["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{context}: no plugin {name}"));
        assert_eq!(
            live["digest"].as_str().unwrap(),
            want,
            "{context}: plugin {name} is at version {} while the catalog is at round {round}",
            live["seq"]
        );
    }
    round
}

async fn start(data: &Path, log: &Path, pause: Option<&str>) -> Proc {
    match pause {
        Some(point) => Proc::start_with(data, log, &[], &[("FLOW_PAUSE_AT", point)]).await,
        None => Proc::start(data, log).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_publish_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = (dir.path().join("data"), dir.path().join("flow.log"));
    let http = reqwest::Client::new();
    let p = start(&data, &log, None).await;
    flow_tests::publish(&http, &p.base, &bundle(0, module(0))).await;
    assert_eq!(check(&http, &p, "round 0").await, 0);
    p.kill();

    // Each window of a publish, paused there and killed.
    let mut round = 0;
    for (point, lands) in [
        ("publish-prepared", false),
        ("publish-recording", false),
        ("publish-committed", true),
    ] {
        let next = round + 1;
        let p = start(&data, &log, Some(point)).await;
        let body = bundle(next, module(next));
        let (h, url) = (http.clone(), p.url("/v1/catalog"));
        let inflight = tokio::spawn(async move { h.post(url).json(&body).send().await });
        p.wait_for_log(&format!("paused at {point}"), Duration::from_secs(60))
            .await;
        p.kill();
        let _ = inflight.await;
        let p = start(&data, &log, None).await;
        let got = check(&http, &p, &format!("killed at {point}")).await;
        assert_eq!(got, if lands { next } else { round }, "killed at {point}");
        round = got;
        p.kill();
    }

    // Kills at random moments of publishes in flight.
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..6 {
        let next = round + 1;
        let p = start(&data, &log, None).await;
        let body = bundle(next, module(next));
        let (h, url) = (http.clone(), p.url("/v1/catalog"));
        let inflight = tokio::spawn(async move { h.post(url).json(&body).send().await });
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        tokio::time::sleep(Duration::from_millis(rng % 400)).await;
        p.kill();
        let _ = inflight.await;
        let p = start(&data, &log, None).await;
        let got = check(&http, &p, &format!("random kill {i}")).await;
        assert!(got == round || got == next, "random kill {i}: round {got}");
        round = got;
        p.kill();
    }
}
