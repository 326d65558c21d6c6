#!/usr/bin/env bash
# Tests of the Python binding (bindings/python), the way a user would install it:
#
#   bindings/python/run-tests.sh [PYTEST ARGS...]
#   bindings/python/run-tests.sh vectors [PYTEST ARGS...]     # the cross-language test vectors only
#   bindings/python/run-tests.sh xtest-peer OUTDIR            # the matrix peer's launcher
#
# `vectors` runs tests/test_vectors.py alone (xtests/README.md): every xtests/vectors/v*.json,
# with the encrypt results written to $FIELDCRYPT_XTEST_OUT/encrypted-python.json when that is
# set. `xtest-peer OUTDIR` sets up the venv and the binding as below and writes OUTDIR/peer-python,
# which runs xtests/peers/python_peer.py (`produce` / `consume`) with the venv's Python.
#
# 1. a venv at ${FIELDCRYPT_CACHE:-$HOME/.cache/fieldcrypt}/venv-python-binding with
#    requirements-test.txt (reinstalled only when that file or the Python changes);
# 2. `pip install ./bindings/python`: builds the extension from source with maturin (a release
#    build of the core with its `kafka` feature, librdkafka compiled in by rdkafka-sys: a first
#    build takes a few minutes more; honours CARGO_TARGET_DIR);
# 3. `python -c "import fieldcrypt"`, the fieldcrypt CLI (for the Rust <-> Python interop tests,
#    exported as FIELDCRYPT_BIN), pytest on bindings/python/tests,
#    `python -m mypy.stubtest fieldcrypt` (the hand-written stubs against the built module) and
#    `mypy --strict -p fieldcrypt`.
#
# The broker tests (bindings/python/tests_servers: a real SerializingProducer and
# DeserializingConsumer through Kafka, with Confluent's serializers against the registry; the
# governance scenario of schemas/governance/README.md, a signed policy followed on a Kafka topic
# with the Kafka key store) run too when FIELDCRYPT_KAFKA or FIELDCRYPT_REGISTRY is set, or
# FIELDCRYPT_SERVER_TESTS=1; they fail (never skip) when a server they need is missing:
#
#   FIELDCRYPT_RUN=/tmp/fc-py scripts/servers.sh start all
#   eval "$(FIELDCRYPT_RUN=/tmp/fc-py scripts/servers.sh env)" && bindings/python/run-tests.sh
#   FIELDCRYPT_RUN=/tmp/fc-py scripts/servers.sh stop
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
CACHE="${FIELDCRYPT_CACHE:-$HOME/.cache/fieldcrypt}"
VENV="$CACHE/venv-python-binding"
PYTHON="${PYTHON:-python3}"
CARGO="${CARGO:-cargo}"
export PATH="$HOME/.cargo/bin:$PATH"

LOG_NAME="python-binding"
. "$root/scripts/lib.sh"

# Where tests/test_vectors.py writes its encrypt results: absolute, as pytest runs from the
# repository root.
if [ -n "${FIELDCRYPT_XTEST_OUT:-}" ]; then
  FIELDCRYPT_XTEST_OUT="$(realpath -m -- "$FIELDCRYPT_XTEST_OUT")"
  export FIELDCRYPT_XTEST_OUT
fi
mode=all
case "${1:-}" in
  vectors)
    mode=vectors
    shift
    ;;
  xtest-peer)
    mode=xtest-peer
    [ "$#" = 2 ] || die "usage: $0 xtest-peer OUTDIR"
    peer_out="$(realpath -m -- "$2")"
    shift 2
    ;;
esac

command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
command -v "$CARGO" >/dev/null || die "$CARGO not found (the binding builds from source)"

# --- the venv ----------------------------------------------------------------------------------
ensure_venv "$VENV" "$here/requirements-test.txt"
py="$VENV/bin/python"

# --- the binding, built from source as a user's pip would ---------------------------------------
cd "$root"
log "pip install ./bindings/python"
start=$(date +%s)
"$py" -m pip install --quiet --disable-pip-version-check --no-input --force-reinstall --no-deps ./bindings/python
log "pip install ./bindings/python took $(($(date +%s) - start))s"
# From a scratch directory, so the installed package is what is imported (and mypy's cache
# lands there).
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
(cd "$scratch" && "$py" -c 'import fieldcrypt, sys; print("python-binding: imported fieldcrypt", fieldcrypt.__version__, "from", fieldcrypt.__file__, file=sys.stderr)')

# --- the matrix peer: a launcher with this venv's Python ------------------------------------------
if [ "$mode" = xtest-peer ]; then
  peer="$root/xtests/peers/python_peer.py"
  [ -f "$peer" ] || die "no peer at $peer"
  mkdir -p "$peer_out"
  printf '#!/usr/bin/env bash\n# The Python peer of the xtests matrix (written by bindings/python/run-tests.sh xtest-peer).\nexec %q %q "$@"\n' \
    "$py" "$peer" >"$peer_out/peer-python"
  chmod +x "$peer_out/peer-python"
  log "wrote $peer_out/peer-python"
  exit 0
fi

# --- the test vectors alone ----------------------------------------------------------------------
export PYTHONDONTWRITEBYTECODE=1
if [ "$mode" = vectors ]; then
  log "test vectors (FIELDCRYPT_XTEST_OUT=${FIELDCRYPT_XTEST_OUT:-<unset>})"
  status=0
  "$py" -m pytest -c "$here/pyproject.toml" --rootdir "$here" -rfEsxX "$@" "$here/tests/test_vectors.py" || status=$?
  [ "$status" = 0 ] && log "all passed" || log "FAILED"
  exit "$status"
fi

# --- the CLI, for the interop tests -------------------------------------------------------------
build_cli "$root" "$py"

# --- the tests ----------------------------------------------------------------------------------
suites=("$here/tests")
if [ -n "${FIELDCRYPT_KAFKA:-}" ] || [ -n "${FIELDCRYPT_REGISTRY:-}" ] || [ "${FIELDCRYPT_SERVER_TESTS:-0}" = 1 ]; then
  suites+=("$here/tests_servers")
  log "with the broker tests (FIELDCRYPT_KAFKA=${FIELDCRYPT_KAFKA:-<unset>} FIELDCRYPT_REGISTRY=${FIELDCRYPT_REGISTRY:-<unset>})"
else
  log "without the broker tests (set FIELDCRYPT_KAFKA and FIELDCRYPT_REGISTRY to run them)"
fi
status=0
"$py" -m pytest -c "$here/pyproject.toml" --rootdir "$here" -rfEsxX "$@" "${suites[@]}" || status=$?

log "stubtest"
(cd "$scratch" && "$py" -m mypy.stubtest fieldcrypt --mypy-config-file "$here/stubtest.ini") || status=1
log "mypy --strict on the package"
(cd "$scratch" && "$py" -m mypy --config-file "$here/stubtest.ini" -p fieldcrypt) || status=1
[ "$status" = 0 ] && log "all passed" || log "FAILED"
exit "$status"
