package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/podbox/podbox/image/runspec"
	"github.com/podbox/podbox/internal/faultpoint"
	apitypes "github.com/podbox/podbox/runtime/apitypes"
	"github.com/podbox/podbox/runtime/shimclient"
	"github.com/podbox/podbox/runtime/taskapi"
	"github.com/podbox/podbox/runtime/tasktypes"
	"github.com/podbox/podbox/sandbox"
)

// processTypeURL is how containerd marks an OCI process spec in an Any (its
// typeurl registration), so a shim built on containerd's libraries decodes
// podbox's exec requests like containerd's own.
const processTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/Process"

type runOptions struct {
	sandbox, name, rootfs string
	image, pull           string
	// entrypoint is --entrypoint; nil when not given, which differs from
	// an empty one (clear the image's).
	entrypoint        []string
	host              hostOptions // mounts, limits, capabilities: runconfig.go
	detach, rm, stdin bool
	proc              processOptions
	restart           string // --restart, see restart.go
}

func addProcessFlags(cmd *cobra.Command, o *processOptions, stdin *bool) {
	f := cmd.Flags()
	f.StringArrayVarP(&o.env, "env", "e", nil, "environment variable KEY=VALUE (repeatable)")
	f.StringVarP(&o.cwd, "workdir", "w", "", "working directory inside the container (absolute)")
	f.StringVarP(&o.user, "user", "u", "", "user to run as: UID[:GID], or names from the container's /etc/passwd and /etc/group with run")
	f.BoolVarP(&o.terminal, "tty", "t", false, "allocate a pseudo-terminal")
	f.BoolVarP(stdin, "interactive", "i", false, "pass podbox's stdin to the process (implied by -t on a terminal)")
	// Flags end at the command: `podbox run … sh -c 'ls -l'` must not
	// parse -c or -l as podbox's.
	f.SetInterspersed(false)
}

