#!/usr/bin/env bash
# Local real stack for tests and the demo: etcd, kube-apiserver, Apache Kafka (KRaft),
# Consul (dev agent) and PostgreSQL, all on 127.0.0.1.
#
#   hack/stack.sh build    build or fetch every server into the cache (skips what is cached)
#   hack/stack.sh up       build, then start every server and write the env file
#   hack/stack.sh down     stop every server by its recorded PID and remove the run directory
#   hack/stack.sh env      print the env file (source it: eval "$(hack/stack.sh env)")
#   hack/stack.sh status   show which servers run and their ports
#   hack/stack.sh restart NAME   stop and start one server (kafka, consul, postgres) on the same port
#   hack/stack.sh stop NAME      stop one server, keeping its data and port
#   hack/stack.sh start NAME     start a server stopped by `stop`
#
# Cache:   $REGISTRY_OPERATOR_CACHE (default ~/.cache/registry-operator)/stack
# Runtime: $REGISTRY_OPERATOR_STACK_DIR (default /tmp/registry-operator-stack)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE="${REGISTRY_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/registry-operator}/stack"
BIN="$CACHE/bin"
RUN_DIR="${REGISTRY_OPERATOR_STACK_DIR:-${TMPDIR:-/tmp}/registry-operator-stack}"
ENV_FILE="$RUN_DIR/env"
SERVERS=(etcd kube-apiserver kafka consul postgres)

# shellcheck source=hack/stack-build.sh
source "$ROOT/hack/stack-build.sh"

log() { printf '[stack] %s\n' "$*" >&2; }

# Reports a failed step with the component, the command and its log, then exits.
fail() {
  local component="$1" command="$2" logfile="$3"
  log "FAILED: $component: '$command' (log: $logfile)"
  [[ -f "$logfile" ]] && tail -n 25 "$logfile" | sed 's/^/    /' >&2
  exit 1
}

# Runs build_NAME unless NAME_built finds it in the cache, and prints how long it took.
timed_build() {
  local name="$1"
  if "${name}_built"; then
    log "$name: cached"
    return 0
  fi
  mkdir -p "$CACHE/logs"
  local logfile="$CACHE/logs/build-$name.log" started=$SECONDS
  log "$name: building (log: $logfile)"
  ( go_env; set -euo pipefail; "build_$name" ) >"$logfile" 2>&1 || fail "$name" "build_$name in hack/stack-build.sh" "$logfile"
  log "$name: built in $((SECONDS - started))s"
}

cmd_build() {
  mkdir -p "$BIN"
  timed_build debian
  timed_build kafka
  timed_build etcd
  timed_build consul
  timed_build kube
  if [[ "${STACK_WITH_HELM:-1}" == 1 ]]; then timed_build helm; fi
}

# Prints a TCP port on 127.0.0.1 that no socket uses and that this run has not handed out.
# Ports come from below the kernel's ephemeral range, so that outgoing connections (the
# tests make thousands) cannot take a port between this choice and the server's start.
declare -A TAKEN_PORTS=()
EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
PORT_BASE=10000
PORT_SPAN=$((EPHEMERAL_LOW > PORT_BASE + 1000 ? EPHEMERAL_LOW - PORT_BASE : 20000))
free_port() {
  local port
  while true; do
    port=$((PORT_BASE + RANDOM % PORT_SPAN))
    [[ -n "${TAKEN_PORTS[$port]:-}" ]] && continue
    if [[ -z "$(ss -Htan "sport = :$port" 2>/dev/null)" ]]; then
      TAKEN_PORTS[$port]=1
      echo "$port"
      return 0
    fi
  done
}

# Waits up to $2 seconds for command "$3..." to succeed; fails naming component $1.
wait_ready() {
  local component="$1" timeout="$2"
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ! pid_alive "$component"; then
      fail "$component" "start" "$RUN_DIR/logs/$component.log"
    fi
    if ((SECONDS >= deadline)); then
      fail "$component" "readiness check: $* (timed out after ${timeout}s)" "$RUN_DIR/logs/$component.log"
    fi
    sleep 0.3
  done
}

