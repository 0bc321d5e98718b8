package testnode

import (
	"testing"

	"github.com/vishvananda/netlink"
)

// The description Main compares changes when a link is added: checked in a
// test node, never on the machine itself.
func TestHostNetworkSeesChanges(t *testing.T) {
	n := New(t)
	var before, after string
	if err := n.Do(func() (err error) { before, err = hostNetwork(); return }); err != nil {
		t.Fatal(err)
	}
	if err := n.Handle.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "probe0"}}); err != nil {
		t.Fatal(err)
	}
	if err := n.Do(func() (err error) { after, err = hostNetwork(); return }); err != nil {
		t.Fatal(err)
	}
	if before == after {
		t.Fatalf("adding a bridge did not change the description:\n%s", after)
	}
}
