package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/podbox/podbox/integration/leakcheck"
	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/netsetup/nodenet"
	"github.com/podbox/podbox/sandbox"
)

// runNode runs podbox with the node commands acting on the namespace ns.
func (e *testEnv) runNode(ns string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	app := &App{
		Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string { return e.env[k] }, Executable: "/nonexistent/podbox",
		Now: time.Now, Version: "test", NodeNetNS: ns,
	}
	code := app.Run(context.Background(), args)
	return code, out.String(), errb.String()
}

// Input that is wrong on its face fails with one line before any namespace
// is touched (the node namespace given does not even exist).
func TestNodeBadInput(t *testing.T) {
	e := newTestEnv(t)
	before := e.tree()
	ns := "/nonexistent/netns"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"node", "init"}, `--pod-cidr "": not a CIDR`},
		{[]string{"node", "init", "--pod-cidr", "10.244.1.0"}, `--pod-cidr "10.244.1.0": not a CIDR`},
		{[]string{"node", "init", "--pod-cidr", "10.244.1.0/24", "--cluster-cidr", "x"}, `--cluster-cidr "x"`},
		{[]string{"node", "init", "--pod-cidr", "10.245.1.0/24"}, "pod CIDR 10.245.1.0/24 is outside the cluster CIDR 10.244.0.0/16"},
		{[]string{"node", "init", "--pod-cidr", "10.244.1.0/24", "--mode", "ipip"}, `unknown mode "ipip" (want host-gw, gateway, vxlan)`},
		{[]string{"node", "init", "--pod-cidr", "10.244.1.0/24", "--node-ip", "nope"}, `--node-ip "nope": not an IPv4 address`},
		{[]string{"node", "init", "--pod-cidr", "10.244.1.0/24", "--mtu", "-5"}, "--mtu -5"},
		{[]string{"node", "peer", "add", "--node-ip", "10.100.0.3", "--pod-cidr", "10.244.2.0/24"}, "not configured"},
		{[]string{"node", "peer", "add", "--node-ip", "10.100.0.3"}, `--pod-cidr "": not a CIDR`},
		{[]string{"node", "peer", "rm", "10.100.0.3"}, "not configured"},
		{[]string{"node", "peer", "ls"}, "not configured"},
		{[]string{"node", "show"}, "not configured"},
		{[]string{"node", "routes"}, "not configured"},
		{[]string{"node", "show", "-o", "yaml"}, `--output "yaml"`},
	} {
		code, out, stderr := e.runNode(ns, tc.args...)
		if code != 1 || out != "" || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("podbox %s: exit %d, stdout %q, stderr %q; want exit 1 and one line containing %q", strings.Join(tc.args, " "), code, out, stderr, tc.want)
		}
	}
	e.assertUntouched(before)
	// Resetting a node that was never configured is already done.
	if code, _, stderr := e.runNode(ns, "node", "reset"); code != 0 {
		t.Errorf("reset of an unconfigured node: exit %d: %s", code, stderr)
	}
}

