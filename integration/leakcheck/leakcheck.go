// Package leakcheck fails a test that leaves any trace of podbox behind: a
// process, a mount (netns pins included), a network interface in the test
// node, an IP lease, a cgroup, or a file in the state root.
//
// A test calls Check right after creating its node; Check records what exists
// then and, when the test ends, waits briefly for asynchronous teardown to
// settle and reports everything new that is still there. It only reads; it
// never cleans up, so a leak stays visible to whoever debugs it.
package leakcheck

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/netsetup/ipam"
)

// Options says where to look.
type Options struct {
	// Root is the podbox state root the test uses. Nothing may remain under
	// it but empty directories and the files named in AllowFiles; no mount
	// may remain under it.
	Root string
	// AllowFiles are slash-separated globs, relative to Root, of files that
	// may outlive a sandbox (lock files, node-level configuration).
	AllowFiles []string
	// Node is the test's node namespace. Every link created in it during the
	// test must be gone, except those named in AllowLinks.
	Node       *testnode.Node
	AllowLinks []string
	// CgroupParent, if set, is the cgroup path (relative to each hierarchy's
	// root) under which the test's sandboxes live; no cgroup below it may
	// remain in any hierarchy. The parent itself is node-level and may stay.
	CgroupParent string
	// Settle is how long to wait for asynchronous teardown; default 5s.
	Settle time.Duration
}

// Check records the current state and registers the comparison as a cleanup
// of t. Register it after the node and the state root exist, so that it runs
// before they are removed.
func Check(t testing.TB, o Options) {
	t.Helper()
	before := Take(o)
	t.Cleanup(func() {
		for _, l := range before.Leaks() {
			t.Errorf("leak: %s", l)
		}
	})
}

// Snapshot is what existed at one moment, for checks in the middle of a
// test (a soak checks after every so many cycles).
type Snapshot struct {
	o      Options
	before state
}

// Take records what exists now.
func Take(o Options) Snapshot {
	if o.Settle == 0 {
		o.Settle = 5 * time.Second
	}
	return Snapshot{o: o, before: snapshot(o)}
}

