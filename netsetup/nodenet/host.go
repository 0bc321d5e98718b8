package nodenet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/netsetup"
	"github.com/podbox/podbox/netsetup/nat"
)

// Host is one node's network, as configured under one state root.
type Host struct {
	// Root is podbox's state root: node.json and the bridge's leases live
	// under it.
	Root string
	// NetNS is the pin of the node's network namespace; "" means the
	// caller's own (the CLI runs inside the node). Tests pass a throwaway
	// namespace.
	NetNS string
	// InUse lists the sandboxes that use the node's network (names or IDs);
	// nil means none. Init (a first one) and Reset refuse while any exist:
	// their veths and leases belong to the bridge being replaced.
	InUse func() ([]string, error)
}

// lock takes an exclusive flock on the state root for one read-modify-write
// of node.json, so two node commands cannot interleave. The root directory
// itself is locked (as the shim's cleanup does), so no lock file is left
// behind.
// Only Init creates a missing root; for the others a missing root means an
// unconfigured node.
func (h Host) lock(create bool) (func(), error) {
	if create {
		if err := os.MkdirAll(h.Root, 0o700); err != nil {
			return nil, fmt.Errorf("node: state root %s: %w", h.Root, err)
		}
	}
	f, err := os.Open(h.Root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("node: %w", ErrNotConfigured)
	}
	if err != nil {
		return nil, fmt.Errorf("node: state root: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("node: lock %s: %w", h.Root, err)
	}
	return func() { f.Close() }, nil
}

// handle opens a netlink handle in the node namespace. The caller closes it
// after every use: a closed handle silently acts on the caller's namespace.
func (h Host) handle() (*netlink.Handle, error) {
	nh, err := netsetup.OpenHandle(h.NetNS)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	return nh, nil
}

func (h Host) network(c *Config) netsetup.Network {
	n := c.Network(h.Root)
	n.NodeNetNS = h.NetNS
	return n
}

// nat is podbox's nftables table of the node, for c's pod network.
func (h Host) nat(c *Config) nat.Rules {
	return nat.Rules{NodeNetNS: h.NetNS, Bridge: c.Bridge, Subnet: c.PodCIDR}
}

func (h Host) inUse() error {
	if h.InUse == nil {
		return nil
	}
	names, err := h.InUse()
	if err != nil {
		return fmt.Errorf("node: list sandboxes: %w", err)
	}
	if len(names) == 0 {
		return nil
	}
	shown := names
	if len(shown) > 5 {
		shown = append(slices.Clone(shown[:5]), "…")
	}
	return fmt.Errorf("node: %d sandbox(es) exist (%s): remove them first, the node network cannot change under them",
		len(names), strings.Join(shown, ", "))
}

// Load reads the node's configuration (ErrNotConfigured if there is none).
func (h Host) Load() (*Config, error) { return Load(h.Root) }

// Init configures the node with s and applies it. Settings equal to the
// configured ones re-apply everything (say after a reboot) and keep the
// peers; different ones are an error that says to reset first. A first Init
// refuses while sandboxes exist, and undoes its work if applying fails.
// Every invalid setting is reported before anything changes.
func (h Host) Init(ctx context.Context, s Settings) (*Config, error) {
	s, err := s.Resolve()
	if err != nil {
		return nil, err
	}
	nh, err := h.handle()
	if err != nil {
		return nil, err
	}
	defer nh.Close()

	if !s.NodeIP.IsValid() {
		if s.NodeIP, err = defaultSource(nh); err != nil {
			return nil, err
		}
		if s.ClusterCIDR.Contains(s.NodeIP) {
			return nil, fmt.Errorf("node: node IP %s (of the default route) is inside the cluster CIDR %s; pass --node-ip", s.NodeIP, s.ClusterCIDR)
		}
	}
	underlay, err := linkWithAddr(nh, s.NodeIP)
	if err != nil {
		return nil, err
	}
	unlock, err := h.lock(true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	old, err := Load(h.Root)
	switch {
	case err == nil:
		if old.Settings != s {
			return nil, fmt.Errorf("node: already configured as %s; run `podbox node reset` first to change it (asked for %s)",
				describe(old.Settings), describe(s))
		}
		if err := h.checkPeersReachable(nh, old); err != nil {
			return nil, err
		}
		if err := h.apply(ctx, nh, old); err != nil {
			return nil, err
		}
		return old, nil
	case !errors.Is(err, ErrNotConfigured):
		return nil, err
	}
	if err := h.inUse(); err != nil {
		return nil, err
	}

	c := &Config{Settings: s, Peers: []Peer{}, Underlay: underlay.Attrs().Name}
	n, err := (netsetup.Network{Bridge: s.Bridge, Subnet: s.PodCIDR, MTU: s.MTU}).Resolve()
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	c.Gateway, c.PodMTU = n.Gateway, s.MTU
	if s.Mode == ModeVXLAN {
		c.PodMTU = min(s.MTU, underlay.Attrs().MTU) - VXLANOverhead
	}
	if c.OrigIPForward, err = h.readIPForward(); err != nil {
		return nil, err
	}
	if err := h.clearStaleBridge(nh, c); err != nil {
		return nil, err
	}
	// Saved first, so that a crash while applying leaves a record that
	// `node reset` (or another init) can finish from.
	if err := save(h.Root, c); err != nil {
		return nil, err
	}
	if err := h.apply(ctx, nh, c); err != nil {
		if uerr := h.teardown(nh, c); uerr != nil {
			return nil, errors.Join(err, fmt.Errorf("undo: %w", uerr))
		}
		return nil, err
	}
	return c, nil
}

func describe(s Settings) string {
	d := fmt.Sprintf("pod CIDR %s, cluster CIDR %s, node IP %s, mode %s, bridge %s, mtu %d", s.PodCIDR, s.ClusterCIDR, s.NodeIP, s.Mode, s.Bridge, s.MTU)
	if s.VNI != 0 {
		d += fmt.Sprintf(", vni %d", s.VNI)
	}
	if s.NoMasquerade {
		d += ", no masquerade"
	}
	return d
}

// AddPeer records p and installs what reaching it takes. Adding a peer equal
// to one already present re-applies it and succeeds. Every conflict is
// reported before anything changes.
func (h Host) AddPeer(ctx context.Context, p Peer) (*Config, error) {
	unlock, err := h.lock(false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	c, err := Load(h.Root)
	if err != nil {
		return nil, err
	}
	exists, err := c.checkPeer(p)
	if err != nil {
		return nil, err
	}
	nh, err := h.handle()
	if err != nil {
		return nil, err
	}
	defer nh.Close()
	if c.Mode == ModeHostGW {
		if err := directlyConnected(nh, p); err != nil {
			return nil, err
		}
	}
	if !exists {
		c.Peers = append(c.Peers, p)
		if err := save(h.Root, c); err != nil {
			return nil, err
		}
	}
	vx, err := h.vxlanLink(nh, c)
	if err != nil {
		return nil, err
	}
	if err := addPeer(nh, c, vx, p); err != nil {
		if exists {
			return nil, err
		}
		// Take back what this call did: the entries and the record.
		uerr := removePeer(nh, c, p)
		c.Peers = slices.DeleteFunc(c.Peers, func(q Peer) bool { return q == p })
		return nil, errors.Join(err, uerr, save(h.Root, c))
	}
	return c, ctx.Err()
}

// RemovePeer removes the peer ref names (its node IP or name): its route,
// and in vxlan mode its FDB and neighbour entries; nothing else.
func (h Host) RemovePeer(ctx context.Context, ref string) (Peer, error) {
	unlock, err := h.lock(false)
	if err != nil {
		return Peer{}, err
	}
	defer unlock()
	c, err := Load(h.Root)
	if err != nil {
		return Peer{}, err
	}
	i := c.findPeer(ref)
	if i < 0 {
		return Peer{}, fmt.Errorf("node: peer %q: no such peer (see `podbox node peer ls`)", ref)
	}
	p := c.Peers[i]
	nh, err := h.handle()
	if err != nil {
		return p, err
	}
	defer nh.Close()
	if err := removePeer(nh, c, p); err != nil {
		return p, err
	}
	c.Peers = slices.Delete(c.Peers, i, i+1)
	if err := save(h.Root, c); err != nil {
		return p, err
	}
	return p, ctx.Err()
}

// Reset undoes Init: peer routes, the VXLAN device (and with it its FDB and
// neighbour entries), the bridge, its lease directory and node.json go, and
// ip_forward gets its value from before Init back. It refuses while sandboxes
// exist. An unconfigured node is reset already.
func (h Host) Reset(ctx context.Context) (configured bool, err error) {
	unlock, err := h.lock(false)
	if errors.Is(err, ErrNotConfigured) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer unlock()
	c, err := Load(h.Root)
	if errors.Is(err, ErrNotConfigured) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := h.inUse(); err != nil {
		return true, err
	}
	nh, err := h.handle()
	if err != nil {
		return true, err
	}
	defer nh.Close()
	if err := h.teardown(nh, c); err != nil {
		return true, err
	}
	return true, ctx.Err()
}

// apply makes the node match c: ip_forward, bridge, mode's device and every
// peer's entries; stale routes of ours that no peer explains are removed.
func (h Host) apply(ctx context.Context, nh *netlink.Handle, c *Config) error {
	if _, err := h.network(c).EnsureBridge(ctx); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if err := h.nat(c).Egress(c.ClusterCIDR, !c.NoMasquerade); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	vx, err := h.ensureMode(nh, c)
	if err != nil {
		return err
	}
	for _, p := range c.Peers {
		if err := addPeer(nh, c, vx, p); err != nil {
			return err
		}
	}
	return pruneRoutes(nh, c, vx)
}

// teardown removes everything of c and then c's record.
func (h Host) teardown(nh *netlink.Handle, c *Config) error {
	var errs []error
	routes, err := ourRoutes(nh)
	errs = append(errs, err)
	for _, r := range routes {
		if err := nh.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("node: delete route %s: %w", r.Dst, err))
		}
	}
	errs = append(errs, deleteLink(nh, VXLANDevice, "vxlan"))
	errs = append(errs, deleteLink(nh, c.Bridge, "bridge"))
	// No sandbox is left (Reset checks), so no published port either.
	errs = append(errs, h.nat(c).Reset())
	if err := errors.Join(errs...); err != nil {
		return err
	}
	ipamDir := filepath.Join(h.Root, "ipam")
	if err := os.RemoveAll(filepath.Join(ipamDir, c.Bridge)); err != nil {
		return fmt.Errorf("node: remove leases of bridge %q: %w", c.Bridge, err)
	}
	os.Remove(ipamDir) // only if empty: other bridges' leases stay
	if c.OrigIPForward != "" {
		if err := h.writeIPForward(c.OrigIPForward); err != nil {
			return err
		}
	}
	if err := os.Remove(filepath.Join(h.Root, FileName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("node: remove configuration: %w", err)
	}
	return nil
}

// clearStaleBridge makes room for c's bridge: a bridge of that name with
// another address and no ports (left by the default network, whose
// sandboxes are all gone) is deleted, and so is a lease directory of another
// subnet with no leases. Anything still in use is an error.
func (h Host) clearStaleBridge(nh *netlink.Handle, c *Config) error {
	l, err := nh.LinkByName(c.Bridge)
	if err == nil {
		if _, ok := l.(*netlink.Bridge); !ok {
			return fmt.Errorf("node: bridge %q: a %s link of that name exists", c.Bridge, l.Type())
		}
		addrs, err := nh.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return fmt.Errorf("node: bridge %q: list addresses: %w", c.Bridge, err)
		}
		want := netsetupGatewayPrefix(c)
		stale := false
		for _, a := range addrs {
			if a.IPNet.String() != want {
				stale = true
			}
		}
		if stale {
			ports, err := bridgePorts(nh, l)
			if err != nil {
				return err
			}
			if len(ports) > 0 {
				return fmt.Errorf("node: bridge %q holds another address and has ports (%s); remove them first", c.Bridge, strings.Join(ports, ", "))
			}
			if err := nh.LinkDel(l); err != nil {
				return fmt.Errorf("node: delete stale bridge %q: %w", c.Bridge, err)
			}
		}
	} else if !isNotFound(err) {
		return fmt.Errorf("node: bridge %q: look up: %w", c.Bridge, err)
	}
	dir := filepath.Join(h.Root, "ipam", c.Bridge)
	b, err := os.ReadFile(filepath.Join(dir, "leases"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node: leases of bridge %q: %w", c.Bridge, err)
	}
	if strings.Contains(string(b), "\nsubnet "+c.PodCIDR.String()+"\n") {
		return nil
	}
	if !strings.Contains(string(b), "\nleases 0\n") {
		return fmt.Errorf("node: %s holds leases of another subnet; remove their sandboxes first", dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("node: remove stale leases %s: %w", dir, err)
	}
	return nil
}

func netsetupGatewayPrefix(c *Config) string {
	return fmt.Sprintf("%s/%d", c.Gateway, c.PodCIDR.Bits())
}

func bridgePorts(nh *netlink.Handle, br netlink.Link) ([]string, error) {
	links, err := nh.LinkList()
	if err != nil {
		return nil, fmt.Errorf("node: list links: %w", err)
	}
	var ports []string
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			ports = append(ports, l.Attrs().Name)
		}
	}
	return ports, nil
}

// deleteLink deletes the link name if it exists and is of type kind.
func deleteLink(nh *netlink.Handle, name, kind string) error {
	l, err := nh.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node: %s %q: look up: %w", kind, name, err)
	}
	if l.Type() != kind {
		return nil
	}
	if err := nh.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("node: %s %q: delete: %w", kind, name, err)
	}
	return nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

const ipForwardPath = "/proc/sys/net/ipv4/ip_forward"

// inNode runs fn where /proc/sys/net shows the node's namespace.
func (h Host) inNode(fn func() error) error {
	if h.NetNS == "" {
		return fn()
	}
	return netsetup.InNetNS(h.NetNS, fn)
}

func (h Host) readIPForward() (string, error) {
	var v string
	err := h.inNode(func() error {
		b, err := os.ReadFile(ipForwardPath)
		v = strings.TrimSpace(string(b))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("node: read ip_forward: %w", err)
	}
	return v, nil
}

func (h Host) writeIPForward(v string) error {
	err := h.inNode(func() error { return os.WriteFile(ipForwardPath, []byte(v), 0o644) })
	if err != nil {
		return fmt.Errorf("node: restore ip_forward %s: %w", v, err)
	}
	return nil
}
