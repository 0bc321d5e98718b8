package containerd

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podbox/podbox/integration/leakcheck"
	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/runtime/image"
	"github.com/podbox/podbox/sandbox"
)

// The containerd issue's checks: podbox under ctr and under CRI, on Debian's
// containerd 1.6 and on containerd 2.x (with CRI's default sandbox container
// and with the shim sandboxer), each in its own test node and leak-checked
// for both containerd's and podbox's traces.

const (
	appRef   = "docker.io/podbox/busybox:test"
	pauseRef = "localhost/podbox/pause:test"
)

// pauseImage writes podbox's own pause image, the sandbox image CRI is
// configured with (podbox runs its pause itself, but CRI insists on having
// the image).
func pauseImage(t testing.TB, pause string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pause.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	_, err = image.WritePauseImage(f, pause, pauseRef)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type podboxEnv struct {
	d    *Daemon
	root string // podbox's state root
	cg   string // cgroup parent of podbox's sandboxes and of the pods' containers
	dir  string // pod and container configs
}

// newPodboxEnv starts containerd (2.x if v2, with the shim sandboxer if
// shimSandboxer) with podbox as runtime "podbox", in a fresh test node;
// with, if given, changes the daemon's options.
func newPodboxEnv(t *testing.T, v2, shimSandboxer bool, with ...func(*Options)) *podboxEnv {
	t.Helper()
	node := testnode.New(t)
	app := BusyboxImage(t, appRef)
	shim := testnode.Binary(t, "containerd-shim-podbox-v1")
	pause := testnode.Binary(t, "podbox-pause")
	e := &podboxEnv{root: t.TempDir(), cg: "podbox-ctrd-" + sandbox.NewID()[:12], dir: t.TempDir()}
	t.Cleanup(func() { removeCgroupParent(t, e.cg) })
	leakcheck.Check(t, leakcheck.Options{
		Root: e.root, Node: node, CgroupParent: e.cg,
		AllowLinks: []string{CNIBridge, "podbox0"},
		AllowFiles: []string{"pause-root/pause", "ipam/*/*", "ports.lock"},
	})
	opts := Options{V2: v2, ShimSandboxer: shimSandboxer, SandboxImage: pauseRef, ShimDir: filepath.Dir(shim),
		ExtraEnv: []string{"PODBOX_ROOT=" + e.root, "PODBOX_CGROUP_PARENT=" + e.cg, "PODBOX_PAUSE=" + pause}}
	if v2 {
		opts.Binary = V2Binary(t)
	}
	for _, f := range with {
		f(&opts)
	}
	e.d = Start(t, node, opts)
	e.d.ImportImage(t, CRINamespace, app)
	e.d.ImportImage(t, CRINamespace, pauseImage(t, pause))
	e.d.ImportImage(t, "default", app)
	return e
}

// fetch polls url from inside a container with exec until it answers.
func fetch(t *testing.T, exec func() (string, error)) string {
	t.Helper()
	var out string
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if out, err = exec(); err == nil {
			return out
		}
	}
	t.Fatalf("fetch from inside the pod: %v (%q)", err, out)
	return ""
}

// shimOf returns the PID of the parent of pid, checking it is a podbox shim.
func shimOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatalf("process %d: %v", pid, err)
	}
	var ppid int
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			ppid, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(ppid) + "/cmdline")
	if !strings.Contains(string(cmd), "containerd-shim-podbox-v1") {
		t.Fatalf("parent %d of process %d is %q, not a podbox shim", ppid, pid, strings.ReplaceAll(string(cmd), "\x00", " "))
	}
	return ppid
}

