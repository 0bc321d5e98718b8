package containerd

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/podbox/podbox/integration/leakcheck"
	"github.com/podbox/podbox/integration/testnode"
)

func TestMain(m *testing.M) { testnode.Main(m) }

// TestHarnessRuncPod proves the harness with runc pods (not podbox) on
// containerd 1.6 and 2.x: a locally built busybox image serves as app and
// sandbox image, CRI runs a pod on the CNI bridge, an httpd container and a
// client container share its localhost, the node reaches the pod's address,
// and once the pod is removed nothing of it remains (netns pin, veth, lease,
// mounts, cgroups, processes).
func TestHarnessRuncPod(t *testing.T) {
	t.Run("containerd-1.6", func(t *testing.T) { testRuncPod(t, false) })
	t.Run("containerd-2", func(t *testing.T) { testRuncPod(t, true) })
}

func testRuncPod(t *testing.T, v2 bool) {
	start := time.Now()
	node := testnode.New(t)
	const ref = "docker.io/podbox/busybox:test"
	image := BusyboxImage(t, ref)

	cgroupParent := fmt.Sprintf("podbox-harness-%d-%t", os.Getpid(), v2)
	// Registered before leakcheck so it runs after it: the parent is
	// node-level (leakcheck judges what is below it), but the test made it.
	t.Cleanup(func() { removeCgroupParent(t, cgroupParent) })
	netnsBefore := listDir("/var/run/netns")
	leakcheck.Check(t, leakcheck.Options{
		Node:         node,
		AllowLinks:   []string{CNIBridge}, // the node's bridge outlives its pods, as on a real node
		CgroupParent: cgroupParent,
	})

	var opts Options
	opts.V2 = v2
	opts.SandboxImage = ref
	if v2 {
		opts.Binary = V2Binary(t) // outside the timing: a cold build takes a minute
		start = time.Now()
	}
	d := Start(t, node, opts)
	t.Logf("containerd %s ready in %s (socket %s)", d.Opts.Binary, time.Since(start).Round(time.Millisecond), d.Address)
	if out, err := d.Ctr("version"); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("ctr version:\n%s", out)
	}
	d.ImportImage(t, CRINamespace, image)
	if out, err := d.Crictl("images"); err != nil || !strings.Contains(out, "docker.io/podbox/busybox") {
		t.Fatalf("crictl images does not list %s (%v):\n%s", ref, err, out)
	}

	dir := t.TempDir()
	pod := writeJSON(t, dir, "pod.json", map[string]any{
		"metadata":      map[string]any{"name": "harness", "namespace": "default", "uid": "harness-uid", "attempt": 0},
		"hostname":      "harness",
		"log_directory": filepath.Join(dir, "logs"),
		"linux":         map[string]any{"cgroup_parent": "/" + cgroupParent},
	})
	httpd := writeJSON(t, dir, "httpd.json", map[string]any{
		"metadata": map[string]any{"name": "httpd"},
		"image":    map[string]any{"image": ref},
		"command":  []string{"/bin/httpd", "-f", "-p", "80", "-h", "/www"},
		"log_path": "httpd.log",
		"linux":    map[string]any{},
	})
	client := writeJSON(t, dir, "client.json", map[string]any{
		"metadata": map[string]any{"name": "client"},
		"image":    map[string]any{"image": ref},
		"log_path": "client.log",
		"linux":    map[string]any{},
	})

	podID := crictl(t, d, "runp", "--runtime", "runc", pod)
	httpdID := crictl(t, d, "create", podID, httpd, pod)
	crictl(t, d, "start", httpdID)
	clientID := crictl(t, d, "create", podID, client, pod)
	crictl(t, d, "start", clientID)

	// httpd binds a moment after its start; poll briefly.
	var body string
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		body, err = d.Crictl("exec", clientID, "wget", "-q", "-O", "-", "http://localhost:80/")
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil || body != BusyboxIndex {
		t.Fatalf("client container: fetch http://localhost:80/ in the pod: %v, got %q, want %q", err, body, BusyboxIndex)
	}

	ip := podIP(t, d, podID)
	out, err := node.Command(t.Context(), "busybox", "wget", "-q", "-O", "-", "http://"+ip.String()+":80/").CombinedOutput()
	if err != nil || string(out) != BusyboxIndex {
		t.Fatalf("node: fetch http://%s:80/ over the CNI bridge: %v, got %q", ip, err, out)
	}
	t.Logf("pod %.12s at %s: httpd answers on the pod's localhost and from the node", podID, ip)

	crictl(t, d, "stopp", podID)
	crictl(t, d, "rmp", podID)

	// Everything of the pod is gone while containerd still runs: no pods,
	// containers or tasks, no mounts (rootfs, shm, netns pin), no lease.
	if out := crictl(t, d, "pods", "-q"); out != "" {
		t.Errorf("pods left after rmp: %s", out)
	}
	if out := crictl(t, d, "ps", "-a", "-q"); out != "" {
		t.Errorf("containers left after rmp: %s", out)
	}
	if out, err := d.Ctr("-n", CRINamespace, "tasks", "ls", "-q"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("tasks left after rmp (%v): %s", err, out)
	}
	if m, err := mountsUnder(d.Dir); err != nil || len(m) > 0 {
		t.Errorf("mounts left under %s after rmp (%v): %v", d.Dir, err, m)
	}
	if leases := leaseFiles(d); len(leases) > 0 {
		t.Errorf("IP leases left after rmp: %v", leases)
	}
	if after := listDir("/var/run/netns"); len(after) > len(netnsBefore) {
		t.Errorf("/var/run/netns gained pins: before %v, after %v", netnsBefore, after)
	}
	t.Logf("pod life (start of containerd to removal) took %s", time.Since(start).Round(time.Millisecond))
}

