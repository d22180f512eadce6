# Docket: build, run and test. `make help` lists the targets.

CARGO ?= cargo
RELEASE_BINS := -p docket-ticket -p docket-audit -p docket-metrics -p docket-cli

.PHONY: help build release run test test-db clean-test-dbs lint

help:
	@echo "make run    build release binaries and start the three services (Ctrl-C stops them)"
	@echo "make test   start or check PostgreSQL, then build and run every unit and integration test"
	@echo "make build  build the workspace in debug mode"

build:
	$(CARGO) build --workspace --locked

release:
	$(CARGO) build --release --locked $(RELEASE_BINS)

run: release
	scripts/run.sh

# Tests need a PostgreSQL server; scripts/postgres.sh prints the one it found or started.
test: clean-test-dbs
	DOCKET_TEST_POSTGRES=$$(scripts/postgres.sh) $(CARGO) test --workspace --locked

# Drops databases that earlier test runs left behind (they are named docket_test_*).
clean-test-dbs:
	@server=$$(scripts/postgres.sh); \
	psql "$$server/postgres" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'docket\_test\_%'" | \
	while read -r name; do psql "$$server/postgres" -qc "DROP DATABASE IF EXISTS \"$$name\" WITH (FORCE)" >/dev/null; done

lint:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
