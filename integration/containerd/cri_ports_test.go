package containerd

import (
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podbox/podbox/integration/testnode"
)

// The node's LAN in TestCRIPortMappings: the node and a client host beside
// it.
var (
	lanNode   = netip.MustParsePrefix("10.100.0.2/24")
	lanClient = netip.MustParsePrefix("10.100.0.9/24")
)

// nftPodbox lists podbox's nftables table in the node, or "" if it has none.
func nftPodbox(t *testing.T, node *testnode.Node) string {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+node.Path, "nft", "list", "table", "ip", "podbox").CombinedOutput()
	if err != nil {
		return ""
	}
	return string(out)
}

// fetchIn fetches url with wget from inside namespace node, trying for up
// to about ten seconds, and returns the body.
func fetchIn(t *testing.T, node *testnode.Node, url string) (string, error) {
	t.Helper()
	// Bounded by timeout rather than wget -T, which segfaults in Debian's
	// busybox.
	loop := "for i in $(seq 20); do timeout 2 busybox wget -q -O - " + url + " && exit 0; sleep 0.2; done; exit 1"
	out, err := node.Command(t.Context(), "busybox", "sh", "-c", loop).Output()
	return string(out), err
}

// TestCRIPortMappings: with containerd 2's shim sandboxer, the port
// mappings of a pod's config are published by podbox through CNI's bridge
// (cni0) as they are for podbox's own: reached from a host beside the node,
// from the node's loopback and address, and from another pod through the
// node's address (hairpin); a second pod cannot take the host port; the
// rules go when the pod stops. The config's DNS settings are the pod's
// resolv.conf, which in this mode containerd's CRI does not write.
func TestCRIPortMappings(t *testing.T) {
	testnode.RequireBinary(t, "nft")
	e := newPodboxEnv(t, true, true, func(o *Options) { o.PodDefaultRoute = true })
	node := e.d.Node
	client := node.AddHost(t, "eth1", lanNode, lanClient)
	web := e.runPod(t, "web", map[string]any{
		"port_mappings": []map[string]any{{"container_port": 80, "host_port": 18080}},
		"dns_config": map[string]any{
			"servers":  []string{"10.0.0.53", "10.0.0.54"},
			"searches": []string{"svc.example"},
			"options":  []string{"ndots:2"},
		},
	})
	ip := podIP(t, e.d, web.id)

	for _, tc := range []struct {
		from *testnode.Node
		what string
		url  string
	}{
		{client, "a host beside the node", "http://10.100.0.2:18080/"},
		{node, "the node's loopback", "http://127.0.0.1:18080/"},
		{node, "the node's address", "http://10.100.0.2:18080/"},
	} {
		if body, err := fetchIn(t, tc.from, tc.url); err != nil || body != BusyboxIndex {
			t.Errorf("from %s, %s: %q, %v; want %q", tc.what, tc.url, body, err, BusyboxIndex)
		}
	}
	other := e.runPod(t, "other")
	body, err := e.d.Crictl("exec", other.client, "sh", "-c",
		"for i in $(seq 20); do timeout 2 wget -q -O - http://10.100.0.2:18080/ && exit 0; sleep 0.2; done; exit 1")
	if err != nil || body != BusyboxIndex {
		t.Errorf("from another pod through the node's address (hairpin): %q, %v", body, err)
	}
	table := nftPodbox(t, node)
	for _, want := range []string{
		"tcp dport 18080 dnat to " + ip.String() + ":80",
		`comment "podbox sandbox ` + web.id,
		`oifname "cni0" ip saddr 10.88.0.0/16 masquerade`,
	} {
		if !strings.Contains(table, want) {
			t.Errorf("nft list table ip podbox lacks %q:\n%s", want, table)
		}
	}

	// The pod's resolv.conf is its dns_config, and nothing of the node's.
	resolv, err := e.d.Crictl("exec", web.client, "cat", "/etc/resolv.conf")
	if want := "nameserver 10.0.0.53\nnameserver 10.0.0.54\nsearch svc.example\noptions ndots:2\n"; err != nil || resolv != want {
		t.Errorf("the container's /etc/resolv.conf (%v):\n%s\nwant\n%s", err, resolv, want)
	}
	// containerd's podsandbox controller writes a pod's resolv.conf into
	// CRI's sandbox directory, and CRI mounts it into the pod's containers
	// if it is there; with the shim as sandboxer nobody writes it, and the
	// one the containers see is podbox's.
	if p := filepath.Join(e.d.Root, "io.containerd.grpc.v1.cri", "sandboxes", web.id, "resolv.conf"); fileExists(p) {
		t.Errorf("containerd's CRI wrote %s: the pod's resolv.conf is no longer podbox's alone", p)
	}

	// Another pod cannot take the host port.
	cfg := writeJSON(t, e.dir, "thief.json", map[string]any{
		"metadata":      map[string]any{"name": "thief", "namespace": "default", "uid": "thief-uid"},
		"port_mappings": []map[string]any{{"container_port": 81, "host_port": 18080}},
		"linux":         map[string]any{"cgroup_parent": "/" + e.cg},
	})
	if _, err := e.d.Crictl("runp", "--runtime", "podbox", cfg); err == nil ||
		!strings.Contains(err.Error(), "host port 18080/tcp is already published by sandbox "+web.id) {
		t.Errorf("a second pod on host port 18080: %v", err)
	}

	// The rules go with the pod's stop: CRI hands its address back to
	// CNI right after.
	crictl(t, e.d, "stopp", web.id)
	if table := nftPodbox(t, node); strings.Contains(table, web.id) || strings.Contains(table, "dnat to") {
		t.Errorf("rules after stopp:\n%s", table)
	}
	if body, err := fetchIn(t, node, "http://127.0.0.1:18080/"); err == nil {
		t.Errorf("the port still answers after stopp: %q", body)
	}
	crictl(t, e.d, "rmp", web.id)
	if table := nftPodbox(t, node); strings.Contains(table, "dnat to") {
		t.Errorf("rules after rmp:\n%s", table)
	}
}
