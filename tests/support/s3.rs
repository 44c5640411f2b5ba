//! An S3-compatible server (moto) on loopback.

use crate::free_port;

/// An S3-compatible server (moto, from PyPI: `pip install "moto[server]"`, which `make test`
/// does) on a loopback port, killed on drop.
pub struct S3Server {
    child: std::process::Child,
    pub port: u16,
}

impl S3Server {
    /// Start moto's server on `port` (0: a free one) and wait until it answers.
    pub async fn start(port: u16) -> S3Server {
        let port = if port != 0 { port } else { free_port() };
        let child = std::process::Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("failed to start python3 -m moto.server (install it with `python3 -m pip install 'moto[server]'`, as `make test` does): {e}")
            });
        let server = S3Server { child, port };
        let http = reqwest::Client::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while http.get(server.endpoint()).send().await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "moto did not answer within 60 s (is it installed? `python3 -m pip install 'moto[server]'`)"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Create a bucket (moto does not check credentials).
    pub async fn create_bucket(&self, bucket: &str) {
        let r = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint()))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "creating bucket {bucket}: {}",
            r.status()
        );
    }

    /// Every key in `bucket` under `prefix` (ListObjectsV2).
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let text = reqwest::Client::new()
            .get(format!(
                "{}/{bucket}?list-type=2&prefix={prefix}",
                self.endpoint()
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(String::from)
            .collect()
    }

    /// The environment `flow serve` needs to use this server for `s3://` stores.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        s3_env(&self.endpoint())
    }
}

/// The environment `flow serve` needs to use an S3-compatible server at `endpoint`.
pub fn s3_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT", endpoint.to_string()),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
