package multinode

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/integration/testnode"
)

// netState describes a namespace's network configuration — links, addresses,
// routes of every table, rules, permanent neighbours, static FDB entries and
// forwarding sysctls — as sorted lines, so that two descriptions are equal
// exactly when nothing of it changed. What the kernel learns from traffic
// (dynamic ARP and FDB entries, counters) is left out.
func netState(t *testing.T, n *testnode.Node) []string {
	t.Helper()
	h := n.Handle
	var out []string
	links, err := h.LinkList()
	if err != nil {
		t.Fatalf("netns %s: links: %v", n.Path, err)
	}
	name := map[int]string{}
	for _, l := range links {
		name[l.Attrs().Index] = l.Attrs().Name
	}
	for _, l := range links {
		a := l.Attrs()
		out = append(out, fmt.Sprintf("link %s type=%s mtu=%d up=%t master=%s mac=%s",
			a.Name, l.Type(), a.MTU, a.Flags&unix.IFF_UP != 0, name[a.MasterIndex], a.HardwareAddr))
	}
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("netns %s: addresses: %v", n.Path, err)
	}
	for _, a := range addrs {
		out = append(out, fmt.Sprintf("addr %s dev %s", a.IPNet, name[a.LinkIndex]))
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatalf("netns %s: routes: %v", n.Path, err)
	}
	for _, r := range routes {
		// An IPv6 address's local route appears only once duplicate
		// address detection ends, a second or so after the address;
		// the address itself is listed above.
		if r.Table == unix.RT_TABLE_LOCAL && r.Dst != nil && r.Dst.IP.To4() == nil && r.Dst.IP.IsLinkLocalUnicast() {
			continue
		}
		out = append(out, "route "+routeString(r, name))
	}
	rules, err := h.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("netns %s: rules: %v", n.Path, err)
	}
	for _, r := range rules {
		out = append(out, fmt.Sprintf("rule family=%d %d table %d src %s dst %s", r.Family, r.Priority, r.Table, r.Src, r.Dst))
	}
	for _, fam := range []int{netlink.FAMILY_V4, unix.AF_BRIDGE} {
		neighs, err := h.NeighList(0, fam)
		if err != nil {
			t.Fatalf("netns %s: neighbours: %v", n.Path, err)
		}
		for _, ne := range neighs {
			// NOARP entries (multicast groups) come and go with
			// traffic; configured ones are permanent.
			if ne.State&netlink.NUD_PERMANENT == 0 {
				continue
			}
			out = append(out, fmt.Sprintf("neigh family=%d %s lladdr %s dev %s state=%#x flags=%#x", fam, ne.IP, ne.HardwareAddr, name[ne.LinkIndex], ne.State, ne.Flags))
		}
	}
	for _, k := range []string{"net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding", "net/ipv4/conf/all/rp_filter"} {
		out = append(out, "sysctl "+k+"="+sysctl(t, n, k))
	}
	slices.Sort(out)
	return out
}

func routeString(r netlink.Route, name map[int]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table=%d dst=%v type=%d", r.Table, r.Dst, r.Type)
	if r.Gw != nil {
		fmt.Fprintf(&b, " via %s", r.Gw)
	}
	fmt.Fprintf(&b, " dev %s proto %d scope %d src %v flags %d mtu %d", name[r.LinkIndex], r.Protocol, r.Scope, r.Src, r.Flags, r.MTU)
	return b.String()
}

// diffState returns the lines only in a and only in b.
func diffState(a, b []string) (onlyA, onlyB []string) {
	for _, l := range a {
		if !slices.Contains(b, l) {
			onlyA = append(onlyA, l)
		}
	}
	for _, l := range b {
		if !slices.Contains(a, l) {
			onlyB = append(onlyB, l)
		}
	}
	return onlyA, onlyB
}

// sameState fails the test with the difference if got is not want.
func sameState(t *testing.T, what string, want, got []string) {
	t.Helper()
	gone, added := diffState(want, got)
	if len(gone)+len(added) == 0 {
		return
	}
	t.Errorf("%s: network state differs\n  missing:\n    %s\n  unexpected:\n    %s",
		what, strings.Join(gone, "\n    "), strings.Join(added, "\n    "))
}

// settledState is sameState for a state that converges: sandbox removal
// leaves a sandbox's veth pair to the kernel's asynchronous namespace cleanup,
// so a removed sandbox's host veth may linger for a few milliseconds. It
// polls n's state for up to 5 s (leakcheck's settle time) before judging.
func settledState(t *testing.T, what string, want []string, n *testnode.Node) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := netState(t, n)
		gone, added := diffState(want, got)
		if len(gone)+len(added) == 0 || time.Now().After(deadline) {
			sameState(t, what, want, got)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// forwarded is how many IPv4 packets n's namespace has forwarded
// (ForwDatagrams of /proc/net/snmp, read on a thread inside it:
// /proc/self/net would show the process's main thread's namespace).
func forwarded(t *testing.T, n *testnode.Node) int {
	t.Helper()
	var b []byte
	if err := n.Do(func() (err error) { b, err = os.ReadFile("/proc/thread-self/net/snmp"); return }); err != nil {
		t.Fatal(err)
	}
	var head []string
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Ip:" {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		if i := slices.Index(head, "ForwDatagrams"); i > 0 && i < len(f) {
			v, err := strconv.Atoi(f[i])
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("netns %s: no ForwDatagrams in snmp", n.Path)
	return 0
}
