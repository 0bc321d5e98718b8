package netsetup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/internal/faultpoint"
	"github.com/podbox/podbox/netsetup/ipam"
)

// SandboxIfName is the name of the sandbox's end of its veth pair.
const SandboxIfName = "eth0"

// loopbackIndex is lo's interface index, the same (1) in every network
// namespace; using it saves looking lo up.
const loopbackIndex = 1

// Setup attaches the sandbox sandboxID, whose network namespace is (or, if
// missing, is created and pinned) at netnsPath, to n: it ensures the bridge,
// leases an address, creates the veth pair with its host end on the bridge and
// its other end as eth0 inside the sandbox, and gives eth0 the address and a
// default route via the gateway; lo is brought up.
//
// Running Setup again for an attached sandbox is harmless and returns the same
// attachment. On any error Setup undoes what this call did (namespace pin,
// lease, veth), so a failed Setup leaves nothing behind; the bridge, shared by
// every sandbox of the node, stays.
func (n Network) Setup(ctx context.Context, sandboxID, netnsPath string) (_ *Attachment, retErr error) {
	n, err := n.Resolve()
	if err != nil {
		return nil, err
	}
	if err := validSandbox(sandboxID, netnsPath); err != nil {
		return nil, err
	}
	wrap := func(err error) error { return fmt.Errorf("sandbox %q: %w", sandboxID, err) }
	if err := ctx.Err(); err != nil {
		return nil, wrap(err)
	}

	// The lease needs nothing of the namespaces: it is taken meanwhile the
	// sandbox's namespace is made and the bridge checked, a few hundred
	// microseconds each, which a caller with more than one P gets back.
	leasec := make(chan leaseResult, 1)
	go func() {
		// ipam's errors name the pool's subnet and the owner.
		pool, err := ipam.Open(n.leaseDir(), n.Subnet, n.Gateway)
		if err != nil {
			leasec <- leaseResult{err: err}
			return
		}
		ip, fresh, err := pool.Acquire(sandboxID)
		leasec <- leaseResult{pool, ip, fresh, err}
	}()
	lease := sync.OnceValue(func() leaseResult { return <-leasec })

	// Undo steps, run last to first if Setup fails.
	var undo []func() error
	defer func() {
		if retErr == nil {
			return
		}
		for i := len(undo) - 1; i >= 0; i-- {
			if err := undo[i](); err != nil {
				retErr = errors.Join(retErr, wrap(fmt.Errorf("undo after failed setup: %w", err)))
			}
		}
	}()
	// Only a lease this Setup took is its to free: one an earlier Setup
	// took may be on eth0 already, and a failure now must not free it for
	// another sandbox.
	undo = append(undo, func() error {
		if l := lease(); l.err == nil && l.fresh {
			return l.pool.Release(sandboxID)
		}
		return nil
	})

	// One handle per namespace for the whole setup. The node's is opened
	// before the undo steps that use it, and closed after them (deferred
	// calls run last to first): the netlink package quietly sends a closed
	// Handle's requests to the caller's own namespace, where an undo could
	// hit the machine's links.
	node, err := openHandle(n.NodeNetNS)
	if err != nil {
		return nil, wrap(err)
	}
	defer node.Close()

	created, err := createNetNS(netnsPath)
	if err != nil {
		return nil, wrap(err)
	}
	if created {
		undo = append(undo, func() error { return RemoveNetNS(netnsPath) })
	}

	sbNS, err := OpenNetNS(netnsPath)
	if err != nil {
		return nil, wrap(err)
	}
	defer sbNS.Close()
	sb, err := netlink.NewHandleAt(sbNS, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, wrap(fmt.Errorf("netns %q: netlink handle: %w", netnsPath, err))
	}
	defer sb.Close()

	br, bridgeCreated, err := n.ensureBridge(node)
	if err != nil {
		return nil, wrap(err)
	}
	if err := ctx.Err(); err != nil {
		return nil, wrap(err)
	}

	l := lease()
	if l.err != nil {
		return nil, wrap(l.err)
	}
	ip := l.ip
	faultpoint.Point("net.lease")

	v := vethPair{
		sandboxID: sandboxID,
		host:      HostVethName(sandboxID),
		netnsPath: netnsPath,
		sbNS:      sbNS,
		mac:       macFromIPv4(ip),
	}
	eth0, attachedBefore, err := n.ensureVeth(node, sb, br, v)
	if err != nil {
		return nil, wrap(err)
	}
	if !attachedBefore {
		undo = append(undo, func() error { return deleteVeth(node, v.host, sandboxID) })
	}
	faultpoint.Point("net.veth")
	if err := ctx.Err(); err != nil {
		return nil, wrap(err)
	}

	addr := netip.PrefixFrom(ip, n.Subnet.Bits())
	if err := n.configureSandbox(sb, eth0, addr); err != nil {
		return nil, wrap(fmt.Errorf("netns %q: %w", netnsPath, err))
	}
	return &Attachment{
		SandboxID: sandboxID,
		NetNSPath: netnsPath,
		Bridge:    n.Bridge,
		HostVeth:  v.host,
		Address:   addr,
		Gateway:   n.Gateway,
		MAC:       eth0.Attrs().HardwareAddr.String(),

		BridgeCreated: bridgeCreated,
	}, nil
}

