// Package cli is the podbox command line: it parses flags, validates input
// against the state store, and drives each sandbox's shim through
// containerd's Sandbox and Task APIs (package runtime/shimclient).
//
// It never builds sandboxes or runs containers itself: that is the shim's
// work, so the CLI exercises the same path containerd does. The only work it
// does without a shim is reading the store (ls, ps, inspect, logs) and
// removing what a dead shim left behind (sandbox.Node.Remove), because a
// kill -9'd shim must never leave a sandbox the user cannot clean up.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"

	"github.com/podbox/podbox/runtime/shimclient"
	"github.com/podbox/podbox/sandbox"
)

// ShimBinary is the shim's executable name.
const ShimBinary = "containerd-shim-podbox-v1"

// App is one invocation's environment: everything the commands read from the
// outside world, so tests can run them without a terminal or a real
// environment.
type App struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Getenv reads the environment (os.Getenv in main).
	Getenv func(string) string
	// Executable is the podbox binary's path; the shim is looked for beside it.
	Executable string
	// Now is the clock for "created … ago" columns.
	Now     func() time.Time
	Version string
	// Exec replaces the process with another program (syscall.Exec in
	// main); podbox image pull and load hand over to podbox-image with it,
	// so that ^C and the terminal reach the fetcher directly. Nil runs the
	// program as a child instead (tests).
	Exec func(argv0 string, argv []string, envv []string) error
	// Geteuid is the effective user ID (os.Geteuid in main): every command
	// but help, version and pause-image refuses to run unless it is 0.
	// Nil skips the check (tests that drive commands as any user).
	Geteuid func() int
	// NodeNetNS is the pin of the network namespace the node commands
	// configure; "" means podbox's own (where a user runs it). Tests set a
	// throwaway namespace.
	NodeNetNS string
}

// globals are the flags every command shares.
type globals struct {
	root      string
	imageRoot string
	runtime   string
	logLevel  string
	log       *slog.Logger
}

// ExitError carries a container's (or exec's) exit status out of run and
// exec, so podbox exits with it; it is not a failure of podbox itself.
type ExitError struct{ Code int }

func (e ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// Run executes the command line args (without the program name) and returns
// the process exit code. Errors are printed as one line on Stderr.
func (a *App) Run(ctx context.Context, args []string) int {
	cmd := a.rootCommand()
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	var nr notRoot
	if errors.As(err, &nr) {
		fmt.Fprintln(a.Stderr, nr.Error())
		return 1
	}
	fmt.Fprintln(a.Stderr, "podbox: "+oneLine(err.Error()))
	return 1
}

// notRoot is the refusal of a command run by a user other than root; its
// message is the whole line.
type notRoot struct {
	euid int
	root string
}

func (e notRoot) Error() string {
	return fmt.Sprintf("podbox must run as root: sandboxes need namespaces, mounts, cgroups and network devices, and the state root %s is root's (running as uid %d; try sudo)", e.root, e.euid)
}

// noRoot marks, in a command's Annotations, a command that any user may
// run: it reads and writes nothing of podbox's state.
const noRoot = "podbox.io/no-root"

// requireRoot refuses cmd unless podbox runs as root or cmd is marked
// noRoot. It runs before anything reads or writes the state root, so that a
// refused command changes nothing. Root means euid 0, as the capabilities
// podbox needs come with it; a non-root user with capabilities is not
// supported.
func (a *App) requireRoot(cmd *cobra.Command, root string) error {
	if a.Geteuid == nil || cmd.Annotations[noRoot] != "" {
		return nil
	}
	if euid := a.Geteuid(); euid != 0 {
		return notRoot{euid: euid, root: root}
	}
	return nil
}

// oneLine folds a multi-line error (errors.Join, a runtime's stderr) into one
// line, so every failure is one line a script can grep.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func (a *App) rootCommand() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "podbox",
		Short: "Run Kubernetes-style pods (sandboxes of containers sharing one network) without Kubernetes",
		Long: `podbox runs sandboxes: a network, IPC and UTS namespace held by a tiny pause
process, into which any number of OCI containers are joined so that they
share localhost and one port space. Each sandbox is served by its own shim
(containerd-shim-podbox-v1), the same one containerd uses.`,
		Example: `  id=$(podbox sandbox create --name web)
  podbox run --sandbox web --name srv --rootfs /srv/rootfs -d -- httpd -f -p 80
  podbox run --sandbox web --rootfs /srv/rootfs --rm -- wget -qO- http://localhost/
  podbox sandbox rm -f web`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.requireRoot(cmd, g.root); err != nil {
				return err
			}
			return g.init(a)
		},
	}
	root.SetIn(a.Stdin)
	root.SetOut(a.Stdout)
	root.SetErr(a.Stderr)
	f := root.PersistentFlags()
	f.StringVar(&g.root, "root", envOr(a.Getenv, shimclient.EnvRoot, shimclient.DefaultRoot), "state root directory (env PODBOX_ROOT)")
	f.StringVar(&g.imageRoot, "image-root", a.Getenv("PODBOX_IMAGE_ROOT"), "image store directory, default ROOT/images (env PODBOX_IMAGE_ROOT)")
	f.StringVar(&g.runtime, "runtime", a.Getenv(shimclient.EnvRuntime), "OCI runtime binary the shim drives, default runc (env PODBOX_RUNTIME)")
	f.StringVar(&g.logLevel, "log-level", "warn", "log level: debug, info, warn or error")

	root.AddCommand(a.sandboxCommand(g), a.runCommand(g), a.execCommand(g), a.psCommand(g), a.inspectCommand(g),
		a.logsCommand(g), a.stopCommand(g), a.rmCommand(g), a.imageCommand(g), a.volumeCommand(g), a.nodeCommand(g),
		a.playCommand(g), a.versionCommand(), a.pauseImageCommand())
	// cobra's `help` command runs the persistent pre-run like any other:
	// made here, it can be marked as needing no root.
	root.InitDefaultHelpCmd()
	for _, c := range root.Commands() {
		if c.Name() == "help" {
			c.Annotations = map[string]string{noRoot: "yes"}
			c.Example = "  podbox help sandbox create"
		}
	}
	return root
}

