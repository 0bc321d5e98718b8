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
