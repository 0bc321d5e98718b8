package netsetup

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
)

// Defaults of the built-in network. 10.89.0.0/16 collides with neither
// Docker's 172.17.0.0/16 nor the 10.88.0.0/16 of containerd's and podman's
// CNI examples, and holds far more sandboxes than one node runs.
const (
	DefaultBridge    = "podbox0"
	DefaultMTU       = 1500
	DefaultStateRoot = "/run/podbox"
)

// DefaultSubnet is the subnet sandboxes are addressed from by default.
var DefaultSubnet = netip.MustParsePrefix("10.89.0.0/16")

// Network is a node's built-in pod network: one bridge in the node namespace,
// holding the gateway address, and one veth pair per sandbox, addressed from
// Subnet. The zero value is the default network; Resolve says what each unset
// field becomes.
type Network struct {
	// Bridge is the node bridge's name; default "podbox0".
	Bridge string `json:"bridge,omitempty"`
	// Subnet is the IPv4 subnet sandboxes are addressed from; default
	// 10.89.0.0/16.
	Subnet netip.Prefix `json:"subnet,omitzero"`
	// Gateway is the bridge's address and every sandbox's default route;
	// default the first host address of Subnet.
	Gateway netip.Addr `json:"gateway,omitzero"`
	// MTU of the bridge and of both ends of every veth; default 1500.
	MTU int `json:"mtu,omitempty"`
	// StateRoot is podbox's state root; leases live under
	// StateRoot/ipam/<Bridge>. Default /run/podbox.
	StateRoot string `json:"stateRoot,omitempty"`
	// NodeNetNS is the pin of the node's network namespace, where the bridge
	// and the host ends of the veths live; "" means the caller's own
	// namespace. Tests pass a throwaway node here.
	NodeNetNS string `json:"nodeNetNS,omitempty"`
}

// Attachment records what Setup built for one sandbox; the sandbox package
// persists it and reports Address to its clients.
type Attachment struct {
	SandboxID string `json:"sandboxID"`
	NetNSPath string `json:"netnsPath"`
	Bridge    string `json:"bridge"`
	// HostVeth is the node end of the pair, a port of Bridge.
	HostVeth string `json:"hostVeth"`
	// Address is the sandbox's eth0 address with the subnet's prefix length.
	Address netip.Prefix `json:"address"`
	Gateway netip.Addr   `json:"gateway"`
	// MAC is the hardware address of the sandbox's eth0.
	MAC string `json:"mac"`
	// BridgeCreated says that this Setup made the bridge: the node's first
	// sandbox, when node-wide rules that go with the bridge are made too.
	BridgeCreated bool `json:"-"`
}

// Resolve returns n with every unset field set to its default, or an error
// naming the first field that is invalid. It is the one place defaults and
// validation live (the role of loadNetConf in CNI's bridge plugin); Setup,
// Teardown and EnsureBridge call it, and callers may call it early to reject a
// bad configuration before any sandbox exists.
func (n Network) Resolve() (Network, error) {
	if n.Bridge == "" {
		n.Bridge = DefaultBridge
	}
	if !n.Subnet.IsValid() {
		n.Subnet = DefaultSubnet
	}
	if n.MTU == 0 {
		n.MTU = DefaultMTU
	}
	if n.StateRoot == "" {
		n.StateRoot = DefaultStateRoot
	}
	if err := validIfName(n.Bridge); err != nil {
		return n, fmt.Errorf("network: bridge %q: %w", n.Bridge, err)
	}
	s := n.Subnet
	switch {
	case !s.Addr().Is4():
		return n, fmt.Errorf("network: subnet %s: not IPv4", s)
	case s != s.Masked():
		return n, fmt.Errorf("network: subnet %s: host bits set (the network is %s)", s, s.Masked())
	case s.Bits() > 30:
		// A /31 or /32 has no room for a gateway and a sandbox.
		return n, fmt.Errorf("network: subnet %s: too small, need at least a /30", s)
	}
	network, broadcast := s.Addr(), lastAddr(s)
	if !n.Gateway.IsValid() {
		n.Gateway = network.Next()
	}
	switch g := n.Gateway; {
	case !g.Is4():
		return n, fmt.Errorf("network: gateway %s: not IPv4", g)
	case !s.Contains(g):
		return n, fmt.Errorf("network: gateway %s: not in subnet %s", g, s)
	case g == network || g == broadcast:
		return n, fmt.Errorf("network: gateway %s: is the network or broadcast address of %s", g, s)
	}
	// 68 is the smallest MTU IPv4 allows; 65535 the largest a veth or bridge
	// accepts.
	if n.MTU < 68 || n.MTU > 65535 {
		return n, fmt.Errorf("network: mtu %d: out of range 68..65535", n.MTU)
	}
	if !filepath.IsAbs(n.StateRoot) {
		return n, fmt.Errorf("network: state root %q: not an absolute path", n.StateRoot)
	}
	if n.NodeNetNS != "" && !filepath.IsAbs(n.NodeNetNS) {
		return n, fmt.Errorf("network: node netns %q: not an absolute path", n.NodeNetNS)
	}
	return n, nil
}

