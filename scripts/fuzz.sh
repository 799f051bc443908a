#!/usr/bin/env bash
# Runs every native Go fuzz target (func FuzzX(f *testing.F) in a _test.go
# file) for a short, fixed time each, one after the other, and fails if any
# of them finds a crasher. The failing input is written to the target's
# testdata/fuzz/FuzzX/ directory: commit it, with a regular test for the
# bug, so every later `go test` runs it again.
#
#   scripts/fuzz.sh [TIME]   TIME per target (Go duration or Nx), default 10s
#
#   FUZZ_PARALLEL=N          fuzzing workers per target (default 2)
#   FUZZ_ONLY=REGEXP         only the targets whose name matches
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
time=${1:-10s}
parallel=${FUZZ_PARALLEL:-2}
only=${FUZZ_ONLY:-.}

# "FuzzName ./pkg/dir" for every target in the tracked test files.
mapfile -t targets < <(
  git ls-files '*_test.go' 2>/dev/null | xargs grep -H -o -E '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' |
    sed -E 's#^(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]+)\(.*#\2 ./\1#' | sort -u
)
if ((${#targets[@]} == 0)); then
  echo "fuzz.sh: no fuzz targets found" >&2
  exit 1
fi

failed=()
began=$SECONDS
for t in "${targets[@]}"; do
  read -r name pkg <<<"$t"
  [[ $name =~ $only ]] || continue
  echo "fuzz.sh: $name in $pkg for $time"
  # -fuzzminimizetime bounds the shrinking of a crasher, so a failing run
  # also ends in a bounded time.
  corpus="${pkg#./}/testdata/fuzz/$name"
  before=$(ls "$corpus" 2>/dev/null | sort)
  out=$(mktemp)
  if go test -run='^$' -fuzz="^${name}\$" -fuzztime="$time" -fuzzminimizetime=10s \
    -parallel="$parallel" "$pkg" 2>&1 | tee "$out"; [ "${PIPESTATUS[0]}" -eq 0 ]; then
    rm -f "$out"
    continue
  fi
  # Go 1.26's fuzz coordinator can fail a run at the -fuzztime deadline
  # with a bare "context deadline exceeded" while a worker is still in a
  # call (go.dev/issue/75804, fixed in Go 1.27): no input failed and none
  # is written. Only that case is let through, and only when the target's
  # whole corpus (seeds and every input ever found) still passes.
  after=$(ls "$corpus" 2>/dev/null | sort)
  if [ "$before" = "$after" ] && grep -q '^    context deadline exceeded$' "$out" && ! grep -q 'Failing input written' "$out"; then
    echo "fuzz.sh: $name: the coordinator's deadline race (go.dev/issue/75804), no failing input; replaying its corpus"
    if go test -count=1 -run="^${name}\$" "$pkg"; then
      rm -f "$out"
      continue
    fi
  fi
  rm -f "$out"
  failed+=("$name ($pkg)")
done
echo "fuzz.sh: ${#targets[@]} target(s) in $((SECONDS - began)) s"
if ((${#failed[@]})); then
  echo "fuzz.sh: crashers found by: ${failed[*]} (inputs in the packages' testdata/fuzz/)" >&2
  exit 1
fi
