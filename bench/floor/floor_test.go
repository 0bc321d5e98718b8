package floor

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// podboxSpec is shaped like the spec podbox's shim hands runc once a
// container has joined its sandbox.
func podboxSpec(etcDir string) *specs.Spec {
	return &specs.Spec{
		Version: "1.0.2",
		Process: &specs.Process{Args: []string{"sleep", "3600"}, Cwd: "/", NoNewPrivileges: true},
		Root:    &specs.Root{Path: "/tmp/rootfs"},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"ro"}},
			{Destination: "/etc/hosts", Type: "bind", Source: filepath.Join(etcDir, "hosts"), Options: []string{"rbind", "ro"}},
			{Destination: "/etc/resolv.conf", Type: "bind", Source: filepath.Join(etcDir, "resolv.conf"), Options: []string{"rbind", "ro"}},
			{Destination: "/data", Type: "bind", Source: etcDir, Options: []string{"rbind"}},
			{Destination: "/dev/shm", Type: "bind", Source: "/run/podbox/sandboxes/sb1/shm", Options: []string{"rbind", "nosuid"}},
		},
		Annotations: map[string]string{"io.podbox.sandbox": "sb1"},
		Linux: &specs.Linux{
			CgroupsPath: "/podbox/sb1/c1",
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.MountNamespace},
				{Type: specs.NetworkNamespace, Path: "/run/podbox/netns/sb1"},
				{Type: specs.IPCNamespace, Path: "/proc/77/ns/ipc"},
				{Type: specs.UTSNamespace, Path: "/proc/77/ns/uts"},
			},
			MaskedPaths:   []string{"/proc/acpi", "/proc/kcore", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/sys"},
		},
	}
}

// TestJoinSpecIsPodboxSpec: the floor's container differs from podbox's
// only in the namespaces it joins and the /etc files and /dev/shm it binds
// (its own); every mount, masked path, capability and annotation stays.
func TestJoinSpecIsPodboxSpec(t *testing.T) {
	etc := t.TempDir()
	for name, content := range map[string]string{"hosts": "127.0.0.1 localhost\n", "resolv.conf": "nameserver 10.0.0.1\n"} {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := &Floor{Dir: t.TempDir(), CgroupParent: "floor-test"}
	if err := os.MkdirAll(f.bundle("fsb"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.bundle("fsb"), "pid"), []byte("4242\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pb := podboxSpec(etc)
	got, err := f.JoinSpec(pb, "fsb")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pb, podboxSpec(etc)) {
		t.Errorf("JoinSpec changed podbox's spec")
	}

	wantNS := []specs.LinuxNamespace{
		{Type: specs.PIDNamespace}, {Type: specs.MountNamespace},
		{Type: specs.NetworkNamespace, Path: f.pin("fsb")},
		{Type: specs.IPCNamespace, Path: "/proc/4242/ns/ipc"},
		{Type: specs.UTSNamespace, Path: "/proc/4242/ns/uts"},
	}
	if !reflect.DeepEqual(got.Linux.Namespaces, wantNS) {
		t.Errorf("namespaces %+v, want %+v", got.Linux.Namespaces, wantNS)
	}
	for i, name := range map[int]string{2: "hosts", 3: "resolv.conf"} {
		src := got.Mounts[i].Source
		if filepath.Dir(src) != filepath.Join(f.bundle("fsb"), "etc") {
			t.Errorf("%s bound from %s, not from the floor sandbox's own copy", got.Mounts[i].Destination, src)
		}
		want, _ := os.ReadFile(filepath.Join(etc, name))
		if b, err := os.ReadFile(src); err != nil || string(b) != string(want) {
			t.Errorf("floor's %s: %q, %v; want podbox's content %q", name, b, err, want)
		}
	}

	if src := got.Mounts[5].Source; filepath.Dir(src) != f.bundle("fsb") {
		t.Errorf("/dev/shm bound from %s, not from the floor sandbox's own", src)
	} else if fi, err := os.Stat(src); err != nil || fi.Mode()&(os.ModePerm|os.ModeSticky) != 0o777|os.ModeSticky {
		t.Errorf("the floor sandbox's /dev/shm: %v %v, want a directory of mode 1777", fi, err)
	}

	// Everything else is podbox's, field for field.
	got.Linux.Namespaces = pb.Linux.Namespaces
	got.Mounts[2].Source, got.Mounts[3].Source = pb.Mounts[2].Source, pb.Mounts[3].Source
	got.Mounts[5].Source = pb.Mounts[5].Source
	if !reflect.DeepEqual(got, pb) {
		t.Errorf("floor spec differs from podbox's beyond namespaces and /etc sources:\n got %+v\nwant %+v", got, pb)
	}
}

// A spec joining a namespace the floor cannot map is refused, not run
// with podbox's path.
func TestJoinSpecUnknownNamespace(t *testing.T) {
	f := &Floor{Dir: t.TempDir()}
	os.MkdirAll(f.bundle("fsb"), 0o700)
	os.WriteFile(filepath.Join(f.bundle("fsb"), "pid"), []byte("1\n"), 0o600)
	pb := podboxSpec(t.TempDir())
	pb.Mounts = nil
	pb.Linux.Namespaces = append(pb.Linux.Namespaces, specs.LinuxNamespace{Type: "time", Path: "/proc/77/ns/time"})
	if _, err := f.JoinSpec(pb, "fsb"); err == nil {
		t.Fatal("JoinSpec accepted a time namespace path it cannot map")
	}
}