// 1. ctr: two containers with one io.podbox.sandbox share localhost, are
// listed and measured, and deleting both removes the sandbox.
func TestCtrTwoContainersShareLocalhost(t *testing.T) {
	e := newPodboxEnv(t, false, false)
	d := e.d
	run := func(args ...string) string {
		t.Helper()
		out, err := d.Ctr(append([]string{"run", "-d", "--runtime", "io.containerd.podbox.v1", "--annotation", "io.podbox.sandbox=pod1", appRef}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	run("srv", "/bin/httpd", "-f", "-p", "80", "-h", "/www")
	run("cli", "/bin/sleep", "600")
	body := fetch(t, func() (string, error) {
		return d.Ctr("task", "exec", "--exec-id", "fetch-"+strconv.FormatInt(time.Now().UnixNano(), 36), "cli", "/bin/wget", "-q", "-O", "-", "http://localhost:80/")
	})
	if body != BusyboxIndex {
		t.Fatalf("cli fetched %q from srv over localhost, want %q", body, BusyboxIndex)
	}
	tasks, err := d.Ctr("task", "ls")
	if err != nil || !strings.Contains(tasks, "srv") || !strings.Contains(tasks, "cli") || strings.Count(tasks, "RUNNING") != 2 {
		t.Fatalf("ctr task ls (%v):\n%s", err, tasks)
	}
	// 3. One shim: both containers have it as parent.
	pids := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(tasks), "\n")[1:] {
		f := strings.Fields(line)
		pids[f[0]], _ = strconv.Atoi(f[1])
	}
	if a, b := shimOf(t, pids["srv"]), shimOf(t, pids["cli"]); a != b {
		t.Errorf("srv's shim %d, cli's shim %d: want one shim per sandbox", a, b)
	}
	metrics, err := d.Ctr("task", "metrics", "srv")
	if err != nil || !strings.Contains(metrics, "memory.usage_in_bytes") {
		t.Errorf("ctr task metrics srv (%v):\n%s", err, metrics)
	}
	for _, id := range []string{"srv", "cli"} {
		if _, err := d.Ctr("task", "kill", "-s", "SIGKILL", id); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"srv", "cli"} {
		deleteTask(t, d, "default", id)
	}
	// The sandbox went with its last container.
	if ids, _ := (sandbox.Store{Root: e.root}).SandboxIDs(); len(ids) != 0 {
		t.Errorf("sandboxes left after the last container was deleted: %v", ids)
	}
}

// deleteTask waits for a killed task to stop, then removes it and its
// container.
func deleteTask(t *testing.T, d *Daemon, ns, id string) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err = d.Ctr("-n", ns, "task", "rm", id); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("ctr task rm %s: %v", id, err)
	}
	if _, err := d.Ctr("-n", ns, "container", "rm", id); err != nil {
		t.Fatal(err)
	}
}

// pod is one CRI pod of the tests: a server and a client container.
type pod struct {
	id, server, client string
	config             string
}

// runPod runs pod name on podbox with a server (httpd on port 80) and a
// client container; extra adds fields to the pod's config (crictl's JSON
// of a PodSandboxConfig).
func (e *podboxEnv) runPod(t *testing.T, name string, extra ...map[string]any) pod {
	t.Helper()
	config := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name + "-uid"},
		"hostname":      name,
		"log_directory": filepath.Join(e.dir, name+"-logs"),
		"linux":         map[string]any{"cgroup_parent": "/" + e.cg},
	}
	for _, x := range extra {
		maps.Copy(config, x)
	}
	cfg := writeJSON(t, e.dir, name+".json", config)
	p := pod{config: cfg}
	p.id = crictl(t, e.d, "runp", "--runtime", "podbox", cfg)
	for _, c := range []struct {
		name string
		cmd  []string
		id   *string
	}{
		{"server", []string{"/bin/httpd", "-f", "-p", "80", "-h", "/www"}, &p.server},
		{"client", nil, &p.client},
	} {
		ctr := map[string]any{
			"metadata": map[string]any{"name": c.name},
			"image":    map[string]any{"image": appRef},
			"log_path": c.name + ".log",
			"linux":    map[string]any{},
		}
		if c.cmd != nil {
			ctr["command"] = c.cmd
		}
		cc := writeJSON(t, e.dir, name+"-"+c.name+".json", ctr)
		*c.id = crictl(t, e.d, "create", p.id, cc, cfg)
		crictl(t, e.d, "start", *c.id)
	}
	return p
}

func (e *podboxEnv) inspectPID(t *testing.T, what, id string) int {
	t.Helper()
	var st struct {
		Info struct {
			Pid int `json:"pid"`
		} `json:"info"`
	}
	out := crictl(t, e.d, what, "-o", "json", id)
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Info.Pid == 0 {
		t.Fatalf("crictl %s %s: no pid (%v):\n%s", what, id, err, out)
	}
	return st.Info.Pid
}