// Teardown detaches the sandbox: it unpins the namespace, makes sure the
// veth pair is gone or going, and releases the lease. Each step accepts that
// its object is already gone, so Teardown is idempotent and finishes a
// half-built or half-removed sandbox; a step that fails stops the teardown
// before the next, and running Teardown again resumes.
//
// The veth pair is normally not deleted here: deleting a link waits for RCU
// under the rtnl lock, 20–30 ms a veth. Once the sandbox's processes are gone
// and the pin is removed, nothing references its namespace any more, and the
// kernel destroys it, with both ends of the pair, in its cleanup workqueue a
// few milliseconds later. Teardown checks that this is so (see
// Network.detachVeth); if the namespace is still referenced (a process still
// inside, a copy of the pin in another mount namespace) or the check cannot
// tell, the veth is deleted here, synchronously.
//
// The lease is released once the pair is gone or doomed. Its address may live
// on for those milliseconds on the dying namespace's eth0, where nothing can
// use it any more; no other sandbox gets it meanwhile, because the pool
// rotates: an address just released is the last one Lease hands out again
// (see ipam.Pool.Lease).
func (n Network) Teardown(ctx context.Context, sandboxID, netnsPath string) error {
	n, err := n.Resolve()
	if err != nil {
		return err
	}
	if err := validSandbox(sandboxID, netnsPath); err != nil {
		return err
	}
	wrap := func(err error) error { return fmt.Errorf("sandbox %q: %w", sandboxID, err) }
	if err := ctx.Err(); err != nil {
		return wrap(err)
	}

	node, err := openHandle(n.NodeNetNS)
	if err != nil {
		return wrap(err)
	}
	defer node.Close()
	if err := n.detachVeth(node, HostVethName(sandboxID), sandboxID, netnsPath); err != nil {
		return wrap(err)
	}

	// The pool as persisted, whatever n says now: a lease taken before the
	// network's configuration changed must still be released. No pool, no
	// lease.
	pool, err := ipam.OpenExisting(n.leaseDir())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return wrap(err)
	}
	if pool != nil {
		if err := pool.Release(sandboxID); err != nil {
			return wrap(err)
		}
	}
	return nil
}

// releaseGrace bounds how long detachVeth waits for the last references to
// a namespace to go after its pin did: a netlink socket used in it lets go
// one RCU grace period after it was closed, a few milliseconds. A namespace
// still held after that is held for real, and its veth is deleted.
const releaseGrace = 30 * time.Millisecond