func envOr(getenv func(string) string, k, def string) string {
	if v := getenv(k); v != "" {
		return v
	}
	return def
}

func (g *globals) init(a *App) error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel)
	}
	g.log = slog.New(slog.NewTextHandler(a.Stderr, &slog.HandlerOptions{Level: lvl}))
	if g.root == "" {
		return errors.New("--root: empty state root")
	}
	// The root is used in socket paths and written into specs, so it must
	// not depend on the caller's working directory.
	abs, err := filepath.Abs(g.root)
	if err != nil {
		return fmt.Errorf("--root %q: %w", g.root, err)
	}
	g.root = abs
	if g.imageRoot != "" {
		if g.imageRoot, err = filepath.Abs(g.imageRoot); err != nil {
			return fmt.Errorf("--image-root %q: %w", g.imageRoot, err)
		}
	}
	return nil
}

func (g *globals) store() sandbox.Store { return sandbox.Store{Root: g.root} }

func (g *globals) debug() bool { return g.log.Enabled(context.Background(), slog.LevelDebug) }

// runtimeBinary is the OCI runtime, as the shim resolves it.
func (g *globals) runtimeBinary() string {
	if g.runtime != "" {
		return g.runtime
	}
	return "runc"
}

// shimBinary finds the shim: $PODBOX_SHIM, else beside the podbox binary
// (where make install and the release put both), else PATH.
func (a *App) shimBinary() (string, error) {
	p, err := a.companion(ShimBinary, "PODBOX_SHIM", "set PODBOX_SHIM")
	if err != nil {
		return "", fmt.Errorf("find shim: %w", err)
	}
	return p, nil
}

// companion finds another of podbox's binaries: $env when env is named and
// set, else beside the podbox binary (where make build, make install and the
// release put them all), else on PATH. hint says how to name it instead.
func (a *App) companion(name, env, hint string) (string, error) {
	if env != "" {
		if p := a.Getenv(env); p != "" {
			return p, nil
		}
	}
	if a.Executable != "" {
		p := filepath.Join(filepath.Dir(a.Executable), name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s is neither beside %s nor on PATH (%s)", name, a.Executable, hint)
	}
	return p, nil
}

// shimAlive reports whether sb's shim process still runs. The record has no
// start time for the shim, so a reused PID can make a dead shim look alive;
// callers that act on it also ping the socket.
func shimAlive(sb *sandbox.Sandbox) bool { return sandbox.Alive(sb.ShimPID, 0) }

// shimAddress is where sb's shim listens: the address it recorded, else the
// one the protocol defines for a CLI-started shim (group = sandbox ID).
func (g *globals) shimAddress(sb *sandbox.Sandbox) string {
	if sb.ShimAddress != "" {
		return sb.ShimAddress
	}
	return shimclient.SocketAddress(g.root, shimclient.Namespace, sb.ID)
}

// dialTimeout bounds connecting to a shim: a live shim answers at once, and
// a hung one must not hang the CLI.
const dialTimeout = 5 * time.Second

// dial connects to sb's shim, failing with a message that says what to do if
// the shim is gone.
func (g *globals) dial(ctx context.Context, sb *sandbox.Sandbox) (*shimclient.Client, error) {
	if !shimAlive(sb) {
		return nil, fmt.Errorf("sandbox %q: shim (pid %d) is not running; remove the sandbox with `podbox sandbox rm -f %s`", sb.Name, sb.ShimPID, sb.Name)
	}
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	c, err := shimclient.Dial(dctx, g.shimAddress(sb))
	if err != nil {
		return nil, fmt.Errorf("sandbox %q: %w", sb.Name, err)
	}
	return c, nil
}

// objErr formats a failure of an operation on one object: `KIND "NAME": OP:
// CAUSE`. A shim's error already names the object, in which case it is used
// as is rather than repeating the prefix; ttrpc's status wrapping
// ("rpc error: code = … desc = …") is dropped, it says nothing to a user.
func objErr(kind, name, op string, err error) error {
	msg := rpcMessage(err)
	prefix := fmt.Sprintf("%s %q", kind, name)
	if strings.HasPrefix(msg, prefix) {
		return &wrapped{msg: msg, err: err}
	}
	return &wrapped{msg: prefix + ": " + op + ": " + msg, err: err}
}

// wrapped keeps the cause for errors.Is/status.Code while printing msg.
type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.err }

// rpcMessage is err's text without ttrpc's status decoration.
func rpcMessage(err error) string {
	if st, ok := status.FromError(err); ok {
		return st.Message()
	}
	return err.Error()
}
