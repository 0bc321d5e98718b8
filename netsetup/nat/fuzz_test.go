package nat

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// parseSeeds are the -p values of TestParse and TestParseAllRefusesDuplicates,
// accepted and refused.
var parseSeeds = []string{
	"8080:80", "53:53/udp", "10.100.0.2:8080:80/tcp", "0.0.0.0:1:65535", "8000-8002:9000-9002",
	"1.2.3.4:1-3:4-6/udp", "65535:1/tcp", "10.0.0.1:8080:81",
	"80", "0:80", "0:0", "::", "8080:65536", "8080:80/sctp", "8010-8000:80-90", "8000-8010:80-81",
	"::1:8080:80", "example.com:8080:80", "a:b", "1.2.3.4:8080:80:9", "8080:-80", "1-65535:1-65535/udp",
}

// FuzzParse checks what Parse accepts of a -p value, which comes from a
// user's command line or a manifest's hostPort and hostIP: every mapping
// has ports in 1-65535, tcp or udp, an IPv4 host address or none; the host
// and container ranges have one length (mapping i is HOSTLO+i to LO+i); and
// every mapping prints, with String, as a -p value that parses back to
// itself, since that is how it is recorded and shown.
func FuzzParse(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		ms, err := Parse(spec)
		if err != nil {
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", spec)) {
				t.Fatalf("Parse(%q): error %q does not name the value", spec, err)
			}
			return
		}
		if len(ms) == 0 || len(ms) > 65535 {
			t.Fatalf("Parse(%q) = %d mappings", spec, len(ms))
		}
		first := ms[0]
		for i, m := range ms {
			if m.HostPort == 0 || m.Port == 0 || (m.Protocol != "tcp" && m.Protocol != "udp") {
				t.Fatalf("Parse(%q) accepted %+v", spec, m)
			}
			if m.HostIP.IsValid() && (!m.HostIP.Is4() || m.HostIP.IsUnspecified()) {
				t.Fatalf("Parse(%q): host IP %v, want an IPv4 address other than 0.0.0.0, or none", spec, m.HostIP)
			}
			if m.HostIP != first.HostIP || m.Protocol != first.Protocol ||
				int(m.HostPort) != int(first.HostPort)+i || int(m.Port) != int(first.Port)+i {
				t.Fatalf("Parse(%q): mapping %d is %+v after %+v: the ranges differ", spec, i, m, first)
			}
		}
		// A range of 65535 is a valid input: the round trip is checked on
		// its ends and middle.
		for _, m := range []Mapping{first, ms[len(ms)/2], ms[len(ms)-1]} {
			if back, err := Parse(m.String()); err != nil || len(back) != 1 || back[0] != m {
				t.Fatalf("Parse(%q): %+v does not round-trip: %v %v", spec, m, back, err)
			}
		}
	})
}

// FuzzParseAll checks the duplicate rule over three -p values: whatever
// ParseAll accepts is every value's mappings in order, no two of which
// claim one host port, and a refusal is either a value Parse refuses or a
// host port given twice. Two sandboxes' rules must never fight over a port.
func FuzzParseAll(f *testing.F) {
	f.Add("8080:80", "10.0.0.1:8080:81", "")
	f.Add("8080:80", "8080:80/udp", "10.0.0.1:9090:80")
	f.Add("8000-8002:9000-9002", "8002:1", "10.0.0.2:9090:80")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		specs := []string{a, b, c}
		ms, err := ParseAll(specs)
		var want []Mapping
		for _, s := range specs {
			one, perr := Parse(s)
			if perr != nil {
				if err == nil {
					t.Fatalf("ParseAll(%q) accepted %q, which Parse refuses: %v", specs, s, perr)
				}
				return
			}
			want = append(want, one...)
		}
		if err != nil {
			if !strings.Contains(err.Error(), "published twice") {
				t.Fatalf("ParseAll(%q): %v, but every value parses", specs, err)
			}
			return
		}
		if !slices.Equal(ms, want) {
			t.Fatalf("ParseAll(%q) = %v, want %v", specs, ms, want)
		}
		// Pairs that can overlap share a host port and protocol: grouped
		// so, the check stays linear in three ranges of 65535.
		type port struct {
			n     uint16
			proto string
		}
		held := map[port][]Mapping{}
		for _, m := range ms {
			k := port{m.HostPort, m.Protocol}
			for _, o := range held[k] {
				if m.Overlaps(o) {
					t.Fatalf("ParseAll(%q) accepted %v and %v, which claim one host port", specs, o, m)
				}
			}
			held[k] = append(held[k], m)
		}
	})
}

// FuzzParseComment feeds parseComment arbitrary rule userdata: it reads the
// comments of every rule in podbox's nftables table, which any root process
// can add to. It must never panic; a comment it reads as podbox's names a
// sandbox and one mapping, and written again (comment) reads back the same.
func FuzzParseComment(f *testing.F) {
	id := strings.Repeat("ab", 32)
	m := Mapping{HostIP: netip.MustParseAddr("10.1.2.3"), HostPort: 80, Port: 8080, Protocol: "udp"}
	f.Add(userdataComment(comment(id, m, netip.MustParseAddr("10.89.0.7"))))
	f.Add(userdataComment(comment("x", Mapping{HostPort: 1, Port: 2, Protocol: "tcp"}, netip.MustParseAddr("10.0.0.2"))))
	f.Add(userdataComment("someone else's rule"))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 3, 'a', 'b', 'c'})
	f.Fuzz(func(t *testing.T, ud []byte) {
		p, ok := parseComment(ud)
		if !ok {
			return
		}
		if p.SandboxID == "" || strings.ContainsFunc(p.SandboxID, unicode.IsSpace) || !p.PodIP.IsValid() {
			t.Fatalf("parseComment(%q) = %+v", ud, p)
		}
		back, ok := parseComment(userdataComment(comment(p.SandboxID, p.Mapping, p.PodIP)))
		if !ok || back != p {
			t.Fatalf("parseComment(%q) = %+v, which written again reads as %+v, %v", ud, p, back, ok)
		}
	})
}
