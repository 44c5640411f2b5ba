//! `flow serve`: the host.

use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct Serve {
    /// Where the host keeps its database, compiled plugins and fragments.
    #[arg(long, env = "FLOW_DATA_DIR", default_value = "./flow-data")]
    data_dir: PathBuf,
    /// Address the HTTP API listens on. A non-loopback address requires --token.
    #[arg(long, env = "FLOW_LISTEN", default_value = "127.0.0.1:8670")]
    listen: SocketAddr,
    /// Object store for journal fragments: file:///DIR (default: file://DATA_DIR/fragments),
    /// s3://BUCKET[/PREFIX], or memory:// (sealed history is lost on exit; for trials). S3 takes the usual
    /// AWS_* variables: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, and for an
    /// S3-compatible server AWS_ENDPOINT=http://HOST:PORT with AWS_ALLOW_HTTP=true.
    #[arg(long, env = "FLOW_STORE")]
    store: Option<String>,
    /// Limits as a JSON object of overrides, e.g. '{"callDeadlineMs": 500}'.
    #[arg(long, env = "FLOW_LIMITS")]
    limits: Option<String>,
}

impl Serve {
    pub fn run(self, token: Option<String>) -> anyhow::Result<ExitCode> {
        if token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            anyhow::bail!(
                "--token (or FLOW_API_TOKEN) is empty: give a secret, or no token at all"
            );
        }
        if !self.listen.ip().is_loopback() && token.is_none() {
            anyhow::bail!(
                "refusing to listen on non-loopback address {} without a token: set --token or FLOW_API_TOKEN",
                self.listen
            );
        }
        let limits: crate::limits::Limits = match &self.limits {
            Some(json) => {
                serde_json::from_str(json).map_err(|e| anyhow::anyhow!("--limits: {e}"))?
            }
            None => crate::limits::Limits::default(),
        };
        let host = crate::runtime::Host::open(
            crate::runtime::HostOptions::new(&self.data_dir)
                .limits(limits)
                .store_url(self.store.clone()),
        )?;
        let rt = tokio::runtime::Runtime::new()?;
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind(self.listen)
                .await
                .map_err(|e| anyhow::anyhow!("failed to listen on {}: {e}", self.listen))?;
            tracing::info!(
                "flow host listening on http://{} (data dir {})",
                listener.local_addr().unwrap_or(self.listen),
                self.data_dir.display()
            );
            let app = crate::api::router(host.clone(), token);
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    // Ctrl-C, or SIGTERM (systemd, docker stop, kill): each task stops at a
                    // transaction boundary and the host saves its counters and logs.
                    let term = async {
                        match tokio::signal::unix::signal(
                            tokio::signal::unix::SignalKind::terminate(),
                        ) {
                            Ok(mut s) => {
                                s.recv().await;
                            }
                            Err(_) => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term => {}
                    }
                    tracing::info!("shutting down");
                })
                .await?;
            let h = host.clone();
            tokio::task::spawn_blocking(move || h.shutdown()).await?;
            Ok(ExitCode::SUCCESS)
        })
    }
}