func (a *App) runCommand(g *globals) *cobra.Command {
	var o runOptions
	var entrypoint string
	cmd := &cobra.Command{
		Use:   "run --sandbox SANDBOX (--image REF | --rootfs DIR) [flags] [-- CMD [ARG...]]",
		Short: "Run a command in a new container joined to a sandbox",
		Long: `Create a container, join it to the sandbox (it shares the sandbox's network,
IPC and UTS namespaces and its /etc/hosts), and run it. In the foreground
podbox prints the output and exits with the container's exit code; with -d it
prints the container's ID and returns, and the output goes only to the log
(podbox logs).

With --image the container runs an image from the image store (pulled first
when missing, see --pull) on its own writable layer over the image's shared
read-only layers; the layer goes with the container. The image's config
applies as in docker run: CMD after -- replaces the image's Cmd, --entrypoint
its Entrypoint (and its Cmd), -e adds to its Env, -w and -u replace its
WorkingDir and User. With --rootfs the container runs in a root filesystem
directory as it is, and CMD is required.

Mounts, as docker run's: -v /HOST/PATH:/PATH[:ro] binds a host directory
(made if missing; the path must be absolute), -v NAME:/PATH[:ro] mounts the
named volume NAME (made on first use; see podbox volume), and --mount takes
docker's KEY=VALUE form: type=bind|volume|tmpfs, source (src),
target (dst, destination), readonly (ro), bind-propagation,
bind-nonrecursive, tmpfs-size, tmpfs-mode. A --mount bind of a missing host
path is refused. /etc/hosts, /etc/hostname and /etc/resolv.conf are the
sandbox's and cannot be mounted over. /dev/shm is the sandbox's too, shared
by its containers, unless a mount puts the container's own there.

Limits, on the container's cgroup (inside its sandbox's, whose own limits
from sandbox create --memory/--cpus cap the sum): --memory (512m, 1g, 512Mi,
1Gi; at least 6m; swap included; a container past it is OOM-killed and
exits 137), --cpus (0.5 is half of one CPU's time), --pids-limit.
--read-only mounts the root read-only (the /etc files, /dev and mounts stay
as they are). --cap-add and --cap-drop change the default capabilities
(docker's set): names with or without CAP_, any case, or ALL.

Seccomp: the container runs under docker's and containerd's default seccomp
profile (moby's definition, for its capabilities: with CAP_SYS_ADMIN it may
mount and unshare). --security-opt seccomp=unconfined runs it without a
filter, --security-opt seccomp=PROFILE.json under a profile in docker's
format. --privileged gives every capability of podbox's bounding set, no
seccomp filter, the host's devices, and /proc and /sys unmasked and
writable, as docker's does.`,
		Example: `  podbox run --sandbox web --name srv --image busybox -d -- httpd -f -p 8080
  podbox run --sandbox web --image localhost:5000/app:1 --pull always -d
  podbox run --sandbox web --rootfs ./rootfs --rm -- wget -qO- http://localhost:8080/
  podbox run --sandbox web --image busybox --rm -it -- sh
  podbox run --sandbox web --image busybox -d -v /srv/site:/www:ro -v cache:/cache -- httpd -f -h /www
  podbox run --sandbox web --image busybox --rm --mount type=tmpfs,target=/scratch,tmpfs-size=64m -- df /scratch
  podbox run --sandbox web --image busybox -d --memory 256m --cpus 0.5 --pids-limit 100 -- sh -c 'sleep 1d'
  podbox run --sandbox web --image busybox --rm --read-only --cap-drop ALL --cap-add NET_BIND_SERVICE -- httpd -f -p 80
  podbox run --sandbox web --image busybox --rm --security-opt seccomp=./profile.json -- sh`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.proc.args = args
			if cmd.Flags().Changed("entrypoint") {
				o.entrypoint = []string{}
				if entrypoint != "" {
					o.entrypoint = []string{entrypoint}
				}
			}
			return a.run(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.sandbox, "sandbox", "", "sandbox to join: name, ID or unique ID prefix (required)")
	f.StringVar(&o.name, "name", "", "container name (default: the first 12 digits of its ID)")
	f.StringVar(&o.image, "image", "", "image to run: a name, ID or ID prefix (see podbox image)")
	f.StringVar(&o.pull, "pull", "missing", "with --image: pull the image never, when missing, or always")
	f.StringVar(&entrypoint, "entrypoint", "", "with --image: run this instead of the image's Entrypoint (\"\" clears it); the image's Cmd is dropped too")
	f.StringVar(&o.rootfs, "rootfs", "", "root filesystem directory, instead of --image")
	f.BoolVarP(&o.detach, "detach", "d", false, "run in the background and print the container ID")
	f.BoolVar(&o.rm, "rm", false, "remove the container when it exits")
	f.StringVar(&o.restart, "restart", "no", "restart policy: no, on-failure[:N] or always (the shim restarts it, with back-off)")
	addProcessFlags(cmd, &o.proc, &o.stdin)
	addHostFlags(cmd, &o.host)
	return cmd
}

// validate checks the flags alone, before the store is read.
func (o runOptions) validate() error {
	if o.sandbox == "" {
		return errors.New("--sandbox is required")
	}
	switch {
	case o.image == "" && o.rootfs == "":
		return errors.New("--image or --rootfs is required")
	case o.image != "" && o.rootfs != "":
		return errors.New("--image and --rootfs exclude each other")
	case o.image == "" && len(o.proc.args) == 0:
		return errors.New("no command given (put it after --)")
	case o.image == "" && o.entrypoint != nil:
		return errors.New("--entrypoint needs --image")
	}
	if o.pull != "never" && o.pull != "missing" && o.pull != "always" {
		return fmt.Errorf("--pull %q: want never, missing or always", o.pull)
	}
	if o.detach && o.rm {
		return errors.New("--rm needs a foreground container: nobody would remove a detached one")
	}
	if o.name != "" {
		if err := sandbox.ValidName("container", o.name); err != nil {
			return err
		}
	}
	if err := o.checkRestart(); err != nil {
		return err
	}
	return o.proc.checkFlags()
}

// checkContainerName fails if a container already has name.
func checkContainerName(st sandbox.Store, name string) error {
	if c, err := st.ResolveContainer(name); err == nil && c.Name == name {
		return fmt.Errorf("name is already used by container %s", shortID(c.ID))
	}
	return nil
}

func (a *App) run(ctx context.Context, g *globals, o runOptions) error {
	st := g.store()
	display := o.name
	if display == "" {
		display = "(unnamed)"
	}
	fail := func(err error) error { return objErr("container", display, "run", err) }
	if err := o.validate(); err != nil {
		return fail(err)
	}
	host, err := o.host.parse()
	if err != nil {
		return fail(err)
	}
	var rootfs string
	if o.rootfs != "" {
		var err error
		if rootfs, err = checkRootfs(o.rootfs); err != nil {
			return fail(err)
		}
	}
	if o.name != "" {
		if err := checkContainerName(st, o.name); err != nil {
			return fail(err)
		}
	}
	sb, err := resolveSandbox(st, o.sandbox)
	if err != nil {
		return fail(err)
	}
	if sb.State != sandbox.StateReady {
		return fail(fmt.Errorf("sandbox %q is %s, not ready", sb.Name, sb.State))
	}
	var img *imageRootfs
	if o.image != "" {
		if img, err = a.prepareImage(ctx, g, o); err != nil {
			return fail(err)
		}
		// Until the container's record names the image, a removal of the
		// image could take its layers.
		defer img.release()
	}
	files, err := rootfsFiles(img, rootfs)
	if err != nil {
		return fail(err)
	}
	proc, err := runProcess(img, o, files)
	if err != nil {
		return fail(err)
	}
	c, err := g.dial(ctx, sb)
	if err != nil {
		return fail(err)
	}
	defer c.Close()

	cid := sandbox.NewID()
	name := o.name
	if name == "" {
		name = cid[:12]
	}
	display = name
	bundle := st.ContainerDir(sb.ID, cid)
	if img != nil {
		rootfs = filepath.Join(bundle, "rootfs")
	}
	rec := &sandbox.Container{
		ID: cid, Name: name, SandboxID: sb.ID, Rootfs: rootfs, Command: proc.Args,
		State: sandbox.ContainerCreated, Bundle: bundle, LogPath: filepath.Join(bundle, "log"),
		CreatedAt: time.Now().UTC(),
	}
	if img != nil {
		rec.Image, rec.ImageID = img.name, img.image.ID
	}
	// Until the record names its volumes, a removal could take them.
	releaseVolumes, err := host.prepare(g.volumes())
	if err != nil {
		return fail(err)
	}
	defer releaseVolumes()
	rec.Config = host.cfg
	if err := st.CreateContainerRecord(rec); err != nil {
		return fail(err)
	}
	faultpoint.Point("cli.run.record")
	releaseVolumes()
	if img != nil {
		img.release()
	}
	// Until the shim has the task, the record is ours to undo; unless the
	// shim died on the way, which may have left the container made in the
	// runtime: the record then stays, for `sandbox rm -f` to find it.
	undo := func(err error) error {
		if isClosed(err) {
			return fail(shimDied(sb, err))
		}
		if rerr := st.RemoveContainerRecord(rec); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return fail(err)
	}
	var mounts []*apitypes.Mount
	if img != nil {
		if mounts, err = img.mounts(bundle); err != nil {
			return undo(err)
		}
	}
	spec := o.withRestart(containerSpec(name, sb.ID, rootfs, proc))
	host.apply(spec, g.volumes())
	if err := writeSpec(filepath.Join(bundle, "config.json"), spec); err != nil {
		return undo(err)
	}

	terminalIn := false
	if o.proc.terminal {
		_, terminalIn = terminalFd(a.Stdin)
	}
	var pio *procIO
	req := &taskapi.CreateTaskRequest{ID: cid, Bundle: bundle, Terminal: o.proc.terminal, Rootfs: mounts}
	if !o.detach {
		if pio, err = newProcIO(ctx, o.stdin || terminalIn, o.proc.terminal); err != nil {
			return undo(err)
		}
		defer pio.close()
		req.Stdin, req.Stdout, req.Stderr = pio.stdin, pio.stdout, pio.stderr
	}
	g.log.Debug("create task", "container", cid, "bundle", bundle)
	if _, err := c.Task.Create(ctx, req); err != nil {
		return undo(err)
	}
	faultpoint.Point("cli.run.created")
	if o.detach {
		if _, err := c.Task.Start(ctx, &taskapi.StartRequest{ID: cid}); err != nil {
			if isClosed(err) {
				return fail(shimDied(sb, err))
			}
			return fail(errors.Join(err, deleteTask(ctx, st, c, rec)))
		}
		fmt.Fprintln(a.Stdout, cid)
		return nil
	}
	code, err := a.attach(ctx, c, cid, "", pio, o.proc.terminal)
	if err != nil {
		if o.rm {
			err = errors.Join(err, deleteTask(ctx, st, c, rec))
		}
		return fail(err)
	}
	if o.rm {
		if err := deleteTask(ctx, st, c, rec); err != nil {
			return fail(err)
		}
	}
	if code != 0 {
		return ExitError{Code: int(code)}
	}
	return nil
}

// writeSpec writes the container's first spec. Compact, not indented: the
// shim reads it back and replaces it with the joined spec at once, which is
// what runc and users get to read.
func writeSpec(path string, spec *specs.Spec) error {
	b, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write spec: %w", err)
	}
	return nil
}

