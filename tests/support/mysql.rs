//! A real MariaDB server on loopback, in a temp dir, for the tests that materialize into one.
//! Debian's `mariadb-server` package (which `make test` installs) provides
//! `mariadb-install-db`, `mariadbd` and the `mariadb` client. The server refuses to run as
//! root unless told so (`--user=root`); it runs as whoever the tests run as. The host connects
//! as a user with a password taken from the environment, as a user would.

use crate::free_port;
use crate::postgres::is_root;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The user and database a test's host writes as and into.
pub const MY_USER: &str = "flow";
pub const MY_PASSWORD: &str = "flow-mysql-test-secret";
pub const MY_DATABASE: &str = "views";

/// A MariaDB server, killed on drop.
pub struct MyServer {
    dir: tempfile::TempDir,
    pub port: u16,
    server: Mutex<Option<Child>>,
}

/// A program of the server package, with how to get it when it is missing.
fn program(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = PathBuf::from(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "MariaDB's {name} is not installed: `apt-get install mariadb-server`, as `make test` does"
    )
}

impl MyServer {
    /// Create a data directory and start a server on a free loopback port, with user `flow`
    /// owning database `views`.
    pub fn start() -> MyServer {
        let dir = tempfile::tempdir().unwrap();
        let server = MyServer {
            port: free_port(),
            dir,
            server: Mutex::new(None),
        };
        // Its own temp dir: servers bootstrapping at once in a shared /tmp collide on their
        // temporary tables' names ("Could not remove temporary table").
        std::fs::create_dir_all(server.tmp()).unwrap();
        let mut install = Command::new(program("mariadb-install-db"));
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", server.data().display()))
            .arg(format!("--tmpdir={}", server.tmp().display()))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ]);
        if is_root() {
            install.arg("--user=root");
        }
        let out = install.output().expect("failed to run mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        server.restart();
        server
            .sql_as(
                "root",
                "",
                "",
                &format!(
                    "CREATE DATABASE {MY_DATABASE}; \
                 CREATE USER '{MY_USER}'@'127.0.0.1' IDENTIFIED BY '{MY_PASSWORD}'; \
                 GRANT ALL ON {MY_DATABASE}.* TO '{MY_USER}'@'127.0.0.1'"
                ),
            )
            .unwrap();
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn tmp(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("mysqld.sock")
    }

    /// Start the server (again, after `stop`) on its port, and wait until it answers.
    pub fn restart(&self) {
        let mut cmd = Command::new(program("mariadbd"));
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.data().display()))
            .arg(format!("--tmpdir={}", self.tmp().display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!(
                "--pid-file={}",
                self.dir.path().join("pid").display()
            ))
            .arg(format!(
                "--log-error={}",
                self.dir.path().join("server.log").display()
            ))
            .arg(format!("--port={}", self.port))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=64M",
                "--innodb-log-file-size=48M",
                "--max-connections=50",
            ]);
        if is_root() {
            cmd.arg("--user=root");
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("failed to start mariadbd");
        *self.server.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.sql_as("root", "", "", "SELECT 1").is_err() {
            assert!(
                Instant::now() < deadline,
                "mariadbd did not answer within 60 s: {}",
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
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

    /// Run SQL with MariaDB's own client, `mariadb`, as the test user in the test database;
    /// its output in batch form (no headers), columns split by `|` as `psql -A` does, or the
    /// client's error.
    pub fn try_sql(&self, sql: &str) -> Result<String, String> {
        self.sql_as(MY_USER, MY_PASSWORD, MY_DATABASE, sql)
    }

    /// `try_sql`, failing the test on an error.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql)
            .unwrap_or_else(|e| panic!("mariadb {sql:?} failed: {e}"))
    }

    fn sql_as(&self, user: &str, password: &str, db: &str, sql: &str) -> Result<String, String> {
        let mut cmd = Command::new(program("mariadb"));
        cmd.arg("--no-defaults");
        if user == "root" {
            // root is root@localhost: the socket, not TCP.
            cmd.arg("--protocol=socket")
                .arg(format!("--socket={}", self.socket().display()));
        } else {
            cmd.args(["-h", "127.0.0.1", "-P", &self.port.to_string()]);
        }
        cmd.args(["-u", user, "--batch", "--skip-column-names", "-e", sql]);
        if !db.is_empty() {
            cmd.arg(db);
        }
        // The password through the environment, not the command line.
        let out = cmd
            .env("MYSQL_PWD", password)
            .output()
            .expect("failed to run the mariadb client");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout)
                .trim_end()
                .replace('\t', "|"))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim_end().to_string())
        }
    }

    /// The endpoint config a catalog gives the `mysql` connector, with the password taken
    /// from the environment variable `env`.
    pub fn endpoint_config(&self, env: &str) -> serde_json::Value {
        serde_json::json!({
            "address": self.address(),
            "database": MY_DATABASE,
            "user": MY_USER,
            "password": {"env": env},
        })
    }
}

impl Drop for MyServer {
    fn drop(&mut self) {
        self.stop();
    }
}
