package leakcheck_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/integration/leakcheck"
	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/netsetup/ipam"
)

// recorder stands in for the test given to Check, keeping its cleanups and
// errors so this test can run them and read them.
type recorder struct {
	testing.TB
	cleanups []func()
	errors   []string
}

func (r *recorder) Helper()          {}
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) finish() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

// Every kind of leak is reported, and a clean test reports nothing.
func TestCheckFindsEachLeak(t *testing.T) {
	node := testnode.New(t)
	root := t.TempDir()
	cg := "podbox-test-leakcheck-" + filepath.Base(root)
	opts := leakcheck.Options{Root: root, Node: node, CgroupParent: cg, Settle: 200 * time.Millisecond,
		AllowLinks: []string{"allowed0"}, AllowFiles: []string{"keep/*"}}

	clean := &recorder{TB: t}
	leakcheck.Check(clean, opts)
	clean.finish()
	if len(clean.errors) != 0 {
		t.Fatalf("nothing leaked, but Check reported: %v", clean.errors)
	}

	r := &recorder{TB: t}
	leakcheck.Check(r, opts)

	// (This kernel has no dummy links: a veth pair and a bridge stand in.)
	if err := node.Handle.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "leaked0"}, PeerName: "leaked1"}); err != nil {
		t.Fatal(err)
	}
	if err := node.Handle.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "allowed0"}}); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(root, "keep"), 0o700)
	os.WriteFile(filepath.Join(root, "keep", "ok"), nil, 0o600)
	os.WriteFile(filepath.Join(root, "stray"), nil, 0o600)
	mnt := filepath.Join(root, "mnt")
	os.Mkdir(mnt, 0o700)
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	pool, err := ipam.Open(filepath.Join(root, "ipam", "br0"), netip.MustParsePrefix("10.99.0.0/24"), netip.MustParseAddr("10.99.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Lease("sandbox-x"); err != nil {
		t.Fatal(err)
	}
	cgDir := "/sys/fs/cgroup/pids/" + cg + "/sandbox"
	if err := os.MkdirAll(cgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(cgDir); os.Remove(filepath.Dir(cgDir)) })
	sleeper := node.Command(context.Background(), "sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })

	r.finish()
	report := strings.Join(r.errors, "\n")
	for _, want := range []string{`link "leaked0"`, "state file " + filepath.Join(root, "stray"), "mount " + mnt,
		"IP lease 10.99.0.2", "cgroup " + cgDir, "process "} {
		if !strings.Contains(report, want) {
			t.Errorf("leak report lacks %q:\n%s", want, report)
		}
	}
	for _, notWant := range []string{"allowed0", "keep/ok"} {
		if strings.Contains(report, notWant) {
			t.Errorf("leak report names allowed %q:\n%s", notWant, report)
		}
	}
}
