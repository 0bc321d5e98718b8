package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/podbox/podbox/netsetup/nodenet"
	"github.com/podbox/podbox/sandbox"
)

// The node commands configure this node's part of a multi-node pod network
// (package netsetup/nodenet). Unlike the sandbox commands they need no shim:
// they change only the node's own network namespace, in process.

func (a *App) nodeCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Configure this node's pod CIDR, its peers and how pods reach other nodes",
		Long: `Pods on different nodes reach each other by pod IP. Each node gets its own
pod CIDR (a slice of the cluster CIDR) on its bridge, and learns where every
other node's slice lives, in one of three modes:

  host-gw  a route per peer: "PEERCIDR via PEERNODEIP" (nodes share an L2 segment)
  gateway  no per-peer routes: pod traffic follows the default route to a shared
           gateway, which needs the routes ` + "`podbox node routes`" + ` prints
  vxlan    a VXLAN overlay (device ` + nodenet.VXLANDevice + `, UDP port 4789) for nodes
           without a shared L2 segment; the pod MTU is lowered by 50

Between pods nothing is NATed: a pod sees the other pod's IP (traffic to
outside the cluster CIDR leaves with the node's address, unless init says
--masquerade=false). Run these commands inside
the node's network namespace; the configuration lives in ROOT/node.json and
sandboxes created afterwards lease their addresses from the pod CIDR.`,
		Example: `  podbox node init --pod-cidr 10.244.1.0/24 --node-ip 10.100.0.2
  podbox node peer add --node-ip 10.100.0.3 --pod-cidr 10.244.2.0/24 --name node2
  podbox node routes          # on each node; add the lines on the gateway
  podbox node reset`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	peer := &cobra.Command{
		Use:   "peer",
		Short: "Add, list and remove the other nodes this node routes pods to",
		Example: `  podbox node peer add --node-ip 10.100.0.3 --pod-cidr 10.244.2.0/24 --name node2
  podbox node peer ls
  podbox node peer rm node2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	peer.AddCommand(a.nodePeerAddCommand(g), a.nodePeerLsCommand(g), a.nodePeerRmCommand(g))
	cmd.AddCommand(a.nodeInitCommand(g), peer, a.nodeShowCommand(g), a.nodeRoutesCommand(g), a.nodeGraphCommand(g), a.nodeResetCommand(g))
	return cmd
}

// nodeHost is the node network under the state root; the sandboxes under
// the same root are what uses it.
func (a *App) nodeHost(g *globals) nodenet.Host {
	st := g.store()
	return nodenet.Host{Root: g.root, NetNS: a.NodeNetNS, InUse: func() ([]string, error) { return sandboxNames(st) }}
}

// sandboxNames names every sandbox under the root; one still being created
// (no record yet) by its ID.
func sandboxNames(st sandbox.Store) ([]string, error) {
	ids, err := st.SandboxIDs()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ids))
	for _, id := range ids {
		sb, err := st.LoadSandbox(id)
		switch {
		case err == nil:
			names = append(names, sb.Name)
		case errors.Is(err, sandbox.ErrNotFound):
			names = append(names, shortID(id))
		default:
			return nil, err
		}
	}
	return names, nil
}

func (a *App) nodeInitCommand(g *globals) *cobra.Command {
	var podCIDR, clusterCIDR, nodeIP, mode, bridge string
	var mtu, vni int
	masquerade := true
	cmd := &cobra.Command{
		Use:   "init --pod-cidr CIDR [flags]",
		Short: "Configure and apply this node's pod network",
		Long: `Configure this node: its bridge takes the first address of the pod CIDR
(10.244.1.0/24 → 10.244.1.1/24) and sandboxes created afterwards lease from it.
IP forwarding is turned on (reset restores the old value). Traffic from pods
to addresses outside the cluster CIDR leaves with the node's address
(masquerade, in podbox's own nftables table) unless --masquerade=false;
traffic between pods, on this node or others, keeps the pods' addresses.

--node-ip must be an address of this node; by default it is the source
address of the default route. Running init again with the same settings
re-applies everything (after a reboot, say) and keeps the peers; other
settings need ` + "`podbox node reset`" + ` first. Init refuses while sandboxes exist.`,
		Example: `  podbox node init --pod-cidr 10.244.1.0/24
  podbox node init --pod-cidr 10.244.1.0/24 --cluster-cidr 10.244.0.0/16 --node-ip 10.100.0.2 --mode gateway
  podbox node init --pod-cidr 10.244.1.0/24 --mode vxlan --vni 7`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s := nodenet.Settings{Mode: mode, Bridge: bridge, MTU: mtu, VNI: vni, NoMasquerade: !masquerade}
			var err error
			if s.PodCIDR, err = nodenet.ParseCIDR("--pod-cidr", podCIDR); err != nil {
				return err
			}
			if clusterCIDR != "" {
				if s.ClusterCIDR, err = nodenet.ParseCIDR("--cluster-cidr", clusterCIDR); err != nil {
					return err
				}
			}
			if nodeIP != "" {
				if s.NodeIP, err = nodenet.ParseIP("--node-ip", nodeIP); err != nil {
					return err
				}
			}
			if cmd.Flags().Changed("mtu") && mtu <= 0 {
				return fmt.Errorf("--mtu %d: must be positive", mtu)
			}
			c, err := a.nodeHost(g).Init(cmd.Context(), s)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Stdout, "node configured: pod CIDR %s on bridge %s (%s), node IP %s, mode %s, pod MTU %d\n",
				c.PodCIDR, c.Bridge, c.Gateway, c.NodeIP, c.Mode, c.PodMTU)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&podCIDR, "pod-cidr", "", "this node's pod subnet, e.g. 10.244.1.0/24 (required)")
	f.StringVar(&clusterCIDR, "cluster-cidr", nodenet.DefaultClusterCIDR.String(), "the cluster's pod address space, holding every node's pod CIDR")
	f.StringVar(&nodeIP, "node-ip", "", "this node's address between nodes (default: source address of the default route)")
	f.StringVar(&mode, "mode", nodenet.ModeHostGW, "how pods reach other nodes: "+strings.Join(nodenet.Modes(), ", "))
	f.StringVar(&bridge, "bridge", "podbox0", "the node bridge's name")
	f.IntVar(&mtu, "mtu", 1500, "MTU (vxlan: the pods get 50 less, and at most the underlay's MTU less 50)")
	f.IntVar(&vni, "vni", 0, "VXLAN network identifier, vxlan mode only (default 1)")
	f.BoolVar(&masquerade, "masquerade", true, "give traffic from pods to outside the cluster CIDR the node's address")
	return cmd
}

func (a *App) nodePeerAddCommand(g *globals) *cobra.Command {
	var nodeIP, podCIDR, name string
	cmd := &cobra.Command{
		Use:   "add --node-ip IP --pod-cidr CIDR [--name NAME]",
		Short: "Add another node and route its pods",
		Long: `Record a peer node and install what reaching its pods takes, at once:
a route via its node IP (host-gw), nothing (gateway), or VXLAN forwarding,
neighbour and route entries (vxlan). Adding the same peer again succeeds.
Its pod CIDR must lie in the cluster CIDR and overlap no other node's.`,
		Example: `  podbox node peer add --node-ip 10.100.0.3 --pod-cidr 10.244.2.0/24 --name node2`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p := nodenet.Peer{Name: name}
			var err error
			if p.NodeIP, err = nodenet.ParseIP("--node-ip", nodeIP); err != nil {
				return err
			}
			if p.PodCIDR, err = nodenet.ParseCIDR("--pod-cidr", podCIDR); err != nil {
				return err
			}
			_, err = a.nodeHost(g).AddPeer(cmd.Context(), p)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&nodeIP, "node-ip", "", "the peer's node IP (required)")
	f.StringVar(&podCIDR, "pod-cidr", "", "the peer's pod CIDR (required)")
	f.StringVar(&name, "name", "", "a name for the peer, accepted by peer rm")
	return cmd
}

