#!/usr/bin/env bash
# make demo: the main job on a local control plane. A plain annotated Deployment, applied
# with kubectl like any other, becomes a scale-to-zero function with a public URL and its
# companions; then the plugin creates an inline function and shows what it became.
# It prints what happens at each step and cleans up what it created.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
TOOLS_DIR=${TOOLS_DIR:-$root/bin/tools}
DEV_DIR=${DEV_DIR:-$root/.dev}
export KUBECONFIG=$DEV_DIR/kubeconfig
kubectl() { "$TOOLS_DIR/kubectl" "$@"; }
skipper() { "$root/bin/kubectl-skipper" "$@"; }
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
fail() { echo "demo: $*" >&2; exit 1; }
ns=skipper-demo

started=
if ! go run ./test/cmd/skipper-dev status -dir "$DEV_DIR" >/dev/null 2>&1; then
  step "Starting the local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok) and skipper-webhook"
  make -s dev-up
  started=1
else
  step "Reusing the running local control plane ($DEV_DIR)"
fi
cleanup() {
  step "Cleaning up"
  kubectl delete namespace "$ns" --ignore-not-found --wait=false >/dev/null || true
  if [ -n "$started" ] && [ -z "${DEMO_KEEP:-}" ]; then make -s dev-down; else echo "The control plane keeps running (make dev-down stops it)."; fi
}
trap cleanup EXIT

kubectl wait --for=delete "namespace/$ns" --timeout=120s >/dev/null 2>&1 || true
kubectl create namespace "$ns" >/dev/null
step "Applying a plain Deployment with Skipper's label and two annotations"
# Shown, then applied. (Not with tee /dev/stderr: opening that path truncates a log file
# that stderr is redirected to, such as CI's.)
manifest=$(cat <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: webhook-handler
  labels:
    getkipper.com/function: "true"
  annotations:
    getkipper.com/idle-timeout: "120"
    getkipper.com/max-replicas: "5"
spec:
  replicas: 3
  selector:
    matchLabels: {app: webhook-handler}
  template:
    metadata:
      labels: {app: webhook-handler}
    spec:
      containers:
      - name: handler
        image: registry.example.com/webhook-handler:latest
YAML
)
printf '%s\n' "$manifest"
printf '%s\n' "$manifest" | kubectl -n "$ns" apply -f -

step "What the admission webhook decided: replicas 0 (KEDA owns them), defaults written, the URL"
[ "$(kubectl -n "$ns" get deployment webhook-handler -o jsonpath='{.spec.replicas}')" = 0 ] || fail "replicas were not set to 0"
kubectl -n "$ns" get deployment webhook-handler \
  -o go-template='replicas: {{.spec.replicas}}{{"\n"}}{{range $k, $v := .metadata.annotations}}{{if ne $k "kubectl.kubernetes.io/last-applied-configuration"}}{{$k}}: {{$v}}{{"\n"}}{{end}}{{end}}'

step "The companions the reconciler wrote, owned by the Deployment"
for kind in service httpscaledobject ingress; do
  for _ in $(seq 1 100); do
    [ -n "$(kubectl -n "$ns" get "$kind" -l getkipper.com/function-name=webhook-handler -o name 2>/dev/null)" ] && break
    sleep 0.2
  done
  [ -n "$(kubectl -n "$ns" get "$kind" -l getkipper.com/function-name=webhook-handler -o name)" ] || fail "no $kind was written"
done
kubectl -n "$ns" get service,httpscaledobject,ingress -l getkipper.com/function-name=webhook-handler -o wide

step "An app Ingress that tries to take the function's host is refused"
host=$(kubectl -n "$ns" get deployment webhook-handler -o jsonpath='{.metadata.annotations.getkipper\.com/url}' | sed 's#https://##')
[ -n "$host" ] || fail "the webhook wrote no URL"
if cat <<YAML | kubectl -n "$ns" apply -f - >"$DEV_DIR/squatter.out" 2>&1; then fail "the app Ingress was admitted"; fi
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: squatter}
spec:
  rules:
  - host: $host
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: other, port: {number: 80}}}}]}
YAML
sed 's/^/  /' "$DEV_DIR/squatter.out"

step "kubectl skipper: an inline Node.js function from a file"
code=$(mktemp --suffix=.js)
printf 'module.exports = async (event, context) => ({ hello: event && event.name || "world" });\n' > "$code"
skipper -n "$ns" create hello --runtime node --code "$code"
rm -f "$code"

