package chain

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podbox/podbox/netsetup/cni"
)

// fakePlugin is a CNI plugin in shell: it logs "COMMAND NAME" to log and
// answers ADD with an address on the sandbox's eth0; a plugin named
// "failing" fails its ADD.
const fakePlugin = `#!/bin/sh
conf=$(cat)
name=$(printf '%s' "$conf" | sed -n 's/.*"name":"\([^"]*\)".*/\1/p')
echo "$CNI_COMMAND $(basename "$0")" >> "$FAKE_LOG"
case "$CNI_COMMAND" in
ADD)
	if [ "$(basename "$0")" = failing ]; then
		echo '{"cniVersion":"1.0.0","code":11,"msg":"no addresses left"}'
		exit 1
	fi
	echo '{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"'"$CNI_NETNS"'"}],"ips":[{"address":"10.9.0.2/24","gateway":"10.9.0.1","interface":0}],"dns":{"nameservers":["10.9.0.53"]}}'
	;;
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}' ;;
esac
`

type env struct {
	bin, conf, cache, log string
}

func newEnv(t *testing.T) env {
	t.Helper()
	dir := t.TempDir()
	e := env{bin: filepath.Join(dir, "bin"), conf: filepath.Join(dir, "net.d"), cache: filepath.Join(dir, "cache"), log: filepath.Join(dir, "log")}
	for _, d := range []string{e.bin, e.conf} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"fake", "fake2", "failing"} {
		if err := os.WriteFile(filepath.Join(e.bin, p), []byte(fakePlugin), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("FAKE_LOG", e.log)
	return e
}

func (e env) writeList(t *testing.T, file, name string, plugins ...map[string]any) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": name, "plugins": plugins})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.conf, file), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (e env) req(op, network string) cni.Request {
	return cni.Request{Op: op, NetNS: "/run/netns/test", Attachment: cni.Attachment{
		Network: network, ConfDir: e.conf, BinDirs: []string{e.bin}, CacheDir: e.cache, ContainerID: "sb1", IfName: "eth0"}}
}

func (e env) calls(t *testing.T) string {
	t.Helper()
	b, _ := os.ReadFile(e.log)
	os.Remove(e.log)
	return strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", ", ")
}

func plugin(typ string) map[string]any { return map[string]any{"type": typ} }

func TestAddCheckDel(t *testing.T) {
	e := newEnv(t)
	e.writeList(t, "10-podnet.conflist", "podnet", plugin("fake"), plugin("fake2"))
	res, err := Run(context.Background(), e.req(cni.OpAdd, "podnet"))
	if err != nil {
		t.Fatal(err)
	}
	if addr, gw, ok := res.SandboxAddress("eth0"); !ok || addr.String() != "10.9.0.2/24" || gw.String() != "10.9.0.1" {
		t.Errorf("ADD result: %+v", res)
	}
	if len(res.DNS.Nameservers) != 1 {
		t.Errorf("ADD result's DNS: %+v", res.DNS)
	}
	if got := e.calls(t); got != "ADD fake, ADD fake2" {
		t.Errorf("ADD ran %q", got)
	}
	if _, err := Run(context.Background(), e.req(cni.OpCheck, "podnet")); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	if got := e.calls(t); got != "CHECK fake, CHECK fake2" {
		t.Errorf("CHECK ran %q", got)
	}
	// DEL from the cache, though the list has changed meanwhile.
	e.writeList(t, "10-podnet.conflist", "podnet", plugin("fake"))
	if _, err := Run(context.Background(), e.req(cni.OpDel, "podnet")); err != nil {
		t.Fatal(err)
	}
	if got := e.calls(t); got != "DEL fake2, DEL fake" {
		t.Errorf("DEL ran %q, want the cached list's plugins in reverse", got)
	}
	if entries, _ := os.ReadDir(filepath.Join(e.cache, "results")); len(entries) != 0 {
		t.Errorf("cache after DEL: %v", entries)
	}
	// CHECK of what is not attached names why.
	if _, err := Run(context.Background(), e.req(cni.OpCheck, "podnet")); err == nil || !strings.Contains(err.Error(), "cached") {
		t.Errorf("CHECK after DEL: %v", err)
	}
	// A second DEL, with nothing cached, runs the list's DEL again
	// (harmless by the CNI specification) and succeeds.
	if _, err := Run(context.Background(), e.req(cni.OpDel, "podnet")); err != nil {
		t.Errorf("second DEL: %v", err)
	}
	// And with neither cache nor list there is nothing to do.
	os.Remove(filepath.Join(e.conf, "10-podnet.conflist"))
	e.calls(t)
	if _, err := Run(context.Background(), e.req(cni.OpDel, "podnet")); err != nil || e.calls(t) != "" {
		t.Errorf("DEL of nothing: %v", err)
	}
}