func (a *App) nodePeerLsCommand(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "ls [flags]",
		Aliases: []string{"list"},
		Short:   "List the peers",
		Long: `List the peers in the order they were added. With -o json: an array of
{"name" (omitted if none), "nodeIP", "podCIDR"}, [] if there are none.`,
		Example: `  podbox node peer ls
  podbox node peer ls -o json | jq -r '.[].nodeIP'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			c, err := a.nodeHost(g).Load()
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(a.Stdout, c.Peers)
			}
			return writePeerTable(a.Stdout, c.Peers, "")
		},
	}
	cmd.Flags().StringVarP(&format, "output", "o", "table", "output format: table or json")
	return cmd
}

func writePeerTable(w io.Writer, peers []nodenet.Peer, indent string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, indent+"NAME\tNODE IP\tPOD CIDR")
	for _, p := range peers {
		fmt.Fprintf(tw, "%s%s\t%s\t%s\n", indent, orDash(p.Name), p.NodeIP, p.PodCIDR)
	}
	return tw.Flush()
}

func (a *App) nodePeerRmCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NODEIP|NAME...",
		Aliases: []string{"remove"},
		Short:   "Remove peers and exactly their routes and forwarding entries",
		Example: `  podbox node peer rm 10.100.0.3
  podbox node peer rm node2`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h := a.nodeHost(g)
			for _, ref := range args {
				if _, err := h.RemovePeer(cmd.Context(), ref); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func (a *App) nodeShowCommand(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "show [flags]",
		Short: "Show the node's configuration and what of it is applied",
		Long: `Show the configuration (ROOT/node.json) and what the node's network
namespace actually holds of it, read back from the kernel: the bridge, the
VXLAN device, ip_forward, and the routes, FDB entries and neighbours podbox
installed (its routes carry "proto 77").

With -o json: {"config": {podCIDR, clusterCIDR, nodeIP, mode, bridge, mtu, vni,
gateway, podMTU, underlay, peers: [{name, nodeIP, podCIDR}], origIPForward},
"applied": {ipForward, bridge (null if missing): {name, up, mtu, mac,
addresses}, vxlan (only if present): {…, vni, port, local}, routes, fdb,
neighbours}}.`,
		Example: `  podbox node show
  podbox node show -o json | jq .applied.routes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			st, err := a.nodeHost(g).Status()
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(a.Stdout, st)
			}
			return writeNodeStatus(a.Stdout, st)
		},
	}
	cmd.Flags().StringVarP(&format, "output", "o", "table", "output format: table or json")
	return cmd
}