// detachVeth removes the namespace pin at netnsPath and makes sure that
// sandboxID's host veth called name is then gone or being destroyed by the
// kernel together with its peer's namespace, deleting it itself otherwise. A
// veth already gone, or another sandbox's, is left alone.
//
// The host end names its peer's namespace by an ID of the node namespace
// (IFLA_LINK_NETNSID), which the kernel assigns while that namespace lives;
// it is read before the pin goes. Afterwards the node resolves the ID only if
// the namespace still holds a reference: once the last one is dropped, the
// namespace can never be entered again and the kernel's cleanup deletes its
// links (and unhashes the ID), so a lookup failing with ENOENT proves the
// pair doomed. Every other outcome (the namespace lives on, no ID, the check
// failed) deletes the veth now, which is always correct, only slower.
func (n Network) detachVeth(node *netlink.Handle, name, sandboxID, netnsPath string) error {
	l, err := node.LinkByName(name)
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("veth %q: look up: %w", name, err)
	}
	peerNS := int32(-1)
	if l != nil {
		if _, ok := l.(*netlink.Veth); !ok || !ownedBy(l, sandboxID) {
			l = nil
		} else {
			// The netlink package reads the signed attribute as unsigned:
			// an unassigned ID (-1) comes back as 2³²-1.
			peerNS = int32(uint32(l.Attrs().NetNsID))
		}
	}
	if err := RemoveNetNS(netnsPath); err != nil {
		return err
	}
	if l == nil {
		return nil
	}
	if peerNS >= 0 {
		released, err := netNSReleased(n.NodeNetNS, int(peerNS), releaseGrace)
		if err == nil && released {
			return nil
		}
	}
	return deleteVeth(node, name, sandboxID)
}

// SetupLoopbackOnly prepares the namespace of a sandbox without a network
// (`--network none`): it creates and pins the namespace at netnsPath if
// missing and brings lo up, nothing else. On error a namespace it created is
// removed again. RemoveNetNS undoes it.
func SetupLoopbackOnly(ctx context.Context, netnsPath string) (retErr error) {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("netns %q: %w", netnsPath, err)
	}
	if !filepath.IsAbs(netnsPath) {
		return fmt.Errorf("netns %q: not an absolute path", netnsPath)
	}
	created, err := createNetNS(netnsPath)
	if err != nil {
		return err
	}
	if created {
		defer func() {
			if retErr != nil {
				if err := RemoveNetNS(netnsPath); err != nil {
					retErr = errors.Join(retErr, err)
				}
			}
		}()
	}
	h, err := openHandle(netnsPath)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := setLoopbackUp(h); err != nil {
		return fmt.Errorf("netns %q: %w", netnsPath, err)
	}
	return nil
}

// leaseResult is the lease Setup takes alongside its other steps.
type leaseResult struct {
	pool  *ipam.Pool
	ip    netip.Addr
	fresh bool // taken by this Setup
	err   error
}

// vethPair names one sandbox's veth pair.
type vethPair struct {
	sandboxID string
	host      string // node end
	netnsPath string
	sbNS      netns.NsHandle
	mac       net.HardwareAddr // of eth0
}