// deleteTask deletes rec's task in the shim (killing it if needed) and its
// record; both tolerate being already gone. A delete the shim could not do
// (runc failed, the shim died) keeps the record: it is how a retry, or the
// sandbox's removal, finds the container that may still exist.
func deleteTask(ctx context.Context, st sandbox.Store, c *shimclient.Client, rec *sandbox.Container) error {
	ctx = context.WithoutCancel(ctx)
	if _, err := c.Task.Delete(ctx, &taskapi.DeleteRequest{ID: rec.ID}); err != nil && status.Code(err) != codes.NotFound {
		if isClosed(err) {
			return fmt.Errorf("delete: %w", err)
		}
		return errors.New(rpcMessage(err))
	}
	return st.RemoveContainerRecord(rec)
}

// shimDied is err, a request's answer that the connection closed, as a
// user should read it: sb's shim died, and what to do about it.
func shimDied(sb *sandbox.Sandbox, err error) error {
	return fmt.Errorf("the shim of sandbox %q died (%v); `podbox sandbox rm -f %s` removes what is left", sb.Name, err, sb.Name)
}

// attach runs one started-or-created process to its end: it connects the
// terminal, starts the process, forwards signals to it, waits for its exit
// and for its output to drain, and returns its exit status.
func (a *App) attach(ctx context.Context, c *shimclient.Client, id, execID string, pio *procIO, terminal bool) (uint32, error) {
	if terminal {
		if fd, ok := terminalFd(a.Stdin); ok {
			if restore, err := makeRaw(fd); err == nil {
				defer restore()
			}
			resize := func() {
				if w, h, ok := windowSize(fd); ok {
					c.Task.ResizePty(ctx, &taskapi.ResizePtyRequest{ID: id, ExecID: execID, Width: w, Height: h})
				}
			}
			winch := make(chan os.Signal, 1)
			signal.Notify(winch, syscall.SIGWINCH)
			defer signal.Stop(winch)
			go func() {
				for range winch {
					resize()
				}
			}()
			resize()
		}
	}
	pio.copyOut(a.Stdout, a.Stderr)
	pio.copyIn(a.Stdin, func() {
		c.Task.CloseIO(context.WithoutCancel(ctx), &taskapi.CloseIORequest{ID: id, ExecID: execID, Stdin: true})
	})
	if _, err := c.Task.Start(ctx, &taskapi.StartRequest{ID: id, ExecID: execID}); err != nil {
		return 0, err
	}
	// Signals aimed at podbox are meant for the process, as with docker
	// run's signal proxy; podbox itself ends when the process does.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case s := <-sigs:
				c.Task.Kill(context.WithoutCancel(ctx), &taskapi.KillRequest{ID: id, ExecID: execID, Signal: uint32(s.(syscall.Signal))})
			case <-stop:
				return
			}
		}
	}()
	w, err := c.Task.Wait(ctx, &taskapi.WaitRequest{ID: id, ExecID: execID})
	if err != nil {
		return 0, err
	}
	pio.wait()
	return w.ExitStatus, nil
}

