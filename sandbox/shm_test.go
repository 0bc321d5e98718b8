package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podbox/podbox/integration/testnode"
)

// shmMounts lists the mount points in /proc/self/mountinfo at or below dir.
func shmMounts(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var at []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir) {
			at = append(at, f[4])
		}
	}
	return at
}

// ShareShm puts the sandbox's /dev/shm in place of a spec's default one or
// where it has none, and leaves a /dev/shm asked for (a user's tmpfs, CRI's
// bind) and a sandbox in the node's IPC namespace alone; MountShm mounts
// it only where ShareShm put it. The containers of a sandbox created
// together get one mount between them, and the sandbox's removal
// unmounts it.
func TestShareShm(t *testing.T) {
	testnode.RequirePrivileged(t)
	n := Node{Store: Store{Root: t.TempDir()}}
	sb := &Sandbox{ID: strings.Repeat("a", 64), Name: "shm", State: StateReady}
	if err := n.Store.CreateSandboxRecord(sb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmountShm(n.Store.SandboxDir(sb.ID)) })
	own := filepath.Join(n.Store.SandboxDir(sb.ID), ShmDir)
	defaultShm := specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "size=65536k"}}
	userTmpfs := specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1g"}}
	criBind := specs.Mount{Destination: "/dev/shm", Type: "bind", Source: "/run/containerd/sandboxes/x/shm", Options: []string{"rbind"}}
	proc := specs.Mount{Destination: "/proc", Type: "proc", Source: "proc"}
	for _, tc := range []struct {
		name    string
		mounts  []specs.Mount
		hostIPC bool
		want    string // the source of the spec's /dev/shm afterwards
	}{
		{name: "default", mounts: []specs.Mount{proc, defaultShm}, want: own},
		{name: "none", mounts: []specs.Mount{proc}, want: own},
		{name: "user tmpfs", mounts: []specs.Mount{proc, userTmpfs}, want: "tmpfs"},
		{name: "CRI bind", mounts: []specs.Mount{proc, criBind}, want: criBind.Source},
		{name: "host IPC", mounts: []specs.Mount{proc, defaultShm}, hostIPC: true, want: "shm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := &specs.Spec{Mounts: slices.Clone(tc.mounts)}
			sb := *sb
			sb.Host.IPC = tc.hostIPC
			n.ShareShm(spec, &sb)
			if err := n.MountShm(spec, &sb); err != nil {
				t.Fatal(err)
			}
			if m := shmMounts(t, n.Store.Root); (tc.want == own) != (len(m) == 1) {
				t.Errorf("mounts under the root: %v", m)
			}
			unmountShm(n.Store.SandboxDir(sb.ID))
			var got []specs.Mount
			for _, m := range spec.Mounts {
				if m.Destination == "/dev/shm" {
					got = append(got, m)
				}
			}
			if len(got) != 1 || got[0].Source != tc.want || spec.Mounts[0].Destination != "/proc" {
				t.Errorf("/dev/shm mounts after ShareShm: %+v, want one from %s after /proc", got, tc.want)
			}
		})
	}

	if err := n.Store.RemoveSandboxRecord(sb); err != nil {
		t.Fatal(err)
	}

	// Fresh sandboxes, each joined by many containers at once.
	for i := range 10 {
		id := strings.Repeat(string(rune('b'+i)), 64)
		sb := &Sandbox{ID: id, Name: id[:12], State: StateReady}
		if err := n.Store.CreateSandboxRecord(sb); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unmountShm(n.Store.SandboxDir(sb.ID)) })
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				spec := &specs.Spec{}
				n.ShareShm(spec, sb)
				if err := n.MountShm(spec, sb); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		own := filepath.Join(n.Store.SandboxDir(sb.ID), ShmDir)
		if got := shmMounts(t, n.Store.Root); len(got) != 1 || got[0] != own {
			t.Errorf("mounts under the root after concurrent joins: %v, want only %s", got, own)
		}
		if err := n.Store.RemoveSandboxRecord(sb); err != nil {
			t.Fatal(err)
		}
		if got := shmMounts(t, n.Store.Root); len(got) != 0 {
			t.Errorf("mounts under the root after the sandbox's removal: %v", got)
		}
	}
}
