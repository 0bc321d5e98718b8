package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestCgroupMounts(t *testing.T) {
	p := filepath.Join(t.TempDir(), "mountinfo")
	// An overlay line longer than the scanner's first buffer comes first.
	overlay := "50 27 0:50 / /merged rw - overlay overlay rw,lowerdir=" + strings.Repeat("/l:", 5000) + "\n"
	os.WriteFile(p, []byte(overlay+`22 27 0:21 / /proc rw,relatime - proc proc rw
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
33 30 0:29 / /sys/fs/cgroup/cpu\040acct rw - cgroup cgroup rw,cpu,cpuacct
40 30 0:36 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
`), 0o600)
	ms, err := CgroupMounts(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 || !ms[0].V2 || ms[0].Path != "/sys/fs/cgroup/unified" ||
		ms[1].Path != "/sys/fs/cgroup/cpu acct" || !slices.Equal(ms[1].Controllers, []string{"cpu", "cpuacct"}) ||
		!slices.Contains(ms[2].Controllers, "name=systemd") {
		t.Fatalf("CgroupMounts = %+v", ms)
	}
	if _, err := CgroupMounts(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("no error for a missing mountinfo")
	}
	if got := UnescapeMount(`/a\040b\011c\134d`); got != "/a b\tc\\d" {
		t.Errorf("UnescapeMount = %q", got)
	}
}

// Reading stops once every hierarchy the kernel lists has a mount at its
// root: mounts after that (a node's netns pins) are not read. A subtree
// bind mount does not count, and a hierarchy not mounted at all leaves the
// whole table read.
func TestCgroupMountsStop(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	procCgroup := write("cgroup", "3:name=systemd:/\n2:cpu,cpuacct:/user.slice\n1:memory:/\n0::/\n")
	const (
		v2      = "31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
		cpu     = "33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
		systemd = "40 30 0:36 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
		memSub  = "41 30 0:37 /pod /ctr/sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
		mem     = "42 30 0:37 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
		pin     = "90 27 0:4 net:[4026532] /run/podbox/sandboxes/x/netns rw - nsfs nsfs rw\n"
		late    = "91 27 0:27 / /late rw - cgroup2 cgroup2 rw\n"
	)
	paths := func(ms []CgroupMount) []string {
		var ps []string
		for _, m := range ms {
			ps = append(ps, m.Path)
		}
		return ps
	}
	for _, c := range []struct {
		name, mountinfo string
		want            []string
	}{
		{"all found", v2 + cpu + systemd + mem + pin + late,
			[]string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/memory"}},
		{"subtree mount does not count", v2 + cpu + systemd + memSub + pin + mem + pin + late,
			[]string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/systemd", "/ctr/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory"}},
		{"one not mounted", v2 + cpu + systemd + pin + late,
			[]string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/systemd", "/late"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ms, err := cgroupMounts(write("mountinfo", c.mountinfo), procCgroup)
			if err != nil {
				t.Fatal(err)
			}
			if got := paths(ms); !slices.Equal(got, c.want) {
				t.Errorf("mounts %q, want %q", got, c.want)
			}
		})
	}
	if _, err := cgroupMounts(write("mountinfo", v2), write("bad", "garbage\n")); err == nil {
		t.Error("no error for a malformed cgroup file")
	}
}

// On this host the stopped read finds each hierarchy where the full read
// finds it first.
func TestHostCgroupMounts(t *testing.T) {
	all, err := CgroupMounts(MountInfo)
	if err != nil {
		t.Fatal(err)
	}
	got, err := HostCgroupMounts()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || len(got) > len(all) {
		t.Fatalf("HostCgroupMounts = %+v, full read %+v", got, all)
	}
	for i := range got {
		if got[i].Path != all[i].Path || got[i].V2 != all[i].V2 || !slices.Equal(got[i].Controllers, all[i].Controllers) {
			t.Errorf("mount %d: %+v, full read %+v", i, got[i], all[i])
		}
	}
}
