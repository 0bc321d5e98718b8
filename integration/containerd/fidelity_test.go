package containerd

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podbox/podbox/sandbox"
)

// Fidelity to runc: what a kubelet reads of a pod on podbox must read as it
// does of the same pod on the runc handler of the same containerd. Each test
// runs its pod on both handlers, under containerd 1.6 (CRI's sandbox
// container), containerd 2.x with its default podsandbox sandboxer (the
// same, through containerd 2's code) and containerd 2.x with the shim
// sandboxer (CRI drives podbox's Sandbox API), and compares.

// criVariant is one containerd setup podbox runs CRI pods under.
type criVariant struct {
	name              string
	v2, shimSandboxer bool
}

func criVariants() []criVariant {
	return []criVariant{
		{"containerd-1.6", false, false},
		{"containerd-2", true, false},
		{"containerd-2-shim-sandboxer", true, true},
	}
}

// eachVariant runs f in a subtest per containerd setup, each with its own
// test node and containerd serving both the runc and the podbox handler.
// containerd runs in a cgroup of its own, as on a node (containerd.service),
// so that what a shim places relative to itself is not at the hierarchies'
// roots.
func eachVariant(t *testing.T, f func(t *testing.T, e *podboxEnv)) {
	for _, v := range criVariants() {
		t.Run(v.name, func(t *testing.T) {
			f(t, newPodboxEnv(t, v.v2, v.shimSandboxer, func(o *Options) { o.Cgroup = "podbox-ctrd-svc-" + sandbox.NewID()[:12] }))
		})
	}
}

// cgroupParents are the two forms of a pod's cgroup parent a kubelet sends:
// a path with its cgroupfs driver ("/kubepods/besteffort/podUID"), a slice
// name with its systemd driver ("kubepods-besteffort-podUID.slice"), from
// which CRI makes a container's cgroupsPath "SLICE:cri-containerd:ID". Here
// neither runtime drives systemd, and runc places such a path below the
// cgroup of the shim that runs it, as it does any path without a leading
// slash.
func (e *podboxEnv) cgroupParents() map[string]string {
	return map[string]string{"cgroupfs": "/" + e.cg, "systemd": e.cg + ".slice"}
}

// handlers are the CRI runtime handlers compared: runc, the reference,
// first.
func handlers() []string { return []string{"runc", "podbox"} }

// onePod runs a pod named name on handler with one container "main"
// running cmd; podExtra and ctrExtra add fields to the pod's and the
// container's configs (crictl's JSON of a PodSandboxConfig and a
// ContainerConfig). It returns the pod's and the container's IDs.
func (e *podboxEnv) onePod(t *testing.T, handler, name string, cmd []string, podExtra, ctrExtra map[string]any) (podID, ctrID string) {
	t.Helper()
	podCfg := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name + "-uid"},
		"hostname":      name,
		"log_directory": e.dir + "/" + name + "-logs",
		"linux":         map[string]any{"cgroup_parent": "/" + e.cg},
	}
	for k, v := range podExtra {
		if k == "linux" {
			for lk, lv := range v.(map[string]any) {
				podCfg["linux"].(map[string]any)[lk] = lv
			}
			continue
		}
		podCfg[k] = v
	}
	ctrCfg := map[string]any{
		"metadata": map[string]any{"name": "main"},
		"image":    map[string]any{"image": appRef},
		"command":  cmd,
		"log_path": "main.log",
		"linux":    map[string]any{},
	}
	for k, v := range ctrExtra {
		ctrCfg[k] = v
	}
	pc := writeJSON(t, e.dir, name+".json", podCfg)
	cc := writeJSON(t, e.dir, name+"-main.json", ctrCfg)
	podID = crictl(t, e.d, "runp", "--runtime", handler, pc)
	t.Cleanup(func() {
		// Removed while containerd runs, before its teardown judges
		// what is left; a failing check must not leave the pod behind.
		e.d.Crictl("stopp", podID)
		e.d.Crictl("rmp", podID)
	})
	ctrID = crictl(t, e.d, "create", podID, cc, pc)
	crictl(t, e.d, "start", ctrID)
	return podID, ctrID
}

// containerStatus is what crictl inspect says of a container's state.
type containerStatus struct {
	State    string `json:"state"`
	Reason   string `json:"reason"`
	ExitCode int    `json:"exitCode"`
}

// waitExited polls crictl inspect until container id has exited, and
// returns its status then.
func waitExited(t *testing.T, d *Daemon, id string, limit time.Duration) containerStatus {
	t.Helper()
	var st struct {
		Status containerStatus `json:"status"`
	}
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := json.Unmarshal([]byte(crictl(t, d, "inspect", "-o", "json", id)), &st); err != nil {
			t.Fatalf("crictl inspect %.12s: %v", id, err)
		}
		if st.Status.State == "CONTAINER_EXITED" {
			break
		}
	}
	return st.Status
}

