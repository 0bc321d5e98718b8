package nodenet

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/podbox/podbox/netsetup"
)

// Modes of reaching other nodes' pods (see the package comment).
const (
	ModeHostGW  = "host-gw"
	ModeGateway = "gateway"
	ModeVXLAN   = "vxlan"
)

// Modes lists the valid modes, for help texts and errors (a fresh slice each
// call, so no caller can change what another sees).
func Modes() []string { return []string{ModeHostGW, ModeGateway, ModeVXLAN} }

const (
	// FileName is the node configuration's file under the state root.
	FileName = "node.json"
	// VXLANDevice is the overlay device's name; "podbox.vxlan" would pass
	// the kernel's 15-byte limit only just, and a dot confuses some tools.
	VXLANDevice = "pbxvxlan"
	// DefaultVNI is the VXLAN network identifier unless one is chosen.
	DefaultVNI = 1
	// VXLANPort is the IANA port of VXLAN. Linux defaults to 8472 (the
	// pre-standard port) when none is given, so it is always set.
	VXLANPort = 4789
	// VXLANOverhead is what VXLAN encapsulation adds to every packet:
	// outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14) headers.
	VXLANOverhead = 50
	// RouteProtocol marks the routes this package installs (ip route shows
	// "proto 77"). It is unassigned in iproute2's rt_protos, so no routing
	// daemon uses it, and it lets cleanup find stale routes of ours without
	// ever touching another's.
	RouteProtocol = 77
)

// DefaultClusterCIDR is the cluster's pod address space unless one is given:
// the one Kubernetes' and flannel's examples use.
var DefaultClusterCIDR = netip.MustParsePrefix("10.244.0.0/16")

// ErrNotConfigured is wrapped by every operation that needs a configured node
// when ROOT/node.json does not exist.
var ErrNotConfigured = errors.New("node network is not configured (run `podbox node init` first)")

// Settings are what `podbox node init` asks for. Resolve fills defaults and
// validates what needs no look at the host.
type Settings struct {
	// PodCIDR is this node's slice of ClusterCIDR; the bridge takes its
	// first address and sandboxes lease the rest.
	PodCIDR netip.Prefix `json:"podCIDR"`
	// ClusterCIDR holds every node's pod CIDR; default 10.244.0.0/16.
	ClusterCIDR netip.Prefix `json:"clusterCIDR"`
	// NodeIP is this node's address on the network between nodes; default
	// the preferred source address of the default route.
	NodeIP netip.Addr `json:"nodeIP"`
	// Mode is ModeHostGW (default), ModeGateway or ModeVXLAN.
	Mode string `json:"mode"`
	// Bridge is the node bridge's name; default netsetup.DefaultBridge.
	Bridge string `json:"bridge"`
	// MTU is the MTU asked for; default 1500. In vxlan mode the pods get
	// less (Config.PodMTU).
	MTU int `json:"mtu"`
	// VNI is the VXLAN network identifier (vxlan mode); default 1.
	VNI int `json:"vni,omitempty"`
	// NoMasquerade leaves traffic from pods to outside the cluster CIDR
	// with the pods' own addresses; by default it leaves with the node's.
	NoMasquerade bool `json:"noMasquerade,omitempty"`
}

