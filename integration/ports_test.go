package integration

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/netsetup/resolvconf"
)

// The stand-in LAN of the ports tests: the node and a client host beside it.
var (
	lanNodeIP   = netip.MustParseAddr("10.100.0.2")
	lanClientIP = netip.MustParseAddr("10.100.0.9")
)

// clientBeside makes a client host: a namespace of its own wired to n's
// node by a veth pair (node eth1 10.100.0.2/24, client eth0 10.100.0.9/24).
func clientBeside(t *testing.T, n *cliNode) *testnode.Node {
	t.Helper()
	return n.node.AddHost(t, "eth1", netip.PrefixFrom(lanNodeIP, 24), netip.PrefixFrom(lanClientIP, 24))
}

// whoamiRootfs is busybox with a CGI that answers the client's address as
// the server sees it.
func whoamiRootfs(t *testing.T) string {
	t.Helper()
	fs := busybox(t)
	cgi := filepath.Join(fs, "www", "cgi-bin")
	if err := os.MkdirAll(cgi, 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\necho Content-Type: text/plain\necho\necho $REMOTE_ADDR\n"
	if err := os.WriteFile(filepath.Join(cgi, "ip"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return fs
}

// fetch runs wget in a namespace and returns the body.
func fetch(t *testing.T, node *testnode.Node, url string) (string, error) {
	t.Helper()
	// A server started with run -d may not listen yet: up to 20 tries.
	loop := "for i in $(seq 20); do timeout 2 busybox wget -q -O - " + url + " && exit 0; sleep 0.1; done; exit 1"
	out, err := node.Command(t.Context(), "busybox", "sh", "-c", loop).Output()
	return strings.TrimSpace(string(out)), err
}

func nftTable(t *testing.T, node *testnode.Node) string {
	t.Helper()
	out, _ := exec.Command("nsenter", "--net="+node.Path, "nft", "list", "table", "ip", "podbox").CombinedOutput()
	return string(out)
}

func TestPublishedPorts(t *testing.T) {
	testnode.RequireBinary(t, "nft")
	n := newCLINode(t)
	client := clientBeside(t, n)
	fs := whoamiRootfs(t)
	web := n.sandbox("--name", "web", "-p", "8080:80", "-p", lanNodeIP.String()+":8081:80", "-p", "9000-9001:80-81")
	n.mustRun("run", "-d", "--sandbox", "web", "--name", "srv", "--rootfs", fs, "--", "httpd", "-f", "-p", "80", "-h", "/www")
	n.mustRun("run", "-d", "--sandbox", "web", "--name", "srv81", "--rootfs", fs, "--", "httpd", "-f", "-p", "81", "-h", "/www")

	// From another host: reached, and the server sees the client itself.
	// (busybox httpd writes it as an IPv4-mapped IPv6 address.)
	if got, err := fetch(t, client, "http://10.100.0.2:8080/cgi-bin/ip"); err != nil || !strings.Contains(got, lanClientIP.String()) {
		t.Errorf("from the client host: %q, %v; want the client's own address %s", got, err, lanClientIP)
	}
	if got, err := fetch(t, client, "http://10.100.0.2:8081/cgi-bin/ip"); err != nil || !strings.Contains(got, lanClientIP.String()) {
		t.Errorf("host-IP port from the client host: %q, %v", got, err)
	}
	// A range maps port to port.
	for _, port := range []string{"9000", "9001"} {
		if got, err := fetch(t, client, "http://10.100.0.2:"+port+"/"); err != nil || got != strings.TrimSpace(index) {
			t.Errorf("range port %s from the client host: %q, %v", port, got, err)
		}
	}
	// From the node: its loopback and its own address.
	for _, url := range []string{"http://127.0.0.1:8080/", "http://10.100.0.2:8080/"} {
		if got, err := fetch(t, n.node, url); err != nil || got != strings.TrimSpace(index) {
			t.Errorf("from the node, %s: %q, %v", url, got, err)
		}
	}
	// From another sandbox of the node, through the node's address
	// (hairpin): masqueraded to the node's bridge address, so that the
	// answer comes back through the node whether or not bridged traffic
	// passes netfilter (br_netfilter) on this machine.
	n.sandbox("--name", "other")
	out := n.mustRun("run", "--rm", "--sandbox", "other", "--rootfs", fs, "--", "sh", "-c", retry("timeout 2 wget -q -O - http://10.100.0.2:8080/cgi-bin/ip"))
	if gw := n.inspect("web")["gateway"].(string); !strings.Contains(out, gw) {
		t.Errorf("hairpin from another sandbox: the server saw %q, want the bridge address %s", out, gw)
	}
	// inspect and ls show them.
	if ports := n.inspect("web")["ports"]; len(ports.([]any)) != 4 {
		t.Errorf("inspect ports: %v", ports)
	}
	if ls := n.mustRun("sandbox", "ls"); !strings.Contains(ls, "8080->80/tcp,10.100.0.2:8081->80/tcp,9000->80/tcp,9001->81/tcp") {
		t.Errorf("sandbox ls:\n%s", ls)
	}

	// Taken ports are refused before anything is built.
	code, _, stderr := n.run("sandbox", "create", "--name", "again", "-p", "8080:8080")
	assertOneLineError(t, code, stderr, `sandbox "again"`, "host port 8080/tcp", `sandbox "web"`)
	srv := n.node.Command(t.Context(), "busybox", "nc", "-l", "-p", "9099")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	waitFor(t, func() bool {
		code, _, stderr = n.run("sandbox", "create", "--name", "again", "-p", "9099:80")
		return strings.Contains(stderr, "process")
	})
	assertOneLineError(t, code, stderr, "host port 9099/tcp is already in use by process", "(busybox)")
	code, _, stderr = n.run("sandbox", "create", "--name", "again", "-p", "192.0.2.1:9500:80")
	assertOneLineError(t, code, stderr, "host IP 192.0.2.1 is not an address of the node")
	if ls := n.mustRun("sandbox", "ls", "-q"); strings.Count(ls, "\n") != 2 {
		t.Errorf("refused creates left sandboxes:\n%s", ls)
	}

	// Removal takes exactly the sandbox's rules.
	n.mustRun("sandbox", "rm", "-f", web)
	if table := nftTable(t, n.node); strings.Contains(table, web) || strings.Contains(table, "dnat to") {
		t.Errorf("rules after the sandbox's removal:\n%s", table)
	}
	if _, err := fetch(t, client, "http://10.100.0.2:8080/"); err == nil {
		t.Error("the port still answers after the sandbox's removal")
	}
}

// TestPublishedPortsUDP: a UDP port published with -p …/udp reaches the
// sandbox from a client host beside the node, the answer comes back to the
// client, and the sandbox sees the client's own address and port.
func TestPublishedPortsUDP(t *testing.T) {
	testnode.RequireBinary(t, "nft")
	n := newCLINode(t)
	client := clientBeside(t, n)
	fs := busybox(t)
	buildStatic(t, "./integration/udpwhoami", filepath.Join(fs, "bin", "udpwhoami"))
	id := n.sandbox("--name", "dns", "-p", "8053:53/udp")
	n.mustRun("run", "-d", "--sandbox", "dns", "--name", "srv", "--rootfs", fs, "--", "udpwhoami", "53")

	local, reply, err := askUDP(client, netip.AddrPortFrom(lanNodeIP, 8053), "ping")
	if err != nil {
		t.Fatalf("from the client host: %v\nthe node's podbox table:\n%s", err, nftTable(t, n.node))
	}
	if want := "ping " + local.String(); reply != want {
		t.Errorf("the sandbox answered %q, want %q: the client's own address and port", reply, want)
	}

	n.mustRun("sandbox", "rm", "-f", id)
	if table := nftTable(t, n.node); strings.Contains(table, "udp dport 8053") {
		t.Errorf("rules after the sandbox's removal:\n%s", table)
	}
}

// buildStatic builds the podbox module's package pkg (a path from the
// module's root) as a static binary at out, for a container's root
// filesystem.
func buildStatic(t *testing.T, pkg, out string) {
	t.Helper()
	mod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || len(strings.TrimSpace(string(mod))) == 0 {
		t.Fatalf("find the podbox module to build %s: %v", pkg, err)
	}
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(mod)))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
}

// askUDP sends msg over UDP from the namespace of node to server until an
// answer comes, for up to 5 s (a server started with run -d may not listen
// yet), and returns the address it sent from and the answer.
func askUDP(node *testnode.Node, server netip.AddrPort, msg string) (local netip.AddrPort, reply string, err error) {
	err = node.Do(func() error {
		// The socket is made on this thread, inside the node, and stays
		// there.
		conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(server))
		if err != nil {
			return err
		}
		defer conn.Close()
		local = conn.LocalAddr().(*net.UDPAddr).AddrPort()
		buf := make([]byte, 64<<10)
		var last error
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
			conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			_, err := conn.Write([]byte(msg))
			if err == nil {
				var n int
				if n, err = conn.Read(buf); err == nil {
					reply = string(buf[:n])
					return nil
				}
			}
			// A refusal (an ICMP port unreachable came back to the
			// last datagram) ends the write or read at once: wait
			// before asking again.
			last = err
			time.Sleep(100 * time.Millisecond)
		}
		return fmt.Errorf("no answer from %s over UDP in 5 s: %w", server, last)
	})
	return local, reply, err
}

