package sandbox

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/podbox/podbox/netsetup/nat"
)

// Fixed IDs: the records' directories the fuzz targets write into.
const (
	fuzzSandboxID   = "5b1d0000000000000000000000000000000000000000000000000000000000aa"
	fuzzContainerID = "c0de0000000000000000000000000000000000000000000000000000000000bb"
)

// FuzzLoadSandbox writes arbitrary bytes as a sandbox's record and loads it.
// Records are on disk under the state root: a full disk, a crash or a hand
// edit can leave anything there, and every command that lists or removes
// sandboxes reads them all. LoadSandbox must never panic; a record it
// cannot use is an error wrapping ErrCorrupt, which lists the sandbox as
// broken for `sandbox rm -f`, never ErrNotFound, which would hide it. A
// record it returns names the sandbox of its directory, with a valid name:
// the removal of a record that said another ID ("" is the sandboxes
// directory itself) would remove another's state. Saved again, it loads as
// itself.
func FuzzLoadSandbox(f *testing.F) {
	sb := &Sandbox{ID: fuzzSandboxID, Name: "web", Hostname: "web", Network: NetworkBridge, State: StateReady,
		PausePID: 42, PauseStart: 7, NetNSPath: "/run/podbox/netns/x", IP: "10.88.0.2",
		Ports:     []nat.Mapping{{HostPort: 8080, Port: 80, Protocol: "tcp"}},
		Resources: &Resources{Memory: 64 << 20, CPUs: 0.5}, Labels: map[string]string{"a": "b"},
		CreatedAt: time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC)}
	b, _ := json.MarshalIndent(sb, "", "  ")
	f.Add(b)
	f.Add(b[:len(b)/2]) // cut short
	f.Add([]byte{})
	f.Add([]byte(`{"id": "` + fuzzSandboxID + `", "name": "web", "state": "ready", "createdAt": "x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := Store{Root: t.TempDir()}
		dir := s.SandboxDir(fuzzSandboxID)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "sandbox.json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		sb, err := s.LoadSandbox(fuzzSandboxID)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("LoadSandbox of %q: %v, want an error wrapping ErrCorrupt", b, err)
			}
			return
		}
		if sb.ID != fuzzSandboxID || ValidName("sandbox", sb.Name) != nil {
			t.Fatalf("LoadSandbox of %q in the directory of %s = sandbox %q named %q", b, fuzzSandboxID, sb.ID, sb.Name)
		}
		if err := s.SaveSandbox(sb); err != nil {
			t.Fatal(err)
		}
		again, err := s.LoadSandbox(fuzzSandboxID)
		if err != nil || !sameJSON(t, again, sb) {
			t.Fatalf("LoadSandbox of %q = %+v, which saved loads as %+v, %v", b, sb, again, err)
		}
	})
}

// FuzzLoadContainer is FuzzLoadSandbox for a container's record, read
// through both LoadContainer and ResolveContainer (by its ID's link): an
// error wrapping ErrCorrupt, or a record of this container of this
// sandbox, with a valid name, that saves and loads as itself.
func FuzzLoadContainer(f *testing.F) {
	c := &Container{ID: fuzzContainerID, Name: "web-srv", SandboxID: fuzzSandboxID, Image: "busybox", Command: []string{"httpd", "-f"},
		State: ContainerStopped, PID: 9, Exit: &Exit{Status: 137, Reason: ReasonOOMKilled}, Bundle: "/b", LogPath: "/l",
		Config:        &ContainerConfig{Mounts: []Mount{{Type: MountBind, Source: "/srv", Destination: "/www", Options: []string{"rbind", "rprivate"}}}},
		RestartPolicy: "on-failure:3", RestartCount: 2}
	b, _ := json.MarshalIndent(c, "", "  ")
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		s := Store{Root: t.TempDir()}
		dir := s.ContainerDir(fuzzSandboxID, fuzzContainerID)
		link := filepath.Join(s.Root, "containers", fuzzContainerID)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(link), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..", "sandboxes", fuzzSandboxID, "containers", fuzzContainerID), link); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "container.json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := s.LoadContainer(fuzzSandboxID, fuzzContainerID)
		byRef, rerr := s.ResolveContainer(fuzzContainerID)
		if (err == nil) != (rerr == nil) {
			t.Fatalf("container record %q: LoadContainer says %v, ResolveContainer %v", b, err, rerr)
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) || !errors.Is(rerr, ErrCorrupt) {
				t.Fatalf("container record %q: %v and %v, want errors wrapping ErrCorrupt", b, err, rerr)
			}
			return
		}
		if c.ID != fuzzContainerID || c.SandboxID != fuzzSandboxID || ValidName("container", c.Name) != nil {
			t.Fatalf("container record %q in the directory of %s/%s = container %q of %q named %q", b, fuzzSandboxID, fuzzContainerID, c.ID, c.SandboxID, c.Name)
		}
		if !sameJSON(t, byRef, c) {
			t.Fatalf("container record %q: LoadContainer = %+v, ResolveContainer = %+v", b, c, byRef)
		}
		if err := s.SaveContainer(c); err != nil {
			t.Fatal(err)
		}
		again, err := s.LoadContainer(fuzzSandboxID, fuzzContainerID)
		if err != nil || !sameJSON(t, again, c) {
			t.Fatalf("LoadContainer of %q = %+v, which saved loads as %+v, %v", b, c, again, err)
		}
	})
}

// sameJSON compares records as they are stored: an empty map and a nil one
// are one record.
func sameJSON(t *testing.T, a, b any) bool {
	x, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(x) == string(y)
}
