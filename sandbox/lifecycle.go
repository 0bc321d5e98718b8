package sandbox

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/podbox/podbox/internal/faultpoint"
	"github.com/podbox/podbox/netsetup"
	"github.com/podbox/podbox/netsetup/cni"
	"github.com/podbox/podbox/netsetup/nat"
	"github.com/podbox/podbox/netsetup/nodenet"
	"github.com/podbox/podbox/netsetup/resolvconf"
)

// DefaultCgroupParent is the cgroup (in every hierarchy) under which each
// sandbox gets its own cgroup: PARENT/ID/pause and PARENT/ID/CONTAINER.
const DefaultCgroupParent = "podbox"

// Node is what every sandbox under one state root shares.
type Node struct {
	Store Store
	// PauseBinary is the podbox-pause executable copied into the pause root.
	PauseBinary string
	// CgroupParent defaults to DefaultCgroupParent.
	CgroupParent string
	// Network is the built-in bridge network used by NetworkBridge sandboxes.
	// Without a bridge or subnet set, the node's configuration under the
	// root (ROOT/node.json, package nodenet) decides, else the defaults.
	Network netsetup.Network
	// CNIHelper is the podbox-cni executable that runs CNI networks;
	// "" finds it when a sandbox first needs it (cni.FindHelper).
	CNIHelper string
	// Exec runs helper programs to their end; nil is exec.Cmd.Run. A shim
	// passes one that waits through its reaper.
	Exec cni.Exec
}

// Options describe a sandbox to create.
type Options struct {
	ID       string // required; NewID makes one
	Name     string // default: the first 12 digits of ID
	Hostname string // default: Name
	// Network is NetworkBridge (default), NetworkNone, NetworkExternal or
	// "cni:NAME".
	Network string
	// NetNSPath is the namespace made by the caller, for NetworkExternal.
	NetNSPath string
	SharePID  bool
	// Host says which of the node's namespaces the pause stays in instead
	// of making its own: what a pod with hostIPC or hostPID, or on the
	// node's network (which brings the node's UTS namespace), asks of CRI.
	Host   HostNamespaces
	Labels map[string]string
	// Ports are published on the node (networks bridge and external).
	Ports []nat.Mapping
	// DNS overrides the node's resolver settings in the sandbox.
	DNS resolvconf.Config
	// CNIConfDir and CNIBinDirs are where a "cni:NAME" network's list and
	// its plugins are found (default cni.DefaultConfDir, DefaultBinPath).
	CNIConfDir string
	CNIBinDirs []string
	// Resources limit the memory and CPU of the whole sandbox: its cgroup,
	// which holds the pause's and every container's.
	Resources Resources
	// Sysctls are set in the pause's namespaces before the sandbox is
	// ready (see SysctlNamespace for those allowed).
	Sysctls map[string]string
}

func (n Node) cgroupParent() string {
	if n.CgroupParent != "" {
		return strings.Trim(n.CgroupParent, "/")
	}
	return DefaultCgroupParent
}

// SandboxCgroup is the cgroup holding everything of sandbox id.
func (n Node) SandboxCgroup(id string) Cgroup {
	return Cgroup{Path: n.cgroupParent() + "/" + id}
}

// ContainerCgroupsPath is the OCI cgroupsPath of container cid in sandbox sid.
func (n Node) ContainerCgroupsPath(sid, cid string) string {
	return "/" + n.cgroupParent() + "/" + sid + "/" + cid
}

// network is the bridge network with its leases kept under the node's root.
// A node configuration that cannot be read leaves the defaults: Remove needs
// only the bridge's name, and Create checks with nodeNetwork first.
func (n Node) network() netsetup.Network {
	net, _ := n.nodeNetwork()
	return net
}

// nodeNetwork is the bridge network sandboxes of this node attach to: the
// one Network sets, else the one `podbox node init` configured under the
// root (the node's pod CIDR on its bridge), else the defaults.
func (n Node) nodeNetwork() (netsetup.Network, error) {
	net := n.Network
	if net.StateRoot == "" {
		net.StateRoot = n.Store.Root
	}
	if net.Bridge != "" || net.Subnet.IsValid() {
		return net, nil
	}
	c, err := nodenet.Load(n.Store.Root)
	if errors.Is(err, nodenet.ErrNotConfigured) {
		return net, nil
	}
	if err != nil {
		return net, err
	}
	cn := c.Network(net.StateRoot)
	cn.NodeNetNS = net.NodeNetNS
	return cn, nil
}

