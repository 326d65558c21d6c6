#!/usr/bin/env bash
# Real servers for fieldcrypt's integration tests, all on 127.0.0.1, no Docker:
#   Apache Kafka 4.x (single-node KRaft broker+controller) and Apicurio Registry 3.3.x
#   (Confluent-compatible API at /apis/ccompat/v7, in-memory storage).
#
#   scripts/servers.sh install                  fetch both into the cache (once; a second run does nothing)
#   scripts/servers.sh start kafka|apicurio|all start (installs first if needed), wait until ready
#   scripts/servers.sh stop [kafka|apicurio|all]
#   scripts/servers.sh status                   exit status 3 when a server is not running
#   scripts/servers.sh env                      prints `export FIELDCRYPT_KAFKA=... FIELDCRYPT_REGISTRY=...`
#
#   eval "$(scripts/servers.sh env)"            # then run the integration tests
#
# Environment (all optional):
#   FIELDCRYPT_CACHE        install dir            (default $HOME/.cache/fieldcrypt)
#   FIELDCRYPT_RUN          pid, log and env files (default /tmp/fieldcrypt-servers)
#   KAFKA_VERSION           default 4.4.0 (any 4.x on Maven Central)
#   APICURIO_VERSION        default 3.3.3
#   KAFKA_PORT, KAFKA_CONTROLLER_PORT, APICURIO_PORT, APICURIO_MANAGEMENT_PORT
#                           fixed ports (default: free ports picked at start)
#   KAFKA_HEAP_OPTS         default -Xms256m -Xmx512m
#   APICURIO_HEAP_OPTS      default -Xms128m -Xmx512m
#   KAFKA_JVM_OPTS, APICURIO_JVM_OPTS
#                           default -XX:+UseSerialGC -XX:TieredStopAtLevel=1: C1 only, which
#                           starts the servers in about 60% of the time on 2 cores and leaves the
#                           CPU to the tests; for broker throughput runs use -XX:+UseG1GC instead
#   FIELDCRYPT_CDS          1 (default): keep a class-data-sharing archive per server and Java
#                           build in the cache (made by the first run, at its stop; -25% start)
#   KAFKA_JAVA_HOME         Java for Kafka (>= 17); default: the oldest suitable JDK found
#   APICURIO_JAVA_HOME      Java for Apicurio 3.3 (>= 21: its classes are Java 21 bytecode)
#                           JDKs are looked for in $JAVA_HOME, /usr/lib/jvm/*, then `java` on PATH
#   START_TIMEOUT           seconds to wait for a server to be ready (default 120)
#   STOP_TIMEOUT            seconds between TERM and KILL (default 20)
#
# The run dir's `env` file holds plain KEY=VALUE lines (FIELDCRYPT_KAFKA=127.0.0.1:PORT,
# FIELDCRYPT_REGISTRY=http://127.0.0.1:PORT/apis/ccompat/v7) for tools that read dotenv files.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOG_NAME=servers
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
APICURIO_VERSION="${APICURIO_VERSION:-3.3.3}"
KAFKA_HOME="$CACHE/kafka-$KAFKA_VERSION"
APICURIO_HOME="$CACHE/apicurio-registry-$APICURIO_VERSION"
M2_REPO="$CACHE/m2"
DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
START_TIMEOUT="${START_TIMEOUT:-120}"
STOP_TIMEOUT="${STOP_TIMEOUT:-20}"

# The exact runtime version of a Java (17.0.15+6-Debian-1deb12u1), for naming CDS archives.
java_build() {
  local home v
  home="$(dirname "$(dirname "$(readlink -f "$1")")")"
  v="$(sed -n 's/^JAVA_RUNTIME_VERSION="\(.*\)"/\1/p' "$home/release" 2>/dev/null)"
  [ -n "$v" ] || v="$("$1" -version 2>&1 | head -n 2 | tr -d '\n')"
  printf '%s' "$v" | tr -c 'A-Za-z0-9._+-' '_'
}

