package shim

import (
	"context"
	"fmt"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podbox/podbox/runtime/reaper"
	"github.com/podbox/podbox/runtime/restart"
	"github.com/podbox/podbox/runtime/runc"
	"github.com/podbox/podbox/runtime/stdio"
	task "github.com/podbox/podbox/runtime/tasktypes"
	"github.com/podbox/podbox/sandbox"
)

// restarter is where a container with a restart policy stands. The shim
// restarts it because it sees the exit first: nobody else is there for a
// detached container of the CLI. A container without a policy has no
// restarter, and so no timer and nothing to decide at its exit.
type restarter struct {
	policy restart.Policy
	// step is the back-off step of the last restart (restart.Backoff.Step).
	step int
	// started is when the current run started; zero before the first.
	started time.Time
	// timer is the pending restart; nil when none is.
	timer *time.Timer
	// ended: the container's user stopped, killed or removed it, or its
	// sandbox is going. Nothing restarts it any more.
	ended bool
}

// restarterFor reads the restart policy of container id from its spec:
// nil for none. CRI's containers never get one, whatever their spec says:
// the kubelet restarts them, and two restarters would fight.
func (s *Service) restarterFor(id string, spec *specs.Spec, cri bool) (*restarter, error) {
	v, ok := spec.Annotations[restart.Annotation]
	if !ok {
		return nil, nil
	}
	if cri {
		s.log.Warn("restart policy of a CRI container ignored: the kubelet restarts it", "container", id, "policy", v)
		return nil, nil
	}
	p, err := restart.Parse(v)
	if err != nil {
		return nil, fmt.Errorf("container %q: %w: annotation %s=%q: %v", id, errInvalid, restart.Annotation, v, err)
	}
	if p.Mode == restart.No {
		return nil, nil
	}
	return &restarter{policy: p}, nil
}

// exitReason names the exit of container id's init with status (see
// sandbox.ExitReason). s.mu is held; the cgroup still exists, as runc
// delete has not run yet.
func (s *Service) exitReason(id string, status int) string {
	killed := false
	if w := s.startedOOMWatcher(); w != nil {
		var err error
		if killed, err = w.Killed(id); err != nil {
			s.log.Debug("no OOM kill count for the exit's reason", "container", id, "error", err)
		}
	}
	return sandbox.ExitReason(status, killed)
}

// scheduleRestart decides, at the exit e of c's init, whether c runs
// again, and if so when: the record then says restarting until then.
// s.mu is held.
func (s *Service) scheduleRestart(c *container, e reaper.Exit) {
	r := c.restart
	if r.ended || r.started.IsZero() || s.removing || s.sb == nil || s.sb.State != sandbox.StateReady {
		return
	}
	if !r.policy.Restarts(e.Status, c.rec.RestartCount) {
		return
	}
	b := s.cfg.RestartBackoff
	if b.Base <= 0 { // a Service made without ConfigFromEnv
		b = restart.DefaultBackoff()
	}
	r.step = b.Step(r.step, e.Time.Sub(r.started))
	delay := b.Delay(r.step)
	at := time.Now().Add(delay).UTC()
	c.rec.State, c.rec.NextRestart = sandbox.ContainerRestarting, &at
	// The timer's function locks s.mu before it reads t, which is set
	// before s.mu is released.
	var t *time.Timer
	t = time.AfterFunc(delay, func() { s.restartContainer(c, t) })
	r.timer = t
	s.log.Info("container restarts", "id", c.rec.ID, "status", e.Status, "in", delay, "restarts", c.rec.RestartCount)
}

// restartContainer runs c again when its timer t fires, unless the restart
// was called off meanwhile.
func (s *Service) restartContainer(c *container, t *time.Timer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := c.restart
	if r.timer != t || r.ended || s.containers[c.rec.ID] != c {
		return
	}
	r.timer = nil
	c.rec.NextRestart = nil
	if s.removing || s.sb == nil || s.sb.State != sandbox.StateReady {
		r.ended = true
		c.rec.State = sandbox.ContainerStopped
		s.saveContainer(c.rec)
		return
	}
	if err := s.rerun(c); err != nil {
		s.log.Error("restart container", "id", c.rec.ID, "error", err)
		r.ended = true
		c.rec.State, c.rec.RestartError = sandbox.ContainerStopped, err.Error()
		s.saveContainer(c.rec)
		return
	}
	r.started = time.Now()
	c.rec.RestartCount++
	c.rec.State, c.rec.PID, c.rec.RestartError = sandbox.ContainerRunning, c.init.pid, ""
	s.saveContainer(c.rec)
	s.log.Info("container restarted", "id", c.rec.ID, "pid", c.init.pid, "restarts", c.rec.RestartCount)
}

// rerun replaces c's exited init with a new run from the same bundle: runc
// delete, create and start, as a first run. Its output goes on into the
// same log; a client that was attached had the first run only, so the new
// run's stdio is the log alone. s.mu is held.
func (s *Service) rerun(c *container) error {
	// No client waits for this one; a runtime that hangs must not hold
	// s.mu for good.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id := c.rec.ID
	// runc delete removes the container's cgroup, and create makes it
	// anew: its OOM watch goes and comes with it.
	w := s.startedOOMWatcher()
	if w != nil {
		w.Remove(id)
	}
	if err := s.runc.Delete(ctx, id, true); err != nil {
		return err
	}
	old := c.init
	if old.io != nil {
		old.io.Close()
	}
	p := newProcess("", old.terminal, stdio.Config{LogPath: c.rec.LogPath})
	p.killAllOnExit = old.killAllOnExit
	if err := s.spawn(ctx, id, p, func(o runc.Stdio, console string) (runc.Process, error) {
		return s.runc.Create(ctx, id, runc.CreateOpts{Bundle: c.rec.Bundle, ConsoleSocket: console, Stdio: o})
	}); err != nil {
		return err
	}
	c.init = p
	if w != nil && !c.cgroup.IsZero() {
		if err := w.Add(id, c.cgroup.In("memory")); err != nil {
			s.log.Warn("watch for OOM kills", "container", id, "error", err)
		}
	}
	if err := s.runc.Start(ctx, id, runc.StartOpts{InitPid: p.pid, PoststartHooks: c.poststartHooks}); err != nil {
		// The created init goes, and its exit is recorded as any.
		if kerr := s.runc.Kill(ctx, id, syscall.SIGKILL, true); kerr != nil {
			s.log.Warn("kill the init of a failed restart", "container", id, "error", kerr)
		}
		return err
	}
	p.status = task.Status_RUNNING
	return nil
}

// endRestarts ends c's restarts for good: its user stopped, killed or
// removed it, or its sandbox is going. A pending restart is called off,
// and the container is recorded as stopped. s.mu is held.
func (s *Service) endRestarts(c *container) {
	r := c.restart
	if r == nil || r.ended {
		return
	}
	r.ended = true
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
		c.rec.State, c.rec.NextRestart = sandbox.ContainerStopped, nil
		s.saveContainer(c.rec)
	}
}
