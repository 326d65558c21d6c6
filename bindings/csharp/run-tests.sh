#!/usr/bin/env bash
# Tests of the C# binding (bindings/csharp) on Mono:
#
#   bindings/csharp/run-tests.sh [NAME-SUBSTRING...]    the tests (all, or those whose names match)
#   bindings/csharp/run-tests.sh bench [N [ROUNDS]]     the benchmark (µs per call)
#   bindings/csharp/run-tests.sh vectors                only the cross-language test vectors
#                                                       (xtests/vectors/v*.json); with FIELDCRYPT_XTEST_OUT
#                                                       set, writes $FIELDCRYPT_XTEST_OUT/encrypted-csharp.json
#   bindings/csharp/run-tests.sh xtest-peer OUTDIR      builds the matrix peer (tests/XtestPeer.cs) and
#                                                       writes the launcher OUTDIR/peer-csharp (xtests/README.md)
#
# 1. Mono (`mcs`, the C# 7.2 compiler, and `mono`; Debian's mono-mcs and mono-runtime,
#    installed by scripts/setup.sh);
# 2. the native libraries, release builds honouring CARGO_TARGET_DIR: `cargo build --release -p
#    fieldcrypt-ffi`, then (a separate invocation) `-p fieldcrypt-ffi-kafka` for the broker test's
#    minimal Kafka client (and the matrix peer's); and the fieldcrypt CLI (FIELDCRYPT_BIN) for the
#    Rust <-> C# tests (not for `vectors` and `xtest-peer`);
# 3. `mcs -warnaserror+` of the library (Fieldcrypt.dll), the tests, the benchmark and the peer into
#    ${FIELDCRYPT_CACHE:-$HOME/.cache/fieldcrypt}/csharp-binding;
# 4. the tests under mono with LD_LIBRARY_PATH at the libraries, then one test again without
#    LD_LIBRARY_PATH, the library found through a Fieldcrypt.dll.config dllmap (README); then the
#    governance tests (or the named ones) with the codec on libfieldcrypt_ffi_kafka.so through a
#    dllmap (FIELDCRYPT_CODEC_LIBRARY=fieldcrypt_ffi_kafka tells the tests): the broker scenario of
#    schemas/governance/README.md runs there.
#
# The test vectors run with all the tests too, and fail when no xtests/vectors/v*.json exists.
# The broker tests (encrypt in C#, produce to Kafka, consume, decrypt; the matrix peer's produce
# and consume; the governance scenario) run when FIELDCRYPT_KAFKA is set; they FAIL when FIELDCRYPT_SERVER_TESTS=1 and
# FIELDCRYPT_KAFKA is not set, and are reported as skipped when neither is:
#
#   FIELDCRYPT_RUN=/tmp/fc-cs scripts/servers.sh start kafka
#   eval "$(FIELDCRYPT_RUN=/tmp/fc-cs scripts/servers.sh env)" && bindings/csharp/run-tests.sh
#   FIELDCRYPT_RUN=/tmp/fc-cs scripts/servers.sh stop
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
CARGO="${CARGO:-cargo}"
PYTHON="${PYTHON:-python3}"
export PATH="$HOME/.cargo/bin:$PATH"

LOG_NAME="csharp-binding"
. "$root/scripts/lib.sh"
OUT="$CACHE/csharp-binding"

