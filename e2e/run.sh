#!/usr/bin/env bash
# The control-plane e2e tier: builds (once, cached) and starts a real Kubernetes control plane on 127.0.0.1, envtest
# style, with a kwok fake node, installs the CRD and the Helm chart, runs the real operator as the chart's
# ServiceAccount, and runs the e2e suite (crate syncd-e2e) against it.
#
#   bash e2e/run.sh [cargo test arguments...]     e.g. bash e2e/run.sh -- --test-threads 1 status
#
# Everything after the build runs in a new network namespace that has only loopback (and a new PID namespace, so no
# process can outlive the run): nothing can dial a pod or service IP, and the fixed ports below cannot collide with
# anything else on the machine. See e2e/README.md for the other ways to run the suite (kind, minikube).
#
# Environment:
#   SYNCD_CACHE         build cache (default ~/.cache/syncd): tool binaries, GOMODCACHE, GOCACHE
#   SYNCD_E2E_KEEP=1    keep the work directory (certificates, kubeconfigs, logs) after the run
#   KUBE_GIT_COMMIT     commit of the Kubernetes tag, for /version (the module proxy does not tell it)
#   SYNCD_E2E_CHART     the chart to install (default charts/syncd-operator), e.g. a locally broken copy
#   SYNCD_E2E_CRD       the CRD manifest to apply (default manifests/crds/syncclusters.syncd.dev.yaml)
set -euo pipefail

# Versions. Kubernetes: k8s-openapi's feature v1_33 is what the operator is compiled for, so the control plane
# runs the latest 1.33 patch. etcd: the latest 3.5 patch (what 1.33's kubeadm pins is 3.5.x too).
ETCD_VERSION=v3.5.35
KUBE_VERSION=v1.33.13
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.22.0

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${SYNCD_CACHE:-$HOME/.cache/syncd}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

# Fixed loopback ports: the network namespace is ours alone.
ETCD_PORT=2379
ETCD_PEER_PORT=2380
APISERVER_PORT=6443
KCM_PORT=10257
SCHEDULER_PORT=10259
KWOK_PORT=10247
OPERATOR_PORT=8080
# Unrouted ranges (RFC 5737 documentation ranges): Services get TEST-NET-2, the fake node's pods TEST-NET-3
# (e2e/kwok/cluster.yaml), the fake node itself TEST-NET-1.
SERVICE_CIDR=198.51.100.0/24
NODE_IP=192.0.2.10

CHART=${SYNCD_E2E_CHART:-$ROOT/charts/syncd-operator}
CRD=${SYNCD_E2E_CRD:-$ROOT/manifests/crds/syncclusters.syncd.dev.yaml}
OPERATOR_NAMESPACE=syncd-system
RELEASE=syncd-operator

log() { printf '\n=== %s\n' "$*" >&2; }
die() {
  printf 'e2e: %s\n' "$*" >&2
  exit 1
}
now() { date +%s; }

# ---------------------------------------------------------------------------------------------------------------
# Outside the namespaces: packages, builds (these need the network for the module proxy and crates.io).

