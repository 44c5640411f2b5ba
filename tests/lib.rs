//! Shared helpers of the end-to-end tests: plugin paths built by `build.rs`, and a host
//! served on loopback.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// Paths of the plugin components built by `build.rs`.
pub mod plugins {
    include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
}

/// A host over a temporary data directory, with its API served on a loopback port.
pub struct Served {
    pub host: Arc<flow_host::Host>,
    pub base: String,
    pub dir: tempfile::TempDir,
    _server: tokio::task::JoinHandle<()>,
}

impl Served {
    pub async fn start(token: Option<&str>) -> Served {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, token).await
    }

    pub async fn start_in(dir: tempfile::TempDir, token: Option<&str>) -> Served {
        let host =
            flow_host::Host::open(&dir.path().join("data"), flow_host::Limits::default()).unwrap();
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = flow_host::api::router(host.clone(), token.map(String::from));
        let server = tokio::spawn(async move {
            axum_serve(listener, app).await;
        });
        Served {
            host,
            base,
            dir,
            _server: server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

async fn axum_serve(listener: tokio::net::TcpListener, app: flow_host::api::Router) {
    flow_host::api::serve(listener, app).await.unwrap();
}

/// Read a plugin component built by `build.rs`.
pub fn plugin_bytes(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(path)).unwrap_or_else(|e| panic!("failed to read plugin {path}: {e}"))
}

/// A `flow serve` child process on a loopback port over a data directory, for crash tests:
/// `kill` is SIGKILL (`Child::kill` on Unix), so the host gets no chance to clean up. Dropping
/// a `Proc` kills it too, so a failing test leaves no stray host behind.
pub struct Proc {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log: std::path::PathBuf,
}

impl Proc {
    /// The `flow` binary: `$FLOW_BIN`, or `target/debug/flow` beside this test binary (which
    /// runs from `target/debug/deps/`). `cargo test --workspace` builds it; `cargo test -p
    /// flow-tests` alone does not, so this fails with the command that does.
    pub fn binary() -> std::path::PathBuf {
        if let Some(bin) = std::env::var_os("FLOW_BIN") {
            return bin.into();
        }
        let exe = std::env::current_exe().expect("no current executable");
        let debug = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary is not in target/<profile>/deps/");
        let bin = debug.join(format!("flow{}", std::env::consts::EXE_SUFFIX));
        assert!(
            bin.is_file(),
            "the flow binary is missing at {}: build it with `cargo build -p flow-host` (or run `cargo test --workspace`), or set FLOW_BIN",
            bin.display()
        );
        // A binary older than the host's sources would test code that no longer exists.
        let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/src");
        if let (Some(built), Some((edited, file))) = (built, newest_file(&src))
            && edited > built
        {
            panic!(
                "the flow binary at {} is older than {}: rebuild it with `cargo build -p flow-host` (or run `cargo test --workspace`)",
                bin.display(),
                file.display()
            );
        }
        bin
    }

    /// Spawn `flow serve --data-dir DATA_DIR` on a free loopback port, appending its output to
    /// `log`, without waiting for it to be ready (see `ready`).
    pub fn spawn(data_dir: &Path, log: &Path) -> Proc {
        Self::spawn_with(data_dir, log, &[], &[])
    }

    /// `spawn` with extra `flow serve` arguments and environment variables.
    pub fn spawn_with(data_dir: &Path, log: &Path, args: &[&str], envs: &[(&str, &str)]) -> Proc {
        // The port is free now; another process could take it before the host binds it, which
        // the host reports by exiting, and `start` answers with another port.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("no free loopback port")
            .port();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("failed to open {}: {e}", log.display()));
        let err = out.try_clone().expect("failed to clone the log file");
        let child = std::process::Command::new(Self::binary())
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            // Settings of the caller's environment would change what is tested.
            .env_remove("FLOW_API_TOKEN")
            .env_remove("FLOW_DATA_DIR")
            .env_remove("FLOW_LISTEN")
            .env_remove("FLOW_STORE")
            .env_remove("FLOW_LIMITS")
            .env_remove("FLOW_PAUSE_AT")
            .env("FLOW_LOG", "info")
            .args(args)
            .envs(envs.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {}: {e}", Self::binary().display()));
        Proc {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log: log.to_path_buf(),
        }
    }

    /// Spawn (as `spawn`) and wait until `GET /v1/health` answers. If another process took
    /// the port first, the host exits saying so, and this tries again on another port.
    pub async fn start(data_dir: &Path, log: &Path) -> Proc {
        Self::start_with(data_dir, log, &[], &[]).await
    }

    /// `start` with extra `flow serve` arguments and environment variables.
    pub async fn start_with(
        data_dir: &Path,
        log: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Proc {
        const ATTEMPTS: usize = 3;
        for _ in 1..ATTEMPTS {
            let since = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
            let mut p = Self::spawn_with(data_dir, log, args, envs);
            match p.wait_ready().await {
                Ok(()) => return p,
                Err(_) if p.log_since(since).contains("failed to listen") => continue,
                Err(e) => panic!("{e}"),
            }
        }
        let mut p = Self::spawn_with(data_dir, log, args, envs);
        p.ready().await;
        p
    }

    /// Wait until the host's log shows `needle` (e.g. a `FLOW_PAUSE_AT` pause); panics with
    /// the log after `timeout`.
    pub async fn wait_for_log(&self, needle: &str, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while !self.log_since(0).contains(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "the host's log did not show {needle:?} within {timeout:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Wait until `GET /v1/health` answers 200; panic with the host's log if it exits first or
    /// is not ready within a minute (a debug host repairing its database after a kill, and
    /// loading its compiled plugins, takes well under that).
    pub async fn ready(&mut self) {
        if let Err(e) = self.wait_ready().await {
            panic!("{e}");
        }
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("failed to poll the host") {
                return Err(format!(
                    "flow serve exited with {status} before it was ready; log {}:\n{}",
                    self.log.display(),
                    self.log_tail()
                ));
            }
            if let Ok(r) = http.get(self.url("/v1/health")).send().await
                && r.status() == 200
            {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "flow serve was not ready within 60s; log {}:\n{}",
                    self.log.display(),
                    self.log_tail()
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL the host and reap it. Panics if it had already exited on its own: a host that
    /// dies by itself is a failure the test should see, not a kill that landed.
    pub fn kill(mut self) {
        if let Some(status) = self.child.try_wait().expect("failed to poll the host") {
            panic!(
                "flow serve had already exited ({status}) before the kill; log {}:\n{}",
                self.log.display(),
                self.log_tail()
            );
        }
        self.child.kill().expect("failed to SIGKILL the host");
        self.child.wait().expect("failed to reap the host");
    }

    /// What the log gained past byte `offset`.
    fn log_since(&self, offset: u64) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(bytes.get(offset as usize..).unwrap_or_default()).into_owned()
    }

    /// The last lines of the host's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

/// A TCP proxy on a loopback port in front of `target`, which a test can take down (new
/// connections are closed at once, as by a server that is not there, and open ones are cut)
/// and bring back: an object store that becomes unreachable and returns.
pub struct Outage {
    pub port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    epoch: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Outage {
    pub async fn start(target: u16) -> Outage {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let epoch = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (up2, epoch2) = (up.clone(), epoch.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let (up3, epoch3) = (up2.clone(), epoch2.clone());
                let born = epoch3.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    let cut = async {
                        while up3.load(Ordering::SeqCst) && epoch3.load(Ordering::SeqCst) == born {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! { _ = copy => {}, _ = cut => {} }
                });
            }
        });
        Outage {
            port,
            up,
            epoch,
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Refuse new connections and cut open ones (`false`), or pass them through (`true`).
    pub fn set_up(&self, up: bool) {
        use std::sync::atomic::Ordering;
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.up.store(up, Ordering::SeqCst);
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The fragments of `journal` in the `file://` store at `root`, as (begin, end) by begin, read
/// from their names with the host's own parser, and the files under the journal that are not
/// fragments (e.g. a temporary file of an upload a kill interrupted).
pub fn fragment_files(root: &Path, journal: &str) -> (Vec<(u64, u64)>, Vec<String>) {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push(e.path());
            }
        }
    }
    let mut files = Vec::new();
    walk(&root.join(journal), &mut files);
    let (mut ranges, mut others) = (Vec::new(), Vec::new());
    for f in files {
        let rel = f.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        match flow_host::fragment::parse_name(&rel) {
            Ok(p) if p.journal == journal => ranges.push((p.begin, p.end)),
            _ => others.push(rel),
        }
    }
    ranges.sort();
    (ranges, others)
}

/// Check that `ranges` (sorted) tile a journal from offset 0 with no gap or overlap; where
/// they end.
pub fn tiled_end(ranges: &[(u64, u64)], what: &str) -> u64 {
    let mut at = 0;
    for (b, e) in ranges {
        assert_eq!(*b, at, "{what}: fragments {ranges:?}");
        at = *e;
    }
    at
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("no free loopback port")
        .port()
}

/// The most recently modified file under `dir`, with its time.
fn newest_file(dir: &Path) -> Option<(std::time::SystemTime, std::path::PathBuf)> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let found = if path.is_dir() {
            newest_file(&path)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .map(|t| (t, path))
        };
        if let Some(f) = found
            && newest.as_ref().is_none_or(|(t, _)| f.0 > *t)
        {
            newest = Some(f);
        }
    }
    newest
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

/// GET `path` at `base` and parse its NDJSON body.
pub async fn read_ndjson(http: &reqwest::Client, base: &str, path: &str) -> Vec<serde_json::Value> {
    let text = http
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `sha256:...` digest of a plugin component file, as the registry names versions.
pub fn digest(path: &str) -> String {
    use std::fmt::Write;
    let mut hex = String::new();
    for b in flow_host_digest(&plugin_bytes(path)) {
        let _ = write!(hex, "{b:02x}");
    }
    format!("sha256:{hex}")
}

fn flow_host_digest(bytes: &[u8]) -> Vec<u8> {
    flow_host::plugin::sha256(bytes)
}