type execOptions struct {
	stdin bool
	proc  processOptions
}

func (a *App) execCommand(g *globals) *cobra.Command {
	var o execOptions
	cmd := &cobra.Command{
		Use:   "exec [flags] CONTAINER -- CMD [ARG...]",
		Short: "Run a command in a running container",
		Long: `Run CMD inside a running container, with the container's environment,
working directory and user unless overridden. podbox exits with CMD's exit
code.`,
		Example: `  podbox exec srv -- cat /etc/hosts
  podbox exec -it srv -- sh`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Flag parsing stopped at CONTAINER, so the -- between it and
			// the command is still here.
			o.proc.args = args[1:]
			if len(o.proc.args) > 0 && o.proc.args[0] == "--" {
				o.proc.args = o.proc.args[1:]
			}
			return a.exec(cmd.Context(), g, args[0], o)
		},
	}
	addProcessFlags(cmd, &o.proc, &o.stdin)
	return cmd
}

// execProcess is the process spec of an exec: the container's own process
// (environment, user, capabilities, limits) with the user's overrides.
func execProcess(base *specs.Process, o processOptions) (*specs.Process, error) {
	p, err := o.process()
	if err != nil {
		return nil, err
	}
	if base == nil {
		return p, nil
	}
	q := *base
	q.Args, q.Terminal, q.ConsoleSize = o.args, o.terminal, nil
	q.Env = runspec.MergeEnv(base.Env, o.env)
	if o.terminal {
		q.Env = runspec.MergeEnv([]string{"TERM=xterm"}, q.Env)
	}
	if o.cwd != "" {
		q.Cwd = o.cwd
	}
	if o.user != "" {
		q.User = p.User
	}
	return &q, nil
}

