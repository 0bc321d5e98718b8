package shim

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/podbox/podbox/internal/faultpoint"
	"github.com/podbox/podbox/runtime/events"
	"github.com/podbox/podbox/runtime/runc"
	apievents "github.com/podbox/podbox/runtime/taskevents"
	task "github.com/podbox/podbox/runtime/tasktypes"
	"github.com/podbox/podbox/sandbox"
)

// initTask is what the Task API does with a container's init, for the two
// kinds of container a shim holds: one that runc runs (runcInit), and CRI's
// sandbox container, whose init is podbox's own pause (pauseInit). The
// Service's methods do what both share (lookups, states, events, exec'd
// processes' I/O) and leave the rest to these, so that none of them asks
// which kind it holds.
//
// Unless a method says otherwise, s.mu is held.
type initTask interface {
	// start starts the created init.
	start(ctx context.Context, s *Service, c *container) error
	// execable refuses exec'd processes where there can be none.
	execable(c *container) error
	// exited reports whether the init has exited, as far as Kill goes.
	exited(s *Service, c *container) bool
	// signal sends sig to the init, or with all to all the container's
	// processes. s.mu is not held.
	signal(ctx context.Context, s *Service, c *container, pid int, sig syscall.Signal, all bool) error
	// remove removes the container of a stopped init (Delete); s.mu may
	// be released meanwhile.
	remove(ctx context.Context, s *Service, c *container) error
	// pids lists the container's processes. s.mu is not held.
	pids(ctx context.Context, s *Service, c *container, initPid int) ([]int, error)
	// freeze freezes (or thaws) the container's processes.
	freeze(ctx context.Context, s *Service, c *container, frozen bool) error
	// cgroup is where the container's statistics are.
	cgroup(s *Service, c *container) sandbox.CgroupPaths
	// stopsWithContainers says whether stopping the sandbox's containers
	// (stopContainers) stops this one: the pause's task ends after them,
	// with the pause (pauseDone).
	stopsWithContainers() bool
}

// errFinished is Kill's answer for a process that has exited.
func errFinished(id, execID string) error {
	return fmt.Errorf("container %q: exec %q: process already finished: %w", id, execID, sandbox.ErrNotFound)
}

// runcInit is the init of a container that runc runs.
type runcInit struct{}

func (runcInit) start(ctx context.Context, s *Service, c *container) error {
	if s.sb != nil && s.sb.PauseExit != nil {
		return fmt.Errorf("container %q: %w: its sandbox's pause has exited", c.rec.ID, errState)
	}
	if err := s.runc.Start(ctx, c.rec.ID, runc.StartOpts{InitPid: c.init.pid, PoststartHooks: c.poststartHooks}); err != nil {
		return err
	}
	faultpoint.Point("shim.run.started")
	c.init.status = task.Status_RUNNING
	c.rec.State = sandbox.ContainerRunning
	if c.restart != nil {
		c.restart.started = time.Now()
	}
	s.saveContainer(c.rec)
	return nil
}

func (runcInit) execable(*container) error { return nil }

func (runcInit) exited(_ *Service, c *container) bool {
	return c.init.status == task.Status_STOPPED || c.init.reaped
}

func (runcInit) signal(ctx context.Context, s *Service, c *container, _ int, sig syscall.Signal, all bool) error {
	err := s.runc.Kill(ctx, c.rec.ID, sig, all)
	if errors.Is(err, runc.ErrNotRunning) {
		return errFinished(c.rec.ID, "")
	}
	return err
}

func (runcInit) remove(ctx context.Context, s *Service, c *container) error {
	return s.removeContainer(ctx, c)
}

func (runcInit) pids(ctx context.Context, s *Service, c *container, _ int) ([]int, error) {
	return s.runc.Ps(ctx, c.rec.ID)
}

func (runcInit) freeze(ctx context.Context, s *Service, c *container, frozen bool) error {
	id := c.rec.ID
	if frozen {
		if err := s.runc.Pause(ctx, id); err != nil {
			return err
		}
		c.init.status = task.Status_PAUSED
		s.publish(events.TopicTaskPaused, &apievents.TaskPaused{ContainerID: id})
		return nil
	}
	if err := s.runc.Resume(ctx, id); err != nil {
		return err
	}
	c.init.status = task.Status_RUNNING
	s.publish(events.TopicTaskResumed, &apievents.TaskResumed{ContainerID: id})
	return nil
}

func (runcInit) cgroup(_ *Service, c *container) sandbox.CgroupPaths { return c.cgroup }

func (runcInit) stopsWithContainers() bool { return true }

// pauseInit is the init of CRI's sandbox container: the pause, which podbox
// started at Create in the namespaces CRI made, instead of the image's.
type pauseInit struct{}

func (pauseInit) start(_ context.Context, _ *Service, c *container) error {
	c.init.status = task.Status_RUNNING // the pause runs since Create
	return nil
}

func (pauseInit) execable(c *container) error {
	return fmt.Errorf("container %q: %w: the pod's sandbox runs only the pause", c.rec.ID, errState)
}

func (pauseInit) exited(s *Service, c *container) bool {
	// The pause's exit is recorded on the sandbox first; the task's
	// process is marked only once its containers are stopped (watchPause).
	return c.init.status == task.Status_STOPPED || c.init.reaped ||
		(s.sb != nil && s.sb.PausePID == c.init.pid && s.sb.PauseExit != nil)
}

func (pauseInit) signal(_ context.Context, s *Service, c *container, pid int, sig syscall.Signal, _ bool) error {
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		// CRI stops the pod by killing its sandbox task, i.e. the pause.
		// That is a requested stop, not a crash: marked so, watchPause
		// does not go on to stop the (already stopped) containers with
		// its timeouts, which delayed the task's exit by 20 s.
		s.mu.Lock()
		if s.sb != nil && s.sb.PausePID == pid && s.sb.State == sandbox.StateReady {
			s.sb.State = sandbox.StateStopped
		}
		s.mu.Unlock()
	}
	if err := sandbox.SignalPause(pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return errFinished(c.rec.ID, "")
		}
		return fmt.Errorf("container %q: kill %d: %w", c.rec.ID, pid, errors.Unwrap(err))
	}
	return nil
}

func (pauseInit) remove(ctx context.Context, s *Service, c *container) error {
	// The pod is being removed: its sandbox goes with its pause.
	delete(s.containers, c.rec.ID)
	if err := s.removeSandbox(ctx); err != nil {
		return err
	}
	// Nothing can come to this shim any more: CRI deletes the pod's
	// containers first and never reuses a pod's ID. containerd sends
	// Shutdown next, but one that stops or crashes meanwhile never does,
	// and the restarted one does not know the task: the shim would serve
	// nothing for good.
	time.AfterFunc(orphanGrace, func() {
		if s.abandoned() {
			s.log.Info("exiting: the pod's sandbox task is deleted and no Shutdown came")
			s.requestExit()
		}
	})
	return nil
}

func (pauseInit) pids(_ context.Context, _ *Service, _ *container, initPid int) ([]int, error) {
	return []int{initPid}, nil
}

func (pauseInit) freeze(_ context.Context, _ *Service, c *container, _ bool) error {
	return fmt.Errorf("container %q: %w: the pod's pause cannot be paused", c.rec.ID, errState)
}

func (pauseInit) cgroup(s *Service, c *container) sandbox.CgroupPaths {
	return sandbox.CgroupPaths{Path: s.node.SandboxCgroup(c.rec.SandboxID).Path + "/pause"}
}

func (pauseInit) stopsWithContainers() bool { return false }
