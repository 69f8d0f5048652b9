#!/usr/bin/env bash
# Runs every test of every Go module in this repository, with the race detector.
# Usage: ./test.sh [extra go test flags, e.g. -short or -run Foo]
set -euo pipefail
cd "$(dirname "$0")"

# The etcd discovery tests start a real etcd server (Debian's etcd-server package).
if ! command -v etcd >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "== installing etcd-server for the etcd discovery tests"
	(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null) || true
fi
if ! command -v etcd >/dev/null 2>&1; then
	echo "== etcd not found: the etcd discovery tests are SKIPPED (install Debian's etcd-server to run them)"
	export GROUPCACHE_SKIP_ETCD=1
fi

# The status page's browser tests (status/chromiumtest) drive headless Chromium (Debian's chromium
# package) with chromedp.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "== installing chromium for the status page's browser tests"
	(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || true
fi
if ! command -v chromium >/dev/null 2>&1; then
	echo "== chromium not found: the status page's browser tests are SKIPPED (install Debian's chromium to run them)"
fi

# The Kubernetes discovery tests (discovery/kubernetes) start a real kube-apiserver and etcd, built
# from source once (about 5 minutes on 2 idle cores) into a cache directory that later runs reuse,
# by discovery/kubernetes/testdata/controlplane/build.sh. GROUPCACHE_SKIP_KUBE_APISERVER=1 skips
# them; so does a failed build.
if [ "${GROUPCACHE_SKIP_KUBE_APISERVER:-}" = 1 ]; then
	echo "== GROUPCACHE_SKIP_KUBE_APISERVER=1: the real-API-server tests of discovery/kubernetes are SKIPPED"
elif ! cpdir=$(discovery/kubernetes/testdata/controlplane/build.sh); then
	echo "== kube-apiserver or etcd could not be built: the real-API-server tests of discovery/kubernetes are SKIPPED"
	export GROUPCACHE_SKIP_KUBE_APISERVER=1
else
	echo "== kube-apiserver and etcd for the discovery/kubernetes tests: $cpdir"
fi

status=0
while IFS= read -r mod; do
	dir=$(dirname "$mod")
	echo "== module ${dir#./} =="
	if ! (cd "$dir" && go test -race -count=1 "$@" ./...); then
		status=1
	fi
done < <(find . -name go.mod -not -path '*/testdata/*' | sort)
exit $status
