package chain

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseFile reads arbitrary bytes as a file of the CNI configuration
// directory, as a .conflist and as a single plugin's .conf: that directory
// holds whatever the node's other software put there, and `sandbox create
// --network cni:NAME` reads every file in it until it finds NAME. It must
// never panic, and every plugin of a list it returns has its configuration
// decoded, which the chain's ADD and hasCapability read.
func FuzzParseFile(f *testing.F) {
	f.Add([]byte(`{"cniVersion": "1.0.0", "name": "podnet", "plugins": [{"type": "bridge", "bridge": "cni0"}, {"type": "portmap", "capabilities": {"portMappings": true}}]}`))
	f.Add([]byte(`{"cniVersion": "1.0.0", "name": "single", "type": "fake"}`))
	f.Add([]byte(`{"name": "broken", "plugins": [`))
	f.Add([]byte(`{"cniVersion": "1.0.0", "name": "empty", "plugins": []}`))
	f.Add([]byte(`{"cniVersion": "0.3.1", "name": "old", "plugins": [{"type": "x", "ipam": {"type": "host-local"}, "dns": {"nameservers": ["10.0.0.1"]}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		for _, name := range []string{"10-net.conflist", "20-net.conf"} {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			list, err := parseFile(p)
			if err != nil {
				continue
			}
			hasCapability(list, "portMappings")
			for _, p := range list.Plugins {
				if p == nil || p.Network == nil {
					t.Fatalf("parseFile(%s of %q): a plugin without its configuration: %+v", name, b, list)
				}
			}
		}
	})
}
