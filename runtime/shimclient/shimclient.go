// Package shimclient owns the client side of the shim protocol
// (docs/shim-protocol.md): starting a sandbox's containerd-shim-podbox-v1 the
// way containerd starts any v2 shim (Start), or doing that `start` step's
// bootstrap in the calling process (Launch, Bootstrap, which the shim's own
// `start` runs too), computing the socket a shim serves, and dialing it to
// get containerd's own Sandbox and Task API clients.
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
	"syscall"
	"time"

	"github.com/containerd/ttrpc"

	sbapi "github.com/podbox/podbox/runtime/sandboxapi"
	"github.com/podbox/podbox/runtime/taskapi"
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

// Launch does for sandbox o.ID what `SHIM … start` does, in the calling
// process: it listens on the group's socket and starts the serving shim with
// the listener as fd 3 (see Bootstrap), and returns the address. It saves the
// podbox CLI the start of a whole process (the `start` step, a few ms);
// containerd runs `start`, and Start does too. The serving shim cannot tell
// the two apart: it gets the same command line, environment, working
// directory and listener either way.
func Launch(o Options) (string, error) {
	if o.Binary == "" || o.Root == "" || o.ID == "" {
		return "", errors.New("start shim: binary, root and ID are required")
	}
	args := o.Args()
	return Bootstrap{
		Binary: o.Binary, Root: o.Root, Namespace: args[1], Group: o.ID,
		Args: args[:len(args)-1], Dir: o.Root, Env: o.Env(), Log: true,
	}.Run()
}

// Bootstrap is the `start` step of the shim protocol, shared by the shim's
// own `start` action and by Launch: make sure a shim serves Group, starting
// one if none does.
type Bootstrap struct {
	// Binary is the shim executable run as the serving process.
	Binary string
	// Root, Namespace and Group give the socket (SocketAddress).
	Root, Namespace, Group string
	// Args is the serving process's command line after the binary: the
	// start flags without the action.
	Args []string
	// Dir and Env are its working directory and environment (to which
	// Run adds the Go runtime settings of an idle shim, see servingEnv).
	Dir string
	Env []string
	// Log sends its stderr to a file beside the socket (SOCKET.log), for a
	// caller that has no log FIFO to give it (containerd does).
	Log bool
}

// Run returns the address of the shim serving b.Group. If a live shim
// already serves it, that is all. Otherwise Run listens on the socket itself,
// so that clients can connect the moment the address is known (connections
// queue in the backlog while the new shim initialises), and hands the
// listener to a new serving shim that outlives the caller: in its own process
// group (a ^C aimed at the caller must not reach it), with no stdio of the
// caller's (containerd reads start's output until every writer has closed
// it).
func (b Bootstrap) Run() (string, error) {
	addr := SocketAddress(b.Root, b.Namespace, b.Group)
	path, err := SocketPath(addr)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("shim %s: %w", b.Group, err)
	}
	l, err := listen(path)
	if errors.Is(err, errServing) {
		return addr, nil
	}
	if err != nil {
		return "", fmt.Errorf("shim %s: listen on %s: %w", b.Group, path, err)
	}
	defer l.Close()
	f, err := l.File()
	if err != nil {
		os.Remove(path)
		return "", fmt.Errorf("shim %s: %w", b.Group, err)
	}
	defer f.Close()
	bin := b.Binary
	if !strings.Contains(bin, "/") {
		if bin, err = exec.LookPath(bin); err != nil {
			os.Remove(path)
			return "", fmt.Errorf("shim %s: %w", b.Group, err)
		}
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		os.Remove(path)
		return "", fmt.Errorf("shim %s: %w", b.Group, err)
	}
	defer null.Close()
	stderr := null
	if b.Log {
		if lf, err := os.OpenFile(path+".log", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err == nil {
			defer lf.Close()
			stderr = lf
		}
	}
	// syscall.ForkExec rather than os/exec: the latter's first start in a
	// process first probes pidfd support with a throwaway child, which
	// would cost every sandbox create a quarter of a millisecond. Nobody
	// waits for the shim here: it outlives us.
	_, err = syscall.ForkExec(bin, append([]string{b.Binary}, b.Args...), &syscall.ProcAttr{
		Dir:   b.Dir,
		Env:   servingEnv(b.Env),
		Files: []uintptr{null.Fd(), null.Fd(), stderr.Fd(), f.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		os.Remove(path)
		return "", fmt.Errorf("shim %s: start serving process %s: %w", b.Group, b.Binary, err)
	}
	return addr, nil
}

// LastLog returns the last line that the shim serving address, started by
// Launch, wrote to its log beside the socket, or "" if there is none. A shim
// that dies before it answers (a bad configuration) says why there: Launch
// has no `start` process whose output could carry it.
func LastLog(address string) string {
	path, err := SocketPath(address)
	if err != nil {
		return ""
	}
	b, err := os.ReadFile(path + ".log")
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

var errServing = errors.New("a shim already serves this socket")

// listen listens on path, replacing a stale socket that nobody serves, and
// returns errServing if a live shim already answers there.
func listen(path string) (*net.UnixListener, error) {
	for range 2 {
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err == nil {
			// Unlinking the socket is the serving shim's to do on
			// shutdown, not the listener's when the caller closes its
			// copy.
			l.SetUnlinkOnClose(false)
			// Whoever may connect may drive every container of the
			// sandbox: root only, whatever the umask left.
			if err := os.Chmod(path, 0o600); err != nil {
				l.Close()
				os.Remove(path)
				return nil, err
			}
			return l, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, err
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, errServing
		}
		os.Remove(path)
	}
	return nil, fmt.Errorf("socket %s stays in use", path)
}

// SocketPath is the file of a unix:// shim address.
func SocketPath(address string) (string, error) {
	p, ok := strings.CutPrefix(address, "unix://")
	if !ok {
		return "", fmt.Errorf("shim address %q: not a unix:// address", address)
	}
	// containerd refuses paths over 106 bytes; the kernel's limit is 108.
	if len(p) > 106 {
		return "", errors.New("shim socket path " + p + " is longer than 106 bytes: use a shorter state root")
	}
	return p, nil
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
