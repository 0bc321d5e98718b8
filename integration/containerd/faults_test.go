package containerd

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/sandbox"
)

// containerd crashes (SIGKILL) or restarts while CRI's RunPodSandbox with
// the podbox handler is under way. Afterwards the pod is either listed and
// working (a container runs in it) or not there at all, and `crictl rmp -f`
// of what is listed leaves nothing: no podbox sandbox, no shim, and, by the
// leak check, no process, mount, link, lease, cgroup or state file.
//
// The moment is a step of the shim's sandbox create: a shim built with the
// podbox_faults tag holds there (PODBOX_FAULT, PODBOX_FAULT_HOLD, package
// internal/faultpoint), containerd goes, and the shim goes on. Timed
// kills at fixed delays after runp hit whatever containerd is doing then.
func TestCRICrashInRunp(t *testing.T) {
	testnode.RequirePrivileged(t)
	bins := testnode.BuildTagged(t, "podbox_faults", "containerd-shim-podbox-v1")
	for _, tc := range []struct {
		name    string
		point   string        // the shim's step; "" for a timed kill
		delay   time.Duration // a timed kill's wait after runp starts
		restart bool          // SIGTERM and start, rather than SIGKILL and start
		// shimDies: the shim SIGKILLs itself at point, and containerd
		// stays: it cleans up after its dead shim.
		shimDies bool
	}{
		{name: "kill-record", point: "create.record"},
		{name: "kill-ready", point: "create.ready"},
		{name: "restart-ready", point: "create.ready", restart: true},
		{name: "restart-pause", point: "create.pause", restart: true},
		{name: "kill-100ms", delay: 100 * time.Millisecond},
		{name: "kill-300ms", delay: 300 * time.Millisecond},
		{name: "shim-dies-record", point: "create.record", shimDies: true},
		{name: "shim-dies-ready", point: "create.ready", shimDies: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hold := t.TempDir()
			e := newPodboxEnv(t, false, false, func(o *Options) {
				o.ShimDir = bins
				if tc.point != "" {
					o.ExtraEnv = append(o.ExtraEnv, "PODBOX_FAULT="+tc.point)
				}
				if !tc.shimDies {
					o.ExtraEnv = append(o.ExtraEnv, "PODBOX_FAULT_HOLD="+hold)
				}
			})
			cfg := writeJSON(t, e.dir, "crash-pod.json", map[string]any{
				"metadata": map[string]any{"name": "crash", "namespace": "default", "uid": "crash-uid"},
				"hostname": "crash",
				"linux":    map[string]any{"cgroup_parent": "/" + e.cg},
			})
			runp := make(chan error, 1)
			go func() {
				_, err := e.d.Crictl("runp", "--runtime", "podbox", cfg)
				runp <- err
			}()
			switch {
			case tc.shimDies:
			case tc.point != "":
				release := waitHeldShim(t, hold, runp)
				if tc.restart {
					// The shim answers while containerd stops: CRI, giving
					// up on the pod, deletes its task and exits before it
					// tells the shim to shut down.
					stopped := make(chan error, 1)
					go func() { stopped <- e.d.stop(10 * time.Second) }()
					waitLog(t, e.d, `msg="Stop CRI service"`)
					release()
					if err := <-stopped; err != nil {
						t.Fatalf("containerd stop: %v", err)
					}
					e.d.Relaunch(t)
				} else {
					e.d.Kill(t)
					release()
					e.d.Relaunch(t)
				}
			default:
				time.Sleep(tc.delay)
				e.d.Kill(t)
				e.d.Relaunch(t)
			}
			select {
			case err := <-runp:
				t.Logf("runp: %v", err)
			case <-time.After(2 * time.Minute):
				t.Fatal("crictl runp still runs 2 minutes after containerd came back")
			}

			// A pod listed ready works. One listed not ready is what CRI
			// recovers of a RunPodSandbox that never got to start the
			// sandbox's task (the same with runc): the kubelet removes
			// such a pod and makes another.
			for _, p := range listPods(t, e.d) {
				t.Logf("pod %.12s listed %s", p.ID, p.State)
				switch p.State {
				case "SANDBOX_READY":
					checkPodWorks(t, e, p.ID, cfg)
				case "SANDBOX_NOTREADY":
				default:
					t.Errorf("pod %.12s is listed %s", p.ID, p.State)
				}
				crictl(t, e.d, "rmp", "-f", p.ID)
			}
			if out := crictl(t, e.d, "pods", "-q"); out != "" {
				t.Errorf("pods left after rmp -f: %s", out)
			}
			// containerd cleans up after its dead shims in the background;
			// whatever is left after that is a leak.
			var ids []string
			var shims []int
			for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				ids, _ = (sandbox.Store{Root: e.root}).SandboxIDs()
				shims = shimsOfDaemon(e.d)
				if len(ids) == 0 && len(shims) == 0 {
					break
				}
			}
			if len(ids) != 0 {
				t.Errorf("podbox sandboxes left after rmp -f: %v", ids)
			}
			if len(shims) != 0 {
				t.Errorf("podbox shims left after rmp -f: %v", shims)
			}
		})
	}
}

