// Package containerd runs a throwaway containerd (Debian's 1.6, or 2.x built
// from integration/containerd2) for one test, inside the test's node network
// namespace, with its CRI plugin, a CNI bridge network that exists only in
// that node, and the podbox runtime (io.containerd.podbox.v1) configured next
// to runc; and drives it with ctr and crictl.
//
// Everything a daemon makes lives under the test's own directories: root,
// state, runc's state, pod network namespace pins, CNI leases, its socket
// (under a short directory in /run, since a unix socket path must stay under
// about 100 bytes). When the test ends the harness removes every pod and
// container, stops containerd, kills what it left running, and unmounts and
// deletes what it left behind, so package leakcheck can then judge the
// podbox side. The harness never touches the machine's own network namespace.
//
// No image registry is reachable: BusyboxImage writes a small image archive
// locally and ImportImage loads it.
package containerd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/integration/testnode"
)

// CNIBinDir is where Debian's containernetworking-plugins installs the
// plugins.
const CNIBinDir = "/usr/lib/cni"

// cniCacheDir is where libcni caches attachment results (containerd does
// not configure it).
const cniCacheDir = "/var/lib/cni/results"

// CRINamespace is the containerd namespace the CRI plugin works in; images
// for pods must be imported there.
const CRINamespace = "k8s.io"

// Options says which containerd to run and how.
type Options struct {
	// Binary is the containerd to run. Empty means Debian's `containerd`
	// (1.6) from PATH, or with V2 the 2.x build (V2Binary).
	Binary string
	// V2 says Binary is containerd 2.x: config version 3, CRI split into
	// io.containerd.cri.v1.runtime and io.containerd.cri.v1.images.
	V2 bool
	// SandboxImage is the image CRI starts as every pod's sandbox (the
	// "pause"). It must be imported into CRINamespace before the first pod:
	// nothing can be pulled.
	SandboxImage string
	// ShimSandboxer (2.x only) gives the podbox runtime sandboxer = "shim":
	// CRI then makes its pods through the shim's Sandbox API instead of
	// running SandboxImage as a task.
	ShimSandboxer bool
	// ShimDir, if set, is put first on containerd's PATH: containerd finds
	// the shim of runtime io.containerd.podbox.v1 by looking up
	// containerd-shim-podbox-v1 on its PATH. Typically
	// filepath.Dir(testnode.Binary(t, "containerd-shim-podbox-v1")).
	ShimDir string
	// PodDefaultRoute gives pods a default route via the CNI bridge, so
	// that they can answer hosts beside the node (tests of published
	// ports); nothing routes further than the test's own namespaces.
	PodDefaultRoute bool
	// Cgroup, if set, is a cgroup (a path below each hierarchy's root)
	// containerd is moved into as it starts, as systemd runs it in
	// containerd.service on a node: the shims it starts, and the containers
	// runc places relative to a shim (a cgroupsPath without a leading
	// slash), are then below it rather than wherever the test runs. The
	// teardown removes it.
	Cgroup string
	// ExtraEnv is added to containerd's environment ("K=V"), which containerd
	// hands on to every shim it starts: PODBOX_ROOT, PODBOX_CGROUP_PARENT,
	// PODBOX_PAUSE and friends reach the podbox shim this way.
	ExtraEnv []string
}

// Daemon is one running containerd. Its fields are read-only.
type Daemon struct {
	Node *testnode.Node
	Opts Options

	// Dir holds everything of this daemon but its socket: Config, Log,
	// Root, State, the CNI configuration and leases.
	Dir string
	// Root and State are containerd's root and state directories.
	Root, State string
	// Address is the path of containerd's gRPC socket (ctr, crictl); the
	// ttrpc socket is Address + ".ttrpc".
	Address string
	// Config is the config.toml containerd runs with, Log its output.
	Config, Log string
	// CNIConfDir holds the conflist of Network; CNIDataDir is host-local's
	// lease directory.
	CNIConfDir, CNIDataDir string
	// Network is the CNI network's name, unique per daemon.
	Network string

	crictl  string
	sockDir string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	werr error         // cmd's exit, valid once done is closed
}