step "kubectl skipper list -o wide"
skipper -n "$ns" list -o wide

step "kubectl skipper describe hello"
skipper -n "$ns" describe hello

step "An event function: PostgreSQL rows wake it, KEDA scales it, skipper-poll delivers each row"
table=skipper_demo_orders
psql() { command psql -h 127.0.0.1 -U postgres -d test -v ON_ERROR_STOP=1 -qtA "$@"; }
psql -c "DROP TABLE IF EXISTS $table" -c "CREATE TABLE $table (id int PRIMARY KEY, item text NOT NULL, status text NOT NULL DEFAULT 'pending')" >/dev/null \
  || fail "PostgreSQL on 127.0.0.1:5432 (database test) is needed for this step"
kubectl -n "$ns" create secret generic orders-db --from-literal=url=postgres://postgres@127.0.0.1:5432/test?sslmode=disable >/dev/null
code=$(mktemp --suffix=.js)
cat > "$code" <<'JS'
module.exports = async (order, context) => {
  console.log(`packing ${order.item} (order ${order.id}, trigger ${context.trigger})`);
  return { packed: order.id };
};
JS
skipper -n "$ns" create orders --runtime node --code "$code" --trigger postgres --source orders-db \
  --query "SELECT id, item FROM $table WHERE status = 'pending' ORDER BY id" \
  --mark-done "UPDATE $table SET status = 'done' WHERE id = {{id}}" \
  --idle-timeout 10 --polling-interval 2
rm -f "$code"
replicas() { kubectl -n "$ns" get deployment orders -o jsonpath='{.spec.replicas}'; }
wait_replicas() { # want, seconds
  for _ in $(seq 1 $(( $2 * 5 ))); do [ "$(replicas)" = "$1" ] && return 0; sleep 0.2; done
  fail "orders did not reach $1 replicas within $2s (now $(replicas))"
}
for _ in $(seq 1 150); do
  [ "$(kubectl -n "$ns" get scaledobject orders -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] && break
  sleep 0.2
done
kubectl -n "$ns" get scaledobject,triggerauthentication -l getkipper.com/function-name=orders
echo "replicas: $(replicas) (idle, nothing to do)"

step "Three orders arrive; KEDA wakes the function"
psql -c "INSERT INTO $table (id, item) VALUES (1, 'kayak'), (2, 'paddle'), (3, 'life vest')" >/dev/null
wait_replicas 1 90
echo "replicas: $(replicas)"
kubectl -n "$ns" get pods -o wide

step "kubectl skipper run orders --local: the pod's containers (Node runtime + skipper-poll) on this machine"
echo "(the pod above runs on a fake kwok node that runs no containers, so the demo runs them here)"
# The binary itself, not the skipper shell function: a backgrounded function runs in a subshell
# that ignores SIGINT, so the signal would never reach the plugin.
"$root/bin/kubectl-skipper" -n "$ns" run orders --local > "$DEV_DIR/run-local.out" 2>&1 &
local_pid=$!
for _ in $(seq 1 450); do
  [ "$(psql -c "SELECT count(*) FROM $table WHERE status = 'pending'")" = 0 ] && break
  sleep 0.2
done
kill -INT "$local_pid" 2>/dev/null || true
wait "$local_pid" || true
grep -E 'packing|"level":"(WARN|ERROR)"' "$DEV_DIR/run-local.out" | sed 's/^/  /' || true
[ "$(psql -c "SELECT count(*) FROM $table WHERE status = 'done'")" = 3 ] || { cat "$DEV_DIR/run-local.out" >&2; fail "the orders were not all marked done"; }
psql -c "SELECT id, item, status FROM $table ORDER BY id" | sed 's/^/  /'

step "Nothing left to do: after the idle timeout KEDA scales the function back to zero"
wait_replicas 0 90
echo "replicas: $(replicas)"
psql -c "DROP TABLE $table" >/dev/null

step "Deleting the function removes its companions through the garbage collector"
skipper -n "$ns" delete webhook-handler --wait
for _ in $(seq 1 150); do
  [ -z "$(kubectl -n "$ns" get service,httpscaledobject,ingress -l getkipper.com/function-name=webhook-handler -o name 2>/dev/null)" ] && break
  sleep 0.2
done
left=$(kubectl -n "$ns" get service,httpscaledobject,ingress -l getkipper.com/function-name=webhook-handler -o name)
if [ -n "$left" ]; then echo "still there: $left" >&2; exit 1; fi
echo "webhook-handler and all of its companions are gone."
