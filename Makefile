# Docket: build, run and test. `make help` lists the targets.

CARGO ?= cargo
RELEASE_BINS := -p docket-ticket -p docket-audit -p docket-metrics -p docket-cli

.PHONY: help build release run bench bench-quick test test-db clean-test-dbs lint python-env chart-env chart-check chaos

help:
	@echo "make run    build release binaries and start the three services (Ctrl-C stops them)"
	@echo "make test   start or check PostgreSQL, then build and run every unit and integration test"
	@echo "make build  build the workspace in debug mode"
	@echo "make chaos  run the crash, outage and tampering tests longer and print their table"
	@echo "make bench  measure throughput, latency and memory against the raw PostgreSQL limit (release builds, about 10 minutes)"
	@echo "make bench-quick  the same steps, shorter and on smaller data, in under 3 minutes"
	@echo "make python-env  create target/python-venv with the pinned packages of tests/interop"
	@echo "make chart-check  lint, render and validate the Helm chart in helm/docket (no cluster needed)"

build:
	$(CARGO) build --workspace --locked

release:
	$(CARGO) build --release --locked $(RELEASE_BINS)

run: release
	scripts/run.sh

# Tests need a PostgreSQL server; scripts/postgres.sh prints the one it found or started.
# Some tests run the service binaries as child processes (crashes, signals, the Helm chart),
# and `cargo test` builds binaries only for packages with integration tests, so `cargo build`
# makes them first. --all-targets builds with the same features as `cargo test`, which then
# rebuilds nothing.
test: clean-test-dbs python-env chart-check
	$(CARGO) build --workspace --locked --all-targets
	DOCKET_TEST_POSTGRES=$$(scripts/postgres.sh) $(CARGO) test --workspace --locked

# The fault-injection tests, with longer outages and load than `make test` gives them. Each
# prints its row of the table: acknowledged changes, where they were found, lost, duplicated.
CHAOS_LOAD_SECONDS ?= 20
CHAOS_AUDIT_DOWN_SECONDS ?= 180
# The longer settings of each scenario, described in the header of its file in tests/tests.
CHAOS_ENV ?= DOCKET_CHAOS_PG_CYCLES=3 DOCKET_CHAOS_PG_DOWN_SECS=10 DOCKET_CHAOS_METRICS_DOWN_SECS=30 \
	DOCKET_CHAOS_REPLICAS_SECS=30 DOCKET_CHAOS_WIRE_STREAMS=5000 DOCKET_CHAOS_WIRE_RESETS=5000 DOCKET_CHAOS_WIRE_ROUNDS=1
CHAOS_TESTS := $(patsubst tests/tests/%.rs,--test %,$(wildcard tests/tests/chaos_*.rs))

chaos: clean-test-dbs
	$(CARGO) build --workspace --locked --all-targets
	mkdir -p target/chaos
	DOCKET_TEST_POSTGRES=$$(scripts/postgres.sh) DOCKET_CHAOS_LOAD_SECONDS=$(CHAOS_LOAD_SECONDS) \
	DOCKET_CHAOS_AUDIT_DOWN_SECONDS=$(CHAOS_AUDIT_DOWN_SECONDS) $(CHAOS_ENV) \
	$(CARGO) test --locked -p docket-tests $(CHAOS_TESTS) -- --nocapture --test-threads 1 \
	  > target/chaos/output.log 2>&1; status=$$?; \
	grep -E '^test result' target/chaos/output.log; \
	grep -oE 'relay while audit was down.*' target/chaos/output.log; \
	grep -m1 '^scenario ' target/chaos/output.log; \
	grep -E '^[A-Za-z].* +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+$$' target/chaos/output.log; \
	echo "full output: target/chaos/output.log"; exit $$status

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

# Python virtual environment for the Helm chart checks in tests/chart: helm-python-sdk runs
# Helm's own Go code in-process, so no helm binary is needed.
CHART_VENV := target/chart-venv

chart-env: $(CHART_VENV)/.installed

$(CHART_VENV)/.installed: tests/chart/requirements.txt
	$(PYTHON) -m venv $(CHART_VENV)
	$(CHART_VENV)/bin/pip install --quiet --disable-pip-version-check --requirement tests/chart/requirements.txt
	touch $@

# Lints and renders the chart with its default values and each helm/docket/ci/*-values.yaml,
# validates every manifest against the Kubernetes 1.29 and 1.33 schemas and checks that bad
# values are rejected. tests/tests/helm_chart.rs starts the binaries with what it renders.
chart-check: chart-env
	$(CHART_VENV)/bin/python tests/chart/chart.py check
