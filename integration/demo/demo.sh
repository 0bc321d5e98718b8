#!/usr/bin/env bash
# make demo: one sandbox, two containers talking over localhost.
#
# Everything happens in a "demo node": a network namespace this script makes
# and removes, standing in for a cluster node, so the demo never rewires the
# machine it runs on. On a real node you would run the same podbox commands
# directly.
set -euo pipefail

BIN=${BIN:-$(cd "$(dirname "$0")/../../bin" && pwd)}
WORK=$(mktemp -d /tmp/podbox-demo.XXXXXX)
ROOT=$WORK/root
NODE=podbox-demo-$$
export PODBOX_ROOT=$ROOT
export PODBOX_CGROUP_PARENT=podbox-demo-$$

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
node() { nsenter --net=/run/netns/$NODE -- "$@"; }
podbox() { echo "\$ podbox $*" >&2; node "$BIN/podbox" "$@"; }

cleanup() {
	set +e
	for sb in $(node "$BIN/podbox" sandbox ls -q 2>/dev/null); do node "$BIN/podbox" sandbox rm -f "$sb" >/dev/null; done
	ip netns del "$NODE" 2>/dev/null
	for d in /sys/fs/cgroup/*/"$PODBOX_CGROUP_PARENT"; do rmdir "$d" 2>/dev/null; done
	rm -rf "$WORK"
}
trap cleanup EXIT

say "a node namespace for the demo, and a busybox image"
ip netns add "$NODE"
node ip link set lo up
mkdir -p "$WORK/rootfs/bin" "$WORK/rootfs/www" "$WORK/rootfs/etc" "$WORK/rootfs/proc" "$WORK/rootfs/dev" "$WORK/rootfs/sys" "$WORK/rootfs/tmp"
cp /bin/busybox "$WORK/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$WORK/rootfs/bin/$a"; done
echo "hello from container A, served on localhost:80" > "$WORK/rootfs/www/index.html"
echo "root:x:0:0:root:/:/bin/sh" > "$WORK/rootfs/etc/passwd"
echo "root:x:0:" > "$WORK/rootfs/etc/group"

# The root filesystem as a one-layer OCI image layout (no registry is
# reachable here; `podbox image pull` works the same from one).
oci_image() {
	local dir=$1 ref=$2 blobs=$1/blobs/sha256
	mkdir -p "$blobs"
	tar -C "$WORK/rootfs" --numeric-owner --owner=0 --group=0 -cf "$dir/layer.tar" .
	local layer size cfg csize man msize
	layer=$(sha256sum "$dir/layer.tar" | cut -d' ' -f1); size=$(stat -c %s "$dir/layer.tar")
	mv "$dir/layer.tar" "$blobs/$layer"
	printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["httpd","-f","-p","80","-h","/www"],"WorkingDir":"/www","ExposedPorts":{"80/tcp":{}}},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$layer" > "$dir/c"
	cfg=$(sha256sum "$dir/c" | cut -d' ' -f1); csize=$(stat -c %s "$dir/c"); mv "$dir/c" "$blobs/$cfg"
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' "$cfg" "$csize" "$layer" "$size" > "$dir/m"
	man=$(sha256sum "$dir/m" | cut -d' ' -f1); msize=$(stat -c %s "$dir/m"); mv "$dir/m" "$blobs/$man"
	printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s"}}]}' "$man" "$msize" "$ref" > "$dir/index.json"
	echo '{"imageLayoutVersion":"1.0.0"}' > "$dir/oci-layout"
}
oci_image "$WORK/image" localhost/demo/busybox:1
podbox image load -q -i "$WORK/image"
podbox image ls

say "create a sandbox: a pause process owning a network namespace on the podbox0 bridge"
SB=$(podbox sandbox create --name demo --hostname demo-pod)
echo "$SB"

say "container A, from the image: its command, a web server on port 80"
podbox run -d --sandbox demo --name web --image localhost/demo/busybox:1

say "container B, same sandbox: fetch http://localhost:80/"
echo "\$ podbox run --rm --sandbox demo --name fetch --image localhost/demo/busybox:1 -- wget -q -O - http://localhost:80/" >&2
# httpd in A may still be starting: retry for up to five seconds.
for i in $(seq 1 50); do
	if out=$(node "$BIN/podbox" run --rm --sandbox demo --name fetch --image localhost/demo/busybox:1 -- wget -q -O - http://localhost:80/ 2>&1); then
		break
	fi
	sleep 0.1
done
echo "B got: $out"

say "the sandbox"
podbox sandbox inspect demo
podbox ps --sandbox demo

say "remove everything"
podbox sandbox rm -f demo
podbox image rm localhost/demo/busybox:1
echo "left in $ROOT/sandboxes: $(ls "$ROOT/sandboxes" | wc -l), in $ROOT/images/layers: $(ls "$ROOT/images/layers" | wc -l)"
