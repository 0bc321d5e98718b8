package containerd

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pauseSeccomp waits until the pause pid is under a seccomp filter, which
// it installs as the last step of its start, a moment after CRI has the pod;
// it returns the last Seccomp field of its /proc/PID/status.
func pauseSeccomp(t *testing.T, pid int) string {
	t.Helper()
	var v string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			t.Fatal(err)
		}
		_, v, _ = strings.Cut(string(b), "\nSeccomp:")
		v, _, _ = strings.Cut(v, "\n")
		if v = strings.TrimSpace(v); v == "2" {
			break
		}
	}
	return v
}

// Under CRI podbox passes on the seccomp profile containerd puts in a
// container's spec, and runc applies it: a container with RuntimeDefault or
// a Localhost profile is filtered, one without shows what the same
// container shows on the runc handler of the same containerd. The pod's
// pause filters itself on either handler (podbox's own pause image).
func TestCRISeccomp(t *testing.T) {
	for _, tc := range []struct {
		name string
		v2   bool
	}{
		{"containerd-1.6", false},
		{"containerd-2", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newPodboxEnv(t, tc.v2, false)
			// An OCI profile (containerd reads Localhost files as one)
			// that refuses mkdir with EACCES.
			profile := filepath.Join(e.dir, "no-mkdir.json")
			os.WriteFile(profile, []byte(`{"defaultAction": "SCMP_ACT_ALLOW",
				"syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}`), 0o644)
			// crictl decodes the config into CRI's Go types, where a
			// profile type is its number: RuntimeDefault 0, Localhost 2.
			contexts := []struct {
				name    string
				seccomp map[string]any // nil: no security_context.seccomp
			}{
				{"none", nil},
				{"runtime-default", map[string]any{"profile_type": 0}},
				{"localhost", map[string]any{"profile_type": 2, "localhost_ref": profile}},
			}
			// mode[handler][context] is Seccomp of the container's PID 1.
			mode := map[string]map[string]string{}
			// Each container in a PID namespace of its own (CONTAINER, 1),
			// as the kubelet asks by default, so that its PID 1 is its own
			// process rather than the pause (POD, CRI's zero value).
			ownPID := map[string]any{"namespace_options": map[string]any{"pid": 1}}
			for _, handler := range []string{"podbox", "runc"} {
				pod := writeJSON(t, e.dir, handler+"-pod.json", map[string]any{
					"metadata": map[string]any{"name": handler, "namespace": "default", "uid": handler + "-uid"},
					"linux":    map[string]any{"cgroup_parent": "/" + e.cg, "security_context": ownPID},
				})
				podID := crictl(t, e.d, "runp", "--runtime", handler, pod)
				if m := pauseSeccomp(t, e.inspectPID(t, "inspectp", podID)); m != "2" {
					t.Errorf("%s: the pod's pause: Seccomp %s, want 2 (its own filter)", handler, m)
				}
				mode[handler] = map[string]string{}
				for _, c := range contexts {
					sc := map[string]any{"namespace_options": ownPID["namespace_options"]}
					if c.seccomp != nil {
						sc["seccomp"] = c.seccomp
					}
					linux := map[string]any{"security_context": sc}
					cfg := writeJSON(t, e.dir, handler+"-"+c.name+".json", map[string]any{
						"metadata": map[string]any{"name": c.name},
						"image":    map[string]any{"image": appRef},
						"command":  []string{"/bin/sleep", "600"},
						"log_path": c.name + ".log",
						"linux":    linux,
					})
					id := crictl(t, e.d, "create", podID, cfg, pod)
					crictl(t, e.d, "start", id)
					out := crictl(t, e.d, "exec", id, "grep", "-E", "^(Name|Seccomp):", "/proc/1/status")
					name, seccomp, _ := strings.Cut(out, "\n")
					if strings.Fields(name)[1] != "sleep" {
						t.Fatalf("%s: PID 1 of container %s is not its sleep: %q", handler, c.name, out)
					}
					mode[handler][c.name] = strings.TrimSpace(strings.TrimPrefix(seccomp, "Seccomp:"))
					if c.name == "localhost" {
						out, err := e.d.Crictl("exec", id, "mkdir", "/tmp/d")
						if err == nil || !strings.Contains(out+err.Error(), "Permission denied") {
							t.Errorf("%s: mkdir under the Localhost profile: %v %q, want Permission denied", handler, err, out)
						}
					}
				}
				crictl(t, e.d, "stopp", podID)
				crictl(t, e.d, "rmp", podID)
			}
			t.Logf("Seccomp of each container's PID 1: %v", mode)
			for _, c := range contexts {
				if got, want := mode["podbox"][c.name], mode["runc"][c.name]; got != want {
					t.Errorf("container with seccomp %s: Seccomp %s on podbox, %s on runc", c.name, got, want)
				}
			}
			for _, c := range []string{"runtime-default", "localhost"} {
				if mode["podbox"][c] != "2" {
					t.Errorf("container with seccomp %s on podbox: Seccomp %s, want 2", c, mode["podbox"][c])
				}
			}
		})
	}
}
