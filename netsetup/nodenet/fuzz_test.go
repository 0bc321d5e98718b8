package nodenet

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzLoad writes arbitrary bytes as ROOT/node.json and loads them. The file
// is on disk under the state root, where a crash, a full disk or a hand
// edit can leave anything, and every node command and every sandbox create
// reads it. Load must never panic, and a configuration it returns must be
// one the node's steps can use without panicking or misrouting: settings
// that Resolve accepts as they are (with a node IP), a pod network that
// resolves, and peers that each pass the checks of `peer add` against the
// node and the peers before them. Saved again, it loads as itself.
func FuzzLoad(f *testing.F) {
	c := testConfig()
	c.OrigIPForward = "0"
	b, _ := json.MarshalIndent(c, "", "  ")
	f.Add(b)
	f.Add([]byte(`{"podCIDR": "10.244.3.0/24", "clusterCIDR": "10.244.0.0/16", "nodeIP": "10.100.0.2", "mode": "vxlan",
		"bridge": "cbr0", "mtu": 1500, "vni": 1, "gateway": "10.244.3.1", "podMTU": 1450, "peers": []}`))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		root := t.TempDir()
		if err := os.WriteFile(filepath.Join(root, FileName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(root)
		if err != nil {
			return
		}
		if s, err := c.Settings.Resolve(); err != nil || s != c.Settings || !c.NodeIP.IsValid() {
			t.Fatalf("Load(%q) = %+v, whose settings resolve to %+v, %v", b, c, s, err)
		}
		if _, err := c.Network(root).Resolve(); err != nil {
			t.Fatalf("Load(%q) = %+v, whose pod network does not resolve: %v", b, c, err)
		}
		before := &Config{Settings: c.Settings}
		for _, p := range c.Peers {
			if exists, err := before.checkPeer(p); exists || err != nil {
				t.Fatalf("Load(%q): %s after %v: exists %v, %v", b, p, before.Peers, exists, err)
			}
			before.Peers = append(before.Peers, p)
		}
		// What the node's steps compute from it.
		c.Routes()
		vtepMAC(c.NodeIP)
		for _, p := range c.Peers {
			vtepMAC(p.NodeIP)
		}

		if err := save(root, c); err != nil {
			t.Fatal(err)
		}
		again, err := Load(root)
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("Load(%q) = %+v, which saved loads as %+v, %v", b, c, again, err)
		}
	})
}
