//! A real PostgreSQL server on loopback, in a temp dir, for the tests that materialize into
//! one. Debian's `postgresql` package (which `make test` installs) provides `initdb`,
//! `pg_ctl` and `psql`; the server refuses to run as root, so as root it runs as the
//! `postgres` user through `runuser`. Password authentication (scram-sha-256) is on: the
//! host connects as a role with a password taken from the environment, as a user would.

use crate::free_port;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The role and database a test's host writes as and into.
pub const PG_USER: &str = "flow";
pub const PG_PASSWORD: &str = "flow-test-secret";
pub const PG_DATABASE: &str = "views";
const SUPERUSER_PASSWORD: &str = "postgres-test-secret";

/// A PostgreSQL server, stopped (immediately) on drop.
pub struct PgServer {
    dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
}

/// The directory of PostgreSQL's server programs: on PATH, or Debian's versioned directory.
fn bin_dir() -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        && out.status.success()
    {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if let Some(dir) = std::fs::canonicalize(&p)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
        {
            return dir;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|d| d.join("initdb").is_file());
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("PostgreSQL's server programs are not installed (initdb): `apt-get install postgresql`, as `make test` does")
    })
}

/// Whether the tests run as root (database servers refuse to, unless told whose they are).
pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PgServer {
    /// Create a cluster and start it on a free loopback port, with role `flow` owning
    /// database `views`; `wal_level=logical` and the role's REPLICATION let captures read
    /// changes from a replication slot.
    pub fn start() -> PgServer {
        let dir = tempfile::tempdir().unwrap();
        let bin = bin_dir();
        let root = is_root();
        if root {
            // The server's files belong to the user it runs as.
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown of {}", dir.path().display());
        }
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, SUPERUSER_PASSWORD).unwrap();
        let server = PgServer {
            port: free_port(),
            dir,
            bin,
        };
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                "--pwfile",
                pwfile.to_str().unwrap(),
                "--no-sync",
            ],
        );
        server.pg_ctl_start();
        server.psql_super(&format!(
            "CREATE ROLE {PG_USER} LOGIN REPLICATION PASSWORD '{PG_PASSWORD}'"
        ));
        server.psql_super(&format!("CREATE DATABASE {PG_DATABASE} OWNER {PG_USER}"));
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Run one of the server programs, as `postgres` when this is root.
    fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        let exe = self.bin.join(program);
        let out = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&exe)
                .args(args)
                .current_dir(self.dir.path())
                .output()
        } else {
            Command::new(&exe)
                .args(args)
                .current_dir(self.dir.path())
                .output()
        }
        .unwrap_or_else(|e| panic!("failed to run {}: {e}", exe.display()));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn pg_ctl_start(&self) {
        let data = self.data();
        let log = self.dir.path().join("server.log");
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=50 -c wal_level=logical",
            self.port,
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// Stop the server at once (connections drop), as a crash or an outage would.
    pub fn stop(&self) {
        let data = self.data();
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// Start it again after `stop`, on the same port.
    pub fn restart(&self) {
        self.pg_ctl_start();
    }

    /// `host:port`, as an endpoint's `address`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Run SQL with `psql` as the superuser (in database `postgres`).
    fn psql_super(&self, sql: &str) -> String {
        self.psql_as("postgres", SUPERUSER_PASSWORD, "postgres", sql)
    }

    /// Run SQL with PostgreSQL's own client, `psql`, as the test role in the test database;
    /// its unaligned output (`|`-separated, no headers).
    pub fn psql(&self, sql: &str) -> String {
        self.psql_as(PG_USER, PG_PASSWORD, PG_DATABASE, sql)
    }

    /// `psql`, with an error (a table not created yet) as a value.
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        let out = self.psql_command(PG_USER, PG_PASSWORD, PG_DATABASE, sql);
        match out.status.success() {
            true => Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string()),
            false => Err(String::from_utf8_lossy(&out.stderr).trim_end().to_string()),
        }
    }

    fn psql_command(
        &self,
        user: &str,
        password: &str,
        db: &str,
        sql: &str,
    ) -> std::process::Output {
        Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                user,
                "-d",
                db,
            ])
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGPASSWORD", password)
            .output()
            .expect(
                "failed to run psql (install PostgreSQL's client: `apt-get install postgresql`)",
            )
    }

    fn psql_as(&self, user: &str, password: &str, db: &str, sql: &str) -> String {
        let out = self.psql_command(user, password, db, sql);
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    /// The endpoint config a catalog gives the `postgres` connector, with the password taken
    /// from the environment variable `env`.
    pub fn endpoint_config(&self, env: &str) -> serde_json::Value {
        serde_json::json!({
            "address": self.address(),
            "database": PG_DATABASE,
            "user": PG_USER,
            "password": {"env": env},
        })
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data();
        let exe = self.bin.join("pg_ctl");
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        let _ = cmd
            .args([
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
    }
}
