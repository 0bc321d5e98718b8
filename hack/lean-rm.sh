#!/usr/bin/env bash
# lean-rm.sh — time `podbox sandbox create` and `podbox sandbox rm -f` in a
# throwaway node network namespace with its own state root and cgroup parent,
# and print p50/p90 of each. Everything it makes is removed on exit.
#
#   hack/lean-rm.sh [RUNS]        (needs root and `make build`)
set -euo pipefail
runs=${1:-30}
bin=$(cd "$(dirname "$0")/.." && pwd)/bin
tag=pbxlean-$$
root=$(mktemp -d /run/$tag.XXXX)
export PODBOX_ROOT=$root PODBOX_SHIM=$bin/containerd-shim-podbox-v1 PODBOX_PAUSE=$bin/podbox-pause PODBOX_CGROUP_PARENT=$tag
ip netns add "$tag"
cleanup() {
	for id in $(ls "$root/sandboxes" 2>/dev/null); do
		nsenter --net=/run/netns/$tag "$bin/podbox" sandbox rm -f "$id" >/dev/null 2>&1 || true
	done
	ip netns del "$tag" 2>/dev/null || true
	for d in /sys/fs/cgroup/*/"$tag" /sys/fs/cgroup/unified/"$tag"; do [ -d "$d" ] && rmdir "$d" 2>/dev/null || true; done
	rm -rf "$root"
}
trap cleanup EXIT
pb() { nsenter --net=/run/netns/$tag "$bin/podbox" "$@"; }
ms() { echo $(( ($(date +%s%N) - $1) / 1000 )); }
creates=() rms=()
for i in $(seq "$runs"); do
	t=$(date +%s%N); pb sandbox create --name "s$i" >/dev/null; creates+=("$(ms "$t")")
	sleep "${GAP:-0}"
	t=$(date +%s%N); pb sandbox rm -f "s$i" >/dev/null; rms+=("$(ms "$t")")
done
pct() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int((NR-1)*p+0.5)+1; printf "%.1f", a[i]/1000}'; }
echo "create p50 $(printf '%s\n' "${creates[@]}" | pct 0.5) ms  p90 $(printf '%s\n' "${creates[@]}" | pct 0.9) ms"
echo "rm -f  p50 $(printf '%s\n' "${rms[@]}" | pct 0.5) ms  p90 $(printf '%s\n' "${rms[@]}" | pct 0.9) ms"
