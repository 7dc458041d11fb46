#!/usr/bin/env bash
# Checks the Helm chart and the install manifests; .ci/run calls it after clippy.
#
#   1. helm (built from Go modules into the cache dir when missing: no release binaries can be downloaded here);
#   2. helm lint --strict;
#   3. helm template with the default values and with each non-default values file in charts/syncd-operator/ci/
#      (and it refuses a Kubernetes version below the chart's kubeVersion);
#   4. values.schema.json rejects bad values (each case below must fail to render);
#   5. the rendered ClusterRole and Role grant exactly the (apiGroup, resource, verb) set in charts/rbac-expected.txt;
#   6. manifests/install.yaml is what manifests/generate-install.sh writes.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

HELM_VERSION=v3.22.0
CACHE="${SYNCD_CACHE:-$HOME/.cache/syncd}"
BIN="$CACHE/bin"
CHART=charts/syncd-operator
NS=syncd-system
# Every rendering names the Kubernetes version, the oldest the chart supports, so the result does not depend on
# what helm assumes without a cluster.
KUBE_VERSION=1.33.0

log() { printf -- '--- %s\n' "$*"; }
fail() { printf 'charts/check.sh: %s\n' "$*" >&2; exit 1; }

# 1. helm ----------------------------------------------------------------------------------------------------------
install_helm() {
  command -v go >/dev/null || fail "helm $HELM_VERSION is missing and there is no Go toolchain to build it"
  log "building helm $HELM_VERSION with go install into $BIN"
  # Helm's Makefile stamps the version and the Kubernetes version helm assumes without a cluster (client-go's
  # minor, major + 1); a plain `go install` would leave v1.20, which the chart's kubeVersion rejects.
  local gomod client_go minor
  gomod=$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  client_go=$(awk '$1 == "k8s.io/client-go" { print $2 }' "$gomod")
  minor=$(echo "$client_go" | cut -d. -f2)
  [ -n "$minor" ] || fail "cannot find the client-go version of helm $HELM_VERSION"
  mkdir -p "$BIN"
  GOBIN="$BIN" go install -ldflags "\
-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor \
-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}
HELM="$BIN/helm"
if ! [ -x "$HELM" ] || [ "$("$HELM" version --template '{{.Version}}' 2>/dev/null)" != "$HELM_VERSION" ]; then
  install_helm
fi
log "$("$HELM" version --short)"

# helm keeps no state here: no repositories, no plugins, no registry logins.
HELM_TMP=$(mktemp -d)
trap 'rm -rf "$HELM_TMP"' EXIT
export HELM_CACHE_HOME="$HELM_TMP/cache" HELM_CONFIG_HOME="$HELM_TMP/config" HELM_DATA_HOME="$HELM_TMP/data"

render() { "$HELM" template syncd-operator "$CHART" --namespace "$NS" --kube-version "$KUBE_VERSION" "$@"; }

# 2. lint ----------------------------------------------------------------------------------------------------------
log "helm lint --strict"
"$HELM" lint --strict --kube-version "$KUBE_VERSION" "$CHART"
for values in charts/syncd-operator/ci/*-values.yaml; do
  "$HELM" lint --strict --kube-version "$KUBE_VERSION" "$CHART" --values "$values"
done

# 3. template ------------------------------------------------------------------------------------------------------
log "helm template (default values)"
render > "$HELM_TMP/default.yaml"
log "helm template refuses Kubernetes 1.32 (Chart.yaml kubeVersion)"
if "$HELM" template syncd-operator "$CHART" --namespace "$NS" --kube-version 1.32.0 >/dev/null 2>&1; then
  fail "the chart rendered for Kubernetes 1.32.0 although its kubeVersion is >=1.33.0-0"
fi
for values in charts/syncd-operator/ci/*-values.yaml; do
  log "helm template --values $values"
  render --values "$values" > "$HELM_TMP/$(basename "$values" .yaml).yaml"
done
# Spot checks of what the non-default values must change.
expect() { grep -qE -- "$2" "$HELM_TMP/$1.yaml" || fail "$1: the rendering lacks /$2/"; }
refuse() { ! grep -qE -- "$2" "$HELM_TMP/$1.yaml" || fail "$1: the rendering has /$2/"; }
expect default '^  replicas: 1$'
expect default '--leader-election=true'
expect default '--default-image=syncd:0.1.0$'
expect default '^kind: Role$'
expect replicas-values '^  replicas: 2$'
expect replicas-values 'podAntiAffinity:'
expect replicas-values '--lock-endpoint=http://\{name\}-locks'
refuse replicas-values '^kind: (ClusterRole|ClusterRoleBinding|Role|RoleBinding)$'
expect standalone-values '--leader-election=false'
expect standalone-values '@sha256:0123'
refuse standalone-values '^kind: (ServiceAccount|Service|Role|RoleBinding)$'

# 4. the schema rejects bad values -------------------------------------------------------------------------------
log "values.schema.json rejects bad values"
reject() {
  local what=$1 expect=$2; shift 2
  local out
  if out=$(render "$@" 2>&1 >/dev/null); then
    fail "helm template accepted $what ($*)"
  fi
  grep -q -- "$expect" <<<"$out" || fail "helm template rejected $what, but not with \"$expect\": $out"
  printf '  rejected %-40s %s\n' "$what" "$(grep -m1 -- "$expect" <<<"$out" | sed 's/^[[:space:]]*//')"
}
reject "replicaCount: -1" "minimum" --set replicaCount=-1
reject "replicaCount: two" "replicaCount" --set-string replicaCount=two
reject "logFormat: xml" "logFormat" --set logFormat=xml
reject "image.pullPolicy: Sometimes" "pullPolicy" --set image.pullPolicy=Sometimes
reject "metrics.port: 80" "minimum" --set metrics.port=80
reject "an unknown key" "additional properties" --set replicas=3
reject "an unknown nested key" "additional properties" --set image.name=x
reject "resources.limits.memory: lots" "memory" --set resources.limits.memory=lots
reject "podLabels overriding the selector" "/podLabels" --set 'podLabels.app\.kubernetes\.io/name=x'
reject "2 replicas without leader election" "leaderElection.enabled" --set replicaCount=2 --set leaderElection.enabled=false
reject "serviceAccount.create false without a name" "serviceAccount.name" --set serviceAccount.create=false

