// Package cni attaches sandboxes to networks described by CNI network
// configuration lists (the files of /etc/cni/net.d that Kubernetes nodes
// already have), as the second backend beside podbox's own bridge.
//
// The plugin chain is run by libcni in a separate binary, podbox-cni (its
// code is package cni/chain): libcni's packages cost initialisation work
// and memory that neither `podbox sandbox create` nor an idle shim should
// pay when no sandbox uses CNI. This package is the caller's side: the
// request and result that cross the process boundary as JSON, and Run,
// which executes the helper. It depends on nothing beyond the standard
// library.
package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// HelperBinary is the executable name of the chain runner.
const HelperBinary = "podbox-cni"

// Defaults of where configuration lists and plugins are looked for: the
// CNI convention, and where Debian's containernetworking-plugins installs.
const (
	DefaultConfDir = "/etc/cni/net.d"
	DefaultBinPath = "/opt/cni/bin:/usr/lib/cni"
)

// NetworkPrefix starts a sandbox's network mode when it names a CNI network:
// "cni:NAME".
const NetworkPrefix = "cni:"

// DefaultIfName is the sandbox's interface, as for podbox's bridge.
const DefaultIfName = "eth0"

// Operations of the helper, the CNI commands of the same names.
const (
	OpAdd   = "add"
	OpCheck = "check"
	OpDel   = "del"
)

// Attachment names one sandbox's place in a CNI network: everything DEL and
// CHECK need again, kept in the sandbox's record.
type Attachment struct {
	// Network is the configuration list's name.
	Network string `json:"network"`
	// ConfDir and BinDirs are where the list and its plugins were found.
	ConfDir string   `json:"confDir"`
	BinDirs []string `json:"binDirs"`
	// CacheDir is libcni's cache of the configuration and result of each
	// ADD, which DEL uses even when the list has changed or gone since.
	CacheDir    string `json:"cacheDir"`
	ContainerID string `json:"containerId"`
	IfName      string `json:"ifName"`
}

