#!/usr/bin/env bash
# Lowkey Vault (an Azure Key Vault test double speaking the Key Vault REST API over HTTPS) on
# 127.0.0.1, for the Azure Key Vault KMS integration tests (tests/tests/kms_azure.rs). No Docker:
# the runnable Spring Boot jar comes from Maven Central
# (com.github.nagyesta.lowkey-vault:lowkey-vault-app), or from a jar you already have.
#
#   scripts/kms/lowkey-vault.sh install    fetch the jar into $CACHE/lowkey-vault-<version> (once)
#   scripts/kms/lowkey-vault.sh start      start it (installs first if needed), set it up, wait until ready
#   scripts/kms/lowkey-vault.sh stop       TERM, then KILL after STOP_TIMEOUT
#   scripts/kms/lowkey-vault.sh status     exit status 3 when not running
#   scripts/kms/lowkey-vault.sh env        prints the `export FIELDCRYPT_AZURE_KV_...=...` lines the tests read
#
#   eval "$(scripts/kms/lowkey-vault.sh env)" && cargo test -p fieldcrypt-it --test kms_azure
#
# Set-up done by `start` (everything in memory, gone at stop):
#   - the vault Lowkey registers for https://<host>:<port> (host 127.0.0.1, or localhost when the
#     server's certificate does not name the IP address)
#   - the server's certificate, taken from the keystore inside the jar (fallback: what the port
#     presents), saved as $RUN/lowkey-vault-ca.pem and checked with curl --cacert: the tests trust
#     exactly this certificate, verification stays on
#   - RSA-2048 key `fieldcrypt-it` (key_ops wrapKey, unwrapKey)
# Lowkey checks that an Authorization header is present but not its value: the exported token is a
# placeholder, and wrong credentials cannot be tested against it (the tests use a local token
# endpoint for that).
#
# Environment (all optional):
#   FIELDCRYPT_CACHE     install dir (default $HOME/.cache/fieldcrypt)
#   FIELDCRYPT_RUN       pid, log and env files (default /tmp/fieldcrypt-servers)
#   LOWKEY_VERSION       lowkey-vault-app version on Maven Central (default 7.1.13)
#   LOWKEY_VAULT_JAR     use this lowkey-vault-app jar instead of fetching one
#   LOWKEY_JAVA_HOME     Java to run it (default: the oldest suitable JDK: >= 25 for Lowkey 5+,
#                        >= 21 for 4.x, >= 17 before; looked for in $JAVA_HOME, /usr/lib/jvm/*, PATH)
#   LOWKEY_PORT          fixed HTTPS port (default: a free port picked at start)
#   LOWKEY_TOKEN_PORT    fixed port of its plain-HTTP managed-identity token endpoint (default: free)
#   LOWKEY_HEAP_OPTS     default -Xms64m -Xmx384m
#   LOWKEY_JVM_OPTS      default -XX:+UseSerialGC -XX:TieredStopAtLevel=1 (fast start on 2 cores)
#   START_TIMEOUT        seconds to wait for the server (default 120)
#   STOP_TIMEOUT         seconds between TERM and KILL (default 20)
set -euo pipefail

LOG_NAME=lowkey-vault
# shellcheck source-path=SCRIPTDIR/.. source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
LOWKEY_VERSION="${LOWKEY_VERSION:-7.1.13}"
LOWKEY_HOME="$CACHE/lowkey-vault-$LOWKEY_VERSION"
M2_REPO="$CACHE/m2"
DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
ARTIFACT="com.github.nagyesta.lowkey-vault:lowkey-vault-app"
START_TIMEOUT="${START_TIMEOUT:-120}"
STOP_TIMEOUT="${STOP_TIMEOUT:-20}"
NAME=lowkey-vault
KEY=fieldcrypt-it
API=7.4
# Lowkey only checks that a token is there; this one is not a secret.
PLACEHOLDER_TOKEN=lowkey-vault-accepts-any-token

