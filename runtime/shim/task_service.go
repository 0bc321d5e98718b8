package shim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/podbox/podbox/internal/faultpoint"
	types "github.com/podbox/podbox/runtime/apitypes"
	"github.com/podbox/podbox/runtime/events"
	"github.com/podbox/podbox/runtime/metrics"
	"github.com/podbox/podbox/runtime/reaper"
	"github.com/podbox/podbox/runtime/runc"
	"github.com/podbox/podbox/runtime/stdio"
	"github.com/podbox/podbox/runtime/taskapi"
	apievents "github.com/podbox/podbox/runtime/taskevents"
	task "github.com/podbox/podbox/runtime/tasktypes"
	"github.com/podbox/podbox/sandbox"
)

var _ taskapi.TaskService = (*Service)(nil)

// process is a container's init or one of its exec'd processes.
type process struct {
	execID   string         // "" for the init
	spec     *specs.Process // exec'd processes only
	terminal bool
	stdio    stdio.Config
	io       *stdio.IO
	pid      int
	status   task.Status
	exit     *reaper.Exit
	// reaped is set as soon as the reaper reports the exit, before the
	// output is drained and exit is set: from then on the pid may be
	// reused, and signalling it must say "already finished".
	reaped bool
	// killAllOnExit: the init of a container without a PID namespace of its
	// own (it shares the pod's, or the host's). Its exit does not end the
	// container's other processes, see watchProcess.
	killAllOnExit bool
	// done is closed once the process has exited and all its output is in
	// the log: a waiter never sees the exit before the last bytes.
	done chan struct{}
}

// container is one OCI container joined to the sandbox.
type container struct {
	rec   *sandbox.Container
	init  *process
	execs map[string]*process
	// kind is what its init does for the Task API: runcInit, or
	// pauseInit for CRI's sandbox container, whose process is the pause.
	kind initTask
	// mounted: the shim mounted the rootfs containerd prepared.
	mounted bool
	// cgroup is where the container's cgroup is in each hierarchy (see
	// containerCgroup).
	cgroup sandbox.CgroupPaths
	// poststartHooks: the spec has poststart hooks (see runc.StartOpts).
	poststartHooks bool
	// restart is the container's restart policy and state; nil without one.
	restart *restarter
}

func newProcess(execID string, terminal bool, cfg stdio.Config) *process {
	return &process{execID: execID, terminal: terminal, stdio: cfg, status: task.Status_CREATED, done: make(chan struct{})}
}

// lookup finds a container and one of its processes; s.mu must be held.
func (s *Service) lookup(id, execID string) (*container, *process, error) {
	c, ok := s.containers[id]
	if !ok {
		return nil, nil, fmt.Errorf("container %q: %w", id, sandbox.ErrNotFound)
	}
	if execID == "" {
		return c, c.init, nil
	}
	p, ok := c.execs[execID]
	if !ok {
		return nil, nil, fmt.Errorf("container %q: exec %q: %w", id, execID, sandbox.ErrNotFound)
	}
	return c, p, nil
}

// CRI's annotations on the containers it creates.
const (
	annCRIContainerType = "io.kubernetes.cri.container-type"
	annCRISandboxName   = "io.kubernetes.cri.sandbox-name"
	annCRISandboxNS     = "io.kubernetes.cri.sandbox-namespace"
	criSandbox          = "sandbox"
)

// Create creates the container in req's bundle (runc create): its process
// exists, stopped before the user's program, until Start. Which sandbox it
// joins depends on who asks:
//   - the CLI (or containerd 2.x's shim sandboxer) made the sandbox first
//     through the Sandbox API, and the container joins it;
//   - `ctr run` with an io.podbox.sandbox annotation: the first container of
//     the group makes the sandbox (network, pause), later ones join it, and
//     the sandbox goes when its last container is deleted;
//   - containerd's CRI sends the pod's sandbox container first (with the
//     network namespace CNI made): podbox starts its own pause there instead
//     of running the image, and answers for it as that container's task.
//     The pod's app containers arrive with specs already pointing at the
//     pause's namespaces.
func (s *Service) Create(ctx context.Context, req *taskapi.CreateTaskRequest) (*taskapi.CreateTaskResponse, error) {
	s.mu.Lock()
	locked := true
	defer func() {
		if locked {
			s.mu.Unlock()
		}
	}()
	if _, dup := s.containers[req.ID]; dup || s.creating[req.ID] {
		return nil, toStatus(fmt.Errorf("container %q: %w", req.ID, os.ErrExist))
	}
	specPath := filepath.Join(req.Bundle, "config.json")
	raw, err := os.ReadFile(specPath)
	if err != nil {
		return nil, toStatus(fmt.Errorf("container %q: %w: read spec: %v", req.ID, errInvalid, err))
	}
	// CRI's sandbox container is decoded as the few fields the pause
	// needs: decoding a whole specs.Spec leaves encoding/json's cache of
	// every type in it (about 250 KiB) in a shim that, for an idle pod,
	// would never use it again.
	var sbSpec sandboxSpec
	if err := json.Unmarshal(raw, &sbSpec); err != nil {
		return nil, toStatus(fmt.Errorf("container %q: %w: read spec: %v", req.ID, errInvalid, err))
	}
	cri := sbSpec.Annotations[annCRIContainerType]
	if cri == criSandbox {
		pid, err := s.createSandboxTask(ctx, req, &sbSpec)
		if err != nil {
			return nil, toStatus(err)
		}
		s.publish(events.TopicTaskCreate, &apievents.TaskCreate{ContainerID: req.ID, Bundle: req.Bundle, Pid: uint32(pid),
			IO: &apievents.TaskIO{Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr, Terminal: req.Terminal}})
		return &taskapi.CreateTaskResponse{Pid: uint32(pid)}, nil
	}
	var spec specs.Spec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return nil, toStatus(fmt.Errorf("container %q: %w: read spec: %v", req.ID, errInvalid, err))
	}
	rs, err := s.restarterFor(req.ID, &spec, cri != "")
	if err != nil {
		return nil, toStatus(err)
	}
	if s.sb == nil {
		if cri != "" {
			return nil, toStatus(fmt.Errorf("container %q: %w: its pod's sandbox is not in this shim", req.ID, errState))
		}
		if err := s.createSandbox(ctx, s.implicitOptions()); err != nil {
			return nil, toStatus(fmt.Errorf("container %q: sandbox for group %q: %w", req.ID, s.cfg.ID, err))
		}
		s.implicit = true
	}
	sb := s.sb
	// What follows (the spec joined, the record, the rootfs mounted, runc
	// create) takes tens of milliseconds and touches nothing of the
	// shim's but what it makes: it runs without the lock, so that the
	// containers of a pod started together are created together. The ID
	// is held meanwhile; finishCreate takes the lock again.
	s.creating[req.ID] = true
	s.mu.Unlock()
	locked = false
	return s.finishCreate(ctx, req, sb, &spec, cri, specPath, rs)
}

