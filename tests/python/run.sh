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

LOG_NAME="python-tests"
. "$root/scripts/lib.sh"

[ -n "${FIELDCRYPT_REGISTRY:-}" ] ||
  die 'FIELDCRYPT_REGISTRY is not set (scripts/servers.sh start apicurio; eval "$(scripts/servers.sh env)")'
command -v "$PYTHON" >/dev/null || die "$PYTHON not found"

# --- the venv and the CLI ---------------------------------------------------------------------
ensure_venv "$VENV" "$here/requirements.txt"
build_cli "$root" "$VENV/bin/python"

# --- the tests -------------------------------------------------------------------------------
# No bytecode or pytest cache in the work tree.
export PYTHONDONTWRITEBYTECODE=1
cd "$root"
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -rfEsxX "$@" "$here"