func writeNodeStatus(w io.Writer, st *nodenet.Status) error {
	c, ap := st.Config, st.Applied
	onOff := map[bool]string{true: "on", false: "off"}
	fmt.Fprintf(w, "pod CIDR:      %s\n", c.PodCIDR)
	fmt.Fprintf(w, "cluster CIDR:  %s\n", c.ClusterCIDR)
	fmt.Fprintf(w, "node IP:       %s (%s)\n", c.NodeIP, c.Underlay)
	fmt.Fprintf(w, "mode:          %s\n", c.Mode)
	fmt.Fprintf(w, "gateway:       %s\n", c.Gateway)
	fmt.Fprintf(w, "pod MTU:       %d\n", c.PodMTU)
	fmt.Fprintf(w, "bridge:        %s\n", ap.Bridge)
	if c.Mode == nodenet.ModeVXLAN {
		fmt.Fprintf(w, "vxlan:         %s\n", ap.VXLAN)
	}
	fmt.Fprintf(w, "ip_forward:    %s\n", onOff[ap.IPForward])
	fmt.Fprintf(w, "peers:         %d\n", len(c.Peers))
	if len(c.Peers) > 0 {
		if err := writePeerTable(w, c.Peers, "  "); err != nil {
			return err
		}
	}
	lists := []struct {
		title string
		items []string
	}{{"routes", ap.Routes}, {"fdb", ap.FDB}, {"neighbours", ap.Neighbours}}
	for _, l := range lists {
		if len(l.items) == 0 {
			continue
		}
		fmt.Fprintf(w, "%s:\n", l.title)
		for _, it := range l.items {
			fmt.Fprintf(w, "  %s\n", it)
		}
	}
	return nil
}

func (a *App) nodeRoutesCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "routes",
		Short: "Print the routes a shared gateway needs, one per node",
		Long: `Print one route per node, this node's first and then its peers', in
` + "`ip route`" + ` form: what the gateway needs in gateway mode.`,
		Example: `  podbox node routes | while read -r r; do ip route replace $r; done   # on the gateway`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.nodeHost(g).Load()
			if err != nil {
				return err
			}
			for _, r := range c.Routes() {
				fmt.Fprintln(a.Stdout, r)
			}
			return nil
		},
	}
}

func (a *App) nodeResetCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "reset",
		Short: "Undo node init: remove peer routes, the overlay, the bridge and the configuration",
		Long: `Leave the node's network as it was before ` + "`podbox node init`" + `: peer routes,
the VXLAN device with its entries, the bridge and its leases, and node.json
go, and ip_forward gets its old value back. Refuses while sandboxes exist.
Resetting an unconfigured node succeeds.`,
		Example: `  podbox sandbox ls -q | xargs -r podbox sandbox rm -f; podbox node reset`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := a.nodeHost(g).Reset(cmd.Context())
			return err
		},
	}
}
