package netsetup_test

import (
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
)

// TestMain checks, read-only, that the tests left the machine's own network
// namespace as they found it: every privileged test must work inside its own
// node namespace, and a stray request (say, through a closed netlink Handle,
// which the netlink package silently re-targets at the caller's namespace)
// must not go unnoticed.
func TestMain(m *testing.M) {
	before, berr := machineLinks()
	code := m.Run()
	after, aerr := machineLinks()
	if berr == nil && aerr == nil && !slices.Equal(before, after) {
		fmt.Fprintf(os.Stderr, "FAIL: the machine's own network namespace changed during the tests:\n  before: %v\n  after:  %v\n", before, after)
		code = 1
	}
	os.Exit(code)
}

// machineLinks lists the links of the caller's namespace, with index and
// flags, so that a link deleted, added or brought up or down shows.
func machineLinks() ([]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range links {
		a := l.Attrs()
		out = append(out, fmt.Sprintf("%d:%s:%v", a.Index, a.Name, a.Flags))
	}
	slices.Sort(out)
	return out, nil
}