// Resolve returns s with defaults filled in, or an error naming the first
// invalid setting. NodeIP may stay unset: only the host knows its default.
func (s Settings) Resolve() (Settings, error) {
	if !s.ClusterCIDR.IsValid() {
		s.ClusterCIDR = DefaultClusterCIDR
	}
	if s.Mode == "" {
		s.Mode = ModeHostGW
	}
	if s.Bridge == "" {
		s.Bridge = netsetup.DefaultBridge
	}
	if s.MTU == 0 {
		s.MTU = netsetup.DefaultMTU
	}
	if s.Mode == ModeVXLAN && s.VNI == 0 {
		s.VNI = DefaultVNI
	}
	if !s.PodCIDR.IsValid() {
		return s, errors.New("node: pod CIDR is required (--pod-cidr, e.g. 10.244.1.0/24)")
	}
	if err := checkCIDR("pod CIDR", s.PodCIDR); err != nil {
		return s, err
	}
	if err := checkCIDR("cluster CIDR", s.ClusterCIDR); err != nil {
		return s, err
	}
	if !contains(s.ClusterCIDR, s.PodCIDR) {
		return s, fmt.Errorf("node: pod CIDR %s is outside the cluster CIDR %s", s.PodCIDR, s.ClusterCIDR)
	}
	if s.PodCIDR.Bits() > 30 {
		return s, fmt.Errorf("node: pod CIDR %s is too small: need at least a /30 (a gateway and one pod)", s.PodCIDR)
	}
	if !slices.Contains(Modes(), s.Mode) {
		return s, fmt.Errorf("node: unknown mode %q (want %s)", s.Mode, strings.Join(Modes(), ", "))
	}
	if s.NodeIP.IsValid() {
		if err := checkNodeIP("node IP", s.NodeIP); err != nil {
			return s, err
		}
		if s.ClusterCIDR.Contains(s.NodeIP) {
			return s, fmt.Errorf("node: node IP %s is inside the cluster CIDR %s, which is for pods", s.NodeIP, s.ClusterCIDR)
		}
	}
	if s.Mode != ModeVXLAN && s.VNI != 0 {
		return s, fmt.Errorf("node: a VNI (%d) is only for mode %s", s.VNI, ModeVXLAN)
	}
	// 24 bits of VNI.
	if s.VNI < 0 || s.VNI >= 1<<24 {
		return s, fmt.Errorf("node: VNI %d out of range 1..16777215", s.VNI)
	}
	n, err := (netsetup.Network{Bridge: s.Bridge, Subnet: s.PodCIDR, MTU: s.MTU}).Resolve()
	if err != nil {
		return s, fmt.Errorf("node: %w", err)
	}
	if s.Mode == ModeVXLAN && n.MTU-VXLANOverhead < 68 {
		return s, fmt.Errorf("node: mtu %d leaves no room for VXLAN's %d bytes of headers", s.MTU, VXLANOverhead)
	}
	if s.Bridge == VXLANDevice {
		return s, fmt.Errorf("node: bridge %q: the name of the VXLAN device", s.Bridge)
	}
	return s, nil
}

func checkCIDR(what string, p netip.Prefix) error {
	switch {
	case !p.Addr().Is4():
		return fmt.Errorf("node: %s %s: not IPv4", what, p)
	case p != p.Masked():
		return fmt.Errorf("node: %s %s: host bits set (the network is %s)", what, p, p.Masked())
	}
	return nil
}

func checkNodeIP(what string, a netip.Addr) error {
	if !a.Is4() || a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return fmt.Errorf("node: %s %s: not a unicast IPv4 address", what, a)
	}
	return nil
}

// contains reports whether inner lies wholly inside outer.
func contains(outer, inner netip.Prefix) bool {
	return outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}

// ParseCIDR parses a flag's CIDR, with an error a user understands.
func ParseCIDR(what, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, fmt.Errorf("%s %q: not a CIDR such as 10.244.1.0/24", what, s)
	}
	return p, nil
}

// ParseIP parses a flag's IPv4 address.
func ParseIP(what, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("%s %q: not an IPv4 address", what, s)
	}
	return a, nil
}

// Peer is another node: where its pods live and how to reach it.
type Peer struct {
	// Name is optional, for people; peer rm accepts it or NodeIP.
	Name    string       `json:"name,omitempty"`
	NodeIP  netip.Addr   `json:"nodeIP"`
	PodCIDR netip.Prefix `json:"podCIDR"`
}

func (p Peer) String() string {
	if p.Name != "" {
		return fmt.Sprintf("peer %q (%s)", p.Name, p.NodeIP)
	}
	return "peer " + p.NodeIP.String()
}