type listedPod struct {
	ID    string `json:"id"`
	State string `json:"state"`
}

func listPods(t *testing.T, d *Daemon) []listedPod {
	t.Helper()
	var out struct {
		Items []listedPod `json:"items"`
	}
	if err := json.Unmarshal([]byte(crictl(t, d, "pods", "-o", "json")), &out); err != nil {
		t.Fatalf("crictl pods -o json: %v", err)
	}
	return out.Items
}

// checkPodWorks runs a container in pod id and execs into it.
func checkPodWorks(t *testing.T, e *podboxEnv, id, podCfg string) {
	t.Helper()
	cc := writeJSON(t, e.dir, "crash-ctr.json", map[string]any{
		"metadata": map[string]any{"name": "after"},
		"image":    map[string]any{"image": appRef},
		"log_path": "after.log",
		"linux":    map[string]any{},
	})
	cid, err := e.d.Crictl("create", id, cc, podCfg)
	if err != nil {
		t.Errorf("pod %.12s is listed ready, but a container cannot be created in it: %v", id, err)
		return
	}
	cid = strings.TrimSpace(cid)
	if _, err := e.d.Crictl("start", cid); err != nil {
		t.Errorf("pod %.12s is listed ready, but its container does not start: %v", id, err)
		return
	}
	if out, err := e.d.Crictl("exec", cid, "echo", "works"); err != nil || strings.TrimSpace(out) != "works" {
		t.Errorf("pod %.12s is listed ready, but exec in its container gives %q, %v", id, out, err)
	}
}

// waitHeldShim waits until a podbox shim holds at its fault point
// (PODBOX_FAULT_HOLD=hold), and returns what lets it go on.
func waitHeldShim(t *testing.T, hold string, runp <-chan error) (release func()) {
	t.Helper()
	held := filepath.Join(hold, "held")
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		select {
		case err := <-runp:
			t.Fatalf("runp ended before the shim got to its fault point: %v", err)
		default:
		}
		if _, err := os.Stat(held); err == nil {
			return func() { os.Remove(held) }
		}
	}
	t.Fatal("no podbox shim held at its fault point within 30 s")
	return nil
}

// waitLog waits until d's log has a line containing s.
func waitLog(t *testing.T, d *Daemon, s string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if b, err := os.ReadFile(d.Log); err == nil && bytes.Contains(b, []byte(s)) {
			return
		}
	}
	t.Fatalf("containerd never logged %s", s)
}

// shimsOfDaemon lists the live podbox shims that d started.
func shimsOfDaemon(d *Daemon) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(raw, []byte("containerd-shim-podbox-v1")) {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if !strings.Contains(strings.Join(argv, " "), " "+d.Address+" ") {
			continue
		}
		if b, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil {
			if _, rest, _ := bytes.Cut(b, []byte(") ")); len(rest) > 0 && rest[0] == 'Z' {
				continue
			}
		}
		pids = append(pids, pid)
	}
	return pids
}
