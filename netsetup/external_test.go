package netsetup_test

import (
	"context"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/podbox/podbox/netsetup"
)

// InspectExternal finds in a namespace attached by someone else what Setup
// would have reported for it, and says which link does not fit when the
// namespace is no veth on an addressed bridge.
func TestInspectExternal(t *testing.T) {
	e := newEnv(t, netsetup.Network{})
	att := e.setup(t, "ext")
	defer e.teardown(t, "ext")
	got, err := netsetup.InspectExternal(e.node.Path, e.pin("ext"))
	if err != nil {
		t.Fatal(err)
	}
	want := netsetup.External{Address: att.Address, HostVeth: att.HostVeth, Bridge: att.Bridge, Subnet: e.net.Subnet, Gateway: att.Gateway}
	if got != want {
		t.Errorf("InspectExternal = %+v, want %+v", got, want)
	}

	host, err := e.node.Handle.LinkByName(att.HostVeth)
	if err != nil {
		t.Fatal(err)
	}
	addBridge(t, e.node.Handle, "pbxbare0", "")
	t.Cleanup(func() {
		if br, err := e.node.Handle.LinkByName("pbxbare0"); err == nil {
			e.node.Handle.LinkDel(br)
		}
	})
	bare, err := e.node.Handle.LinkByName("pbxbare0")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		move  func() error
		error string
	}{
		{"not on a bridge", func() error { return e.node.Handle.LinkSetNoMaster(host) }, "no port of a bridge"},
		{"bridge without the subnet", func() error { return e.node.Handle.LinkSetMaster(host, bare.(*netlink.Bridge)) },
			`bridge "pbxbare0" has no IPv4 address in the subnet of eth0's address ` + att.Address.String()},
	} {
		if err := tc.move(); err != nil {
			t.Fatal(err)
		}
		if _, err := netsetup.InspectExternal(e.node.Path, e.pin("ext")); err == nil || !strings.Contains(err.Error(), tc.error) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.error)
		}
	}

	pin := e.pin("none")
	if err := netsetup.SetupLoopbackOnly(context.Background(), pin); err != nil {
		t.Fatal(err)
	}
	defer netsetup.RemoveNetNS(pin)
	if _, err := netsetup.InspectExternal(e.node.Path, pin); err == nil || !strings.Contains(err.Error(), "look up eth0") {
		t.Errorf("a namespace with only lo: %v", err)
	}
}
