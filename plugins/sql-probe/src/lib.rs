//! A hostile materialization for tests of the `sql` capability: `config.mode` picks what it
//! asks of the host's database in `open`.
//!
//! - `huge`: a query whose result is 1M rows of 1 KiB (the result cap must stop it);
//! - `slow`: a query that never ends (the call's CPU deadline must interrupt it);
//! - `control`: transaction control and other databases, disguised (comments, case, white
//!   space, a second statement): every attempt must be refused. Reports what each got.
//! - `send`: statements sent without waiting (`sql.send`): a disguised COMMIT (refused at
//!   once), then inserts of keys 1, 2, 1, 3 into a new table, then a query; reports what each
//!   got (the duplicate's failure must be the query's answer). In MySQL's dialect also a sent
//!   DDL statement (refused at once: MySQL would commit it implicitly).
//! - `state`: nothing hostile; opens, and writes nothing.
//!
//! With `config.dialect: mysql`, the same modes in MariaDB's SQL (`huge` and `slow` read the
//! SEQUENCE engine's `seq_1_to_N` tables), with MySQL's own disguises
//! (executable comments, `#` comments, `SET autocommit`, DDL after a write, which MySQL would
//! commit implicitly).
//!
//! Every mode but `state` fails `open` with what the host answered, so a test reads it in the
//! task's error.
//!
//! Build: cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml

use flow_sdk::{Error, Loaded, Materialization, MaterializationSpec, Stored, Value, sql};

struct Probe;

const HUGE: &str = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 1000000) \
                    SELECT i, randomblob(1024) FROM r";
const SLOW: &str =
    "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r";
const MYSQL_HUGE: &str = "SELECT seq, REPEAT('x', 1024) FROM seq_1_to_1000000";
const MYSQL_SLOW: &str = "SELECT max(a.seq * b.seq) FROM seq_1_to_100000 a, seq_1_to_100000 b";
const MYSQL_CONTROL: &[&str] = &[
    "COMMIT",
    "/*!COMMIT*/",
    "/* x */ START TRANSACTION",
    "# a comment\nCOMMIT",
    "-- a comment\nROLLBACK",
    "SET autocommit = 1",
    "SAVEPOINT s",
    "RELEASE SAVEPOINT flow_host_txn",
    "XA START 'x'",
    "LOCK TABLES flow_probe WRITE",
    "PREPARE s FROM 'COMMIT'",
    "CALL mysql.nothing()",
    "SELECT 1; COMMIT",
    "CREATE TABLE IF NOT EXISTS flow_probe (i INT)",
    "INSERT INTO flow_probe VALUES (1)",
    "DROP TABLE flow_probe",
    "TRUNCATE flow_probe",
];
const CONTROL: &[&str] = &[
    "COMMIT",
    "/**/COMMIT",
    "/* x */ BEGIN",
    "-- a comment\nCOMMIT",
    "  commit  ",
    "END TRANSACTION",
    "ROLLBACK",
    "SAVEPOINT s",
    "RELEASE s",
    "/**/ATTACH DATABASE '/tmp/flow-sql-probe.db' AS other",
    "DETACH DATABASE main",
    "VACUUM",
    "SELECT 1; COMMIT",
];

impl Materialization for Probe {
    fn open(spec: MaterializationSpec) -> Result<(Self, Option<String>), Error> {
        let mysql = spec.config["dialect"] == "mysql";
        let (huge, slow, control) = match mysql {
            true => (MYSQL_HUGE, MYSQL_SLOW, MYSQL_CONTROL),
            false => (HUGE, SLOW, CONTROL),
        };
        match spec.config["mode"].as_str().unwrap_or("") {
            "huge" => match sql::query(huge, &[]) {
                Ok(rows) => Err(Error::new(format!("huge: GOT {} rows", rows.rows.len()))),
                Err(e) => Err(Error::new(format!("huge: {e}"))),
            },
            "slow" => match sql::query(slow, &[]) {
                Ok(_) => Err(Error::new("slow: the query ended")),
                Err(e) => Err(Error::new(format!("slow: {e}"))),
            },
            "control" => {
                let got: Vec<String> = control
                    .iter()
                    .map(|s| match sql::execute(s, &[]) {
                        Ok(_) => format!("{s:?}: ACCEPTED"),
                        Err(e) => format!("{s:?}: refused ({e})"),
                    })
                    .collect();
                Err(Error::new(format!("control: {}", got.join("; "))))
            }
            "send" => {
                let mut got = vec![match sql::send("/**/COMMIT", &[]) {
                    Ok(()) => "COMMIT: ACCEPTED".to_string(),
                    Err(e) => format!("COMMIT: refused ({e})"),
                }];
                sql::execute("CREATE TABLE flow_probe (i BIGINT PRIMARY KEY)", &[])
                    .map_err(Error::new)?;
                if mysql {
                    got.push(match sql::send("CREATE TABLE flow_probe_2 (i INT)", &[]) {
                        Ok(()) => "send DDL: ACCEPTED".to_string(),
                        Err(e) => format!("send DDL: refused ({e})"),
                    });
                }
                let insert = match mysql {
                    true => "INSERT INTO flow_probe VALUES (?)",
                    false => "INSERT INTO flow_probe VALUES ($1)",
                };
                for i in [1, 2, 1, 3] {
                    if let Err(e) = sql::send(insert, &[sql::Value::Integer(i)]) {
                        got.push(format!("send {i}: {e}"));
                    }
                }
                got.push(match sql::query("SELECT count(*) FROM flow_probe", &[]) {
                    Ok(r) => format!("then: {} row", r.rows.len()),
                    Err(e) => format!("then: {e}"),
                });
                Err(Error::new(format!("send: {}", got.join("; "))))
            }
            _ => Ok((Probe, None)),
        }
    }

    fn load(&mut self, _binding: usize, _keys: Vec<Value>) -> Result<Vec<Loaded>, Error> {
        Ok(Vec::new())
    }

    fn write(&mut self, _binding: usize, _docs: Vec<Stored>) -> Result<(), Error> {
        Ok(())
    }

    fn commit(&mut self, _checkpoint: &str) -> Result<(), Error> {
        Ok(())
    }
}

flow_sdk::export_materialization!(Probe);
