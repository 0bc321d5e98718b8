// Package resolvconf owns what a sandbox's containers find in
// /etc/resolv.conf: the user's --dns, --dns-search and --dns-option where
// given, otherwise the node's own settings, with the loopback name servers
// of a local stub resolver (systemd-resolved's 127.0.0.53, a dnsmasq on
// 127.0.0.1) replaced by the servers that resolver forwards to, since a
// sandbox's loopback is its own and no resolver listens there.
//
// It only composes the file's text; writing it and mounting it into
// containers is the sandbox's.
package resolvconf

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
)

// Paths where the node's settings are read.
const (
	HostPath = "/etc/resolv.conf"
	// UpstreamPath is systemd-resolved's list of the servers it forwards
	// to, written whatever the stub resolver's own file says.
	UpstreamPath = "/run/systemd/resolve/resolv.conf"
)

// Config is a sandbox's DNS settings; an empty field means "as the node",
// unless Complete.
type Config struct {
	Servers  []netip.Addr `json:"servers,omitempty"`
	Searches []string     `json:"searches,omitempty"`
	Options  []string     `json:"options,omitempty"`
	// Complete says the fields are the whole file, and an empty one means
	// none: a CRI pod's DNSConfig, which Kubernetes composes in full
	// (dnsPolicy None may give servers alone) and which containerd writes
	// as it is.
	Complete bool `json:"complete,omitempty"`
}

// IsZero reports whether c sets nothing: the node's settings apply.
func (c Config) IsZero() bool {
	return !c.Complete && len(c.Servers) == 0 && len(c.Searches) == 0 && len(c.Options) == 0
}

// Validate checks c as resolv.conf can hold it.
func (c Config) Validate() error {
	for _, s := range c.Servers {
		if !s.IsValid() {
			return fmt.Errorf("--dns: invalid address")
		}
		if !oneWord(s.Zone()) {
			return fmt.Errorf("--dns %q: the zone is not one word", s)
		}
	}
	for _, d := range c.Searches {
		if d == "" || len(d) > 253 || !oneWord(d) || strings.HasPrefix(d, ".") || strings.Contains(d, "..") {
			return fmt.Errorf("--dns-search %q: not a domain name", d)
		}
	}
	for _, o := range c.Options {
		if o == "" || !oneWord(o) {
			return fmt.Errorf("--dns-option %q: want one option such as ndots:2", o)
		}
	}
	return nil
}

// oneWord reports whether s stays one word of a resolv.conf line, however
// a resolver splits it (they differ on "\r", "\v" and the like): no space
// or control character of any kind, and no ',', which separates the values
// of the flags and annotations.
func oneWord(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) || unicode.IsControl(r) })
}

// ParseServers parses --dns values.
func ParseServers(vals []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, v := range vals {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return nil, fmt.Errorf("--dns %q: not an IP address", v)
		}
		out = append(out, a)
	}
	return out, nil
}

// parsed is what a resolv.conf says.
type parsed struct {
	servers  []string
	searches []string
	options  []string
}

func parse(b []byte) parsed {
	var p parsed
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			p.servers = append(p.servers, f[1])
		case "search", "domain": // the last of them wins, as in the resolver
			p.searches = f[1:]
		case "options":
			p.options = append(p.options, f[1:]...)
		}
	}
	return p
}

func isLoopback(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.IsLoopback()
}

// Build composes the sandbox's resolv.conf from c and the node's files:
// host (/etc/resolv.conf) and upstream (UpstreamPath; nil when absent).
func Build(c Config, host, upstream []byte) []byte {
	if c.Complete {
		host, upstream = nil, nil
	}
	h := parse(host)
	var servers []string
	if len(c.Servers) > 0 {
		for _, s := range c.Servers {
			servers = append(servers, s.String())
		}
	} else {
		replaced := false
		for _, s := range h.servers {
			if !isLoopback(s) {
				servers = append(servers, s)
				continue
			}
			if !replaced && upstream != nil {
				for _, u := range parse(upstream).servers {
					if !isLoopback(u) {
						servers = append(servers, u)
					}
				}
				replaced = true
			}
		}
	}
	searches, options := h.searches, h.options
	if len(c.Searches) > 0 {
		searches = c.Searches
	}
	if len(c.Options) > 0 {
		options = c.Options
	}
	var b bytes.Buffer
	for _, s := range dedup(servers) {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(searches, " "))
	}
	if len(options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(options, " "))
	}
	return b.Bytes()
}

func dedup(s []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
