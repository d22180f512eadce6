#!/usr/bin/env bash
# Creates the development keys once and prints their folder: one Ed25519 pair signs user
# tokens (`docket token mint`), one signs the ticket service's calls to audit and metrics.
# Services verify tokens with the public keys under public/, each named after its key id.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
bin="$top/target/release"
keys="$top/target/dev-keys"
if [[ ! -f "$keys/dev-user.pem" || ! -f "$keys/docket-ticket.pem" ]]; then
  mkdir -p "$keys/public"
  chmod 700 "$keys"
  rm -f "$keys/dev-user.pem" "$keys/docket-ticket.pem" "$keys/public/dev-user.pem" "$keys/public/docket-ticket.pem"
  "$bin/docket" token keygen --private "$keys/dev-user.pem" --public "$keys/public/dev-user.pem" >&2
  "$bin/docket" token keygen --private "$keys/docket-ticket.pem" --public "$keys/public/docket-ticket.pem" >&2
  echo "created development keys in $keys" >&2
fi
echo "$keys"