pid_file() { echo "$RUN_DIR/pids/$1.pid"; }
pid_alive() {
  local file
  file=$(pid_file "$1")
  [[ -f "$file" ]] && kill -0 "$(cat "$file")" 2>/dev/null
}

# Starts "$2..." in its own session with output in the component's log and records its PID.
spawn() {
  local component="$1"
  shift
  mkdir -p "$RUN_DIR/logs" "$RUN_DIR/pids"
  setsid "$@" >>"$RUN_DIR/logs/$component.log" 2>&1 </dev/null &
  echo $! >"$(pid_file "$component")"
}

as_postgres_user() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# ---- certificates ---------------------------------------------------------------------

make_certs() {
  local dir="$RUN_DIR/pki"
  mkdir -p "$dir"
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 \
      -subj "/CN=registry-operator-stack-ca" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
      -subj "/CN=kube-apiserver" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr \
      -subj "/O=system:masters/CN=admin" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >admin.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -extfile admin.ext -out admin.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
}

write_kubeconfig() {
  local port="$1" pki="$RUN_DIR/pki"
  cat >"$RUN_DIR/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: stack
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 <"$pki/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(base64 -w0 <"$pki/admin.crt")
    client-key-data: $(base64 -w0 <"$pki/admin.key")
contexts:
- name: stack
  context:
    cluster: stack
    user: admin
    namespace: default
current-context: stack
KUBECONFIG
  chmod 600 "$RUN_DIR/kubeconfig"
}

# ---- servers --------------------------------------------------------------------------

start_etcd() {
  spawn etcd "$BIN/etcd" --name stack --data-dir "$RUN_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "stack=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --log-level warn
  wait_ready etcd 30 sh -c "curl -fsS http://127.0.0.1:$ETCD_PORT/health | grep -q '\"health\":\"true\"'"
}

start_kube_apiserver() {
  local pki="$RUN_DIR/pki"
  spawn kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$KUBE_PORT" \
    --cert-dir "$RUN_DIR/kube-apiserver" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 \
    --authorization-mode RBAC \
    --disable-admission-plugins ServiceAccount \
    --allow-privileged=true \
    --endpoint-reconciler-type none
  wait_ready kube-apiserver 90 curl -fsS --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://127.0.0.1:$KUBE_PORT/readyz"
}

