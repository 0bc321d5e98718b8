package netsetup_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/podbox/podbox/netsetup"
)

// Attached reports what Setup built, the same attachment, and says
// ErrNotAttached for a sandbox that is not (or no longer wholly) attached;
// it changes nothing.
func TestAttachedReportsSetupsAttachment(t *testing.T) {
	e := newEnv(t, netsetup.Network{Subnet: netip.MustParsePrefix("10.89.8.0/24")})
	ctx := context.Background()
	if _, err := e.net.Attached(ctx, "web", e.pin("web")); !errors.Is(err, netsetup.ErrNotAttached) {
		t.Fatalf("Attached before any Setup: %v, want ErrNotAttached", err)
	}
	att := e.setup(t, "web")
	got, err := e.net.Attached(ctx, "web", e.pin("web"))
	if err != nil {
		t.Fatal(err)
	}
	if *got != *att {
		t.Errorf("Attached = %+v, Setup made %+v", *got, *att)
	}
	// Another sandbox's name has no lease, veth or pin.
	if _, err := e.net.Attached(ctx, "db", e.pin("db")); !errors.Is(err, netsetup.ErrNotAttached) {
		t.Errorf("Attached of a sandbox never set up: %v, want ErrNotAttached", err)
	}
	// The veth gone (a half-removed sandbox): not attached, and Attached
	// made nothing anew.
	l, err := e.node.Handle.LinkByName(att.HostVeth)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.node.Handle.LinkDel(l); err != nil {
		t.Fatal(err)
	}
	if _, err := e.net.Attached(ctx, "web", e.pin("web")); !errors.Is(err, netsetup.ErrNotAttached) {
		t.Errorf("Attached without the veth: %v, want ErrNotAttached", err)
	}
	if _, err := e.node.Handle.LinkByName(att.HostVeth); err == nil {
		t.Error("Attached recreated the veth")
	}
	e.teardown(t, "web")
	if _, err := e.net.Attached(ctx, "web", e.pin("web")); !errors.Is(err, netsetup.ErrNotAttached) {
		t.Errorf("Attached after Teardown: %v, want ErrNotAttached", err)
	}
}
