# shellcheck shell=bash
# Sourced by e2e/run.sh: builds the control-plane tools from Go modules (no release downloads are possible here) into
# "$CACHE/bin/<tool>-<version>/". A tool that is already there is reused, so only the first run pays for the builds.
#
# Needs: CACHE, ETCD_VERSION, KUBE_VERSION, KWOK_VERSION, HELM_VERSION, and the functions log/die from run.sh.
# Every build is CGO_ENABLED=0 and -trimpath, writes into a temporary directory and moves it into place only when
# complete, so an interrupted build is never mistaken for a cached one.

export GOMODCACHE="$CACHE/go/mod"
export GOCACHE="$CACHE/go/build"
export CGO_ENABLED=0
# GOFLAGS from the environment (e.g. -mod=vendor) must not leak into these builds.
export GOFLAGS=-mod=mod

# go mod download -json <module>@<version>: prints one field of the answer (Dir, GoMod, Info).
go_mod_field() {
  local module=$1 field=$2
  go mod download -json "$module" | sed -n "s/^\t\"$field\": \"\(.*\)\",\{0,1\}$/\1/p"
}

# Time of a module version from the proxy's .info (RFC 3339), used as the reproducible build date.
go_mod_time() {
  sed -n 's/.*"Time": *"\([^"]*\)".*/\1/p' "$(go_mod_field "$1" Info)"
}

# Moves a finished build directory into place.
publish_dir() {
  local tmp=$1 dest=$2
  rm -rf "$dest"
  mv "$tmp" "$dest"
}

# etcd from go.etcd.io/etcd/server/v3 through a wrapper module whose main calls etcdmain.Main, exactly what the
# upstream server/main.go does. The server's go.mod replaces its sibling modules (api, client/pkg, client/v2,
# client/v3, pkg, raft) with "../<dir>" paths, which only work inside the etcd repository; the wrapper pins each of
# them to the version the server's go.mod requires instead, generated from that go.mod.
build_etcd() {
  local dest="$CACHE/bin/etcd-$ETCD_VERSION"
  if [ -x "$dest/etcd" ]; then return 0; fi
  log "building etcd $ETCD_VERSION from go.etcd.io/etcd/server/v3"
  local src="$CACHE/src/etcd-$ETCD_VERSION" gomod
  gomod=$(go_mod_field "go.etcd.io/etcd/server/v3@$ETCD_VERSION" GoMod) || die "cannot download etcd $ETCD_VERSION"
  rm -rf "$src" && mkdir -p "$src"
  {
    echo "module syncd.dev/e2e/etcd"
    echo
    sed -n 's/^go \(.*\)$/go \1/p' "$gomod"
    echo
    echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
    echo
    echo "replace ("
    # "<module> => ../<dir>" becomes "<module> => <module> <version the server requires>".
    local module version
    while read -r module; do
      version=$(awk -v m="$module" '$1 == m && $2 ~ /^v/ {print $2; exit}' "$gomod")
      [ -n "$version" ] || die "etcd's go.mod replaces $module but does not require it"
      printf '\t%s => %s %s\n' "$module" "$module" "$version"
    done < <(sed -n 's#^[[:space:]]*\([^[:space:]]*\) => \.\./.*#\1#p' "$gomod")
    echo ")"
  } > "$src/go.mod"
  cat > "$src/main.go" <<'GO'
// Command etcd: the etcd server, as go.etcd.io/etcd/server/v3's own main package builds it.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
GO
  local tmp="$dest.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  (cd "$src" && go mod tidy && go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" .) || die "etcd build failed"
  publish_dir "$tmp" "$dest"
}