// finishCreate is Create's part without the lock, then its end with it.
func (s *Service) finishCreate(ctx context.Context, req *taskapi.CreateTaskRequest, sb *sandbox.Sandbox, spec *specs.Spec,
	cri, specPath string, rs *restarter) (_ *taskapi.CreateTaskResponse, retErr error) {
	defer func() {
		if retErr != nil {
			s.mu.Lock()
			delete(s.creating, req.ID)
			s.mu.Unlock()
		}
	}()
	// The first container sets up the OOM watcher, while runc creates it.
	go s.oomWatcher()
	// CRI already points its containers at the pod's namespaces (and,
	// running the sandbox as a container, mounts its own hosts files and
	// /dev/shm); everyone else's spec is joined here.
	if cri == "" {
		if err := s.node.Join(spec, sb, req.ID); err != nil {
			return nil, toStatus(fmt.Errorf("container %q: %w: %v", req.ID, errState, err))
		}
	} else {
		s.node.EnsureCRIEtcMounts(spec, sb)
		s.node.ShareShm(spec, sb)
	}
	if err := s.node.MountShm(spec, sb); err != nil {
		return nil, toStatus(fmt.Errorf("container %q: %w", req.ID, err))
	}
	if err := writeJSON(specPath, spec); err != nil {
		return nil, toStatus(fmt.Errorf("container %q: write joined spec: %w", req.ID, err))
	}
	rec, err := s.containerRecord(sb, req, spec)
	if err != nil {
		return nil, toStatus(err)
	}
	faultpoint.Point("shim.run.record")
	if err := mountRootfs(rootfsDir(req.Bundle), req.Rootfs); err != nil {
		s.node.Store.RemoveContainerRecord(rec)
		return nil, toStatus(fmt.Errorf("container %q: %w", req.ID, err))
	}
	p := newProcess("", req.Terminal, stdio.Config{LogPath: rec.LogPath, Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr})
	p.killAllOnExit = !ownPIDNamespace(spec)
	if err := s.spawn(ctx, req.ID, p, func(o runc.Stdio, console string) (runc.Process, error) {
		return s.runc.Create(ctx, req.ID, runc.CreateOpts{Bundle: req.Bundle, ConsoleSocket: console, Stdio: o})
	}); err != nil {
		// runc may have made the container before it failed (or was
		// killed before it could say it had): its state, its init
		// waiting on the exec FIFO and its cgroup must not outlive the
		// record that names them.
		if derr := s.runc.Delete(context.WithoutCancel(ctx), req.ID, true); derr != nil && !errors.Is(derr, runc.ErrNotExist) {
			s.log.Warn("delete the container of a failed create", "container", req.ID, "error", derr)
		}
		unmountRootfs(rootfsDir(req.Bundle))
		s.node.Store.RemoveContainerRecord(rec)
		return nil, toStatus(err)
	}
	faultpoint.Point("shim.run.runc-created")
	cgroup := containerCgroup(spec, p.pid)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.creating, req.ID)
	if gone := s.sb != sb || s.removing; gone || sb.PauseExit != nil {
		// The sandbox went (or is going), or its pause died, while runc
		// created the container: it must not outlive the sandbox, nor
		// run on in one whose other containers were stopped with the
		// pause (watchPause did not see it).
		s.runc.Delete(context.WithoutCancel(ctx), req.ID, true)
		unmountRootfs(rootfsDir(req.Bundle))
		s.node.Store.RemoveContainerRecord(rec)
		why := "its sandbox's pause exited meanwhile"
		if gone {
			why = "its sandbox was removed meanwhile"
		}
		return nil, toStatus(fmt.Errorf("container %q: %w: %s", req.ID, errState, why))
	}
	c := &container{rec: rec, init: p, execs: map[string]*process{}, kind: runcInit{}, mounted: len(req.Rootfs) > 0,
		poststartHooks: spec.Hooks != nil && len(spec.Hooks.Poststart) > 0, restart: rs}
	if rs != nil {
		rec.RestartPolicy = rs.policy.String()
	}
	c.cgroup = cgroup
	if w := s.oomWatcher(); w != nil && !c.cgroup.IsZero() {
		if err := w.Add(req.ID, c.cgroup.In("memory")); err != nil {
			s.log.Warn("watch for OOM kills", "container", req.ID, "error", err)
		}
	}
	s.containers[req.ID] = c
	rec.State, rec.PID = sandbox.ContainerCreated, p.pid
	if p.exit != nil {
		// It died before it was listed (killed meanwhile): its exit
		// found no container to record it in.
		rec.State = sandbox.ContainerStopped
		rec.Exit = &sandbox.Exit{Status: p.exit.Status, At: p.exit.Time.UTC(), Reason: s.exitReason(req.ID, p.exit.Status)}
	}
	s.saveContainer(rec)
	s.log.Info("container created", "id", req.ID, "pid", p.pid)
	s.publish(events.TopicTaskCreate, &apievents.TaskCreate{
		ContainerID: req.ID, Bundle: req.Bundle, Rootfs: req.Rootfs, Pid: uint32(p.pid),
		IO: &apievents.TaskIO{Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr, Terminal: req.Terminal},
	})
	return &taskapi.CreateTaskResponse{Pid: uint32(p.pid)}, nil
}