// TestPublishedPortsAfterShimKill: the rules of a sandbox whose shim was
// killed go with `sandbox rm -f`, and nothing else's do.
func TestPublishedPortsAfterShimKill(t *testing.T) {
	testnode.RequireBinary(t, "nft")
	n := newCLINode(t)
	a := n.sandbox("--name", "a", "-p", "8080:80")
	b := n.sandbox("--name", "b", "-p", "9090:80/udp")
	if err := syscall.Kill(int(n.inspect("a")["shimPid"].(float64)), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	n.mustRun("sandbox", "rm", "-f", "a")
	table := nftTable(t, n.node)
	if strings.Contains(table, a) || !strings.Contains(table, b) || !strings.Contains(table, "udp dport 9090") {
		t.Errorf("after removing a (killed shim), the table is:\n%s", table)
	}
	n.mustRun("sandbox", "rm", "-f", "b")
	if table := nftTable(t, n.node); strings.Contains(table, "dnat to") {
		t.Errorf("rules left:\n%s", table)
	}
}

// TestSandboxDNS: the sandbox's resolv.conf is the node's unless the
// create says otherwise, and every container of the sandbox reads it.
func TestSandboxDNS(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	n.sandbox("--name", "own", "--dns", "10.0.0.53", "--dns", "10.0.0.54", "--dns-search", "svc.example", "--dns-option", "ndots:2")
	out := n.mustRun("run", "--rm", "--sandbox", "own", "--rootfs", fs, "--", "cat", "/etc/resolv.conf")
	if want := "nameserver 10.0.0.53\nnameserver 10.0.0.54\nsearch svc.example\noptions ndots:2\n"; out != want {
		t.Errorf("resolv.conf with --dns flags:\n%s\nwant\n%s", out, want)
	}
	if dns := n.inspect("own")["dns"]; dns == nil {
		t.Error("inspect shows no dns")
	}
	n.sandbox("--name", "node")
	out = n.mustRun("run", "--rm", "--sandbox", "node", "--rootfs", fs, "--", "cat", "/etc/resolv.conf")
	host, _ := os.ReadFile(resolvconf.HostPath)
	upstream, err := os.ReadFile(resolvconf.UpstreamPath)
	if err != nil {
		upstream = nil
	}
	if want := string(resolvconf.Build(resolvconf.Config{}, host, upstream)); out != want || strings.Contains(out, "nameserver 127.") {
		t.Errorf("resolv.conf from the node's:\n%s\nwant\n%s", out, want)
	}
}

// outsideIP is a server's address beyond the node: on the client host, which
// plays the router to the outside world, reached by the node's default route.
var outsideIP = netip.MustParseAddr("198.51.100.7")

// TestEgressMasquerade: a pod reaches a server outside the pod network, and
// the server sees the node's address (the outside has no route back to
// pods); pods see each other's own addresses.
func TestEgressMasquerade(t *testing.T) {
	testnode.RequireBinary(t, "nft")
	n := newCLINode(t)
	router := clientBeside(t, n)
	lo, err := router.Handle.LinkByName("lo")
	if err == nil {
		err = router.Handle.AddrAdd(lo, &netlink.Addr{IPNet: &net.IPNet{IP: outsideIP.AsSlice(), Mask: net.CIDRMask(32, 32)}})
	}
	if err == nil {
		err = n.node.Handle.RouteAdd(&netlink.Route{Gw: lanClientIP.AsSlice()})
	}
	if err != nil {
		t.Fatalf("outside address and default route: %v", err)
	}
	fs := whoamiRootfs(t)
	srv := router.Command(t.Context(), "busybox", "httpd", "-f", "-p", outsideIP.String()+":8080", "-h", filepath.Join(fs, "www"))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()

	n.sandbox("--name", "a")
	out := n.mustRun("run", "--rm", "--sandbox", "a", "--rootfs", fs, "--", "sh", "-c", retry("timeout 2 wget -q -O - http://198.51.100.7:8080/cgi-bin/ip"))
	if !strings.Contains(out, lanNodeIP.String()) {
		t.Errorf("the outside server saw %q, want the node's address %s", out, lanNodeIP)
	}
	// Between pods: no translation.
	n.sandbox("--name", "b")
	n.mustRun("run", "-d", "--sandbox", "b", "--name", "whoami", "--rootfs", fs, "--", "httpd", "-f", "-p", "80", "-h", "/www")
	ipA, ipB := n.inspect("a")["ip"].(string), n.inspect("b")["ip"].(string)
	out = n.mustRun("run", "--rm", "--sandbox", "a", "--rootfs", fs, "--", "sh", "-c", retry("timeout 2 wget -q -O - http://"+ipB+"/cgi-bin/ip"))
	if !strings.Contains(out, ipA) {
		t.Errorf("pod b saw %q, want pod a's own address %s", out, ipA)
	}
	if table := nftTable(t, n.node); !strings.Contains(table, `comment "podbox egress`) || !strings.Contains(table, "ip daddr != 10.89.0.0/16") {
		t.Errorf("no egress rule in:\n%s", table)
	}
}

// TestNodeInitMasquerade: node init installs the egress rule for its cluster
// CIDR, --masquerade=false removes it, reset removes the table.
func TestNodeInitMasquerade(t *testing.T) {
	testnode.RequireBinary(t, "nft")
	n := newCLINode(t)
	clientBeside(t, n)
	n.mustRun("node", "init", "--pod-cidr", "10.244.1.0/24", "--node-ip", lanNodeIP.String())
	if table := nftTable(t, n.node); !strings.Contains(table, "ip saddr 10.244.1.0/24 ip daddr != 10.244.0.0/16") || !strings.Contains(table, "masquerade") {
		t.Errorf("after node init:\n%s", table)
	}
	n.mustRun("node", "reset")
	if table := nftTable(t, n.node); strings.Contains(table, "table ip podbox {") {
		t.Errorf("after node reset:\n%s", table)
	}
	n.mustRun("node", "init", "--pod-cidr", "10.244.1.0/24", "--node-ip", lanNodeIP.String(), "--masquerade=false")
	if table := nftTable(t, n.node); strings.Contains(table, "podbox egress") {
		t.Errorf("with --masquerade=false:\n%s", table)
	}
	n.mustRun("node", "reset")
}

// TestNodeGraph draws a node with a sandbox, its container and ports, and
// a peer, in all three formats.
func TestNodeGraph(t *testing.T) {
	n := newCLINode(t)
	clientBeside(t, n)
	n.mustRun("node", "init", "--pod-cidr", "10.244.1.0/24", "--node-ip", lanNodeIP.String())
	n.mustRun("node", "peer", "add", "--node-ip", lanClientIP.String(), "--pod-cidr", "10.244.2.0/24", "--name", "node2")
	fs := busybox(t)
	n.sandbox("--name", "web", "-p", "8080:80")
	n.mustRun("run", "-d", "--sandbox", "web", "--name", "srv", "--rootfs", fs, "--", "sleep", "1000")
	ip := n.inspect("web")["ip"].(string)
	dot := n.mustRun("node", "graph")
	for _, want := range []string{"digraph podbox", "eth1 10.100.0.2/24", "podbox0 bridge", "10.244.1.1 (10.244.1.0/24)",
		"sandbox web", "eth0 " + ip, "ports 8080->80/tcp", "containers srv", "peer node2 10.100.0.9", "pods 10.244.2.0/24",
		`label="route via 10.100.0.9"`, "mode host-gw", "egress masquerade"} {
		if !strings.Contains(dot, want) {
			t.Errorf("DOT lacks %q:\n%s", want, dot)
		}
	}
	dir := t.TempDir()
	for _, f := range []string{"svg", "png"} {
		out := filepath.Join(dir, "node."+f)
		n.mustRun("node", "graph", "--format", f, "-o", out)
		b, err := os.ReadFile(out)
		if err != nil || len(b) < 200 {
			t.Errorf("%s: %d bytes, %v", f, len(b), err)
		}
	}
	code, _, stderr := n.run("node", "graph", "--format", "pdf")
	assertOneLineError(t, code, stderr, `--format "pdf"`)
	n.mustRun("rm", "-f", "srv")
	n.mustRun("sandbox", "rm", "-f", "web")
	n.mustRun("node", "peer", "rm", "node2")
	n.mustRun("node", "reset")
}
