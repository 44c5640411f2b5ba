//! A full disk: the host's data directory on a small tmpfs fills up. Ingests then answer 507
//! with the path and the free bytes, `/v1/health` says unhealthy, and a derivation pauses;
//! once space is freed, writes resume without a restart, health is ok again, every
//! acknowledged document is there, and the derivation catches up by itself.
//!
//! Mounting a tmpfs needs root, as the CI machine runs; the test fails (never skips) without.

use crate::plugins;
use flow_tests::Proc;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u64) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("failed to run mount");
        assert!(
            out.status.success(),
            "this test mounts a {mib} MiB tmpfs at {} and needs root (CI runs as root): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn bundle() -> Value {
    let schema = json!({"type": "object",
        "properties": {"id": {"type": "integer"}, "pad": {"type": "string"}}, "required": ["id"]});
    json!({
        "source": "disk-full",
        "catalog": {"collections": {
            "d/in": {"schema": schema, "key": ["/id"]},
            "d/out": {"schema": schema, "key": ["/id"], "derive": {
                "using": {"wasm": {"module": "p.wasm"}},
                "transforms": [{"name": "fromIn", "source": "d/in"}]}},
        }},
        "modules": {"p.wasm": flow_tests::module_base64(plugins::PASSTHROUGH)},
    })
}

fn batch(from: u64, n: u64) -> String {
    (from..from + n)
        .map(|id| format!("{}\n", json!({"id": id, "pad": "x".repeat(1000)})))
        .collect()
}

/// Fill the filesystem of `path` with a file, leaving about `leave` bytes free.
fn fill(path: &Path, leave: u64) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![7u8; 1 << 20];
    let mut written = 0u64;
    while f.write_all(&chunk).is_ok() {
        written += chunk.len() as u64;
    }
    let _ = f.sync_all();
    f.set_len(written.saturating_sub(leave)).unwrap();
    f.sync_all().unwrap();
}

async fn ids(http: &reqwest::Client, p: &Proc, collection: &str) -> Vec<u64> {
    let path = format!(
        "/v1/collections/{}/documents",
        collection.replace('/', "%2F")
    );
    let mut ids: Vec<u64> = flow_tests::read_ndjson(http, &p.base, &path)
        .await
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_then_heals_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = Tmpfs::mount(&dir.path().join("mnt"), 48);
    let (data, log) = (mnt.0.join("data"), dir.path().join("flow.log"));
    let http = reqwest::Client::new();
    let p = Proc::start(&data, &log).await;
    let r = http
        .post(p.url("/v1/catalog"))
        .json(&bundle())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "publish: {}", r.text().await.unwrap());

    let ingest = async |from: u64| {
        let r = http
            .post(p.url("/v1/collections/d%2Fin/documents"))
            .body(batch(from, 100))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or_default())
    };
    let filler = mnt.0.join("filler");
    fill(&filler, 2 << 20);

    // Ingest until the disk is full; remember what was acknowledged.
    let mut acked: Vec<u64> = Vec::new();
    let mut next = 0u64;
    let refusal = loop {
        assert!(next < 100_000, "the disk never filled");
        let (status, body) = ingest(next).await;
        if status == 200 {
            acked.extend(next..next + 100);
            next += 100;
            continue;
        }
        break (status, body);
    };
    let (status, body) = refusal;
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_storage", "{body}");
    let m = body["error"]["message"].as_str().unwrap();
    eprintln!("full after {} acknowledged documents: {m}", acked.len());
    assert!(
        m.contains("flow.redb") && m.contains("No space left"),
        "{m}"
    );
    assert!(m.contains("bytes free on its filesystem"), "{m}");
    let health = http.get(p.url("/v1/health")).send().await.unwrap();
    assert_eq!(health.status(), 503);
    let h: Value = health.json().await.unwrap();
    assert_eq!(h["status"], "unhealthy", "{h}");
    // The committer tries to heal the database every second, and before every write (the
    // derivation's): while the disk stays full, it stays unhealthy (a heal that proved only
    // an empty commit once called it healthy here).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let health = http.get(p.url("/v1/health")).send().await.unwrap();
    assert_eq!(health.status(), 503, "{}", health.text().await.unwrap());

    // Free the space: writes resume without a restart.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = ingest(next).await;
        if status == 200 {
            acked.extend(next..next + 100);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes did not resume: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        http.get(p.url("/v1/health")).send().await.unwrap().status(),
        200
    );

    // Nothing acknowledged is lost, and the derivation catches up by itself.
    let got = ids(&http, &p, "d/in").await;
    let missing: Vec<&u64> = acked
        .iter()
        .filter(|i| got.binary_search(i).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged documents are missing",
        missing.len()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while ids(&http, &p, "d/out").await != got {
        assert!(
            Instant::now() < deadline,
            "the derivation did not catch up after the disk freed: {}",
            flow_tests::get_json(&http, &p.base, "/v1/tasks").await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let tasks = flow_tests::get_json(&http, &p.base, "/v1/tasks").await;
    assert_eq!(tasks["tasks"][0]["state"], "running", "{tasks}");
    p.kill();
}
