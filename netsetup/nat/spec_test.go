package nat

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	ip := netip.MustParseAddr("10.100.0.2")
	for _, tc := range []struct {
		spec string
		want []Mapping
	}{
		{"8080:80", []Mapping{{HostPort: 8080, Port: 80, Protocol: "tcp"}}},
		{"53:53/udp", []Mapping{{HostPort: 53, Port: 53, Protocol: "udp"}}},
		{"10.100.0.2:8080:80/tcp", []Mapping{{HostIP: ip, HostPort: 8080, Port: 80, Protocol: "tcp"}}},
		{"0.0.0.0:1:65535", []Mapping{{HostPort: 1, Port: 65535, Protocol: "tcp"}}},
		{"8000-8002:9000-9002", []Mapping{
			{HostPort: 8000, Port: 9000, Protocol: "tcp"}, {HostPort: 8001, Port: 9001, Protocol: "tcp"}, {HostPort: 8002, Port: 9002, Protocol: "tcp"}}},
	} {
		got, err := Parse(tc.spec)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("Parse(%q) = %v, %v; want %v", tc.spec, got, err, tc.want)
		}
		if len(got) == 1 {
			back, err := Parse(got[0].String())
			if err != nil || !slices.Equal(back, got) {
				t.Errorf("Parse(%q.String()=%q) = %v, %v", tc.spec, got[0].String(), back, err)
			}
		}
	}
	for spec, want := range map[string]string{
		"80":                  "want [HOSTIP:]HOSTPORT:PORT",
		"0:80":                `host port "0": want a number from 1 to 65535`,
		"8080:65536":          `port "65536"`,
		"8080:80/sctp":        `protocol "sctp"`,
		"8010-8000:80-90":     "reversed",
		"8000-8010:80-81":     "differ in length",
		"::1:8080:80":         "want [HOSTIP:]HOSTPORT:PORT",
		"example.com:8080:80": `host IP "example.com"`,
		"a:b":                 `host port "a"`,
		"1.2.3.4:8080:80:9":   "want [HOSTIP:]HOSTPORT:PORT",
		"8080:-80":            `port ""`,
	} {
		_, err := Parse(spec)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), spec) {
			t.Errorf("Parse(%q): error %v, want one naming the value and saying %q", spec, err, want)
		}
	}
}

func TestParseAllRefusesDuplicates(t *testing.T) {
	if _, err := ParseAll([]string{"8080:80", "10.0.0.1:8080:81"}); err == nil || !strings.Contains(err.Error(), "8080/tcp is published twice") {
		t.Errorf("overlapping host ports: %v", err)
	}
	ms, err := ParseAll([]string{"8080:80", "8080:80/udp", "10.0.0.1:9090:80", "10.0.0.2:9090:80"})
	if err != nil || len(ms) != 4 {
		t.Errorf("distinct host ports refused: %v, %v", ms, err)
	}
}

func TestComment(t *testing.T) {
	m := Mapping{HostIP: netip.MustParseAddr("10.1.2.3"), HostPort: 80, Port: 8080, Protocol: "udp"}
	pod := netip.MustParseAddr("10.89.0.7")
	id := strings.Repeat("ab", 32)
	ud := userdataComment(comment(id, m, pod))
	p, ok := parseComment(ud)
	if !ok || p.SandboxID != id || p.Mapping != m || p.PodIP != pod {
		t.Errorf("comment round trip: %+v, %v", p, ok)
	}
	if _, ok := parseComment(userdataComment("someone else's rule")); ok {
		t.Error("a foreign comment was read as podbox's")
	}
}
