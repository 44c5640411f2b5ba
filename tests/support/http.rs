//! Loopback ports and the API calls tests share.

use crate::plugin_bytes;

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("no free loopback port")
        .port()
}

/// Deploy the plugin component at `path` as `name` through the API at `base`; panics unless
/// the host accepted it. Returns the version record.
pub async fn deploy(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    path: &str,
) -> serde_json::Value {
    let r = http
        .post(format!("{base}/v1/plugins/{name}"))
        .body(plugin_bytes(path))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "deploying {name} from {path}");
    r.json().await.unwrap()
}

/// POST `bundle` to `base`'s `/v1/catalog`; asserts it was published (200). Its answer.
pub async fn publish(
    http: &reqwest::Client,
    base: &str,
    bundle: &serde_json::Value,
) -> serde_json::Value {
    let r = http
        .post(format!("{base}/v1/catalog"))
        .json(bundle)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "publish: {text}");
    serde_json::from_str(&text).unwrap()
}

/// GET `path` at `base` and parse its JSON body.
pub async fn get_json(http: &reqwest::Client, base: &str, path: &str) -> serde_json::Value {
    http.get(format!("{base}{path}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// GET `path` at `base`: its body as text.
pub async fn get_text(http: &reqwest::Client, base: &str, path: &str) -> String {
    http.get(format!("{base}{path}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// GET `path` at `base` and parse its NDJSON body.
pub async fn read_ndjson(http: &reqwest::Client, base: &str, path: &str) -> Vec<serde_json::Value> {
    get_text(http, base, path)
        .await
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every document of `collection`, in journal order.
pub async fn documents(
    http: &reqwest::Client,
    base: &str,
    collection: &str,
) -> Vec<serde_json::Value> {
    let path = format!(
        "/v1/collections/{}/documents",
        collection.replace('/', "%2F")
    );
    read_ndjson(http, base, &path).await
}

/// Wait until `collection` holds at least `n` documents; them. Panics with the task statuses
/// after `secs`.
pub async fn wait_for_documents(
    http: &reqwest::Client,
    base: &str,
    collection: &str,
    n: usize,
    secs: u64,
) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let docs = documents(http, base, collection).await;
        if docs.len() >= n {
            return docs;
        }
        if std::time::Instant::now() > deadline {
            let tasks = get_json(http, base, "/v1/tasks").await;
            panic!(
                "{collection} has {} of {n} documents; tasks: {tasks:#}",
                docs.len()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The write head of `collection` (bytes written so far), from `GET /v1/collections`.
pub async fn collection_head(http: &reqwest::Client, base: &str, collection: &str) -> u64 {
    let v = get_json(http, base, "/v1/collections").await;
    v["collections"]
        .as_array()
        .expect("no collections in the answer")
        .iter()
        .find(|c| c["name"] == collection)
        .unwrap_or_else(|| panic!("no collection {collection}"))["head"]
        .as_u64()
        .expect("no head")
}
