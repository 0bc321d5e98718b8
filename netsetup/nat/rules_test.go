package nat_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/netsetup"
	"github.com/podbox/podbox/netsetup/nat"
)

func TestMain(m *testing.M) { testnode.Main(m) }

// rulesIn is a node namespace with a bridge, and its Rules.
func rulesIn(t *testing.T) (nat.Rules, *testnode.Node) {
	t.Helper()
	node := testnode.New(t)
	subnet := netip.MustParsePrefix("10.89.0.0/16")
	n := netsetup.Network{Bridge: "pbxtest0", Subnet: subnet, StateRoot: t.TempDir(), NodeNetNS: node.Path}
	if _, err := n.EnsureBridge(context.Background()); err != nil {
		t.Fatal(err)
	}
	return nat.Rules{NodeNetNS: node.Path, Bridge: "pbxtest0", Subnet: subnet, Lock: filepath.Join(t.TempDir(), "ports.lock")}, node
}

// nft lists the node's podbox table with nft, the operator's view.
func nft(t *testing.T, node *testnode.Node) string {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+node.Path, "nft", "list", "table", "ip", nat.TableName).CombinedOutput()
	if err != nil {
		t.Logf("nft list table ip %s: %v: %s", nat.TableName, err, out)
		return ""
	}
	return string(out)
}

func TestRulesAddListRemove(t *testing.T) {
	testnode.RequireBinary(t, "nft")
	r, node := rulesIn(t)
	a, b := strings.Repeat("a", 64), strings.Repeat("b", 64)
	ipA, ipB := netip.MustParseAddr("10.89.0.2"), netip.MustParseAddr("10.89.0.3")
	msA, _ := nat.ParseAll([]string{"8080:80", "5353:53/udp"})
	msB, _ := nat.ParseAll([]string{"10.100.0.2:9090:90"})
	if err := r.Add(a, ipA, msA); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(b, ipB, msB); err != nil {
		t.Fatal(err)
	}
	got, err := r.List()
	if err != nil || len(got) != 3 {
		t.Fatalf("List: %+v, %v", got, err)
	}
	table := nft(t, node)
	for _, want := range []string{"dnat to 10.89.0.2:80", "udp dport 5353", "ip daddr 10.100.0.2", "dnat to 10.89.0.3:90",
		"fib daddr type local jump ports", "masquerade", `comment "podbox sandbox ` + a} {
		if !strings.Contains(table, want) {
			t.Errorf("nft list table lacks %q:\n%s", want, table)
		}
	}

	// The same host port for another sandbox is refused, nothing added.
	var ce *nat.ConflictError
	err = r.Add(b, ipB, []nat.Mapping{{HostPort: 8080, Port: 81, Protocol: "tcp"}})
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "8080/tcp") || !strings.Contains(err.Error(), a) {
		t.Errorf("conflicting Add: %v", err)
	}
	if got, _ := r.List(); len(got) != 3 {
		t.Errorf("a refused Add changed the rules: %+v", got)
	}
	// Another protocol or another host address is no conflict.
	if err := r.Add(b, ipB, []nat.Mapping{{HostPort: 8080, Port: 81, Protocol: "udp"}}); err != nil {
		t.Errorf("8080/udp beside 8080/tcp: %v", err)
	}

	// Remove takes exactly one sandbox's rules.
	if err := r.Remove(a); err != nil {
		t.Fatal(err)
	}
	got, _ = r.List()
	for _, p := range got {
		if p.SandboxID == a {
			t.Errorf("sandbox a's rule survived its removal: %+v", p)
		}
	}
	if len(got) != 2 {
		t.Errorf("after removing a: %+v", got)
	}
	if err := r.Remove(a); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if err := r.Reset(); err != nil {
		t.Fatal(err)
	}
	if table := nft(t, node); table != "" {
		t.Errorf("table after Reset:\n%s", table)
	}
	if err := r.Remove(b); err != nil {
		t.Errorf("Remove without a table: %v", err)
	}
	if err := r.Reset(); err != nil {
		t.Errorf("Reset without a table: %v", err)
	}
}

