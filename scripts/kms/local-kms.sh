#!/usr/bin/env bash
# local-kms (nsmithuk/local-kms, an AWS KMS emulator in Go) on 127.0.0.1: the second server the
# AWS KMS client is tested against. It checks no signatures and has no IAM; it does enforce key
# state (a disabled key answers DisabledException).
#
#   scripts/kms/local-kms.sh install   go install ...@$LOCAL_KMS_VERSION into $CACHE/go, then build
#                                      a copy that binds 127.0.0.1 (upstream binds every interface)
#   scripts/kms/local-kms.sh start     start on a free port, create a key and an alias, write
#                                      $RUN/local-kms.env
#   scripts/kms/local-kms.sh stop | status | env
#
#   eval "$(scripts/kms/local-kms.sh env)"   # FIELDCRYPT_LOCALKMS_* for tests/tests/kms_aws.rs
#
# Environment (all optional):
#   FIELDCRYPT_CACHE    install dir            (default $HOME/.cache/fieldcrypt)
#   FIELDCRYPT_RUN      pid, log and env files (default /tmp/fieldcrypt-servers)
#   LOCAL_KMS_VERSION   default v0.0.0-20260228092603-2a5e92d09ab6
#   LOCAL_KMS_PORT      fixed port (default: a free port)
#   START_TIMEOUT       seconds to wait (default 30); STOP_TIMEOUT (default 10)
set -euo pipefail

LOG_NAME=local-kms
# shellcheck source-path=SCRIPTDIR/.. source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
LOCAL_KMS_VERSION="${LOCAL_KMS_VERSION:-v0.0.0-20260228092603-2a5e92d09ab6}"
MODULE=github.com/nsmithuk/local-kms
GOPATH_DIR="$CACHE/go"
HOME_DIR="$CACHE/local-kms-$LOCAL_KMS_VERSION"
BIN="$HOME_DIR/local-kms"
ACCOUNT=111122223333
REGION=eu-west-2
START_TIMEOUT="${START_TIMEOUT:-30}"
STOP_TIMEOUT="${STOP_TIMEOUT:-10}"
NAME=local-kms

go_() { GOPATH="$GOPATH_DIR" GOFLAGS=-mod=mod GOTOOLCHAIN=local go "$@"; }

cmd_install() { # [quiet]
  if [ -x "$BIN" ] && [ -f "$HOME_DIR/.complete" ]; then
    [ -n "${1:-}" ] || log "local-kms $LOCAL_KMS_VERSION already installed in $HOME_DIR"
    return 0
  fi
  command -v go >/dev/null 2>&1 || die "go not found"
  local t0 src stage
  t0=$(now_ms)
  log "installing $MODULE@$LOCAL_KMS_VERSION (Go module proxy)"
  mkdir -p "$GOPATH_DIR"
  go_ install "$MODULE@$LOCAL_KMS_VERSION" >&2 || die "go install $MODULE@$LOCAL_KMS_VERSION failed"
  # The upstream server listens on ":PORT" (all interfaces). Build the same source with the
  # listen address pinned to 127.0.0.1; nothing else differs.
  src="$GOPATH_DIR/pkg/mod/$MODULE@$LOCAL_KMS_VERSION"
  [ -f "$src/src/server.go" ] || die "module source not found in $src"
  stage="$(mktemp -d "$CACHE/.local-kms.XXXXXX")"
  cp -r "$src/." "$stage/src-copy"
  chmod -R u+w "$stage/src-copy"
  grep -q 'addr := ":"+port' "$stage/src-copy/src/server.go" || { rm -rf "$stage"; die "listen address line not found"; }
  sed -i 's|addr := ":"+port|addr := "127.0.0.1:"+port|' "$stage/src-copy/src/server.go"
  (cd "$stage/src-copy" && go_ build -o "$stage/local-kms" .) >&2 || { rm -rf "$stage"; die "go build failed"; }
  rm -rf "$stage/src-copy"
  touch "$stage/.complete"
  rm -rf "$HOME_DIR"
  mv "$stage" "$HOME_DIR"
  log "local-kms installed in $(elapsed "$t0")"
}

