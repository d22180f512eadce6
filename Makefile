# Docket: build, run and test. `make help` lists the targets.

CARGO ?= cargo
RELEASE_BINS := -p docket-ticket -p docket-audit -p docket-metrics -p docket-cli

.PHONY: help build release run bench bench-quick test test-db clean-test-dbs lint python-env

help:
	@echo "make run    build release binaries and start the three services (Ctrl-C stops them)"
	@echo "make test   start or check PostgreSQL, then build and run every unit and integration test"
	@echo "make build  build the workspace in debug mode"
	@echo "make bench  measure throughput, latency and memory against the raw PostgreSQL limit (release builds, about 15 minutes)"
	@echo "make bench-quick  the same steps, shorter and on smaller data, in under 3 minutes"
	@echo "make python-env  create target/python-venv with the pinned packages of tests/interop"

build:
	$(CARGO) build --workspace --locked

release:
	$(CARGO) build --release --locked $(RELEASE_BINS)

run: release
	scripts/run.sh

# Tests need a PostgreSQL server; scripts/postgres.sh prints the one it found or started.
test: clean-test-dbs python-env
	DOCKET_TEST_POSTGRES=$$(scripts/postgres.sh) $(CARGO) test --workspace --locked

# Drops databases that earlier test runs left behind (they are named docket_test_*). A
# database with an open connection belongs to a test run still going and is kept.
clean-test-dbs:
	@server=$$(scripts/postgres.sh); \
	psql "$$server/postgres" -Atqc "SELECT d.datname FROM pg_database d WHERE d.datname LIKE 'docket\_test\_%' AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)" | \
	while read -r name; do psql "$$server/postgres" -qc "DROP DATABASE IF EXISTS \"$$name\"" </dev/null >/dev/null 2>&1 || true; done

# Benchmarks are not tests: nothing here runs in `make test`. ARGS passes options to
# docket-bench, for example `make bench ARGS=--quick` or `ARGS="--steps tickets,auth"`.
ARGS ?=
bench:
	$(CARGO) build --release --locked $(RELEASE_BINS) -p docket-bench
	DOCKET_BENCH_POSTGRES=$$(scripts/postgres.sh) $(CARGO) run --release --locked -q -p docket-bench -- $(ARGS)

bench-quick:
	$(MAKE) bench ARGS="--quick $(ARGS)"

lint:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# Python virtual environment for the gRPC interop client in tests/interop. Make runs pip
# again whenever the pinned requirements change.
PYTHON ?= python3
PYTHON_VENV := target/python-venv

python-env: $(PYTHON_VENV)/.installed

$(PYTHON_VENV)/.installed: tests/interop/requirements.txt
	$(PYTHON) -m venv $(PYTHON_VENV)
	$(PYTHON_VENV)/bin/pip install --quiet --disable-pip-version-check --requirement tests/interop/requirements.txt
	touch $@
