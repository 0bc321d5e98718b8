package nodegraph

import (
	"bytes"
	"encoding/xml"
	"image/png"
	"strings"
	"testing"
)

func sample() Graph {
	return Graph{
		Node:   Node{Name: "node1", Mode: "host-gw", Interfaces: []Interface{{Name: "eth0", Addrs: []string{"10.100.0.2/24"}}}},
		Bridge: Bridge{Name: "podbox0", Subnet: "10.244.1.0/24", Gateway: "10.244.1.1", Masquerade: true},
		Sandboxes: []Sandbox{
			{Name: "web", IP: "10.244.1.2", HostVeth: "pbx0123456789ab", State: "ready", Containers: []string{"srv", "sidecar"}, Ports: []string{"8080->80/tcp"}},
			{Name: "db <&>", IP: "10.244.1.3", HostVeth: "pbxba9876543210", State: "notready"},
		},
		Peers: []Peer{{Name: "node2", NodeIP: "10.100.0.3", PodCIDR: "10.244.2.0/24", Via: "route via 10.100.0.3"}},
	}
}

func TestDOT(t *testing.T) {
	dot := sample().DOT()
	for _, want := range []string{
		"digraph podbox {", "rankdir=LR",
		`"node" [label="node node1\neth0 10.100.0.2/24\nmode host-gw"]`,
		`"bridge" [label="podbox0 bridge\n10.244.1.1 (10.244.1.0/24)\negress masquerade"]`,
		`"sandbox0" [label="sandbox web\neth0 10.244.1.2  ready\nports 8080->80/tcp\ncontainers srv sidecar"]`,
		`"peer0" [label="peer node2 10.100.0.3\npods 10.244.2.0/24"]`,
		`"peer0" -> "node" [label="route via 10.100.0.3"]`, `"node" -> "bridge"`, `"bridge" -> "sandbox1" [label="pbxba9876543210"]`,
	} {
		if !strings.Contains(dot, want) {
			t.Errorf("DOT lacks %s:\n%s", want, dot)
		}
	}
}

func TestSVG(t *testing.T) {
	svg := sample().SVG()
	if err := xml.Unmarshal(svg, new(struct{})); err != nil {
		t.Fatalf("SVG is not well-formed XML: %v\n%s", err, svg)
	}
	for _, want := range []string{"sandbox web", "db &lt;&amp;&gt;", "8080-&gt;80/tcp", "node node1", "pbx0123456789ab"} {
		if !bytes.Contains(svg, []byte(want)) {
			t.Errorf("SVG lacks %q", want)
		}
	}
}

func TestPNG(t *testing.T) {
	b, err := sample().PNG()
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	// Four columns and the second sandbox under the first.
	if r := img.Bounds(); r.Dx() < 600 || r.Dy() < 100 {
		t.Errorf("image %v is too small for four columns", r)
	}
	// Something is drawn: not every pixel is the background.
	first, differs := img.At(0, 0), 0
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y += 3 {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x += 3 {
			if img.At(x, y) != first {
				differs++
			}
		}
	}
	if differs < 100 {
		t.Errorf("only %d sampled pixels differ from the background", differs)
	}
}

func TestEmptyNode(t *testing.T) {
	g := Graph{Node: Node{Name: "n"}, Bridge: Bridge{Name: "podbox0", Subnet: "10.89.0.0/16", Gateway: "10.89.0.1"}}
	if dot := g.DOT(); strings.Contains(dot, "sandbox") || strings.Contains(dot, "peer") {
		t.Errorf("an empty node: %s", dot)
	}
	if _, err := g.PNG(); err != nil {
		t.Error(err)
	}
}
