#!/usr/bin/env bash
# fuzz.sh FUZZTIME [PATTERN] — runs every fuzz target of the module (each
# func FuzzXxx in a _test.go file whose name matches the extended regexp
# PATTERN, default all) for FUZZTIME (a go test -fuzztime: 2s, 1m, 10000x).
# `make fuzz-short` and `make fuzz` call it.
#
# go test -fuzz takes one package and one target at a time and links the
# package's test binary again for each: 5 s for the CLI's, which links the
# Kubernetes types for FuzzPlayArgs. So each package's instrumented test
# binary is built once (go test -c -fuzz) and run once per target, from the
# package's directory and with go test's own corpus cache, exactly as go
# test -fuzz runs it.
#
# A failing input is written to the package's testdata/fuzz/FuzzXxx/ and the
# run fails: fix the bug and commit the input as its regression test (plain
# `go test ./...` runs every committed input). Temporary directories of the
# targets go to /dev/shm when it is a tmpfs: several targets write files at
# every input, fifty times faster there than on this disk.
#
# Go 1.26's fuzz coordinator can fail a target with "context deadline
# exceeded" as -fuzztime runs out on a busy machine, with no failing input
# (go.dev/issue/75804, fixed in Go 1.27): such a run is reported and not
# counted as a failure.
set -uo pipefail
cd "$(dirname "$0")/.."

fuzztime=${1:?usage: fuzz.sh FUZZTIME [PATTERN]}
pattern=${2:-.}
go=${GO:-go}

work=$(mktemp -d "$( [ -d /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}" )/podbox-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
export TMPDIR=$work

cache=$($go env GOCACHE)/fuzz
module=$($go list -m)
start=$SECONDS
failed=() flaked=() ran=0

for dir in $(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' | xargs -n1 dirname | sort -u); do
	targets=$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go | sed 's/^func //' | grep -E -- "$pattern" | sort)
	[ -n "$targets" ] || continue
	bin=$work/$(echo "$dir" | tr / _).test
	if ! $go test -c -fuzz . -o "$bin" "./$dir"; then
		failed+=("$dir (build)")
		continue
	fi
	for t in $targets; do
		ran=$((ran + 1))
		before=$(ls "$dir/testdata/fuzz/$t" 2>/dev/null)
		t0=$SECONDS
		out=$(cd "$dir" && "$bin" -test.run '^$' -test.fuzz "^$t\$" -test.fuzztime "$fuzztime" \
			-test.fuzzcachedir "$cache/$module/$dir" 2>&1)
		status=$?
		after=$(ls "$dir/testdata/fuzz/$t" 2>/dev/null)
		if [ $status -eq 0 ]; then
			echo "ok    $dir $t ($((SECONDS - t0)) s)"
		elif [ "$before" = "$after" ] && grep -q 'context deadline exceeded' <<<"$out"; then
			echo "flake $dir $t: context deadline exceeded, no failing input (go.dev/issue/75804)"
			flaked+=("$dir $t")
		else
			echo "FAIL  $dir $t"
			echo "$out" | grep -v '^fuzz: elapsed' | sed 's/^/      /'
			failed+=("$dir $t")
		fi
	done
done

echo "fuzz: $ran targets for $fuzztime each in $((SECONDS - start)) s; ${#failed[@]} failed, ${#flaked[@]} cut short by go.dev/issue/75804"
[ ${#failed[@]} -eq 0 ]
