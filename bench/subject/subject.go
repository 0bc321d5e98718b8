// Package subject drives the system under test, podbox, the way a user
// does: by running the podbox CLI (which starts one
// containerd-shim-podbox-v1 per sandbox), timing each command from its exec
// to its exit. It reads podbox's state only to find the processes whose
// memory is measured, and it removes every sandbox of its state root when
// asked to clean up.
package subject

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podbox/podbox/bench/timed"
	"github.com/podbox/podbox/sandbox"
)

// Podbox is the podbox CLI with its own state root and cgroup parent.
type Podbox struct {
	// Bin is the podbox CLI.
	Bin string
	// Root is the state root (PODBOX_ROOT).
	Root string
	// CgroupParent is where the shims put their sandboxes.
	CgroupParent string
	env          []string
}

// New returns the podbox of binDir (podbox, containerd-shim-podbox-v1,
// podbox-pause) with state under root and sandboxes below cgroupParent.
func New(binDir, root, cgroupParent string) (*Podbox, error) {
	for _, b := range []string{"podbox", "podbox-image", "podbox-kube", "containerd-shim-podbox-v1", "podbox-pause"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return nil, fmt.Errorf("podbox binaries: %w (run `make build`)", err)
		}
	}
	return &Podbox{
		Bin: filepath.Join(binDir, "podbox"), Root: root, CgroupParent: cgroupParent,
		env: append(os.Environ(),
			"PODBOX_ROOT="+root,
			"PODBOX_SHIM="+filepath.Join(binDir, "containerd-shim-podbox-v1"),
			"PODBOX_PAUSE="+filepath.Join(binDir, "podbox-pause"),
			"PODBOX_CGROUP_PARENT="+cgroupParent),
	}, nil
}

// Cmd runs `podbox args…` and returns its trimmed output and how long it
// took from start to exit; a failure carries the command and its stderr.
func (p *Podbox) Cmd(ctx context.Context, args ...string) (string, time.Duration, error) {
	cmd := exec.CommandContext(ctx, p.Bin, args...)
	cmd.Env = p.env
	return timed.Run(cmd, "podbox", args)
}

// Create runs `podbox sandbox create [args…]` (flags such as -p) and
// returns the new sandbox's ID.
func (p *Podbox) Create(ctx context.Context, args ...string) (string, time.Duration, error) {
	return p.Cmd(ctx, append([]string{"sandbox", "create"}, args...)...)
}

// Remove runs `podbox sandbox rm -f ID`.
func (p *Podbox) Remove(ctx context.Context, id string) (time.Duration, error) {
	_, d, err := p.Cmd(ctx, "sandbox", "rm", "-f", id)
	return d, err
}

// Run runs `podbox run -d --sandbox SB --rootfs DIR -- args…` and returns
// the container's ID.
func (p *Podbox) Run(ctx context.Context, sandboxID, rootfs string, args ...string) (string, time.Duration, error) {
	return p.Cmd(ctx, append([]string{"run", "-d", "--sandbox", sandboxID, "--rootfs", rootfs, "--"}, args...)...)
}

// RemoveContainer runs `podbox rm -f ID`.
func (p *Podbox) RemoveContainer(ctx context.Context, id string) error {
	_, _, err := p.Cmd(ctx, "rm", "-f", id)
	return err
}

// Spec returns the OCI spec that podbox's shim gave runc for container id:
// the config.json of its bundle, as joined to its sandbox. The floor runs
// the same spec (floor.Floor.JoinSpec).
func (p *Podbox) Spec(id string) (*specs.Spec, error) {
	rec, err := sandbox.Store{Root: p.Root}.ResolveContainer(id)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	b, err := os.ReadFile(filepath.Join(rec.Bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("container %s: spec: %w", id, err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, fmt.Errorf("container %s: spec %s: %w", id, filepath.Join(rec.Bundle, "config.json"), err)
	}
	return &spec, nil
}

// Processes returns the shim and pause PIDs of sandbox id, from its record.
func (p *Podbox) Processes(id string) (shim, pause int, err error) {
	sb, err := sandbox.Store{Root: p.Root}.LoadSandbox(id)
	if err != nil {
		return 0, 0, fmt.Errorf("sandbox %s: %w", id, err)
	}
	return sb.ShimPID, sb.PausePID, nil
}

// Version is `podbox version`'s answer.
func (p *Podbox) Version(ctx context.Context) string {
	out, _, err := p.Cmd(ctx, "version")
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return strings.TrimPrefix(out, "podbox ")
}

// Cleanup removes every sandbox left under the state root (a run that
// stopped half way) and then the cgroup parent; it returns what it had to
// do and what failed.
func (p *Podbox) Cleanup(ctx context.Context) []string {
	var msgs []string
	ids, err := sandbox.Store{Root: p.Root}.SandboxIDs()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		msgs = append(msgs, fmt.Sprintf("podbox: list sandboxes: %v", err))
	}
	for _, id := range ids {
		msgs = append(msgs, "podbox: removing leftover sandbox "+id)
		if _, err := p.Remove(ctx, id); err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if err := (sandbox.Cgroup{Path: p.CgroupParent}).Remove(); err != nil {
		msgs = append(msgs, fmt.Sprintf("podbox: cgroup %s: %v", p.CgroupParent, err))
	}
	return msgs
}
