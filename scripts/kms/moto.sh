#!/usr/bin/env bash
# moto server (AWS KMS, STS and IAM API) on 127.0.0.1 for fieldcrypt's AWS KMS tests, no Docker.
#
#   scripts/kms/moto.sh install        pip install 'moto[server]' into $CACHE/venv-moto (once)
#   scripts/kms/moto.sh start          start on a free port, create users, a role, keys and an
#                                      alias, switch IAM authentication on, write $RUN/moto.env
#   scripts/kms/moto.sh stop           TERM, then KILL after STOP_TIMEOUT
#   scripts/kms/moto.sh status         exit status 3 when not running
#   scripts/kms/moto.sh env            prints the `export FIELDCRYPT_AWS_...=...` lines
#   scripts/kms/moto.sh admin OP ARGS  what the tests do as an administrator (boto3, admin keys):
#       create-key [REGION]            prints a new symmetric key's ARN
#       rotate KEY_ARN                 RotateKeyOnDemand
#       alias ALIAS_ARN KEY_ARN        points the alias at the key (created if missing)
#       create-user NAME ACTIONS       IAM user allowed ACTIONS (comma-separated, e.g.
#                                      kms:Encrypt,kms:Decrypt) on every key; prints
#                                      "ACCESS_KEY_ID SECRET_ACCESS_KEY"
#       revoke NAME                    deletes that user's KMS policy (its keys stay valid)
#       disable-key KEY_ARN            DisableKey (note: moto 5 still encrypts and decrypts with
#                                      disabled keys; local-kms does not)
#
#   eval "$(scripts/kms/moto.sh env)"  # then: cargo test -p fieldcrypt-it --test kms_aws
#
# moto checks nothing by default. This script turns on its IAM enforcement once the setup is
# done (POST /moto-api/reset-auth 0): from then on every request must carry a valid SigV4
# signature from a known access key, and the key's IAM policy must allow the action. AWS serves
# STS AssumeRoleWithWebIdentity unsigned (the token is the credential), which moto's check does
# not allow for: the launcher below lets exactly that action through unsigned.
#
# Environment (all optional):
#   FIELDCRYPT_CACHE   install dir            (default $HOME/.cache/fieldcrypt)
#   FIELDCRYPT_RUN     pid, log and env files (default /tmp/fieldcrypt-servers)
#   MOTO_VERSION       default 5.2.5
#   MOTO_PORT          fixed port (default: a free port)
#   START_TIMEOUT      seconds to wait for the server (default 60)
#   STOP_TIMEOUT       seconds between TERM and KILL (default 10)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOG_NAME=moto
# shellcheck source-path=SCRIPTDIR/.. source=lib.sh
. "$here/../lib.sh"
MOTO_VERSION="${MOTO_VERSION:-5.2.5}"
VENV="$CACHE/venv-moto"
PY="$VENV/bin/python"
START_TIMEOUT="${START_TIMEOUT:-60}"
STOP_TIMEOUT="${STOP_TIMEOUT:-10}"
NAME=moto

# ---------------------------------------------------------------------------------------------
# install

cmd_install() { # [quiet]
  local marker="$VENV/.complete-moto-$MOTO_VERSION"
  if [ -f "$marker" ]; then
    [ -n "${1:-}" ] || log "moto $MOTO_VERSION already installed in $VENV"
    return 0
  fi
  local t0
  t0=$(now_ms)
  command -v python3 >/dev/null 2>&1 || die "python3 not found"
  log "installing moto[server] $MOTO_VERSION into $VENV (PyPI)"
  mkdir -p "$CACHE"
  [ -x "$PY" ] || python3 -m venv "$VENV" || die "cannot create the venv $VENV"
  "$PY" -m pip install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION" boto3 >&2 ||
    die "pip install moto[server]==$MOTO_VERSION failed"
  "$PY" -c 'import moto.server, boto3' || die "moto does not import after install"
  rm -f "$VENV"/.complete-moto-*
  touch "$marker"
  log "moto $MOTO_VERSION installed in $(elapsed "$t0")"
}

# ---------------------------------------------------------------------------------------------
# process helpers

pid_of() { pid_in_file "$RUN/$NAME.pid" fieldcrypt-moto-server.py; } # -> pid if our moto is alive

ready() { http_ok "http://127.0.0.1:$1/moto-api/data.json"; } # port

