#!/usr/bin/env bash
# Tests of the Java binding (bindings/java), compiled once on Java 17 and run on 17 and on 25:
#
#   bindings/java/run-tests.sh [MAVEN ARGS...]     e.g. -Dtest=CodecTest
#   bindings/java/run-tests.sh bench [17|25]       the benchmark (µs/op), on Java 17 by default
#   bindings/java/run-tests.sh vectors [MAVEN ARGS...]   only the test vectors (VectorsTest), on
#                                                  Java 17; with FIELDCRYPT_XTEST_OUT set, writes
#                                                  $FIELDCRYPT_XTEST_OUT/encrypted-java.json
#   bindings/java/run-tests.sh xtest-peer OUTDIR   builds the matrix peer (dev.fieldcrypt.xtest.Peer)
#                                                  and writes its launcher OUTDIR/peer-java (Java 17)
#
# 1. `cargo build --release -p fieldcrypt-ffi`, then, in a separate invocation (one would unify
#    features and put librdkafka into libfieldcrypt_ffi), `cargo build --release -p
#    fieldcrypt-ffi-kafka` (honours CARGO_TARGET_DIR; the directory is read from cargo's
#    metadata), and the fieldcrypt CLI for the Rust <-> Java tests (FIELDCRYPT_BIN);
# 2. on Java 17 (JAVA17_HOME, else a JDK 17 under /usr/lib/jvm): `mvn -B test` (library
#    fieldcrypt_ffi; GovernanceBrokerTest excluded), then the governance broker scenario alone
#    with the kafka library (`-Dtest=GovernanceBrokerTest -Dfieldcrypt.library=fieldcrypt_ffi_kafka`,
#    found through -Djna.library.path), then `mvn -B package -DskipTests`: the jar, with
#    libfieldcrypt_ffi.so bundled under linux-x86-64/;
# 3. on Java 25 (JAVA25_HOME, else a JDK 25 under /usr/lib/jvm): the same two runs against that
#    jar (`mvn surefire:test -Djvm=...`, with --enable-native-access=ALL-UNNAMED).
# Fails if any run fails. MAVEN ARGS go to every run (the governance runs' own -Dtest comes after
# them). Maven's local repository: ${FIELDCRYPT_CACHE:-~/.cache/fieldcrypt}/m2.
#
# The broker tests (a KafkaProducer and a KafkaConsumer through a real broker; the governance
# scenario of schemas/governance/README.md) run when FIELDCRYPT_KAFKA is set, and fail when
# FIELDCRYPT_SERVER_TESTS=1 but FIELDCRYPT_KAFKA is not:
#
#   eval "$(scripts/servers.sh env)" && bindings/java/run-tests.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
CARGO="${CARGO:-cargo}"
export PATH="$HOME/.cargo/bin:$PATH"

# shellcheck disable=SC2034 # read by lib.sh
LOG_NAME="java-binding"
# shellcheck source=../../scripts/lib.sh
. "$root/scripts/lib.sh"

mode="test"
case "${1:-}" in
  bench | vectors | xtest-peer)
    mode=$1
    shift
    ;;
