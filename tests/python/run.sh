#!/usr/bin/env bash
# Python interop tests: fieldcrypt on records made by Confluent's serializers (confluent-kafka).
#
#   tests/python/run.sh [PYTEST ARGS...]
#
# Needs FIELDCRYPT_REGISTRY (a Confluent-compatible Schema Registry API base URL), e.g.
#   scripts/servers.sh start apicurio && eval "$(scripts/servers.sh env)" && tests/python/run.sh
# and fails when it is unset. Keeps a venv at ${FIELDCRYPT_CACHE:-$HOME/.cache/fieldcrypt}/pyvenv,
# (re)installing requirements.txt only when it (or the Python) changed; builds the CLI and
# exports FIELDCRYPT_BIN for the tests.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
CACHE="${FIELDCRYPT_CACHE:-$HOME/.cache/fieldcrypt}"
VENV="$CACHE/pyvenv"
PYTHON="${PYTHON:-python3}"
CARGO="${CARGO:-cargo}"
export PATH="$HOME/.cargo/bin:$PATH"

log() { echo "python-tests: $*" >&2; }
die() { log "error: $*"; exit 2; }

[ -n "${FIELDCRYPT_REGISTRY:-}" ] ||
  die 'FIELDCRYPT_REGISTRY is not set (scripts/servers.sh start apicurio; eval "$(scripts/servers.sh env)")'
command -v "$PYTHON" >/dev/null || die "$PYTHON not found"

# --- the venv: created once, reinstalled when requirements.txt or the Python changes ----------
mkdir -p "$CACHE"
want="$( { "$PYTHON" -c 'import sys; print(sys.version)'; cat "$here/requirements.txt"; } | sha256sum | cut -d' ' -f1)"
stamp="$VENV/.fieldcrypt-requirements.sha256"
(
  # One setup at a time: concurrent runs share the cache.
  flock 9
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ] || ! "$VENV/bin/python" -c '' 2>/dev/null; then
    log "setting up $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$here/requirements.txt"
    echo "$want" >"$stamp"
  fi
) 9>"$CACHE/pyvenv.lock"

# --- the CLI ---------------------------------------------------------------------------------
(cd "$root" && "$CARGO" build --quiet -p fieldcrypt-cli)
target_dir="$(cd "$root" && "$CARGO" metadata --format-version 1 --no-deps |
  "$VENV/bin/python" -c 'import sys, json; print(json.load(sys.stdin)["target_directory"])')"
export FIELDCRYPT_BIN="$target_dir/debug/fieldcrypt"
[ -x "$FIELDCRYPT_BIN" ] || die "no CLI at $FIELDCRYPT_BIN after the build"

# --- the tests -------------------------------------------------------------------------------
# No bytecode or pytest cache in the work tree.
export PYTHONDONTWRITEBYTECODE=1
cd "$root"
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -rfEsxX "$@" "$here"