// The whole command set against a throwaway node on a LAN 10.100.0.0/24.
func TestNodeCommands(t *testing.T) {
	tn := testnode.New(t)
	e := newTestEnv(t)
	h := tn.Handle
	tn.AddLAN(t, "lan0", netip.MustParsePrefix("10.100.0.2/24"))
	leakcheck.Check(t, leakcheck.Options{Root: e.root, Node: tn})
	run := func(args ...string) string {
		t.Helper()
		code, out, stderr := e.runNode(tn.Path, args...)
		if code != 0 {
			t.Fatalf("podbox %s: exit %d: %s", strings.Join(args, " "), code, stderr)
		}
		return out
	}
	fail := func(want string, args ...string) {
		t.Helper()
		if code, _, stderr := e.runNode(tn.Path, args...); code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("podbox %s: exit %d, stderr %q; want %q", strings.Join(args, " "), code, stderr, want)
		}
	}

	// No default route in this node: the node IP must be given.
	fail("pass --node-ip", "node", "init", "--pod-cidr", "10.244.1.0/24")
	fail("not an address of this host", "node", "init", "--pod-cidr", "10.244.1.0/24", "--node-ip", "10.100.0.9")
	run("node", "init", "--pod-cidr", "10.244.1.0/24", "--node-ip", "10.100.0.2")
	run("node", "init", "--pod-cidr", "10.244.1.0/24", "--node-ip", "10.100.0.2") // idempotent
	fail("podbox node reset", "node", "init", "--pod-cidr", "10.244.1.0/24", "--node-ip", "10.100.0.2", "--mode", "vxlan")
	run("node", "peer", "add", "--node-ip", "10.100.0.3", "--pod-cidr", "10.244.2.0/24", "--name", "node2")
	run("node", "peer", "add", "--node-ip", "10.100.0.3", "--pod-cidr", "10.244.2.0/24", "--name", "node2")
	run("node", "peer", "add", "--node-ip", "10.100.0.4", "--pod-cidr", "10.244.4.0/24")
	fail("overlaps", "node", "peer", "add", "--node-ip", "10.100.0.5", "--pod-cidr", "10.244.4.0/23")

	var peers []nodenet.Peer
	if err := json.Unmarshal([]byte(run("node", "peer", "ls", "-o", "json")), &peers); err != nil || len(peers) != 2 ||
		peers[0].Name != "node2" || peers[0].NodeIP.String() != "10.100.0.3" || peers[1].PodCIDR.String() != "10.244.4.0/24" {
		t.Errorf("peer ls -o json: %+v, %v", peers, err)
	}
	if out := run("node", "peer", "ls"); !strings.Contains(out, "node2") || !strings.Contains(out, "10.244.4.0/24") {
		t.Errorf("peer ls:\n%s", out)
	}
	if got, want := run("node", "routes"), "10.244.1.0/24 via 10.100.0.2\n10.244.2.0/24 via 10.100.0.3\n10.244.4.0/24 via 10.100.0.4\n"; got != want {
		t.Errorf("routes:\n%s\nwant:\n%s", got, want)
	}
	var st nodenet.Status
	if err := json.Unmarshal([]byte(run("node", "show", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Config.Mode != "host-gw" || st.Applied.Bridge == nil || st.Applied.Bridge.Addresses[0] != "10.244.1.1/24" || !st.Applied.IPForward ||
		len(st.Applied.Routes) != 2 || st.Applied.Routes[0] != "10.244.2.0/24 via 10.100.0.3 dev lan0" {
		t.Errorf("show -o json: %+v %+v", st.Config, st.Applied)
	}
	if out := run("node", "show"); !strings.Contains(out, "mode:          host-gw") || !strings.Contains(out, "10.244.4.0/24 via 10.100.0.4 dev lan0") {
		t.Errorf("show:\n%s", out)
	}

	run("node", "peer", "rm", "node2")
	fail(`peer "node2": no such peer`, "node", "peer", "rm", "node2")
	if routes, _ := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: nodenet.RouteProtocol}, netlink.RT_FILTER_PROTOCOL); len(routes) != 1 || routes[0].Dst.String() != "10.244.4.0/24" {
		t.Errorf("routes after peer rm node2: %v", routes)
	}

	// A sandbox record holds the node network: no reset under it.
	sb := &sandbox.Sandbox{ID: sandbox.NewID(), Name: "web", Network: sandbox.NetworkNone, State: sandbox.StateReady, Containers: []string{}}
	if err := e.store().CreateSandboxRecord(sb); err != nil {
		t.Fatal(err)
	}
	fail("1 sandbox(es) exist (web)", "node", "reset")
	if err := e.store().RemoveSandboxRecord(sb); err != nil {
		t.Fatal(err)
	}
	run("node", "reset")
	if _, err := os.Stat(filepath.Join(e.root, nodenet.FileName)); !os.IsNotExist(err) {
		t.Errorf("node.json after reset: %v", err)
	}
	if _, err := h.LinkByName("podbox0"); err == nil {
		t.Error("bridge podbox0 still exists after reset")
	}
}
