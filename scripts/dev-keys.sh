#!/usr/bin/env bash
# Creates the development keys once and prints their folder: one Ed25519 pair signs user
# tokens (`docket token mint`), one signs the ticket service's calls to audit and metrics,
# and one signs the metrics service's calls to audit.
# Services verify tokens with the public keys under public/, each named after its key id.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
bin="$top/target/release"
keys="$top/target/dev-keys"
mkdir -p "$keys/public"
chmod 700 "$keys"
# Each pair is made when its private key is missing, so a folder from an older version gains
# the keys added since and keeps the ones it has.
for name in dev-user docket-ticket docket-metrics; do
  if [[ ! -f "$keys/$name.pem" ]]; then
    rm -f "$keys/public/$name.pem"
    "$bin/docket" token keygen --private "$keys/$name.pem" --public "$keys/public/$name.pem" >&2
    echo "created the development key pair $name in $keys" >&2
  fi
done
echo "$keys"