// ensureVeth creates v, its host end up on br with hairpin on and its peer
// created directly in the sandbox as eth0, and returns eth0. If the pair
// already joins this sandbox to the node (an earlier Setup), it is completed
// and reused, and attachedBefore is true. If ensureVeth fails after creating
// the pair, it deletes it again.
func (n Network) ensureVeth(node, sb *netlink.Handle, br *netlink.Bridge, v vethPair) (eth0 netlink.Link, attachedBefore bool, err error) {
	attrs := netlink.NewLinkAttrs() // TxQLen -1: see bridgeLink
	attrs.Name = v.host
	attrs.MTU = n.MTU
	attrs.Flags = net.FlagUp
	veth := &netlink.Veth{
		LinkAttrs: attrs,
		PeerName:  SandboxIfName,
		// Zero would send txqueuelen 0 for the peer; -1 leaves it to the
		// kernel, as for the host end.
		PeerTxQLen:       -1,
		PeerHardwareAddr: v.mac,
		// Created in the sandbox namespace from the start: "eth0" never
		// exists in the node, so concurrent setups cannot clash on it, and
		// no second round trip moves it.
		PeerNamespace: netlink.NsFd(int(v.sbNS)),
	}
	err = node.LinkAdd(veth)
	if errors.Is(err, unix.EEXIST) {
		var ours bool
		eth0, ours, err = n.existingVeth(node, sb, br, v, err)
		if ours || err != nil {
			return eth0, ours, err
		}
		// A stale pair of this sandbox's was deleted: create afresh.
		veth.Index = 0
		err = node.LinkAdd(veth)
	}
	if err != nil {
		return nil, false, fmt.Errorf("veth %q: create with peer %s in netns %q: %w", v.host, SandboxIfName, v.netnsPath, err)
	}

	// Before eth0 is up: until then the pair has no carrier, and the host
	// end has sent nothing (see ipv6.go).
	err = quietIPv6(node, veth)
	if err == nil {
		eth0, err = n.joinBridge(node, sb, br, veth, v)
	}
	if err != nil {
		if derr := deleteVeth(node, v.host, v.sandboxID); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, false, err
	}
	return eth0, false, nil
}

// existingVeth handles a create that failed with EEXIST (cause). If the host
// veth exists and its peer is this sandbox's eth0, the pair is an earlier
// Setup's: it is completed and returned, and ours is true (even if completing
// it fails: the pair and its address stay in use). If the veth is this
// sandbox's but its peer lives elsewhere (a namespace from an earlier life of
// the sandbox), it is deleted, and neither ours nor err is set: create it
// again. Anything else is an error.
func (n Network) existingVeth(node, sb *netlink.Handle, br *netlink.Bridge, v vethPair, cause error) (eth0 netlink.Link, ours bool, err error) {
	host, err := node.LinkByName(v.host)
	if isNotFound(err) {
		// The host name is free, so the clash is the peer's name.
		return nil, false, fmt.Errorf("netns %q: %s: %w", v.netnsPath, SandboxIfName, cause)
	}
	if err != nil {
		return nil, false, fmt.Errorf("veth %q: look up: %w", v.host, err)
	}
	if _, ok := host.(*netlink.Veth); !ok || !ownedBy(host, v.sandboxID) {
		return nil, false, fmt.Errorf("veth %q: a %s link of that name exists with alias %q, not sandbox %q's",
			v.host, host.Type(), host.Attrs().Alias, v.sandboxID)
	}
	nsid, err := node.GetNetNsIdByFd(int(v.sbNS))
	if err != nil {
		return nil, false, fmt.Errorf("netns %q: namespace id: %w", v.netnsPath, err)
	}
	eth0, err = sb.LinkByName(SandboxIfName)
	if err != nil && !isNotFound(err) {
		return nil, false, fmt.Errorf("netns %q: look up %s: %w", v.netnsPath, SandboxIfName, err)
	}
	a := host.Attrs()
	if eth0 == nil || nsid < 0 || a.NetNsID != nsid || a.ParentIndex != eth0.Attrs().Index {
		return nil, false, deleteVeth(node, v.host, v.sandboxID)
	}
	eth0, err = n.joinBridge(node, sb, br, host, v)
	return eth0, true, err
}

