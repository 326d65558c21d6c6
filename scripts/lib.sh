# shellcheck shell=bash
# Shell helpers shared by scripts/servers.sh and scripts/kms/*.sh, which start test servers on
# 127.0.0.1 and stop them by pid: logging, timing, free ports, our processes by pid file, start-up
# waits and failure reports, stopping (TERM, then KILL), temp dirs, and finding a Java; and by the
# Python test runners (tests/python/run.sh, bindings/python/run-tests.sh): a venv per
# requirements file, and the fieldcrypt CLI their interop tests call.
# Sourced, never run:
#
#   LOG_NAME=openbao
#   . "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
#
# What the sourcing script provides:
#   LOG_NAME        prefix of its log lines (set before sourcing)
#   NAME            the server whose start is under way: its files are $RUN/$NAME.{pid,log,...}
#                   (for wait_ready and fail_start)
#   stop_server     [NAME]: stops that server and removes its files (for fail_start)
#   START_TIMEOUT, STOP_TIMEOUT   seconds (for its own waits, and stop_pid)
# What sourcing sets: CACHE and RUN (below), and no SIGPIPE.

# Installs go to the cache, pid, log and env files to the run dir.
# shellcheck disable=SC2034 # used by the sourcing scripts
CACHE="${FIELDCRYPT_CACHE:-$HOME/.cache/fieldcrypt}"
RUN="${FIELDCRYPT_RUN:-/tmp/fieldcrypt-servers}"

# A reader that goes away (`... | head`) must not kill a stop half-way: no SIGPIPE, and a
# message that cannot be written is dropped.
trap '' PIPE
log() { echo "$LOG_NAME: $*" >&2 || true; }
die() {
  log "error: $*"
  exit 1
}

now_ms() { date +%s%3N; }
elapsed() { # start_ms -> "12.3s"
  local d=$(($(now_ms) - $1))
  printf '%d.%ds' $((d / 1000)) $((d % 1000 / 100))
}

# usage_exit LAST [STATUS]: prints the script's header comment (lines 2 to LAST, without the
# leading '# ') and exits with STATUS (default 2).
usage_exit() {
  sed -n "2,${1}p" "$0" | sed 's/^# \{0,1\}//'
  exit "${2:-2}"
}

# ---------------------------------------------------------------------------------------------
# processes

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

alive() { # pid: running (a zombie waiting to be reaped by init counts as gone)
  kill -0 "$1" 2>/dev/null || return 1
  local state
  state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
  [ -n "$state" ] && [ "$state" != Z ]
}

# pid_in_file PID_FILE MARKER: prints the pid in PID_FILE if that process is alive and its
# command line holds MARKER (a fixed string). A pid file whose process is something else (the
# server died and the pid was reused) is stale, and nothing is to be signalled.
pid_in_file() {
  local pid
  [ -f "$1" ] || return 1
  pid="$(cat "$1")"
  [ -n "$pid" ] && alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" || return 1
  echo "$pid"
}

# stop_pid PID LABEL: continues the process (one a test left frozen would ignore TERM), sends
# TERM, and KILL if it is still running after STOP_TIMEOUT seconds. LABEL names it in the log.
stop_pid() {
  local pid=$1 label=$2 i
  kill -CONT "$pid" 2>/dev/null || true
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    log "$label (pid $pid) still running after ${STOP_TIMEOUT}s: KILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  log "$label stopped (pid $pid)"
}

# recorded_tmpdir FILE PREFIX: prints the temp dir a start recorded in FILE if it is one of ours
# (a path ending in /PREFIX.XXXXXX, as `mktemp -d .../PREFIX.XXXXXX` makes); fails otherwise.
recorded_tmpdir() {
  local tmp
  [ -f "$1" ] || return 1
  tmp="$(cat "$1")"
  case "$tmp" in
    */"$2".*) echo "$tmp" ;;
    *) return 1 ;;
  esac
}

# http_ok URL: the URL answers 200 within 2 seconds.
http_ok() {
  [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1")" = 200 ]
}

# wait_ready PID DEADLINE INTERVAL LATE CHECK...: runs CHECK every INTERVAL seconds until it
# succeeds; fail_start when process PID is gone ("process PID exited") or the clock passes
# DEADLINE (seconds since the epoch) first (reason LATE).
wait_ready() {
  local pid=$1 deadline=$2 interval=$3 late=$4
  shift 4
  until "$@"; do
    alive "$pid" || fail_start "process $pid exited"
    [ "$(date +%s)" -lt "$deadline" ] || fail_start "$late"
    sleep "$interval"
  done
}