# The Java a Lowkey version needs: 5.x and later are built for Java 25, 4.x for 21, older for 17.
java_needed() { # version -> major
  local major=${1%%.*}
  if [ "$major" -ge 5 ] 2>/dev/null; then
    echo 25
  elif [ "$major" -ge 4 ] 2>/dev/null; then
    echo 21
  else
    echo 17
  fi
}

# ---------------------------------------------------------------------------------------------
# install

jar_path() {
  if [ -n "${LOWKEY_VAULT_JAR:-}" ]; then
    echo "$LOWKEY_VAULT_JAR"
  else
    echo "$LOWKEY_HOME/lowkey-vault-app-$LOWKEY_VERSION.jar"
  fi
}

installed() {
  if [ -n "${LOWKEY_VAULT_JAR:-}" ]; then
    [ -f "$LOWKEY_VAULT_JAR" ]
  else
    [ -f "$LOWKEY_HOME/.complete" ] && [ -f "$(jar_path)" ]
  fi
}

cmd_install() { # [quiet]
  if [ -n "${LOWKEY_VAULT_JAR:-}" ]; then
    [ -f "$LOWKEY_VAULT_JAR" ] || die "LOWKEY_VAULT_JAR=$LOWKEY_VAULT_JAR is not a file"
    [ -n "${1:-}" ] || log "using $LOWKEY_VAULT_JAR (LOWKEY_VAULT_JAR)"
    return 0
  fi
  if installed; then
    [ -n "${1:-}" ] || log "lowkey-vault-app $LOWKEY_VERSION already installed in $LOWKEY_HOME"
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found (apt-get install maven)"
  local t0 stage out
  t0=$(now_ms)
  log "installing lowkey-vault-app $LOWKEY_VERSION into $LOWKEY_HOME (Maven Central)"
  mkdir -p "$CACHE"
  stage="$(mktemp -d "$CACHE/.lowkey-vault-$LOWKEY_VERSION.XXXXXX")"
  # -U: a failed lookup is not cached as final (a mirror may start serving the artifact later).
  if ! out="$(mvn -B -q -ntp -U -Dstyle.color=never -Dmaven.repo.local="$M2_REPO" "$DEP_PLUGIN:copy" \
    -Dartifact="$ARTIFACT:$LOWKEY_VERSION" -DoutputDirectory="$stage" 2>&1)"; then
    rm -rf "$stage"
    printf '%s\n' "$out" | sed -e 's/\x1b\[[0-9;]*m//g' | grep -E 'ERROR\]' | head -n 3 >&2 || true
    die "could not fetch $ARTIFACT:$LOWKEY_VERSION from Maven Central; set LOWKEY_VERSION to a version the \
registry serves, or LOWKEY_VAULT_JAR to a lowkey-vault-app jar obtained another way"
  fi
  [ -f "$stage/lowkey-vault-app-$LOWKEY_VERSION.jar" ] || { rm -rf "$stage"; die "the jar is missing after mvn"; }
  touch "$stage/.complete"
  rm -rf "$LOWKEY_HOME"
  mv "$stage" "$LOWKEY_HOME"
  log "lowkey-vault-app $LOWKEY_VERSION installed in $(elapsed "$t0")"
}

# ---------------------------------------------------------------------------------------------
# process helpers

pid_of() { pid_in_file "$RUN/$NAME.pid" "-Dfieldcrypt.server=$NAME"; } # -> pid if our server is alive

port_open() { # port
  python3 -c 'import socket, sys
s = socket.socket(); s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)' "$1"
}

