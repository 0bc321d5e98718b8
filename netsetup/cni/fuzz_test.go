package cni

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// FuzzParseNetwork checks --network's "cni:NAME" as a user or a CRI pod's
// annotation gives it. A mode without the prefix is not a CNI network; a
// name it accepts follows the CNI specification's rule (it becomes a file
// lookup and a cache directory name, so no '/' or "..") and the mode made
// from it parses back to it.
func FuzzParseNetwork(f *testing.F) {
	rule := regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)
	for _, s := range []string{"bridge", "cni:podnet", "cni:my_net-1.v2", "cni:", "cni:-x", "cni:a/b", "cni:a b", "cni:..", "cni:é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, mode string) {
		name, ok, err := ParseNetwork(mode)
		if ok != strings.HasPrefix(mode, NetworkPrefix) {
			t.Fatalf("ParseNetwork(%q): ok %v", mode, ok)
		}
		if !ok || err != nil {
			if name != "" {
				t.Fatalf("ParseNetwork(%q) = %q with %v, %v", mode, name, ok, err)
			}
			return
		}
		if !rule.MatchString(name) || name == ".." || name == "." {
			t.Fatalf("ParseNetwork(%q) accepted %q", mode, name)
		}
		if again, ok, err := ParseNetwork(NetworkPrefix + name); again != name || !ok || err != nil {
			t.Fatalf("ParseNetwork(%q) = %q, which reads back as %q, %v, %v", mode, name, again, ok, err)
		}
	})
}

// FuzzSplitBinPath checks --cni-bin-dir's splitting: no entry is empty or
// holds a separator, and the entries joined by ':' split to themselves (the
// form they are recorded in).
func FuzzSplitBinPath(f *testing.F) {
	for _, s := range []string{"/opt/cni/bin::/usr/lib/cni,/x", DefaultBinPath, "", ":", ",,a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		dirs := SplitBinPath(s)
		for _, d := range dirs {
			if d == "" || strings.ContainsAny(d, ":,") {
				t.Fatalf("SplitBinPath(%q) = %q", s, dirs)
			}
		}
		if again := SplitBinPath(strings.Join(dirs, ":")); !slices.Equal(again, dirs) {
			t.Fatalf("SplitBinPath(%q) = %q, which joined splits as %q", s, dirs, again)
		}
	})
}

// FuzzSandboxAddress decodes a result as the helper prints it, from a
// chain of plugins that may be anyone's, and picks the pod's address: no
// panic on interface indexes out of range, and the address picked is one of
// the result's.
func FuzzSandboxAddress(f *testing.F) {
	f.Add([]byte(`{"cniVersion":"1.0.0","interfaces":[{"name":"cni0"},{"name":"eth0","sandbox":"/run/netns/x"}],`+
		`"ips":[{"address":"10.0.0.1/24","interface":0},{"address":"fd00::5/64","interface":1},{"address":"10.0.0.5/24","gateway":"10.0.0.1","interface":1}]}`), "eth0")
	f.Add([]byte(`{"ips":[{"address":"10.0.0.5/24","interface":-1},{"address":"10.0.0.6/24","interface":7}]}`), "eth0")
	f.Add([]byte(`{}`), "")
	f.Fuzz(func(t *testing.T, b []byte, ifName string) {
		var r Result
		if json.Unmarshal(b, &r) != nil {
			return
		}
		addr, gw, ok := r.SandboxAddress(ifName)
		if !ok {
			return
		}
		if !slices.ContainsFunc(r.IPs, func(ip IPConfig) bool { return ip.Address == addr && ip.Gateway == gw }) {
			t.Fatalf("SandboxAddress(%q) of %q = %v, %v: not among the result's", ifName, b, addr, gw)
		}
	})
}
