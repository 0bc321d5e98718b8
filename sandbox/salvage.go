package sandbox

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/podbox/podbox/netsetup"
	"github.com/podbox/podbox/netsetup/cni"
)

// Salvage makes what can be known of sandbox id, whose record cannot be
// read (cause says why), from everything else the node keeps of it: its
// name from the name index, its containers from their records, its network
// namespace pin, its published ports from the node's rules, its CNI
// attachment from libcni's cache. Node.Remove of the result removes what
// exists of the sandbox: the cgroup kills what runs in it (the pause too),
// the host veth goes by its name and the lease by the sandbox's ID, since
// both are derived from the ID, not read from the record.
func (n Node) Salvage(id string, cause error) *Sandbox {
	sb := &Sandbox{
		ID: id, Name: n.Store.nameOf(kindSandbox, id), State: StateBroken, Network: NetworkBridge,
		CgroupParent: findCgroupParent(id, n.cgroupParent()), Problem: cause.Error(),
	}
	if sb.Name == "" {
		sb.Name = id[:min(12, len(id))]
	}
	sb.Containers, _ = n.Store.ContainerIDs(id)
	sb.NetNSPath = n.NetNSPin(id)
	if legacy := filepath.Join(n.Store.SandboxDir(id), "netns"); netsetup.IsNetNSPin(legacy) {
		sb.NetNSPath = legacy
	}
	if rules, err := n.PortRules(); err == nil {
		if published, err := rules.List(); err == nil {
			for _, p := range published {
				if p.SandboxID == id {
					sb.Ports = append(sb.Ports, p.Mapping)
					sb.IP = p.PodIP.String()
					sb.Bridge = rules.Bridge
				}
			}
		}
	}
	// libcni names its cache files NETWORK-CONTAINERID-IFNAME.
	entries, _ := os.ReadDir(filepath.Join(n.cniCacheDir(), "results"))
	for _, e := range entries {
		network, rest, ok := strings.Cut(e.Name(), "-"+id+"-")
		if ok && rest != "" && cni.ValidName(network) == nil {
			sb.Network = cni.NetworkPrefix + network
			sb.CNI = &cni.Attachment{Network: network, ConfDir: cni.DefaultConfDir, BinDirs: cni.SplitBinPath(cni.DefaultBinPath),
				CacheDir: n.cniCacheDir(), ContainerID: id, IfName: rest}
			break
		}
	}
	return sb
}

// nameOf is the name of kind the index gives id, or "".
func (s Store) nameOf(kind, id string) string {
	names, _ := listDir(filepath.Join(s.Root, "names", kind))
	for _, name := range names {
		if strings.HasPrefix(name, ".") {
			continue // a reservation on its way (reserveName), not a name
		}
		if b, err := os.ReadFile(s.nameFile(kind, name)); err == nil && string(b) == id {
			return name
		}
	}
	return ""
}

// findCgroupParent is the parent of sandbox id's cgroup (PARENT/ID), found
// in the cgroup trees one or two levels down, else def: the record that
// named it is what is lost.
func findCgroupParent(id, def string) string {
	hs, err := hierarchies()
	if err != nil {
		return def
	}
	for _, h := range hs {
		for _, pattern := range []string{"*/" + id, "*/*/" + id} {
			if m, _ := filepath.Glob(filepath.Join(h.mount, pattern)); len(m) > 0 {
				if rel, err := filepath.Rel(h.mount, filepath.Dir(m[0])); err == nil {
					return rel
				}
			}
		}
	}
	return def
}
