#!/usr/bin/env bash
# The C ABI from C, under valgrind memcheck (zero errors, zero leaks, or the run fails):
#
#   ffi/tests/run-c-tests.sh          the tests
#   ffi/tests/run-c-tests.sh bench    a tight C loop over the ABI (tests/c/bench_ffi.c)
#
# Builds fieldcrypt-ffi (release, honouring CARGO_TARGET_DIR), compiles ffi/tests/c/test_ffi.c
# with -Wall -Wextra -Werror against include/fieldcrypt.h and the shared library, runs it once
# natively and once under valgrind (from Debian, installed by scripts/setup.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
LOG_NAME="ffi-c-tests"
. "$root/scripts/lib.sh"
export PATH="$HOME/.cargo/bin:$PATH"

command -v valgrind >/dev/null || die "valgrind is not installed (scripts/setup.sh installs it)"

cd "$root"
"${CARGO:-cargo}" build --quiet --release -p fieldcrypt-ffi
lib_dir="$(cargo_target_dir "$root")/release"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
gcc -std=c11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror -pthread -I "$root/ffi/include" \
  "$here/c/test_ffi.c" -o "$out/test_ffi" -L "$lib_dir" -lfieldcrypt_ffi -Wl,-rpath,"$lib_dir"

args=("$root/schemas/policies/demo.json" "$root/schemas/keys/local-dev.json")
if [ "${1:-}" = bench ]; then
  gcc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -I "$root/ffi/include" "$here/c/bench_ffi.c" \
    -o "$out/bench_ffi" -L "$lib_dir" -lfieldcrypt_ffi -Wl,-rpath,"$lib_dir"
  "$out/bench_ffi" "${args[@]}" "$root/schemas/payment/payment.json"
  exit
fi
log "native run"
"$out/test_ffi" "${args[@]}" "$root/schemas/governance"
log "valgrind memcheck"
valgrind --quiet --error-exitcode=3 --leak-check=full --show-leak-kinds=definite,indirect,possible \
  --errors-for-leak-kinds=definite,indirect,possible --track-origins=yes \
  "$out/test_ffi" "${args[@]}" "$root/schemas/governance"
log "valgrind: no errors, no leaks"

# The Kafka test aid (fieldcrypt-ffi-kafka): error paths always, a broker round trip when
# FIELDCRYPT_KAFKA is set. A separate cargo invocation, so the libfieldcrypt_ffi.a that Go
# links stays free of librdkafka. Natively only: memcheck reports a few hundred bytes lost per
# client inside the rdkafka crate's client set-up (rd_kafka_queue_new0 under Client::new), not
# in fieldcrypt.
"${CARGO:-cargo}" build --quiet --release -p fieldcrypt-ffi-kafka
gcc -std=c11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror -I "$root/ffi/include" \
  "$here/c/test_ffi_kafka.c" -o "$out/test_ffi_kafka" -L "$lib_dir" -lfieldcrypt_ffi_kafka -Wl,-rpath,"$lib_dir"
if [ "${FIELDCRYPT_SERVER_TESTS:-0}" = 1 ] && [ -z "${FIELDCRYPT_KAFKA:-}" ]; then
  die "FIELDCRYPT_SERVER_TESTS=1 but FIELDCRYPT_KAFKA is not set"
fi
"$out/test_ffi_kafka"
