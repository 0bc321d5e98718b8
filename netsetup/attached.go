package netsetup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/podbox/podbox/netsetup/ipam"
)

// ErrNotAttached says that Attached found a sandbox not (or not wholly)
// attached: Setup is what completes it.
var ErrNotAttached = errors.New("not attached")

// Attached returns the attachment an earlier Setup made for sandboxID in
// the namespace pinned at netnsPath, checking only what a few lookups can:
// the pin, the lease, and a host veth of the sandbox's, up, on the bridge.
// It changes nothing. It is the cheap way to take over a network that a
// Setup known to have succeeded built (a network prepared by the client
// before the sandbox's create); anything missing is an error wrapping
// ErrNotAttached, and Setup, which checks and completes every piece, is
// then the way.
func (n Network) Attached(ctx context.Context, sandboxID, netnsPath string) (*Attachment, error) {
	n, err := n.Resolve()
	if err != nil {
		return nil, err
	}
	if err := validSandbox(sandboxID, netnsPath); err != nil {
		return nil, err
	}
	notAttached := func(what string) error {
		return fmt.Errorf("sandbox %q: %s: %w", sandboxID, what, ErrNotAttached)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sandbox %q: %w", sandboxID, err)
	}
	if !IsNetNSPin(netnsPath) {
		return nil, notAttached("no namespace pinned at " + netnsPath)
	}
	pool, err := ipam.OpenExisting(n.leaseDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, notAttached("no address pool")
	}
	if err != nil {
		return nil, fmt.Errorf("sandbox %q: %w", sandboxID, err)
	}
	if pool.Subnet() != n.Subnet.Masked() || pool.Gateway() != n.Gateway {
		return nil, notAttached(fmt.Sprintf("the pool is of %s via %s, not %s via %s", pool.Subnet(), pool.Gateway(), n.Subnet.Masked(), n.Gateway))
	}
	ip, ok, err := pool.Lookup(sandboxID)
	if err != nil {
		return nil, fmt.Errorf("sandbox %q: %w", sandboxID, err)
	}
	if !ok {
		return nil, notAttached("no lease")
	}
	node, err := openHandle(n.NodeNetNS)
	if err != nil {
		return nil, fmt.Errorf("sandbox %q: %w", sandboxID, err)
	}
	defer node.Close()
	name := HostVethName(sandboxID)
	l, err := node.LinkByName(name)
	if isNotFound(err) {
		return nil, notAttached("no veth " + name)
	}
	if err != nil {
		return nil, fmt.Errorf("sandbox %q: veth %q: look up: %w", sandboxID, name, err)
	}
	a := l.Attrs()
	if _, veth := l.(*netlink.Veth); !veth || a.Alias != vethAlias(sandboxID) || a.MasterIndex == 0 || a.Flags&net.FlagUp == 0 {
		return nil, notAttached(fmt.Sprintf("veth %q is not the sandbox's, up on a bridge", name))
	}
	return &Attachment{
		SandboxID: sandboxID,
		NetNSPath: netnsPath,
		Bridge:    n.Bridge,
		HostVeth:  name,
		Address:   netip.PrefixFrom(ip, n.Subnet.Bits()),
		Gateway:   n.Gateway,
		MAC:       macFromIPv4(ip).String(),
	}, nil
}