# kube-apiserver, kube-controller-manager, kube-scheduler and kubectl from k8s.io/kubernetes. That module's go.mod
# replaces every staging module (k8s.io/api, k8s.io/client-go, ...) with ./staging/src/k8s.io/<x> and requires them
# at v0.0.0; outside the repository each must point at its published v0.<minor>.<patch> instead. The replace list is
# generated from this version's go.mod, since the set of staging modules changes between releases.
# Build flags follow hack/lib/golang.sh: tags selinux,notest, -trimpath, "-s -w" and the version -X flags of
# hack/lib/version.sh, so /version reports the real gitVersion (helm and clients parse it).
build_kubernetes() {
  local dest="$CACHE/bin/kubernetes-$KUBE_VERSION"
  if [ -x "$dest/kube-apiserver" ] && [ -x "$dest/kube-controller-manager" ] &&
    [ -x "$dest/kube-scheduler" ] && [ -x "$dest/kubectl" ]; then
    return 0
  fi
  log "building kubernetes $KUBE_VERSION (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl)"
  local src="$CACHE/src/kubernetes-$KUBE_VERSION" gomod staging_version
  gomod=$(go_mod_field "k8s.io/kubernetes@$KUBE_VERSION" GoMod) || die "cannot download kubernetes $KUBE_VERSION"
  staging_version="v0.${KUBE_VERSION#v1.}" # v1.33.13 -> v0.33.13
  rm -rf "$src" && mkdir -p "$src"
  local replaces
  replaces=$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/.*#\1#p' "$gomod")
  [ -n "$replaces" ] || die "no staging replace directives found in kubernetes $KUBE_VERSION's go.mod"
  {
    echo "module syncd.dev/e2e/kubernetes"
    echo
    sed -n 's/^go \(.*\)$/go \1/p' "$gomod"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    local module
    for module in $replaces; do
      printf '\t%s => %s %s\n' "$module" "$module" "$staging_version"
    done
    echo ")"
  } > "$src/go.mod"
  local commands=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
  local packages=() c
  for c in "${commands[@]}"; do packages+=("k8s.io/kubernetes/cmd/$c"); done

  local minor=${KUBE_VERSION#v1.}
  minor=${minor%%.*}
  local build_date
  build_date=$(go_mod_time "k8s.io/kubernetes@$KUBE_VERSION")
  [ -n "$build_date" ] || build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local ldflags="-s -w" pkg
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ldflags+=" -X '$pkg.gitVersion=$KUBE_VERSION'"
    ldflags+=" -X '$pkg.gitMajor=1'"
    ldflags+=" -X '$pkg.gitMinor=$minor'"
    # The module proxy does not say which commit a tag is; KUBE_GIT_COMMIT may carry it.
    ldflags+=" -X '$pkg.gitCommit=${KUBE_GIT_COMMIT:-}'"
    ldflags+=" -X '$pkg.gitTreeState=clean'"
    ldflags+=" -X '$pkg.buildDate=$build_date'"
  done

  local tmp="$dest.tmp.$$" get_args=()
  for pkg in "${packages[@]}"; do get_args+=("$pkg@$KUBE_VERSION"); done
  rm -rf "$tmp" && mkdir -p "$tmp"
  (
    cd "$src" &&
      go get "${get_args[@]}" &&
      go build -trimpath -tags selinux,notest -ldflags "all=$ldflags" -o "$tmp/" "${packages[@]}"
  ) || die "kubernetes build failed"
  publish_dir "$tmp" "$dest"
}

# kwok, a released tag, with the version -X flag of its hack/releases.sh.
build_kwok() {
  local dest="$CACHE/bin/kwok-$KWOK_VERSION"
  if [ -x "$dest/kwok" ]; then return 0; fi
  log "building kwok $KWOK_VERSION"
  local tmp="$dest.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  GOBIN="$tmp" go install -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" || die "kwok build failed"
  publish_dir "$tmp" "$dest"
}

# helm v3 with the version -X flags of its Makefile (version, tree state, and the Kubernetes version that
# `helm template` and `helm lint` assume, derived from the client-go it is built with). Installed as
# "$CACHE/bin/helm", where charts/check.sh looks for (and builds) the same version, so the two share one binary.
build_helm() {
  local dest="$CACHE/bin/helm"
  if [ -x "$dest" ] && [ "$("$dest" version --template '{{.Version}}' 2>/dev/null)" = "$HELM_VERSION" ]; then
    return 0
  fi
  log "building helm $HELM_VERSION"
  local gomod client_go minor
  gomod=$(go_mod_field "helm.sh/helm/v3@$HELM_VERSION" GoMod) || die "cannot download helm $HELM_VERSION"
  client_go=$(awk '$1 == "k8s.io/client-go" {print $2; exit}' "$gomod") # v0.<minor>.<patch>
  minor=${client_go#v0.}
  minor=${minor%%.*}
  [ -n "$minor" ] || die "cannot find the client-go version of helm $HELM_VERSION"
  # The Makefile's major is "first number of the client-go version + 1", i.e. 1.
  local ldflags="-s -w"
  ldflags+=" -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1"
  ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
  ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1"
  ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
  local tmp="$CACHE/bin/helm.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  GOBIN="$tmp" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" ||
    die "helm build failed"
  mv -f "$tmp/helm" "$dest"
  rm -rf "$tmp"
}
