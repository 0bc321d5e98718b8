package shim

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/podbox/podbox/runtime/events"
	"github.com/podbox/podbox/runtime/memtrim"
	"github.com/podbox/podbox/runtime/oom"
	"github.com/podbox/podbox/runtime/reaper"
	"github.com/podbox/podbox/runtime/runc"
	sbapi "github.com/podbox/podbox/runtime/sandboxapi"
	"github.com/podbox/podbox/runtime/shimclient"
	"github.com/podbox/podbox/runtime/taskapi"
	apievents "github.com/podbox/podbox/runtime/taskevents"
	"github.com/podbox/podbox/sandbox"
)

// Service answers the Sandbox and Task APIs for the one sandbox its shim
// process serves.
type Service struct {
	cfg    Config
	node   sandbox.Node
	reaper *reaper.Reaper
	log    *slog.Logger

	runc   *runc.Runtime
	events *events.Publisher
	// oom returns the OOM watcher, nil when OOM kills cannot be watched
	// here; the first call sets it up, and sets oomStarted.
	oom        func() *oom.Watcher
	oomStarted atomic.Bool

	mu         sync.Mutex
	sb         *sandbox.Sandbox
	containers map[string]*container
	// creating holds the IDs of containers Create makes with mu released.
	creating map[string]bool
	// implicit: the sandbox was made for a `ctr run` group by its first
	// container, and goes when its last container is deleted.
	implicit  bool
	pauseDone chan struct{} // closed when the pause has exited and been recorded
	// removing: removeSandbox or ShutdownSandbox removes the sandbox
	// (with mu released); exitWhenIdle: a Shutdown came meanwhile, to be
	// honoured once the removal is done.
	removing, exitWhenIdle bool

	exitOnce sync.Once
	exit     chan struct{} // closed when the shim should stop serving
	// clients counts the open client connections (nil in tests without a
	// server); exitWhenNoClients: an answered request asked for the exit,
	// which the last connection's close brings.
	clients           *clientCounter
	exitWhenNoClients atomic.Bool
}

// NewService makes the service of one shim process.
func NewService(cfg Config, r *reaper.Reaper, ev *events.Publisher, log *slog.Logger) *Service {
	return &Service{
		events: ev,
		cfg:    cfg,
		node: sandbox.Node{Store: sandbox.Store{Root: cfg.Root}, PauseBinary: cfg.PauseBinary, CgroupParent: cfg.CgroupParent,
			Exec: reaperExec(r)},
		reaper:     r,
		runc:       runc.New(r, cfg.Runtime, filepath.Join(cfg.Root, "runc")),
		log:        log,
		containers: map[string]*container{},
		creating:   map[string]bool{},
		exit:       make(chan struct{}),
	}
}

// oomWatcher is s.oom(), or nil for a Service made without Serve.
func (s *Service) oomWatcher() *oom.Watcher {
	if s.oom == nil {
		return nil
	}
	return s.oom()
}

// startedOOMWatcher is the OOM watcher if one was set up, never setting one
// up: what has no watcher has nothing to remove from it.
func (s *Service) startedOOMWatcher() *oom.Watcher {
	if !s.oomStarted.Load() {
		return nil
	}
	return s.oomWatcher()
}

func (s *Service) requestExit() { s.exitOnce.Do(func() { close(s.exit) }) }

// exitAfterAnswer requests the shim's exit once the request whose context is
// ctx has been answered and its client had the answer. ttrpc ends a
// request's context when its connection has taken the answer, but that
// connection may not have written it yet, and still counts as idle from
// before the request: a Shutdown then may close it first, and containerd 2
// reports a ShutdownSandbox answered that way ("ttrpc: closed") as failed
// (seen about once in 25 pods under load). So the exit waits, after the
// context, for the clients to close their connections (the CLI and
// containerd do once they have the answer), at most exitAfterAnswerGrace.
func (s *Service) exitAfterAnswer(ctx context.Context) {
	go func() {
		<-ctx.Done()
		if s.clients == nil || s.clients.openConns() == 0 {
			s.requestExit()
			return
		}
		s.exitWhenNoClients.Store(true)
		// The last client may have gone in between.
		if s.clients.openConns() == 0 {
			s.requestExit()
			return
		}
		time.AfterFunc(exitAfterAnswerGrace, s.requestExit)
	}()
}