func (a *App) exec(ctx context.Context, g *globals, ref string, o execOptions) error {
	st := g.store()
	rec, err := st.ResolveContainer(ref)
	if err != nil {
		return err
	}
	fail := func(err error) error { return objErr("container", rec.Name, "exec", err) }
	if err := o.proc.validate(); err != nil {
		return fail(err)
	}
	var spec specs.Spec
	if b, err := os.ReadFile(filepath.Join(rec.Bundle, "config.json")); err != nil {
		return fail(fmt.Errorf("read spec: %w", err))
	} else if err := json.Unmarshal(b, &spec); err != nil {
		return fail(fmt.Errorf("read spec: %w", err))
	}
	proc, err := execProcess(spec.Process, o.proc)
	if err != nil {
		return fail(err)
	}
	pb, err := json.Marshal(proc)
	if err != nil {
		return fail(err)
	}
	sb, err := st.LoadSandbox(rec.SandboxID)
	if err != nil {
		return fail(err)
	}
	c, err := g.dial(ctx, sb)
	if err != nil {
		return fail(err)
	}
	defer c.Close()

	terminalIn := false
	if o.proc.terminal {
		_, terminalIn = terminalFd(a.Stdin)
	}
	pio, err := newProcIO(ctx, o.stdin || terminalIn, o.proc.terminal)
	if err != nil {
		return fail(err)
	}
	defer pio.close()
	execID := "exec-" + sandbox.NewID()[:16]
	_, err = c.Task.Exec(ctx, &taskapi.ExecProcessRequest{
		ID: rec.ID, ExecID: execID, Terminal: o.proc.terminal,
		Stdin: pio.stdin, Stdout: pio.stdout, Stderr: pio.stderr,
		Spec: &anypb.Any{TypeUrl: processTypeURL, Value: pb},
	})
	if err != nil {
		return fail(err)
	}
	faultpoint.Point("cli.exec.added")
	code, err := a.attach(ctx, c, rec.ID, execID, pio, o.proc.terminal)
	// An exec's state lives in the shim until deleted, as containerd does
	// after every exec.
	c.Task.Delete(context.WithoutCancel(ctx), &taskapi.DeleteRequest{ID: rec.ID, ExecID: execID})
	if err != nil {
		return fail(err)
	}
	if code != 0 {
		return ExitError{Code: int(code)}
	}
	return nil
}

