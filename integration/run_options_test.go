package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/podbox/podbox/sandbox"
)

// The options of issue #15 on the CLI: mounts and named volumes, limits on a
// container and on a whole sandbox, a read-only root, capabilities. Each
// test checks what a container sees or what the kernel enforces, through
// the real CLI, shim and runc in the test's own node.

// cgroupFile reads the file of the cgroup rel (a path below each
// hierarchy's root) that holds a limit: v1file in the v1 hierarchy of
// controller ctrl, else v2file in the v2 tree.
func cgroupFile(t *testing.T, rel, ctrl, v1file, v2file string) string {
	t.Helper()
	ms, err := sandbox.HostCgroupMounts()
	if err != nil {
		t.Fatal(err)
	}
	path := ""
	for _, m := range ms {
		if !m.V2 && slices.Contains(m.Controllers, ctrl) {
			path = filepath.Join(m.Path, rel, v1file)
		}
	}
	for _, m := range ms {
		if m.V2 && path == "" {
			path = filepath.Join(m.Path, rel, v2file)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("cgroup %s: %v", rel, err)
	}
	return strings.TrimSpace(string(b))
}

// cpuLimit is the cgroup's CFS quota and period as "QUOTA PERIOD" (v2's
// cpu.max), from v1's two files where the host has those.
func cpuLimit(t *testing.T, rel string) string {
	t.Helper()
	period := cgroupFile(t, rel, "cpu", "cpu.cfs_period_us", "cpu.max")
	if strings.Contains(period, " ") {
		return period // v2: cpu.max already
	}
	return cgroupFile(t, rel, "cpu", "cpu.cfs_quota_us", "") + " " + period
}

// containerConfig is the config run recorded, as podbox inspect shows it.
func (n *cliNode) containerConfig(ref string) map[string]any {
	n.t.Helper()
	var view map[string]any
	if err := json.Unmarshal([]byte(n.mustRun("inspect", ref)), &view); err != nil {
		n.t.Fatalf("inspect %s: %v", ref, err)
	}
	cfg, _ := view["config"].(map[string]any)
	return cfg
}

func TestRunMounts(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	n.sandbox("--name", "pod")
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "hello"), []byte("from the host\n"), 0o644)
	run := func(args ...string) (int, string, string) {
		return n.run(append([]string{"run", "--rm", "--sandbox", "pod", "--rootfs", fs}, args...)...)
	}

	// A bind: the host's files inside, and what the container writes on the host.
	if code, out, stderr := run("-v", host+":/data", "--", "sh", "-c", "cat /data/hello && echo written > /data/new"); code != 0 || out != "from the host\n" {
		t.Errorf("-v bind: exit %d, %q, %s", code, out, stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(host, "new")); string(b) != "written\n" {
		t.Errorf("the container's write is not on the host: %q", b)
	}
	// :ro and readonly refuse writes, and the host file stays as it was.
	for _, flag := range [][]string{{"-v", host + ":/data:ro"}, {"--mount", "type=bind,src=" + host + ",dst=/data,readonly"}} {
		code, _, stderr := run(append(flag, "--", "sh", "-c", "cat /data/hello >/dev/null && echo changed > /data/hello")...)
		if code == 0 || !strings.Contains(stderr, "Read-only file system") {
			t.Errorf("%v: write: exit %d, %q; want Read-only file system", flag, code, stderr)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(host, "hello")); string(b) != "from the host\n" {
		t.Errorf("a read-only mount let the host file change: %q", b)
	}
	// -v makes a missing host path, as docker does; --mount refuses it.
	missing := filepath.Join(host, "made", "by", "v")
	if code, _, stderr := run("-v", missing+":/m", "--", "ls", "/m"); code != 0 {
		t.Errorf("-v with a missing host path: %s", stderr)
	}
	if st, err := os.Stat(missing); err != nil || !st.IsDir() {
		t.Errorf("-v did not make the host directory: %v", err)
	}
	code, out, stderr := run("--mount", "type=bind,src="+host+"/nope,dst=/x", "--", "true")
	assertOneLineError(t, code, stderr, "--mount", host+"/nope does not exist")
	for _, bad := range [][]string{{"-v", "rel/dir:/x"}, {"--mount", "type=tmpfs,dst=/x,frob=1"}, {"--memory", "12q"}, {"--cpus", "0"}, {"--cap-add", "BOGUS"}} {
		code, out2, stderr := run(append(bad, "--", "true")...)
		assertOneLineError(t, code, stderr, bad[0], bad[1])
		out += out2
	}
	if out != "" || n.mustRun("ps", "-aq") != "" {
		t.Errorf("bad input printed %q or left a container", out)
	}

	// A tmpfs with docker's options: its size and mode, and no more room
	// than the size.
	out = n.mustRun("run", "--rm", "--sandbox", "pod", "--rootfs", fs, "--mount", "type=tmpfs,target=/scratch,tmpfs-size=1m,tmpfs-mode=1770",
		"--", "sh", "-c", "grep ' /scratch ' /proc/mounts; stat -c %a /scratch; dd if=/dev/zero of=/scratch/f bs=1k count=2048 2>&1; echo dd=$?")
	for _, want := range []string{"tmpfs /scratch tmpfs rw,nosuid,nodev,noexec", "size=1024k", "mode=1770", "\n1770\n", "No space left", "dd=1"} {
		if !strings.Contains(out, want) {
			t.Errorf("tmpfs mount: %q lacks %q", out, want)
		}
	}

	// inspect shows what was asked for.
	n.mustRun("run", "-d", "--sandbox", "pod", "--rootfs", fs, "--name", "shown", "-v", host+":/data:ro",
		"--mount", "type=tmpfs,dst=/t,tmpfs-size=64k", "--", "sleep", "3600")
	b, _ := json.Marshal(n.containerConfig("shown")["mounts"])
	var mounts []sandbox.Mount
	json.Unmarshal(b, &mounts)
	want := []sandbox.Mount{
		{Type: "bind", Source: host, Destination: "/data", ReadOnly: true, Options: []string{"rbind", "rprivate"}},
		{Type: "tmpfs", Destination: "/t", Options: []string{"size=65536"}},
	}
	if fmt.Sprint(mounts) != fmt.Sprint(want) {
		t.Errorf("inspect's mounts %s, want %+v", b, want)
	}
}

func TestVolumes(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	// Registered first, so that it runs after the sandbox's removal: a test
	// that fails midway leaves no volume to the leak check.
	t.Cleanup(func() { n.run("volume", "rm", "-f", "data", "other") })
	n.sandbox("--name", "pod")
	if out := n.mustRun("volume", "ls", "-q"); out != "" {
		t.Fatalf("volumes before the test: %q", out)
	}

	// -v NAME makes the volume on first use; a second container of the
	// sandbox reads what the first wrote.
	n.mustRun("run", "--sandbox", "pod", "--rootfs", fs, "--name", "writer", "-v", "data:/data", "--", "sh", "-c", "echo shared > /data/f")
	if out := n.mustRun("run", "--rm", "--sandbox", "pod", "--rootfs", fs, "--mount", "type=volume,src=data,dst=/vol,ro", "--", "cat", "/vol/f"); out != "shared\n" {
		t.Errorf("reader got %q, want what the writer wrote", out)
	}
	var vols []struct {
		Name, Mountpoint string
		UsedBy           []string
	}
	if err := json.Unmarshal([]byte(n.mustRun("volume", "ls", "-o", "json")), &vols); err != nil || len(vols) != 1 ||
		vols[0].Name != "data" || !slices.Equal(vols[0].UsedBy, []string{"writer"}) {
		t.Fatalf("volume ls: %+v %v", vols, err)
	}
	if b, err := os.ReadFile(filepath.Join(vols[0].Mountpoint, "f")); err != nil || string(b) != "shared\n" {
		t.Errorf("the volume's directory on the host: %q %v", b, err)
	}
	if ls := n.mustRun("volume", "ls"); !strings.Contains(ls, "data") || !strings.Contains(ls, "writer") {
		t.Errorf("volume ls:\n%s", ls)
	}

	// In use by the stopped writer: refused, -f too, naming it; nothing gone.
	for _, args := range [][]string{{"volume", "rm", "data"}, {"volume", "rm", "-f", "data"}} {
		code, _, stderr := n.run(args...)
		assertOneLineError(t, code, stderr, `volume "data"`, `in use by container "writer"`)
	}
	if _, err := os.Stat(filepath.Join(vols[0].Mountpoint, "f")); err != nil {
		t.Errorf("a refused rm removed data: %v", err)
	}
	// volume create and rm of an unused one; rm -f of a missing one is fine.
	if out := n.mustRun("volume", "create", "other"); out != "other\n" {
		t.Errorf("volume create printed %q", out)
	}
	n.mustRun("volume", "rm", "other")
	n.mustRun("volume", "rm", "-f", "other")
	code, _, stderr := n.run("volume", "rm", "other")
	assertOneLineError(t, code, stderr, `volume "other"`, "no such volume")

	// Once the container is gone, so can the volume be, data and all.
	n.mustRun("rm", "writer")
	n.mustRun("volume", "rm", "data")
	if out := n.mustRun("volume", "ls", "-q"); out != "" {
		t.Errorf("volume ls -q after rm: %q", out)
	}
	if _, err := os.Stat(filepath.Dir(vols[0].Mountpoint)); !os.IsNotExist(err) {
		t.Errorf("the volume's directory remains: %v", err)
	}
}

func TestRunReadOnly(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	n.sandbox("--name", "pod", "--hostname", "rohost")
	code, _, stderr := n.run("run", "--rm", "--sandbox", "pod", "--rootfs", fs, "--read-only", "--", "touch", "/newfile")
	if code == 0 || !strings.Contains(stderr, "Read-only file system") {
		t.Errorf("write to / of a --read-only container: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(fs, "newfile")); !os.IsNotExist(err) {
		t.Errorf("the write reached the rootfs: %v", err)
	}
	// The sandbox's /etc files, /dev/shm and mounts keep working.
	out := n.mustRun("run", "--rm", "--sandbox", "pod", "--rootfs", fs, "--read-only", "--mount", "type=tmpfs,dst=/work", "--",
		"sh", "-c", "cat /etc/hosts /etc/hostname && echo a > /dev/shm/x && echo b > /work/y && cat /dev/shm/x /work/y")
	for _, want := range []string{"localhost", "rohost", "a\nb\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("read-only container's output %q lacks %q", out, want)
		}
	}
	// Without the flag the same write works: the refusal above is the flag's.
	n.mustRun("run", "--rm", "--sandbox", "pod", "--rootfs", fs, "--", "sh", "-c", "touch /newfile && rm /newfile")
}

func TestResourcesContainerMemory(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	sb := n.sandbox("--name", "pod")
	// dd's 32 MiB buffer is past the limit: the kernel kills it.
	code, _, stderr := n.run("run", "--rm", "--sandbox", "pod", "--rootfs", fs, "--memory", "16m", "--", "dd", "if=/dev/zero", "of=/dev/null", "bs=32M", "count=1")
	if code != 137 {
		t.Errorf("dd of 32 MiB under --memory 16m: exit %d (%s), want 137 (OOM-killed)", code, stderr)
	}
	// Under a limit above it, it runs to its end.
	if code, _, stderr := n.run("run", "--rm", "--sandbox", "pod", "--rootfs", fs, "--memory", "64Mi", "--", "dd", "if=/dev/zero", "of=/dev/null", "bs=32M", "count=1"); code != 0 {
		t.Errorf("dd of 32 MiB under --memory 64Mi: exit %d, %s", code, stderr)
	}
	cid := strings.TrimSpace(n.mustRun("run", "-d", "--sandbox", "pod", "--rootfs", fs, "--name", "capped", "--memory", "16m", "--", "sleep", "3600"))
	if got := cgroupFile(t, n.cgroup+"/"+sb+"/"+cid, "memory", "memory.limit_in_bytes", "memory.max"); got != "16777216" {
		t.Errorf("the container's cgroup memory limit = %s, want 16777216", got)
	}
	if res, _ := n.containerConfig("capped")["resources"].(map[string]any); res["memory"] != float64(16<<20) {
		t.Errorf("inspect's resources: %v", res)
	}
}

func TestResourcesCPUsAndPids(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	sb := n.sandbox("--name", "pod")
	cid := strings.TrimSpace(n.mustRun("run", "-d", "--sandbox", "pod", "--rootfs", fs, "--name", "capped", "--cpus", "0.5", "--pids-limit", "5", "--", "sleep", "3600"))
	cg := n.cgroup + "/" + sb + "/" + cid
	if got := cpuLimit(t, cg); got != "50000 100000" {
		t.Errorf("the container's CFS quota and period = %q, want 50000 100000", got)
	}
	if got := cgroupFile(t, cg, "pids", "pids.max", "pids.max"); got != "5" {
		t.Errorf("pids.max = %q, want 5", got)
	}
	if res, _ := n.containerConfig("capped")["resources"].(map[string]any); res["cpus"] != 0.5 || res["pidsLimit"] != float64(5) {
		t.Errorf("inspect's resources: %v", res)
	}
	// Forks past the limit fail; without it the same loop completes.
	loop := "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait; echo done"
	code, out, stderr := n.run("run", "--rm", "--sandbox", "pod", "--rootfs", fs, "--pids-limit", "5", "--", "sh", "-c", loop)
	if code == 0 || out == "done\n" || !strings.Contains(stderr, "fork") {
		t.Errorf("8 children under --pids-limit 5: exit %d, %q, %q; want a failed fork", code, out, stderr)
	}
	if out := n.mustRun("run", "--rm", "--sandbox", "pod", "--rootfs", fs, "--", "sh", "-c", loop); out != "done\n" {
		t.Errorf("8 children without a limit: %q", out)
	}
}

func TestRunCapabilities(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	n.sandbox("--name", "pod")
	run := func(args ...string) (int, string, string) {
		return n.run(append([]string{"run", "--rm", "--sandbox", "pod", "--rootfs", fs}, args...)...)
	}
	chown := []string{"--", "sh", "-c", "f=$(mktemp) && chown 1:1 $f && rm $f && echo chowned"}
	if code, out, stderr := run(chown...); code != 0 || out != "chowned\n" {
		t.Fatalf("chown with the default capabilities: %d %q %s", code, out, stderr)
	}
	for _, drop := range [][]string{{"--cap-drop", "ALL"}, {"--cap-drop", "chown"}, {"--cap-drop", "CAP_CHOWN"}} {
		code, _, stderr := run(append(drop, chown...)...)
		if code == 0 || !strings.Contains(stderr, "Operation not permitted") {
			t.Errorf("chown with %v: exit %d, %q; want Operation not permitted", drop, code, stderr)
		}
	}
	if code, out, stderr := run(append([]string{"--cap-drop", "ALL", "--cap-add", "Chown"}, chown...)...); code != 0 || out != "chowned\n" {
		t.Errorf("chown with --cap-drop ALL --cap-add Chown: %d %q %s", code, out, stderr)
	}
	// The sets as the kernel has them: none at all, or every capability.
	caps := func(args ...string) string {
		_, out, _ := run(append(args, "--", "grep", "-E", "^Cap(Eff|Prm|Bnd|Inh|Amb)", "/proc/self/status")...)
		return out
	}
	if out := caps("--cap-drop", "ALL"); strings.Count(out, "0000000000000000") != 5 {
		t.Errorf("--cap-drop ALL:\n%s", out)
	}
	// ALL is every capability podbox has itself: its bounding set, which
	// on some hosts lacks one or two.
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	_, bnd, _ := strings.Cut(string(status), "CapBnd:\t")
	bnd, _, _ = strings.Cut(bnd, "\n")
	out := caps("--cap-add", "ALL")
	for _, set := range []string{"CapEff", "CapPrm", "CapBnd"} {
		if !strings.Contains(out, set+":\t"+bnd) {
			t.Errorf("--cap-add ALL: %s is not the bounding set %s:\n%s", set, bnd, out)
		}
	}
	if !strings.Contains(out, "CapInh:\t0000000000000000") || !strings.Contains(out, "CapAmb:\t0000000000000000") {
		t.Errorf("--cap-add ALL: inheritable or ambient capabilities:\n%s", out)
	}
}

// A sandbox's limits are on its cgroup, above its containers': the sum of
// the containers is held to them.
func TestResourcesSandbox(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	sb := n.sandbox("--name", "pod", "--memory", "32m", "--cpus", "0.5")
	if res, _ := n.inspect("pod")["resources"].(map[string]any); res["memory"] != float64(32<<20) || res["cpus"] != 0.5 {
		t.Errorf("sandbox inspect's resources: %v", res)
	}
	cg := n.cgroup + "/" + sb
	if got := cgroupFile(t, cg, "memory", "memory.limit_in_bytes", "memory.max"); got != "33554432" {
		t.Errorf("the sandbox cgroup's memory limit = %s, want 33554432", got)
	}
	if got := cpuLimit(t, cg); got != "50000 100000" {
		t.Errorf("the sandbox cgroup's CFS quota and period = %q", got)
	}
	dd := []string{"run", "--rm", "--sandbox", "pod", "--rootfs", fs, "--", "dd", "if=/dev/zero", "of=/dev/null", "bs=20M", "count=1"}
	// 20 MiB alone fits in the sandbox's 32.
	if code, _, stderr := n.run(dd...); code != 0 {
		t.Fatalf("20 MiB in a 32 MiB sandbox: exit %d, %s", code, stderr)
	}
	// Another container holds 20 MiB (a tmpfs file is charged to it): now
	// the same 20 MiB is past the sandbox's limit, though neither container
	// has one of its own.
	n.mustRun("run", "-d", "--sandbox", "pod", "--rootfs", fs, "--name", "holder", "--",
		"sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=20 && echo filled && exec sleep 3600")
	waitFor(t, func() bool { return strings.Contains(n.mustRun("logs", "holder"), "filled") })
	if code, _, stderr := n.run(dd...); code != 137 {
		t.Errorf("20 MiB beside a container holding 20 MiB in a 32 MiB sandbox: exit %d (%s), want 137 (OOM-killed)", code, stderr)
	}
	if ps := n.mustRun("ps"); !strings.Contains(ps, "holder") {
		t.Errorf("the holder did not survive the allocation beside it:\n%s", n.mustRun("ps", "-a"))
	}
}

// The options apply the same to a container of an image, whose root the
// shim mounts as an overlay: read-only, with a volume and a limit.
func TestRunOptionsImage(t *testing.T) {
	n := newCLINode(t)
	reg := newTestRegistry(t, n)
	ref := reg.push(t, "team/app:1", appImage(t))
	// Cleanups run last first: the sandbox goes, then the volume, then
	// the image.
	t.Cleanup(func() { n.pruneAll("after the test") })
	t.Cleanup(func() { n.run("volume", "rm", "-f", "appdata") })
	sb := n.sandbox("--name", "pod")
	code, out, stderr := n.run("run", "--rm", "--sandbox", "pod", "--image", ref, "-u", "0", "--read-only", "-v", "appdata:/data",
		"--entrypoint", "/bin/sh", "--", "-c", "cat /app/hello.txt; echo kept > /data/f; cat /data/f; touch /app/new")
	if code == 0 || out != "hello from the app layer\nkept\n" || !strings.Contains(stderr, "Read-only file system") {
		t.Errorf("--read-only image container with a volume: exit %d, %q, %q", code, out, stderr)
	}
	cid := strings.TrimSpace(n.mustRun("run", "-d", "--sandbox", "pod", "--image", ref, "--memory", "8m", "--entrypoint", "sleep", "--", "3600"))
	if got := cgroupFile(t, n.cgroup+"/"+sb+"/"+cid, "memory", "memory.limit_in_bytes", "memory.max"); got != "8388608" {
		t.Errorf("memory limit of an image container's cgroup = %s", got)
	}
}