// A container that outgrows its memory limit is OOM-killed, and CRI says
// so, with the reason OOMKilled and status 137 as on runc. CRI learns it
// only from the shim's /tasks/oom event.
func TestCRIOOMKilled(t *testing.T) {
	eachVariant(t, func(t *testing.T, e *podboxEnv) {
		for driver, parent := range e.cgroupParents() {
			for _, h := range handlers() {
				// The shell keeps the whole stream in a variable: it
				// grows well past the 16 MiB limit.
				_, id := e.onePod(t, h, "oom-"+driver+"-"+h,
					[]string{"/bin/sh", "-c", `x=$(head -c 200000000 /dev/zero | tr "\0" a); echo survived`},
					map[string]any{"linux": map[string]any{"cgroup_parent": parent}},
					map[string]any{"linux": map[string]any{"resources": map[string]any{"memory_limit_in_bytes": 16 << 20}}})
				st := waitExited(t, e.d, id, 20*time.Second)
				if st.State != "CONTAINER_EXITED" || st.Reason != "OOMKilled" || st.ExitCode != 137 {
					t.Errorf("%s, pod cgroup %s: container over its memory limit: state %s, reason %q, exit code %d; want exited, OOMKilled, 137",
						h, parent, st.State, st.Reason, st.ExitCode)
				}
			}
		}
	})
}

// criStats are the figures of a container's CRI ContainerStats that the
// kubelet reads for eviction and `kubectl top`.
type criStats struct {
	CPUTime    uint64 // cpu.usageCoreNanoSeconds
	CPUAt      int64  // cpu.timestamp, Unix nanoseconds
	WorkingSet uint64 // memory.workingSetBytes
	MemAt      int64  // memory.timestamp
}

// containerStats reads container id's figures with crictl stats.
func containerStats(t *testing.T, d *Daemon, id string) criStats {
	t.Helper()
	// crictl prints the CRI message as JSON, 64-bit numbers as strings.
	var out struct {
		Stats []struct {
			CPU struct {
				Timestamp            json.Number `json:"timestamp"`
				UsageCoreNanoSeconds struct {
					Value json.Number `json:"value"`
				} `json:"usageCoreNanoSeconds"`
			} `json:"cpu"`
			Memory struct {
				Timestamp       json.Number `json:"timestamp"`
				WorkingSetBytes struct {
					Value json.Number `json:"value"`
				} `json:"workingSetBytes"`
			} `json:"memory"`
		} `json:"stats"`
	}
	raw := crictl(t, d, "stats", "-o", "json", "--id", id)
	if err := json.Unmarshal([]byte(raw), &out); err != nil || len(out.Stats) != 1 {
		t.Fatalf("crictl stats --id %.12s: %v, %d entries:\n%s", id, err, len(out.Stats), raw)
	}
	s := out.Stats[0]
	num := func(n json.Number) uint64 {
		v, _ := strconv.ParseUint(strings.Trim(n.String(), `"`), 10, 64)
		return v
	}
	return criStats{
		CPUTime: num(s.CPU.UsageCoreNanoSeconds.Value), CPUAt: int64(num(s.CPU.Timestamp)),
		WorkingSet: num(s.Memory.WorkingSetBytes.Value), MemAt: int64(num(s.Memory.Timestamp)),
	}
}

func (s criStats) String() string {
	return fmt.Sprintf("cpu %.3f s at %s, working set %.1f MiB at %s", float64(s.CPUTime)/1e9,
		time.Unix(0, s.CPUAt).Format(time.StampMilli), float64(s.WorkingSet)/(1<<20), time.Unix(0, s.MemAt).Format(time.StampMilli))
}

// A running container's CPU time and memory working set read in CRI's
// ListContainerStats as they do on runc: the same workload (a second of
// CPU, then idle holding about 20 MiB) gives figures within a factor of
// each other, stamped with the time they were read; for pods in a cgroup
// path and in a slice.
func TestCRIContainerStats(t *testing.T) {
	eachVariant(t, func(t *testing.T, e *podboxEnv) {
		for driver, parent := range e.cgroupParents() {
			t.Run(driver, func(t *testing.T) { compareStats(t, e, driver, parent) })
		}
	})
}

// minBurn is the CPU time the workload's busy second must show at least: a
// core's worth when the machine is quiet, but make test runs packages side
// by side on two cores and the loop may get half of one.
const minBurn = 400 * uint64(time.Millisecond)