mvn_() {
  command -v mvn >/dev/null 2>&1 || die "mvn not found (apt-get install maven)"
  # Maven 3.8 in quiet batch mode still prints colour resets on empty lines: drop them.
  mvn -B -q -ntp -Dstyle.color=never -Dmaven.repo.local="$M2_REPO" "$@" 2>&1 |
    { sed -e 's/\x1b\[[0-9;]*m//g' | grep -v '^[[:space:]]*$' >&2 || true; }
}

# ---------------------------------------------------------------------------------------------
# install

install_kafka() { # [quiet]
  if [ -f "$KAFKA_HOME/.complete" ]; then
    [ -n "${1:-}" ] || log "kafka $KAFKA_VERSION already installed in $KAFKA_HOME"
    return 0
  fi
  local t0 stage
  t0=$(now_ms)
  log "installing kafka $KAFKA_VERSION into $KAFKA_HOME (Maven Central)"
  mkdir -p "$CACHE"
  stage="$(mktemp -d "$CACHE/.kafka-$KAFKA_VERSION.XXXXXX")"
  if ! mvn_ -f "$here/servers/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    "$DEP_PLUGIN:copy-dependencies" -DincludeScope=runtime -DoutputDirectory="$stage/libs"; then
    rm -rf "$stage"
    die "could not fetch kafka $KAFKA_VERSION"
  fi
  [ -f "$stage/libs/kafka_2.13-$KAFKA_VERSION.jar" ] || { rm -rf "$stage"; die "kafka jar missing"; }
  touch "$stage/.complete"
  rm -rf "$KAFKA_HOME"
  mv "$stage" "$KAFKA_HOME"
  log "kafka $KAFKA_VERSION installed ($(find "$KAFKA_HOME/libs" -name '*.jar' | wc -l) jars) in $(elapsed "$t0")"
}

install_apicurio() { # [quiet]
  if [ -f "$APICURIO_HOME/.complete" ]; then
    [ -n "${1:-}" ] || log "apicurio registry $APICURIO_VERSION already installed in $APICURIO_HOME"
    return 0
  fi
  local t0 stage jar
  t0=$(now_ms)
  log "installing apicurio registry $APICURIO_VERSION into $APICURIO_HOME (Maven Central)"
  mkdir -p "$CACHE"
  stage="$(mktemp -d "$CACHE/.apicurio-$APICURIO_VERSION.XXXXXX")"
  if ! mvn_ -f "$here/servers/pom.xml" "$DEP_PLUGIN:copy" \
    -Dartifact="io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all" -DoutputDirectory="$stage/dl"; then
    rm -rf "$stage"
    die "could not fetch apicurio registry $APICURIO_VERSION"
  fi
  mkdir -p "$stage/app"
  tar -xzf "$stage/dl/apicurio-registry-app-$APICURIO_VERSION-all.tar.gz" -C "$stage/app"
  rm -rf "$stage/dl"
  # The 150 MB archive is unpacked now: no need to keep a second copy in the Maven repository.
  rm -rf "$M2_REPO/io/apicurio/apicurio-registry-app/$APICURIO_VERSION"
  # The archive holds a quarkus-app/ layout, possibly under a top-level directory: find it.
  jar="$(find "$stage/app" -name quarkus-run.jar -print -quit)"
  [ -n "$jar" ] || { rm -rf "$stage"; die "quarkus-run.jar not found in the apicurio archive"; }
  echo "${jar#"$stage/"}" >"$stage/.runjar"
  touch "$stage/.complete"
  rm -rf "$APICURIO_HOME"
  mv "$stage" "$APICURIO_HOME"
  log "apicurio registry $APICURIO_VERSION installed in $(elapsed "$t0")"
}

cmd_install() {
  local t0
  t0=$(now_ms)
  install_kafka
  install_apicurio
  log "install done in $(elapsed "$t0")"
}

# ---------------------------------------------------------------------------------------------
# process helpers

# What the command line of each server contains: a pid file whose process does not match (the
# server died and the pid was reused) is stale, and nothing is signalled.
marker_of() {
  case "$1" in
    kafka) echo "kafka.Kafka" ;;
    apicurio) echo "quarkus-run.jar" ;;
  esac
}

