package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/podbox/podbox/netsetup"
	"github.com/podbox/podbox/netsetup/cni"
	"github.com/podbox/podbox/netsetup/resolvconf"
)

// cniCacheDir is libcni's cache of the node's CNI attachments: under the
// state root, so that it goes with the node's other state and a test's
// root shows what a sandbox left.
func (n Node) cniCacheDir() string { return filepath.Join(n.Store.Root, "cni") }

// cniAttachment is where sandbox id goes on CNI network name.
func (n Node) cniAttachment(id, name string, o Options) *cni.Attachment {
	a := &cni.Attachment{
		Network: name, ConfDir: o.CNIConfDir, BinDirs: slices.Clone(o.CNIBinDirs),
		CacheDir: n.cniCacheDir(), ContainerID: id, IfName: cni.DefaultIfName,
	}
	if a.ConfDir == "" {
		a.ConfDir = cni.DefaultConfDir
	}
	if len(a.BinDirs) == 0 {
		a.BinDirs = cni.SplitBinPath(cni.DefaultBinPath)
	}
	return a
}

func (n Node) cniRequest(op string, sb *Sandbox) cni.Request {
	req := cni.Request{Op: op, Attachment: *sb.CNI, NetNS: sb.NetNSPath,
		// Plugins written for Kubernetes (host-local, portmap, bandwidth)
		// read the pod's name; the others ignore these.
		Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAME", sb.Name}, {"K8S_POD_INFRA_CONTAINER_ID", sb.ID}},
	}
	for _, m := range sb.Ports {
		req.PortMappings = append(req.PortMappings, cni.PortMapping{
			HostPort: m.HostPort, ContainerPort: m.Port, Protocol: m.Protocol, HostIP: hostIP(m.HostIP),
		})
	}
	return req
}

func hostIP(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// setupCNI brings lo up (a list need not have the loopback plugin) and runs
// the chain's ADD; the sandbox's address and gateway are the chain's, and
// so is its resolver, unless the user gave one.
func (n Node) setupCNI(ctx context.Context, sb *Sandbox) error {
	if err := netsetup.SetupLoopbackOnly(ctx, sb.NetNSPath); err != nil {
		return err
	}
	res, err := cni.Run(ctx, n.CNIHelper, n.Exec, n.cniRequest(cni.OpAdd, sb))
	if err != nil {
		return err
	}
	if addr, gw, ok := res.SandboxAddress(sb.CNI.IfName); ok {
		sb.IP = addr.Addr().String()
		if gw.IsValid() {
			sb.Gateway = gw.String()
		}
	}
	if sb.DNS == nil && len(res.DNS.Nameservers) > 0 {
		dns, err := cniDNS(res.DNS)
		if err != nil {
			return fmt.Errorf("CNI network %q: %w", sb.CNI.Network, err)
		}
		sb.DNS = &dns
	}
	return nil
}

// cniDNS is a chain's resolver settings as the sandbox's.
func cniDNS(d cni.DNS) (resolvconf.Config, error) {
	servers, err := resolvconf.ParseServers(d.Nameservers)
	if err != nil {
		return resolvconf.Config{}, err
	}
	c := resolvconf.Config{Servers: servers, Searches: d.Search, Options: d.Options}
	if len(c.Searches) == 0 && d.Domain != "" {
		c.Searches = []string{d.Domain}
	}
	return c, c.Validate()
}

// teardownCNI runs the chain's DEL, from what libcni cached at ADD, and
// removes the namespace. A DEL finds the namespace gone when an earlier
// removal stopped after removing it; the plugins then clean up what they
// keep on the node (leases, port rules) without it.
func (n Node) teardownCNI(ctx context.Context, sb *Sandbox) error {
	req := n.cniRequest(cni.OpDel, sb)
	if _, err := os.Stat(req.NetNS); err != nil {
		req.NetNS = ""
	}
	if _, err := cni.Run(ctx, n.CNIHelper, n.Exec, req); err != nil {
		return err
	}
	return netsetup.RemoveNetNS(sb.NetNSPath)
}

// CheckNetwork asks the sandbox's network whether its attachment is still
// as made: a CNI network runs its chain's CHECK. It returns the chain's
// cached result for a CNI network, nil for the others.
func (n Node) CheckNetwork(ctx context.Context, sb *Sandbox) (*cni.Result, error) {
	if sb.CNI == nil {
		return nil, n.checkOwnNetwork(ctx, sb)
	}
	return cni.Run(ctx, n.CNIHelper, n.Exec, n.cniRequest(cni.OpCheck, sb))
}

// checkOwnNetwork checks the attachment podbox made itself: the bridge
// network's veth, address and published ports, a namespace's pin.
func (n Node) checkOwnNetwork(ctx context.Context, sb *Sandbox) error {
	wrap := func(err error) error {
		if err == nil {
			return nil
		}
		return fmt.Errorf("sandbox %q: network %s: %w", sb.Name, sb.Network, err)
	}
	switch sb.Network {
	case NetworkBridge:
		net := n.network()
		net.Bridge = sb.Bridge
		addr, _ := netip.ParseAddr(sb.IP)
		err := net.Check(ctx, sb.ID, n.ownPin(sb), addr)
		if len(sb.Ports) > 0 {
			err = errors.Join(err, n.checkPorts(sb))
		}
		return wrap(err)
	case NetworkNone:
		if !netsetup.IsNetNSPin(n.ownPin(sb)) {
			return wrap(fmt.Errorf("network namespace %s is not pinned", n.ownPin(sb)))
		}
	}
	return nil
}

// checkPorts checks that every port sb publishes has its rule.
func (n Node) checkPorts(sb *Sandbox) error {
	published, err := n.portRules(n.network(), sb.Bridge).List()
	if err != nil {
		return err
	}
	var missing []string
	for _, m := range sb.Ports {
		found := false
		for _, p := range published {
			found = found || (p.SandboxID == sb.ID && p.Mapping == m && p.PodIP.String() == sb.IP)
		}
		if !found {
			missing = append(missing, m.String())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("published ports without their forwarding rule: %v", missing)
	}
	return nil
}