// containerCgroup says where a container's cgroup is. An absolute
// cgroupsPath is where runc puts it, below every hierarchy's root. A
// relative one (CRI's "SLICE:cri-containerd:ID" for a pod in a systemd
// slice, or a parent without a leading slash) runc puts below its own,
// i.e. the shim's, cgroup, which may differ between hierarchies: that
// cgroup is found from the init's PID, as containerd's runc shim finds
// every container's. An init that has gone already leaves the spec's path.
func containerCgroup(spec *specs.Spec, pid int) sandbox.CgroupPaths {
	var path string
	if spec.Linux != nil {
		path = spec.Linux.CgroupsPath
	}
	if !strings.HasPrefix(path, "/") {
		if cg, err := sandbox.ProcessCgroups(pid); err == nil {
			return cg
		}
	}
	return sandbox.CgroupPaths{Path: path}
}

// implicitOptions describe the sandbox a `ctr run` group gets: named after
// the group when that is a valid name, with an ID derived from namespace and
// group so that it is the same whichever container of the group comes first.
func (s *Service) implicitOptions() sandbox.Options {
	sum := sha256.Sum256([]byte(s.cfg.Namespace + "/" + s.cfg.ID))
	id := hex.EncodeToString(sum[:])
	name := s.cfg.ID
	if sandbox.ValidName("sandbox", name) != nil {
		name = id[:12]
	}
	return sandbox.Options{ID: id, Name: name, Network: sandbox.NetworkBridge,
		Labels: map[string]string{"io.podbox.created-by": "containerd", "io.podbox.containerd-namespace": s.cfg.Namespace}}
}