// exitAfterAnswerGrace bounds how long an exit waits for clients that keep
// their connection after their answer.
const exitAfterAnswerGrace = time.Second

// watchPause records the pause's exit. An exit nobody asked for (the pause
// crashed or was killed) makes the sandbox notready and stops its
// containers: without the pause the sandbox's namespaces are orphaned.
func (s *Service) watchPause(sb *sandbox.Sandbox, exits <-chan reaper.Exit, done chan struct{}) {
	e := <-exits
	s.mu.Lock()
	sb.PauseExit = &sandbox.Exit{Status: e.Status, At: e.Time.UTC()}
	crashed := sb.State == sandbox.StateReady
	if crashed {
		sb.State = sandbox.StateNotReady
	}
	// Unless the sandbox is being removed: its record may be gone already,
	// or be going, and a write racing the removal of its directory would
	// make that fail.
	if s.sb == sb && !s.removing {
		if err := s.node.Store.SaveSandbox(sb); err != nil {
			s.log.Error("record pause exit", "error", err)
		}
	}
	s.mu.Unlock()
	s.log.Info("pause exited", "pid", e.Pid, "status", e.Status, "crashed", crashed)
	if crashed {
		if err := s.stopContainers(context.Background(), 10*time.Second); err != nil {
			s.log.Error("stop containers after pause exit", "error", err)
		}
	}
	close(done)
}

// Serve is the serving shim: it answers on the listener that `start` made
// (inherited as fd 3) until the sandbox is shut down.
func Serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	inherited := os.NewFile(3, "shim-listener")
	l, err := net.FileListener(inherited)
	// FileListener works on a duplicate. The inherited descriptor has no
	// close-on-exec flag: left open, every process the shim starts (the
	// pause, runc, containers) would hold the listening socket, and after a
	// crash of the shim its socket would still accept connections.
	inherited.Close()
	if err != nil {
		return fmt.Errorf("shim %s: listener from start: %w", cfg.ID, err)
	}
	addr := shimclient.SocketAddress(cfg.Root, cfg.Namespace, cfg.ID)
	path, _ := socketPath(addr)
	// The bundle we were started in may be deleted while we serve.
	if err := os.Chdir(cfg.Root); err != nil {
		return fmt.Errorf("shim %s: %w", cfg.ID, err)
	}
	r, err := reaper.New()
	if err != nil {
		return fmt.Errorf("shim %s: %w", cfg.ID, err)
	}
	defer r.Close()
	// Events go to containerd ($TTRPC_ADDRESS); the CLI has none to send to.
	ev := events.New(ctx, cfg.TTRPCAddress, cfg.Namespace, log)
	defer ev.Close()
	svc := NewService(cfg, r, ev, log)
	if cfg.restartBackoffErr != nil {
		log.Warn("restart back-off: the default applies", "error", cfg.restartBackoffErr)
	}
	// OOM kills in the containers' cgroups become /tasks/oom events, as
	// containerd's runc shim publishes them (CRI reports OOMKilled from it).
	// A host whose memory controller cannot be watched loses only those.
	// Only containers need the watcher, so the first container's create
	// sets it up (beside its runc create): a sandbox without containers
	// pays neither the mount table read nor the thread waiting in
	// epoll_wait.
	svc.oom = sync.OnceValue(func() *oom.Watcher {
		svc.oomStarted.Store(true)
		w, err := oom.New(log)
		if err != nil {
			log.Warn("no OOM events", "error", err)
			return nil
		}
		go svc.forwardOOM(w.Events())
		return w
	})
	defer func() {
		if w := svc.startedOOMWatcher(); w != nil {
			w.Close()
		}
	}()
	// An idle shim gives back what its requests left behind (see
	// package memtrim): a kubelet's polling would otherwise grow every
	// pod's shim to several MiB.
	trim := memtrim.New()
	trim.Waits = []string{"/containerd.task.v2.Task/Wait", "/containerd.runtime.sandbox.v1.Sandbox/WaitSandbox"}
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(trim.Intercept))
	if err != nil {
		return fmt.Errorf("shim %s: %w", cfg.ID, err)
	}
	sbapi.RegisterTTRPCSandboxService(srv, svc)
	taskapi.RegisterTaskService(srv, svc)

	grace := cfg.ConnectGrace
	if grace <= 0 {
		grace = DefaultConnectGrace
	}
	clients := newClientCounter(l, grace)
	svc.clients = clients
	go func() {
		for range clients.idle {
			if svc.exitWhenNoClients.Load() {
				svc.requestExit()
				return
			}
			if svc.abandoned() {
				// The namespace a CLI pinned for the sandbox it never
				// asked for (see sandbox.Node.PrepareNetNS).
				if err := svc.node.DiscardNetNS(cfg.ID); err != nil {
					log.Warn("discard prepared network namespace", "error", err)
				}
				log.Info("exiting: no sandbox, no container and no client")
				svc.requestExit()
				return
			}
		}
	}()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ctx, clients) }()
	select {
	case <-svc.exit:
	case err := <-serveErr:
		log.Error("ttrpc server stopped", "error", err)
	case <-ctx.Done():
	}
	// Nobody is to connect any more: the socket goes first, not after
	// Shutdown, which polls its connections every 200 ms for idleness, so
	// that a client that saw its last request answered does not find the
	// socket of a shim that is as good as gone.
	os.Remove(path)
	os.Remove(filepath.Join(filepath.Dir(path), filepath.Base(path)+".log"))
	// Shutdown lets the request that asked for the exit send its answer.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	return nil
}

