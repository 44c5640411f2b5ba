//! `flow serve` as a child process, for tests that kill it.

use std::path::Path;

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
        // A binary older than the host crates' sources would test code that no longer exists.
        let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
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

    /// The host's process id (e.g. to read its memory from `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The host's resident memory now and at its peak, in bytes (`VmRSS`, `VmHWM`).
    pub fn rss(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the host's /proc status is not readable");
        let kib = |field: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {field} in the host's /proc status"))
        };
        (kib("VmRSS:") << 10, kib("VmHWM:") << 10)
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

    /// SIGTERM the host (as systemd or `docker stop` would) and wait for it to exit; panics
    /// unless it exits with success within `timeout`.
    pub fn terminate(mut self, timeout: std::time::Duration) {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("failed to run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("failed to poll the host") {
                assert!(
                    status.success(),
                    "flow serve exited with {status} after SIGTERM; log:\n{}",
                    self.log_tail()
                );
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "flow serve did not exit within {timeout:?} of SIGTERM; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
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

/// The most recently modified file under `dir`, with its time.
/// Only what the binary is built from counts (Rust sources and manifests), not notes beside them.
fn newest_file(dir: &Path) -> Option<(std::time::SystemTime, std::path::PathBuf)> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let built_from = path.extension().is_some_and(|e| e == "rs" || e == "toml");
        let found = if path.is_dir() {
            newest_file(&path)
        } else if !built_from {
            None
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
