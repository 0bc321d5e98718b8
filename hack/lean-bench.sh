#!/usr/bin/env bash
# lean-bench.sh — the teardown and idle-memory measurements of podbox and of
# its peer, each in throwaway test nodes that the benchmarks create and
# remove (needs root):
#
#   runtime/shim  BenchmarkRemove          `podbox sandbox rm -f` (and create) p50/p90
#   runtime/shim  BenchmarkIdleFootprint   shim and pause PSS/anon per sandbox, N = 1, 10, 100
#   integration/containerd BenchmarkPeerIdleFootprint
#                                          containerd-shim-runc-v2 and pause per CRI pod
#
#   hack/lean-bench.sh [rm|mem|peer]...    (default: all three)
set -euo pipefail
cd "$(dirname "$0")/.."
make build >/dev/null
export PODBOX_BIN_DIR=$PWD/bin
for what in "${@:-rm mem peer}"; do
	for w in $what; do
		case $w in
		rm) go test -run '^$' -bench 'Remove' -benchtime 60x ./runtime/shim/ ;;
		mem) go test -run '^$' -bench 'IdleFootprint' -benchtime 1x -timeout 30m ./runtime/shim/ ;;
		peer) go test -run '^$' -bench 'PeerIdleFootprint' -benchtime 1x -timeout 30m ./integration/containerd/ ;;
		*) echo "unknown measurement $w (want rm, mem or peer)" >&2; exit 2 ;;
		esac
	done
done
