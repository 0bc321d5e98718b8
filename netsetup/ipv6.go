package netsetup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// The built-in network is IPv4 only, and IPv6 on its veths does harm: each
// new link sends duplicate-address probes, MLD reports and router
// solicitations to multicast groups, which the bridge floods to every port.
// With hundreds of sandboxes on a node every create then costs every other
// sandbox a wake-up, and the cost of a create grows with the node's sandbox
// count (measured: p50 doubled by the 800th sandbox). So IPv6 is switched off
// on both ends of every veth before the pair carries any traffic: on the
// sandbox side through the namespace's default (the namespace is new and
// ours; its lo, made earlier, keeps ::1), on the node side per link, since
// the node's defaults belong to the node's owner.

// disableIPv6Default makes links created in the sandbox namespace at
// netnsPath start with IPv6 disabled. A kernel without IPv6 needs nothing.
func disableIPv6Default(netnsPath string) error {
	err := InNetNS(netnsPath, func() error {
		return writeIPv6Conf("default")
	})
	if err != nil {
		return fmt.Errorf("netns %q: %w", netnsPath, err)
	}
	return nil
}

// disableIPv6 switches IPv6 off on link name in the node namespace.
func (n Network) disableIPv6(name string) error {
	set := func() error { return writeIPv6Conf(name) }
	if n.NodeNetNS == "" {
		return set()
	}
	if err := InNetNS(n.NodeNetNS, set); err != nil {
		return fmt.Errorf("node netns %q: %w", n.NodeNetNS, err)
	}
	return nil
}

// writeIPv6Conf sets disable_ipv6 of conf (a link name or "default") in the
// calling thread's network namespace: /proc/sys/net shows the namespace of
// the thread that opens it.
func writeIPv6Conf(conf string) error {
	path := "/proc/sys/net/ipv6/conf/" + conf + "/disable_ipv6"
	err := os.WriteFile(path, []byte("1"), 0o644)
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat("/proc/sys/net/ipv6"); errors.Is(serr, fs.ErrNotExist) {
			return nil // no IPv6 in this kernel
		}
	}
	if err != nil {
		return fmt.Errorf("disable IPv6 on %s: %w", conf, err)
	}
	return nil
}