func compareStats(t *testing.T, e *podboxEnv, driver, parent string) {
	// timeout's child burns the CPU; the shell holds the string (a last
	// command after sleep, or the shell would exec sleep and drop it).
	cmd := []string{"/bin/sh", "-c", `x=$(head -c 20000000 /dev/zero | tr "\0" a); timeout 1 sh -c 'while :; do :; done'; sleep 600; echo "${#x}"`}
	ids := map[string]string{}
	for _, h := range handlers() {
		_, ids[h] = e.onePod(t, h, "stats-"+driver+"-"+h, cmd, map[string]any{"linux": map[string]any{"cgroup_parent": parent}}, nil)
	}
	// Both burn their second at once on two cores; wait until both have
	// (or the deadline, for figures that never come), and their shells
	// are asleep.
	got := map[string]criStats{}
	burnt := func(h string) bool {
		got[h] = containerStats(t, e.d, ids[h])
		return got[h].CPUTime >= minBurn
	}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if burnt("runc") && burnt("podbox") {
			break
		}
	}
	time.Sleep(500 * time.Millisecond)
	before := time.Now()
	for _, h := range handlers() {
		got[h] = containerStats(t, e.d, ids[h])
		t.Logf("%s: %s", h, got[h])
	}
	after := time.Now()
	ref := got["runc"]
	if ref.CPUTime < minBurn || ref.WorkingSet < 16<<20 {
		t.Fatalf("runc's figures (%s): the workload did not run as the test expects", ref)
	}
	pb := got["podbox"]
	within := func(v, ref uint64) bool { return v*3 >= ref && v <= ref*3 }
	if !within(pb.CPUTime, ref.CPUTime) {
		t.Errorf("podbox's CPU usage %d ns, runc's %d ns: want within a factor of 3", pb.CPUTime, ref.CPUTime)
	}
	if !within(pb.WorkingSet, ref.WorkingSet) {
		t.Errorf("podbox's memory working set %d bytes, runc's %d: want within a factor of 3", pb.WorkingSet, ref.WorkingSet)
	}
	for what, at := range map[string]int64{"cpu": pb.CPUAt, "memory": pb.MemAt} {
		if ts := time.Unix(0, at); ts.Before(before.Add(-5*time.Second)) || ts.After(after.Add(time.Second)) {
			t.Errorf("podbox's %s timestamp %s: want the time of the reading (%s)", what, ts.Format(time.StampMilli), before.Format(time.StampMilli))
		}
	}
}

// podSysctls are the sysctls the pod of TestCRIPodSysctls sets, by the
// namespace they belong to: "safe" (kernel.shm_rmid_forced,
// net.ipv4.ip_local_port_range) and namespaced "unsafe" ones
// (fs.mqueue.msg_max), which a kubelet allows with
// --allowed-unsafe-sysctls.
func podSysctls() map[string]string {
	return map[string]string{
		"kernel.shm_rmid_forced":       "1",           // IPC
		"fs.mqueue.msg_max":            "100",         // IPC
		"net.ipv4.ip_local_port_range": "20000 30000", // network
	}
}

// A pod's sysctls are set in its namespaces before its containers start,
// as runc sets them for the sandbox container: a container of the pod reads
// the pod's values, not the defaults. A sysctl of the node's, outside the
// pod's namespaces, fails the pod's start, naming it.
func TestCRIPodSysctls(t *testing.T) {
	want := podSysctls()
	var keys, paths []string
	for k := range want {
		keys = append(keys, k)
		paths = append(paths, "/proc/sys/"+strings.ReplaceAll(k, ".", "/"))
	}
	eachVariant(t, func(t *testing.T, e *podboxEnv) {
		for _, h := range handlers() {
			_, id := e.onePod(t, h, "sysctl-"+h, []string{"/bin/sleep", "600"},
				map[string]any{"linux": map[string]any{"sysctls": want}}, nil)
			out := crictl(t, e.d, append([]string{"exec", id, "cat"}, paths...)...)
			lines := strings.Split(out, "\n")
			if len(lines) != len(keys) {
				t.Fatalf("%s: cat %v: %q", h, paths, out)
			}
			for i, k := range keys {
				if got := strings.Join(strings.Fields(lines[i]), " "); got != want[k] {
					t.Errorf("%s: %s in the pod's container is %q, want %q", h, k, got, want[k])
				}
			}

			cfg := writeJSON(t, e.dir, "node-sysctl-"+h+".json", map[string]any{
				"metadata": map[string]any{"name": "node-sysctl-" + h, "namespace": "default", "uid": "node-sysctl-" + h},
				"linux":    map[string]any{"cgroup_parent": "/" + e.cg, "sysctls": map[string]string{"vm.swappiness": "10"}},
			})
			if id, err := e.d.Crictl("runp", "--runtime", h, cfg); err == nil || !strings.Contains(err.Error(), "vm.swappiness") {
				t.Errorf("%s: a pod with sysctl vm.swappiness: %v; want its start refused, naming the sysctl", h, err)
				if err == nil {
					e.d.Crictl("stopp", strings.TrimSpace(id))
					e.d.Crictl("rmp", strings.TrimSpace(id))
				}
			}
		}
	})
}
