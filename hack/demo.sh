#!/usr/bin/env bash
# The demo: starts the local real stack, runs the operator against its API server,
# applies a RegistryNode, publishes the sample events in tests/fixtures/events with kcat,
# and prints the RegistryNode, and what the registry wrote to PostgreSQL and Consul.
# Set KEEP_RUNNING=1 to leave the stack and the operator running.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
say() { printf '\n==> %s\n' "$*"; }

say "building the local stack (cached after the first run)"
hack/stack.sh build
say "building registry-operator"
cargo build --locked --quiet
BINARY="$ROOT/target/debug/registry-operator"

stack_was_running=0
if hack/stack.sh status >/dev/null 2>&1; then stack_was_running=1; fi
hack/stack.sh up
eval "$(hack/stack.sh env)"

# A fresh namespace, topic prefix and schema per run, so a second run on a stack that is
# still up starts from nothing.
RUN_ID=$(date +%s)
NAMESPACE=demo-$RUN_ID
REGISTRY_ID=$NAMESPACE-main
ENVIRONMENT=demo$RUN_ID
SCHEMA=demo_$RUN_ID
HTTP_ADDR=127.0.0.1:18080
LOG="$STACK_RUN_DIR/logs/operator-demo.log"
registry_pid=""
cleanup() {
  if [[ -n "$registry_pid" ]] && kill -0 "$registry_pid" 2>/dev/null; then
    kill -TERM "$registry_pid"
    local status=0
    wait "$registry_pid" 2>/dev/null || status=$?
    echo "operator exited with status $status; its shutdown in the log:"
    jq -r 'select(.message | test("shutdown|self record deregistered|committed|stopped")) | "  \(.message)"' "$LOG" 2>/dev/null |
      tail -n 6 || true
  fi
  if [[ $stack_was_running == 0 ]]; then hack/stack.sh down; fi
}
if [[ "${KEEP_RUNNING:-0}" != 1 ]]; then trap cleanup EXIT; fi

say "installing the CRD and the database Secret in namespace '$NAMESPACE'"
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$NAMESPACE" create secret generic registry-db --from-literal=url="$DATABASE_URL" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null

say "applying migrations to schema '$SCHEMA'"
"$BINARY" migrate --schema "$SCHEMA"

say "starting the operator against the local API server (log: $LOG)"
POD_NAME=demo-operator OMNINODE_DEPLOYMENT_ID=demo-blue OMNINODE_DEPLOYMENT_EPOCH=1 OMNINODE_NETWORK_ID=demo-network \
  "$BINARY" run --namespace "$NAMESPACE" --http-addr "$HTTP_ADDR" --resync-seconds 2 --log-format json >"$LOG" 2>&1 &
registry_pid=$!

say "applying the RegistryNode"
kubectl apply -f - <<YAML
apiVersion: omninode.io/v1alpha1
kind: RegistryNode
metadata:
  name: main
  namespace: $NAMESPACE
spec:
  environment: $ENVIRONMENT
  networkId: demo-network
  kafka:
    bootstrapServers: "$KAFKA_BOOTSTRAP_SERVERS"
  consul:
    address: "$CONSUL_HTTP_ADDR"
  postgres:
    urlSecretRef: {name: registry-db, key: url}
    schema: $SCHEMA
YAML
kubectl -n "$NAMESPACE" wait --for=condition=Ready registrynode/main --timeout=60s

psql_demo() { psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -X -q -c "SET search_path TO $SCHEMA" "$@"; }
wait_for() {
  local what="$1" deadline=$((SECONDS + 60))
  shift
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then echo "timed out waiting for $what; registry log: $LOG" >&2; exit 1; fi
    kill -0 "$registry_pid" 2>/dev/null || { echo "the registry exited; log: $LOG" >&2; tail -20 "$LOG" >&2; exit 1; }
    sleep 0.5
  done
}
wait_for "the registry's own record" sh -c \
  "psql '$DATABASE_URL' -X -tAc \"SELECT 1 FROM $SCHEMA.node_registrations WHERE node_id = '$REGISTRY_ID-demo-operator'\" | grep -q 1"