esac
if [ "$mode" = xtest-peer ]; then
  [ $# = 1 ] && [ -n "$1" ] || die "usage: run-tests.sh xtest-peer OUTDIR"
  peer_out="$1"
  shift
fi

command -v "$CARGO" >/dev/null || die "$CARGO not found (the native library builds from source)"
command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
command -v python3 >/dev/null || die "python3 not found (reads cargo metadata and test reports)"

# mvn ARGS...: Maven, without the stray colour resets Debian's Maven 3.8 prints under -q.
mvn() {
  command mvn "$@" 2>&1 | sed -u 's/\x1b\[0m//g'
}

# jdk_home MAJOR [VARIABLE]: the home of a JDK (javac included) of exactly that major version:
# $VARIABLE if set, else the first under /usr/lib/jvm.
jdk_home() {
  local major=$1 var=${2:-} c
  if [ -n "$var" ] && [ -n "${!var:-}" ]; then
    if [ ! -x "${!var}/bin/java" ] || [ "$(java_major "${!var}/bin/java")" != "$major" ]; then
      die "$var=${!var} is not a Java $major"
    fi
    echo "${!var}"
    return 0
  fi
  for c in /usr/lib/jvm/*/bin/javac; do
    if [ -x "$c" ] && [ "$(java_major "$(dirname "$c")/java")" = "$major" ]; then
      dirname "$(dirname "$c")"
      return 0
    fi
  done
  die "no Java $major JDK found under /usr/lib/jvm: install one (e.g. openjdk-$major-jdk / temurin-$major-jdk) or set $var"
}

# --- the native library and the CLI -------------------------------------------------------------
cd "$root"
start=$(now_ms)
"$CARGO" build --quiet --release -p fieldcrypt-ffi
libdir="$(cargo_target_dir "$root")/release"
[ -f "$libdir/libfieldcrypt_ffi.so" ] || die "no $libdir/libfieldcrypt_ffi.so after the build"
log "native library $libdir/libfieldcrypt_ffi.so ($(elapsed "$start"))"
if [ "$mode" = test ]; then
  # Separately: one cargo invocation for both would unify features (librdkafka in fieldcrypt_ffi).
  start=$(now_ms)
  "$CARGO" build --quiet --release -p fieldcrypt-ffi-kafka
  [ -f "$libdir/libfieldcrypt_ffi_kafka.so" ] || die "no $libdir/libfieldcrypt_ffi_kafka.so after the build"
  log "native library $libdir/libfieldcrypt_ffi_kafka.so ($(elapsed "$start"))"
fi

java17="$(jdk_home 17 JAVA17_HOME)"
mvn_args=(-B -q -f "$here/pom.xml" "-Dmaven.repo.local=$CACHE/m2" "-Dfieldcrypt.native.dir=$libdir")

if [ "$mode" = bench ]; then
  case "${1:-17}" in
    17) bench_home="$java17" ;;
    25) bench_home="$(jdk_home 25 JAVA25_HOME)" ;;
    *) die "usage: run-tests.sh bench [17|25]" ;;
  esac
  JAVA_HOME="$java17" mvn "${mvn_args[@]}" test-compile dependency:build-classpath \
    -Dmdep.includeScope=test "-Dmdep.outputFile=$here/target/classpath.txt"
  extra=()
  if [ "$(java_major "$bench_home/bin/java")" -ge 22 ]; then extra+=(--enable-native-access=ALL-UNNAMED); fi
  log "benchmark on $bench_home"
  exec "$bench_home/bin/java" "${extra[@]}" "-Djna.library.path=$libdir" "-Dfieldcrypt.root=$root" \
    -cp "$here/target/classes:$here/target/test-classes:$(cat "$here/target/classpath.txt")" \
    dev.fieldcrypt.Bench "${@:2}"
fi

# counts LABEL: sums the surefire reports of the run that just ended into a closing line.
counts() {
  python3 - "$here/target/surefire-reports" "$1" <<'EOF'
import glob, sys, xml.etree.ElementTree as ET
tests = failed = skipped = 0
for f in glob.glob(sys.argv[1] + "/TEST-*.xml"):
    r = ET.parse(f).getroot()
    tests += int(r.get("tests", 0))
    failed += int(r.get("failures", 0)) + int(r.get("errors", 0))
    skipped += int(r.get("skipped", 0))
print(f"{sys.argv[2]}: {tests - failed - skipped} passed, {failed} failed, {skipped} skipped")
EOF
}

if [ "$mode" = xtest-peer ]; then
  # The classes are copied next to the launcher: a later build in target/ does not change a
  # peer the matrix is running.
  mkdir -p "$peer_out"
  peer_out="$(cd "$peer_out" && pwd)"
  JAVA_HOME="$java17" mvn "${mvn_args[@]}" test-compile dependency:build-classpath \
    -Dmdep.includeScope=test "-Dmdep.outputFile=$here/target/xtest-classpath.txt" || die "mvn test-compile failed"
  rm -rf "$peer_out/peer-java.d"
  mkdir -p "$peer_out/peer-java.d"
  cp -r "$here/target/classes" "$peer_out/peer-java.d/classes"
  cp -r "$here/target/test-classes" "$peer_out/peer-java.d/test-classes"
  rm -rf "$peer_out/peer-java.d/classes/linux-x86-64" # the library comes from -Djna.library.path
  classpath="$peer_out/peer-java.d/classes:$peer_out/peer-java.d/test-classes:$(cat "$here/target/xtest-classpath.txt")"
  {
    echo '#!/usr/bin/env bash'
    echo '# The Java peer of the xtests matrix (xtests/README.md); written by bindings/java/run-tests.sh xtest-peer.'
    printf 'exec %q -Djna.library.path=%q -cp %q dev.fieldcrypt.xtest.Peer "$@"\n' \
      "$java17/bin/java" "$libdir" "$classpath"
  } >"$peer_out/peer-java.tmp"
  chmod +x "$peer_out/peer-java.tmp"
  mv "$peer_out/peer-java.tmp" "$peer_out/peer-java"
  log "wrote $peer_out/peer-java"
  exit 0
fi

if [ "$mode" = vectors ]; then
  if [ -n "${FIELDCRYPT_XTEST_OUT:-}" ]; then
    mkdir -p "$FIELDCRYPT_XTEST_OUT"
    FIELDCRYPT_XTEST_OUT="$(cd "$FIELDCRYPT_XTEST_OUT" && pwd)" # the forked JVM runs in bindings/java
    export FIELDCRYPT_XTEST_OUT
    log "encrypt results to $FIELDCRYPT_XTEST_OUT/encrypted-java.json"
  fi
  log "Java 17 ($java17): the test vectors (VectorsTest)"
  rm -rf "$here/target/surefire-reports"
  start=$(now_ms)
  status=0
  JAVA_HOME="$java17" mvn "${mvn_args[@]}" test -Dtest=VectorsTest "$@" || status=1
  line="$(counts "vectors java17")"
  log "$line ($(elapsed "$start"))"
  echo "$line"
  if [ "$status" = 0 ]; then log "all passed"; else log "FAILED"; fi
  exit "$status"
fi

java25="$(jdk_home 25 JAVA25_HOME)" # before any test run: a missing Java 25 fails at once
build_cli "$root" python3

if [ -n "${FIELDCRYPT_KAFKA:-}" ]; then
  log "with the broker tests (FIELDCRYPT_KAFKA=$FIELDCRYPT_KAFKA)"
elif [ "${FIELDCRYPT_SERVER_TESTS:-0}" = 1 ]; then
  log "FIELDCRYPT_SERVER_TESTS=1 without FIELDCRYPT_KAFKA: the broker tests will fail"
else
  log "without the broker tests (set FIELDCRYPT_KAFKA to run them)"
fi

status=0
summary=()

# --- Java 17: compile, test, package -------------------------------------------------------------
log "Java 17 ($java17): mvn test"
rm -rf "$here/target/surefire-reports"
start=$(now_ms)
JAVA_HOME="$java17" mvn "${mvn_args[@]}" test "$@" || status=1
summary+=("$(counts java17)")
log "${summary[-1]} ($(elapsed "$start"))"

# governance JAVA_HOME LABEL [MAVEN ARGS...]: the governance broker scenario alone, with the
# kafka library (librdkafka inside; from $libdir, not the jar).
governance() {
  local home=$1 label=$2
  shift 2
  log "$label: GovernanceBrokerTest with fieldcrypt_ffi_kafka"
  rm -rf "$here/target/surefire-reports"
  start=$(now_ms)
  JAVA_HOME="$home" mvn "${mvn_args[@]}" "$@" -Dtest=GovernanceBrokerTest \
    -Dfieldcrypt.library=fieldcrypt_ffi_kafka || status=1
  summary+=("$(counts "$label")")
  log "${summary[-1]} ($(elapsed "$start"))"
}
governance "$java17" "java17 kafka library" test "$@" "-Dfieldcrypt.test.jvmArgs=-Djna.library.path=$libdir"

JAVA_HOME="$java17" mvn "${mvn_args[@]}" package -DskipTests || die "mvn package failed"
jar="$here/target/fieldcrypt-0.1.0.jar"
[ -f "$jar" ] || die "no $jar after mvn package"
unzip -l "$jar" | grep -q 'linux-x86-64/libfieldcrypt_ffi.so' || die "$jar lacks linux-x86-64/libfieldcrypt_ffi.so"

# --- Java 25: the same jar and test classes -----------------------------------------------------
log "Java 25 ($java25): the tests against $jar"
rm -rf "$here/target/surefire-reports"
start=$(now_ms)
JAVA_HOME="$java17" mvn "${mvn_args[@]}" surefire:test "$@" "-Djvm=$java25/bin/java" \
  "-Dfieldcrypt.test.classes=$jar" "-Dfieldcrypt.test.jvmArgs=--enable-native-access=ALL-UNNAMED" || status=1
summary+=("$(counts java25)")
log "${summary[-1]} ($(elapsed "$start"))"
governance "$java17" "java25 kafka library" surefire:test "$@" "-Djvm=$java25/bin/java" \
  "-Dfieldcrypt.test.classes=$jar" \
  "-Dfieldcrypt.test.jvmArgs=--enable-native-access=ALL-UNNAMED -Djna.library.path=$libdir"

for line in "${summary[@]}"; do echo "$line"; done
if [ "$status" = 0 ]; then log "all passed"; else log "FAILED"; fi
exit "$status"
