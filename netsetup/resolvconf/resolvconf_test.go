package resolvconf

import (
	"net/netip"
	"strings"
	"testing"
)

func TestBuild(t *testing.T) {
	stub := "# systemd-resolved's stub\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch corp.example\n"
	upstream := "nameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 127.0.0.1\n"
	for _, tc := range []struct {
		name           string
		c              Config
		host, upstream string
		want           string
	}{
		{"node's as it is", Config{}, "nameserver 10.255.255.53\nsearch a.example b.example\n", "",
			"nameserver 10.255.255.53\nsearch a.example b.example\n"},
		{"stub replaced by its upstream", Config{}, stub, upstream,
			"nameserver 10.0.0.2\nnameserver 10.0.0.3\nsearch corp.example\noptions edns0 trust-ad\n"},
		{"loopback without an upstream dropped", Config{}, "nameserver 127.0.0.1\nnameserver ::1\nnameserver 192.0.2.53\n", "",
			"nameserver 192.0.2.53\n"},
		{"user's servers, node's search", Config{Servers: []netip.Addr{netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("fd00::53")}}, stub, upstream,
			"nameserver 10.1.1.1\nnameserver fd00::53\nsearch corp.example\noptions edns0 trust-ad\n"},
		{"user's everything", Config{Servers: []netip.Addr{netip.MustParseAddr("10.1.1.1")}, Searches: []string{"svc.local"}, Options: []string{"ndots:2"}}, stub, upstream,
			"nameserver 10.1.1.1\nsearch svc.local\noptions ndots:2\n"},
		{"domain line, comments, duplicates", Config{}, "; comment\ndomain d.example\nnameserver 10.0.0.9\nnameserver 10.0.0.9\n", "",
			"nameserver 10.0.0.9\nsearch d.example\n"},
		{"no node file", Config{}, "", "", ""},
		{"complete: nothing of the node's", Config{Servers: []netip.Addr{netip.MustParseAddr("10.96.0.10")}, Complete: true}, stub, upstream,
			"nameserver 10.96.0.10\n"},
		{"complete and empty", Config{Complete: true}, stub, upstream, ""},
	} {
		var up []byte
		if tc.upstream != "" {
			up = []byte(tc.upstream)
		}
		if got := string(Build(tc.c, []byte(tc.host), up)); got != tc.want {
			t.Errorf("%s:\n%s\nwant\n%s", tc.name, got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		c    Config
		want string
	}{
		{Config{Searches: []string{"bad domain"}}, `--dns-search "bad domain"`},
		{Config{Searches: []string{".lead"}}, `--dns-search ".lead"`},
		{Config{Options: []string{"a b"}}, `--dns-option "a b"`},
		{Config{Options: []string{""}}, `--dns-option ""`},
	} {
		if err := c.c.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%+v) = %v, want %q", c.c, err, c.want)
		}
	}
	if err := (Config{Searches: []string{"svc.cluster.local"}, Options: []string{"ndots:5"}}).Validate(); err != nil {
		t.Error(err)
	}
	if _, err := ParseServers([]string{"10.0.0.1", "dns.example"}); err == nil || !strings.Contains(err.Error(), `--dns "dns.example": not an IP address`) {
		t.Errorf("ParseServers: %v", err)
	}
}

// A complete Config is never "as the node", even when it names nothing.
func TestIsZero(t *testing.T) {
	if !(Config{}).IsZero() || (Config{Complete: true}).IsZero() || (Config{Options: []string{"ndots:1"}}).IsZero() {
		t.Error("IsZero: want true only for a Config that sets nothing and is not complete")
	}
}
