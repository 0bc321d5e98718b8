package netsetup

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// linkAddrs lists the addresses of family (unix.AF_INET or AF_INET6) on the
// link with index idx, in the namespace pinned at nsPath ("" = the
// caller's).
//
// netlink.Handle.AddrList asks the kernel for every address of every link
// and keeps the link's own; a node has a veth per sandbox, so each create
// walked them all. On a socket with strict checking a dump request may name
// the link, and the kernel (5.0 and later) then dumps that link alone. An
// older kernel ignores the index and dumps everything; the filter here still
// applies.
func linkAddrs(nsPath string, idx, family int) ([]netip.Prefix, error) {
	s, err := routeSocketAt(nsPath)
	if err != nil {
		return nil, fmt.Errorf("link %d: addresses: %w", idx, err)
	}
	defer s.Close()
	if err := unix.SetsockoptInt(s.GetFd(), unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 1); err != nil {
		return nil, fmt.Errorf("link %d: addresses: netlink strict check: %w", idx, err)
	}
	req := &nl.NetlinkRequest{
		NlMsghdr: unix.NlMsghdr{Len: unix.SizeofNlMsghdr, Type: unix.RTM_GETADDR, Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP},
		Sockets:  map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: s}},
	}
	msg := nl.NewIfAddrmsg(family)
	msg.Index = uint32(idx)
	req.AddData(msg)
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWADDR)
	if err != nil && !errors.Is(err, nl.ErrDumpInterrupted) {
		return nil, fmt.Errorf("link %d: addresses: %w", idx, err)
	}
	var ps []netip.Prefix
	for _, m := range msgs {
		h := nl.DeserializeIfAddrmsg(m)
		if int(h.Index) != idx || int(h.Family) != family {
			continue
		}
		attrs, err := nl.ParseRouteAttr(m[h.Len():])
		if err != nil {
			return nil, fmt.Errorf("link %d: addresses: %w", idx, err)
		}
		// IFA_LOCAL is the address itself; IFA_ADDRESS is the same, or
		// the peer's on a point-to-point link, and the only one for IPv6.
		var local, addr []byte
		for _, a := range attrs {
			switch a.Attr.Type {
			case unix.IFA_LOCAL:
				local = a.Value
			case unix.IFA_ADDRESS:
				addr = a.Value
			}
		}
		if local == nil {
			local = addr
		}
		if a, ok := netip.AddrFromSlice(local); ok {
			ps = append(ps, netip.PrefixFrom(a.Unmap(), int(h.Prefixlen)))
		}
	}
	return ps, nil
}

// routeSocketAt opens a plain rtnetlink socket in the network namespace
// pinned at nsPath, or in the caller's if nsPath is empty: for the requests
// netlink.Handle does not offer.
func routeSocketAt(nsPath string) (*nl.NetlinkSocket, error) {
	ns := netns.None()
	if nsPath != "" {
		h, err := OpenNetNS(nsPath)
		if err != nil {
			return nil, err
		}
		defer h.Close()
		ns = h
	}
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	return s, nil
}
