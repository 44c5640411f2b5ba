# The two commands a new machine needs (see README.md):
#   make demo   - set up, run the example pipeline end to end, print the materialized table
#   make test   - set up, run the whole test suite
.PHONY: demo test setup setup-test plugins bench fuzz

setup:
	rustup target add wasm32-wasip2

# Python plugins are built with componentize-py (PyPI) by tests/build.rs; the S3 tests run
# moto (PyPI) as an S3-compatible server on loopback; the PostgreSQL, MariaDB and Redis tests
# start their own servers from Debian's `postgresql` (initdb, pg_ctl, psql), `mariadb-server`
# (mariadb-install-db, mariadbd, mariadb) and `redis-server` (redis-server, redis-cli),
# installed here if missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
setup-test: setup
	python3 -m pip install --quiet --disable-pip-version-check componentize-py==0.25.1 "moto[server]==5.2.1" schemathesis==4.32.5 prometheus_client==0.26.0
	command -v psql >/dev/null 2>&1 && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql)
	command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq mariadb-server mariadb-client)
	command -v redis-server >/dev/null 2>&1 || \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server)
	# JavaScript plugin projects (`flow plugin init --lang js`) build with componentize-js from npm.
	command -v npm >/dev/null 2>&1 || \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm)
	# The dashboard's test drives Debian's chromium through playwright-core (npm, installed by the test).
	command -v chromium >/dev/null 2>&1 || \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium)
	# C plugin projects (`flow plugin init --lang c`) build with clang for wasm32-wasi, wasi-libc
	# and the wasm32 compiler runtime; flow itself makes the bindings and the component.
	command -v clang >/dev/null 2>&1 && [ -f /usr/lib/wasm32-wasi/libc.a ] && ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1 || \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq clang lld wasi-libc libclang-rt-dev-wasm32)

plugins: setup
	cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml

demo: setup
	bash examples/demo.sh

test: setup-test
	# The invariants of ARCHITECTURE.md a machine can check, before the long build.
	python3 .ci/check-structure
	# The crash tests run the flow binary; building all targets first reuses the test build.
	cargo build --workspace --all-targets
	cargo test --workspace --no-fail-fast
	# Plugins' own unit tests, natively (the plugins workspace builds for wasm32-wasip2).
	cargo test --manifest-path plugins/Cargo.toml -p source-http --target "$$(rustc -vV | sed -n 's/^host: //p')"
	# The Rust SDK packages with everything it needs (its wit/ is a link to the contract).
	cargo package -p flow-sdk --allow-dirty
	# Every fuzz target for 30 s from its committed corpus (fuzz/README.md).
	bash .ci/fuzz 30

# Longer fuzzing: `make fuzz FUZZ_SECONDS=600`.
fuzz:
	bash .ci/fuzz $${FUZZ_SECONDS:-60}

bench: setup
	cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml
	cargo run --release -p flow-host -- bench --suite derive
	cargo run --release -p flow-host -- bench --suite combiner --docs 1000000
	cargo run --release -p flow-host -- bench --suite combiner-memory --docs 10000000 --spill-mib 64
	cargo run --release -p flow-host -- bench --suite fragments --docs 1000000
	cargo run --release -p flow-host -- bench --suite pipeline --docs 1000000
	cargo run --release -p flow-host -- bench --suite latency
	cargo run --release -p flow-host -- bench --suite backfill --docs 10000000
	cargo run --release -p flow-host -- bench --suite materialize --docs 1000000
	cargo run --release -p flow-host -- bench --suite languages --docs 100000
