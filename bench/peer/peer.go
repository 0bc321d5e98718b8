// Package peer drives what users would run instead of podbox: containerd
// 1.6 (Debian) with its CRI plugin, io.containerd.runc.v2, the bridge CNI
// plugin (and portmap after it while a phase asks for it, UsePortmap) and
// podbox's own pause image as the sandbox image, through crictl.
// The daemon is integration/containerd's throwaway containerd (its own
// root, state, socket, CNI network and teardown); this package adds the
// timed crictl calls and finds the shims and pauses whose memory is
// measured. crictl runs directly, not under nsenter: the benchmark process
// already lives in the node's network namespace.
package peer

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podbox/podbox/bench/mem"
	"github.com/podbox/podbox/bench/tb"
	"github.com/podbox/podbox/bench/timed"
	"github.com/podbox/podbox/integration/containerd"
	"github.com/podbox/podbox/integration/testnode"
)

// Handler is the CRI runtime handler of the peer's pods: the harness
// configures it as io.containerd.runc.v2.
const Handler = "runc"

// CRI is a running containerd and the crictl that drives it.
type CRI struct {
	Daemon *containerd.Daemon
	// Crictl is crictl's path.
	Crictl string
	// Image is the app image containers are created from (imported).
	Image        string
	dir          string
	cgroupParent string
	seq          atomic.Int64

	mu   sync.Mutex
	pods map[string]string // pod ID → its config file
}

// Options says what the peer runs.
type Options struct {
	// PauseRef and PauseTar: podbox's pause image, CRI's sandbox image.
	PauseRef, PauseTar string
	// ImageRef and ImageTar: the busybox image containers run.
	ImageRef, ImageTar string
	// CgroupParent is the cgroup pods are put below.
	CgroupParent string
	// PodboxShimDir and PodboxEnv make podbox's shim the daemon's
	// "podbox" runtime handler beside "runc" (PodboxHandler): the CRI
	// phase compares the two on one containerd.
	PodboxShimDir string
	PodboxEnv     []string
	// V2 runs containerd 2.x (built from integration/containerd2) with
	// the podbox handler's sandboxer = "shim".
	V2 bool
}

// PodboxHandler is the CRI runtime handler of podbox's shim.
const PodboxHandler = "podbox"

// Start starts containerd in node through integration/containerd and
// imports both images into CRI's namespace. Its teardown (every pod
// removed, containerd stopped, mounts and state gone) is registered on t.
func Start(t *tb.T, node *testnode.Node, o Options) (*CRI, error) {
	c := &CRI{Image: o.ImageRef, dir: t.TempDir(), cgroupParent: o.CgroupParent, pods: map[string]string{}}
	err := tb.Run(func() {
		c.Crictl = containerd.CrictlBinary(t)
		do := containerd.Options{SandboxImage: o.PauseRef, ShimDir: o.PodboxShimDir, ExtraEnv: o.PodboxEnv}
		if o.V2 {
			do.V2, do.ShimSandboxer, do.Binary = true, true, containerd.V2Binary(t)
		}
		c.Daemon = containerd.Start(t, node, do)
		c.Daemon.ImportImage(t, containerd.CRINamespace, o.PauseTar)
		c.Daemon.ImportImage(t, containerd.CRINamespace, o.ImageTar)
	})
	if err != nil {
		return nil, fmt.Errorf("peer containerd: %w", err)
	}
	return c, nil
}

