package cli

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podbox/podbox/volume"
)

// allows reports whether p lets name through unconditionally (a rule with
// no argument checks).
func allows(p *specs.LinuxSeccomp, name string) bool {
	for _, r := range p.Syscalls {
		if r.Action == specs.ActAllow && len(r.Args) == 0 && slices.Contains(r.Names, name) {
			return true
		}
	}
	return false
}

// The seccomp filter a container gets from run's options: docker's default
// profile, for the container's capabilities; none; a profile file; none
// with --privileged, which also gives every capability, the host's
// devices, and /proc and /sys unmasked and writable.
func TestSeccompOptions(t *testing.T) {
	spec := func(t *testing.T, o hostOptions) (*specs.Spec, runConfig) {
		t.Helper()
		rc, err := o.parse()
		if err != nil {
			t.Fatal(err)
		}
		s := rootfsSpec(t, "app", "/r", processOptions{args: []string{"true"}})
		rc.apply(s, volume.Store{})
		return s, rc
	}

	t.Run("default", func(t *testing.T) {
		s, rc := spec(t, hostOptions{})
		p := s.Linux.Seccomp
		if p == nil {
			t.Fatal("no seccomp profile by default")
		}
		if p.DefaultAction != specs.ActErrno || p.DefaultErrnoRet == nil || *p.DefaultErrnoRet != 1 {
			t.Errorf("default action %s (errno %v), want docker's: %s with EPERM", p.DefaultAction, p.DefaultErrnoRet, specs.ActErrno)
		}
		if runtime.GOARCH == "amd64" && !slices.Contains(p.Architectures, specs.ArchX86_64) {
			t.Errorf("architectures %v lack %s", p.Architectures, specs.ArchX86_64)
		}
		if !allows(p, "read") || !allows(p, "futex") {
			t.Error("the default profile does not allow read and futex")
		}
		// Calls that need CAP_SYS_ADMIN are out without it.
		if allows(p, "unshare") || allows(p, "mount") {
			t.Error("the default profile allows unshare or mount to a container without CAP_SYS_ADMIN")
		}
		if rc.cfg != nil {
			t.Errorf("record config %+v for the default", rc.cfg)
		}
	})

	t.Run("by the capabilities", func(t *testing.T) {
		bnd, err := boundingSet()
		if err != nil || bnd&(1<<21) == 0 {
			t.Skip("CAP_SYS_ADMIN is not in this process's bounding set")
		}
		s, _ := spec(t, hostOptions{capAdd: []string{"SYS_ADMIN"}})
		if !allows(s.Linux.Seccomp, "unshare") || !allows(s.Linux.Seccomp, "mount") {
			t.Error("--cap-add SYS_ADMIN: the profile does not allow unshare and mount")
		}
	})

	t.Run("unconfined", func(t *testing.T) {
		s, rc := spec(t, hostOptions{securityOpts: []string{"seccomp=unconfined"}})
		if s.Linux.Seccomp != nil {
			t.Errorf("seccomp=unconfined: profile %+v", s.Linux.Seccomp)
		}
		if rc.cfg == nil || rc.cfg.Seccomp != "unconfined" {
			t.Errorf("record config %+v", rc.cfg)
		}
	})

	t.Run("profile file", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, "p.json")
		profile := `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}`
		if err := os.WriteFile(file, []byte(profile), 0o644); err != nil {
			t.Fatal(err)
		}
		// Relative to the working directory, recorded absolute.
		t.Chdir(dir)
		s, rc := spec(t, hostOptions{securityOpts: []string{"seccomp=unconfined", "seccomp=p.json"}})
		p := s.Linux.Seccomp
		if p == nil || p.DefaultAction != specs.ActAllow || len(p.Syscalls) != 1 || p.Syscalls[0].Action != specs.ActErrno {
			t.Fatalf("profile %+v, want the file's", p)
		}
		if rc.cfg == nil || rc.cfg.Seccomp != file {
			t.Errorf("record config %+v, want seccomp %s", rc.cfg, file)
		}
	})

	t.Run("privileged", func(t *testing.T) {
		s, rc := spec(t, hostOptions{privileged: true, securityOpts: []string{"seccomp=unconfined"}})
		if s.Linux.Seccomp != nil {
			t.Error("--privileged: a seccomp profile")
		}
		bnd, err := boundingSet()
		if err != nil {
			t.Fatal(err)
		}
		want := capabilities(nil, []string{capAll}, nil, bnd)
		if c := s.Process.Capabilities; !slices.Equal(c.Bounding, want) || !slices.Equal(c.Effective, want) || !slices.Equal(c.Permitted, want) {
			t.Errorf("--privileged: capabilities %+v, want the bounding set %v", c, want)
		}
		if len(s.Linux.MaskedPaths)+len(s.Linux.ReadonlyPaths) != 0 {
			t.Errorf("--privileged: masked %v, read-only %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
		}
		for _, m := range s.Mounts {
			if (m.Destination == "/sys" || m.Destination == "/sys/fs/cgroup") && (slices.Contains(m.Options, "ro") || !slices.Contains(m.Options, "rw")) {
				t.Errorf("--privileged: %s mounted %v", m.Destination, m.Options)
			}
		}
		null := slices.IndexFunc(s.Linux.Devices, func(d specs.LinuxDevice) bool { return d.Path == "/dev/null" })
		if null < 0 || s.Linux.Devices[null].Type != "c" || s.Linux.Devices[null].Major != 1 || s.Linux.Devices[null].Minor != 3 {
			t.Errorf("--privileged: devices %+v lack /dev/null (c 1:3)", s.Linux.Devices)
		}
		for _, d := range s.Linux.Devices {
			if filepath.Dir(d.Path) == "/dev/pts" || d.Path == "/dev/console" {
				t.Errorf("--privileged: device %s, which the container has its own of", d.Path)
			}
		}
		if r := s.Linux.Resources; r == nil || len(r.Devices) != 1 || !r.Devices[0].Allow || r.Devices[0].Access != "rwm" {
			t.Errorf("--privileged: device cgroup %+v, want every device allowed", r)
		}
		if rc.cfg == nil || !rc.cfg.Privileged || rc.cfg.CapAdd != nil {
			t.Errorf("record config %+v", rc.cfg)
		}
	})
}
