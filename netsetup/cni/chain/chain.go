// Package chain runs a CNI network configuration list for one sandbox with
// libcni: the podbox-cni helper's work (package cni has the caller's side
// and says why it is a separate binary).
//
// ADD that fails part way deletes what the plugins before the failing one
// made, so a failed attachment leaves nothing; DEL skips plugins whose
// executable is gone, and uses the configuration
// libcni cached at ADD, so a sandbox is detached as it was attached even if
// its list has changed or gone since, and a DEL with nothing cached and no
// list to read has nothing to undo.
package chain

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/podbox/podbox/netsetup/cni"
)

// capPortMappings is the capability of plugins (portmap) that publish ports.
const capPortMappings = "portMappings"

// Run carries out req.
func Run(ctx context.Context, req cni.Request) (*cni.Result, error) {
	if err := cni.ValidName(req.Network); err != nil {
		return nil, err
	}
	if req.ContainerID == "" || req.IfName == "" || req.CacheDir == "" {
		return nil, errors.New("request lacks the container ID, interface name or cache directory")
	}
	c := libcni.NewCNIConfigWithCacheDir(req.BinDirs, req.CacheDir, nil)
	rt := &libcni.RuntimeConf{ContainerID: req.ContainerID, NetNS: req.NetNS, IfName: req.IfName, Args: req.Args}
	switch req.Op {
	case cni.OpAdd:
		return add(ctx, c, req, rt)
	case cni.OpCheck:
		return check(ctx, c, req, rt)
	case cni.OpDel:
		return nil, del(ctx, c, req, rt)
	}
	return nil, fmt.Errorf("unknown operation %q (want %s, %s or %s)", req.Op, cni.OpAdd, cni.OpCheck, cni.OpDel)
}

func add(ctx context.Context, c *libcni.CNIConfig, req cni.Request, rt *libcni.RuntimeConf) (*cni.Result, error) {
	if req.NetNS == "" {
		return nil, errors.New("ADD needs the sandbox's network namespace")
	}
	list, err := Load(req.ConfDir, req.Network)
	if err != nil {
		return nil, err
	}
	if len(req.PortMappings) > 0 {
		if !hasCapability(list, capPortMappings) {
			return nil, fmt.Errorf("cannot publish ports: no plugin of network %q has the %s capability (add the portmap plugin to its list)", req.Network, capPortMappings)
		}
		rt.CapabilityArgs = map[string]any{capPortMappings: req.PortMappings}
	}
	res, err := c.AddNetworkList(ctx, list, rt)
	if err != nil {
		// The plugins before the failing one may have made a veth or
		// leased an address: DEL, which every plugin must accept for
		// what it did not make, takes them back.
		if derr := c.DelNetworkList(context.WithoutCancel(ctx), installed(list, req.BinDirs), rt); derr != nil {
			err = errors.Join(err, fmt.Errorf("undo: %w", derr))
		}
		return nil, err
	}
	return convert(res)
}

func check(ctx context.Context, c *libcni.CNIConfig, req cni.Request, rt *libcni.RuntimeConf) (*cni.Result, error) {
	list, crt, err := cached(c, req, rt)
	if err != nil {
		return nil, err
	}
	if list == nil {
		return nil, fmt.Errorf("no attachment of sandbox %q is cached in %s: it was never added, or was deleted", req.ContainerID, req.CacheDir)
	}
	if err := c.CheckNetworkList(ctx, list, crt); err != nil {
		return nil, err
	}
	res, err := c.GetNetworkListCachedResult(list, crt)
	if err != nil {
		return nil, err
	}
	return convert(res)
}

func del(ctx context.Context, c *libcni.CNIConfig, req cni.Request, rt *libcni.RuntimeConf) error {
	list, crt, err := cached(c, req, rt)
	if err != nil {
		return err
	}
	if list == nil {
		// Nothing cached: ADD never finished (it undoes itself) or a DEL
		// did. The list as it is now is still given its DEL, in case a
		// crash came between a plugin's ADD and the cache.
		if list, err = Load(req.ConfDir, req.Network); err != nil {
			return nil
		}
		crt = rt
	}
	return c.DelNetworkList(ctx, installed(list, req.BinDirs), crt)
}

// installed is list without the plugins whose executable is not in any of
// dirs. A missing plugin cannot have attached anything at this ADD, and if
// it went after an ADD, nothing can run its DEL: asking for it anyway would
// fail every removal of the sandbox for good, and keep the other plugins
// from giving back what they hold.
func installed(list *libcni.NetworkConfigList, dirs []string) *libcni.NetworkConfigList {
	out := *list
	out.Plugins = nil
	for _, p := range list.Plugins {
		if p.Network == nil {
			continue
		}
		if _, err := invoke.FindInPath(p.Network.Type, dirs); err == nil {
			out.Plugins = append(out.Plugins, p)
		}
	}
	return &out
}

