// Package nodegraph draws a node's pod network as the README's picture has
// it: the node's interfaces and address, the bridge and its subnet, each
// sandbox on its veth pair with its address, containers and published
// ports, and the peer nodes with how their pods are reached. It renders
// Graphviz DOT, and SVG and PNG laid out by itself, so that no external
// program is needed.
//
// It only draws what it is given: reading the live state is the caller's.
package nodegraph

import (
	"fmt"
	"strings"
)

// Graph is one node's network.
type Graph struct {
	Node      Node
	Bridge    Bridge
	Sandboxes []Sandbox
	Peers     []Peer
}

// Node is the node itself.
type Node struct {
	Name       string
	Mode       string // host-gw, gateway, vxlan; "" without node init
	Interfaces []Interface
}

// Interface is a link of the node with its IPv4 addresses.
type Interface struct {
	Name  string
	Addrs []string
}

// Bridge is the node bridge.
type Bridge struct {
	Name, Subnet, Gateway string
	Masquerade            bool
}

// Sandbox is one sandbox on the bridge.
type Sandbox struct {
	Name, ID, IP, HostVeth, State string
	Containers                    []string
	Ports                         []string
}

// Peer is another node and the way to its pods.
type Peer struct {
	Name, NodeIP, PodCIDR, Via string
}

// box is a drawn element: an ID, a title and detail lines.
type box struct {
	id    string
	title string
	lines []string
}

// edge joins two boxes.
type edge struct{ from, to, label string }

func (g Graph) nodeBox() box {
	b := box{id: "node", title: "node " + g.Node.Name}
	for _, i := range g.Node.Interfaces {
		b.lines = append(b.lines, strings.TrimSpace(i.Name+" "+strings.Join(i.Addrs, " ")))
	}
	if g.Node.Mode != "" {
		b.lines = append(b.lines, "mode "+g.Node.Mode)
	}
	return b
}

func (g Graph) bridgeBox() box {
	b := box{id: "bridge", title: g.Bridge.Name + " bridge", lines: []string{g.Bridge.Gateway + " (" + g.Bridge.Subnet + ")"}}
	if g.Bridge.Masquerade {
		b.lines = append(b.lines, "egress masquerade")
	}
	return b
}

func sandboxBox(i int, s Sandbox) box {
	b := box{id: fmt.Sprintf("sandbox%d", i), title: "sandbox " + s.Name}
	ip := s.IP
	if ip == "" {
		ip = "no address"
	}
	b.lines = append(b.lines, "eth0 "+ip+"  "+s.State)
	if len(s.Ports) > 0 {
		b.lines = append(b.lines, "ports "+strings.Join(s.Ports, " "))
	}
	if len(s.Containers) > 0 {
		b.lines = append(b.lines, "containers "+strings.Join(s.Containers, " "))
	}
	return b
}

func peerBox(i int, p Peer) box {
	title := "peer " + p.NodeIP
	if p.Name != "" {
		title = "peer " + p.Name + " " + p.NodeIP
	}
	return box{id: fmt.Sprintf("peer%d", i), title: title, lines: []string{"pods " + p.PodCIDR}}
}

// elements are the boxes in four columns (peers, node, bridge, sandboxes)
// and the edges between them.
func (g Graph) elements() ([4][]box, []edge) {
	var cols [4][]box
	var edges []edge
	for i, p := range g.Peers {
		cols[0] = append(cols[0], peerBox(i, p))
		edges = append(edges, edge{fmt.Sprintf("peer%d", i), "node", p.Via})
	}
	cols[1] = []box{g.nodeBox()}
	cols[2] = []box{g.bridgeBox()}
	edges = append(edges, edge{"node", "bridge", "forwards"})
	for i, s := range g.Sandboxes {
		cols[3] = append(cols[3], sandboxBox(i, s))
		edges = append(edges, edge{"bridge", fmt.Sprintf("sandbox%d", i), s.HostVeth})
	}
	return cols, edges
}

// DOT renders g for Graphviz.
func (g Graph) DOT() string {
	cols, edges := g.elements()
	var b strings.Builder
	b.WriteString("digraph podbox {\n\trankdir=LR;\n\tnode [shape=box, fontname=\"monospace\"];\n")
	for _, col := range cols {
		for _, x := range col {
			label := strings.Join(append([]string{x.title}, x.lines...), "\\n")
			// IDs are quoted: "node" unquoted is DOT's keyword.
			fmt.Fprintf(&b, "\t%q [label=%q];\n", x.id, label)
		}
	}
	for _, e := range edges {
		fmt.Fprintf(&b, "\t%q -> %q [label=%q];\n", e.from, e.to, e.label)
	}
	b.WriteString("}\n")
	return strings.ReplaceAll(b.String(), `\\n`, `\n`)
}