func TestCheckFree(t *testing.T) {
	r, node := rulesIn(t)
	a := strings.Repeat("a", 64)
	if err := r.Add(a, netip.MustParseAddr("10.89.0.2"), []nat.Mapping{{HostPort: 8080, Port: 80, Protocol: "tcp"}}); err != nil {
		t.Fatal(err)
	}
	defer r.Reset()
	var ce *nat.ConflictError
	if err := r.CheckFree([]nat.Mapping{{HostPort: 8080, Port: 1, Protocol: "tcp"}}); !errors.As(err, &ce) || !strings.Contains(ce.Holder, a) {
		t.Errorf("a port another sandbox publishes: %v", err)
	}
	// A server of the node on 9090.
	var ln net.Listener
	if err := node.Do(func() (err error) { ln, err = net.Listen("tcp", "0.0.0.0:9090"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err := r.CheckFree([]nat.Mapping{{HostPort: 9090, Port: 80, Protocol: "tcp"}})
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), fmt.Sprintf("process %d", os.Getpid())) {
		t.Errorf("a port a process of the node listens on: %v", err)
	}
	err = r.CheckFree([]nat.Mapping{{HostIP: netip.MustParseAddr("192.0.2.9"), HostPort: 9191, Port: 80, Protocol: "tcp"}})
	if err == nil || !strings.Contains(err.Error(), "host IP 192.0.2.9 is not an address of the node") {
		t.Errorf("a host IP the node lacks: %v", err)
	}
	if err := r.CheckFree([]nat.Mapping{{HostPort: 9090, Port: 80, Protocol: "udp"}, {HostPort: 8081, Port: 80, Protocol: "tcp"}}); err != nil {
		t.Errorf("free ports: %v", err)
	}
}

// TestRulesTwoBridges: ports published through a second bridge (a CNI
// bridge beside podbox's, as under containerd's CRI) get that bridge's own
// masquerade rules, whichever bridge made the table, and neither Egress nor
// the other bridge's Adds take them away; a bridge's rules are never
// doubled, and follow the bridge to a new subnet.
func TestRulesTwoBridges(t *testing.T) {
	testnode.RequireBinary(t, "nft")
	r0, node := rulesIn(t)
	cni := netsetup.Network{Bridge: "pbxcni0", Subnet: netip.MustParsePrefix("10.88.0.0/16"), StateRoot: t.TempDir(), NodeNetNS: node.Path}
	if _, err := cni.EnsureBridge(context.Background()); err != nil {
		t.Fatal(err)
	}
	r1 := r0
	r1.Bridge, r1.Subnet = cni.Bridge, cni.Subnet
	a, b := strings.Repeat("a", 64), strings.Repeat("b", 64)
	// The CNI bridge's sandbox comes first and makes the table.
	if err := r1.Add(b, netip.MustParseAddr("10.88.0.5"), []nat.Mapping{{HostPort: 18080, Port: 80, Protocol: "tcp"}}); err != nil {
		t.Fatal(err)
	}
	if err := r0.Egress(r0.Subnet, true); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := r0.Add(a, netip.MustParseAddr("10.89.0.2"), []nat.Mapping{{HostPort: 8080, Port: 80, Protocol: "tcp"}}); err != nil {
			t.Fatal(err)
		}
	}
	table := nft(t, node)
	for _, want := range []string{
		`oifname "pbxtest0" ip saddr 10.89.0.0/16 masquerade comment "podbox hairpin on pbxtest0 from 10.89.0.0/16"`,
		`oifname "pbxtest0" ip saddr 127.0.0.0/8 masquerade comment "podbox loopback on pbxtest0"`,
		`oifname "pbxcni0" ip saddr 10.88.0.0/16 masquerade comment "podbox hairpin on pbxcni0 from 10.88.0.0/16"`,
		`oifname "pbxcni0" ip saddr 127.0.0.0/8 masquerade comment "podbox loopback on pbxcni0"`,
		`ip saddr 10.89.0.0/16 ip daddr != 10.89.0.0/16 oifname != "pbxtest0" masquerade comment "podbox egress`,
	} {
		if strings.Count(table, want) != 1 {
			t.Errorf("nft list table: want once %q:\n%s", want, table)
		}
	}
	// The CNI bridge now serves another subnet: its hairpin rule follows.
	r1.Subnet = netip.MustParsePrefix("10.87.0.0/16")
	if err := r1.Add(b, netip.MustParseAddr("10.87.0.5"), []nat.Mapping{{HostPort: 18081, Port: 80, Protocol: "tcp"}}); err != nil {
		t.Fatal(err)
	}
	table = nft(t, node)
	if strings.Contains(table, "10.88.0.0/16") || !strings.Contains(table, `"podbox hairpin on pbxcni0 from 10.87.0.0/16"`) ||
		strings.Count(table, "masquerade") != 5 {
		t.Errorf("after the CNI bridge's subnet changed:\n%s", table)
	}
	// An older podbox's uncommented hairpin rule gives way to the commented one.
	legacy := exec.Command("nsenter", "--net="+node.Path, "nft", "add", "rule", "ip", nat.TableName, "postrouting",
		"ct", "status", "dnat", "oifname", "pbxtest0", "ip", "saddr", "10.89.0.0/16", "masquerade")
	if out, err := legacy.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if err := r0.Add(a, netip.MustParseAddr("10.89.0.2"), []nat.Mapping{{HostPort: 8082, Port: 80, Protocol: "tcp"}}); err != nil {
		t.Fatal(err)
	}
	if table = nft(t, node); strings.Count(table, "masquerade") != 5 {
		t.Errorf("after an Add beside an older podbox's rule:\n%s", table)
	}
	if err := r0.Reset(); err != nil {
		t.Fatal(err)
	}
}