// joinBridge makes the host end a hairpin port of br, up, and returns the
// sandbox end.
func (n Network) joinBridge(node, sb *netlink.Handle, br *netlink.Bridge, host netlink.Link, v vethPair) (netlink.Link, error) {
	a := host.Attrs()
	// The alias names the owner, so that Teardown never deletes another
	// sandbox's veth under a colliding name. The kernel ignores an alias in
	// the create request, hence this separate step.
	if a.Alias != vethAlias(v.sandboxID) {
		if err := node.LinkSetAlias(host, vethAlias(v.sandboxID)); err != nil {
			return nil, fmt.Errorf("veth %q: set alias: %w", v.host, err)
		}
	}
	if a.MasterIndex != br.Index {
		if err := node.LinkSetMasterByIndex(host, br.Index); err != nil {
			if errors.Is(err, unix.EXFULL) {
				// The kernel's "exchange full" says nothing to a user.
				err = fmt.Errorf("the bridge has no free port (a Linux bridge holds at most %d, so a node at most %d bridged sandboxes): %w", maxBridgePorts, maxBridgePorts, err)
			}
			return nil, fmt.Errorf("veth %q: attach to bridge %q: %w", v.host, n.Bridge, err)
		}
	}
	// Hairpin lets a frame leave by the port it came in on, so that a pod
	// can reach itself through an address that is translated back to it
	// (a Kubernetes Service whose only endpoint is the pod itself).
	if err := node.LinkSetHairpin(host, true); err != nil {
		return nil, fmt.Errorf("veth %q: set hairpin: %w", v.host, err)
	}
	if a.Flags&net.FlagUp == 0 {
		if err := node.LinkSetUp(host); err != nil {
			return nil, fmt.Errorf("veth %q: set up: %w", v.host, err)
		}
	}
	eth0, err := sb.LinkByName(SandboxIfName)
	if err != nil {
		return nil, fmt.Errorf("netns %q: look up %s: %w", v.netnsPath, SandboxIfName, err)
	}
	return eth0, nil
}

// maxBridgePorts is the kernel's limit of ports per bridge (BR_MAX_PORTS,
// port numbers 1 to 1023).
const maxBridgePorts = 1023

// configureSandbox brings lo and eth0 up, gives eth0 its address and routes
// everything else via the gateway.
func (n Network) configureSandbox(sb *netlink.Handle, eth0 netlink.Link, addr netip.Prefix) error {
	if err := setLoopbackUp(sb); err != nil {
		return err
	}
	// Up before the address: IPv4 installs the subnet route only on an up
	// link, and the default route below needs it to reach the gateway.
	if eth0.Attrs().Flags&net.FlagUp == 0 {
		if err := quietIPv6(sb, eth0); err != nil {
			return err
		}
		if err := sb.LinkSetUp(eth0); err != nil {
			return fmt.Errorf("%s: set up: %w", SandboxIfName, err)
		}
	}
	err := sb.AddrAdd(eth0, &netlink.Addr{IPNet: ipNet(addr)})
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%s: add address %s: %w", SandboxIfName, addr, err)
	}
	// Replace, not add: idempotent, and it corrects a default route left
	// pointing elsewhere.
	def := &netlink.Route{
		LinkIndex: eth0.Attrs().Index,
		Gw:        net.IP(n.Gateway.AsSlice()),
	}
	if err := sb.RouteReplace(def); err != nil {
		return fmt.Errorf("%s: default route via %s: %w", SandboxIfName, n.Gateway, err)
	}
	return nil
}

func setLoopbackUp(h *netlink.Handle) error {
	lo := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: loopbackIndex, Name: "lo"}}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("lo: set up: %w", err)
	}
	return nil
}

// ownedBy reports whether the host veth l belongs to sandboxID. A veth
// without an alias counts as its: the alias is set just after creation, and a
// crash in between must not leave an orphan Teardown refuses to remove.
func ownedBy(l netlink.Link, sandboxID string) bool {
	a := l.Attrs().Alias
	return a == "" || a == vethAlias(sandboxID)
}

// deleteVeth deletes sandboxID's host veth named name, and with it its peer.
// It finds the veth by name and checks its owner before deleting by index,
// never trusting an index alone: an index means nothing in another
// namespace, and a mistaken handle must find nothing to delete rather than
// delete whatever holds that index there. A veth already gone, or another
// sandbox's, is left alone and is success.
func deleteVeth(h *netlink.Handle, name, sandboxID string) error {
	l, err := h.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("veth %q: look up: %w", name, err)
	}
	if _, ok := l.(*netlink.Veth); !ok || !ownedBy(l, sandboxID) {
		return nil
	}
	if err := h.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("veth %q: delete: %w", name, err)
	}
	return nil
}