// taskState asks the shim for id's state; ok is false if the shim does not
// know the task.
func taskState(ctx context.Context, c *shimclient.Client, id string) (*taskapi.StateResponse, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	s, err := c.Task.State(ctx, &taskapi.StateRequest{ID: id})
	if status.Code(err) == codes.NotFound {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return s, true, nil
}

// applyTaskState updates rec with what the shim reports. A stop the record
// (read before the shim was asked) does not have yet is read again from st:
// the shim saves the exit, with its reason, before it reports the process
// stopped.
func applyTaskState(st sandbox.Store, rec *sandbox.Container, s *taskapi.StateResponse) {
	if s.Status == tasktypes.Status_STOPPED && rec.Exit == nil {
		if fresh, err := st.LoadContainer(rec.SandboxID, rec.ID); err == nil && fresh.Exit != nil {
			*rec = *fresh
		}
	}
	switch s.Status {
	case tasktypes.Status_CREATED:
		rec.State = sandbox.ContainerCreated
	case tasktypes.Status_RUNNING, tasktypes.Status_PAUSED, tasktypes.Status_PAUSING:
		rec.State = sandbox.ContainerRunning
	case tasktypes.Status_STOPPED:
		if rec.State != sandbox.ContainerRestarting { // the shim's record knows
			rec.State = sandbox.ContainerStopped
		}
		if rec.Exit == nil {
			rec.Exit = &sandbox.Exit{Status: int(s.ExitStatus)}
			if s.ExitedAt != nil {
				rec.Exit.At = s.ExitedAt.AsTime()
			}
		}
	}
	if s.Pid != 0 {
		rec.PID = int(s.Pid)
	}
}

// offlineState corrects rec when its shim is dead: nobody will record the
// exit of a container whose process is gone.
func offlineState(rec *sandbox.Container) {
	if rec.State == sandbox.ContainerStopped {
		return
	}
	if rec.PID > 0 && sandbox.Alive(rec.PID, 0) {
		rec.State = sandbox.ContainerRunning
		return
	}
	rec.State = sandbox.ContainerStopped
}

// listContainers returns the containers of sb (or of every sandbox), with
// states from their shims.
func (a *App) listContainers(ctx context.Context, g *globals, sbs []*sandbox.Sandbox) ([]containerView, error) {
	st := g.store()
	var out []containerView
	for _, sb := range sbs {
		ids, err := st.ContainerIDs(sb.ID)
		if err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			continue
		}
		var c *shimclient.Client
		if shimAlive(sb) {
			if c, err = g.dial(ctx, sb); err == nil {
				defer c.Close()
			}
		}
		var views []containerView
		for _, id := range ids {
			rec, err := st.LoadContainer(sb.ID, id)
			if errors.Is(err, sandbox.ErrNotFound) {
				continue // being created or removed right now
			}
			if err != nil {
				return nil, err
			}
			if c != nil {
				if s, ok, err := taskState(ctx, c, id); err == nil && ok {
					applyTaskState(st, rec, s)
				}
			} else {
				offlineState(rec)
			}
			views = append(views, containerView{Container: *rec, SandboxName: sb.Name})
		}
		slices.SortFunc(views, func(x, y containerView) int { return x.CreatedAt.Compare(y.CreatedAt) })
		out = append(out, views...)
	}
	return out, nil
}

func (a *App) psCommand(g *globals) *cobra.Command {
	var sbRef, format string
	var all, quiet bool
	cmd := &cobra.Command{
		Use:   "ps [flags]",
		Short: "List containers",
		Long:  `List running (and restarting) containers of every sandbox, or of one with --sandbox; -a lists stopped and created ones too.`,
		Example: `  podbox ps
  podbox ps -a --sandbox web
  podbox ps -aq | xargs podbox rm -f`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			st := g.store()
			var sbs []*sandbox.Sandbox
			if sbRef != "" {
				sb, err := resolveSandbox(st, sbRef)
				if err != nil {
					return err
				}
				sbs = []*sandbox.Sandbox{sb}
			} else {
				var err error
				if sbs, err = loadSandboxes(st); err != nil {
					return err
				}
			}
			views, err := a.listContainers(cmd.Context(), g, sbs)
			if err != nil {
				return err
			}
			if !all {
				views = slices.DeleteFunc(views, func(v containerView) bool {
					return v.State != sandbox.ContainerRunning && v.State != sandbox.ContainerRestarting
				})
			}
			return writeList(a.Stdout, views, quiet, format, func(v containerView) string { return v.ID },
				func() error { return writeContainerTable(a.Stdout, views, a.Now()) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&sbRef, "sandbox", "", "list only this sandbox's containers")
	f.BoolVarP(&all, "all", "a", false, "list containers in every state, not only running ones")
	f.BoolVarP(&quiet, "quiet", "q", false, "print only IDs")
	f.StringVarP(&format, "output", "o", "table", "output format: table or json")
	return cmd
}

func (a *App) logsCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "logs CONTAINER",
		Short: "Print a container's output",
		Long: `Print everything the container wrote, from its log: its stdout to stdout and
its stderr to stderr. Works for stopped containers and without the shim.`,
		Example: `  podbox logs srv
  podbox logs srv 2>/dev/null   # stdout only`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rec, err := g.store().ResolveContainer(args[0])
			if err != nil {
				return err
			}
			path := rec.LogPath
			if path == "" {
				path = filepath.Join(g.store().ContainerDir(rec.SandboxID, rec.ID), "log")
			}
			f, err := os.Open(path)
			if errors.Is(err, os.ErrNotExist) {
				return nil // nothing written yet
			}
			if err != nil {
				return objErr("container", rec.Name, "logs", err)
			}
			defer f.Close()
			if err := copyLog(f, a.Stdout, a.Stderr); err != nil {
				return objErr("container", rec.Name, "logs", err)
			}
			return nil
		},
	}
}