# Class-data sharing: the first start of a server with a given Java writes an archive of the
# classes it loaded when it stops (-XX:ArchiveClassesAtExit, into its temp dir; `stop` moves it
# into the cache); later starts map it (-XX:SharedArchiveFile). The name holds the exact Java
# build and the cache dir the server version, so an archive never meets another JVM or classpath.
cds_opts() { # name java home tmp -> prints JVM options, one per line
  [ "${FIELDCRYPT_CDS:-1}" = 1 ] || return 0
  local archive
  archive="$3/cds-$1-java$(java_build "$2").jsa"
  echo "$archive" >"$RUN/$1.cds"
  if [ -s "$archive" ]; then
    echo "-XX:SharedArchiveFile=$archive"
  else
    echo "-XX:ArchiveClassesAtExit=$4/cds.jsa"
  fi
  echo "-Xlog:cds=off"
  echo "-Xlog:cds+dynamic=off"
}

pid_of() { pid_in_file "$RUN/$1.pid" "$(marker_of "$1")"; } # name -> pid if that server is alive

write_env() { # regenerates $RUN/env from the per-server fragments of running servers
  local tmp="$RUN/env.tmp.$BASHPID" name
  : >"$tmp"
  for name in kafka apicurio; do
    if pid_of "$name" >/dev/null && [ -f "$RUN/$name.env" ]; then
      cat "$RUN/$name.env" >>"$tmp"
    fi
  done
  mv "$tmp" "$RUN/env"
}

# Kafka readiness without starting another JVM: a Metadata v4 request over TCP must list at
# least one broker (the broker only serves requests once it has caught up and is unfenced).
kafka_ready() { # port
  python3 - "$1" <<'PY'
import socket, struct, sys
port = int(sys.argv[1])
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.settimeout(3)
    client = b"fieldcrypt-servers"
    # request header v1: api_key=3 (Metadata), api_version=4, correlation_id, client_id
    # body v4: topics = null (-1), allow_auto_topic_creation = false
    body = struct.pack(">hhih", 3, 4, 42, len(client)) + client + struct.pack(">ib", -1, 0)
    s.sendall(struct.pack(">i", len(body)) + body)
    def read(n):
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf
    (size,) = struct.unpack(">i", read(4))
    resp = read(size)
    corr, _throttle, brokers = struct.unpack(">iii", resp[:12])
    sys.exit(0 if corr == 42 and brokers >= 1 else 1)
except Exception:
    sys.exit(1)
PY
}

# ---------------------------------------------------------------------------------------------
# start

start_kafka() {
  local pid
  NAME=kafka # for fail_start
  if pid="$(pid_of kafka)"; then
    log "kafka already running (pid $pid): $(cat "$RUN/kafka.env")"
    return 0
  fi
  install_kafka quiet
  stop_server kafka # clears what a server that died left behind (temp dir, pid file)
  local t0 port cport tmp java cluster_id
  t0=$(now_ms)
  java="$(java_bin 17 "${KAFKA_JAVA_HOME:-}" KAFKA_JAVA_HOME)"
  port="${KAFKA_PORT:-$(free_port)}"
  cport="${KAFKA_CONTROLLER_PORT:-$(free_port)}"
  while [ "$cport" = "$port" ]; do cport="$(free_port)"; done
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/fieldcrypt-kafka.XXXXXX")"
  echo "$tmp" >"$RUN/kafka.tmpdir"
  cat >"$tmp/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$tmp/data
num.partitions=1
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=1
EOF
  cat >"$tmp/log4j2.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="out" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c{1})%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="INFO"/>
    <Logger name="org.apache.kafka" level="INFO"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Root level="INFO"><AppenderRef ref="out"/></Root>
  </Loggers>
</Configuration>
EOF
  local common=(-Djava.awt.headless=true -Dlog4j2.configurationFile="$tmp/log4j2.xml"
    -Dkafka.logs.dir="$tmp/logs" -cp "$KAFKA_HOME/libs/*")
  # shellcheck disable=SC2206 # word splitting of the option strings is intended
  local jvm_opts=(${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} ${KAFKA_JVM_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1})
  mapfile -t -O "${#jvm_opts[@]}" jvm_opts < <(cds_opts kafka "$java" "$KAFKA_HOME" "$tmp")
  # The one-shot format tool: small heap, C1 only (it runs for a second).
  local tool_opts=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1)
  : >"$RUN/kafka.log"
  # What `StorageTool random-uuid` prints (base64url of 16 random bytes, no leading '-'), without
  # paying for a second JVM start.
  cluster_id="$(python3 -c 'import base64, os
