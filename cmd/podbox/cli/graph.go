package cli

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/netsetup"
	"github.com/podbox/podbox/netsetup/nodegraph"
	"github.com/podbox/podbox/netsetup/nodenet"
	"github.com/podbox/podbox/sandbox"
)

func (a *App) nodeGraphCommand(g *globals) *cobra.Command {
	var format, out string
	cmd := &cobra.Command{
		Use:   "graph [--format dot|svg|png] [-o FILE]",
		Short: "Draw the node's network: interfaces, bridge, sandboxes, ports, peers",
		Long: `Draw this node's pod network from its live state: the node's interfaces and
addresses, the bridge and its subnet, each sandbox on its veth pair with its
address, containers and published ports, and the peer nodes with the way to
their pods. DOT (for Graphviz) goes to standard output; svg and png are drawn
by podbox itself, no external program needed, into -o FILE.`,
		Example: `  podbox node graph | dot -Tsvg > node.svg
  podbox node graph --format png -o node.png`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "dot" && format != "svg" && format != "png" {
				return fmt.Errorf("--format %q: want dot, svg or png", format)
			}
			if format == "png" && out == "" {
				return errors.New("--format png needs -o FILE")
			}
			gr, err := a.nodeGraph(g)
			if err != nil {
				return fmt.Errorf("node graph: %w", err)
			}
			var b []byte
			switch format {
			case "dot":
				b = []byte(gr.DOT())
			case "svg":
				b = gr.SVG()
			case "png":
				if b, err = gr.PNG(); err != nil {
					return fmt.Errorf("node graph: %w", err)
				}
			}
			if out == "" {
				_, err = a.Stdout.Write(b)
				return err
			}
			if err := os.WriteFile(out, b, 0o644); err != nil {
				return fmt.Errorf("node graph: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "dot", "dot, svg or png")
	cmd.Flags().StringVarP(&out, "output", "o", "", "write to FILE instead of standard output")
	return cmd
}

// nodeGraph reads the node's network as it is: the configuration, the
// sandbox records and the node's links.
func (a *App) nodeGraph(g *globals) (nodegraph.Graph, error) {
	st := g.store()
	host, _ := os.Hostname()
	gr := nodegraph.Graph{Node: nodegraph.Node{Name: host}}
	net := netsetup.Network{}
	masquerade := true
	c, err := nodenet.Load(g.root)
	switch {
	case err == nil:
		net = c.Network(g.root)
		gr.Node.Mode = c.Mode
		masquerade = !c.NoMasquerade
		for _, p := range c.Peers {
			via := "route via " + p.NodeIP.String()
			switch c.Mode {
			case nodenet.ModeGateway:
				via = "via the gateway"
			case nodenet.ModeVXLAN:
				via = "vxlan overlay"
			}
			gr.Peers = append(gr.Peers, nodegraph.Peer{Name: p.Name, NodeIP: p.NodeIP.String(), PodCIDR: p.PodCIDR.String(), Via: via})
		}
	case !errors.Is(err, nodenet.ErrNotConfigured):
		return gr, err
	}
	net, err = net.Resolve()
	if err != nil {
		return gr, err
	}
	gr.Bridge = nodegraph.Bridge{Name: net.Bridge, Subnet: net.Subnet.String(), Gateway: net.Gateway.String(), Masquerade: masquerade}
	if gr.Node.Interfaces, err = nodeInterfaces(a.NodeNetNS, net.Bridge); err != nil {
		return gr, err
	}
	sbs, err := loadSandboxes(st)
	if err != nil {
		return gr, err
	}
	for _, sb := range sbs {
		if sb.Network != sandbox.NetworkBridge {
			continue
		}
		s := nodegraph.Sandbox{Name: sb.Name, ID: sb.ID, IP: sb.IP, HostVeth: sb.HostVeth, State: string(sb.State)}
		s.Ports = strings.Split(portsColumn(sb.Ports), ",")
		if len(sb.Ports) == 0 {
			s.Ports = nil
		}
		ids, _ := st.ContainerIDs(sb.ID)
		for _, id := range ids {
			if rec, err := st.LoadContainer(sb.ID, id); err == nil {
				s.Containers = append(s.Containers, rec.Name)
			}
		}
		slices.Sort(s.Containers)
		gr.Sandboxes = append(gr.Sandboxes, s)
	}
	return gr, nil
}

// nodeInterfaces lists the node's links with IPv4 addresses, and its VXLAN
// device, leaving out loopback, the bridge and the sandboxes' veths, which
// the graph draws on their own.
func nodeInterfaces(nodeNetNS, bridge string) ([]nodegraph.Interface, error) {
	h, err := netlink.NewHandle()
	if nodeNetNS != "" {
		ns, oerr := netsetup.OpenNetNS(nodeNetNS)
		if oerr != nil {
			return nil, oerr
		}
		defer ns.Close()
		h, err = netlink.NewHandleAt(ns)
	}
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []nodegraph.Interface
	for _, l := range links {
		a := l.Attrs()
		if a.Name == "lo" || a.Name == bridge || l.Type() == "veth" && strings.HasPrefix(a.Name, "pbx") {
			continue
		}
		addrs, err := h.AddrList(l, unix.AF_INET)
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", a.Name, err)
		}
		i := nodegraph.Interface{Name: a.Name}
		for _, ad := range addrs {
			i.Addrs = append(i.Addrs, ad.IPNet.String())
		}
		if len(i.Addrs) > 0 || l.Type() == "vxlan" {
			out = append(out, i)
		}
	}
	return out, nil
}
