#!/usr/bin/env bash
# Prints the URL of a PostgreSQL server for Docket, without a database name.
#
# Uses the server at 127.0.0.1:5432 when it accepts connections. Otherwise it creates (once) and
# starts a private cluster under target/postgres with the machine's PostgreSQL binaries,
# listening on 127.0.0.1:$DOCKET_PRIVATE_PG_PORT (default 55432), trust authentication.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
port=${DOCKET_PRIVATE_PG_PORT:-55432}
cluster="$top/target/postgres"

# `postgres.sh stop` stops the private cluster if it runs; the shared server is left alone.
if [ "${1-}" = stop ]; then
  if [ -f "$cluster/postmaster.pid" ]; then
    owner=$(stat -c %U "$cluster")
    pg_ctl=$(ls -d /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V -r | head -n 1)
    pg_ctl=${pg_ctl:-pg_ctl}
    if [ "$(id -u)" = 0 ]; then
      runuser -u "$owner" -- "$pg_ctl" -D "$cluster" -m fast stop >/dev/null 2>&1 || true
    else
      "$pg_ctl" -D "$cluster" -m fast stop >/dev/null 2>&1 || true
    fi
  fi
  exit 0
fi

if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "postgres://postgres@127.0.0.1:5432"
  exit 0
fi

# A Debian machine may have a cluster that is only stopped.
if command -v pg_ctlcluster >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  for version in $(ls /etc/postgresql 2>/dev/null); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
  done
  for _ in $(seq 1 20); do
    if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
      echo "postgres://postgres@127.0.0.1:5432"
      exit 0
    fi
    sleep 0.5
  done
fi

bindir=""
for candidate in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
  bindir=$candidate
  break
done
if [ -z "$bindir" ] && command -v initdb >/dev/null 2>&1; then
  bindir=$(dirname "$(command -v initdb)")
fi
if [ -z "$bindir" ]; then
  echo "no PostgreSQL server accepts connections on 127.0.0.1:5432 and no PostgreSQL binaries were found; install PostgreSQL 15 or later" >&2
  exit 1
fi

# PostgreSQL refuses to run as root, so root runs the private cluster as the postgres user.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

if [ ! -f "$cluster/PG_VERSION" ]; then
  mkdir -p "$cluster"
  [ "$(id -u)" = 0 ] && chown postgres "$cluster"
  as_owner "$bindir/initdb" -D "$cluster" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$top/target/postgres-initdb.log" 2>&1
fi

if ! pg_isready -q -h 127.0.0.1 -p "$port" 2>/dev/null; then
  as_owner "$bindir/pg_ctl" -D "$cluster" -l "$cluster/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$cluster -c max_connections=300" start >/dev/null
fi
echo "postgres://postgres@127.0.0.1:$port"