// portRules are the published ports of net's node, on bridge; the lock
// beside the state root keeps two creates from publishing one port.
func (n Node) portRules(net netsetup.Network, bridge string) nat.Rules {
	subnet := net.Subnet
	if !subnet.IsValid() {
		subnet = netsetup.DefaultSubnet
	}
	return nat.Rules{NodeNetNS: net.NodeNetNS, Bridge: bridge, Subnet: subnet, Lock: n.portsLock()}
}

// egress says what traffic from the pod network leaves masqueraded: to
// outside the cluster CIDR of `node init` if it allows it, else to outside
// the pod subnet.
func (n Node) egress(subnet netip.Prefix) (cluster netip.Prefix, on bool) {
	c, err := nodenet.Load(n.Store.Root)
	if err != nil {
		return subnet, true
	}
	return c.ClusterCIDR, !c.NoMasquerade
}

// PortRules are the published ports of the node's bridge network.
func (n Node) PortRules() (nat.Rules, error) {
	net, err := n.nodeNetwork()
	if err != nil {
		return nat.Rules{}, err
	}
	bridge := net.Bridge
	if bridge == "" {
		bridge = netsetup.DefaultBridge
	}
	return n.portRules(net, bridge), nil
}

// NetNSPin is where the network namespace of sandbox id is pinned when the
// sandbox owns it (networks bridge and none): ROOT/netns/ID, beside rather
// than inside the sandbox's directory, so that it can be made before the
// sandbox's record exists (PrepareNetNS).
func (n Node) NetNSPin(id string) string { return filepath.Join(n.Store.Root, "netns", id) }

// ownPin is the pin of sb's own network namespace: the path its record
// names (older versions of podbox pinned it inside the sandbox's directory),
// else NetNSPin.
func (n Node) ownPin(sb *Sandbox) string {
	if sb.NetNSPath != "" {
		return sb.NetNSPath
	}
	return n.NetNSPin(sb.ID)
}

// PrepareNetNS makes the network namespace of sandbox id, which Create
// (networks bridge and none) finds at NetNSPin and adopts instead of making
// one. A caller that starts the sandbox's shim runs it while the shim
// starts, which takes the namespace's creation off the way to a ready
// sandbox. If the sandbox is then not created, DiscardNetNS removes it.
func (n Node) PrepareNetNS(id string) error {
	if err := checkPinID(id); err != nil {
		return err
	}
	return netsetup.CreateNetNS(n.NetNSPin(id))
}

// checkPinID rejects an ID that would put a pin outside ROOT/netns.
func checkPinID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") {
		return fmt.Errorf("sandbox ID %q is invalid", id)
	}
	return nil
}

// DiscardNetNS removes the namespace PrepareNetNS made for sandbox id,
// unless a sandbox id exists after all: its namespace is then its own, and
// Remove's to remove. Nothing to remove is success.
func (n Node) DiscardNetNS(id string) error {
	if err := checkPinID(id); err != nil {
		return err
	}
	if _, err := n.Store.LoadSandbox(id); !errors.Is(err, ErrNotFound) {
		if err == nil {
			return nil
		}
		return fmt.Errorf("sandbox %q: discard prepared netns: %w", id, err)
	}
	return netsetup.RemoveNetNS(n.NetNSPin(id))
}

