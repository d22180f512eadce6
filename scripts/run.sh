#!/usr/bin/env bash
# Starts the ticket, audit and metrics services on 127.0.0.1:50051..50053, each with its
# own database on the server that scripts/postgres.sh finds or creates. Ctrl-C stops all.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bin="$top/target/release"

server=$(scripts/postgres.sh)
echo "PostgreSQL: $server"

keys=$(scripts/dev-keys.sh)
export DOCKET_JWT_KEYS_DIR="$keys/public"

pids=()
stop() {
  trap - INT TERM EXIT
  echo "stopping Docket"
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  scripts/postgres.sh stop
}
trap stop INT TERM EXIT

# Each service runs in its own session, so Ctrl-C reaches only this script, which then sends
# one SIGTERM: a service that got both signals would take the second as "exit at once".
start() {
  local name=$1 port=$2
  shift 2
  DOCKET_LISTEN_ADDR="127.0.0.1:$port" DOCKET_DATABASE_URL="$server/docket_$name" \
    setsid "$bin/docket-$name" "$@" > >(trap '' INT; sed -u "s/^/[$name] /") 2>&1 &
  pids+=("$!")
}

start audit 50052
start metrics 50053 --audit-addr 127.0.0.1:50052 \
  --service-signing-key "$keys/docket-metrics.pem" --service-key-id docket-metrics
start ticket 50051 --audit-addr 127.0.0.1:50052 --metrics-addr 127.0.0.1:50053 \
  --service-signing-key "$keys/docket-ticket.pem" --service-key-id docket-ticket

echo "Docket is starting: ticket 127.0.0.1:50051, audit 127.0.0.1:50052, metrics 127.0.0.1:50053"
echo "the CLI is $bin/docket; every call needs a token, for example:"
echo "  export DOCKET_TOKEN=\$(target/release/docket token mint --sub alice --role admin)"
echo "press Ctrl-C to stop"
wait -n "${pids[@]}" || true
