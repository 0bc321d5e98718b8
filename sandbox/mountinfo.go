package sandbox

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
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

// CgroupMounts lists the cgroup trees in the mountinfo file at path (pass
// MountInfo), in mount order. It is the one reader of cgroup mounts that the
// sandbox's cgroups, the metrics and the OOM watcher share, so v1, hybrid and
// pure v2 hosts are told apart in one place.
func CgroupMounts(path string) ([]CgroupMount, error) {
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
		switch sf[0] {
		case "cgroup2":
			ms = append(ms, CgroupMount{Path: UnescapeMount(pf[4]), V2: true})
		case "cgroup":
			// The super options name the controllers: "rw,cpu,cpuacct".
			var ctrl []string
			for _, o := range strings.Split(sf[2], ",") {
				if o != "rw" && o != "ro" {
					ctrl = append(ctrl, o)
				}
			}
			ms = append(ms, CgroupMount{Path: UnescapeMount(pf[4]), Controllers: ctrl})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cgroup mounts: %s: %w", path, err)
	}
	return ms, nil
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
