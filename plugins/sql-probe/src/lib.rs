//! A hostile materialization for tests of the `sql` capability: `config.mode` picks what it
//! asks of the host's database in `open`.
//!
//! - `huge`: a query whose result is 1M rows of 1 KiB (the result cap must stop it);
//! - `slow`: a query that never ends (the call's CPU deadline must interrupt it);
//! - `control`: transaction control and other databases, disguised (comments, case, white
//!   space, a second statement): every attempt must be refused. Reports what each got.
//! - `state`: nothing hostile; opens, and writes nothing.
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
        match spec.config["mode"].as_str().unwrap_or("") {
            "huge" => match sql::query(HUGE, &[]) {
                Ok(rows) => Err(Error::new(format!("huge: GOT {} rows", rows.rows.len()))),
                Err(e) => Err(Error::new(format!("huge: {e}"))),
            },
            "slow" => match sql::query(SLOW, &[]) {
                Ok(_) => Err(Error::new("slow: the query ended")),
                Err(e) => Err(Error::new(format!("slow: {e}"))),
            },
            "control" => {
                let got: Vec<String> = CONTROL
                    .iter()
                    .map(|s| match sql::execute(s, &[]) {
                        Ok(_) => format!("{s:?}: ACCEPTED"),
                        Err(e) => format!("{s:?}: refused ({e})"),
                    })
                    .collect();
                Err(Error::new(format!("control: {}", got.join("; "))))
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