// Create builds a ready sandbox: its record (reserving the name), network
// namespace and network, hosts files, cgroup, and pause process. The caller
// must reap the pause (its PID is in the record): it is the caller's child.
//
// On error everything Create did is undone and the name is free again.
func (n Node) Create(ctx context.Context, o Options) (_ *Sandbox, retErr error) {
	var err error
	if o.ID == "" {
		return nil, errors.New("sandbox: create: empty ID")
	}
	if o.Name == "" {
		o.Name = o.ID[:min(12, len(o.ID))]
	}
	if o.Host.UTS {
		// The node's own, which the pause leaves as it is.
		if o.Hostname, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("sandbox %q: create: %w", o.Name, err)
		}
	}
	if o.Hostname == "" {
		o.Hostname = o.Name
	}
	if o.Network == "" {
		o.Network = NetworkBridge
	}
	wrap := func(err error) error { return fmt.Errorf("sandbox %q: create: %w", o.Name, err) }
	if err := ValidName("sandbox", o.Name); err != nil {
		return nil, err
	}
	if len(o.Hostname) > 63 || strings.ContainsAny(o.Hostname, "/ \t\n") {
		return nil, wrap(fmt.Errorf("hostname %q is invalid", o.Hostname))
	}
	cniNet, isCNI, err := cni.ParseNetwork(o.Network)
	if err != nil {
		return nil, wrap(err)
	}
	switch {
	case o.Network == NetworkBridge || o.Network == NetworkNone || isCNI:
		o.NetNSPath = n.NetNSPin(o.ID)
	case o.Network == NetworkExternal:
		if !filepath.IsAbs(o.NetNSPath) {
			return nil, wrap(fmt.Errorf("external network needs an absolute netns path, got %q", o.NetNSPath))
		}
	default:
		return nil, wrap(fmt.Errorf("unknown network mode %q (want %s, %s or %sNAME)", o.Network, NetworkBridge, NetworkNone, cni.NetworkPrefix))
	}
	if len(o.Ports) > 0 && o.Network == NetworkNone {
		return nil, wrap(fmt.Errorf("published ports need network %s, %s or a CNI network, not %s", NetworkBridge, NetworkExternal, o.Network))
	}
	if err := o.DNS.Validate(); err != nil {
		return nil, wrap(err)
	}
	if err := o.Resources.Validate(); err != nil {
		return nil, wrap(err)
	}
	if err := validateSysctls(o); err != nil {
		return nil, wrap(err)
	}

	sb := &Sandbox{
		ID: o.ID, Name: o.Name, Hostname: o.Hostname, Network: o.Network, SharePID: o.SharePID, Host: o.Host,
		Labels: maps.Clone(o.Labels), Ports: slices.Clone(o.Ports), State: StateCreating, NetNSPath: o.NetNSPath,
		CgroupParent: n.cgroupParent(), ShimPID: os.Getpid(), CreatedAt: time.Now().UTC(),
		Containers: []string{},
	}
	if !o.DNS.IsZero() {
		dns := o.DNS
		sb.DNS = &dns
	}
	if isCNI {
		sb.CNI = n.cniAttachment(sb.ID, cniNet, o)
	}
	if !o.Resources.IsZero() {
		r := o.Resources
		sb.Resources = &r
	}
	if len(o.Sysctls) > 0 {
		sb.Sysctls = maps.Clone(o.Sysctls)
	}
	if err := n.Store.CreateSandboxRecord(sb); err != nil {
		return nil, err
	}
	faultpoint.Point("create.record")
	defer func() {
		if retErr != nil {
			if err := n.Remove(context.WithoutCancel(ctx), sb, nil); err != nil {
				retErr = errors.Join(retErr, fmt.Errorf("undo: %w", err))
			}
		}
	}()

	// Three parts, concurrent where they can be: the pause's cgroup (in
	// every hierarchy) meanwhile the namespace is made; then, once the
	// namespace exists, the network (netlink round trips and the lease)
	// meanwhile the pause starts. One after the other they made up most of
	// a create.
	cg := make(chan cgroupResult, 1)
	go func() { cg <- n.createPauseCgroup(sb) }()
	if o.Network != NetworkExternal {
		// A namespace PrepareNetNS made is adopted as it is.
		err = netsetup.CreateNetNS(sb.NetNSPath)
	}
	if err != nil {
		<-cg // Remove, in the undo, finds the cgroup complete or absent
		return nil, wrap(err)
	}
	faultpoint.Point("create.netns")
	netErr := make(chan error, 1)
	go func() { netErr <- n.setupNetwork(ctx, sb) }()
	err = n.startPause(sb, <-cg)
	faultpoint.Point("create.pause")
	if err := errors.Join(<-netErr, err); err != nil {
		return nil, wrap(err)
	}
	// Once the network is up (a sysctl may name its interface), before
	// the sandbox is ready and any container joins it.
	if len(sb.Sysctls) > 0 {
		if err := applySysctls(sb); err != nil {
			return nil, wrap(err)
		}
	}
	// A pause that died meanwhile (killed, out of memory) would make
	// the sandbox notready the moment it is reported ready.
	if !Alive(sb.PausePID, sb.PauseStart) {
		return nil, wrap(fmt.Errorf("pause %d exited before the sandbox was ready", sb.PausePID))
	}
	sb.State = StateReady
	if err := n.Store.SaveSandbox(sb); err != nil {
		return nil, wrap(err)
	}
	faultpoint.Point("create.ready")
	return sb, nil
}

