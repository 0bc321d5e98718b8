package shimclient

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/ttrpc"

	sbapi "github.com/podbox/podbox/runtime/sandboxapi"
)

func TestSocketAddress(t *testing.T) {
	// Pinned value: the shim computes the same address independently of
	// any client, so a change here breaks every running shim's clients.
	got := SocketAddress("/run/podbox", "podbox", "abc")
	// sha256("podbox/abc"), first 32 hex digits (printf podbox/abc | sha256sum).
	if want := "unix:///run/podbox/s/a3a037e78d5ba52451a5939a37a5fdd3"; got != want {
		t.Fatalf("SocketAddress = %q, want %q", got, want)
	}
	if SocketAddress("/run/podbox", "podbox", "abc") != got {
		t.Fatal("SocketAddress is not deterministic")
	}
	if SocketAddress("/run/podbox", "k8s.io", "abc") == got {
		t.Fatal("SocketAddress ignores the namespace")
	}
	if SocketAddress("", "podbox", "abc") != got {
		t.Fatal("empty root is not the default root")
	}
}

func TestParseAddress(t *testing.T) {
	for _, tc := range []struct {
		out, want string
		ok        bool
	}{
		{"unix:///run/podbox/s/abc", "unix:///run/podbox/s/abc", true},
		{`{"version":2,"address":"unix:///x/y","protocol":"ttrpc"}`, "unix:///x/y", true},
		{`{"version":2,"address":"unix:///x/y","protocol":"grpc"}`, "", false},
		{"", "", false},
		{"unix://", "", false},
		{"something went wrong", "", false},
	} {
		got, err := parseAddress(tc.out)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseAddress(%q) = %q, %v; want %q, ok=%v", tc.out, got, err, tc.want, tc.ok)
		}
	}
}

func TestOptionsEnv(t *testing.T) {
	t.Setenv(EnvRuntime, "stale-runtime")
	t.Setenv(EnvPause, "")
	env := Options{Root: "/r", Runtime: "/usr/bin/runc", CgroupParent: "cg"}.Env()
	for _, want := range []string{"PODBOX_ROOT=/r", "PODBOX_RUNTIME=/usr/bin/runc", "PODBOX_CGROUP_PARENT=cg"} {
		if !slices.Contains(env, want) {
			t.Errorf("env lacks %s", want)
		}
	}
	for _, kv := range env {
		if kv == "PODBOX_RUNTIME=stale-runtime" || strings.HasPrefix(kv, "PODBOX_PAUSE=") {
			t.Errorf("env keeps %s", kv)
		}
	}
}

// fakeShim writes a shell script standing in for the shim's start: it
// records its arguments, working directory and environment and prints out.
func fakeShim(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "containerd-shim-podbox-v1")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStart(t *testing.T) {
	root := t.TempDir()
	rec := filepath.Join(t.TempDir(), "rec")
	shim := fakeShim(t, `echo "$@" > `+rec+`; pwd >> `+rec+`; echo "$PODBOX_ROOT $PODBOX_RUNTIME" >> `+rec+`; echo unix:///run/podbox/s/0123`)
	addr, err := Start(context.Background(), Options{Binary: shim, Root: root, ID: "sb1", Runtime: "runc"})
	if err != nil {
		t.Fatal(err)
	}
	if addr != "unix:///run/podbox/s/0123" {
		t.Errorf("address = %q", addr)
	}
	b, _ := os.ReadFile(rec)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	want := []string{"-namespace podbox -address " + root + "/podbox.sock -id sb1 start", root, root + " runc"}
	if !slices.Equal(lines, want) {
		t.Errorf("shim saw %q, want %q", lines, want)
	}
}

func TestStartFailureCarriesOutput(t *testing.T) {
	shim := fakeShim(t, `echo "pause binary not found" >&2; exit 1`)
	_, err := Start(context.Background(), Options{Binary: shim, Root: t.TempDir(), ID: "sb1"})
	if err == nil || !strings.Contains(err.Error(), "pause binary not found") {
		t.Fatalf("err = %v, want the shim's message", err)
	}
	shim = fakeShim(t, `echo hello`)
	_, err = Start(context.Background(), Options{Binary: shim, Root: t.TempDir(), ID: "sb1"})
	if err == nil || !strings.Contains(err.Error(), "hello") {
		t.Fatalf("err = %v, want the shim's output", err)
	}
}

type pingOnly struct {
	sbapi.TTRPCSandboxService
	pinged chan string
}

func (p *pingOnly) PingSandbox(_ context.Context, r *sbapi.PingRequest) (*sbapi.PingResponse, error) {
	p.pinged <- r.SandboxId
	return &sbapi.PingResponse{}, nil
}

func TestDial(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	svc := &pingOnly{pinged: make(chan string, 1)}
	sbapi.RegisterTTRPCSandboxService(srv, svc)
	go srv.Serve(context.Background(), l)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, "unix://"+sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Sandbox.PingSandbox(ctx, &sbapi.PingRequest{SandboxId: "sb1"}); err != nil {
		t.Fatal(err)
	}
	if got := <-svc.pinged; got != "sb1" {
		t.Errorf("shim saw sandbox %q", got)
	}
	if _, err := Dial(ctx, "unix://"+sock+"-missing"); err == nil {
		t.Error("Dial of a missing socket succeeded")
	}
}

// TestLaunch checks the in-process bootstrap: the serving shim gets start's
// command line without the action, the root as working directory and
// PODBOX_ROOT, and the listening socket as fd 3; its stderr goes to the log
// beside the socket; and a second Launch for a served group starts nothing.
func TestLaunch(t *testing.T) {
	root := t.TempDir()
	rec := filepath.Join(t.TempDir(), "rec")
	shim := fakeShim(t, `{ echo "$@"; pwd; echo "$PODBOX_ROOT"; readlink /proc/$$/fd/3; } > `+rec+`.tmp; mv `+rec+`.tmp `+rec+`; echo to-the-log >&2`)
	o := Options{Binary: shim, Root: root, ID: "sb1", Runtime: "runc"}
	addr, err := Launch(o)
	if err != nil {
		t.Fatal(err)
	}
	if want := SocketAddress(root, Namespace, "sb1"); addr != want {
		t.Errorf("address = %q, want %q", addr, want)
	}
	var b []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if b, err = os.ReadFile(rec); err == nil {
			break
		}
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 4 || lines[0] != "-namespace podbox -address "+root+"/podbox.sock -id sb1" ||
		lines[1] != root || lines[2] != root || !strings.HasPrefix(lines[3], "socket:") {
		t.Fatalf("serving shim saw %q", lines)
	}
	path, _ := SocketPath(addr)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(path + ".log"); strings.Contains(string(b), "to-the-log") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the shim's stderr did not reach its log file")
		}
	}

	// A live listener on the socket: Launch must leave it be.
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	os.Remove(rec)
	if addr2, err := Launch(o); err != nil || addr2 != addr {
		t.Fatalf("second Launch = %q, %v; want %q", addr2, err, addr)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Stat(rec); err == nil {
		t.Error("second Launch started a shim although one serves")
	}
}