// GatewayPrefix is the gateway with the subnet's prefix length: the address
// the bridge holds. Call it on a resolved Network.
func (n Network) GatewayPrefix() netip.Prefix {
	return netip.PrefixFrom(n.Gateway, n.Subnet.Bits())
}

// leaseDir is where the subnet's leases live.
func (n Network) leaseDir() string {
	return filepath.Join(n.StateRoot, "ipam", n.Bridge)
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// maxIfName is IFNAMSIZ less the terminating NUL.
const maxIfName = 15

// validIfName applies the kernel's rules for interface names (dev_valid_name).
func validIfName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty interface name")
	case len(name) > maxIfName:
		return fmt.Errorf("interface name longer than %d bytes", maxIfName)
	case name == "." || name == "..":
		return fmt.Errorf("invalid interface name")
	case strings.ContainsAny(name, "/: \t\n\v\f\r\x00"):
		return fmt.Errorf("interface name contains '/', ':', NUL or white space")
	}
	return nil
}

// maxSandboxID keeps "podbox:"+ID within the kernel's 256-byte interface
// alias, which records the owner of each host veth.
const maxSandboxID = 240

func validSandbox(sandboxID, netnsPath string) error {
	switch {
	case sandboxID == "":
		return fmt.Errorf("sandbox: empty ID")
	case len(sandboxID) > maxSandboxID:
		return fmt.Errorf("sandbox %q: ID longer than %d bytes", sandboxID, maxSandboxID)
	case strings.ContainsAny(sandboxID, "/\x00\n"):
		return fmt.Errorf("sandbox %q: ID contains '/', NUL or newline", sandboxID)
	case !filepath.IsAbs(netnsPath):
		return fmt.Errorf("sandbox %q: netns %q: not an absolute path", sandboxID, netnsPath)
	}
	return nil
}

// hostVethPrefix marks podbox's host-side veths in `ip link` output.
const hostVethPrefix = "pbx"

// HostVethName is the name of the node end of sandboxID's veth pair: "pbx"
// and the first 12 hex digits of the ID's SHA-256, 15 bytes, the most an
// interface name may have. Deriving it from the ID (rather than choosing it at
// random, as CNI does) lets Teardown find the veth from the ID alone, even
// after a crash lost every record of it. 48 bits make a collision among a
// node's sandboxes vanishingly unlikely, and one is detected anyway: each host
// veth carries its owner's ID as its interface alias.
func HostVethName(sandboxID string) string {
	sum := sha256.Sum256([]byte(sandboxID))
	return hostVethPrefix + hex.EncodeToString(sum[:6])
}

// vethAlias is the interface alias of sandboxID's host veth; it names the
// owner so that a name collision is an error, not a stolen interface.
func vethAlias(sandboxID string) string {
	return "podbox:" + sandboxID
}
