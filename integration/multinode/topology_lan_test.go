package multinode

import (
	"strings"
	"testing"
)

// The harness on its own: router, LAN bridge and nodes carry TCP between
// the nodes and to the gateway, the router forwards, and the nodes' only
// route off the LAN is the default one via the gateway.
func TestTopology(t *testing.T) {
	topo := newTopology(t, 2)
	topo.checkLAN(t)
	if v := sysctl(t, topo.router, "net/ipv4/ip_forward"); v != "1" {
		t.Errorf("router ip_forward = %s", v)
	}
	for _, n := range topo.nodes {
		routes := ipCmd(t, n.Node, "-4", "route", "show")
		want := "default via 10.100.0.1 dev eth0 \n10.100.0.0/24 dev eth0 proto kernel scope link src " + n.ip.String() + " \n"
		if routes != want {
			t.Errorf("%s routes:\n%s\nwant:\n%s", n.name, routes, want)
		}
		if !strings.Contains(ipCmd(t, n.Node, "-o", "link", "show", "eth0"), "state UP") {
			t.Errorf("%s: eth0 not up", n.name)
		}
	}
}