while True:
    u = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if not u.startswith("-"):
        print(u)
        break')"
  if ! "$java" "${tool_opts[@]}" "${common[@]}" kafka.tools.StorageTool format -t "$cluster_id" \
    -c "$tmp/server.properties" >>"$RUN/kafka.log" 2>&1; then
    fail_start "StorageTool format failed"
  fi
  log "kafka storage formatted in $(elapsed "$t0") (cluster $cluster_id)"
  # setsid: the server outlives this script and a Ctrl-C in the caller's terminal.
  setsid "$java" "${jvm_opts[@]}" "${common[@]}" kafka.Kafka "$tmp/server.properties" >>"$RUN/kafka.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$RUN/kafka.pid"
  echo "FIELDCRYPT_KAFKA=127.0.0.1:$port" >"$RUN/kafka.env"
  wait_ready "$pid" $(($(date +%s) + START_TIMEOUT)) 0.25 "not ready after ${START_TIMEOUT}s" kafka_ready "$port"
  write_env
  log "kafka $KAFKA_VERSION ready on 127.0.0.1:$port (controller $cport, pid $pid) in $(elapsed "$t0")"
}

apicurio_ready() { http_ok "http://127.0.0.1:$1/apis/ccompat/v7/subjects"; } # port

start_apicurio() {
  local pid
  NAME=apicurio # for fail_start
  if pid="$(pid_of apicurio)"; then
    log "apicurio already running (pid $pid): $(cat "$RUN/apicurio.env")"
    return 0
  fi
  install_apicurio quiet
  stop_server apicurio # clears what a server that died left behind (temp dir, pid file)
  local t0 port mport tmp java runjar major
  t0=$(now_ms)
  java="$(java_bin 21 "${APICURIO_JAVA_HOME:-}" APICURIO_JAVA_HOME)"
  port="${APICURIO_PORT:-$(free_port)}"
  mport="${APICURIO_MANAGEMENT_PORT:-$(free_port)}"
  while [ "$mport" = "$port" ]; do mport="$(free_port)"; done
  runjar="$APICURIO_HOME/$(cat "$APICURIO_HOME/.runjar")"
  major="$(java_major "$java")"
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/fieldcrypt-apicurio.XXXXXX")"
  echo "$tmp" >"$RUN/apicurio.tmpdir"
  # shellcheck disable=SC2206 # word splitting of the option strings is intended
  local jvm_opts=(${APICURIO_HEAP_OPTS:--Xms128m -Xmx512m} ${APICURIO_JVM_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1})
  mapfile -t -O "${#jvm_opts[@]}" jvm_opts < <(cds_opts apicurio "$java" "$APICURIO_HOME" "$tmp")
  : >"$RUN/apicurio.log"
  # Run from the temp dir so anything the app writes next to its working directory is cleaned.
  # Quarkus' management interface (health, metrics) listens on 0.0.0.0:9000 unless told
  # otherwise: keep it on 127.0.0.1 and on a free port, so two registries can run side by side.
  (cd "$tmp" && exec setsid "$java" "${jvm_opts[@]}" -Djava.io.tmpdir="$tmp" \
    -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$port" \
    -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port="$mport" \
    -jar "$runjar" >>"$RUN/apicurio.log" 2>&1 </dev/null) &
  pid=$!
  echo "$pid" >"$RUN/apicurio.pid"
  echo "FIELDCRYPT_REGISTRY=http://127.0.0.1:$port/apis/ccompat/v7" >"$RUN/apicurio.env"
  wait_ready "$pid" $(($(date +%s) + START_TIMEOUT)) 0.25 "not ready after ${START_TIMEOUT}s" apicurio_ready "$port"
  write_env
  log "apicurio registry $APICURIO_VERSION ready on http://127.0.0.1:$port (management $mport, pid $pid, java $major) in $(elapsed "$t0")"
}

cmd_start() {
  local what="${1:-all}" t0
  mkdir -p "$RUN"
  t0=$(now_ms)
  case "$what" in
    kafka) start_kafka ;;
    apicurio | registry) start_apicurio ;;
    all)
      install_kafka quiet
      install_apicurio quiet
      # Side by side: each JVM spends much of its start waiting on itself, not on the CPU.
      local kafka_job apicurio_job rc=0
      (start_kafka) &
      kafka_job=$!
      (start_apicurio) &
      apicurio_job=$!
      wait "$kafka_job" || rc=1
      wait "$apicurio_job" || rc=1
      write_env
      [ "$rc" = 0 ] || die "start all: a server failed to start (see above; running: $(tr '\n' ' ' <"$RUN/env"))"
      ;;
    *) die "start: unknown server '$what' (kafka|apicurio|all)" ;;
  esac
  log "start $what: total $(elapsed "$t0")"
  cat "$RUN/env"
}

