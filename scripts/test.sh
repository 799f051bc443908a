#!/usr/bin/env bash
# Runs the test suite: installs what it needs, builds the test guest, checks
# formatting, vets, runs every test and the fuzz targets for a short time.
#
#   scripts/test.sh          the whole suite (what .ci/run runs): unit,
#                            integration against real qemu-img, QEMU guests,
#                            namespaces and nftables, end to end against the
#                            built binary, the Debian package installed
#                            and removed. A test that skips fails the run
#                            unless .ci/allowed-skips lists it with a reason.
#   scripts/test.sh -short   the fast tier: real SQLite and qemu-img, no
#                            guests, no fuzzing (under 2 minutes on 2 cores).
#
# Extra arguments after -short (or alone) go to `go test`, e.g. -run X.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
short=()
if [[ ${1:-} == -short ]]; then short=(-short); shift; fi

scripts/install-deps.sh
scripts/build-web.sh # the web console's JavaScript, embedded by the Go build
if ((${#short[@]} == 0)); then
  scripts/build-test-guest.sh
fi
gofmt_out=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [[ -n $gofmt_out ]]; then
  echo "gofmt would change:"; echo "$gofmt_out"; exit 1
fi
go vet ./...
go vet -tags debpackage ./e2e/deb # built only with its tag (see below)
mkdir -p bin
go build -o bin/testreport ./scripts/testreport

began=$SECONDS
report=$(mktemp)
trap 'rm -f "$report"' EXIT
if ((${#short[@]})); then
  go test -json -count=1 -short -timeout 10m "$@" ./... | bin/testreport | tee "$report"
else
  # Guests boot under TCG: 2 packages at a time, each running its parallel
  # tests 2 at a time, keeps 2 cores busy without starving a guest's boot.
  {
    status=0
    go test -json -count=1 -p 2 -parallel 2 -timeout 45m "$@" ./... || status=$?
    # The Debian package (e2e/deb, -tags debpackage): built, installed on
    # this host, its unit's command line run, removed. Alone and after the
    # rest: its postinst makes the group stagehand for a while, which
    # changes the modes the other tests' daemons give their files.
    if (($# == 0)); then
      go test -json -count=1 -tags debpackage -timeout 5m ./e2e/deb || status=$?
    fi
    exit $status
  } | bin/testreport -allowed .ci/allowed-skips | tee "$report"
  if [[ -x scripts/fuzz.sh ]] && (($# == 0)); then
    scripts/fuzz.sh 10s
  fi
fi
echo "test.sh: $((SECONDS - began)) s of tests"
# The test count stays the last line, after the fuzzers' output.
tail -n 1 "$report"