// setupNetwork attaches sb's namespace to its network and writes the hosts
// files, which name its address. It sets only sb's network fields, so it may
// run alongside startPause.
func (n Node) setupNetwork(ctx context.Context, sb *Sandbox) error {
	switch sb.Network {
	case NetworkBridge:
		net, err := n.nodeNetwork()
		if err != nil {
			return err
		}
		att, err := net.Setup(ctx, sb.ID, sb.NetNSPath)
		if err != nil {
			return err
		}
		sb.IP, sb.Gateway = att.Address.Addr().String(), att.Gateway.String()
		sb.Bridge, sb.HostVeth = att.Bridge, att.HostVeth
		rules := n.portRules(net, att.Bridge)
		if att.BridgeCreated {
			// The node's first sandbox (or the first since the bridge
			// went): the node-wide egress rule goes with the bridge.
			cluster, on := n.egress(att.Address.Masked())
			if err := rules.Egress(cluster, on); err != nil {
				return err
			}
		}
		if err := rules.Add(sb.ID, att.Address.Addr(), sb.Ports); err != nil {
			return err
		}
		faultpoint.Point("create.ports")
	case NetworkNone:
		if err := netsetup.SetupLoopbackOnly(ctx, sb.NetNSPath); err != nil {
			return err
		}
	case NetworkExternal:
		if err := n.publishExternal(sb); err != nil {
			return err
		}
	default:
		if sb.CNI != nil {
			if err := n.setupCNI(ctx, sb); err != nil {
				return err
			}
		}
	}
	return n.writeEtcFiles(sb)
}

// cgroupResult is the pause's cgroup, made in the hierarchies hs.
type cgroupResult struct {
	cg  Cgroup
	hs  []hierarchy
	err error
}

// createPauseCgroup makes the cgroup of sb's pause in every hierarchy, and
// sets sb's limits on the sandbox's cgroup above it before the pause is in.
func (n Node) createPauseCgroup(sb *Sandbox) cgroupResult {
	// One read of the mount table for the cgroup's creation and the
	// pause's start: it grows with every sandbox's namespace pin.
	hs, err := hierarchies()
	if err != nil {
		return cgroupResult{err: err}
	}
	r := cgroupResult{cg: Cgroup{Path: n.SandboxCgroup(sb.ID).Path + "/pause"}, hs: hs}
	r.err = r.cg.create(hs)
	if r.err == nil && sb.Resources != nil {
		r.err = n.SandboxCgroup(sb.ID).setLimits(hs, *sb.Resources)
	}
	return r
}

// startPause starts sb's pause in its namespace and in the cgroup cg made.
// It sets only sb's pause fields, so it may run alongside setupNetwork.
func (n Node) startPause(sb *Sandbox, cg cgroupResult) error {
	if cg.err != nil {
		return cg.err
	}
	hs, pauseCg := cg.hs, cg.cg
	spec := PauseSpec{RootDir: filepath.Join(n.Store.Root, "pause-root"), NetNSPath: sb.NetNSPath, Hostname: sb.Hostname, Host: sb.Host, CgroupFD: -1}
	if err := PrepareRootDir(spec.RootDir, n.PauseBinary); err != nil {
		return err
	}
	// The pause is born in its cgroup in every hierarchy: the v2 one by
	// CLONE_INTO_CGROUP, the v1 ones through the thread that forks it.
	for _, h := range hs {
		dir := filepath.Join(h.mount, pauseCg.Path)
		if !h.v2 {
			spec.CgroupTasks = append(spec.CgroupTasks, filepath.Join(dir, "tasks"))
			continue
		}
		f, err := os.Open(dir)
		if err != nil {
			return fmt.Errorf("open cgroup %s: %w", dir, err)
		}
		defer f.Close()
		spec.CgroupFD = int(f.Fd())
	}
	if spec.MountNS = n.pauseMountNS(sb.ID, spec.RootDir); spec.MountNS != nil {
		defer spec.MountNS.Close()
	}
	// The caller reaps the pause by PID (a shim reaps all its children in
	// one loop).
	var err error
	if sb.PausePID, err = StartPause(spec); err != nil {
		return err
	}
	if sb.PauseStart, err = ProcessStart(sb.PausePID); err != nil {
		return fmt.Errorf("pause %d: %w", sb.PausePID, err)
	}
	return nil
}