# ---------------------------------------------------------------------------------------------
# stop / status / env

stop_server() { # name
  local name=$1 pid tmp
  if pid="$(pid_of "$name")"; then
    stop_pid "$pid" "$name"
  fi
  if tmp="$(recorded_tmpdir "$RUN/$name.tmpdir" "fieldcrypt-$name")"; then
    # A class-data archive the server wrote as it exited goes to the cache (copy, then an
    # atomic rename: a concurrent start never maps a half-written file).
    if [ -s "$tmp/cds.jsa" ] && [ -f "$RUN/$name.cds" ]; then
      local archive
      archive="$(cat "$RUN/$name.cds")"
      if [ ! -s "$archive" ] && cp "$tmp/cds.jsa" "$archive.tmp.$$" 2>/dev/null; then
        mv -f "$archive.tmp.$$" "$archive" && log "$name: class-data archive saved to $archive"
      fi
      rm -f "$archive.tmp.$$"
    fi
    rm -rf "$tmp"
  fi
  rm -f "$RUN/$name.pid" "$RUN/$name.tmpdir" "$RUN/$name.env" "$RUN/$name.cds"
}

cmd_stop() {
  local what="${1:-all}"
  [ -d "$RUN" ] || return 0
  case "$what" in
    kafka) stop_server kafka ;;
    apicurio | registry) stop_server apicurio ;;
    all)
      stop_server apicurio
      stop_server kafka
      ;;
    *) die "stop: unknown server '$what' (kafka|apicurio|all)" ;;
  esac
  write_env
}

cmd_status() {
  local name pid rc=0
  for name in kafka apicurio; do
    if pid="$(pid_of "$name")"; then
      echo "$name: running (pid $pid) $(cat "$RUN/$name.env" 2>/dev/null)"
    else
      echo "$name: stopped"
      rc=3
    fi
  done
  echo "install: kafka $KAFKA_VERSION $([ -f "$KAFKA_HOME/.complete" ] && echo installed || echo missing)," \
    "apicurio $APICURIO_VERSION $([ -f "$APICURIO_HOME/.complete" ] && echo installed || echo missing) ($CACHE)"
  return $rc
}

cmd_env() {
  [ -s "$RUN/env" ] || die "no server is running (run: $0 start all)"
  local line
  while IFS= read -r line; do
    if [ -n "$line" ]; then echo "export $line"; fi
  done <"$RUN/env"
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start "${2:-all}" ;;
  stop) cmd_stop "${2:-all}" ;;
  status) cmd_status ;;
  env) cmd_env ;;
  -h | --help | help) usage_exit 12 0 ;;
  *) usage_exit 12 ;;
esac
