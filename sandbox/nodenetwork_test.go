package sandbox

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/podbox/podbox/netsetup"
	"github.com/podbox/podbox/netsetup/nodenet"
)

// Without node.json sandboxes get the default network; with it, the node's
// pod CIDR on its bridge; a Network set by the caller wins over both.
func TestNodeNetworkFollowsNodeConfig(t *testing.T) {
	root := t.TempDir()
	n := Node{Store: Store{Root: root}}
	got, err := n.nodeNetwork()
	if err != nil || got != (netsetup.Network{StateRoot: root}) {
		t.Errorf("unconfigured node: %+v, %v; want the defaults", got, err)
	}
	conf := `{"podCIDR": "10.244.3.0/24", "clusterCIDR": "10.244.0.0/16", "nodeIP": "10.100.0.2", "mode": "vxlan",
		"bridge": "cbr0", "mtu": 1500, "vni": 1, "gateway": "10.244.3.1", "podMTU": 1450, "peers": []}`
	if err := os.WriteFile(filepath.Join(root, nodenet.FileName), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	want := netsetup.Network{Bridge: "cbr0", Subnet: netip.MustParsePrefix("10.244.3.0/24"), Gateway: netip.MustParseAddr("10.244.3.1"), MTU: 1450, StateRoot: root}
	if got, err := n.nodeNetwork(); err != nil || got != want {
		t.Errorf("configured node: %+v, %v; want %+v", got, err, want)
	}
	if got := n.network(); got != want {
		t.Errorf("network() = %+v, want %+v", got, want)
	}
	n.Network = netsetup.Network{Bridge: "other0"}
	if got, err := n.nodeNetwork(); err != nil || got.Bridge != "other0" || got.Subnet.IsValid() {
		t.Errorf("explicit network: %+v, %v", got, err)
	}
	n.Network = netsetup.Network{}
	if err := os.WriteFile(filepath.Join(root, nodenet.FileName), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := n.nodeNetwork(); err == nil {
		t.Error("corrupt node.json: no error")
	}
}

// A sandbox created on a configured node leases from the node's pod CIDR.
func TestCreateOnConfiguredNode(t *testing.T) {
	n, tn := testNodeNS(t)
	ctx := context.Background()
	nodeNS := n.Network.NodeNetNS
	n.Network = netsetup.Network{NodeNetNS: nodeNS}
	// The node's address on the LAN between nodes.
	tn.AddLAN(t, "lan0", netip.MustParsePrefix("10.100.0.2/24"))
	host := nodenet.Host{Root: n.Store.Root, NetNS: nodeNS}
	if _, err := host.Init(ctx, nodenet.Settings{PodCIDR: netip.MustParsePrefix("10.244.3.0/24"), NodeIP: netip.MustParseAddr("10.100.0.2")}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Reset(ctx) })

	sb, err := n.Create(ctx, Options{ID: NewID(), Name: "pod"})
	if err != nil {
		t.Fatal(err)
	}
	go func() { p, _ := os.FindProcess(sb.PausePID); p.Wait() }()
	if sb.IP != "10.244.3.2" || sb.Gateway != "10.244.3.1" || sb.Bridge != "podbox0" {
		t.Errorf("sandbox network: ip %s gateway %s bridge %s; want 10.244.3.2 via 10.244.3.1 on podbox0", sb.IP, sb.Gateway, sb.Bridge)
	}
	if err := n.Remove(ctx, sb, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := host.Reset(ctx); err != nil {
		t.Fatal(err)
	}
}