// crictl runs crictl or fails the test; it returns trimmed stdout.
func crictl(t testing.TB, d *Daemon, args ...string) string {
	t.Helper()
	out, err := d.Crictl(args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func writeJSON(t testing.TB, dir, name string, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// podIP reads the pod's address from CRI and checks it is on the CNI network.
func podIP(t *testing.T, d *Daemon, podID string) netip.Addr {
	t.Helper()
	var st struct {
		Status struct {
			Network struct {
				IP string `json:"ip"`
			} `json:"network"`
		} `json:"status"`
	}
	out := crictl(t, d, "inspectp", "-o", "json", podID)
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("crictl inspectp %s: %v", podID, err)
	}
	ip, err := netip.ParseAddr(st.Status.Network.IP)
	if err != nil || !netip.MustParsePrefix(PodSubnet).Contains(ip) {
		t.Fatalf("pod %s: address %q is not in %s (%v)", podID, st.Status.Network.IP, PodSubnet, err)
	}
	return ip
}

// leaseFiles lists host-local's lease files (named after the address) under
// the daemon's CNI data directory.
func leaseFiles(d *Daemon) []string {
	var out []string
	files, _ := filepath.Glob(filepath.Join(d.CNIDataDir, "*", "*"))
	for _, f := range files {
		if _, err := netip.ParseAddr(filepath.Base(f)); err == nil {
			out = append(out, f)
		}
	}
	return out
}

func listDir(dir string) []string {
	var names []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

// removeCgroupParent removes the pods' cgroup parent from every hierarchy
// (runc made it; a v1 host has one per controller).
func removeCgroupParent(t testing.TB, parent string) {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
	if unified := filepath.Join("/sys/fs/cgroup", parent); fileExists(unified) {
		dirs = append(dirs, unified)
	}
	for _, dir := range dirs {
		if err := os.Remove(dir); err != nil && !os.IsNotExist(err) {
			t.Errorf("remove cgroup %s: %v", dir, err)
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestHarnessTeardown leaves a running pod behind a containerd that was
// restarted once and then killed, and relies on the harness's teardown (and
// leakcheck after it) to prove that nothing of it survives the test: the
// restart must keep the pod serving, and teardown must bring the dead daemon
// back to remove the pod the proper way.
func TestHarnessTeardown(t *testing.T) {
	node := testnode.New(t)
	const ref = "docker.io/podbox/busybox:test"
	image := BusyboxImage(t, ref)
	cgroupParent := fmt.Sprintf("podbox-harness-%d-teardown", os.Getpid())
	t.Cleanup(func() { removeCgroupParent(t, cgroupParent) })
	leakcheck.Check(t, leakcheck.Options{Node: node, AllowLinks: []string{CNIBridge}, CgroupParent: cgroupParent})

	d := Start(t, node, Options{SandboxImage: ref})
	d.ImportImage(t, CRINamespace, image)
	dir := t.TempDir()
	pod := writeJSON(t, dir, "pod.json", map[string]any{
		"metadata": map[string]any{"name": "left", "namespace": "default", "uid": "left-uid"},
		"linux":    map[string]any{"cgroup_parent": "/" + cgroupParent},
	})
	sleeper := writeJSON(t, dir, "sleeper.json", map[string]any{
		"metadata": map[string]any{"name": "sleeper"},
		"image":    map[string]any{"image": ref},
		"linux":    map[string]any{},
	})
	podID := crictl(t, d, "runp", "--runtime", "runc", pod)
	ctrID := crictl(t, d, "create", podID, sleeper, pod)
	crictl(t, d, "start", ctrID)

	d.Restart(t)
	if out := crictl(t, d, "exec", ctrID, "echo", "still here"); out != "still here" {
		t.Fatalf("after restart, exec in %s gave %q", ctrID, out)
	}

	d.mu.Lock()
	err := d.cmd.Process.Kill()
	done := d.done
	d.mu.Unlock()
	if err != nil {
		t.Fatalf("kill containerd: %v", err)
	}
	<-done
	if m, _ := mountsUnder(d.Dir); len(m) == 0 {
		t.Fatalf("expected the pod's mounts under %s while it runs", d.Dir)
	}
}