# The certificate the server presents, as PEM: first from the keystore Lowkey ships in its jar
# (what the port should present), else from a TLS handshake with the port. Either way curl
# --cacert then proves it is the one that port presents for the host we use.
fetch_ca() { # jar port java out
  local jar=$1 port=$2 java=$3 out=$4 tmp keytool
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/fieldcrypt-lowkey-ca.XXXXXX")"
  keytool="$(dirname "$java")/keytool"
  if python3 - "$jar" "$tmp/keystore.p12" <<'PY' 2>/dev/null &&
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = [n for n in z.namelist() if n.endswith("cert/keystore.p12")]
    if not names:
        sys.exit(1)
    open(sys.argv[2], "wb").write(z.read(names[0]))
PY
    [ -x "$keytool" ] &&
    "$keytool" -list -rfc -keystore "$tmp/keystore.p12" -storetype PKCS12 -storepass changeit 2>/dev/null |
    sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' >"$tmp/ca.pem" && [ -s "$tmp/ca.pem" ]; then
    log "certificate taken from the keystore in $(basename "$jar")"
  else
    openssl s_client -connect "127.0.0.1:$port" -servername localhost </dev/null 2>/dev/null |
      openssl x509 -outform PEM >"$tmp/ca.pem" 2>/dev/null || true
    [ -s "$tmp/ca.pem" ] || { rm -rf "$tmp"; return 1; }
    log "certificate taken from the TLS handshake on port $port"
  fi
  mv "$tmp/ca.pem" "$out"
  rm -rf "$tmp"
}

# 127.0.0.1 when the certificate names that IP address, else localhost when it names that.
vault_host() { # ca.pem
  local san
  san="$(openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null || true)"
  if grep -q 'IP Address:127.0.0.1' <<<"$san"; then
    echo 127.0.0.1
  elif grep -qi 'DNS:localhost' <<<"$san"; then
    echo localhost
  else
    return 1
  fi
}

api() { # method url [body] -> body on stdout; fails on a non-2xx status
  local method=$1 url=$2 body=${3:-} out status
  out="$(mktemp)"
  status="$(curl -sS -m 10 --cacert "$RUN/$NAME-ca.pem" -o "$out" -w '%{http_code}' -X "$method" \
    -H "Authorization: Bearer $PLACEHOLDER_TOKEN" -H 'Content-Type: application/json' \
    ${body:+--data "$body"} "$url")" || status=000
  if [ "${status:0:1}" != 2 ]; then
    log "$method $url: HTTP $status: $(head -c 300 "$out")"
    rm -f "$out"
    return 1
  fi
  cat "$out"
  rm -f "$out"
}

ready() { # base_url
  api GET "$1/keys?api-version=$API" >/dev/null 2>&1
}

# ---------------------------------------------------------------------------------------------
# start

