package cni

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseNetwork(t *testing.T) {
	for _, tc := range []struct {
		mode, name string
		ok, bad    bool
	}{
		{"bridge", "", false, false},
		{"cni:podnet", "podnet", true, false},
		{"cni:my_net-1.v2", "my_net-1.v2", true, false},
		{"cni:", "", true, true},
		{"cni:-x", "", true, true},
		{"cni:a/b", "", true, true},
		{"cni:a b", "", true, true},
	} {
		name, ok, err := ParseNetwork(tc.mode)
		if ok != tc.ok || (err != nil) != tc.bad || (!tc.bad && name != tc.name) {
			t.Errorf("ParseNetwork(%q) = %q, %v, %v", tc.mode, name, ok, err)
		}
	}
}

func TestSplitBinPath(t *testing.T) {
	got := SplitBinPath("/opt/cni/bin::/usr/lib/cni,/x")
	if strings.Join(got, "|") != "/opt/cni/bin|/usr/lib/cni|/x" {
		t.Errorf("SplitBinPath: %q", got)
	}
}

func TestSandboxAddress(t *testing.T) {
	zero, one := 0, 1
	r := Result{
		Interfaces: []Interface{{Name: "cni0"}, {Name: "eth0", Sandbox: "/run/netns/x"}},
		IPs: []IPConfig{
			{Address: netip.MustParsePrefix("10.0.0.1/24"), Interface: &zero}, // the bridge's
			{Address: netip.MustParsePrefix("fd00::5/64"), Interface: &one},
			{Address: netip.MustParsePrefix("10.0.0.5/24"), Gateway: netip.MustParseAddr("10.0.0.1"), Interface: &one},
		},
	}
	addr, gw, ok := r.SandboxAddress("eth0")
	if !ok || addr.String() != "10.0.0.5/24" || gw.String() != "10.0.0.1" {
		t.Errorf("SandboxAddress = %v, %v, %v; want the sandbox's IPv4 address", addr, gw, ok)
	}
	if _, _, ok := (&Result{}).SandboxAddress("eth0"); ok {
		t.Error("an empty result has an address")
	}
}

// Run passes the request on stdin, reads the result, and turns the
// helper's stderr into the error.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	helper := filepath.Join(dir, "helper")
	script := `#!/bin/sh
req=$(cat)
case "$req" in
*'"op":"add"'*) echo '{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.2/16"}]}' ;;
*'"op":"del"'*) exit 0 ;;
*) echo 'plugin type="bridge" failed (check): no eth0' >&2; exit 1 ;;
esac
`
	if err := os.WriteFile(helper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	req := Request{Attachment: Attachment{Network: "podnet"}}
	req.Op = OpAdd
	res, err := Run(context.Background(), helper, nil, req)
	if err != nil || len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.1.0.2/16" {
		t.Fatalf("add: %+v, %v", res, err)
	}
	req.Op = OpDel
	if res, err := Run(context.Background(), helper, nil, req); err != nil || res != nil {
		t.Fatalf("del: %+v, %v", res, err)
	}
	req.Op = OpCheck
	_, err = Run(context.Background(), helper, nil, req)
	if err == nil || err.Error() != `CNI network "podnet": check: plugin type="bridge" failed (check): no eth0` {
		t.Fatalf("check: %v", err)
	}
	if _, err := Run(context.Background(), filepath.Join(dir, "missing"), nil, req); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("a missing helper: %v", err)
	}
}
