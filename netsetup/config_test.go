package netsetup_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"

	"github.com/podbox/podbox/netsetup"
)

func TestHostVethName(t *testing.T) {
	if a, b := netsetup.HostVethName("web"), netsetup.HostVethName("web"); a != b {
		t.Fatalf("HostVethName is not deterministic: %q then %q", a, b)
	}
	if a, b := netsetup.HostVethName("web"), netsetup.HostVethName("web2"); a == b {
		t.Fatalf("HostVethName(web) == HostVethName(web2) == %q", a)
	}

	const n = 100_000
	seen := make(map[string]string, n)
	buf := make([]byte, 32)
	for i := range n {
		var id string
		if i%2 == 0 {
			// containerd-style: 64 hex digits.
			rand.Read(buf)
			id = hex.EncodeToString(buf)
		} else {
			// CLI-style: short names that differ in one character.
			id = "sandbox-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + hex.EncodeToString(buf[:i%5])
		}
		name := netsetup.HostVethName(id)
		if prev, ok := seen[name]; ok && prev != id {
			t.Fatalf("HostVethName(%q) == HostVethName(%q) == %q", id, prev, name)
		}
		seen[name] = id
		if len(name) > 15 {
			t.Fatalf("HostVethName(%q) = %q: %d bytes, more than the kernel's 15", id, name, len(name))
		}
		if !strings.HasPrefix(name, "pbx") {
			t.Fatalf("HostVethName(%q) = %q: no pbx prefix", id, name)
		}
		for _, c := range name {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
				t.Fatalf("HostVethName(%q) = %q: character %q outside [a-z0-9]", id, name, c)
			}
		}
	}
}