// 2 and 3. CRI: a pod on podbox, two containers sharing localhost, exec exit
// codes, stats, one shim for the pod, and nothing left after stopp/rmp.
func TestCRIPod(t *testing.T) {
	for _, tc := range []struct {
		name              string
		v2, shimSandboxer bool
	}{
		{"containerd-1.6", false, false},
		{"containerd-2", true, false},
		{"containerd-2-shim-sandboxer", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newPodboxEnv(t, tc.v2, tc.shimSandboxer)
			p := e.runPod(t, "web")
			body := fetch(t, func() (string, error) {
				return e.d.Crictl("exec", p.client, "wget", "-q", "-O", "-", "http://localhost:80/")
			})
			if body != BusyboxIndex {
				t.Fatalf("client fetched %q over the pod's localhost, want %q", body, BusyboxIndex)
			}
			if _, err := e.d.Crictl("exec", p.client, "sh", "-c", "exit 3"); err == nil || !strings.Contains(err.Error(), "exit code 3") {
				t.Errorf("crictl exec … exit 3: %v, want exit code 3", err)
			}
			stats := crictl(t, e.d, "stats", "-o", "json")
			for _, id := range []string{p.server, p.client} {
				if !strings.Contains(stats, id) {
					t.Errorf("crictl stats lacks container %.12s:\n%s", id, stats)
				}
			}
			shim := shimOf(t, e.inspectPID(t, "inspect", p.server))
			if c := shimOf(t, e.inspectPID(t, "inspect", p.client)); c != shim {
				t.Errorf("server's shim %d, client's %d: want one shim per pod", shim, c)
			}
			if !tc.shimSandboxer {
				if ps := shimOf(t, e.inspectPID(t, "inspectp", p.id)); ps != shim {
					t.Errorf("pod sandbox's shim %d, containers' %d", ps, shim)
				}
			}
			crictl(t, e.d, "stopp", p.id)
			crictl(t, e.d, "rmp", p.id)
			if out := crictl(t, e.d, "pods", "-q"); out != "" {
				t.Errorf("pods left after rmp: %s", out)
			}
			if ids, _ := (sandbox.Store{Root: e.root}).SandboxIDs(); len(ids) != 0 {
				t.Errorf("podbox sandboxes left after rmp: %v", ids)
			}
		})
	}
}

// 4. containerd restarts while a pod runs: the pod is still listed, can be
// exec'd into and stopped.
func TestCRIContainerdRestart(t *testing.T) {
	e := newPodboxEnv(t, false, false)
	p := e.runPod(t, "survivor")
	e.d.Restart(t)
	if ps := crictl(t, e.d, "ps", "-q"); !strings.Contains(ps, p.server) || !strings.Contains(ps, p.client) {
		t.Fatalf("crictl ps after the restart:\n%s", ps)
	}
	if out := crictl(t, e.d, "exec", p.client, "echo", "still here"); out != "still here" {
		t.Fatalf("exec after the restart: %q", out)
	}
	crictl(t, e.d, "stop", p.client)
	crictl(t, e.d, "stopp", p.id)
	crictl(t, e.d, "rmp", p.id)
}

// 5. The shim killed with SIGKILL: containerd notices, and removing the pod
// leaves nothing of podbox behind.
func TestCRIShimKilled(t *testing.T) {
	e := newPodboxEnv(t, false, false)
	p := e.runPod(t, "doomed")
	shim := shimOf(t, e.inspectPID(t, "inspect", p.server))
	if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var ps string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ps = crictl(t, e.d, "ps", "-a")
		if !strings.Contains(ps, "Running") {
			break
		}
	}
	if strings.Contains(ps, "Running") {
		t.Fatalf("containers still reported running 15 s after the shim was killed:\n%s", ps)
	}
	crictl(t, e.d, "rmp", "-f", p.id)
	// containerd cleans up after a dead shim in the background, one
	// `shim delete` per task, and nothing in CRI waits for those: rmp can
	// return while they still run (containerd 1.6's task lookups answer
	// NotFound at once for a dead shim). Wait for them, with a deadline.
	var ids []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ids, _ = (sandbox.Store{Root: e.root}).SandboxIDs(); len(ids) == 0 {
			break
		}
	}
	if len(ids) != 0 {
		t.Errorf("podbox sandboxes left 10 s after rmp: %v", ids)
	}
}

// Pods made and removed one after the other through containerd 2's shim
// sandboxer: each RemovePodSandbox must get its ShutdownSandbox's answer.
// The shim's exit used to race that answer and lose it ("failed to shutdown
// sandbox: ttrpc: closed"), about once in 25 pods and far more often on a
// loaded machine.
func TestCRIShimSandboxerRemoveRepeatedly(t *testing.T) {
	e := newPodboxEnv(t, true, true)
	cfg := writeJSON(t, e.dir, "loop-pod.json", map[string]any{
		"metadata": map[string]any{"name": "loop", "namespace": "default", "uid": "loop-uid"},
		"linux":    map[string]any{"cgroup_parent": "/" + e.cg},
	})
	for i := range 20 {
		id := crictl(t, e.d, "runp", "--runtime", "podbox", cfg)
		crictl(t, e.d, "stopp", id)
		if _, err := e.d.Crictl("rmp", id); err != nil {
			t.Fatalf("pod %d: rmp: %v", i, err)
		}
	}
}
