package nodenet

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

func TestSettingsResolveDefaults(t *testing.T) {
	s, err := Settings{PodCIDR: pfx("10.244.1.0/24")}.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	want := Settings{PodCIDR: pfx("10.244.1.0/24"), ClusterCIDR: pfx("10.244.0.0/16"), Mode: ModeHostGW, Bridge: "podbox0", MTU: 1500}
	if s != want {
		t.Errorf("Resolve = %+v, want %+v", s, want)
	}
	s, err = Settings{PodCIDR: pfx("10.244.1.0/24"), Mode: ModeVXLAN}.Resolve()
	if err != nil || s.VNI != DefaultVNI {
		t.Errorf("vxlan: VNI = %d, err %v; want %d", s.VNI, err, DefaultVNI)
	}
}

func TestSettingsResolveErrors(t *testing.T) {
	pod := pfx("10.244.1.0/24")
	for _, tc := range []struct {
		name string
		s    Settings
		want string
	}{
		{"no pod CIDR", Settings{}, "pod CIDR is required"},
		{"IPv6 pod CIDR", Settings{PodCIDR: pfx("fd00::/64")}, "not IPv4"},
		{"host bits", Settings{PodCIDR: pfx("10.244.1.7/24")}, "host bits set"},
		{"cluster host bits", Settings{PodCIDR: pod, ClusterCIDR: pfx("10.244.3.0/16")}, "host bits set"},
		{"outside cluster", Settings{PodCIDR: pfx("10.245.1.0/24")}, "outside the cluster CIDR 10.244.0.0/16"},
		{"wider than cluster", Settings{PodCIDR: pfx("10.0.0.0/8")}, "outside the cluster CIDR"},
		{"too small", Settings{PodCIDR: pfx("10.244.1.0/31")}, "too small"},
		{"unknown mode", Settings{PodCIDR: pod, Mode: "bgp"}, `unknown mode "bgp"`},
		{"VNI without vxlan", Settings{PodCIDR: pod, VNI: 3}, "only for mode vxlan"},
		{"VNI too large", Settings{PodCIDR: pod, Mode: ModeVXLAN, VNI: 1 << 24}, "out of range"},
		{"bridge name", Settings{PodCIDR: pod, Bridge: "a-very-long-bridge-name"}, "longer than 15"},
		{"bridge is the vxlan device", Settings{PodCIDR: pod, Bridge: VXLANDevice}, "name of the VXLAN device"},
		{"mtu", Settings{PodCIDR: pod, MTU: 40}, "mtu 40"},
		{"vxlan mtu", Settings{PodCIDR: pod, Mode: ModeVXLAN, MTU: 100}, "no room for VXLAN"},
		{"node IP in cluster CIDR", Settings{PodCIDR: pod, NodeIP: addr("10.244.9.9")}, "inside the cluster CIDR"},
		{"node IP loopback", Settings{PodCIDR: pod, NodeIP: addr("127.0.0.1")}, "not a unicast IPv4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.s.Resolve()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Resolve(%+v) = %v, want an error containing %q", tc.s, err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func testConfig() *Config {
	return &Config{
		Settings: Settings{PodCIDR: pfx("10.244.1.0/24"), ClusterCIDR: pfx("10.244.0.0/16"), NodeIP: addr("10.100.0.2"), Mode: ModeHostGW, Bridge: "podbox0", MTU: 1500},
		Gateway:  addr("10.244.1.1"), PodMTU: 1500,
		Peers: []Peer{{Name: "n2", NodeIP: addr("10.100.0.3"), PodCIDR: pfx("10.244.2.0/24")}},
	}
}

func TestCheckPeer(t *testing.T) {
	c := testConfig()
	if exists, err := c.checkPeer(Peer{NodeIP: addr("10.100.0.4"), PodCIDR: pfx("10.244.3.0/24")}); exists || err != nil {
		t.Errorf("new peer: exists %v, err %v", exists, err)
	}
	if exists, err := c.checkPeer(c.Peers[0]); !exists || err != nil {
		t.Errorf("identical peer: exists %v, err %v; want exists", exists, err)
	}
	for _, tc := range []struct {
		name string
		p    Peer
		want string
	}{
		{"overlaps own", Peer{NodeIP: addr("10.100.0.4"), PodCIDR: pfx("10.244.1.128/25")}, "overlaps this node's pod CIDR"},
		{"covers own", Peer{NodeIP: addr("10.100.0.4"), PodCIDR: pfx("10.244.0.0/22")}, "overlaps this node's pod CIDR"},
		{"overlaps peer", Peer{NodeIP: addr("10.100.0.4"), PodCIDR: pfx("10.244.2.0/25")}, `overlaps peer "n2"`},
		{"outside cluster", Peer{NodeIP: addr("10.100.0.4"), PodCIDR: pfx("10.250.0.0/24")}, "outside the cluster CIDR"},
		{"own node IP", Peer{NodeIP: addr("10.100.0.2"), PodCIDR: pfx("10.244.3.0/24")}, "this node's own"},
		{"same IP other CIDR", Peer{NodeIP: addr("10.100.0.3"), PodCIDR: pfx("10.244.3.0/24")}, "already exists"},
		{"name taken", Peer{Name: "n2", NodeIP: addr("10.100.0.4"), PodCIDR: pfx("10.244.3.0/24")}, "is taken"},
		{"bad name", Peer{Name: "-x", NodeIP: addr("10.100.0.4"), PodCIDR: pfx("10.244.3.0/24")}, "is invalid"},
		{"no IP", Peer{PodCIDR: pfx("10.244.3.0/24")}, "node IP is required"},
		{"no CIDR", Peer{NodeIP: addr("10.100.0.4")}, "pod CIDR is required"},
		{"host bits", Peer{NodeIP: addr("10.100.0.4"), PodCIDR: pfx("10.244.3.1/24")}, "host bits set"},
		{"node IP in cluster", Peer{NodeIP: addr("10.244.7.1"), PodCIDR: pfx("10.244.3.0/24")}, "inside the cluster CIDR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.checkPeer(tc.p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("checkPeer(%+v) = %v, want an error containing %q", tc.p, err, tc.want)
			}
		})
	}
}

func TestRoutesOwnNodeFirst(t *testing.T) {
	c := testConfig()
	c.Peers = append(c.Peers, Peer{NodeIP: addr("10.100.0.9"), PodCIDR: pfx("10.244.9.0/24")})
	got := c.Routes()
	want := []string{"10.244.1.0/24 via 10.100.0.2", "10.244.2.0/24 via 10.100.0.3", "10.244.9.0/24 via 10.100.0.9"}
	if !slices.Equal(got, want) {
		t.Errorf("Routes = %q, want %q", got, want)
	}
}

func TestFindPeer(t *testing.T) {
	c := testConfig()
	c.Peers = append(c.Peers, Peer{Name: "10.100.0.3x", NodeIP: addr("10.100.0.5"), PodCIDR: pfx("10.244.5.0/24")})
	for ref, want := range map[string]int{"10.100.0.3": 0, "n2": 0, "10.100.0.3x": 1, "10.100.0.5": 1, "n3": -1, "10.100.0.9": -1, "": -1} {
		if got := c.findPeer(ref); got != want {
			t.Errorf("findPeer(%q) = %d, want %d", ref, got, want)
		}
	}
}

func TestVTEPMACIsDerivedFromNodeIP(t *testing.T) {
	a, b := vtepMAC(addr("10.100.0.2")), vtepMAC(addr("10.100.0.3"))
	if a.String() != "0e:70:0a:64:00:02" || b.String() != "0e:70:0a:64:00:03" {
		t.Errorf("vtepMAC = %s, %s", a, b)
	}
	if a[0]&1 != 0 || a[0]&2 == 0 {
		t.Errorf("vtepMAC %s is not a locally administered unicast address", a)
	}
}

func TestSaveLoad(t *testing.T) {
	root := t.TempDir()
	if _, err := Load(root); !errors.Is(err, ErrNotConfigured) {
		t.Fatalf("Load of an empty root = %v, want ErrNotConfigured", err)
	}
	c := testConfig()
	c.OrigIPForward = "0"
	if err := save(root, c); err != nil {
		t.Fatal(err)
	}
	got, err := Load(root)
	if err != nil {
		t.Fatal(err)
	}
	if got.Settings != c.Settings || got.Gateway != c.Gateway || !slices.Equal(got.Peers, c.Peers) || got.OrigIPForward != "0" {
		t.Errorf("Load = %+v, want %+v", got, c)
	}
	// Only node.json: the temporary file was renamed into place.
	ents, _ := os.ReadDir(root)
	if len(ents) != 1 || ents[0].Name() != FileName {
		t.Errorf("root holds %v, want only %s", ents, FileName)
	}
	if st, _ := os.Stat(filepath.Join(root, FileName)); st.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v, want 0600", FileName, st.Mode().Perm())
	}
	if err := os.WriteFile(filepath.Join(root, FileName), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(root); err == nil || errors.Is(err, ErrNotConfigured) {
		t.Errorf("Load of a corrupt file = %v, want a parse error", err)
	}
}

func TestNetworkOfConfig(t *testing.T) {
	c := testConfig()
	c.PodMTU = 1450
	n, err := c.Network("/run/x").Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if n.Bridge != "podbox0" || n.Subnet != c.PodCIDR || n.Gateway != addr("10.244.1.1") || n.MTU != 1450 || n.StateRoot != "/run/x" {
		t.Errorf("Network = %+v", n)
	}
}

// FuzzIsName checks the hand-written name rule against the regexp it
// replaces.
func FuzzIsName(f *testing.F) {
	re := regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)
	for _, s := range []string{"n2", "-x", "a.b_c-d", "", "a/b", "é", "10.100.0.3", strings.Repeat("a", 63), strings.Repeat("a", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := IsName(s), re.MatchString(s); got != want {
			t.Fatalf("IsName(%q) = %v, the rule's regexp says %v", s, got, want)
		}
	})
}