# The launcher: moto's own server, with unsigned STS web-identity calls let through while IAM
# authentication is on (AWS does not sign them either). Nothing else is changed.
write_launcher() {
  cat >"$RUN/fieldcrypt-moto-server.py" <<'PY'
import sys

from moto.core.authorization import ActionAuthenticatorMixin

_check = ActionAuthenticatorMixin._authenticate_and_authorize_action
UNSIGNED_STS = ("AssumeRoleWithWebIdentity", "AssumeRoleWithSAML")


def _authenticate(self, iam_request_cls, resource="*"):
    if "Authorization" not in self.headers and self._get_action() in UNSIGNED_STS:
        return None
    return _check(self, iam_request_cls, resource)


ActionAuthenticatorMixin._authenticate_and_authorize_action = _authenticate

from moto.server import main  # noqa: E402

sys.exit(main())
PY
}

# Creates what the tests use while authentication is still off; prints env lines.
setup() { # endpoint
  "$PY" - "$1" <<'PY'
import json
import sys

import boto3

endpoint = sys.argv[1]
kw = dict(endpoint_url=endpoint, aws_access_key_id="AKIASETUPSETUPSETUP0", aws_secret_access_key="setup")
iam = boto3.client("iam", region_name="us-east-1", **kw)


def user(name, actions):
    iam.create_user(UserName=name)
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
    iam.put_user_policy(UserName=name, PolicyName="fieldcrypt-kms", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


admin = user("fieldcrypt-admin", "*")
app = user("fieldcrypt-app", ["kms:Encrypt", "kms:Decrypt"])
trust = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Federated": "fieldcrypt-it"},
                   "Action": "sts:AssumeRoleWithWebIdentity"}],
}
role = iam.create_role(RoleName="fieldcrypt-web", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
kms_policy = {"Version": "2012-10-17",
              "Statement": [{"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"}]}
iam.put_role_policy(RoleName="fieldcrypt-web", PolicyName="fieldcrypt-kms", PolicyDocument=json.dumps(kms_policy))

kms = boto3.client("kms", region_name="us-east-1", **kw)
key = kms.create_key(Description="fieldcrypt-it")["KeyMetadata"]["Arn"]
kms.create_alias(AliasName="alias/fieldcrypt-it", TargetKeyId=key)
alias = key.split(":key/")[0] + ":alias/fieldcrypt-it"
eu = boto3.client("kms", region_name="eu-west-1", **kw).create_key(Description="fieldcrypt-it eu")["KeyMetadata"]["Arn"]

out = {
    "FIELDCRYPT_AWS_ENDPOINT": endpoint,
    "FIELDCRYPT_AWS_KEY_ARN": key,
    "FIELDCRYPT_AWS_ALIAS_ARN": alias,
    "FIELDCRYPT_AWS_EU_KEY_ARN": eu,
    "FIELDCRYPT_AWS_ACCESS_KEY_ID": app[0],
    "FIELDCRYPT_AWS_SECRET_ACCESS_KEY": app[1],
    "FIELDCRYPT_AWS_ADMIN_ACCESS_KEY_ID": admin[0],
    "FIELDCRYPT_AWS_ADMIN_SECRET_ACCESS_KEY": admin[1],
    "FIELDCRYPT_AWS_WEB_ROLE_ARN": role,
}
for k, v in out.items():
    print(f"export {k}={v}")
PY
}

enable_auth() { # port
  local answer
  answer="$(curl -s -m 5 -X POST -H 'Content-Type: text/plain' --data-binary 0 "http://127.0.0.1:$1/moto-api/reset-auth")"
  case "$answer" in
    *'"status": "ok"'*) ;;
    *) fail_start "could not switch IAM authentication on: $answer" ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# start / stop / status / env

