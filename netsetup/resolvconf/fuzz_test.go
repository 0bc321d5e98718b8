package resolvconf

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// FuzzBuild composes a sandbox's resolv.conf from arbitrary node files and
// user settings (servers, searches and options each separated by ","). The
// node's files are whatever the host holds, and the settings come from flags,
// a CRI pod or a manifest. Build must never panic, and for settings that
// Validate accepts, what it writes is only nameserver, search and options
// lines. Without servers of the user's,
// no name server in it is a loopback address: the sandbox's loopback is its
// own, no resolver listens there. And the file says what it was built from: read back, it has the
// user's searches and options as given, and built again from it alone it
// is the same file.
func FuzzBuild(f *testing.F) {
	stub := "# systemd-resolved's stub\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch corp.example\n"
	upstream := "nameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 127.0.0.1\n"
	f.Add([]byte("nameserver 10.255.255.53\nsearch a.example b.example\n"), []byte(nil), "", "", "", false)
	f.Add([]byte(stub), []byte(upstream), "", "", "", false)
	f.Add([]byte("nameserver 127.0.0.1\nnameserver ::1\nnameserver 192.0.2.53\n"), []byte(nil), "", "", "", false)
	f.Add([]byte(stub), []byte(upstream), "10.1.1.1,fd00::53", "", "", false)
	f.Add([]byte(stub), []byte(upstream), "10.1.1.1", "svc.local", "ndots:2", false)
	f.Add([]byte("; comment\ndomain d.example\nnameserver 10.0.0.9\nnameserver 10.0.0.9\n"), []byte(nil), "", "", "", false)
	f.Add([]byte(stub), []byte(upstream), "10.96.0.10", "", "", true)
	f.Add([]byte(stub), []byte(upstream), "", "", "", true)
	f.Add([]byte("nameserver ::ffff:127.0.0.1\noptions a\noptions b c\n"), []byte("nameserver 127.0.0.2\n"), "", "bad domain,.lead", "a b,", false)
	f.Fuzz(func(t *testing.T, host, up []byte, servers, searches, options string, complete bool) {
		c := Config{Searches: split(searches), Options: split(options), Complete: complete}
		for _, s := range split(servers) {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return
			}
			c.Servers = append(c.Servers, a)
		}
		out := Build(c, host, up)
		// Sandbox creates validate the user's settings before they are
		// recorded; Build is not asked to make sense of others.
		if c.Validate() != nil {
			return
		}
		if len(out) > 0 && out[len(out)-1] != '\n' {
			t.Fatalf("Build(%+v, %q, %q) = %q: not whole lines", c, host, up, out)
		}
		p := parse(out)
		for line := range strings.Lines(string(out)) {
			if !strings.HasPrefix(line, "nameserver ") && !strings.HasPrefix(line, "search ") && !strings.HasPrefix(line, "options ") {
				t.Fatalf("Build(%+v, %q, %q) = %q: line %q", c, host, up, out, line)
			}
		}
		if len(c.Servers) == 0 && slices.ContainsFunc(p.servers, isLoopback) {
			t.Fatalf("Build(%+v, %q, %q) = %q: a loopback name server", c, host, up, out)
		}
		if slices.ContainsFunc(c.Servers, netip.Addr.IsLoopback) {
			return // the user's own choice, which a second Build would drop
		}
		if len(c.Searches) > 0 && !slices.Equal(p.searches, c.Searches) {
			t.Fatalf("Build(%+v, %q, %q) = %q: searches read back as %q", c, host, up, out, p.searches)
		}
		if len(c.Options) > 0 && !slices.Equal(p.options, c.Options) {
			t.Fatalf("Build(%+v, %q, %q) = %q: options read back as %q", c, host, up, out, p.options)
		}
		if again := Build(Config{}, out, nil); !bytes.Equal(again, out) {
			t.Fatalf("Build(%+v, %q, %q) = %q, which built again is %q", c, host, up, out, again)
		}
	})
}

// split is a list flag's values, comma-separated, or none.
func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