// Start writes a configuration, starts containerd inside node (nsenter
// --net, nothing else changes), waits until its API and its CRI plugin
// (runtime and network) are ready, and registers the teardown described in
// the package comment. A daemon that does not come up fails the test with
// the end of its log.
func Start(t testing.TB, node *testnode.Node, opts Options) *Daemon {
	t.Helper()
	if opts.Binary == "" {
		if opts.V2 {
			opts.Binary = V2Binary(t)
		} else {
			opts.Binary = testnode.RequireBinary(t, "containerd")
		}
	}
	if opts.SandboxImage == "" {
		t.Fatal("containerd harness: Options.SandboxImage is required (nothing can be pulled)")
	}
	for _, b := range []string{"ctr", "runc", "containerd-shim-runc-v2", "nsenter"} {
		testnode.RequireBinary(t, b)
	}
	crictl := CrictlBinary(t)

	dir := t.TempDir()
	// The socket directory lives in /run, not in dir: t.TempDir paths can
	// push the socket past the 108-byte sun_path limit.
	sockDir, err := os.MkdirTemp("/run", "pbxctrd")
	if err != nil {
		t.Fatalf("containerd harness: socket directory: %v", err)
	}
	d := &Daemon{
		Node:       node,
		Opts:       opts,
		Dir:        dir,
		Root:       filepath.Join(dir, "root"),
		State:      filepath.Join(dir, "state"),
		Address:    filepath.Join(sockDir, "c.sock"),
		Config:     filepath.Join(dir, "config.toml"),
		Log:        filepath.Join(dir, "containerd.log"),
		CNIConfDir: filepath.Join(dir, "cni", "net.d"),
		CNIDataDir: filepath.Join(dir, "cni", "ipam"),
		Network:    "podbox-test-" + strings.TrimPrefix(filepath.Base(sockDir), "pbxctrd"),
		crictl:     crictl,
		sockDir:    sockDir,
	}
	// Registered before anything starts, so a start that fails half way is
	// cleaned up too.
	t.Cleanup(func() { d.teardown(t) })

	conflist, err := cniConflist(d.Network, d.CNIDataDir, opts.PodDefaultRoute)
	if err != nil {
		t.Fatal(err)
	}
	crictlYAML := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n", d.Address, d.Address)
	files := []struct {
		path string
		data []byte
	}{
		{d.Config, []byte(d.config())},
		{filepath.Join(d.CNIConfDir, "10-"+d.Network+".conflist"), conflist},
		// For a human debugging a kept test directory:
		// crictl --config DIR/crictl.yaml ps (inside the node namespace).
		{filepath.Join(dir, "crictl.yaml"), []byte(crictlYAML)},
	}
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
			t.Fatalf("containerd harness: %v", err)
		}
		if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
			t.Fatalf("containerd harness: %v", err)
		}
	}
	for _, p := range []string{d.Root, d.State, d.CNIDataDir} {
		if err := os.MkdirAll(p, 0o711); err != nil {
			t.Fatalf("containerd harness: %v", err)
		}
	}
	d.start(t)
	return d
}

// start runs containerd and waits until it serves, or fails the test.
func (d *Daemon) start(t testing.TB) {
	t.Helper()
	if err := d.launch(); err != nil {
		t.Fatalf("%v\n--- containerd log (%s), last lines:\n%s", err, d.Log, d.LogTail())
	}
}

// launch runs containerd and waits until it serves.
func (d *Daemon) launch() error {
	logf, err := os.OpenFile(d.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("containerd harness: log file: %w", err)
	}
	defer logf.Close()
	// Not tied to a context: the daemon must outlive the helper that
	// started it, and teardown stops it with SIGTERM first.
	cmd := d.Node.Command(context.Background(), d.Opts.Binary, "--config", d.Config)
	cmd.Env = d.env()
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a ^C at the terminal reaches the test, whose
	// teardown then stops containerd in order, rather than killing both.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("containerd %s: start: %w", d.Opts.Binary, err)
	}
	if d.Opts.Cgroup != "" {
		// Before it serves, so before it starts any shim.
		if err := moveToCgroup(d.Opts.Cgroup, cmd.Process.Pid); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return err
		}
	}
	done := make(chan struct{})
	d.mu.Lock()
	d.cmd, d.done = cmd, done
	d.mu.Unlock()
	go func() {
		err := cmd.Wait()
		d.mu.Lock()
		d.werr = err
		d.mu.Unlock()
		close(done)
	}()
	if err := d.waitReady(done, 30*time.Second); err != nil {
		return fmt.Errorf("containerd %s (pid %d): %w", d.Opts.Binary, cmd.Process.Pid, err)
	}
	return nil
}

