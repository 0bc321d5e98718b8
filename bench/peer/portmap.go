package peer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// portmapConflist is the file of the chain with portmap. CRI loads only the
// first configuration of its directory by name (max_conf_num = 1), so while
// this file exists it stands in for the harness's 10-NETWORK.conflist.
const portmapConflist = "05-portmap.conflist"

// portmapPlugin is portmap as a CNI chain's last plugin: CRI hands a pod's
// port mappings only to plugins that declare the portMappings capability.
var portmapPlugin = map[string]any{"type": "portmap", "capabilities": map[string]any{"portMappings": true}}

// chainLoadLimit bounds the wait for CRI to load a changed chain.
const chainLoadLimit = 30 * time.Second

// UsePortmap puts Debian's portmap plugin at the end of the peer's CNI chain
// and returns once containerd's CRI has loaded that chain; restore goes back
// to the plain chain and returns once CRI has loaded it again. The network
// stays the same (name, bridge, host-local leases): only the plugin is added.
//
// CRI watches its configuration directory and reloads on a write, rename or
// removal there, so the chain is swapped by adding and removing a file
// rather than by rewriting the harness's. A pod made with portmap must be
// removed before restore: CRI tears a pod's network down with the chain
// loaded at that time, and portmap's rules of a pod removed later would
// stay behind.
func (c *CRI) UsePortmap(ctx context.Context) (restore func(context.Context) error, err error) {
	dir := c.Daemon.CNIConfDir
	plain, err := filepath.Glob(filepath.Join(dir, "*.conflist"))
	if err != nil || len(plain) != 1 {
		return nil, fmt.Errorf("peer CNI configuration %s: want exactly one conflist, found %q (%v)", dir, plain, err)
	}
	b, err := os.ReadFile(plain[0])
	if err != nil {
		return nil, fmt.Errorf("peer CNI configuration: %w", err)
	}
	var conf map[string]any
	if err := json.Unmarshal(b, &conf); err != nil {
		return nil, fmt.Errorf("peer CNI configuration %s: %w", plain[0], err)
	}
	plugins, ok := conf["plugins"].([]any)
	if !ok {
		return nil, fmt.Errorf("peer CNI configuration %s: no plugins list", plain[0])
	}
	conf["plugins"] = append(plugins, portmapPlugin)
	if b, err = json.MarshalIndent(conf, "", "  "); err != nil {
		return nil, fmt.Errorf("peer CNI configuration with portmap: %w", err)
	}
	// Written aside and renamed into place: CRI must never load half a
	// file. The temporary name has no CNI extension, so CRI skips it.
	path := filepath.Join(dir, portmapConflist)
	tmp := filepath.Join(dir, "."+portmapConflist+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("peer CNI configuration with portmap: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("peer CNI configuration with portmap: %w", err)
	}
	restore = func(ctx context.Context) error {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("peer CNI configuration: restore the plain chain: %w", err)
		}
		return c.waitChain(ctx, false)
	}
	if err := c.waitChain(ctx, true); err != nil {
		return nil, errors.Join(err, restore(ctx))
	}
	return restore, nil
}

// waitChain polls `crictl info` until the pod network's chain CRI has
// loaded has portmap, or has not, as withPortmap says.
func (c *CRI) waitChain(ctx context.Context, withPortmap bool) error {
	deadline := time.Now().Add(chainLoadLimit)
	for {
		plugins, err := c.LoadedChain(ctx)
		if err == nil && slices.Contains(plugins, "portmap") == withPortmap {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("CRI's pod network chain is %q", plugins)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			want := "with portmap"
			if !withPortmap {
				want = "without portmap"
			}
			return fmt.Errorf("peer CNI configuration: CRI did not load the chain %s within %s: %w", want, chainLoadLimit, errors.Join(err, ctx.Err()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// LoadedChain returns the plugin types of the pod network (the eth0
// attachment) CRI has loaded, in chain order, as `crictl info` shows them.
func (c *CRI) LoadedChain(ctx context.Context) ([]string, error) {
	out, _, err := c.Cmd(ctx, "info")
	if err != nil {
		return nil, err
	}
	var info struct {
		CNI struct {
			Networks []struct {
				Config struct {
					Plugins []struct {
						Network struct {
							Type string `json:"type"`
						} `json:"Network"`
					} `json:"Plugins"`
				} `json:"Config"`
				IFName string `json:"IFName"`
			} `json:"Networks"`
		} `json:"cniconfig"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		return nil, fmt.Errorf("crictl info: decode: %w", err)
	}
	var ifnames []string
	for _, n := range info.CNI.Networks {
		if n.IFName != "eth0" {
			ifnames = append(ifnames, n.IFName)
			continue
		}
		var types []string
		for _, p := range n.Config.Plugins {
			types = append(types, p.Network.Type)
		}
		return types, nil
	}
	return nil, fmt.Errorf("crictl info: CRI has loaded no pod network (eth0), only the attachments %s", strings.Join(ifnames, ", "))
}