ensure_packages() {
  local missing=()
  command -v ip >/dev/null || missing+=(iproute2)
  command -v unshare >/dev/null || missing+=(util-linux)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

ensure_go() {
  if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
    export PATH="/usr/local/go/bin:$PATH"
  fi
  command -v go >/dev/null || die "the Go toolchain (1.26 or newer, or GOTOOLCHAIN=auto) is needed to build the control plane"
}

build_phase() {
  ensure_packages
  ensure_go
  # shellcheck source=e2e/lib/tools.sh
  source "$ROOT/e2e/lib/tools.sh"
  local started built=()
  started=$(now)
  [ -x "$CACHE/bin/etcd-$ETCD_VERSION/etcd" ] || built+=(etcd)
  build_etcd
  [ -x "$CACHE/bin/kubernetes-$KUBE_VERSION/kube-apiserver" ] || built+=(kubernetes)
  build_kubernetes
  [ -x "$CACHE/bin/kwok-$KWOK_VERSION/kwok" ] || built+=(kwok)
  build_kwok
  HELM="$CACHE/bin/helm"
  [ "$("$HELM" version --template '{{.Version}}' 2>/dev/null)" = "$HELM_VERSION" ] || built+=(helm)
  build_helm
  TOOLS_SECONDS=$(($(now) - started))
  TOOLS_BUILT=${built[*]:-none}

  log "building the operator and the e2e suite"
  started=$(now)
  (cd "$ROOT" && cargo build --locked -p syncd-operator && cargo test --locked -p syncd-e2e --no-run)
  CARGO_SECONDS=$(($(now) - started))
}

enter_namespaces() {
  local unshare=(unshare --net --pid --fork --mount-proc)
  # Without root, a user namespace maps us to root inside it, which is enough for the rest.
  [ "$(id -u)" -eq 0 ] || unshare+=(--map-root-user)
  export SYNCD_E2E_INSIDE=1 HELM TOOLS_SECONDS TOOLS_BUILT CARGO_SECONDS
  exec "${unshare[@]}" bash "$ROOT/e2e/run.sh" "$@"
}

# ---------------------------------------------------------------------------------------------------------------
# Inside the namespaces: certificates, control plane, chart, operator, suite.

WORK=
declare -A PIDS=()
ORDER=()

# start <name> <command...>: runs a component in the background, its output in $LOGS/<name>.log.
start() {
  local name=$1
  shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  PIDS[$name]=$!
  ORDER+=("$name")
}

alive() { kill -0 "${PIDS[$1]}" 2>/dev/null; }

# wait_until <name> <seconds> <command...>: polls the command every 0.2 s until it succeeds; fails when the
# component exits or the time is up.
wait_until() {
  local name=$1 seconds=$2
  shift 2
  local deadline=$(($(now) + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ -n "${PIDS[$name]:-}" ] && ! alive "$name"; then
      die "$name exited while starting (log below)"
    fi
    [ "$(now)" -lt "$deadline" ] || die "$name was not ready within ${seconds}s"
    sleep 0.2
  done
}

# has_condition <object> <type>: whether the object reports condition <type>=True. `kubectl wait --for=condition`
# errors out, instead of waiting, while the object has no .status.conditions yet (a CRD or Node just created).
has_condition() {
  [ "$(kubectl get "$1" -o "jsonpath={.status.conditions[?(@.type==\"$2\")].status}")" = True ]
}

print_tails() {
  local name
  for name in "${ORDER[@]}"; do
    printf '\n----- last 40 lines of %s (%s) -----\n' "$name" "$LOGS/$name.log" >&2
    tail -n 40 "$LOGS/$name.log" >&2 || true
  done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # The logs as they were when it failed, before shutdown adds its own noise.
  if [ "$rc" -ne 0 ] && [ -n "$WORK" ]; then
    print_tails
  fi
  # Stop in reverse start order (the operator first, etcd last), each with SIGTERM and up to 10 s, then SIGKILL.
  # Whatever is left dies with this PID namespace anyway.
  local i name deadline
  for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do
    name=${ORDER[$i]}
    alive "$name" || continue
    kill -TERM "${PIDS[$name]}" 2>/dev/null || true
    deadline=$(($(now) + 10))
    while alive "$name" && [ "$(now)" -lt "$deadline" ]; do sleep 0.1; done
    alive "$name" && kill -KILL "${PIDS[$name]}" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [ -n "$WORK" ]; then
    if [ "${SYNCD_E2E_KEEP:-}" = 1 ]; then
      echo "e2e: kept $WORK" >&2
    else
      rm -rf "$WORK"
    fi
  fi
  exit "$rc"
}

# kubeconfig <file> <user> <credential lines...>
kubeconfig() {
  local file=$1 user=$2
  shift 2
  {
    cat <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $user
  user:
EOF
    local line
    for line in "$@"; do printf '    %s\n' "$line"; done
    cat <<EOF
contexts:
- name: e2e
  context: {cluster: e2e, user: $user}
current-context: e2e
EOF
  } >"$file"
}

# client_cert <name> <subject>: a client certificate signed by the CA.
client_cert() {
  local name=$1 subject=$2
  openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -subj "$subject" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 2 \
    -extfile <(printf 'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n') \
    -out "$PKI/$name.crt" 2>/dev/null
}

certificates() {
  PKI=$WORK/pki
  mkdir -p "$PKI"
  openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -subj "/CN=syncd-e2e-ca" -days 2 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI/ca.crt" 2>/dev/null
  # The apiserver's serving certificate: for 127.0.0.1 and localhost (and the in-cluster names, harmless).
  openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/apiserver.key" -subj "/CN=kube-apiserver" \
    -out "$PKI/apiserver.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/apiserver.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 2 \
    -extfile <(printf '%s\n' 'keyUsage=critical,digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' \
      'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc') \
    -out "$PKI/apiserver.crt" 2>/dev/null
  client_cert admin "/O=system:masters/CN=e2e-admin"
  client_cert kube-controller-manager "/CN=system:kube-controller-manager"
  client_cert kube-scheduler "/CN=system:kube-scheduler"
  # The service-account key pair: the apiserver signs and checks tokens, the controller manager signs legacy ones.
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null

  local name
  for name in admin kube-controller-manager kube-scheduler; do
    kubeconfig "$WORK/$name.kubeconfig" "$name" \
      "client-certificate: $PKI/$name.crt" "client-key: $PKI/$name.key"
  done
  ADMIN_KUBECONFIG=$WORK/admin.kubeconfig
}

apiserver_ready() {
  curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT/readyz"
}

start_control_plane() {
  local kube="$CACHE/bin/kubernetes-$KUBE_VERSION"

  start etcd "$CACHE/bin/etcd-$ETCD_VERSION/etcd" \
    --name=e2e --data-dir="$WORK/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync=true --log-level=warn
  wait_until etcd 60 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

  # Flags as controller-runtime's envtest passes them, plus what the controllers and tokens need.
  start kube-apiserver "$kube/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
    --cert-dir="$WORK/apiserver" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --authorization-mode=RBAC \
    --endpoint-reconciler-type=none \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" \
    --allow-privileged=true \
    --enable-admission-plugins=OwnerReferencesPermissionEnforcement
  wait_until kube-apiserver 120 apiserver_ready

  start kube-controller-manager "$kube/kube-controller-manager" \
    --kubeconfig="$WORK/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" \
    --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --controllers='*'
  # No --authentication/authorization-kubeconfig: nothing but this script talks to it, and /healthz is always
  # allowed (with them, it would also want the apiserver's front-proxy CA, which this control plane has no use for).
  wait_until kube-controller-manager 60 curl -fsSk "https://127.0.0.1:$KCM_PORT/healthz"

  start kube-scheduler "$kube/kube-scheduler" \
    --kubeconfig="$WORK/kube-scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" \
    --leader-elect=false
  wait_until kube-scheduler 60 curl -fsSk "https://127.0.0.1:$SCHEDULER_PORT/healthz"

  start kwok "$CACHE/bin/kwok-$KWOK_VERSION/kwok" \
    --kubeconfig="$ADMIN_KUBECONFIG" \
    --config="$ROOT/e2e/kwok/stages.yaml" \
    --manage-all-nodes=true \
    --node-ip="$NODE_IP" \
    --node-lease-duration-seconds=40 \
    --server-address="127.0.0.1:$KWOK_PORT"
  wait_until kwok 60 curl -fsS "http://127.0.0.1:$KWOK_PORT/healthz"

  kubectl apply -f "$ROOT/e2e/kwok/cluster.yaml" >/dev/null
  wait_until kwok 60 has_condition node/kwok-node-0 Ready
  # The namespace and serviceaccount controllers are up once "default" has its ServiceAccount.
  wait_until kube-controller-manager 60 kubectl get serviceaccount default -n default
}

install_operator() {
  log "CRD, chart, operator"
  # Server-side: the CRD (with its CEL rules and every PodSpec field schema) is too big for the last-applied
  # annotation of a client-side apply.
  kubectl apply --server-side -f "$CRD"
  wait_until kube-apiserver 60 has_condition crd/syncclusters.syncd.dev Established

  # replicaCount=0: there is no container runtime here, so an operator pod would be a kwok fake that kwok reports
  # Running/Ready while nothing runs, and it would sit in the leader election next to the real one. The real binary
  # runs below instead, as the chart's ServiceAccount with exactly the chart's RBAC.
  "$HELM" install "$RELEASE" "$CHART" \
    --namespace "$OPERATOR_NAMESPACE" --create-namespace \
    --set replicaCount=0 --wait --timeout 2m

  local sa
  sa=$(kubectl get serviceaccount -n "$OPERATOR_NAMESPACE" -l "app.kubernetes.io/instance=$RELEASE" \
    -o jsonpath='{.items[0].metadata.name}')
  [ -n "$sa" ] || die "the chart created no ServiceAccount labelled app.kubernetes.io/instance=$RELEASE"
  local token
  token=$(kubectl create token "$sa" -n "$OPERATOR_NAMESPACE" --duration=2h)
  OPERATOR_KUBECONFIG=$WORK/operator.kubeconfig
  kubeconfig "$OPERATOR_KUBECONFIG" "system:serviceaccount:$OPERATOR_NAMESPACE:$sa" "token: $token"

  # No in-cluster DNS here: the lock services' names do not resolve, which the operator must report in the
  # LockLeaderKnown condition (reason Unreachable), not crash on.
  start syncd-operator env KUBECONFIG="$OPERATOR_KUBECONFIG" RUST_LOG=info,kube=warn NO_COLOR=1 \
    "$TARGET_DIR/debug/syncd-operator" run \
    --leader-election true --lease-namespace "$OPERATOR_NAMESPACE" --identity e2e-operator \
    --listen "127.0.0.1:$OPERATOR_PORT"
  wait_until syncd-operator 30 curl -fsS "http://127.0.0.1:$OPERATOR_PORT/healthz"
  wait_until syncd-operator 60 lease_held
}

lease_held() {
  [ "$(kubectl get lease syncd-operator-leader -n "$OPERATOR_NAMESPACE" -o jsonpath='{.spec.holderIdentity}')" = e2e-operator ]
}

run_suite() {
  log "e2e suite"
  local rc=0
  (cd "$ROOT" && KUBECONFIG="$ADMIN_KUBECONFIG" cargo test --locked --offline -p syncd-e2e "$@") || rc=$?
  alive syncd-operator || {
    echo "e2e: the operator exited during the suite" >&2
    rc=1
  }
  # A verb missing from the chart's RBAC shows up as an authorization refusal in the operator's log, whatever the
  # tests saw. (Other 403s, e.g. writing into a namespace being deleted at the end of a test, are not RBAC's.)
  local refused='is forbidden: User .* cannot [a-z]+ resource'
  if grep -qE "$refused" "$LOGS/syncd-operator.log"; then
    grep -E "$refused" "$LOGS/syncd-operator.log" | head -n 20 >&2 || true
    echo "e2e: the operator was refused by RBAC (lines above): the chart's ClusterRole/Role misses a rule" >&2
    rc=1
  fi
  return "$rc"
}

inside() {
  ip link set lo up
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/syncd-e2e.XXXXXX")
  LOGS=$WORK/logs
  mkdir -p "$LOGS"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  export KUBECONFIG=$WORK/admin.kubeconfig
  export PATH="$CACHE/bin/kubernetes-$KUBE_VERSION:$PATH" # the suite's and this script's kubectl
  export NO_PROXY='*' no_proxy='*'                         # a proxy from the environment is unreachable here
  # helm keeps its state (repositories, cache) in the work directory, not in the user's home.
  export HELM_CACHE_HOME=$WORK/helm/cache HELM_CONFIG_HOME=$WORK/helm/config HELM_DATA_HOME=$WORK/helm/data

  local started
  started=$(now)
  log "control plane (etcd $ETCD_VERSION, kubernetes $KUBE_VERSION, kwok $KWOK_VERSION) in $WORK"
  certificates
  start_control_plane
  kubectl version
  install_operator
  local up=$(($(now) - started))

  started=$(now)
  local rc=0
  run_suite "$@" || rc=$?
  local suite=$(($(now) - started))

  local kind=warm
  [ "$TOOLS_BUILT" = none ] || kind="cold (built $TOOLS_BUILT)"
  printf '\n=== timings (%s): tools %ss, cargo build %ss, control plane + chart + operator %ss, suite %ss, total %ss\n' \
    "$kind" "$TOOLS_SECONDS" "$CARGO_SECONDS" "$up" "$suite" "$(($(now) - SYNCD_E2E_START))" >&2
  return "$rc"
}

if [ "${SYNCD_E2E_INSIDE:-}" = 1 ]; then
  inside "$@"
else
  START=$(now)
  build_phase
  log "entering a network namespace with only loopback"
  export SYNCD_E2E_START=$START
  enter_namespaces "$@"
fi