// cached is the list and runtime arguments of the sandbox's ADD, as libcni
// cached them, or nil if none is.
func cached(c *libcni.CNIConfig, req cni.Request, rt *libcni.RuntimeConf) (*libcni.NetworkConfigList, *libcni.RuntimeConf, error) {
	b, crt, err := c.GetNetworkListCachedConfig(&libcni.NetworkConfigList{Name: req.Network}, rt)
	if err != nil || b == nil {
		return nil, nil, err
	}
	list, err := libcni.NetworkConfFromBytes(b)
	if err != nil {
		return nil, nil, fmt.Errorf("cached configuration of network %q: %w", req.Network, err)
	}
	return list, crt, nil
}

// Load finds the configuration list named name in dir. Unlike libcni's
// LoadNetworkConf, a file that does not parse stops the search only if no
// other file has the list, and the error then names that file.
func Load(dir, name string) (*libcni.NetworkConfigList, error) {
	files, err := libcni.ConfFiles(dir, []string{".conflist", ".conf", ".json"})
	if err != nil {
		return nil, fmt.Errorf("read CNI configuration directory: %w", err)
	}
	sort.Strings(files)
	var bad []error
	for _, f := range files {
		list, err := parseFile(f)
		if err != nil {
			bad = append(bad, fmt.Errorf("%s: %w", f, err))
			continue
		}
		if list.Name == name {
			if len(list.Plugins) == 0 {
				return nil, fmt.Errorf("CNI network %q (%s) lists no plugins", name, f)
			}
			return list, nil
		}
	}
	err = fmt.Errorf("no CNI network named %q in %s", name, dir)
	if len(files) == 0 {
		err = fmt.Errorf("no CNI network named %q: %s has no configuration files", name, dir)
	}
	if len(bad) > 0 {
		err = fmt.Errorf("%w; files that do not parse: %w", err, errors.Join(bad...))
	}
	return nil, err
}

// parseFile reads a configuration list, or a single plugin's configuration
// (.conf), which is a list of one.
func parseFile(path string) (*libcni.NetworkConfigList, error) {
	if filepath.Ext(path) == ".conflist" {
		return libcni.NetworkConfFromFile(path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if list, err := libcni.NetworkConfFromBytes(b); err == nil && len(list.Plugins) > 0 {
		return list, nil
	}
	// Deprecated by CNI, but what many nodes still have in net.d, and
	// what containerd's CRI still reads.
	//lint:ignore SA1019 single-plugin files are still in use
	conf, err := libcni.ConfFromBytes(b)
	if err != nil {
		return nil, err
	}
	//lint:ignore SA1019 as above
	return libcni.ConfListFromConf(conf)
}

func hasCapability(list *libcni.NetworkConfigList, name string) bool {
	for _, p := range list.Plugins {
		if p.Network != nil && p.Network.Capabilities[name] {
			return true
		}
	}
	return false
}

// convert turns a plugin's result of any CNI version into the caller's.
func convert(r types.Result) (*cni.Result, error) {
	if r == nil {
		return &cni.Result{}, nil
	}
	res, err := types100.NewResultFromResult(r)
	if err != nil {
		return nil, fmt.Errorf("convert the chain's result: %w", err)
	}
	out := &cni.Result{CNIVersion: res.CNIVersion}
	for _, itf := range res.Interfaces {
		out.Interfaces = append(out.Interfaces, cni.Interface{Name: itf.Name, Mac: itf.Mac, Sandbox: itf.Sandbox})
	}
	for _, ip := range res.IPs {
		c, err := ipConfig(ip)
		if err != nil {
			return nil, err
		}
		out.IPs = append(out.IPs, c)
	}
	out.DNS = cni.DNS{Nameservers: res.DNS.Nameservers, Domain: res.DNS.Domain, Search: res.DNS.Search, Options: res.DNS.Options}
	return out, nil
}

func ipConfig(ip *types100.IPConfig) (cni.IPConfig, error) {
	addr, ok := netip.AddrFromSlice(ip.Address.IP)
	if !ok {
		return cni.IPConfig{}, fmt.Errorf("the chain's result has an invalid address %v", ip.Address.IP)
	}
	ones, _ := ip.Address.Mask.Size()
	c := cni.IPConfig{Address: netip.PrefixFrom(addr.Unmap(), ones), Interface: ip.Interface}
	if gw, ok := netip.AddrFromSlice(ip.Gateway); ok {
		c.Gateway = gw.Unmap()
	}
	return c, nil
}