mode="test"
case "${1:-}" in
  bench)
    mode=bench
    shift
    ;;
  vectors)
    mode=vectors
    shift
    [ $# = 0 ] || die "usage: run-tests.sh vectors (no more arguments)"
    ;;
  xtest-peer)
    mode=peer
    [ $# = 2 ] || die "usage: run-tests.sh xtest-peer OUTDIR"
    mkdir -p "$2"
    peer_dir="$(cd "$2" && pwd)"
    shift 2
    ;;
esac
# Where the vector tests write encrypted-csharp.json: absolute, as the tests run from the root.
if [ -n "${FIELDCRYPT_XTEST_OUT:-}" ] && [ "$mode" != peer ]; then
  mkdir -p "$FIELDCRYPT_XTEST_OUT"
  FIELDCRYPT_XTEST_OUT="$(cd "$FIELDCRYPT_XTEST_OUT" && pwd)"
  export FIELDCRYPT_XTEST_OUT
fi

# --- Mono ---------------------------------------------------------------------------------------
if ! command -v mcs >/dev/null || ! command -v mono >/dev/null; then
  die "Mono is not installed: run scripts/setup.sh (apt: mono-mcs mono-runtime)"
fi
command -v "$CARGO" >/dev/null || die "$CARGO not found (the native library builds from source)"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (reads cargo metadata)"

# --- the native libraries and the CLI -----------------------------------------------------------
cd "$root"
start=$(now_ms)
"$CARGO" build --quiet --release -p fieldcrypt-ffi
# Separately from fieldcrypt-ffi: not one `cargo build -p A -p B`.
"$CARGO" build --quiet --release -p fieldcrypt-ffi-kafka
lib_dir="$(cargo_target_dir "$root")/release"
[ -f "$lib_dir/libfieldcrypt_ffi.so" ] || die "no $lib_dir/libfieldcrypt_ffi.so after the build"
[ -f "$lib_dir/libfieldcrypt_ffi_kafka.so" ] || die "no $lib_dir/libfieldcrypt_ffi_kafka.so after the build"
log "native libraries in $lib_dir ($(elapsed "$start"))"
# The CLI is for the Rust <-> C# tests, which `vectors` does not run.
if [ "$mode" = test ]; then build_cli "$root" "$PYTHON"; fi

# --- compile ------------------------------------------------------------------------------------
mkdir -p "$OUT"
MCS=(mcs -langversion:7.2 -warnaserror+ -debug -nologo)
# -doc checks the XML doc comments (as the .csproj does; CS1591: undocumented members are fine).
"${MCS[@]}" -target:library -nowarn:1591 -doc:"$OUT/Fieldcrypt.xml" -out:"$OUT/Fieldcrypt.dll" "$here"/src/*.cs
cp "$here/Fieldcrypt.dll.config" "$OUT/"
export FIELDCRYPT_ROOT="$root"
if [ "$mode" = bench ]; then
  "${MCS[@]}" -optimize+ -out:"$OUT/FieldcryptBench.exe" -r:"$OUT/Fieldcrypt.dll" -r:System.Core.dll "$here"/bench/*.cs
  LD_LIBRARY_PATH="$lib_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" mono "$OUT/FieldcryptBench.exe" "$@"
  exit
fi
if [ "$mode" = peer ]; then
  # The peer and the library it runs are copied to OUTDIR/csharp-peer: a later build into $OUT
  # does not change them under a running matrix.
  "${MCS[@]}" -out:"$OUT/FieldcryptXtestPeer.exe" -r:"$OUT/Fieldcrypt.dll" -r:System.Core.dll \
    "$here/tests/XtestPeer.cs" "$here/tests/KafkaAid.cs" "$here/tests/Json.cs"
  mkdir -p "$peer_dir/csharp-peer"
  cp "$OUT/Fieldcrypt.dll" "$OUT/Fieldcrypt.dll.mdb" "$OUT/Fieldcrypt.dll.config" \
    "$OUT/FieldcryptXtestPeer.exe" "$OUT/FieldcryptXtestPeer.exe.mdb" "$peer_dir/csharp-peer/"
  launcher="$peer_dir/peer-csharp"
  {
    echo '#!/usr/bin/env bash'
    echo '# The C# peer of the cross-language matrix (xtests/README.md), written by bindings/csharp/run-tests.sh xtest-peer.'
    # shellcheck disable=SC2016 # $LD_LIBRARY_PATH is the launcher's, expanded when it runs
    printf 'export LD_LIBRARY_PATH=%q${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}\n' "$lib_dir"
    printf 'exec mono --debug %q "$@"\n' "$peer_dir/csharp-peer/FieldcryptXtestPeer.exe"
  } >"$launcher.tmp"
  chmod +x "$launcher.tmp"
  mv -f "$launcher.tmp" "$launcher"
  log "wrote $launcher (mono $peer_dir/csharp-peer/FieldcryptXtestPeer.exe, libraries in $lib_dir)"
  exit
fi
# XtestPeer.cs has the peer's Main; the test runner's is Runner's.
"${MCS[@]}" -main:Fieldcrypt.Tests.Runner -out:"$OUT/FieldcryptTests.exe" -r:"$OUT/Fieldcrypt.dll" -r:System.Core.dll "$here"/tests/*.cs
log "compiled Fieldcrypt.dll and the tests into $OUT"
if [ "$mode" = vectors ]; then set -- "vectors: "; fi

# --- run ----------------------------------------------------------------------------------------
status=0
LD_LIBRARY_PATH="$lib_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" mono --debug "$OUT/FieldcryptTests.exe" "$@" || status=$?

# The other way to find the library: a dllmap next to the assembly, no LD_LIBRARY_PATH.
if [ $# = 0 ]; then
  log "library finding through a dllmap (no LD_LIBRARY_PATH)"
  mapped="$(mktemp -d)"
  trap 'rm -rf "$mapped"' EXIT
  cp "$OUT/Fieldcrypt.dll" "$OUT/FieldcryptTests.exe" "$mapped/"
  sed "s|target=\"libfieldcrypt_ffi.so\"|target=\"$lib_dir/libfieldcrypt_ffi.so\"|" "$here/Fieldcrypt.dll.config" >"$mapped/Fieldcrypt.dll.config"
  grep -qF "$lib_dir/libfieldcrypt_ffi.so" "$mapped/Fieldcrypt.dll.config" || die "dllmap: no linux entry to rewrite"
  env -u LD_LIBRARY_PATH mono --debug "$mapped/FieldcryptTests.exe" "json round trip (customers)" || status=1
fi
# The governance tests again, the codec on the Kafka-capable library: a dllmap pointing
# "fieldcrypt_ffi" at libfieldcrypt_ffi_kafka.so (README, "The Kafka-capable library"). Here run
# the broker scenario (Kafka policy source and key store) and the file-source tests; the tests
# check that the map took (libfieldcrypt_ffi.so never loaded).
if [ "$mode" = test ]; then
  if [ $# = 0 ]; then set -- "governance: "; fi
  log "the codec on libfieldcrypt_ffi_kafka.so (dllmap): $*"
  kafka_mapped="$(mktemp -d)"
  trap 'rm -rf "${mapped:-}" "$kafka_mapped"' EXIT
  cp "$OUT/Fieldcrypt.dll" "$OUT/FieldcryptTests.exe" "$kafka_mapped/"
  sed "s|target=\"libfieldcrypt_ffi.so\"|target=\"$lib_dir/libfieldcrypt_ffi_kafka.so\"|" "$here/Fieldcrypt.dll.config" >"$kafka_mapped/Fieldcrypt.dll.config"
  grep -qF "$lib_dir/libfieldcrypt_ffi_kafka.so" "$kafka_mapped/Fieldcrypt.dll.config" || die "dllmap: no linux entry to rewrite"
  # LD_LIBRARY_PATH still: the tests' Kafka aid imports "fieldcrypt_ffi_kafka" by name.
  FIELDCRYPT_CODEC_LIBRARY=fieldcrypt_ffi_kafka LD_LIBRARY_PATH="$lib_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    mono --debug "$kafka_mapped/FieldcryptTests.exe" "$@" || status=1
fi
if [ "$status" = 0 ]; then log "all passed"; else log "FAILED"; fi
exit "$status"
