#!/usr/bin/env bash
# Runs every test of every Go module in this repository, with the race detector.
# Usage: ./test.sh [extra go test flags, e.g. -short or -run Foo]
set -euo pipefail
cd "$(dirname "$0")"

status=0
while IFS= read -r mod; do
	dir=$(dirname "$mod")
	echo "== module ${dir#./} =="
	if ! (cd "$dir" && go test -race -count=1 "$@" ./...); then
		status=1
	fi
done < <(find . -name go.mod -not -path '*/testdata/*' | sort)
exit $status