// writeEtcFiles writes the hostname, hosts and resolv.conf that every
// container of the sandbox gets bind-mounted at /etc.
func (n Node) writeEtcFiles(sb *Sandbox) error {
	dir := n.Store.SandboxDir(sb.ID)
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	if sb.IP != "" {
		hosts += sb.IP + "\t" + sb.Hostname + "\n"
	} else {
		hosts += "127.0.1.1\t" + sb.Hostname + "\n"
	}
	files := map[string]string{
		"hostname":    sb.Hostname + "\n",
		"hosts":       hosts,
		"resolv.conf": resolvConf(sb.DNS),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// resolvConf is the sandbox's resolv.conf: its own settings where it has
// them, the node's otherwise (package resolvconf).
func resolvConf(c *resolvconf.Config) string {
	var own resolvconf.Config
	if c != nil {
		own = *c
	}
	host, _ := os.ReadFile(resolvconf.HostPath)
	upstream, err := os.ReadFile(resolvconf.UpstreamPath)
	if err != nil {
		upstream = nil
	}
	return string(resolvconf.Build(own, host, upstream))
}

// EtcFile is the path of the sandbox's hosts, hostname or resolv.conf file.
func (n Node) EtcFile(sb *Sandbox, name string) string {
	return filepath.Join(n.Store.SandboxDir(sb.ID), name)
}

// ContainerDeleter deletes an OCI container by ID, killing it if it runs,
// and treats a missing container as deleted (runc delete --force).
type ContainerDeleter interface {
	DeleteContainer(ctx context.Context, id string) error
}

// StopPause sends SIGTERM to the pause (if it is still the process the record
// names) and waits up to timeout for it to go, then SIGKILL. Whoever is the
// pause's parent reaps it; StopPause only watches it disappear.
func StopPause(sb *Sandbox, timeout time.Duration) error {
	if !Alive(sb.PausePID, sb.PauseStart) {
		return nil
	}
	// An error means the pause is already gone, which waitGone sees.
	_ = SignalPause(sb.PausePID, syscall.SIGTERM)
	if waitGone(sb, timeout) {
		return nil
	}
	syscall.Kill(sb.PausePID, syscall.SIGKILL)
	if waitGone(sb, 5*time.Second) {
		return nil
	}
	return fmt.Errorf("sandbox %q: pause %d did not exit after SIGKILL", sb.Name, sb.PausePID)
}

func waitGone(sb *Sandbox, d time.Duration) bool {
	deadline := time.Now().Add(d)
	// The pause exits within a fraction of a millisecond of its signal:
	// look again soon, then less often.
	for wait := 50 * time.Microsecond; Alive(sb.PausePID, sb.PauseStart); wait = min(2*wait, 2*time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(wait)
	}
	return true
}

// Remove deletes every trace of the sandbox: its containers (through dc, if
// given), the pause, the cgroup, the network and namespace pin, and the state
// directory. It needs no shim, so it also cleans up after a crashed one, and
// every step tolerates a missing object: a crash at any point is mended by
// running Remove again.
func (n Node) Remove(ctx context.Context, sb *Sandbox, dc ContainerDeleter) error {
	var errs []error
	if dc != nil {
		cids, err := n.Store.ContainerIDs(sb.ID)
		errs = append(errs, err)
		for _, cid := range cids {
			errs = append(errs, dc.DeleteContainer(ctx, cid))
		}
	}
	faultpoint.Point("remove.containers")
	errs = append(errs, StopPause(sb, 0))
	faultpoint.Point("remove.pause")
	// The cgroup and the network come apart independently, so in
	// parallel: each is a millisecond or two of syscalls. Cgroup removal
	// kills whatever is left inside (a container runc no longer knows
	// about, a process a dead shim exec'd); such a straggler may still hold
	// the namespace when the network goes, which Teardown handles.
	var netErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		switch sb.Network {
		case NetworkBridge:
			net := n.network()
			if len(sb.Ports) > 0 {
				netErr = n.portRules(net, sb.Bridge).Remove(sb.ID)
			}
			netErr = errors.Join(netErr, net.Teardown(ctx, sb.ID, n.ownPin(sb)))
		case NetworkNone:
			netErr = netsetup.RemoveNetNS(n.ownPin(sb))
		case NetworkExternal:
			netErr = n.UnpublishExternal(sb)
		default:
			if sb.CNI != nil {
				netErr = n.teardownCNI(ctx, sb)
			}
		}
	})
	errs = append(errs, n.SandboxCgroup(sb.ID).Remove())
	wg.Wait()
	faultpoint.Point("remove.network")
	errs = append(errs, netErr)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sandbox %q: remove: %w", sb.Name, err)
	}
	return n.Store.RemoveSandboxRecord(sb)
}