// IsName tells whether s follows podbox's name rule, for peers here and for
// sandboxes and containers (package sandbox, which sits above this one):
// ^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$. Such a name can never be a path, never
// start with a dot or dash, and fits a DNS label's length. A loop, not a
// regexp: a package-level compiled expression (the bounded repetition
// unrolled) cost every shim and CLI start 59 KB of heap in 848 allocations.
func IsName(s string) bool {
	if len(s) < 1 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}

// Config is a node's applied configuration, as persisted in ROOT/node.json.
type Config struct {
	Settings
	// Gateway is the bridge's address: the pod CIDR's first host address.
	Gateway netip.Addr `json:"gateway"`
	// PodMTU is the MTU of the bridge, the veths and the VXLAN device.
	PodMTU int `json:"podMTU"`
	// Underlay is the link holding NodeIP when the node was configured.
	Underlay string `json:"underlay"`
	// Peers are the other nodes, in the order they were added.
	Peers []Peer `json:"peers"`
	// OrigIPForward is net.ipv4.ip_forward as it was before init ("0" or
	// "1"), restored by Reset.
	OrigIPForward string `json:"origIPForward"`
}

// Network is the bridge network sandboxes of this node attach to, leases
// kept under root.
func (c *Config) Network(root string) netsetup.Network {
	return netsetup.Network{Bridge: c.Bridge, Subnet: c.PodCIDR, Gateway: c.Gateway, MTU: c.PodMTU, StateRoot: root}
}

// Routes are the routes a shared gateway needs, in `ip route` form, one per
// node: this node's first, then the peers'.
func (c *Config) Routes() []string {
	out := []string{fmt.Sprintf("%s via %s", c.PodCIDR, c.NodeIP)}
	for _, p := range c.Peers {
		out = append(out, fmt.Sprintf("%s via %s", p.PodCIDR, p.NodeIP))
	}
	return out
}

// findPeer returns the index of the peer ref names (node IP or name), or -1.
func (c *Config) findPeer(ref string) int {
	if a, err := netip.ParseAddr(ref); err == nil {
		if i := slices.IndexFunc(c.Peers, func(p Peer) bool { return p.NodeIP == a }); i >= 0 {
			return i
		}
	}
	return slices.IndexFunc(c.Peers, func(p Peer) bool { return p.Name != "" && p.Name == ref })
}

// checkPeer validates p against c: its own fields, the cluster CIDR, and
// collisions with this node and the other peers. An identical peer already
// present is reported by exists, not as an error.
func (c *Config) checkPeer(p Peer) (exists bool, err error) {
	if p.Name != "" && !IsName(p.Name) {
		return false, fmt.Errorf("node: peer name %q is invalid: use 1 to 63 of [a-zA-Z0-9_.-], starting with a letter or digit", p.Name)
	}
	if !p.NodeIP.IsValid() {
		return false, errors.New("node: peer node IP is required (--node-ip)")
	}
	if err := checkNodeIP("peer node IP", p.NodeIP); err != nil {
		return false, err
	}
	if !p.PodCIDR.IsValid() {
		return false, errors.New("node: peer pod CIDR is required (--pod-cidr)")
	}
	if err := checkCIDR("peer pod CIDR", p.PodCIDR); err != nil {
		return false, err
	}
	if p.NodeIP == c.NodeIP {
		return false, fmt.Errorf("node: %s: the node IP is this node's own", p)
	}
	if c.ClusterCIDR.Contains(p.NodeIP) {
		return false, fmt.Errorf("node: %s: node IP inside the cluster CIDR %s, which is for pods", p, c.ClusterCIDR)
	}
	if !contains(c.ClusterCIDR, p.PodCIDR) {
		return false, fmt.Errorf("node: %s: pod CIDR %s is outside the cluster CIDR %s", p, p.PodCIDR, c.ClusterCIDR)
	}
	if p.PodCIDR.Overlaps(c.PodCIDR) {
		return false, fmt.Errorf("node: %s: pod CIDR %s overlaps this node's pod CIDR %s", p, p.PodCIDR, c.PodCIDR)
	}
	for _, q := range c.Peers {
		if q == p {
			return true, nil
		}
		switch {
		case q.NodeIP == p.NodeIP:
			return false, fmt.Errorf("node: %s already exists with pod CIDR %s; remove it first (podbox node peer rm %s)", q, q.PodCIDR, q.NodeIP)
		case p.Name != "" && q.Name == p.Name:
			return false, fmt.Errorf("node: peer name %q is taken by %s", p.Name, q)
		case q.PodCIDR.Overlaps(p.PodCIDR):
			return false, fmt.Errorf("node: %s: pod CIDR %s overlaps %s's pod CIDR %s", p, p.PodCIDR, q, q.PodCIDR)
		}
	}
	return false, nil
}

