package sandbox

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
)

// MountInfo is the mount table of the calling thread's mount namespace.
// thread-self, not self: /proc/self shows the main thread's namespace, which
// is not always the caller's (see sandbox.StartPause).
const MountInfo = "/proc/thread-self/mountinfo"

// CgroupMount is one mounted cgroup tree: a v1 hierarchy with its
// controllers, or the v2 unified tree.
type CgroupMount struct {
	Path        string
	V2          bool
	Controllers []string // v1 only: "cpu", "cpuacct", "name=systemd", …
}

// ProcCgroup lists the calling process's cgroup in each hierarchy the kernel
// has, one "ID:CONTROLLERS:PATH" line per hierarchy ("0::PATH" for v2).
const ProcCgroup = "/proc/self/cgroup"

// CgroupMounts lists the cgroup trees in the mountinfo file at path (pass
// MountInfo), in mount order, reading the whole file. It is the one reader
// of cgroup mounts that the sandbox's cgroups, the metrics and the OOM
// watcher share, so v1, hybrid and pure v2 hosts are told apart in one place.
func CgroupMounts(path string) ([]CgroupMount, error) {
	return cgroupMounts(path, "")
}

// HostCgroupMounts is CgroupMounts(MountInfo) that stops reading as soon as
// every hierarchy the kernel lists in ProcCgroup has been found mounted at
// its root. The cgroup trees are mounted at boot, so they come before the
// mounts a busy node adds later (a netns pin per sandbox): without the stop,
// every create and remove would read a table that grows with the node, the
// kernel formatting each pin's line (a path lookup) on the way. A hierarchy
// that is not mounted in this namespace leaves the whole table read, and a
// tree mounted twice is found at its first mount.
func HostCgroupMounts() ([]CgroupMount, error) {
	return cgroupMounts(MountInfo, ProcCgroup)
}

// cgroupMounts is CgroupMounts, stopping once each hierarchy listed in the
// /proc/PID/cgroup file procCgroup (if not "") has a mount.
func cgroupMounts(path, procCgroup string) ([]CgroupMount, error) {
	var want []string
	if procCgroup != "" {
		var err error
		if want, err = cgroupHierarchies(procCgroup); err != nil {
			return nil, err
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cgroup mounts: %w", err)
	}
	defer f.Close()
	var ms []CgroupMount
	sc := bufio.NewScanner(f)
	// Overlay mounts with many layers make long lines, so the buffer may
	// grow to 1 MiB; it starts small because every sandbox create and
	// remove reads this file, and a shim that never collects garbage keeps
	// what it allocated.
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// "36 25 0:32 / /sys/fs/cgroup/memory rw,… - cgroup cgroup rw,memory"
		// Only cgroup lines are parsed: a busy node has thousands of
		// other mounts (a pin per sandbox), and splitting each would be
		// most of the cost.
		line := sc.Bytes()
		if !bytes.Contains(line, []byte(" - cgroup")) {
			continue
		}
		pre, post, ok := strings.Cut(string(line), " - ")
		if !ok {
			continue
		}
		pf, sf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(sf) < 3 {
			continue
		}
		var m CgroupMount
		switch sf[0] {
		case "cgroup2":
			m = CgroupMount{Path: UnescapeMount(pf[4]), V2: true}
		case "cgroup":
			// The super options name the controllers: "rw,cpu,cpuacct".
			var ctrl []string
			for _, o := range strings.Split(sf[2], ",") {
				if o != "rw" && o != "ro" {
					ctrl = append(ctrl, o)
				}
			}
			m = CgroupMount{Path: UnescapeMount(pf[4]), Controllers: ctrl}
		default:
			continue
		}
		ms = append(ms, m)
		if pf[3] == "/" {
			want = slices.DeleteFunc(want, m.holds)
			if procCgroup != "" && len(want) == 0 {
				break
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cgroup mounts: %s: %w", path, err)
	}
	return ms, nil
}

// holds reports whether m mounts the hierarchy h, named as cgroupHierarchies
// names it: "" for v2, else one of its controllers.
func (m CgroupMount) holds(h string) bool {
	if h == "" {
		return m.V2
	}
	return !m.V2 && slices.Contains(m.Controllers, h)
}

// cgroupHierarchies names each hierarchy listed in the /proc/PID/cgroup file
// at path: "" for the v2 tree, else its first controller ("cpu",
// "name=systemd"), which no other hierarchy has.
func cgroupHierarchies(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cgroup mounts: %w", err)
	}
	var hs []string
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		// "4:cpu,cpuacct:/user.slice", "0::/"
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			return nil, fmt.Errorf("cgroup mounts: %s: malformed line %q", path, line)
		}
		ctrl, _, _ := strings.Cut(f[1], ",")
		hs = append(hs, ctrl)
	}
	return hs, nil
}

// UnescapeMount undoes mountinfo's octal escapes ("\040" for a space) in a
// mount point.
func UnescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
