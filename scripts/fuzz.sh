#!/usr/bin/env bash
# Runs every cargo-fuzz target in core/fuzz for N seconds each (default 20); exits non-zero if
# any target finds a crash (or fails to build). Used by `make fuzz`.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Toolchain: nightly if rustup has one (`cargo +nightly fuzz run`), else the default (stable)
# toolchain with RUSTC_BOOTSTRAP=1, which lets stable rustc accept the -Z flags cargo-fuzz
# passes (AddressSanitizer). Override with FUZZ_TOOLCHAIN=<rustup toolchain> and
# FUZZ_SANITIZER=none|address|leak|memory|thread (`none` needs no -Z flag at all).
# New corpus entries go to core/fuzz/target/corpus/<target> (not committed); the seeds in
# core/fuzz/corpus/<target> are only read. Crash inputs land in core/fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

seconds="${1:-20}"
shift || true
fuzz_dir=core/fuzz
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(header_parse decrypt decrypt_mutate)
fi
case "$seconds" in '' | *[!0-9]*)
  echo "fuzz: SECONDS must be a whole number, got '$seconds'" >&2
  exit 2
  ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --version '^0.13' --locked
fi

cargo_cmd=(cargo)
rustc_cmd=(rustc)
toolchain="${FUZZ_TOOLCHAIN:-}"
if [ -z "$toolchain" ] && command -v rustup >/dev/null 2>&1 && rustup toolchain list | grep -q '^nightly'; then
  toolchain=nightly
fi
if [ -n "$toolchain" ]; then
  cargo_cmd+=("+$toolchain")
  rustc_cmd+=("+$toolchain")
fi
if [ "$toolchain" != nightly ] && [ "${toolchain#nightly-}" = "$toolchain" ]; then
  export RUSTC_BOOTSTRAP=1
fi
sanitizer="${FUZZ_SANITIZER:-address}"
run_cmd="${RUSTC_BOOTSTRAP:+RUSTC_BOOTSTRAP=1 }${cargo_cmd[*]} fuzz run --sanitizer $sanitizer"
echo "fuzz: $("${rustc_cmd[@]}" --version); running '$run_cmd <target>' for ${seconds}s per target"

work="$fuzz_dir/target/corpus"
logs="$fuzz_dir/target/fuzz-logs"
mkdir -p "$logs"
failed=()
summary=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "$fuzz_dir/artifacts/$t"
  before=$(find "$fuzz_dir/artifacts/$t" -type f | sort)
  echo "fuzz: === $t ==="
  seeds=()
  if [ -d "$fuzz_dir/corpus/$t" ]; then seeds=("corpus/$t"); fi
  status=0
  # Paths are relative to core/fuzz, where cargo-fuzz runs the target.
  (cd "$fuzz_dir" && "${cargo_cmd[@]}" fuzz run --sanitizer "$sanitizer" "$t" "target/corpus/$t" ${seeds[@]+"${seeds[@]}"} -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1) >"$logs/$t.log" 2>&1 || status=$?
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$logs/$t.log" | tail -1 || true)
  runs=$(grep -E '^stat::number_of_executed_units:' "$logs/$t.log" | awk '{print $2}' | tail -1 || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+)\/.* exec\/s: ([0-9]+).*/cov \1, ft \2, corpus \3, \4 exec\/s/p' <<<"$done_line")
  if [ "$status" -eq 0 ]; then
    summary+=("$t: ok, ${runs:-?} execs, ${cov:-no stats}")
  else
    failed+=("$t")
    summary+=("$t: FAILED (exit $status), ${runs:-?} execs; log $logs/$t.log")
    # The panic (or sanitizer report, or build error) and the crash input, base64-encoded.
    if grep -qE "panicked at|^==[0-9]+==ERROR|^SUMMARY: " "$logs/$t.log"; then
      grep -E -A3 "panicked at|^==[0-9]+==ERROR" "$logs/$t.log" | head -40 || true
      grep -E "^SUMMARY: " "$logs/$t.log" || true
    else
      tail -n 40 "$logs/$t.log"
    fi
    after=$(find "$fuzz_dir/artifacts/$t" -type f | sort)
    for f in $(comm -13 <(echo "$before") <(echo "$after")); do
      echo "fuzz: crash input $f (base64): $(base64 -w0 "$f")"
    done
  fi
  echo "fuzz: ${summary[-1]}"
done

echo "fuzz: summary"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (reproduce: cd $fuzz_dir && $run_cmd <target> artifacts/<target>/<file>)" >&2
  exit 1
fi