// An ADD that fails part way undoes the plugins before the failing one.
func TestAddFailureUndoes(t *testing.T) {
	for _, tc := range []struct {
		name, second, wantErr, wantCalls string
	}{
		{"plugin fails", "failing", "no addresses left", "ADD fake, ADD failing, DEL failing, DEL fake"},
		{"plugin missing", "no-such-plugin", `failed to find plugin "no-such-plugin"`, "ADD fake, DEL fake"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.writeList(t, "10-podnet.conflist", "podnet", plugin("fake"), plugin(tc.second))
			_, err := Run(context.Background(), e.req(cni.OpAdd, "podnet"))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ADD: %v, want an error with %q", err, tc.wantErr)
			}
			if got := e.calls(t); got != tc.wantCalls {
				t.Errorf("plugins ran %q, want %q", got, tc.wantCalls)
			}
			if entries, _ := os.ReadDir(filepath.Join(e.cache, "results")); len(entries) != 0 {
				t.Errorf("cache after a failed ADD: %v", entries)
			}
		})
	}
}

func TestPortMappingsNeedCapability(t *testing.T) {
	e := newEnv(t)
	e.writeList(t, "10-podnet.conflist", "podnet", plugin("fake"))
	req := e.req(cni.OpAdd, "podnet")
	req.PortMappings = []cni.PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}}
	if _, err := Run(context.Background(), req); err == nil || !strings.Contains(err.Error(), "portMappings") {
		t.Fatalf("ADD with ports and no portmap: %v", err)
	}
	if got := e.calls(t); got != "" {
		t.Errorf("plugins ran %q before the refusal", got)
	}
	e.writeList(t, "10-podnet.conflist", "podnet", plugin("fake"), map[string]any{"type": "fake2", "capabilities": map[string]bool{"portMappings": true}})
	if _, err := Run(context.Background(), req); err != nil {
		t.Fatalf("ADD with ports and a plugin that takes them: %v", err)
	}
}

func TestLoad(t *testing.T) {
	e := newEnv(t)
	if _, err := Load(e.conf, "podnet"); err == nil || !strings.Contains(err.Error(), "has no configuration files") {
		t.Errorf("empty directory: %v", err)
	}
	if _, err := Load(filepath.Join(e.conf, "missing"), "podnet"); err == nil {
		t.Error("a missing directory loads")
	}
	os.WriteFile(filepath.Join(e.conf, "05-broken.conflist"), []byte(`{"name": "broken", "plugins": [`), 0o644)
	e.writeList(t, "10-podnet.conflist", "podnet", plugin("fake"))
	os.WriteFile(filepath.Join(e.conf, "20-single.conf"), []byte(`{"cniVersion": "1.0.0", "name": "single", "type": "fake"}`), 0o644)
	e.writeList(t, "30-empty.conflist", "empty")
	// A broken file does not hide the others.
	if l, err := Load(e.conf, "podnet"); err != nil || l.Name != "podnet" {
		t.Errorf("podnet beside a broken file: %v", err)
	}
	if l, err := Load(e.conf, "single"); err != nil || len(l.Plugins) != 1 {
		t.Errorf("a single-plugin .conf: %v", err)
	}
	_, err := Load(e.conf, "nope")
	if err == nil || !strings.Contains(err.Error(), `no CNI network named "nope" in `+e.conf) || !strings.Contains(err.Error(), "05-broken.conflist") {
		t.Errorf("unknown name: %v; want the name, the directory and the broken file", err)
	}
	if _, err := Load(e.conf, "empty"); err == nil || !strings.Contains(err.Error(), "30-empty.conflist") {
		t.Errorf("a list without plugins: %v", err)
	}
}

func TestRunRefusesBadRequests(t *testing.T) {
	e := newEnv(t)
	for name, req := range map[string]cni.Request{
		"bad name":     e.req(cni.OpAdd, "a/b"),
		"unknown op":   e.req("frob", "podnet"),
		"no container": {Op: cni.OpAdd, Attachment: cni.Attachment{Network: "podnet", CacheDir: e.cache, IfName: "eth0"}},
		"add no netns": func() cni.Request { r := e.req(cni.OpAdd, "podnet"); r.NetNS = ""; return r }(),
	} {
		if _, err := Run(context.Background(), req); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
