#!/usr/bin/env bash
# Google Cloud KMS for fieldcrypt's tests: there is NO emulator this project can install.
#
#   scripts/kms/gcp-kms-emulator.sh install   look the candidate emulators up on the Go module
#                                             proxy again; exit 1 while none is served
#   scripts/kms/gcp-kms-emulator.sh start     starts nothing (see below); writes an env file
#   scripts/kms/gcp-kms-emulator.sh stop      removes the env file
#   scripts/kms/gcp-kms-emulator.sh env       prints the env file (comments only)
#
# The community Cloud KMS emulators are Go programs, and the Go module proxy refuses every one
# of them ("403 This module version is not available", checked 2026-11-30):
#   github.com/blackwell-systems/gcp-kms-emulator   REST + gRPC; its REST gateway listens on
#                                                   ":PORT" (all interfaces) in the source read
#   github.com/winor30/fake-cloud-kms               gRPC only (fieldcrypt's client speaks REST)
#   github.com/Brilhante29/kiri-gcp                 many GCP services, REST
#   github.com/slokam-ai/localgcp                   many GCP services
# No PyPI, npm or Maven package found in the project's package lists emulates Cloud KMS.
#
# So tests/tests/kms_gcp.rs runs the real GcpKms client against an in-process fake of the two
# Cloud KMS REST calls it makes (started by the tests themselves), and the unit tests in
# core/src/kms/gcp.rs check requests, JWT signing, token exchange and error parsing against
# responses written from Google's API reference (tests/fixtures/gcp/, sources in
# docs/kms/gcp.md). `start` therefore starts nothing and exits 0, so a Makefile that starts
# every KMS server keeps working; it says so loudly.
#
# Environment (optional): FIELDCRYPT_CACHE (default $HOME/.cache/fieldcrypt),
# FIELDCRYPT_RUN (default /tmp/fieldcrypt-servers).
set -euo pipefail

NAME="gcp-kms-emulator"
LOG_NAME="$NAME"
# shellcheck source-path=SCRIPTDIR/.. source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
ENV_FILE="$RUN/$NAME.env"
CANDIDATES=(
  github.com/blackwell-systems/gcp-kms-emulator
  github.com/winor30/fake-cloud-kms
  github.com/Brilhante29/kiri-gcp
  github.com/slokam-ai/localgcp
)

install() {
  command -v go >/dev/null 2>&1 || die "go is not installed"
  mkdir -p "$CACHE/go"
  local served=0 m out
  for m in "${CANDIDATES[@]}"; do
    if out="$(GOPROXY=https://proxy.golang.org GOPATH="$CACHE/go" go list -m -versions "$m" 2>&1)"; then
      log "served: $out"
      served=1
    else
      log "not served: $m: $(printf '%s' "$out" | tr '\n' ' ' | cut -c1-200)"
    fi
  done
  if [ "$served" = 1 ]; then
    die "a candidate is served now, but no start procedure was verified for it: check that it binds 127.0.0.1, speaks REST with additionalAuthenticatedData, and supports key versions, then extend this script"
  fi
  die "no Cloud KMS emulator can be installed; tests/tests/kms_gcp.rs uses its in-process fake (docs/kms/gcp.md)"
}

start() {
  mkdir -p "$RUN"
  {
    echo "# $NAME: no Cloud KMS emulator could be installed, nothing was started."
    echo "# tests/tests/kms_gcp.rs starts its own in-process fake and needs no variables."
  } >"$ENV_FILE"
  log "NOT STARTED: no Cloud KMS emulator is installable here; the GCP tests use an in-process fake (see docs/kms/gcp.md)"
}

stop() {
  rm -f "$ENV_FILE"
}

env_cmd() {
  [ -f "$ENV_FILE" ] || die "no env file: run '$0 start' first"
  cat "$ENV_FILE"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  env) env_cmd ;;
  *) die "usage: $0 install|start|stop|env" ;;
esac