// Leaks waits up to the settle time for everything made since s was taken
// to go, and describes what is still there.
func (s Snapshot) Leaks() []string {
	deadline := time.Now().Add(s.o.Settle)
	for {
		leaks := compare(s.before, snapshot(s.o), s.o)
		if len(leaks) == 0 || time.Now().After(deadline) {
			return leaks
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type state struct {
	pids        map[int]bool
	mounts      map[string]bool
	links       map[string]bool
	nodeNetNS   uint64
	cgroupDirs  map[string]bool
	files       []string
	leases      []string
	selfPID     int
	processInfo map[int]proc
}

type proc struct {
	ppid    int
	netns   uint64
	cmdline string
	cgroup  string
	state   string
}

func snapshot(o Options) state {
	s := state{
		pids:        map[int]bool{},
		mounts:      map[string]bool{},
		links:       map[string]bool{},
		cgroupDirs:  map[string]bool{},
		selfPID:     os.Getpid(),
		processInfo: map[int]proc{},
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		s.pids[pid] = true
		if p, ok := readProc(pid); ok {
			s.processInfo[pid] = p
		}
	}
	for _, m := range mountPoints() {
		s.mounts[m] = true
	}
	if o.Node != nil {
		if links, err := o.Node.Handle.LinkList(); err == nil {
			for _, l := range links {
				s.links[l.Attrs().Name] = true
			}
		}
		s.nodeNetNS = inode(o.Node.Path)
	}
	if o.CgroupParent != "" {
		for _, root := range cgroupRoots() {
			parent := filepath.Join(root, o.CgroupParent)
			_ = filepath.WalkDir(parent, func(path string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() && path != parent {
					s.cgroupDirs[path] = true
				}
				return nil
			})
		}
	}
	if o.Root != "" {
		s.files, s.leases = stateFiles(o)
	}
	return s
}

func compare(before, after state, o Options) []string {
	var leaks []string
	for pid, p := range after.processInfo {
		if before.pids[pid] || pid == after.selfPID {
			continue
		}
		if why := ownedBy(p, pid, after, o); why != "" {
			leaks = append(leaks, fmt.Sprintf("process %d (%s, state %s) %s", pid, p.cmdline, p.state, why))
		}
	}
	for m := range after.mounts {
		if !before.mounts[m] && o.Root != "" && within(m, o.Root) {
			leaks = append(leaks, fmt.Sprintf("mount %s", m))
		}
	}
	for l := range after.links {
		if !before.links[l] && !slices.Contains(o.AllowLinks, l) {
			leaks = append(leaks, fmt.Sprintf("link %q in node namespace", l))
		}
	}
	for d := range after.cgroupDirs {
		if !before.cgroupDirs[d] {
			leaks = append(leaks, fmt.Sprintf("cgroup %s", d))
		}
	}
	for _, f := range after.files {
		if !slices.Contains(before.files, f) {
			leaks = append(leaks, fmt.Sprintf("state file %s", filepath.Join(o.Root, f)))
		}
	}
	for _, l := range after.leases {
		if !slices.Contains(before.leases, l) {
			leaks = append(leaks, fmt.Sprintf("IP lease %s", l))
		}
	}
	slices.Sort(leaks)
	return leaks
}

// ownedBy says why a new process belongs to this test, or "" if it does not:
// it lives in the test's node namespace, names the test's state root, sits in
// the test's cgroup, or descends from the test process. A process of some
// other job on a shared machine matches none of these.
func ownedBy(p proc, pid int, s state, o Options) string {
	switch {
	case s.nodeNetNS != 0 && p.netns == s.nodeNetNS:
		return "is in the test node's network namespace"
	case o.Root != "" && strings.Contains(p.cmdline, o.Root):
		return "names the test's state root"
	case o.CgroupParent != "" && strings.Contains(p.cgroup, o.CgroupParent):
		return "is in the test's cgroup"
	}
	for seen, cur := 0, p.ppid; cur > 1 && seen < 64; seen++ {
		if cur == s.selfPID {
			return "descends from the test process"
		}
		cur = s.processInfo[cur].ppid
	}
	return ""
}

func readProc(pid int) (proc, bool) {
	dir := "/proc/" + strconv.Itoa(pid)
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return proc{}, false
	}
	var p proc
	for line := range strings.SplitSeq(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSpace(v)
		switch k {
		case "PPid":
			p.ppid, _ = strconv.Atoi(v)
		case "State":
			p.state = v
		}
	}
	cmd, _ := os.ReadFile(dir + "/cmdline")
	p.cmdline = strings.TrimSpace(string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
	cg, _ := os.ReadFile(dir + "/cgroup")
	p.cgroup = string(cg)
	p.netns = inode(dir + "/ns/net")
	return p, true
}

func inode(path string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0
	}
	return st.Ino
}

func mountPoints() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 {
			out = append(out, unescapeMount(fields[4]))
		}
	}
	return out
}

// cgroupRoots lists the mount points of every cgroup hierarchy (v1
// controllers and the v2 unified tree, hybrid hosts having both). It does not
// use sandbox.CgroupMounts on purpose: the checker must not share the code it
// checks (and the sandbox package's own tests import this one).
func cgroupRoots() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fstype := strings.Fields(post)[0]
		if fstype == "cgroup" || fstype == "cgroup2" {
			out = append(out, unescapeMount(strings.Fields(pre)[4]))
		}
	}
	return out
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// stateFiles lists the files under the root (relative, allowed ones left
// out) and the leases recorded in every IPAM pool under it.
func stateFiles(o Options) (files, leases []string) {
	_ = filepath.WalkDir(o.Root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(o.Root, path)
		rel = filepath.ToSlash(rel)
		for _, g := range o.AllowFiles {
			if ok, _ := filepath.Match(g, rel); ok {
				return nil
			}
		}
		files = append(files, rel)
		return nil
	})
	pools, _ := filepath.Glob(filepath.Join(o.Root, "ipam", "*"))
	for _, dir := range pools {
		ls, err := readLeases(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			leases = append(leases, fmt.Sprintf("unreadable pool %s: %v", dir, err))
		}
		leases = append(leases, ls...)
	}
	return files, leases
}

func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

func readLeases(dir string) ([]string, error) {
	p, err := ipam.OpenExisting(dir)
	if err != nil {
		return nil, err
	}
	ls, err := p.Leases()
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = fmt.Sprintf("%s held by %q in %s", l.IP, l.Owner, dir)
	}
	return out, nil
}
