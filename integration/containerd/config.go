package containerd

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// PodSubnet is the pod address range of the CNI bridge network the harness
// writes. It exists only inside the test node namespace (bridge cni0 there),
// so it cannot collide with the machine's own networks.
const PodSubnet = "10.88.0.0/16"

// CNIBridge is the bridge the CNI network creates in the test node.
const CNIBridge = "cni0"

// cniConflist is the CNI network containerd's CRI gives every pod: a veth on
// bridge cni0 in the node namespace, an address from PodSubnet leased by
// host-local. Deliberately absent: ipMasq (no NAT to anywhere), portmap (no
// host ports), routes (pods need no way out of the node) unless
// defaultRoute: a default route via the bridge lets pods answer hosts
// beside the node, which has no way further itself. host-local's dataDir
// points into the daemon's directory so leases never land in the machine's
// /var/lib/cni/networks. The loopback plugin is not listed: both
// containerd 1.6 and 2.x bring lo up themselves.
func cniConflist(name, dataDir string, defaultRoute bool) ([]byte, error) {
	ipam := map[string]any{
		"type":    "host-local",
		"ranges":  [][]map[string]string{{{"subnet": PodSubnet}}},
		"dataDir": dataDir,
	}
	if defaultRoute {
		ipam["routes"] = []map[string]string{{"dst": "0.0.0.0/0"}}
	}
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       name,
		"plugins": []any{
			map[string]any{
				"type":      "bridge",
				"bridge":    CNIBridge,
				"isGateway": true,
				"ipMasq":    false,
				"ipam":      ipam,
			},
		},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("CNI network %q: encode conflist: %w", name, err)
	}
	return append(b, '\n'), nil
}

// config renders containerd's config.toml for d: version 2 (containerd 1.6)
// or version 3 (containerd 2.x), where the CRI plugin is split into
// io.containerd.cri.v1.runtime and io.containerd.cri.v1.images.
func (d *Daemon) config() string {
	q := strconv.Quote // Go's quoting of plain paths and refs is a valid TOML basic string
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	version := 2
	if d.Opts.V2 {
		version = 3
	}
	w("# written by podbox's integration/containerd harness")
	w("version = %d", version)
	w("root = %s", q(d.Root))
	w("state = %s", q(d.State))
	// Plugins that would reach outside the daemon's directories or that the
	// tests never need: NRI (2.x enables it by default, with a socket at the
	// fixed path /var/run/nri/nri.sock that concurrent daemons would fight
	// over) and the snapshotters this machine does not have.
	disabled := []string{
		"io.containerd.snapshotter.v1.aufs",
		"io.containerd.snapshotter.v1.btrfs",
		"io.containerd.snapshotter.v1.devmapper",
		"io.containerd.snapshotter.v1.zfs",
	}
	if d.Opts.V2 {
		disabled = append(disabled, "io.containerd.nri.v1.nri")
	}
	w("disabled_plugins = [%s]", quoteList(disabled))
	w("")
	w("[grpc]")
	w("  address = %s", q(d.Address))
	w("[ttrpc]")
	w("  address = %s", q(d.Address+".ttrpc"))
	w("[debug]")
	w("  level = \"debug\"")
	w("")
	// ctr and the CRI plugin put nothing in /opt/containerd, but the opt
	// plugin creates it at start; keep it in the daemon's directory.
	w("[plugins.\"io.containerd.internal.v1.opt\"]")
	w("  path = %s", q(d.Dir+"/opt"))
	w("")

	cri := `plugins."io.containerd.grpc.v1.cri"`
	if d.Opts.V2 {
		cri = `plugins."io.containerd.cri.v1.runtime"`
		w("[plugins.\"io.containerd.cri.v1.images\"]")
		w("  [plugins.\"io.containerd.cri.v1.images\".pinned_images]")
		w("    sandbox = %s", q(d.Opts.SandboxImage))
		w("")
	}
	w("[%s]", cri)
	if !d.Opts.V2 {
		w("  sandbox_image = %s", q(d.Opts.SandboxImage))
	}
	// A negative oom_score_adj cannot be written on these machines, and CRI
	// gives sandboxes -998 unless told to stay at or above containerd's own.
	w("  restrict_oom_score_adj = true")
	// Pod network namespaces are pinned under the daemon's state directory
	// instead of the machine-wide /var/run/netns, so the cleanup can find
	// (and unmount) every one of them.
	w("  netns_mounts_under_state_dir = true")
	w("  [%s.containerd]", cri)
	w("    default_runtime_name = \"runc\"")
	w("    [%s.containerd.runtimes.runc]", cri)
	w("      runtime_type = \"io.containerd.runc.v2\"")
	// runc's state (its --root) under the daemon's state directory, not the
	// shared /run/containerd/runc, so leftovers are this daemon's alone.
	w("      [%s.containerd.runtimes.runc.options]", cri)
	w("        Root = %s", q(d.State+"/runc"))
	w("    [%s.containerd.runtimes.podbox]", cri)
	w("      runtime_type = \"io.containerd.podbox.v1\"")
	if d.Opts.V2 && d.Opts.ShimSandboxer {
		// Pods of this runtime are made through the shim's Sandbox API
		// (CreateSandbox, StartSandbox, …) rather than by running the
		// sandbox image as a task ("podsandbox", the default).
		w("      sandboxer = \"shim\"")
	}
	w("  [%s.cni]", cri)
	if d.Opts.V2 {
		w("    bin_dirs = [%s]", q(CNIBinDir))
	} else {
		w("    bin_dir = %s", q(CNIBinDir))
	}
	w("    conf_dir = %s", q(d.CNIConfDir))
	w("    max_conf_num = 1")
	return b.String()
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = strconv.Quote(v)
	}
	return strings.Join(q, ", ")
}
