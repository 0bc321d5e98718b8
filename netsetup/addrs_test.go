package netsetup_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/netsetup"
	"golang.org/x/sys/unix"
)

// The per-link dump gives one link's addresses of one family, and none of
// another link's, in the node the path names.
func TestLinkAddrs(t *testing.T) {
	node := testnode.New(t)
	addBridge(t, node.Handle, "pbtest0", "10.89.0.1/16")
	addBridge(t, node.Handle, "pbtest1", "192.168.50.1/24")
	addBridge(t, node.Handle, "pbtest2", "")
	for name, want := range map[string][]netip.Prefix{
		"pbtest0": {netip.MustParsePrefix("10.89.0.1/16")},
		"pbtest1": {netip.MustParsePrefix("192.168.50.1/24")},
		"pbtest2": nil,
		"lo":      {netip.MustParsePrefix("127.0.0.1/8")},
	} {
		l, err := node.Handle.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := netsetup.LinkAddrs(node.Path, l.Attrs().Index, unix.AF_INET)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: addresses %v, want %v", name, got, want)
		}
	}
	lo, err := node.Handle.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	got, err := netsetup.LinkAddrs(node.Path, lo.Attrs().Index, unix.AF_INET6)
	if err != nil {
		t.Fatal(err)
	}
	if want := []netip.Prefix{netip.MustParsePrefix("::1/128")}; !slices.Equal(got, want) {
		t.Errorf("lo IPv6 addresses %v, want %v", got, want)
	}
}
