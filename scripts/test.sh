#!/usr/bin/env bash
# Runs the whole test suite: installs what it needs, builds the test guest,
# vets, and runs every test (unit, integration against real qemu-img, QEMU,
# namespaces and nftables, and end-to-end against the built binary).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
scripts/install-deps.sh
if [[ -x scripts/build-test-guest.sh ]]; then
  scripts/build-test-guest.sh
fi
gofmt_out=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [[ -n $gofmt_out ]]; then
  echo "gofmt would change:"; echo "$gofmt_out"; exit 1
fi
go vet ./...
go test -count=1 -timeout 50m "$@" ./...