cmd_start() {
  mkdir -p "$RUN"
  local pid
  if pid="$(pid_of)"; then
    log "lowkey vault already running (pid $pid)"
    cat "$RUN/$NAME.env"
    return 0
  fi
  cmd_install quiet
  stop_server # clears what a server that died left behind
  local t0 port tport java jar tmp major
  t0=$(now_ms)
  jar="$(jar_path)"
  java="$(java_bin "$(java_needed "$LOWKEY_VERSION")" "${LOWKEY_JAVA_HOME:-}" LOWKEY_JAVA_HOME)"
  major="$(java_major "$java")"
  port="${LOWKEY_PORT:-$(free_port)}"
  tport="${LOWKEY_TOKEN_PORT:-$(free_port)}"
  while [ "$tport" = "$port" ]; do tport="$(free_port)"; done
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/fieldcrypt-lowkey-vault.XXXXXX")"
  echo "$tmp" >"$RUN/$NAME.tmpdir"
  # shellcheck disable=SC2206 # word splitting of the option strings is intended
  local jvm_opts=(${LOWKEY_HEAP_OPTS:--Xms64m -Xmx384m} ${LOWKEY_JVM_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1})
  : >"$RUN/$NAME.log"
  # server.address keeps the HTTPS connector on 127.0.0.1; app.token.port moves the plain-HTTP
  # managed-identity token endpoint off its default 8080. Run from the temp dir so anything the
  # app writes next to its working directory is cleaned. setsid: the server outlives this script.
  (cd "$tmp" && exec setsid "$java" "${jvm_opts[@]}" -Djava.io.tmpdir="$tmp" -Dfieldcrypt.server="$NAME" \
    -jar "$jar" --server.address=127.0.0.1 --server.port="$port" --app.token.port="$tport" \
    --LOWKEY_VAULT_NAMES=fieldcrypt >>"$RUN/$NAME.log" 2>&1 </dev/null) &
  pid=$!
  echo "$pid" >"$RUN/$NAME.pid"
  local deadline=$(($(date +%s) + START_TIMEOUT))
  wait_ready "$pid" "$deadline" 0.25 "port $port not open after ${START_TIMEOUT}s" port_open "$port"
  fetch_ca "$jar" "$port" "$java" "$RUN/$NAME-ca.pem" || fail_start "cannot obtain the server's certificate"
  local host base
  host="$(vault_host "$RUN/$NAME-ca.pem")" ||
    fail_start "the certificate names neither 127.0.0.1 nor localhost: $(openssl x509 -in "$RUN/$NAME-ca.pem" -noout -subject -ext subjectAltName 2>&1 | tr '\n' ' ')"
  base="https://$host:$port"
  wait_ready "$pid" "$deadline" 0.25 \
    "$base/keys not answering 200 after ${START_TIMEOUT}s (curl --cacert $RUN/$NAME-ca.pem)" ready "$base"
  local ready_in created kid
  ready_in="$(elapsed "$t0")"
  created="$(api POST "$base/keys/$KEY/create?api-version=$API" \
    '{"kty":"RSA","key_size":2048,"key_ops":["wrapKey","unwrapKey"]}')" || fail_start "cannot create key $KEY"
  kid="$(python3 -c 'import json, sys; print(json.load(sys.stdin)["key"]["kid"])' <<<"$created")" ||
    fail_start "unexpected answer creating key $KEY: ${created:0:300}"
  {
    echo "export FIELDCRYPT_AZURE_KV_ENDPOINT=$base"
    echo "export FIELDCRYPT_AZURE_KV_KEK=azure-kv://$host:$port/keys/$KEY"
    echo "export FIELDCRYPT_AZURE_KV_CA=$RUN/$NAME-ca.pem"
    echo "export FIELDCRYPT_AZURE_KV_TOKEN=$PLACEHOLDER_TOKEN"
    echo "export FIELDCRYPT_AZURE_KV_PID_FILE=$RUN/$NAME.pid"
  } >"$RUN/$NAME.env.tmp"
  mv "$RUN/$NAME.env.tmp" "$RUN/$NAME.env"
  log "lowkey vault ${LOWKEY_VAULT_JAR:+($LOWKEY_VAULT_JAR) }$LOWKEY_VERSION ready on $base (pid $pid, java $major) in $ready_in; key $kid created; total $(elapsed "$t0")"
}

# ---------------------------------------------------------------------------------------------
# stop / status / env

stop_server() {
  local pid tmp
  if pid="$(pid_of)"; then
    stop_pid "$pid" "lowkey vault"
  fi
  if tmp="$(recorded_tmpdir "$RUN/$NAME.tmpdir" fieldcrypt-lowkey-vault)"; then
    rm -rf "$tmp"
  fi
  rm -f "$RUN/$NAME.pid" "$RUN/$NAME.tmpdir" "$RUN/$NAME.env" "$RUN/$NAME-ca.pem"
}

cmd_status() {
  local pid
  if pid="$(pid_of)"; then
    echo "lowkey-vault: running (pid $pid) $(grep FIELDCRYPT_AZURE_KV_ENDPOINT "$RUN/$NAME.env" 2>/dev/null | cut -d' ' -f2)"
  else
    echo "lowkey-vault: stopped"
    echo "install: lowkey-vault-app $LOWKEY_VERSION $(installed && echo installed || echo missing) ($(jar_path))"
    return 3
  fi
}

cmd_env() {
  pid_of >/dev/null && [ -s "$RUN/$NAME.env" ] || die "lowkey vault is not running (run: $0 start)"
  cat "$RUN/$NAME.env"
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) [ -d "$RUN" ] && stop_server || true ;;
  status) cmd_status ;;
  env) cmd_env ;;
  -h | --help | help) usage_exit 13 0 ;;
  *) usage_exit 13 ;;
esac