// logEntry is one line of a container's log file (runtime/stdio's format).
type logEntry struct {
	Time   time.Time `json:"time"`
	Stream string    `json:"stream"`
	Log    string    `json:"log"`
}

// copyLog splits a log file back into its streams. A torn last line (the
// shim is writing it right now) is skipped rather than reported.
func copyLog(r io.Reader, stdout, stderr io.Writer) error {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			var e logEntry
			if jerr := json.Unmarshal(line, &e); jerr != nil {
				return fmt.Errorf("malformed log line: %w", jerr)
			}
			w := stdout
			if e.Stream == "stderr" {
				w = stderr
			}
			if _, werr := io.WriteString(w, e.Log); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// resolveContainer finds the container ref names and its sandbox.
func (g *globals) resolveContainer(ctx context.Context, ref string) (*sandbox.Container, *sandbox.Sandbox, error) {
	st := g.store()
	rec, err := st.ResolveContainer(ref)
	if err != nil {
		return nil, nil, err
	}
	sb, err := st.LoadSandbox(rec.SandboxID)
	if err != nil {
		return nil, nil, objErr("container", rec.Name, "find sandbox", err)
	}
	return rec, sb, nil
}

func (a *App) stopCommand(g *globals) *cobra.Command {
	var timeout uint32
	cmd := &cobra.Command{
		Use:   "stop CONTAINER [flags]",
		Short: "Stop a running container",
		Long:  `Send the container SIGTERM and, if it has not exited after the timeout, SIGKILL.`,
		Example: `  podbox stop srv
  podbox stop --timeout 1 srv`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			rec, sb, err := g.resolveContainer(ctx, args[0])
			if err != nil {
				return err
			}
			c, err := g.dial(ctx, sb)
			if err != nil {
				return objErr("container", rec.Name, "stop", err)
			}
			defer c.Close()
			if err := stopTask(ctx, c, rec.ID, time.Duration(timeout)*time.Second); err != nil {
				return objErr("container", rec.Name, "stop", err)
			}
			return nil
		},
	}
	cmd.Flags().Uint32Var(&timeout, "timeout", 10, "seconds to wait after SIGTERM before SIGKILL")
	return cmd
}