// LogOutput is where a serving shim logs, started in the bundle by `start`:
// containerd's log FIFO there if it has one, made fd 2 as well so that a
// panic's trace goes there too, or else fd 2 as `start` left it (the
// shim's log file).
//
// containerd reads the FIFO until the group's first task is deleted, and
// writes to it fail with EPIPE after that. A write to a broken pipe through
// os.Stderr makes the os package kill the process with SIGPIPE (it does so
// for fds 1 and 2, unless os/signal is asked for SIGPIPE, which costs two
// threads); through another descriptor the write just fails. So the log
// goes through a duplicate of fd 2, and every logger, the libraries' too,
// must write there rather than to os.Stderr.
func LogOutput() *os.File {
	if fifo, err := os.OpenFile("log", os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		if fi, err := fifo.Stat(); err == nil && fi.Mode()&os.ModeNamedPipe != 0 {
			syscall.Dup3(int(fifo.Fd()), 2, 0)
		}
		fifo.Close()
	}
	fd, err := unix.FcntlInt(2, unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return os.Stderr // no descriptor to spare: the log as before
	}
	return os.NewFile(uintptr(fd), "shim-log")
}

// publish sends a task event to containerd; a failure to queue it is logged,
// never returned: an event is a notification, not part of the request.
func (s *Service) publish(topic string, ev proto.Message) {
	if err := s.events.Publish(context.Background(), topic, ev); err != nil {
		s.log.Warn("publish event", "topic", topic, "error", err)
	}
}

// forwardOOM publishes each OOM kill the watcher notices.
func (s *Service) forwardOOM(ids <-chan string) {
	for id := range ids {
		s.log.Info("container OOM-killed", "id", id)
		s.publish(events.TopicTaskOOM, &apievents.TaskOOM{ContainerID: id})
	}
}

// reaperExec runs helper programs (podbox-cni) as exec.Cmd.Run would, with
// the exit collected by the shim's reaper, which reaps every child.
func reaperExec(r *reaper.Reaper) func(*exec.Cmd) error {
	return func(cmd *exec.Cmd) error {
		e, err := r.Run(cmd)
		if err != nil {
			return err
		}
		if e.Signal != 0 {
			return fmt.Errorf("%s: killed by signal %v", cmd.Path, e.Signal)
		}
		if e.Status != 0 {
			return fmt.Errorf("%s: exit status %d", cmd.Path, e.Status)
		}
		return nil
	}
}
