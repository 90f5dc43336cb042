#!/usr/bin/env bash
# Re-pin the control plane to another Kubernetes release:
#   tests/controlplane/gen-gomod.sh v1.34.4 && (cd tests/controlplane && go mod tidy)
# k8s.io/kubernetes requires its staging modules (k8s.io/api, apimachinery, apiserver, ...)
# at v0.0.0 and replaces them with ./staging/src/...; a consumer must pin each one to the
# matching published v0.X.Y with its own replace. The list is derived from upstream's go.mod:
# modules in its replace block that point at ./staging/src/ and that it also requires.
# etcd is required at the version upstream pins (go mod tidy keeps it).
set -euo pipefail
K8S_VERSION=${1:?usage: gen-gomod.sh v1.X.Y}
STAGING_VERSION="v0.${K8S_VERSION#v1.}"
cd "$(dirname "$0")"
upstream=$(curl -fsS "https://proxy.golang.org/k8s.io/kubernetes/@v/${K8S_VERSION}.mod")
go_line=$(printf '%s\n' "$upstream" | awk '$1=="go"{print; exit}')
etcd=$(printf '%s\n' "$upstream" | awk '$1=="go.etcd.io/etcd/server/v3"{print $2; exit}')
staged=$(printf '%s\n' "$upstream" | awk '/^replace \(/{f=1;next} f&&/^\)/{f=0} f&&/=> \.\/staging\/src\//{print $1}')
required=$(printf '%s\n' "$upstream" | awk '/^require \(/{f=1;next} f&&/^\)/{f=0} f&&$2=="v0.0.0"{print $1}')
{
  echo "module stackscaler.dev/tests/controlplane"
  echo
  echo "$go_line"
  echo
  echo "require ("
  printf '\tgo.etcd.io/etcd/server/v3 %s\n' "$etcd"
  printf '\tk8s.io/component-base %s\n' "$STAGING_VERSION"
  printf '\tk8s.io/kubernetes %s\n' "$K8S_VERSION"
  echo ")"
  echo
  echo "// k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with"
  echo "// ./staging/src/...; consumers must pin them to the matching published v0.x tags."
  echo "replace ("
  for m in $staged; do
    if printf '%s\n' "$required" | grep -qx "$m"; then
      printf '\t%s => %s %s\n' "$m" "$m" "$STAGING_VERSION"
    fi
  done
  echo ")"
} > go.mod
echo "wrote go.mod for $K8S_VERSION, etcd $etcd ($(grep -c '=>' go.mod) replaces); now run: go mod tidy"
