#!/usr/bin/env bash
# Tests of the Go binding (bindings/go), built the way a user builds it:
#
#   bindings/go/run-tests.sh [GO TEST ARGS...]     go vet, then go test -race -count=1 ./...
#   bindings/go/run-tests.sh bench [GO TEST ARGS...]   the benchmarks (standard workload) on one
#                                                      core (-cpu 1), and their ratios
#   bindings/go/run-tests.sh vectors [GO TEST ARGS...] only TestVectors (xtests/vectors/v*.json);
#                              with FIELDCRYPT_XTEST_OUT set it writes encrypted-go.json there
#   bindings/go/run-tests.sh xtest-peer OUTDIR   builds the matrix peer (cmd/xtest-peer) into
#                              OUTDIR and writes the launcher OUTDIR/peer-go (xtests/README.md)
#
# 1. `cargo build --release -p fieldcrypt-ffi` (honours CARGO_TARGET_DIR; the target directory
#    is read from cargo's metadata) and a copy of libfieldcrypt_ffi.a into bindings/go/lib/,
#    where the cgo directives link it by its full path (lib/ is not committed);
# 2. (tests only) `cargo build --release -p fieldcrypt-ffi-kafka`, a cargo invocation of its own
#    (built together, cargo would unify features and put librdkafka into libfieldcrypt_ffi.a), and
#    a copy of libfieldcrypt_ffi_kafka.so into bindings/go/lib/, linked with -tags fieldcrypt_kafka;
# 3. the fieldcrypt CLI, for the Rust <-> Go interop tests (exported as FIELDCRYPT_BIN);
# 4. `go vet ./...` and `go test -race -count=1 ./...` in bindings/go; then, against the kafka
#    library, `go vet -tags fieldcrypt_kafka ./...` and
#    `go test -race -count=1 -tags fieldcrypt_kafka -run '^TestGovernance' ./...` (the governance
#    tests, with the broker scenario). Go modules come from the module proxy (go.sum is
#    committed); Go is `go` on PATH, else /usr/local/go/bin/go. GO TEST ARGS go to both runs
#    (after -run in the second, so a -run of yours wins there).
#
# The broker tests (kafkaserde: confluent-kafka-go's Producer and Consumer through Kafka; the
# governance scenario: policies published with confluent-kafka-go, a Kafka policy source and key
# store in libfieldcrypt_ffi_kafka, in one process) run when FIELDCRYPT_KAFKA is set (and
# FIELDCRYPT_REGISTRY, if set, serves the schema); they fail (never skip) when
# FIELDCRYPT_SERVER_TESTS=1 (or, for kafkaserde, FIELDCRYPT_REGISTRY) is set without
# FIELDCRYPT_KAFKA:
#
#   FIELDCRYPT_RUN=/tmp/fc-go scripts/servers.sh start all
#   eval "$(FIELDCRYPT_RUN=/tmp/fc-go scripts/servers.sh env)" && bindings/go/run-tests.sh
#   FIELDCRYPT_RUN=/tmp/fc-go scripts/servers.sh stop
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
CARGO="${CARGO:-cargo}"
export PATH="$HOME/.cargo/bin:$PATH"
command -v go >/dev/null 2>&1 || export PATH="$PATH:/usr/local/go/bin"

LOG_NAME="go-binding"
# shellcheck source-path=SCRIPTDIR/../.. source=scripts/lib.sh
. "$root/scripts/lib.sh"