cmd_start() {
  local pid
  mkdir -p "$RUN"
  if pid="$(pid_of)"; then
    log "moto already running (pid $pid)"
    cat "$RUN/$NAME.env"
    return 0
  fi
  cmd_install quiet
  stop_server
  local t0 port env_tmp
  t0=$(now_ms)
  port="${MOTO_PORT:-$(free_port)}"
  write_launcher
  : >"$RUN/$NAME.log"
  # No AWS variables of the caller's reach the server; setsid: it outlives this script.
  (cd "$RUN" && exec env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE \
    setsid "$PY" "$RUN/fieldcrypt-moto-server.py" -H 127.0.0.1 -p "$port" >>"$RUN/$NAME.log" 2>&1 </dev/null) &
  pid=$!
  echo "$pid" >"$RUN/$NAME.pid"
  wait_ready "$pid" $(($(date +%s) + START_TIMEOUT)) 0.2 "not ready after ${START_TIMEOUT}s" ready "$port"
  log "moto $MOTO_VERSION up on 127.0.0.1:$port (pid $pid) in $(elapsed "$t0"); setting up"
  env_tmp="$RUN/$NAME.env.tmp.$$"
  setup "http://127.0.0.1:$port" >"$env_tmp" || { rm -f "$env_tmp"; fail_start "setup failed"; }
  echo "export FIELDCRYPT_AWS_MOTO_PID_FILE=$RUN/$NAME.pid" >>"$env_tmp"
  enable_auth "$port"
  chmod 600 "$env_tmp"
  mv "$env_tmp" "$RUN/$NAME.env"
  log "moto ready with IAM authentication on, in $(elapsed "$t0")"
  cat "$RUN/$NAME.env"
}

stop_server() {
  local pid
  if pid="$(pid_of)"; then
    stop_pid "$pid" moto
  fi
  rm -f "$RUN/$NAME.pid" "$RUN/$NAME.env"
}

cmd_status() {
  local pid
  if pid="$(pid_of)"; then
    log "moto running (pid $pid)"
  else
    log "moto not running"
    exit 3
  fi
}

cmd_env() {
  if [ ! -f "$RUN/$NAME.env" ] || ! pid_of >/dev/null; then die "moto is not running: scripts/kms/moto.sh start"; fi
  cat "$RUN/$NAME.env"
}

# ---------------------------------------------------------------------------------------------
# admin operations for the tests

cmd_admin() {
  if [ ! -f "$RUN/$NAME.env" ] || ! pid_of >/dev/null; then die "moto is not running: scripts/kms/moto.sh start"; fi
  # shellcheck disable=SC1090
  . "$RUN/$NAME.env"
  "$PY" - "$@" <<'PY'
import json
import os
import sys

import boto3

endpoint = os.environ["FIELDCRYPT_AWS_ENDPOINT"]
kw = dict(endpoint_url=endpoint,
          aws_access_key_id=os.environ["FIELDCRYPT_AWS_ADMIN_ACCESS_KEY_ID"],
          aws_secret_access_key=os.environ["FIELDCRYPT_AWS_ADMIN_SECRET_ACCESS_KEY"])


def kms(region="us-east-1"):
    return boto3.client("kms", region_name=region, **kw)


def region_of(arn):
    return arn.split(":")[3]


op, args = sys.argv[1], sys.argv[2:]
if op == "create-key":
    print(kms(args[0] if args else "us-east-1").create_key(Description="fieldcrypt-it")["KeyMetadata"]["Arn"])
elif op == "rotate":
    kms(region_of(args[0])).rotate_key_on_demand(KeyId=args[0])
elif op == "alias":
    alias_arn, key_arn = args
    name = "alias/" + alias_arn.split(":alias/", 1)[1]
    client = kms(region_of(alias_arn))
    existing = [a["AliasName"] for a in client.list_aliases()["Aliases"]]
    if name in existing:
        client.update_alias(AliasName=name, TargetKeyId=key_arn)
    else:
        client.create_alias(AliasName=name, TargetKeyId=key_arn)
elif op == "create-user":
    name, actions = args
    iam = boto3.client("iam", region_name="us-east-1", **kw)
    iam.create_user(UserName=name)
    policy = {"Version": "2012-10-17",
              "Statement": [{"Effect": "Allow", "Action": actions.split(","), "Resource": "*"}]}
    iam.put_user_policy(UserName=name, PolicyName="fieldcrypt-kms", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    print(key["AccessKeyId"], key["SecretAccessKey"])
elif op == "revoke":
    boto3.client("iam", region_name="us-east-1", **kw).delete_user_policy(UserName=args[0], PolicyName="fieldcrypt-kms")
elif op == "disable-key":
    kms(region_of(args[0])).disable_key(KeyId=args[0])
else:
    sys.exit(f"moto admin: unknown operation {op!r}")
PY
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) stop_server ;;
  status) cmd_status ;;
  env) cmd_env ;;
  admin)
    shift
    [ $# -ge 1 ] || die "admin: an operation is required (see the header of $0)"
    cmd_admin "$@"
    ;;
  *) die "usage: $0 install|start|stop|status|env|admin OP ARGS (see the header of $here/moto.sh)" ;;
esac
