package cli

import (
	"context"
	"fmt"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/podbox/podbox/runtime/restart"
	"github.com/podbox/podbox/runtime/shimclient"
	"github.com/podbox/podbox/runtime/taskapi"
	"github.com/podbox/podbox/sandbox"
)

// checkRestart checks --restart, and that it goes with the other flags. A
// restarted container outlives its first run, which --rm would remove
// (docker refuses the pair too). In the foreground podbox attaches to the
// first run only and exits with its status, as docker run does; the
// restarts go on in the background, their output in the log.
func (o runOptions) checkRestart() error {
	p, err := restart.Parse(o.restart)
	if err != nil {
		return fmt.Errorf("--restart %q: %w", o.restart, err)
	}
	if o.rm && p.Mode != restart.No {
		return fmt.Errorf("--rm and --restart %s exclude each other: the container would be removed at its first exit", p)
	}
	return nil
}

// withRestart puts the --restart policy in the container's spec, the
// annotation the shim reads at create (docs/shim-protocol.md). "no" is
// left out: it is what a spec without one means.
func (o runOptions) withRestart(spec *specs.Spec) *specs.Spec {
	if p, err := restart.Parse(o.restart); err == nil && p.Mode != restart.No {
		spec.Annotations[restart.Annotation] = p.String()
	}
	return spec
}

// endRestarts tells the shim that the user stops container id, whose
// process has exited: the shim takes a Kill of the init as the user's
// stop, and calls off a restart it is waiting to do (answering NotFound,
// as nothing runs). If the restart came first, the kill stops its run, and
// endRestarts waits for that, as stopTask does.
func endRestarts(ctx context.Context, c *shimclient.Client, id string) error {
	exited := make(chan error, 1)
	go func() {
		_, err := c.Task.Wait(ctx, &taskapi.WaitRequest{ID: id})
		exited <- err
	}()
	_, err := c.Task.Kill(ctx, &taskapi.KillRequest{ID: id, Signal: uint32(syscall.SIGKILL), All: true})
	if status.Code(err) == codes.NotFound {
		return nil
	}
	if err != nil {
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

// runningWord is what rm calls a container it refuses to remove without -f.
func runningWord(rec *sandbox.Container) string {
	if rec.State == sandbox.ContainerRestarting {
		return "restarting"
	}
	return "running"
}