mode="test"
case "${1:-}" in
  bench | vectors) mode="$1"; shift ;;
  xtest-peer)
    mode=xtest-peer
    [ $# = 2 ] || die "usage: $0 xtest-peer OUTDIR"
    mkdir -p "$2"
    outdir="$(cd "$2" && pwd)"
    ;;
esac

command -v go >/dev/null || die "go not found (on PATH or in /usr/local/go/bin)"
command -v "$CARGO" >/dev/null || die "$CARGO not found (the binding links the Rust library)"
command -v python3 >/dev/null || die "python3 not found (reads cargo's metadata)"

# --- the static library -------------------------------------------------------------------------
cd "$root"
log "cargo build --release -p fieldcrypt-ffi"
start=$(now_ms)
"$CARGO" build --quiet --release -p fieldcrypt-ffi
lib="$(cargo_target_dir "$root")/release/libfieldcrypt_ffi.a"
[ -f "$lib" ] || die "no $lib after the build"
mkdir -p "$here/lib"
# Only when it changed, so that go's build cache stays valid otherwise.
cmp -s "$lib" "$here/lib/libfieldcrypt_ffi.a" || cp "$lib" "$here/lib/libfieldcrypt_ffi.a"
log "library built and copied to bindings/go/lib/ in $(elapsed "$start")"

cd "$here"
export CGO_ENABLED=1

# --- the matrix peer, the test vectors ----------------------------------------------------------
if [ "$mode" = xtest-peer ]; then
  go build -o "$outdir/xtest-peer-go" ./cmd/xtest-peer
  printf '#!/usr/bin/env bash\nexec %q "$@"\n' "$outdir/xtest-peer-go" >"$outdir/peer-go"
  chmod +x "$outdir/peer-go"
  log "peer built: $outdir/peer-go"
  exit 0
fi
if [ "$mode" = vectors ]; then
  log "go test -race -count=1 -run '^TestVectors$' (FIELDCRYPT_XTEST_OUT=${FIELDCRYPT_XTEST_OUT:-<unset>})"
  status=0
  go test -race -count=1 -run '^TestVectors$' "$@" . || status=$?
  if [ "$status" = 0 ]; then log "vectors passed"; else log "vectors FAILED"; fi
  exit "$status"
fi

# --- the Kafka-capable library, for the -tags fieldcrypt_kafka run ------------------------------
if [ "$mode" = test ]; then
  cd "$root"
  log "cargo build --release -p fieldcrypt-ffi-kafka (a separate invocation: no feature unification)"
  start=$(now_ms)
  "$CARGO" build --quiet --release -p fieldcrypt-ffi-kafka
  so="$(cargo_target_dir "$root")/release/libfieldcrypt_ffi_kafka.so"
  [ -f "$so" ] || die "no $so after the build"
  if ! cmp -s "$so" "$here/lib/libfieldcrypt_ffi_kafka.so"; then
    # Through a rename: a process that has the old copy mapped keeps it intact.
    cp "$so" "$here/lib/.libfieldcrypt_ffi_kafka.so.tmp"
    mv -f "$here/lib/.libfieldcrypt_ffi_kafka.so.tmp" "$here/lib/libfieldcrypt_ffi_kafka.so"
  fi
  log "kafka library built and copied to bindings/go/lib/ in $(elapsed "$start")"
  cd "$here"
fi

# --- the CLI, for the interop tests -------------------------------------------------------------
build_cli "$root" python3

# --- vet, tests, benchmarks ---------------------------------------------------------------------
if [ "$mode" = bench ]; then
  out="$(mktemp)"
  trap 'rm -f "$out"' EXIT
  log "go test -bench (the standard workload: shared/bench)"
  go test -run '^$' -bench . -benchmem -count=1 -cpu 1 "$@" . | tee "$out"
  # a: plain Avro + fieldcrypt, b: Avro with confluent-kafka-go's ENCRYPT rule, c: fieldcrypt,
  # d: an empty cgo call; */ratio: a and b interleaved. With -count=N: the fastest of the
  # separate runs, the mean of the interleaved ones.
  awk '
    /^BenchmarkWorkload\// {
      name = $1; sub(/^BenchmarkWorkload\//, "", name); sub(/-[0-9]+$/, "", name)
      for (i = 2; i < NF; i++) {
        if ($(i + 1) == "ns/op" && (!(name in ns) || $i < ns[name])) ns[name] = $i
        if ($(i + 1) == "a-speedup") { sum[name] += $i; runs[name]++ }
      }
    }
    END {
      split("encrypt decrypt", dirs, " ")
      for (k = 1; k <= 2; k++) {
        d = dirs[k]
        a = ns[d "/a_" (d == "encrypt" ? "avro+fieldcrypt" : "fieldcrypt+avro")]; b = ns[d "/b_avro_csfle"]
        c = ns[d "/c_fieldcrypt"]
        if (a && b) printf "go-binding: %s: a %.0f ns/op, b %.0f ns/op, c %.0f ns/op (fastest runs): b/a = %.1f\n", d, a, b, c, b / a
        r = d "/ratio"
        if (runs[r]) printf "go-binding: %s, a and b interleaved: a has %.1fx the throughput of b (mean of %d)\n", d, sum[r] / runs[r], runs[r]
      }
      if (ns["d_cgo_call"]) printf "go-binding: an empty cgo call: %.1f ns/op\n", ns["d_cgo_call"]
    }' "$out" >&2
  exit 0
fi

log "go vet ./..."
go vet ./...
if [ -n "${FIELDCRYPT_KAFKA:-}" ] || [ -n "${FIELDCRYPT_REGISTRY:-}" ] || [ "${FIELDCRYPT_SERVER_TESTS:-0}" = 1 ]; then
  log "with the broker test (FIELDCRYPT_KAFKA=${FIELDCRYPT_KAFKA:-<unset>} FIELDCRYPT_REGISTRY=${FIELDCRYPT_REGISTRY:-<unset>})"
else
  log "without the broker test (set FIELDCRYPT_KAFKA to run it)"
fi
log "go test -race -count=1 ./..."
status=0
go test -race -count=1 "$@" ./... || status=$?
if [ "$status" = 0 ]; then log "passed (static library)"; else log "FAILED (static library)"; fi

log "go vet -tags fieldcrypt_kafka ./..."
go vet -tags fieldcrypt_kafka ./... || status=$?
log "go test -race -count=1 -tags fieldcrypt_kafka -run '^TestGovernance' ./... (libfieldcrypt_ffi_kafka.so)"
kstatus=0
go test -race -count=1 -tags fieldcrypt_kafka -run '^TestGovernance' "$@" ./... || kstatus=$?
if [ "$kstatus" = 0 ]; then log "passed (kafka library)"; else log "FAILED (kafka library)"; status=$kstatus; fi
if [ "$status" = 0 ]; then log "all passed"; else log "FAILED"; fi
exit "$status"