// env is containerd's environment: the test's own, ShimDir first on PATH,
// then ExtraEnv (later entries win in exec).
func (d *Daemon) env() []string {
	env := os.Environ()
	if d.Opts.ShimDir != "" {
		env = append(env, "PATH="+d.Opts.ShimDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
	return append(env, d.Opts.ExtraEnv...)
}

// waitReady polls until ctr gets an answer and CRI reports both its runtime
// and its network ready: CRI loads the CNI configuration asynchronously, and
// a pod started before that fails with "cni config not initialized".
func (d *Daemon) waitReady(done <-chan struct{}, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for {
		select {
		case <-done:
			d.mu.Lock()
			err := d.werr
			d.mu.Unlock()
			return fmt.Errorf("exited while starting: %v", err)
		default:
		}
		last = d.ready()
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", limit, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *Daemon) ready() error {
	if _, err := d.run(5*time.Second, "ctr", d.ctrArgs(nil)); err != nil {
		return err
	}
	out, err := d.run(5*time.Second, d.crictl, d.crictlArgs([]string{"info"}))
	if err != nil {
		return err
	}
	var info struct {
		Status struct {
			Conditions []struct {
				Type    string `json:"type"`
				Status  bool   `json:"status"`
				Reason  string `json:"reason"`
				Message string `json:"message"`
			} `json:"conditions"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		return fmt.Errorf("crictl info: decode: %w", err)
	}
	seen := 0
	for _, c := range info.Status.Conditions {
		if c.Type != "RuntimeReady" && c.Type != "NetworkReady" {
			continue
		}
		if !c.Status {
			return fmt.Errorf("CRI %s is false: %s %s", c.Type, c.Reason, c.Message)
		}
		seen++
	}
	if seen != 2 {
		return fmt.Errorf("crictl info reports no RuntimeReady/NetworkReady conditions:\n%s", out)
	}
	return nil
}

func (d *Daemon) ctrArgs(args []string) []string {
	if args == nil {
		args = []string{"version"}
	}
	return append([]string{"--address", d.Address}, args...)
}

func (d *Daemon) crictlArgs(args []string) []string {
	ep := "unix://" + d.Address
	return append([]string{
		"--config", filepath.Join(d.Dir, "crictl.yaml"),
		"--runtime-endpoint", ep, "--image-endpoint", ep,
		"--timeout", "60s",
	}, args...)
}

// run runs name inside the node and returns its stdout; an error carries
// the command line, the exit and stderr.
func (d *Daemon) run(limit time.Duration, name string, args []string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := d.Node.Command(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s%s", filepath.Base(name), strings.Join(args, " "), err,
			strings.TrimSpace(stderr.String()), strings.TrimSpace(stdout.String()))
	}
	return stdout.String(), nil
}

// CrictlIO runs crictl as Crictl does, with stdin as its standard input
// (nil for none), and returns its standard output and error apart: what
// exec and attach relay of a process's two streams.
func (d *Daemon) CrictlIO(stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := d.Node.Command(ctx, d.crictl, d.crictlArgs(args)...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// Ctr runs `ctr --address SOCKET args…` inside the node (two minutes at
// most) and returns its standard output. Name the namespace with -n first,
// e.g. Ctr("-n", "k8s.io", "containers", "ls").
func (d *Daemon) Ctr(args ...string) (string, error) {
	return d.run(2*time.Minute, "ctr", d.ctrArgs(args))
}

// Crictl runs crictl against the daemon's CRI inside the node (exec and
// attach reach CRI's streaming server on the node's loopback) and returns
// its standard output.
func (d *Daemon) Crictl(args ...string) (string, error) {
	return d.run(2*time.Minute, d.crictl, d.crictlArgs(args))
}

// ImportImage imports an image archive (docker save or OCI layout tar) into
// namespace, unpacked for the default snapshotter.
func (d *Daemon) ImportImage(t testing.TB, namespace, tarball string) {
	t.Helper()
	if out, err := d.Ctr("-n", namespace, "images", "import", tarball); err != nil {
		t.Fatalf("import image %s into namespace %s: %v", tarball, namespace, err)
	} else {
		t.Logf("imported %s into %s: %s", tarball, namespace, strings.TrimSpace(out))
	}
}

// Restart stops containerd (SIGTERM, SIGKILL after 10 s) and starts it again
// with the same configuration. Shims and their containers keep running
// across it, as on a real node.
func (d *Daemon) Restart(t testing.TB) {
	t.Helper()
	if err := d.stop(10 * time.Second); err != nil {
		t.Fatalf("containerd restart: %v", err)
	}
	d.start(t)
}

// Kill SIGKILLs containerd, as a crash or the OOM killer would end it, and
// waits for it to be gone; Restart-like, start brings it back. Shims keep
// running.
func (d *Daemon) Kill(t testing.TB) {
	t.Helper()
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.mu.Unlock()
	if cmd == nil {
		t.Fatal("containerd kill: not started")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatalf("containerd kill: %v", err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("containerd (pid %d) survived SIGKILL", cmd.Process.Pid)
	}
}

// Relaunch starts containerd again after Kill, with the same
// configuration.
func (d *Daemon) Relaunch(t testing.TB) {
	t.Helper()
	d.start(t)
}

// Running reports whether the containerd process is alive.
func (d *Daemon) Running() bool {
	d.mu.Lock()
	done := d.done
	d.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs.
func (d *Daemon) stop(grace time.Duration) error {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return nil
	case <-time.After(grace):
	}
	_ = cmd.Process.Kill()
	select {
	case <-done:
		return fmt.Errorf("containerd (pid %d) ignored SIGTERM for %s and was killed", cmd.Process.Pid, grace)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("containerd (pid %d) survived SIGKILL", cmd.Process.Pid)
	}
}

// LogTail returns the last 150 lines of containerd's log.
func (d *Daemon) LogTail() string {
	const lines = 150
	f, err := os.Open(d.Log)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	var ring []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		ring = append(ring, sc.Text())
		if len(ring) > 2*lines {
			ring = slices.Clone(ring[len(ring)-lines:])
		}
	}
	if len(ring) > lines {
		ring = ring[len(ring)-lines:]
	}
	return strings.Join(ring, "\n")
}

// teardown leaves nothing of the daemon behind: first the polite way
// (CRI removes its pods, ctr kills and removes every task and container),
// then containerd is stopped, and whatever survived — shims, runc
// containers, mounts, the CNI cache, the socket — is removed by force.
// Forced steps are logged; what cannot be removed fails the test.
func (d *Daemon) teardown(t testing.TB) {
	if t.Failed() {
		t.Logf("--- containerd log (%s), last lines:\n%s", d.Log, d.LogTail())
	}
	d.mu.Lock()
	started := d.cmd != nil
	d.mu.Unlock()
	if started && !d.Running() {
		// It died (or the test killed it): bring it back, so CRI tears its
		// pods' networks down and the shims delete their containers.
		t.Logf("containerd teardown: containerd is not running; restarting it to remove what it left")
		if err := d.launch(); err != nil {
			t.Logf("containerd teardown: %v", err)
		}
	}
	if d.Running() {
		for _, err := range d.removeEverything() {
			t.Logf("containerd teardown: %v", err)
		}
	}
	if err := d.stop(10 * time.Second); err != nil {
		t.Errorf("containerd teardown: %v", err)
	}
	for _, msg := range d.killLeftovers() {
		t.Logf("containerd teardown: %s", msg)
	}
	for _, err := range d.unmountAll() {
		t.Errorf("containerd teardown: %v", err)
	}
	if d.Opts.Cgroup != "" {
		if err := removeDaemonCgroup(d.Opts.Cgroup); err != nil {
			t.Errorf("containerd teardown: %v", err)
		}
	}
	// libcni caches each attachment's result outside any configurable
	// directory; DEL removes it, a crash in between does not.
	// Entries are NETWORK-PODID-IFNAME; the lo attachment CRI adds by
	// itself is cached as cni-loopback-PODID-lo.
	leftovers, _ := filepath.Glob(filepath.Join(cniCacheDir, d.Network+"-*"))
	for _, p := range leftovers {
		rest := strings.TrimPrefix(filepath.Base(p), d.Network+"-")
		if i := strings.LastIndex(rest, "-"); i > 0 {
			leftovers = append(leftovers, filepath.Join(cniCacheDir, "cni-loopback-"+rest[:i]+"-lo"))
		}
	}
	for _, p := range leftovers {
		if err := os.Remove(p); err == nil {
			t.Logf("containerd teardown: removed CNI cache entry %s", p)
		}
	}
	if err := os.RemoveAll(d.sockDir); err != nil {
		t.Errorf("containerd teardown: %v", err)
	}
}

// removeEverything removes every pod through CRI, then every task and
// container of every namespace through ctr.
func (d *Daemon) removeEverything() []error {
	var errs []error
	if out, err := d.Crictl("pods", "-q"); err != nil {
		errs = append(errs, err)
	} else if len(strings.Fields(out)) > 0 {
		if _, err := d.Crictl("rmp", "--force", "--all"); err != nil {
			errs = append(errs, err)
		}
	}
	out, err := d.Ctr("namespaces", "ls", "-q")
	if err != nil {
		return append(errs, err)
	}
	for _, ns := range strings.Fields(out) {
		tasks, err := d.Ctr("-n", ns, "tasks", "ls", "-q")
		if err != nil {
			errs = append(errs, err)
		}
		for _, id := range strings.Fields(tasks) {
			_, _ = d.Ctr("-n", ns, "tasks", "kill", "-s", "SIGKILL", id)
			if _, err := d.Ctr("-n", ns, "tasks", "rm", "-f", id); err != nil {
				errs = append(errs, err)
			}
		}
		ctrs, err := d.Ctr("-n", ns, "containers", "ls", "-q")
		if err != nil {
			errs = append(errs, err)
		}
		for _, id := range strings.Fields(ctrs) {
			if _, err := d.Ctr("-n", ns, "containers", "rm", id); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// killLeftovers SIGKILLs every process that names this daemon's socket
// (shims: -address SOCKET) and removes those shims' sockets, then force
// deletes every runc container left in the daemon's runc root.
func (d *Daemon) killLeftovers() []string {
	var msgs []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if !slices.Contains(argv, d.Address) {
			continue
		}
		msgs = append(msgs, fmt.Sprintf("killing leftover process %d (%s)", pid, strings.Join(argv, " ")))
		_ = unix.Kill(pid, unix.SIGKILL)
		if sock := shimSocket(d.Address, argv); sock != "" {
			_ = os.Remove(sock)
			_ = os.Remove(sock + "-debug") // 2.x's debug socket, same hash scheme
		}
	}
	roots, _ := filepath.Glob(filepath.Join(d.State, "runc", "*"))
	for _, root := range roots {
		out, err := exec.Command("runc", "--root", root, "list", "-q").Output()
		if err != nil {
			continue
		}
		for _, id := range strings.Fields(string(out)) {
			msgs = append(msgs, fmt.Sprintf("deleting leftover runc container %s (root %s)", id, root))
			if b, err := exec.Command("runc", "--root", root, "delete", "--force", id).CombinedOutput(); err != nil {
				msgs = append(msgs, fmt.Sprintf("runc delete --force %s: %v: %s", id, err, bytes.TrimSpace(b)))
			}
		}
	}
	return msgs
}

// shimSocket is where a containerd v2 shim started with argv listens:
// /run/containerd/s/ + hex SHA-256 of ADDRESS/NAMESPACE/ID (containerd 1.6
// and 2.x alike, fixed outside the configurable state directory).
func shimSocket(address string, argv []string) string {
	flag := func(name string) string {
		if i := slices.Index(argv, name); i >= 0 && i+1 < len(argv) {
			return argv[i+1]
		}
		return ""
	}
	ns, id := flag("-namespace"), flag("-id")
	if ns == "" || id == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(filepath.Join(address, ns, id)))
	return fmt.Sprintf("/run/containerd/s/%x", sum)
}

// unmountAll detaches every mount under Dir, deepest first: snapshot
// mounts of container rootfs, sandbox /dev/shm, pod netns pins.
func (d *Daemon) unmountAll() []error {
	var errs []error
	for range 3 { // mounts can stack; a few passes catch those
		mounts, err := mountsUnder(d.Dir)
		if err != nil {
			return []error{err}
		}
		if len(mounts) == 0 {
			return nil
		}
		errs = errs[:0]
		for _, m := range mounts {
			if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
			}
		}
	}
	return errs
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadString('\n')
		if fields := strings.Fields(line); len(fields) > 4 {
			m := unescapeMount(fields[4])
			if m == dir || strings.HasPrefix(m, dir+"/") {
				out = append(out, m)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read /proc/self/mountinfo: %w", err)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out, nil
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}