start_kafka() {
  local dir="$RUN_DIR/kafka" libs
  libs=$(kafka_libs)
  mkdir -p "$dir"
  if [[ ! -f "$dir/server.properties" ]]; then
    cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.cleaner.backoff.ms=1000
# Room for oversized test messages, which the registry must dead-letter whole.
message.max.bytes=8388608
PROPS
    cat >"$dir/log4j2.properties" <<PROPS
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
PROPS
    local cluster_id
    cluster_id=$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid 2>>"$RUN_DIR/logs/kafka.log" | tail -1)
    java -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$libs/*" kafka.tools.StorageTool format \
      --cluster-id "$cluster_id" --standalone --config "$dir/server.properties" >>"$RUN_DIR/logs/kafka.log" 2>&1 ||
      fail kafka "kafka.tools.StorageTool format" "$RUN_DIR/logs/kafka.log"
  fi
  spawn kafka java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$libs/*" kafka.Kafka "$dir/server.properties"
  wait_ready kafka 90 sh -c "kcat -b 127.0.0.1:$KAFKA_PORT -L -m 3 | grep -q '1 brokers'"
}

start_consul() {
  spawn consul "$BIN/consul" agent -dev -node stack -bind 127.0.0.1 -client 127.0.0.1 \
    -http-port "$CONSUL_PORT" -dns-port -1 -grpc-port -1 -grpc-tls-port -1 \
    -serf-lan-port "$CONSUL_SERF_LAN_PORT" -serf-wan-port "$CONSUL_SERF_WAN_PORT" -server-port "$CONSUL_SERVER_PORT" \
    -hcl 'disable_update_check = true' -log-level warn
  wait_ready consul 60 sh -c "curl -fsS http://127.0.0.1:$CONSUL_PORT/v1/status/leader | grep -q '127.0.0.1'"
}

start_postgres() {
  local dir="$RUN_DIR/postgres" bindir
  bindir=$(pg_bindir) || fail postgres "find PostgreSQL binaries under /usr/lib/postgresql" /dev/null
  mkdir -p "$dir"
  touch "$RUN_DIR/logs/postgres.log"
  if [[ $(id -u) -eq 0 ]]; then chown postgres "$dir" "$RUN_DIR/logs/postgres.log"; fi
  if [[ ! -f "$dir/data/PG_VERSION" ]]; then
    echo "$POSTGRES_PASSWORD" >"$dir/pwfile"
    if [[ $(id -u) -eq 0 ]]; then chown postgres "$dir/pwfile"; fi
    as_postgres_user "$bindir/initdb" -D "$dir/data" -U postgres --pwfile "$dir/pwfile" \
      --auth-local trust --auth-host scram-sha-256 -E UTF8 >>"$RUN_DIR/logs/postgres.log" 2>&1 ||
      fail postgres "initdb" "$RUN_DIR/logs/postgres.log"
    rm -f "$dir/pwfile"
  fi
  as_postgres_user "$bindir/pg_ctl" -D "$dir/data" -l "$RUN_DIR/logs/postgres.log" -w -t 60 \
    -o "-h 127.0.0.1 -p $POSTGRES_PORT -k $dir -c fsync=off -c synchronous_commit=on -c max_connections=300" start \
    >/dev/null || fail postgres "pg_ctl start" "$RUN_DIR/logs/postgres.log"
  head -1 "$dir/data/postmaster.pid" >"$(pid_file postgres)"
  wait_ready postgres 30 "$bindir/pg_isready" -h 127.0.0.1 -p "$POSTGRES_PORT"
  if ! as_postgres_user "$bindir/psql" -h "$dir" -p "$POSTGRES_PORT" -U postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'registry'" | grep -q 1; then
    as_postgres_user "$bindir/psql" -h "$dir" -p "$POSTGRES_PORT" -U postgres -qc "CREATE DATABASE registry" ||
      fail postgres "CREATE DATABASE registry" "$RUN_DIR/logs/postgres.log"
  fi
}

write_env_file() {
  cat >"$ENV_FILE" <<ENV
# Written by hack/stack.sh up. Source it: eval "\$(hack/stack.sh env)"
export PATH="$BIN:\$PATH"
export STACK_BIN="$BIN"
export STACK_RUN_DIR="$RUN_DIR"
export KUBECONFIG="$RUN_DIR/kubeconfig"
export KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$KAFKA_PORT"
export CONSUL_HTTP_ADDR="http://127.0.0.1:$CONSUL_PORT"
export DATABASE_URL="postgres://postgres:$POSTGRES_PASSWORD@127.0.0.1:$POSTGRES_PORT/registry"
export ETCD_PORT=$ETCD_PORT
export ETCD_PEER_PORT=$ETCD_PEER_PORT
export KUBE_PORT=$KUBE_PORT
export KAFKA_PORT=$KAFKA_PORT
export KAFKA_CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT
export CONSUL_PORT=$CONSUL_PORT
export CONSUL_SERF_LAN_PORT=$CONSUL_SERF_LAN_PORT
export CONSUL_SERF_WAN_PORT=$CONSUL_SERF_WAN_PORT
export CONSUL_SERVER_PORT=$CONSUL_SERVER_PORT
export POSTGRES_PORT=$POSTGRES_PORT
export POSTGRES_PASSWORD=$POSTGRES_PASSWORD
ENV
  chmod 600 "$ENV_FILE"
}

all_running() {
  [[ -f "$ENV_FILE" ]] || return 1
  local server
  for server in "${SERVERS[@]}"; do
    pid_alive "$server" || return 1
  done
}

cmd_up() {
  cmd_build
  if all_running; then
    log "already running (env: $ENV_FILE)"
    return 0
  fi
  if [[ -d "$RUN_DIR" ]]; then
    log "removing a partly running stack in $RUN_DIR"
    cmd_down
  fi
  mkdir -p "$RUN_DIR/logs" "$RUN_DIR/pids"
  chmod 755 "$RUN_DIR"
  ETCD_PORT=$(free_port) ETCD_PEER_PORT=$(free_port) KUBE_PORT=$(free_port)
  KAFKA_PORT=$(free_port) KAFKA_CONTROLLER_PORT=$(free_port)
  CONSUL_PORT=$(free_port) CONSUL_SERF_LAN_PORT=$(free_port) CONSUL_SERF_WAN_PORT=$(free_port) CONSUL_SERVER_PORT=$(free_port)
  POSTGRES_PORT=$(free_port)
  POSTGRES_PASSWORD="stack-$(openssl rand -hex 8)"
  write_env_file

  local started=$SECONDS
  make_certs
  write_kubeconfig "$KUBE_PORT"
  start_etcd
  log "etcd ready on 127.0.0.1:$ETCD_PORT"
  start_kube_apiserver
  log "kube-apiserver ready on https://127.0.0.1:$KUBE_PORT"
  start_kafka
  log "kafka ready on 127.0.0.1:$KAFKA_PORT"
  start_consul
  log "consul ready on http://127.0.0.1:$CONSUL_PORT"
  start_postgres
  log "postgres ready on 127.0.0.1:$POSTGRES_PORT"
  log "stack up in $((SECONDS - started))s; env: $ENV_FILE"
}

# Stops one server by its recorded PID: SIGTERM, then SIGKILL after 20 seconds.
stop_server() {
  local server="$1" file pid
  file=$(pid_file "$server")
  [[ -f "$file" ]] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    if [[ "$server" == postgres ]]; then kill -INT "$pid" 2>/dev/null || true; else kill -TERM "$pid" 2>/dev/null || true; fi
    local deadline=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$server (pid $pid) did not stop in 20s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$file"
}

cmd_down() {
  local i
  for ((i = ${#SERVERS[@]} - 1; i >= 0; i--)); do
    stop_server "${SERVERS[$i]}"
  done
  rm -rf "$RUN_DIR"
  log "stack down"
}

cmd_env() {
  [[ -f "$ENV_FILE" ]] || { log "no stack is running; start it with: hack/stack.sh up"; exit 1; }
  cat "$ENV_FILE"
}

cmd_status() {
  [[ -f "$ENV_FILE" ]] || { echo "stack: not running"; return 1; }
  # shellcheck disable=SC1090
  source "$ENV_FILE"
  local server state rc=0
  for server in "${SERVERS[@]}"; do
    if pid_alive "$server"; then state="running (pid $(cat "$(pid_file "$server")"))"; else state="stopped"; rc=1; fi
    printf '%-15s %s\n' "$server" "$state"
  done
  printf 'KUBECONFIG=%s\nKAFKA_BOOTSTRAP_SERVERS=%s\nCONSUL_HTTP_ADDR=%s\nDATABASE_URL=%s\n' \
    "$KUBECONFIG" "$KAFKA_BOOTSTRAP_SERVERS" "$CONSUL_HTTP_ADDR" "${DATABASE_URL/:$POSTGRES_PASSWORD@/:***@}"
  return $rc
}

# Stops or starts one server on its recorded port, for fault tests.
cmd_one() {
  local action="$1" server="$2"
  [[ -f "$ENV_FILE" ]] || { log "no stack is running"; exit 1; }
  # shellcheck disable=SC1090
  source "$ENV_FILE"
  case "$server" in
    kafka | consul | postgres) ;;
    *) log "unknown server '$server': expected kafka, consul or postgres"; exit 2 ;;
  esac
  if [[ "$action" == stop || "$action" == restart ]]; then stop_server "$server"; fi
  if [[ "$action" == start || "$action" == restart ]]; then
    pid_alive "$server" || "start_$server"
  fi
}

case "${1:-}" in
  build) cmd_build ;;
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  status) cmd_status ;;
  stop | start | restart) cmd_one "$1" "${2:?server name required: kafka, consul or postgres}" ;;
  *)
    sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