# 5. RBAC ----------------------------------------------------------------------------------------------------------
log "RBAC matches charts/rbac-expected.txt"
# One line per (kind, apiGroup, resource, verb, resourceName or *) of the ClusterRole and the Role, sorted. awk, so
# CI needs no YAML library: the templates write every rule as flow lists (`verbs: ["get", "list"]`); a rule this
# cannot read shows up as an UNPARSED line in the diff.
rbac_lines() {
  awk '
    function list(s) { sub(/^[^[]*\[/, "", s); sub(/\].*$/, "", s); gsub(/""/, "core", s); gsub(/[" ]/, "", s); return s }
    function flush(   i, j, l, q, ng, nr, nv, nn, G, R, V, N) {
      if (inrule && (kind == "ClusterRole" || kind == "Role")) {
        if (groups == "" || res == "" || verbs == "") { print "UNPARSED " kind " rule: " raw; }
        else {
          ng = split(groups, G, ","); nr = split(res, R, ","); nv = split(verbs, V, ",")
          nn = split(names == "" ? "*" : names, N, ",")
          for (i = 1; i <= ng; i++) for (j = 1; j <= nr; j++) for (l = 1; l <= nv; l++) for (q = 1; q <= nn; q++)
            print kind, G[i], R[j], V[l], N[q]
        }
      }
      inrule = 0; groups = res = verbs = names = raw = ""
    }
    /^---/ { flush(); kind = ""; inrules = 0; next }
    /^kind: / { kind = $2 }
    /^rules:/ { inrules = 1; next }
    inrules && /^[^ #]/ { flush(); inrules = 0 }
    inrules && /^  - / { flush(); inrule = 1 }
    inrules && inrule && !/^ *#/ { raw = raw $0 }
    inrules && inrule && /^(  - |    )apiGroups:/ { groups = list($0) }
    inrules && inrule && /^(  - |    )resources:/ { res = list($0) }
    inrules && inrule && /^(  - |    )resourceNames:/ { names = list($0) }
    inrules && inrule && /^(  - |    )verbs:/ { verbs = list($0) }
    END { flush() }
  ' "$1" | sort -u
}
rbac_lines "$HELM_TMP/default.yaml" > "$HELM_TMP/rbac-rendered.txt"
if ! diff -u <(grep -v '^#' charts/rbac-expected.txt | grep -v '^$') "$HELM_TMP/rbac-rendered.txt"; then
  fail "the rendered RBAC differs from charts/rbac-expected.txt (- expected, + rendered): update one or the other deliberately"
fi
if grep -qE '(^| )\*( |$)' <(cut -d' ' -f2-4 "$HELM_TMP/rbac-rendered.txt"); then
  fail "a rule uses a wildcard group, resource or verb"
fi

# 6. install.yaml is fresh ---------------------------------------------------------------------------------------
log "manifests/install.yaml is up to date"
HELM="$HELM" bash manifests/generate-install.sh "$HELM_TMP/install.yaml" >/dev/null
if ! diff -q manifests/install.yaml "$HELM_TMP/install.yaml" >/dev/null; then
  diff -u manifests/install.yaml "$HELM_TMP/install.yaml" | head -40 >&2 || true
  fail "manifests/install.yaml is stale: run \`bash manifests/generate-install.sh\` and commit the result"
fi
log "chart checks passed"