// stopTask stops task id: SIGTERM, wait up to timeout, then SIGKILL to every
// process of the container; with a zero timeout (rm -f) SIGKILL at once. A
// task that is not running is already stopped.
//
// One Wait covers both signals and is never given up early: the shim answers
// a Wait whatever the client did with it, and ttrpc's client logs the answer
// to a call whose context it already cancelled ("received message on
// inactive stream") on our stderr. So the grace period is a timer here, not a
// deadline on the call.
func stopTask(ctx context.Context, c *shimclient.Client, id string, timeout time.Duration) error {
	s, ok, err := taskState(ctx, c, id)
	if err != nil {
		return err
	}
	if ok && s.Status == tasktypes.Status_STOPPED {
		return endRestarts(ctx, c, id) // it may be waiting to restart
	}
	if !ok || s.Status != tasktypes.Status_RUNNING && s.Status != tasktypes.Status_PAUSED {
		return nil
	}
	exited := make(chan error, 1)
	go func() {
		_, err := c.Task.Wait(ctx, &taskapi.WaitRequest{ID: id})
		exited <- err
	}()
	kill := func(sig syscall.Signal, all bool) error {
		_, err := c.Task.Kill(ctx, &taskapi.KillRequest{ID: id, Signal: uint32(sig), All: all})
		if status.Code(err) == codes.NotFound {
			return nil // it has just exited; the Wait says so
		}
		return err
	}
	if timeout > 0 {
		if err := kill(syscall.SIGTERM, false); err != nil {
			return err
		}
		faultpoint.Point("cli.stop.signalled")
		grace := time.NewTimer(timeout)
		select {
		case err := <-exited:
			grace.Stop()
			return err
		case <-grace.C:
		}
	}
	if err := kill(syscall.SIGKILL, true); err != nil {
		return err
	}
	limit := time.NewTimer(30 * time.Second)
	defer limit.Stop()
	select {
	case err := <-exited:
		return err
	case <-limit.C:
		return fmt.Errorf("task %s: still running 30 s after SIGKILL", id)
	}
}

func (a *App) rmCommand(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm CONTAINER... [flags]",
		Aliases: []string{"remove"},
		Short:   "Remove containers",
		Long: `Remove containers and their logs. A running container is refused unless -f
is given, which kills it first.`,
		Example: `  podbox rm srv
  podbox rm -f srv worker`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.rm(cmd.Context(), g, args, force)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill a running container before removing it")
	return cmd
}

// rmTarget is a container to remove with the shim serving it (nil if dead).
type rmTarget struct {
	rec     *sandbox.Container
	sb      *sandbox.Sandbox
	shim    *shimclient.Client
	running bool
}

func (a *App) rm(ctx context.Context, g *globals, refs []string, force bool) error {
	// Check every argument before removing any, so one bad name changes
	// nothing.
	var targets []rmTarget
	defer func() {
		for _, t := range targets {
			if t.shim != nil {
				t.shim.Close()
			}
		}
	}()
	for _, ref := range refs {
		rec, sb, err := g.resolveContainer(ctx, ref)
		if err != nil {
			return err
		}
		t := rmTarget{rec: rec, sb: sb}
		if shimAlive(sb) {
			if t.shim, err = g.dial(ctx, sb); err != nil {
				return objErr("container", rec.Name, "remove", err)
			}
			s, ok, err := taskState(ctx, t.shim, rec.ID)
			if err != nil {
				targets = append(targets, t)
				return objErr("container", rec.Name, "remove", err)
			}
			t.running = ok && (s.Status == tasktypes.Status_RUNNING || s.Status == tasktypes.Status_PAUSED ||
				rec.State == sandbox.ContainerRestarting)
		} else {
			offlineState(rec)
			t.running = rec.State == sandbox.ContainerRunning
		}
		targets = append(targets, t)
		if t.running && !force {
			return fmt.Errorf("container %q: remove: container is %s; stop it first or use -f", rec.Name, runningWord(rec))
		}
	}
	var errs []error
	for _, t := range targets {
		if err := a.removeContainer(ctx, g, t); err != nil {
			errs = append(errs, objErr("container", t.rec.Name, "remove", err))
		}
	}
	return errors.Join(errs...)
}

func (a *App) removeContainer(ctx context.Context, g *globals, t rmTarget) error {
	if t.shim == nil {
		// The shim is gone: the OCI runtime still knows the container.
		d := runcDeleter{runtime: g.runtimeBinary(), root: filepath.Join(g.root, "runc")}
		if err := d.DeleteContainer(ctx, t.rec.ID); err != nil {
			return err
		}
		return g.store().RemoveContainerRecord(t.rec)
	}
	if t.running {
		if err := stopTask(ctx, t.shim, t.rec.ID, 0); err != nil {
			return err
		}
	}
	return deleteTask(ctx, g.store(), t.shim, t.rec)
}

func (a *App) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:         "version",
		Short:       "Print podbox's version",
		Example:     `  podbox version`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{noRoot: "yes"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(a.Stdout, "podbox %s\n", a.Version)
			return nil
		},
	}
}