// vtepMAC is the VXLAN device's MAC of the node with IP ip: locally
// administered, unicast, the IP in the last four bytes. Every node computes
// every peer's from the peer's IP, so no MAC is ever exchanged. The 0e:70
// prefix differs from the bridge's 0a:58, so the two never collide.
func vtepMAC(ip netip.Addr) net.HardwareAddr {
	a := ip.As4()
	return net.HardwareAddr{0x0e, 0x70, a[0], a[1], a[2], a[3]}
}

// Load reads ROOT/node.json; a missing file is an error wrapping
// ErrNotConfigured.
func Load(root string) (*Config, error) {
	b, err := os.ReadFile(filepath.Join(root, FileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("node: %w", ErrNotConfigured)
	}
	if err != nil {
		return nil, fmt.Errorf("node: read configuration: %w", err)
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("node: %s: %w", filepath.Join(root, FileName), err)
	}
	if c.Peers == nil {
		c.Peers = []Peer{}
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("node: %s is invalid: %w", filepath.Join(root, FileName), err)
	}
	return &c, nil
}

// check validates a loaded configuration as Init and AddPeer validated what
// they saved: a damaged or hand-edited node.json is refused here, rather
// than panicking or misrouting in a later step (the VTEP MAC of an IPv6
// peer, a route to a pod CIDR with host bits).
func (c *Config) check() error {
	s, err := c.Settings.Resolve()
	switch {
	case err != nil:
		return err
	case s != c.Settings:
		return fmt.Errorf("settings incomplete (resolved, %s)", describe(s))
	case !c.NodeIP.IsValid():
		return errors.New("no node IP")
	}
	if _, err := c.Network("/").Resolve(); err != nil {
		return err
	}
	maxMTU := c.MTU
	if c.Mode == ModeVXLAN {
		maxMTU -= VXLANOverhead
	}
	if c.PodMTU < 68 || c.PodMTU > maxMTU {
		return fmt.Errorf("pod mtu %d: out of range 68..%d", c.PodMTU, maxMTU)
	}
	if c.OrigIPForward != "" && c.OrigIPForward != "0" && c.OrigIPForward != "1" {
		return fmt.Errorf("original ip_forward %q: want 0 or 1", c.OrigIPForward)
	}
	before := &Config{Settings: c.Settings}
	for _, p := range c.Peers {
		exists, err := before.checkPeer(p)
		if err != nil {
			return err
		}
		if exists {
			return fmt.Errorf("%s is listed twice", p)
		}
		before.Peers = append(before.Peers, p)
	}
	return nil
}

// save writes c to ROOT/node.json atomically (temp file + rename): a reader,
// such as a shim creating a sandbox, sees the old or the new configuration,
// never a torn one.
func save(root string, c *Config) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("node: save configuration: %w", err)
	}
	path := filepath.Join(root, FileName)
	tmp, err := os.CreateTemp(root, "."+FileName+".*")
	if err != nil {
		return fmt.Errorf("node: save configuration: %w", err)
	}
	_, err = tmp.Write(append(b, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("node: save configuration: %w", err)
	}
	return nil
}
