#!/usr/bin/env bash
# The cross-language harness (xtests/README.md), `make xtest`: builds every binding from the one
# core, starts Kafka, Apicurio and OpenBao on 127.0.0.1 (stopped by pid on exit), then
#   1. the test vectors in every language (Rust, Python, Go, C#, Java), each from its binding's
#      own suite, and the Rust checker over every language's encryptions;
#   2. the 5 x 5 produce/consume matrix through the broker (xtests/matrix.py), which writes
#      xtests/out/matrix.md.
# Exits non-zero when anything fails.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
LOG_NAME="xtest"
. "$root/scripts/lib.sh"
export PATH="$HOME/.cargo/bin:$PATH"
CARGO="${CARGO:-cargo}"
OUT="$root/xtests/out"
export FIELDCRYPT_RUN="${FIELDCRYPT_XTEST_RUN:-$root/target/xtest-servers}"
export FIELDCRYPT_SERVER_TESTS=1

stop_all() {
  "$root/scripts/servers.sh" stop || true
  "$root/scripts/kms/openbao.sh" stop || true
}
trap stop_all EXIT

start=$(now_ms)
"$root/scripts/servers.sh" start all &
servers=$!
"$root/scripts/kms/openbao.sh" start
wait "$servers"
set -a
eval "$("$root/scripts/servers.sh" env)"
eval "$("$root/scripts/kms/openbao.sh" env)"
set +a
log "servers up ($(elapsed "$start"))"

rm -rf "$OUT"
mkdir -p "$OUT/vectors" "$OUT/peers"
export FIELDCRYPT_XTEST_OUT="$OUT/vectors"
cd "$root"

# --- 1. vectors, in every language ---------------------------------------------------------------
log "vectors: Rust"
"$CARGO" test --quiet -p fieldcrypt-xtests
for lang in python go csharp java; do
  log "vectors: $lang"
  "$root/bindings/$lang/run-tests.sh" vectors
done
results=()
for lang in rust python go csharp java; do
  f="$OUT/vectors/encrypted-$lang.json"
  [ -s "$f" ] || die "the $lang vector runner wrote no $f"
  results+=("$f")
done
"$CARGO" run --quiet -p fieldcrypt-xtests --bin check-encrypted -- "${results[@]}"

# --- 2. the matrix -------------------------------------------------------------------------------
"$CARGO" build --quiet -p fieldcrypt-xtests --bin xtest-peer
printf '#!/bin/sh\nexec "%s" "$@"\n' "$(cargo_target_dir "$root")/debug/xtest-peer" >"$OUT/peers/peer-rust"
chmod +x "$OUT/peers/peer-rust"
for lang in python go csharp java; do
  log "peer: $lang"
  "$root/bindings/$lang/run-tests.sh" xtest-peer "$OUT/peers"
  [ -x "$OUT/peers/peer-$lang" ] || die "bindings/$lang/run-tests.sh xtest-peer made no $OUT/peers/peer-$lang"
done
python3 "$here/matrix.py" --peers "$OUT/peers" --out "$OUT"
log "all passed ($(elapsed "$start")); matrix: xtests/out/matrix.md"