pid_of() { pid_in_file "$RUN/$NAME.pid" "$BIN"; } # -> pid if our local-kms is alive

kms_call() { # port op json -> answer body; fails on a non-200 answer
  local out code
  out="$(curl -s -m 5 -w '\n%{http_code}' -X POST "http://127.0.0.1:$1/" \
    -H "X-Amz-Target: TrentService.$2" -H 'Content-Type: application/x-amz-json-1.1' -d "$3")"
  code="${out##*$'\n'}"
  [ "$code" = 200 ] || { log "$2 answered HTTP $code: ${out%$'\n'*}"; return 1; }
  printf '%s' "${out%$'\n'*}"
}

ready() { kms_call "$1" ListKeys '{}' >/dev/null 2>&1; }

cmd_start() {
  local pid
  mkdir -p "$RUN"
  if pid="$(pid_of)"; then
    log "local-kms already running (pid $pid)"
    cat "$RUN/$NAME.env"
    return 0
  fi
  cmd_install quiet
  stop_server
  local t0 port data key alias
  t0=$(now_ms)
  port="${LOCAL_KMS_PORT:-$(free_port)}"
  data="$(mktemp -d "${TMPDIR:-/tmp}/fieldcrypt-local-kms.XXXXXX")"
  echo "$data" >"$RUN/$NAME.tmpdir"
  : >"$RUN/$NAME.log"
  (cd "$data" && PORT="$port" KMS_ACCOUNT_ID="$ACCOUNT" KMS_REGION="$REGION" KMS_DATA_PATH="$data/db" \
    KMS_SEED_PATH="$data/no-seed.yaml" exec setsid "$BIN" >>"$RUN/$NAME.log" 2>&1 </dev/null) &
  pid=$!
  echo "$pid" >"$RUN/$NAME.pid"
  wait_ready "$pid" $(($(date +%s) + START_TIMEOUT)) 0.1 "not ready after ${START_TIMEOUT}s" ready "$port"
  key="$(kms_call "$port" CreateKey '{"Description":"fieldcrypt-it"}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["KeyMetadata"]["Arn"])')" || fail_start "CreateKey failed"
  kms_call "$port" CreateAlias "{\"AliasName\":\"alias/fieldcrypt-it\",\"TargetKeyId\":\"$key\"}" >/dev/null ||
    fail_start "CreateAlias failed"
  alias="${key%%:key/*}:alias/fieldcrypt-it"
  cat >"$RUN/$NAME.env.tmp.$$" <<ENV
export FIELDCRYPT_LOCALKMS_ENDPOINT=http://127.0.0.1:$port
export FIELDCRYPT_LOCALKMS_KEY_ARN=$key
export FIELDCRYPT_LOCALKMS_ALIAS_ARN=$alias
ENV
  mv "$RUN/$NAME.env.tmp.$$" "$RUN/$NAME.env"
  log "local-kms ready on 127.0.0.1:$port (pid $pid) in $(elapsed "$t0")"
  cat "$RUN/$NAME.env"
}

stop_server() {
  local pid tmp
  if pid="$(pid_of)"; then
    stop_pid "$pid" local-kms
  fi
  if tmp="$(recorded_tmpdir "$RUN/$NAME.tmpdir" fieldcrypt-local-kms)"; then
    rm -rf "$tmp"
  fi
  rm -f "$RUN/$NAME.pid" "$RUN/$NAME.env" "$RUN/$NAME.tmpdir"
}

cmd_status() {
  local pid
  if pid="$(pid_of)"; then log "local-kms running (pid $pid)"; else
    log "local-kms not running"
    exit 3
  fi
}

cmd_env() {
  if [ ! -f "$RUN/$NAME.env" ] || ! pid_of >/dev/null; then die "local-kms is not running: scripts/kms/local-kms.sh start"; fi
  cat "$RUN/$NAME.env"
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) stop_server ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) die "usage: $0 install|start|stop|status|env" ;;
esac
