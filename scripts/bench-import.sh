#!/usr/bin/env bash
# Times the import of the whole VCDB file through release builds of the three services, each
# on a fresh database, and appends nothing anywhere: it prints the timing and the machine.
#
# Usage: scripts/bench-import.sh [FILE]   (default data/vcdb/vcdb-veris.jsonl.gz)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
file=${1:-data/vcdb/vcdb-veris.jsonl.gz}
bin="$top/target/release"
server=$(scripts/postgres.sh)
run_id="bench_$(date +%s)"
keys=$(scripts/dev-keys.sh)
export DOCKET_JWT_KEYS_DIR="$keys/public"
ports=(50151 50152 50153)

pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  for name in ticket audit metrics; do
    psql "$server/postgres" -qc "DROP DATABASE IF EXISTS docket_${run_id}_$name WITH (FORCE)" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

start() {
  local name=$1 port=$2
  shift 2
  DOCKET_LISTEN_ADDR="127.0.0.1:$port" DOCKET_DATABASE_URL="$server/docket_${run_id}_$name" RUST_LOG=warn \
    "$bin/docket-$name" "$@" >"$top/target/bench-$name.log" 2>&1 &
  pids+=("$!")
}

start audit "${ports[1]}"
start metrics "${ports[2]}"
start ticket "${ports[0]}" --audit-addr "127.0.0.1:${ports[1]}" --metrics-addr "127.0.0.1:${ports[2]}" \
  --service-signing-key "$keys/docket-ticket.pem" --service-key-id docket-ticket

DOCKET_TOKEN=$("$bin/docket" token mint --sub bench --role admin --key "$keys/dev-user.pem" --kid dev-user)
export DOCKET_TOKEN
export DOCKET_TICKET_ADDR="127.0.0.1:${ports[0]}" DOCKET_AUDIT_ADDR="127.0.0.1:${ports[1]}" DOCKET_METRICS_ADDR="127.0.0.1:${ports[2]}"
for _ in $(seq 1 100); do
  if "$bin/docket" ticket list --limit 1 >/dev/null 2>&1; then
    break
  fi
  sleep 0.2
done

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(free -g | awk '/Mem:/ {print $2}') GiB"
echo "postgres: $(psql "$server/postgres" -Atc 'SHOW server_version'), synchronous_commit=$(psql "$server/postgres" -Atc 'SHOW synchronous_commit')"
echo "file: $file"
start_ns=$(date +%s%N)
"$bin/docket" import veris "$file" 2>/dev/null
end_ns=$(date +%s%N)
echo "import wall time: $(( (end_ns - start_ns) / 1000000 )) ms"

# The relay delivers after the import returns; wait until the ledger has caught up.
tickets=$(psql "$server/docket_${run_id}_ticket" -Atc "SELECT count(*) FROM tickets")
for _ in $(seq 1 600); do
  records=$(psql "$server/docket_${run_id}_audit" -Atc "SELECT count(*) FROM ledger")
  [ "$records" -ge "$tickets" ] && break
  sleep 0.1
done
end_relay_ns=$(date +%s%N)
echo "tickets: $tickets, ledger records: $records, import to ledger caught up: $(( (end_relay_ns - start_ns) / 1000000 )) ms"
