package netsetup

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Check reports whether sandbox sandboxID is still attached as Setup left
// it: its namespace pinned at netnsPath, its host veth on the bridge and up,
// and addr on its eth0. Each problem found is named; nil means attached.
func (n Network) Check(ctx context.Context, sandboxID, netnsPath string, addr netip.Addr) error {
	n, err := n.Resolve()
	if err != nil {
		return err
	}
	if err := validSandbox(sandboxID, netnsPath); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var problems []error
	node, err := openHandle(n.NodeNetNS)
	if err != nil {
		return err
	}
	defer node.Close()
	veth := HostVethName(sandboxID)
	switch link, err := node.LinkByName(veth); {
	case isNotFound(err):
		problems = append(problems, fmt.Errorf("host veth %s is missing", veth))
	case err != nil:
		problems = append(problems, fmt.Errorf("host veth %s: %w", veth, err))
	default:
		br, err := node.LinkByName(n.Bridge)
		if err != nil {
			problems = append(problems, fmt.Errorf("bridge %s: %w", n.Bridge, err))
		} else if link.Attrs().MasterIndex != br.Attrs().Index {
			problems = append(problems, fmt.Errorf("host veth %s is not on bridge %s", veth, n.Bridge))
		}
		if link.Attrs().Flags&unix.IFF_UP == 0 {
			problems = append(problems, fmt.Errorf("host veth %s is down", veth))
		}
	}
	if !IsNetNSPin(netnsPath) {
		return errors.Join(append(problems, fmt.Errorf("network namespace %s is not pinned", netnsPath))...)
	}
	sbh, err := openHandle(netnsPath)
	if err != nil {
		return errors.Join(append(problems, err)...)
	}
	defer sbh.Close()
	eth0, err := sbh.LinkByName(SandboxIfName)
	if err != nil {
		return errors.Join(append(problems, fmt.Errorf("%s in the sandbox: %w", SandboxIfName, err))...)
	}
	if eth0.Attrs().Flags&unix.IFF_UP == 0 {
		problems = append(problems, fmt.Errorf("%s in the sandbox is down", SandboxIfName))
	}
	if addr.IsValid() {
		addrs, err := linkAddrs(netnsPath, eth0.Attrs().Index, unix.AF_INET)
		if err != nil {
			problems = append(problems, err)
		} else if !hasAddr(addrs, addr) {
			problems = append(problems, fmt.Errorf("%s in the sandbox lacks its address %s (has %v)", SandboxIfName, addr, addrs))
		}
	}
	return errors.Join(problems...)
}

func hasAddr(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Addr() == a {
			return true
		}
	}
	return false
}