// PortMapping is one published port in the form of the portMappings
// capability (the portmap plugin's runtimeConfig).
type PortMapping struct {
	HostPort      uint16 `json:"hostPort"`
	ContainerPort uint16 `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// Request is what the helper reads on stdin.
type Request struct {
	Op string `json:"op"`
	Attachment
	// NetNS is the sandbox's network namespace pin; at DEL it may be ""
	// (gone), which plugins must tolerate.
	NetNS string `json:"netns"`
	// PortMappings go to the plugins that declare the portMappings
	// capability; ADD fails if the list has none.
	PortMappings []PortMapping `json:"portMappings,omitempty"`
	// Args are CNI_ARGS pairs (K8S_POD_NAME and such).
	Args [][2]string `json:"args,omitempty"`
}

// Result is the attachment as the chain reported it (ADD) or as it was
// cached (CHECK).
type Result struct {
	CNIVersion string      `json:"cniVersion"`
	IPs        []IPConfig  `json:"ips,omitempty"`
	Interfaces []Interface `json:"interfaces,omitempty"`
	DNS        DNS         `json:"dns,omitzero"`
}

// IPConfig is an address the chain gave an interface.
type IPConfig struct {
	Address netip.Prefix `json:"address"`
	Gateway netip.Addr   `json:"gateway,omitzero"`
	// Interface indexes Result.Interfaces, when the plugin said.
	Interface *int `json:"interface,omitempty"`
}

// Interface is an interface the chain made or used.
type Interface struct {
	Name string `json:"name"`
	Mac  string `json:"mac,omitempty"`
	// Sandbox is the namespace path for interfaces inside the sandbox,
	// empty for the node's.
	Sandbox string `json:"sandbox,omitempty"`
}

// DNS is what the chain says the sandbox's resolver should use.
type DNS struct {
	Nameservers []string `json:"nameservers,omitempty"`
	Domain      string   `json:"domain,omitempty"`
	Search      []string `json:"search,omitempty"`
	Options     []string `json:"options,omitempty"`
}

// SandboxAddress is the first IPv4 address of the sandbox's interface (the
// pod IP), else its first address of any family, with its gateway.
func (r *Result) SandboxAddress(ifName string) (netip.Prefix, netip.Addr, bool) {
	var best *IPConfig
	for i := range r.IPs {
		ip := &r.IPs[i]
		if ip.Interface != nil && *ip.Interface >= 0 && *ip.Interface < len(r.Interfaces) {
			if itf := r.Interfaces[*ip.Interface]; itf.Name != ifName || itf.Sandbox == "" {
				continue
			}
		}
		if best == nil || (ip.Address.Addr().Is4() && !best.Address.Addr().Is4()) {
			best = ip
		}
	}
	if best == nil {
		return netip.Prefix{}, netip.Addr{}, false
	}
	return best.Address, best.Gateway, true
}

// ParseNetwork returns NAME of a network mode "cni:NAME", and whether mode
// names a CNI network at all.
func ParseNetwork(mode string) (name string, ok bool, err error) {
	name, ok = strings.CutPrefix(mode, NetworkPrefix)
	if !ok {
		return "", false, nil
	}
	if err := ValidName(name); err != nil {
		return "", true, err
	}
	return name, true, nil
}

// ValidName checks a CNI network name as the CNI specification allows it:
// letters, digits, '_', '.' and '-', starting with a letter or digit.
func ValidName(name string) error {
	if name == "" {
		return errors.New("CNI network name is empty (want cni:NAME)")
	}
	for i, r := range name {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || (r != '_' && r != '.' && r != '-')) {
			return fmt.Errorf("CNI network name %q is invalid: want letters, digits, '_', '.' and '-', starting with a letter or digit", name)
		}
	}
	return nil
}

// SplitBinPath splits a list of plugin directories separated by ':' (as
// CNI_PATH) or ',' and drops empty entries.
func SplitBinPath(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ':' || r == ',' })
}

// FindHelper locates podbox-cni: $PODBOX_CNI_BIN, else beside the running
// executable (where make build and make install put every podbox binary),
// else on PATH.
func FindHelper() (string, error) {
	if p := os.Getenv("PODBOX_CNI_BIN"); p != "" {
		return p, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), HelperBinary)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath(HelperBinary)
	if err != nil {
		return "", fmt.Errorf("%s is neither beside this program nor on PATH (set PODBOX_CNI_BIN)", HelperBinary)
	}
	return p, nil
}

// Exec runs a command to its end as exec.Cmd.Run does. A process that
// reaps every child itself (a shim) passes one that collects the exit
// through its reaper: os/exec's own wait would find no child.
type Exec func(*exec.Cmd) error

// Run executes helper (FindHelper when "") for req, with run (nil:
// exec.Cmd.Run), and returns the result of an ADD or CHECK. The helper's
// error message, which names the plugin and what it said, becomes the
// error's text.
func Run(ctx context.Context, helper string, run Exec, req Request) (*Result, error) {
	wrap := func(err error) error {
		return fmt.Errorf("CNI network %q: %s: %w", req.Network, req.Op, err)
	}
	if helper == "" {
		var err error
		if helper, err = FindHelper(); err != nil {
			return nil, wrap(err)
		}
	}
	in, err := json.Marshal(req)
	if err != nil {
		return nil, wrap(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, helper)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), &stdout, &stderr
	if run == nil {
		run = (*exec.Cmd).Run
	}
	if err := run(cmd); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, wrap(errors.New(msg))
		}
		return nil, wrap(fmt.Errorf("%s: %w", helper, err))
	}
	if req.Op == OpDel {
		return nil, nil
	}
	var res Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return nil, wrap(fmt.Errorf("%s answered %q: %w", helper, stdout.String(), err))
	}
	return &res, nil
}
