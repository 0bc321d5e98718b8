// Package shimclient owns the client side of the shim protocol
// (docs/shim-protocol.md): starting a sandbox's containerd-shim-podbox-v1 the
// way containerd starts any v2 shim, computing the socket a shim serves, and
// dialing it to get containerd's own Sandbox and Task API clients.
//
// It never does sandbox work itself: everything it asks for is done by the
// shim, so the podbox CLI exercises exactly the path containerd uses.
package shimclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	sbapi "github.com/containerd/containerd/api/runtime/sandbox/v1"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/ttrpc"
)

// Namespace is the containerd namespace the CLI starts its shims in; with
// containerd the namespace is containerd's (k8s.io, default, …).
const Namespace = "podbox"

// DefaultRoot is the state root when none is given.
const DefaultRoot = "/run/podbox"

// Environment variables the shim reads; Start passes them through.
const (
	EnvRoot         = "PODBOX_ROOT"
	EnvRuntime      = "PODBOX_RUNTIME"
	EnvCgroupParent = "PODBOX_CGROUP_PARENT"
	EnvPause        = "PODBOX_PAUSE"
)

// SocketAddress is the ttrpc address of the shim serving group in namespace:
// unix://ROOT/s/HASH, HASH being the first 32 hex digits of
// sha256(NAMESPACE/GROUP). The shim and every client compute it here, so
// they cannot disagree; a hash keeps the path short (sun_path holds 108
// bytes) whatever the group's length, and keeps sockets out of bundles,
// which containerd deletes while a grouped shim still runs.
func SocketAddress(root, namespace, group string) string {
	if root == "" {
		root = DefaultRoot
	}
	sum := sha256.Sum256([]byte(namespace + "/" + group))
	return "unix://" + filepath.Join(root, "s", hex.EncodeToString(sum[:])[:32])
}

// Options say which shim to start and for which sandbox.
type Options struct {
	// Binary is the shim executable (containerd-shim-podbox-v1).
	Binary string
	// Root is the state root; the shim runs with it as working directory and
	// gets it as PODBOX_ROOT.
	Root string
	// Namespace defaults to Namespace.
	Namespace string
	// ID is the sandbox ID; with no config.json in Root it is also the group.
	ID string
	// Runtime, CgroupParent and Pause become PODBOX_RUNTIME,
	// PODBOX_CGROUP_PARENT and PODBOX_PAUSE when set.
	Runtime      string
	CgroupParent string
	Pause        string
	// Debug adds -debug.
	Debug bool
}

// Args is the shim's command line for start, as containerd builds it.
func (o Options) Args() []string {
	ns := o.Namespace
	if ns == "" {
		ns = Namespace
	}
	args := []string{"-namespace", ns, "-address", filepath.Join(o.Root, "podbox.sock"), "-id", o.ID}
	if o.Debug {
		args = append(args, "-debug")
	}
	return append(args, "start")
}

// Env is the shim's environment: ours, with the PODBOX_* settings replaced by
// the ones in o (so a stale variable in the caller's environment never
// disagrees with an explicit flag).
func (o Options) Env() []string {
	set := map[string]string{
		EnvRoot:         o.Root,
		EnvRuntime:      o.Runtime,
		EnvCgroupParent: o.CgroupParent,
		EnvPause:        o.Pause,
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ours := set[k]; !ours {
			env = append(env, kv)
		}
	}
	for _, k := range []string{EnvRoot, EnvRuntime, EnvCgroupParent, EnvPause} {
		if v := set[k]; v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// Start runs `SHIM … start` for sandbox o.ID and returns the address the
// serving shim listens on. The start process exits once the serving shim
// (its detached child) is up, or at once if a live shim already serves the
// group.
func Start(ctx context.Context, o Options) (string, error) {
	if o.Binary == "" || o.Root == "" || o.ID == "" {
		return "", errors.New("start shim: binary, root and ID are required")
	}
	cmd := exec.CommandContext(ctx, o.Binary, o.Args()...)
	cmd.Dir = o.Root
	cmd.Env = o.Env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := strings.TrimSpace(stdout.String())
	if err != nil {
		return "", fmt.Errorf("start shim %s: %w: %s", o.Binary, err, shimOutput(stdout.String(), stderr.String()))
	}
	addr, perr := parseAddress(out)
	if perr != nil {
		return "", fmt.Errorf("start shim %s: %w: %s", o.Binary, perr, shimOutput(stdout.String(), stderr.String()))
	}
	return addr, nil
}

// shimOutput is what the shim said, on one line, for an error message.
func shimOutput(stdout, stderr string) string {
	s := strings.TrimSpace(strings.TrimSpace(stdout) + " " + strings.TrimSpace(stderr))
	if s == "" {
		return "(no output)"
	}
	return strings.Join(strings.Fields(s), " ")
}

// parseAddress reads start's output: the plain address podbox's shim prints,
// or the JSON bootstrap parameters newer containerd shims print, so the
// client also works with a shim that chose the latter.
func parseAddress(out string) (string, error) {
	if strings.HasPrefix(out, "{") {
		var p struct {
			Address  string `json:"address"`
			Protocol string `json:"protocol"`
		}
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			return "", fmt.Errorf("parse bootstrap parameters: %w", err)
		}
		if p.Protocol != "" && p.Protocol != "ttrpc" {
			return "", fmt.Errorf("shim speaks %q, not ttrpc", p.Protocol)
		}
		out = p.Address
	}
	if !strings.HasPrefix(out, "unix://") || len(out) == len("unix://") {
		return "", fmt.Errorf("no unix:// address in the shim's output")
	}
	return out, nil
}

// Client is a connection to one shim.
type Client struct {
	Sandbox sbapi.TTRPCSandboxService
	Task    taskapi.TaskService
	conn    *ttrpc.Client
}

// Dial connects to the shim at address (unix://PATH or a plain path).
func Dial(ctx context.Context, address string) (*Client, error) {
	path := strings.TrimPrefix(address, "unix://")
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("dial shim %s: %w", address, err)
	}
	c := ttrpc.NewClient(conn)
	return &Client{Sandbox: sbapi.NewTTRPCSandboxClient(c), Task: taskapi.NewTaskClient(c), conn: c}, nil
}

// Close closes the connection; the shim keeps running.
func (c *Client) Close() error {
	err := c.conn.Close()
	if errors.Is(err, ttrpc.ErrClosed) {
		return nil
	}
	return err
}
