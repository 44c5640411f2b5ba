#!/usr/bin/env bash
# The demo: orders arrive over HTTP, a Wasm derivation keeps lifetime totals per customer in
# host state, and the materialize-sqlite plugin keeps a SQLite table fresh. Prints the table.
#
#   make demo        (or: bash examples/demo.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*" >&2; }

say "building the flow binary and the plugins (the first build takes several minutes)"
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
cargo build -q -p flow-host
cargo build -q --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml
FLOW="$PWD/target/debug/flow"

WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export FLOW_API_URL="http://127.0.0.1:$PORT"
rm -f examples/acme/views.db examples/acme/views.db-wal examples/acme/views.db-shm

say "starting: flow serve --data-dir $WORK/data --listen 127.0.0.1:$PORT"
"$FLOW" serve --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" >"$WORK/serve.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do "$FLOW" collections list >/dev/null 2>&1 && break; sleep 0.1; done

say "flow catalog publish --source examples/acme/flow.yaml"
"$FLOW" catalog publish --source examples/acme/flow.yaml

say "flow collections ingest --collection acme/orders examples/acme/orders.ndjson"
"$FLOW" collections ingest --collection acme/orders examples/acme/orders.ndjson

say "waiting for the table to catch up"
python3 - <<'PY'
import sqlite3, time
deadline = time.time() + 60
while True:
    try:
        n = sqlite3.connect("examples/acme/views.db").execute("select count(*) from customer_totals").fetchone()[0]
    except sqlite3.Error:
        n = 0
    if n >= 4:
        break
    if time.time() > deadline:
        raise SystemExit("the table did not fill within 60 s; see flow tasks")
    time.sleep(0.05)
PY

say "flow tasks"
"$FLOW" tasks

say "the orders' history, sealed into the fragment store ($WORK/data/fragments)"
for _ in $(seq 100); do
  "$FLOW" collections list | grep -q '^acme/orders .* 0 unsealed' && break
  sleep 0.1
done
"$FLOW" collections list
(cd "$WORK/data/fragments" && find . -type f | sed 's|^\./|  |')

say "SELECT customer, total, orders FROM customer_totals   (examples/acme/views.db)"
python3 - <<'PY'
import sqlite3
rows = sqlite3.connect("examples/acme/views.db").execute(
    "select customer, total, orders from customer_totals order by customer").fetchall()
print(f"{'customer':<10} {'total':>8} {'orders':>6}")
for customer, total, orders in rows:
    print(f"{customer:<10} {total:>8.2f} {orders:>6}")
PY