// Cmd runs crictl against the daemon and returns its trimmed output and its
// duration from start to exit.
func (c *CRI) Cmd(ctx context.Context, args ...string) (string, time.Duration, error) {
	ep := "unix://" + c.Daemon.Address
	cmd := exec.CommandContext(ctx, c.Crictl, append([]string{
		"--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "120s"}, args...)...)
	return timed.Run(cmd, "crictl", args)
}

// PortMapping is a published port of a pod, as CRI's PodSandboxConfig
// carries it in port_mappings (no protocol: TCP). CRI hands it to the
// plugins of the chain that declare the portMappings capability.
type PortMapping struct {
	HostPort      int `json:"host_port"`
	ContainerPort int `json:"container_port"`
}

// RunPod writes a pod config (not timed) and runs `crictl runp` with it;
// ports, if any, are its port mappings.
func (c *CRI) RunPod(ctx context.Context, ports ...PortMapping) (string, time.Duration, error) {
	return c.RunPodWith(ctx, Handler, ports...)
}

// RunPodWith is RunPod with the runtime handler handler.
func (c *CRI) RunPodWith(ctx context.Context, handler string, ports ...PortMapping) (string, time.Duration, error) {
	n := c.seq.Add(1)
	name := fmt.Sprintf("bench-%d", n)
	pod := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "bench", "uid": name + "-uid", "attempt": 0},
		"hostname":      name,
		"log_directory": filepath.Join(c.dir, "logs", name),
		"linux":         map[string]any{"cgroup_parent": "/" + c.cgroupParent},
	}
	if len(ports) > 0 {
		pod["port_mappings"] = ports
	}
	cfg, err := c.writeJSON(name+"-pod.json", pod)
	if err != nil {
		return "", 0, err
	}
	id, d, err := c.Cmd(ctx, "runp", "--runtime", handler, cfg)
	if err != nil {
		return "", d, err
	}
	c.mu.Lock()
	c.pods[id] = cfg
	c.mu.Unlock()
	return id, d, nil
}

// RemovePod runs `crictl stopp` and `crictl rmp`, timed together.
func (c *CRI) RemovePod(ctx context.Context, id string) (time.Duration, error) {
	_, d1, err := c.Cmd(ctx, "stopp", id)
	if err != nil {
		return d1, err
	}
	_, d2, err := c.Cmd(ctx, "rmp", id)
	if err == nil {
		c.mu.Lock()
		delete(c.pods, id)
		c.mu.Unlock()
	}
	return d1 + d2, err
}

// StartContainer writes a container config (not timed), then runs `crictl
// create` and `crictl start`, timed together, and returns the container ID.
func (c *CRI) StartContainer(ctx context.Context, podID string, args ...string) (string, time.Duration, error) {
	c.mu.Lock()
	podCfg, ok := c.pods[podID]
	c.mu.Unlock()
	if !ok {
		return "", 0, fmt.Errorf("pod %s: not made by this peer", podID)
	}
	name := fmt.Sprintf("ctr-%d", c.seq.Add(1))
	cfg, err := c.writeJSON(name+".json", map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": c.Image},
		"command":  args,
		"log_path": name + ".log",
		"linux":    map[string]any{},
	})
	if err != nil {
		return "", 0, err
	}
	id, d1, err := c.Cmd(ctx, "create", podID, cfg, podCfg)
	if err != nil {
		return "", d1, err
	}
	_, d2, err := c.Cmd(ctx, "start", id)
	return id, d1 + d2, err
}

// Ctr runs `ctr --address SOCKET args…` against the daemon and returns its
// trimmed output and its duration from start to exit.
func (c *CRI) Ctr(ctx context.Context, args ...string) (string, time.Duration, error) {
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", c.Daemon.Address}, args...)...)
	return timed.Run(cmd, "ctr", args)
}

// RemoveContainer runs `crictl rm -f`.
func (c *CRI) RemoveContainer(ctx context.Context, id string) error {
	_, _, err := c.Cmd(ctx, "rm", "-f", id)
	return err
}

// Processes returns, for every containerd-shim-runc-v2 of this daemon, its
// children: the pause of each pod (and its containers, if any run).
func (c *CRI) Processes() map[int][]int { return c.ProcessesOf("containerd-shim-runc-v2") }

// ProcessesOf is Processes for the shim binary shim (containerd-shim-runc-v2
// or containerd-shim-podbox-v1).
func (c *CRI) ProcessesOf(shim string) map[int][]int {
	out := map[int][]int{}
	for _, pid := range mem.WithArg(shim, c.Daemon.Address) {
		out[pid] = mem.Children(pid)
	}
	return out
}

// Versions returns containerd's and crictl's versions.
func (c *CRI) Versions(ctx context.Context) (containerdV, crictlV string) {
	containerdV, crictlV = "unknown", "unknown"
	if out, err := exec.CommandContext(ctx, c.Daemon.Opts.Binary, "--version").Output(); err == nil {
		if f := strings.Fields(string(out)); len(f) >= 3 {
			containerdV = f[2]
		}
	}
	// go install leaves crictl's own version "unknown"; the module
	// version in the binary's build info is the real one.
	if out, err := exec.CommandContext(ctx, "go", "version", "-m", c.Crictl).Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == "mod" {
				crictlV = f[2]
			}
		}
	}
	return containerdV, crictlV
}

func (c *CRI) writeJSON(name string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	p := filepath.Join(c.dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		return "", fmt.Errorf("peer config %s: %w", p, err)
	}
	return p, nil
}