func TestResolve(t *testing.T) {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	tests := []struct {
		name    string
		in      netsetup.Network
		want    netsetup.Network
		wantErr string // substring; "" = no error
	}{{
		name: "zero value is the default network",
		want: netsetup.Network{
			Bridge: "podbox0", Subnet: p("10.89.0.0/16"), Gateway: a("10.89.0.1"),
			MTU: 1500, StateRoot: "/run/podbox",
		},
	}, {
		name: "explicit values are kept",
		in: netsetup.Network{
			Bridge: "br-test", Subnet: p("192.168.7.0/24"), Gateway: a("192.168.7.254"),
			MTU: 9000, StateRoot: "/var/lib/pb", NodeNetNS: "/run/netns/n1",
		},
		want: netsetup.Network{
			Bridge: "br-test", Subnet: p("192.168.7.0/24"), Gateway: a("192.168.7.254"),
			MTU: 9000, StateRoot: "/var/lib/pb", NodeNetNS: "/run/netns/n1",
		},
	}, {
		name: "gateway defaults to the first host of the subnet",
		in:   netsetup.Network{Subnet: p("172.30.4.0/22")},
		want: netsetup.Network{
			Bridge: "podbox0", Subnet: p("172.30.4.0/22"), Gateway: a("172.30.4.1"),
			MTU: 1500, StateRoot: "/run/podbox",
		},
	}, {
		name: "a /30 is the smallest subnet",
		in:   netsetup.Network{Subnet: p("10.0.0.4/30")},
		want: netsetup.Network{
			Bridge: "podbox0", Subnet: p("10.0.0.4/30"), Gateway: a("10.0.0.5"),
			MTU: 1500, StateRoot: "/run/podbox",
		},
	},
		{name: "bridge name too long", in: netsetup.Network{Bridge: "abcdefghijklmnop"}, wantErr: `bridge "abcdefghijklmnop": interface name longer than 15`},
		{name: "bridge name with slash", in: netsetup.Network{Bridge: "br/0"}, wantErr: `bridge "br/0"`},
		{name: "bridge name with space", in: netsetup.Network{Bridge: "br 0"}, wantErr: `bridge "br 0"`},
		{name: "bridge name dot", in: netsetup.Network{Bridge: ".."}, wantErr: `bridge ".."`},
		{name: "IPv6 subnet", in: netsetup.Network{Subnet: p("fd00::/64")}, wantErr: "subnet fd00::/64: not IPv4"},
		{name: "host bits set", in: netsetup.Network{Subnet: p("10.89.3.4/16")}, wantErr: "subnet 10.89.3.4/16: host bits set (the network is 10.89.0.0/16)"},
		{name: "/31 too small", in: netsetup.Network{Subnet: p("10.0.0.0/31")}, wantErr: "subnet 10.0.0.0/31: too small"},
		{name: "/32 too small", in: netsetup.Network{Subnet: p("10.0.0.1/32")}, wantErr: "too small"},
		{name: "gateway outside subnet", in: netsetup.Network{Subnet: p("10.1.0.0/24"), Gateway: a("10.2.0.1")}, wantErr: "gateway 10.2.0.1: not in subnet 10.1.0.0/24"},
		{name: "gateway is network", in: netsetup.Network{Subnet: p("10.1.0.0/24"), Gateway: a("10.1.0.0")}, wantErr: "gateway 10.1.0.0: is the network or broadcast"},
		{name: "gateway is broadcast", in: netsetup.Network{Subnet: p("10.1.0.0/24"), Gateway: a("10.1.0.255")}, wantErr: "gateway 10.1.0.255: is the network or broadcast"},
		{name: "gateway IPv6", in: netsetup.Network{Gateway: a("fd00::1")}, wantErr: "gateway fd00::1: not IPv4"},
		{name: "MTU too small", in: netsetup.Network{MTU: 67}, wantErr: "mtu 67: out of range"},
		{name: "MTU negative", in: netsetup.Network{MTU: -1}, wantErr: "mtu -1: out of range"},
		{name: "MTU too large", in: netsetup.Network{MTU: 65536}, wantErr: "mtu 65536: out of range"},
		{name: "relative state root", in: netsetup.Network{StateRoot: "run/podbox"}, wantErr: `state root "run/podbox": not an absolute path`},
		{name: "relative node netns", in: netsetup.Network{NodeNetNS: "netns/n1"}, wantErr: `node netns "netns/n1": not an absolute path`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.in.Resolve()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Resolve() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve(): %v", err)
			}
			if got != tt.want {
				t.Fatalf("Resolve() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// Bad arguments are refused before anything is touched, so these need no
// privileges: nothing may be created at the (nonexistent) paths below.
func TestSetupRejectsBadArguments(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	n := netsetup.Network{StateRoot: root, NodeNetNS: root + "/no-such-node"}
	tests := []struct {
		name, id, netns, wantErr string
		network                  netsetup.Network
	}{
		{name: "empty sandbox ID", id: "", netns: root + "/ns", wantErr: "sandbox: empty ID", network: n},
		{name: "slash in ID", id: "a/b", netns: root + "/ns", wantErr: `sandbox "a/b": ID contains`, network: n},
		{name: "ID too long", id: strings.Repeat("x", 241), netns: root + "/ns", wantErr: "ID longer than 240", network: n},
		{name: "relative netns", id: "web", netns: "ns", wantErr: `sandbox "web": netns "ns": not an absolute path`, network: n},
		{name: "bad network", id: "web", netns: root + "/ns", wantErr: "mtu 1: out of range", network: netsetup.Network{MTU: 1, StateRoot: root}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.network.Setup(ctx, tt.id, tt.netns); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Setup error = %v, want one containing %q", err, tt.wantErr)
			}
			if err := tt.network.Teardown(ctx, tt.id, tt.netns); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Teardown error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
	if err := netsetup.SetupLoopbackOnly(ctx, "relative/ns"); err == nil || !strings.Contains(err.Error(), `netns "relative/ns": not an absolute path`) {
		t.Errorf("SetupLoopbackOnly(relative) error = %v", err)
	}
	if _, err := (netsetup.Network{Bridge: "bad/name"}).EnsureBridge(ctx); err == nil || !strings.Contains(err.Error(), `bridge "bad/name"`) {
		t.Errorf("EnsureBridge(bad name) error = %v", err)
	}
}
