package sandbox

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podbox/podbox/netsetup"
	"github.com/podbox/podbox/netsetup/nat"
)

// A sandbox on a network someone else attached (here netsetup on a bridge
// of its own, standing in for CNI's cni0) publishes its ports through that
// bridge; they go when the sandbox stops (UnpublishExternal) and, for a
// sandbox whose shim never got to stop it, with Remove from the record.
func TestExternalPorts(t *testing.T) {
	n, tn := testNodeNS(t)
	ctx := context.Background()
	cni := netsetup.Network{Bridge: "pbxcni0", Subnet: netip.MustParsePrefix("10.88.0.0/24"), StateRoot: t.TempDir(), NodeNetNS: tn.Path}
	pin := filepath.Join(t.TempDir(), "pod-netns")
	att, err := cni.Setup(ctx, "cni-pod", pin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cni.Teardown(ctx, "cni-pod", pin); err != nil {
			t.Error(err)
		}
		if br, err := tn.Handle.LinkByName(cni.Bridge); err == nil {
			tn.Handle.LinkDel(br)
		}
	})
	ports := []nat.Mapping{{HostPort: 18080, Port: 80, Protocol: "tcp"}}
	rules := nat.Rules{NodeNetNS: tn.Path}

	if _, err := n.Create(ctx, Options{ID: NewID(), Name: "none", Network: NetworkNone, Ports: ports}); err == nil ||
		!strings.Contains(err.Error(), "published ports need network bridge, external or a CNI network, not none") {
		t.Errorf("ports on network none: %v", err)
	}

	for _, killed := range []bool{false, true} {
		sb, err := n.Create(ctx, Options{ID: NewID(), Name: "pod", Network: NetworkExternal, NetNSPath: pin, Ports: ports})
		if err != nil {
			t.Fatal(err)
		}
		go func() { p, _ := os.FindProcess(sb.PausePID); p.Wait() }()
		if sb.IP != att.Address.Addr().String() || sb.Bridge != "pbxcni0" || sb.HostVeth != att.HostVeth || sb.Gateway != att.Gateway.String() {
			t.Errorf("attachment in the record: ip %s bridge %s veth %s gateway %s; want %+v", sb.IP, sb.Bridge, sb.HostVeth, sb.Gateway, att)
		}
		if hosts, _ := os.ReadFile(n.EtcFile(sb, "hosts")); !strings.Contains(string(hosts), sb.IP+"\tpod") {
			t.Errorf("hosts file lacks the pod's address:\n%s", hosts)
		}
		got, err := rules.List()
		if err != nil || len(got) != 1 || got[0].SandboxID != sb.ID || got[0].PodIP != att.Address.Addr() || got[0].Mapping != ports[0] {
			t.Errorf("published: %+v, %v", got, err)
		}
		if killed {
			// As a shim's `delete` finds it: the record, nothing in memory.
			rec, err := n.Store.LoadSandbox(sb.ID)
			if err != nil {
				t.Fatal(err)
			}
			sb = rec
		} else {
			if err := n.UnpublishExternal(sb); err != nil {
				t.Fatal(err)
			}
			if got, _ := rules.List(); len(got) != 0 {
				t.Errorf("published after UnpublishExternal: %+v", got)
			}
		}
		if err := n.Remove(ctx, sb, nil); err != nil {
			t.Fatal(err)
		}
		if got, _ := rules.List(); len(got) != 0 {
			t.Errorf("published after Remove (killed shim %v): %+v", killed, got)
		}
	}
	if err := rules.Reset(); err != nil {
		t.Fatal(err)
	}
	os.Remove(n.portsLock()) // node-level, as the bridge is
}