# fail_start REASON: server NAME did not start: says why, shows the first errors and the last
# lines of its log, stops what is left of it (stop_server NAME) and exits 1.
fail_start() {
  local logfile="$RUN/$NAME.log"
  log "error: $NAME failed to start: $1"
  if grep -qE ' ERROR |^Caused by|Exception' "$logfile" 2>/dev/null; then
    log "---- first errors in $logfile ----"
    grep -m 8 -E ' ERROR |^Caused by|Exception' "$logfile" | cut -c1-400 >&2 || true
  fi
  log "---- last lines of $logfile ----"
  tail -n 25 "$logfile" | cut -c1-400 >&2 || true
  log "----"
  stop_server "$NAME" >/dev/null 2>&1 || true
  exit 1
}

# ---------------------------------------------------------------------------------------------
# Java

java_major() { # path/to/bin/java -> major version (17, 21, 25...), 0 if unknown
  local home release v
  home="$(dirname "$(dirname "$(readlink -f "$1")")")"
  release="$home/release"
  if [ -f "$release" ]; then
    v="$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$release")"
  fi
  if [ -z "${v:-}" ]; then
    v="$("$1" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)"
  fi
  echo "${v:-0}"
}

# java_bin MIN [PREFERRED_HOME [VARIABLE]]: the first Java >= MIN among $PREFERRED_HOME,
# $JAVA_HOME, the JDKs under /usr/lib/jvm (lowest major version first) and `java` on PATH; dies
# naming VARIABLE (default JAVA_HOME) as the way to point at one when there is none.
java_bin() {
  local min=$1 preferred=${2:-} c
  local found=()
  if [ -n "$preferred" ]; then found+=("$preferred/bin/java"); fi
  if [ -n "${JAVA_HOME:-}" ]; then found+=("$JAVA_HOME/bin/java"); fi
  while IFS= read -r c; do
    found+=("$c")
  done < <(for c in /usr/lib/jvm/*/bin/java; do
    if [ -x "$c" ]; then echo "$(java_major "$c") $c"; fi
  done | sort -n -k1,1 | cut -d' ' -f2-)
  if command -v java >/dev/null 2>&1; then found+=("$(command -v java)"); fi
  for c in "${found[@]}"; do
    if [ -x "$c" ] && [ "$(java_major "$c")" -ge "$min" ]; then
      echo "$c"
      return 0
    fi
  done
  die "no Java >= $min found (looked at: ${found[*]:-nothing}); install one or set ${3:-JAVA_HOME}"
}

# --- Python test runners --------------------------------------------------------------------

# ensure_venv VENV REQUIREMENTS: a venv with REQUIREMENTS installed, (re)made only when the file
# or the Python ($PYTHON, default python3) changed. One set-up at a time: runs share the cache.
ensure_venv() {
  local venv="$1" requirements="$2" python="${PYTHON:-python3}" want stamp
  mkdir -p "$CACHE"
  want="$( { "$python" -c 'import sys; print(sys.version)'; cat "$requirements"; } | sha256sum | cut -d' ' -f1)"
  stamp="$venv/.fieldcrypt-requirements.sha256"
  (
    flock 9
    if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ] || ! "$venv/bin/python" -c '' 2>/dev/null; then
      log "setting up $venv"
      rm -rf "$venv"
      "$python" -m venv "$venv"
      "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$requirements"
      echo "$want" >"$stamp"
    fi
  ) 9>"$venv.lock"
}

# cargo_target_dir ROOT: cargo's target directory for the workspace at ROOT (CARGO_TARGET_DIR,
# .cargo/config.toml or the default), read out of cargo's metadata.
cargo_target_dir() {
  (cd "$1" && "${CARGO:-cargo}" metadata --format-version 1 --no-deps) |
    "${PYTHON:-python3}" -c 'import sys, json; print(json.load(sys.stdin)["target_directory"])'
}

# build_cli ROOT [PYTHON]: builds the fieldcrypt CLI of the workspace at ROOT and exports its
# path as FIELDCRYPT_BIN.
build_cli() {
  local root="$1"
  (cd "$root" && "${CARGO:-cargo}" build --quiet -p fieldcrypt-cli)
  FIELDCRYPT_BIN="$(PYTHON="${2:-${PYTHON:-python3}}" cargo_target_dir "$root")/debug/fieldcrypt"
  export FIELDCRYPT_BIN
  [ -x "$FIELDCRYPT_BIN" ] || die "no CLI at $FIELDCRYPT_BIN after the build"
}