// sandboxSpec is what podbox reads of the OCI spec of CRI's sandbox
// container: the pause is podbox's own, started in the namespaces below, so
// the rest of the spec (the image's process, mounts, resources) is not used.
type sandboxSpec struct {
	Hostname    string            `json:"hostname,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Linux       *sandboxLinux     `json:"linux,omitempty"`
}

type sandboxLinux struct {
	Namespaces []specs.LinuxNamespace `json:"namespaces,omitempty"`
	Sysctl     map[string]string      `json:"sysctl,omitempty"`
}

// createSandboxTask builds the sandbox for CRI's sandbox container and
// registers the pause as that container's process. s.mu is held.
func (s *Service) createSandboxTask(ctx context.Context, req *taskapi.CreateTaskRequest, spec *sandboxSpec) (int, error) {
	o := sandbox.Options{ID: req.ID, Name: req.ID[:min(12, len(req.ID))], Network: sandbox.NetworkExternal,
		Labels: map[string]string{"io.podbox.created-by": "cri"}}
	if spec.Hostname != "" {
		o.Hostname = spec.Hostname
	}
	for k, v := range map[string]string{"pod": spec.Annotations[annCRISandboxName], "namespace": spec.Annotations[annCRISandboxNS]} {
		if v != "" {
			o.Labels["io.kubernetes.pod."+k] = v
		}
	}
	// The network namespace CNI set up; a host-network pod has none, and
	// its pause shares the node's (the shim's own).
	o.NetNSPath = "/proc/" + strconv.Itoa(os.Getpid()) + "/ns/net"
	if spec.Linux != nil {
		// A namespace the spec does not list is the node's (hostIPC,
		// hostPID; a host-network pod's UTS): the pause stays in it, so
		// that the containers that join the pause's share it too.
		o.Host = sandbox.HostNamespaces{IPC: true, UTS: true, PID: true}
		for _, ns := range spec.Linux.Namespaces {
			switch ns.Type {
			case specs.NetworkNamespace:
				if ns.Path != "" {
					o.NetNSPath = ns.Path
				}
			case specs.IPCNamespace:
				o.Host.IPC = false
			case specs.UTSNamespace:
				o.Host.UTS = false
			case specs.PIDNamespace:
				o.Host.PID = false
			}
		}
		if err := criSysctls(spec, &o); err != nil {
			return 0, fmt.Errorf("pod sandbox %q: %w", req.ID, err)
		}
	}
	if err := s.createSandbox(ctx, o); err != nil {
		return 0, fmt.Errorf("pod sandbox %q: %w", req.ID, err)
	}
	sb := s.sb
	p := &process{status: task.Status_CREATED, pid: sb.PausePID, done: make(chan struct{}), stdio: stdio.Config{Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr}}
	s.containers[req.ID] = &container{
		rec:   &sandbox.Container{ID: req.ID, Name: "pause", SandboxID: sb.ID, Bundle: req.Bundle},
		init:  p,
		execs: map[string]*process{},
		kind:  pauseInit{},
	}
	pauseDone := s.pauseDone
	go func() {
		<-pauseDone
		s.mu.Lock()
		e := s.sb.PauseExit
		p.exit = &reaper.Exit{Pid: sb.PausePID, Status: e.Status, Time: e.At}
		p.status = task.Status_STOPPED
		s.mu.Unlock()
		close(p.done)
		s.publish(events.TopicTaskExit, &apievents.TaskExit{ContainerID: req.ID, ID: req.ID, Pid: uint32(sb.PausePID),
			ExitStatus: uint32(e.Status), ExitedAt: timestamppb.New(e.At)})
	}()
	return sb.PausePID, nil
}

// criSysctls takes into o the sysctls of CRI's sandbox container spec,
// which runc would set in the namespaces the sandbox container makes: the
// pause's, which its containers join. A sysctl of a namespace the spec
// leaves the node's (a pod with hostIPC; a host-network pod, whose network
// namespace Node.Create recognizes) is refused, as runc refuses it.
func criSysctls(spec *sandboxSpec, o *sandbox.Options) error {
	if len(spec.Linux.Sysctl) == 0 {
		return nil
	}
	own := map[string]bool{}
	for _, ns := range spec.Linux.Namespaces {
		switch ns.Type {
		case specs.IPCNamespace:
			own[sandbox.SysctlIPC] = true
		case specs.UTSNamespace:
			own[sandbox.SysctlUTS] = true
		}
	}
	for k := range spec.Linux.Sysctl {
		ns, err := sandbox.SysctlNamespace(k)
		if err != nil {
			return fmt.Errorf("%w: %v", errInvalid, err)
		}
		if ns != sandbox.SysctlNet && !own[ns] {
			return fmt.Errorf("%w: sysctl %q: the pod shares the node's %s namespace", errInvalid, k, strings.ToUpper(ns))
		}
	}
	o.Sysctls = spec.Linux.Sysctl
	return nil
}

// containerRecord returns the record the CLI made for the container, or makes
// one for a container created by containerd.
func (s *Service) containerRecord(sb *sandbox.Sandbox, req *taskapi.CreateTaskRequest, spec *specs.Spec) (*sandbox.Container, error) {
	if rec, err := s.node.Store.LoadContainer(sb.ID, req.ID); err == nil {
		if rec.LogPath == "" {
			rec.LogPath = filepath.Join(s.node.Store.ContainerDir(sb.ID, req.ID), "log")
		}
		return rec, nil
	}
	name := spec.Annotations["io.podbox.name"]
	if name == "" || sandbox.ValidName("container", name) != nil {
		name = req.ID
	}
	if sandbox.ValidName("container", name) != nil {
		sum := sha256.Sum256([]byte(req.ID))
		name = "c" + hex.EncodeToString(sum[:6])
	}
	var args []string
	if spec.Process != nil {
		args = spec.Process.Args
	}
	rec := &sandbox.Container{
		ID: req.ID, Name: name, SandboxID: sb.ID, Command: args, State: sandbox.ContainerCreated,
		Bundle: req.Bundle, LogPath: filepath.Join(s.node.Store.ContainerDir(sb.ID, req.ID), "log"),
		CreatedAt: time.Now().UTC(),
	}
	if spec.Root != nil {
		rec.Rootfs = spec.Root.Path
	}
	if err := s.node.Store.CreateContainerRecord(rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// spawn sets up p's stdio, runs the runtime command that creates its process,
// and starts watching for its exit. s.mu is held.
func (s *Service) spawn(ctx context.Context, id string, p *process, run func(runc.Stdio, string) (runc.Process, error)) error {
	var rp runc.Process
	if p.terminal {
		cs, err := stdio.NewConsoleSocket()
		if err != nil {
			return fmt.Errorf("container %q: %w", id, err)
		}
		defer cs.Close()
		if rp, err = run(runc.Stdio{}, cs.Path()); err != nil {
			return err
		}
		master, err := cs.ReceiveMaster(ctx)
		if err == nil {
			p.io, err = stdio.NewTerminal(ctx, p.stdio, master)
		}
		if err != nil {
			syscall.Kill(rp.Pid, syscall.SIGKILL)
			return fmt.Errorf("container %q: terminal: %w", id, err)
		}
	} else {
		io, err := stdio.NewPipes(ctx, p.stdio)
		if err != nil {
			return fmt.Errorf("container %q: stdio: %w", id, err)
		}
		in, out, errw := io.Child()
		rp, err = run(runc.Stdio{Stdin: in, Stdout: out, Stderr: errw}, "")
		io.CloseChild()
		if err != nil {
			io.Close()
			return err
		}
		p.io = io
	}
	p.pid = rp.Pid
	go s.watchProcess(id, p, rp.Exited)
	return nil
}

// ownPIDNamespace reports whether spec gives the container a new PID
// namespace, in which its init is PID 1.
func ownPIDNamespace(spec *specs.Spec) bool {
	if spec.Linux == nil {
		return false
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace {
			return ns.Path == ""
		}
	}
	return false
}

// watchProcess records p's exit once its output is all in the log.
func (s *Service) watchProcess(id string, p *process, exited <-chan reaper.Exit) {
	e := <-exited
	s.mu.Lock()
	p.reaped = true
	s.mu.Unlock()
	if p.killAllOnExit {
		// The init's exit ends the container, but the kernel kills the
		// rest of its processes only when the init was PID 1 of its own
		// namespace. In a shared one (CRI's pod PID namespace, which is
		// what it asks for when a container's config names no namespace
		// mode) a background child, like the `sleep` of busybox's default
		// shell loop, is reparented to the pause and lives on, holding
		// the container's stdout/stderr: the output never ends, the
		// client FIFOs stay open, and containerd 2.x's CRI, which waits
		// for its side of the FIFOs in task.Delete, never marks the
		// container stopped. Kill what is left, as containerd's runc shim
		// does (ShouldKillAllOnExit): `runc kill --all` signals the
		// container's cgroup.
		if err := s.runc.Kill(context.Background(), id, syscall.SIGKILL, true); err != nil && !errors.Is(err, runc.ErrNotExist) {
			s.log.Debug("kill the rest of the container after its init exited", "container", id, "error", err)
		}
	}
	// Output ends when every holder of the pipes is gone; bound the wait in
	// case a daemonized grandchild keeps them open.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	p.io.Wait(ctx)
	cancel()
	s.mu.Lock()
	p.exit, p.status = &e, task.Status_STOPPED
	if c, ok := s.containers[id]; ok && p.execID == "" && c.init == p {
		c.rec.State = sandbox.ContainerStopped
		c.rec.Exit = &sandbox.Exit{Status: e.Status, At: e.Time.UTC(), Reason: s.exitReason(id, e.Status)}
		if c.restart != nil {
			s.scheduleRestart(c, e)
		}
		s.saveContainer(c.rec)
	}
	s.mu.Unlock()
	close(p.done)
	s.log.Info("process exited", "container", id, "exec", p.execID, "pid", e.Pid, "status", e.Status)
	execID := p.execID
	if execID == "" {
		execID = id // containerd names the init process by the container's ID
	}
	s.publish(events.TopicTaskExit, &apievents.TaskExit{ContainerID: id, ID: execID, Pid: uint32(e.Pid),
		ExitStatus: uint32(e.Status), ExitedAt: timestamppb.New(e.Time)})
}

func (s *Service) saveContainer(rec *sandbox.Container) {
	if err := s.node.Store.SaveContainer(rec); err != nil {
		s.log.Error("save container", "error", err)
	}
}

// Start starts a created container (runc start) or an exec'd process.
func (s *Service) Start(ctx context.Context, req *taskapi.StartRequest) (*taskapi.StartResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, p, err := s.lookup(req.ID, req.ExecID)
	if err != nil {
		return nil, toStatus(err)
	}
	if p.status != task.Status_CREATED {
		return nil, toStatus(fmt.Errorf("container %q: %w: already started", req.ID, errState))
	}
	if req.ExecID == "" {
		if err := c.kind.start(ctx, s, c); err != nil {
			return nil, toStatus(err)
		}
		s.publish(events.TopicTaskStart, &apievents.TaskStart{ContainerID: req.ID, Pid: uint32(p.pid)})
		return &taskapi.StartResponse{Pid: uint32(p.pid)}, nil
	}
	if c.init.status != task.Status_RUNNING {
		return nil, toStatus(fmt.Errorf("container %q: %w: not running, cannot exec", req.ID, errState))
	}
	pidFile := filepath.Join(s.node.Store.ContainerDir(c.rec.SandboxID, req.ID), "exec-"+req.ExecID+".pid")
	defer os.Remove(pidFile)
	err = s.spawn(ctx, req.ID, p, func(o runc.Stdio, console string) (runc.Process, error) {
		return s.runc.Exec(ctx, req.ID, *p.spec, runc.ExecOpts{PidFile: pidFile, ConsoleSocket: console, Stdio: o})
	})
	if err != nil {
		return nil, toStatus(err)
	}
	faultpoint.Point("shim.exec.started")
	p.status = task.Status_RUNNING
	s.publish(events.TopicTaskExecStarted, &apievents.TaskExecStarted{ContainerID: req.ID, ExecID: req.ExecID, Pid: uint32(p.pid)})
	return &taskapi.StartResponse{Pid: uint32(p.pid)}, nil
}

// Exec registers a process to run in a container; Start runs it.
func (s *Service) Exec(ctx context.Context, req *taskapi.ExecProcessRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, _, err := s.lookup(req.ID, "")
	if err != nil {
		return nil, toStatus(err)
	}
	if err := c.kind.execable(c); err != nil {
		return nil, toStatus(err)
	}
	if req.ExecID == "" || filepath.Base(req.ExecID) != req.ExecID {
		return nil, toStatus(fmt.Errorf("container %q: %w: exec ID %q", req.ID, errInvalid, req.ExecID))
	}
	if _, dup := c.execs[req.ExecID]; dup {
		return nil, toStatus(fmt.Errorf("container %q: exec %q: %w", req.ID, req.ExecID, os.ErrExist))
	}
	if req.Spec == nil {
		return nil, toStatus(fmt.Errorf("container %q: %w: exec without a process spec", req.ID, errInvalid))
	}
	var ps specs.Process
	if err := json.Unmarshal(req.Spec.Value, &ps); err != nil {
		return nil, toStatus(fmt.Errorf("container %q: %w: exec process spec: %v", req.ID, errInvalid, err))
	}
	p := newProcess(req.ExecID, req.Terminal, stdio.Config{LogPath: c.rec.LogPath, Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr})
	ps.Terminal = req.Terminal
	p.spec = &ps
	c.execs[req.ExecID] = p
	s.publish(events.TopicTaskExecAdded, &apievents.TaskExecAdded{ContainerID: req.ID, ExecID: req.ExecID})
	return &emptypb.Empty{}, nil
}

// Wait returns when the process has exited and its output is all logged.
func (s *Service) Wait(ctx context.Context, req *taskapi.WaitRequest) (*taskapi.WaitResponse, error) {
	s.mu.Lock()
	_, p, err := s.lookup(req.ID, req.ExecID)
	s.mu.Unlock()
	if err != nil {
		return nil, toStatus(err)
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return nil, toStatus(ctx.Err())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return &taskapi.WaitResponse{ExitStatus: uint32(p.exit.Status), ExitedAt: timestamppb.New(p.exit.Time)}, nil
}

// Kill signals the container's init (all of its processes with All) or an
// exec'd process.
//
// A process that has already exited answers NotFound "process already
// finished", as containerd's runc shim does: containerd's clients
// (WithProcessKill in task.Delete, `ctr task rm -f`, CRI's stop) take
// NotFound to mean "it is gone, wait for its exit", and fail on anything
// else. The exit counts from the moment it is reaped, not from when its
// output has been drained (status STOPPED): in between, the pid may be
// reused, and a plain kill(2) of it fails with ESRCH ("no such process:
// unknown"), or `runc kill` with "container not running".
func (s *Service) Kill(ctx context.Context, req *taskapi.KillRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	c, p, err := s.lookup(req.ID, req.ExecID)
	var pid int
	exited := false
	if err == nil {
		pid = p.pid
		if req.ExecID == "" {
			// Whatever the signal: its user is stopping the container,
			// and no restart may bring it back (as docker's kill).
			s.endRestarts(c)
			exited = c.kind.exited(s, c)
		} else {
			exited = p.status == task.Status_STOPPED || p.reaped
		}
	}
	s.mu.Unlock()
	if err != nil {
		return nil, toStatus(err)
	}
	if exited {
		return nil, toStatus(errFinished(req.ID, req.ExecID))
	}
	sig := syscall.Signal(req.Signal)
	if req.ExecID == "" {
		if err := c.kind.signal(ctx, s, c, pid, sig, req.All); err != nil {
			return nil, toStatus(err)
		}
		return &emptypb.Empty{}, nil
	}
	if err := syscall.Kill(pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil, toStatus(errFinished(req.ID, req.ExecID))
		}
		return nil, toStatus(fmt.Errorf("container %q: exec %q: kill %d: %w", req.ID, req.ExecID, pid, err))
	}
	return &emptypb.Empty{}, nil
}

// Delete removes an exited process, or the whole container once its init has
// exited (or never started): runc's state, its stdio, and its record.
func (s *Service) Delete(ctx context.Context, req *taskapi.DeleteRequest) (*taskapi.DeleteResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, p, err := s.lookup(req.ID, req.ExecID)
	if err != nil {
		return nil, toStatus(err)
	}
	if p.status == task.Status_RUNNING || p.status == task.Status_PAUSED {
		return nil, toStatus(fmt.Errorf("container %q: %w: process %d is running; stop it first", req.ID, errState, p.pid))
	}
	resp := &taskapi.DeleteResponse{Pid: uint32(p.pid)}
	if p.exit != nil {
		resp.ExitStatus, resp.ExitedAt = uint32(p.exit.Status), timestamppb.New(p.exit.Time)
	}
	if req.ExecID != "" {
		if p.io != nil {
			p.io.Close()
		}
		delete(c.execs, req.ExecID)
		return resp, nil
	}
	deleted := &apievents.TaskDelete{ContainerID: req.ID, ID: req.ID, Pid: resp.Pid, ExitStatus: resp.ExitStatus, ExitedAt: resp.ExitedAt}
	if err := c.kind.remove(ctx, s, c); err != nil {
		return nil, toStatus(err)
	}
	s.publish(events.TopicTaskDelete, deleted)
	if s.implicit && len(s.containers) == 0 {
		// The last container of a ctr group: its sandbox goes too.
		if err := s.removeSandbox(ctx); err != nil {
			return nil, toStatus(err)
		}
	}
	return resp, nil
}

// orphanGrace is how long a shim whose CRI sandbox task is deleted waits
// for containerd's Shutdown before it exits by itself.
const orphanGrace = 5 * time.Second

// removeSandbox stops and removes the shim's sandbox; s.mu is held, and is
// released while the pause is stopped.
func (s *Service) removeSandbox(ctx context.Context) error {
	sb := s.sb
	if sb == nil {
		return nil
	}
	if sb.State == sandbox.StateReady {
		sb.State = sandbox.StateStopped
	}
	s.removing = true
	s.mu.Unlock()
	err := s.node.Remove(ctx, sb, s.deleter())
	s.mu.Lock()
	s.removing = false
	if err != nil {
		return err
	}
	s.sb, s.implicit = nil, false
	if s.exitWhenIdle && len(s.containers) == 0 {
		s.exitAfterAnswer(ctx)
	}
	return nil
}

// removeContainer deletes c from runc, closes its stdio and drops its record;
// s.mu is held.
func (s *Service) removeContainer(ctx context.Context, c *container) error {
	s.endRestarts(c)
	if err := s.runc.Delete(ctx, c.rec.ID, true); err != nil {
		return err
	}
	faultpoint.Point("shim.rm.container-deleted")
	if c.mounted {
		if err := unmountRootfs(rootfsDir(c.rec.Bundle)); err != nil {
			return err
		}
	}
	for _, p := range append([]*process{c.init}, mapsValues(c.execs)...) {
		if p.io != nil {
			p.io.Close()
		}
	}
	delete(s.containers, c.rec.ID)
	if w := s.startedOOMWatcher(); w != nil {
		w.Remove(c.rec.ID)
	}
	return s.node.Store.RemoveContainerRecord(c.rec)
}

func mapsValues(m map[string]*process) []*process {
	out := make([]*process, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	return out
}

// State reports a container's or exec'd process's status.
func (s *Service) State(ctx context.Context, req *taskapi.StateRequest) (*taskapi.StateResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, p, err := s.lookup(req.ID, req.ExecID)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &taskapi.StateResponse{
		ID: req.ID, ExecID: req.ExecID, Bundle: c.rec.Bundle, Pid: uint32(p.pid), Status: p.status,
		Stdin: p.stdio.Stdin, Stdout: p.stdio.Stdout, Stderr: p.stdio.Stderr, Terminal: p.terminal,
	}
	if p.exit != nil {
		resp.ExitStatus, resp.ExitedAt = uint32(p.exit.Status), timestamppb.New(p.exit.Time)
	}
	return resp, nil
}

// Pids lists the container's processes.
func (s *Service) Pids(ctx context.Context, req *taskapi.PidsRequest) (*taskapi.PidsResponse, error) {
	s.mu.Lock()
	c, p, err := s.lookup(req.ID, "")
	s.mu.Unlock()
	if err != nil {
		return nil, toStatus(err)
	}
	pids, err := c.kind.pids(ctx, s, c, p.pid)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &taskapi.PidsResponse{}
	for _, pid := range pids {
		resp.Processes = append(resp.Processes, &task.ProcessInfo{Pid: uint32(pid)})
	}
	return resp, nil
}

// Pause freezes the container's processes.
func (s *Service) Pause(ctx context.Context, req *taskapi.PauseRequest) (*emptypb.Empty, error) {
	return s.setFrozen(ctx, req.ID, true)
}

// Resume thaws them.
func (s *Service) Resume(ctx context.Context, req *taskapi.ResumeRequest) (*emptypb.Empty, error) {
	return s.setFrozen(ctx, req.ID, false)
}

func (s *Service) setFrozen(ctx context.Context, id string, frozen bool) (*emptypb.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, _, err := s.lookup(id, "")
	if err != nil {
		return nil, toStatus(err)
	}
	if err := c.kind.freeze(ctx, s, c, frozen); err != nil {
		return nil, toStatus(err)
	}
	return &emptypb.Empty{}, nil
}

// Checkpoint is not supported: podbox keeps no CRIU integration.
func (s *Service) Checkpoint(ctx context.Context, req *taskapi.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, toStatus(fmt.Errorf("container %q: checkpoint: %w: not implemented by podbox", req.ID, errState))
}

// ResizePty resizes a process's terminal.
func (s *Service) ResizePty(ctx context.Context, req *taskapi.ResizePtyRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, p, err := s.lookup(req.ID, req.ExecID)
	if err != nil {
		return nil, toStatus(err)
	}
	if !p.terminal || p.io == nil {
		return nil, toStatus(fmt.Errorf("container %q: %w: no terminal", req.ID, errState))
	}
	if err := p.io.Resize(uint16(req.Width), uint16(req.Height)); err != nil {
		return nil, toStatus(err)
	}
	return &emptypb.Empty{}, nil
}

// CloseIO closes a process's stdin.
func (s *Service) CloseIO(ctx context.Context, req *taskapi.CloseIORequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, p, err := s.lookup(req.ID, req.ExecID)
	if err != nil {
		return nil, toStatus(err)
	}
	if p.io != nil && req.Stdin {
		if err := p.io.CloseIO(); err != nil {
			return nil, toStatus(err)
		}
	}
	return &emptypb.Empty{}, nil
}

// Update changes a container's resources (JSON of an OCI LinuxResources).
func (s *Service) Update(ctx context.Context, req *taskapi.UpdateTaskRequest) (*emptypb.Empty, error) {
	if req.Resources == nil {
		return nil, toStatus(fmt.Errorf("container %q: %w: no resources", req.ID, errInvalid))
	}
	var res specs.LinuxResources
	if err := json.Unmarshal(req.Resources.Value, &res); err != nil {
		return nil, toStatus(fmt.Errorf("container %q: %w: resources: %v", req.ID, errInvalid, err))
	}
	if err := s.runc.Update(ctx, req.ID, &res); err != nil {
		return nil, toStatus(err)
	}
	return &emptypb.Empty{}, nil
}

// Stats reports the container's cgroup metrics, in the cgroups v1 or v2
// types that ctr and CRI decode.
func (s *Service) Stats(ctx context.Context, req *taskapi.StatsRequest) (*taskapi.StatsResponse, error) {
	s.mu.Lock()
	c, _, err := s.lookup(req.ID, "")
	var cg sandbox.CgroupPaths
	if err == nil {
		cg = c.kind.cgroup(s, c)
	}
	s.mu.Unlock()
	if err != nil {
		return nil, toStatus(err)
	}
	m, err := readMetric(req.ID, cg)
	if err != nil {
		return nil, toStatus(err)
	}
	return &taskapi.StatsResponse{Stats: m.Data}, nil
}

func readMetric(id string, cg sandbox.CgroupPaths) (*types.Metric, error) {
	if cg.IsZero() {
		return nil, fmt.Errorf("container %q: stats: %w: no cgroup path in its spec", id, errState)
	}
	m, err := metrics.ReadCgroup(cg)
	if err != nil {
		return nil, fmt.Errorf("container %q: stats: %w", id, err)
	}
	return metrics.ToMetric(id, m)
}

// Connect reports the shim's PID and, once a sandbox exists, the pause's.
func (s *Service) Connect(ctx context.Context, req *taskapi.ConnectRequest) (*taskapi.ConnectResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &taskapi.ConnectResponse{ShimPid: uint32(os.Getpid()), Version: "2"}
	if c, ok := s.containers[req.ID]; ok {
		resp.TaskPid = uint32(c.init.pid)
	} else if s.sb != nil {
		resp.TaskPid = uint32(s.sb.PausePID)
	}
	return resp, nil
}

// Shutdown ends the shim if it serves nothing any more: containerd sends it
// after every task delete, also while other tasks of the group still run.
func (s *Service) Shutdown(ctx context.Context, req *taskapi.ShutdownRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	idle := s.sb == nil && len(s.containers) == 0
	if !idle && s.removing {
		// The sandbox's removal is under way (s.mu is released while the
		// pause stops). containerd may not ask again: when it sees the
		// Delete of CRI's sandbox task twice, it drops its connection
		// after the second, NotFound, answer and the first Delete's
		// Shutdown never comes. Exit once the removal leaves us idle.
		s.exitWhenIdle = true
	}
	s.mu.Unlock()
	if idle || req.Now {
		s.exitAfterAnswer(ctx)
	}
	return &emptypb.Empty{}, nil
}

// stopContainers stops every running container of the sandbox: SIGTERM to
// all its processes, then SIGKILL once timeout has passed.
func (s *Service) stopContainers(ctx context.Context, timeout time.Duration) error {
	s.mu.Lock()
	var running []*container
	var paused []string
	for _, c := range s.containers {
		s.endRestarts(c)
		if !c.kind.stopsWithContainers() {
			continue
		}
		switch c.init.status {
		case task.Status_PAUSED:
			paused = append(paused, c.rec.ID)
			fallthrough
		case task.Status_RUNNING, task.Status_CREATED:
			running = append(running, c)
		}
	}
	s.mu.Unlock()
	// A frozen process cannot act on a signal, not even SIGKILL.
	for _, id := range paused {
		s.runc.Resume(ctx, id)
	}
	var errs []error
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		if sig == syscall.SIGTERM && timeout == 0 {
			continue
		}
		for _, c := range running {
			if err := s.runc.Kill(ctx, c.rec.ID, sig, true); err != nil && !errors.Is(err, runc.ErrNotExist) {
				s.log.Debug("kill", "container", c.rec.ID, "signal", sig, "error", err)
			}
		}
		wait := max(timeout, 5*time.Second)
		if sig == syscall.SIGTERM {
			wait = timeout
		}
		// One deadline for all of them, which stays expired once it is:
		// a timer's channel delivers once, and with one, a second
		// container that ignored the signal was waited for forever.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait)
		stillRunning := running[:0:0]
		for _, c := range running {
			select {
			case <-c.init.done:
			case <-dctx.Done():
				stillRunning = append(stillRunning, c)
			}
		}
		cancel()
		running = stillRunning
	}
	for _, c := range running {
		errs = append(errs, fmt.Errorf("container %q: still running after SIGKILL", c.rec.ID))
	}
	return errors.Join(errs...)
}

// deleter deletes containers for sandbox removal.
func (s *Service) deleter() sandbox.ContainerDeleter { return taskDeleter{s} }

type taskDeleter struct{ s *Service }

func (d taskDeleter) DeleteContainer(ctx context.Context, id string) error {
	s := d.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.containers[id]; ok {
		return s.removeContainer(ctx, c)
	}
	return s.runc.Delete(ctx, id, true)
}
