#!/usr/bin/env bash
# Builds the control plane that the real-API-server tests of discovery/kubernetes start: the
# kube-apiserver of k8s.io/kubernetes and the etcd server of go.etcd.io/etcd/server/v3, at the
# versions pinned by the go.mod files beside this script, into a cache directory that later runs
# reuse (a build takes several minutes; a cached one nothing):
#
#   ${GROUPCACHE_K8S_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/groupcache-k8s/kube-apiserver-<version>-etcd-<version>}
#
# The tests look for the binaries in the same directory, and skip when they are not there.
# Prints the directory on success. Usage: build.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

# version MODFILE MODULE: the version of MODULE that MODFILE requires.
version() {
	sed -nE "s#^[[:space:]]*(require[[:space:]]+)?$2[[:space:]]+(v[^[:space:]]+).*#\\2#p" "$1" | head -1
}
k8s=$(version "$here/kube-apiserver/go.mod" k8s.io/kubernetes)
etcd=$(version "$here/etcd/go.mod" go.etcd.io/etcd/server/v3)
[ -n "$k8s" ] && [ -n "$etcd" ] || { echo "build.sh: pinned versions not found in the go.mod files" >&2; exit 1; }
dir=${GROUPCACHE_K8S_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/groupcache-k8s/kube-apiserver-$k8s-etcd-$etcd}
mkdir -p "$dir"

# build MODULEDIR PACKAGE BINARY LDFLAGS: builds PACKAGE of the module in MODULEDIR into
# $dir/BINARY, unless it is there already. It goes to a temporary name first, so an interrupted
# build leaves nothing the tests would take for a binary.
build() {
	if [ -x "$dir/$3" ]; then
		return
	fi
	echo "build.sh: building $2 into $dir/$3 (several minutes, once)" >&2
	local start=$SECONDS
	(cd "$1" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w $4" -o "$dir/$3.tmp" "$2")
	mv "$dir/$3.tmp" "$dir/$3"
	echo "build.sh: built $3 in $((SECONDS - start)) s" >&2
}

minor=${k8s#v1.}
minor=${minor%%.*}
base=k8s.io/component-base/version
build "$here/etcd" go.etcd.io/etcd/server/v3 etcd ""
build "$here/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver \
	"-X $base.gitVersion=$k8s -X $base.gitMajor=1 -X $base.gitMinor=$minor -X $base.gitTreeState=clean"
echo "$dir"