say "publishing the sample events with kcat"
publish() {
  local file="$1" topic="$2" key
  key=$(grep -o '"partition_key": *"[^"]*"' "$file" | head -1 | sed 's/.*: *"\(.*\)"/\1/' || true)
  tr -d '\n' <"$file" | kcat -P -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$ENVIRONMENT.omninode_bridge.onex.evt.$topic.v1" -k "${key:-demo}"
  echo "  $(basename "$file") -> $topic"
}
events=tests/fixtures/events
publish "$events/01-node-introspection-startup.json" node-introspection
publish "$events/02-node-heartbeat.json" node-heartbeat
publish "$events/03-registry-request-introspection.json" registry-request-introspection
publish "$events/04-node-introspection-registry-response.json" node-introspection

wait_for "both sample nodes in PostgreSQL" sh -c \
  "psql '$DATABASE_URL' -X -tAc \"SELECT count(*) FROM $SCHEMA.node_registrations WHERE node_id IN ('orchestrator-7f3a9c','reducer-2b81d0')\" | grep -qx 2"
sleep 1

kubectl -n "$NAMESPACE" wait --for=jsonpath='{.status.registeredNodes}'=3 registrynode/main --timeout=60s >/dev/null
say "kubectl get registrynodes"
kubectl -n "$NAMESPACE" get registrynodes

say "node_registrations in PostgreSQL"
psql_demo -c "SELECT node_id, node_type, health_status, deployment_id, epoch, network_id, deregistered_at IS NOT NULL AS deregistered FROM node_registrations ORDER BY node_id"

say "Consul catalog entries of this registry (synthetic nodes registry-operator-$REGISTRY_ID-<shard>)"
for node in $(curl -fsS "$CONSUL_HTTP_ADDR/v1/catalog/nodes?node-meta=registry-id:$REGISTRY_ID" | jq -r '.[].Node'); do
  curl -fsS "$CONSUL_HTTP_ADDR/v1/catalog/node-services/$node" |
    jq -r --arg node "$node" '.Services[] | "  \(.ID)  node=\($node)  service=\(.Service)  address=\(.Address):\(.Port)  tags=\(.Tags | join(","))"'
done
curl -fsS "$CONSUL_HTTP_ADDR/v1/health/state/any?node-meta=registry-id:$REGISTRY_ID" |
  jq -r 'sort_by(.ServiceID) | .[] | "  check \(.CheckID): \(.Status)"'

say "the registry's response to the registry request (same correlation_id as the request)"
kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$ENVIRONMENT.omninode_bridge.onex.evt.node-introspection.v1" -o beginning -e -q |
  grep '"source_service":"registry-operator"' | grep '"correlation_id":"9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"' |
  jq -c '{source_node_id, correlation_id, causation_id, reason: .metadata.reason}' | tail -1

say "publishing the shutdown of orchestrator-7f3a9c"
publish "$events/05-node-introspection-shutdown.json" node-introspection
wait_for "the orchestrator to leave Consul" sh -c \
  "! curl -fsS '$CONSUL_HTTP_ADDR/v1/health/state/any?node-meta=registry-id:$REGISTRY_ID' | grep -q orchestrator-7f3a9c"
psql_demo -c "SELECT node_id, deregistered_at IS NOT NULL AS deregistered FROM node_registrations ORDER BY node_id"
echo "Consul checks of this registry after the shutdown:"
curl -fsS "$CONSUL_HTTP_ADDR/v1/health/state/any?node-meta=registry-id:$REGISTRY_ID" |
  jq -r 'sort_by(.ServiceID) | .[] | "  check \(.CheckID): \(.Status)"'

if [[ "${KEEP_RUNNING:-0}" == 1 ]]; then
  say "left running: operator pid $registry_pid (kill -TERM $registry_pid), stack: hack/stack.sh down"
else
  say "stopping the operator (SIGTERM); the stack stops too unless it was running before"
fi
