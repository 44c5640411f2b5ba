//! A real Redis server on loopback, in a temp dir, for the tests that materialize into one.
//! Debian's `redis-server` package (which `make test` installs) provides `redis-server` and
//! `redis-cli`. It runs with a password (`requirepass`), and with an append-only file fsynced
//! at every write, so that a server killed and started again has everything it acknowledged.

use crate::free_port;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const REDIS_PASSWORD: &str = "flow-redis-test-secret";

/// A Redis server, killed on drop.
pub struct RedisServer {
    dir: tempfile::TempDir,
    pub port: u16,
    server: Mutex<Option<Child>>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let server = RedisServer {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            server: Mutex::new(None),
        };
        server.restart();
        server
    }

    /// Start the server (again, after `stop`) on its port with its data, and wait until it
    /// answers.
    pub fn restart(&self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--requirepass", REDIS_PASSWORD])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--save", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("failed to start redis-server (install it: `apt-get install redis-server`, as `make test` does)");
        *self.server.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.try_cli(&["PING"]).as_deref() != Ok("PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kill the server at once (connections drop), as a crash or an outage would.
    pub fn stop(&self) {
        if let Some(mut child) = self.server.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `host:port`, as an endpoint's `address`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Run a command with Redis's own client, `redis-cli`; its raw output, or its error.
    pub fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("redis-cli")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "--no-auth-warning",
                "--raw",
            ])
            .env("REDISCLI_AUTH", REDIS_PASSWORD)
            .args(args)
            .output()
            .expect("failed to run redis-cli");
        let text = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
        if out.status.success() && !text.starts_with("ERR") && !text.starts_with("NOAUTH") {
            Ok(text)
        } else {
            Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// `try_cli`, failing the test on an error.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|e| panic!("redis-cli {args:?} failed: {e}"))
    }

    /// The endpoint config a catalog gives the `redis` connector, with the password taken
    /// from the environment variable `env`.
    pub fn endpoint_config(&self, env: &str) -> serde_json::Value {
        serde_json::json!({"address": self.address(), "password": {"env": env}})
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
