package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/podbox/podbox/sandbox"
)

func (a *App) inspectCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect CONTAINER",
		Short: "Show a container's record as JSON",
		Long: `Print the container's record as JSON, with its state as its shim reports it
(as ps shows it): id, name, sandboxId, sandboxName, state (created, running,
restarting or stopped), pid, exit (the last run's status, time and reason:
Completed, Error or OOMKilled), restartPolicy, restartCount, nextRestart,
bundle, logPath and more. CONTAINER is a name, an ID or a unique ID prefix.`,
		Example: `  podbox inspect srv
  podbox inspect srv | jq '{state, restartCount, exit}'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rec, sb, err := g.resolveContainer(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			g.currentState(cmd.Context(), sb, rec)
			return writeJSON(a.Stdout, containerView{Container: *rec, SandboxName: sb.Name})
		},
	}
}

// currentState corrects rec, as read from the store, with what its shim
// reports, or with what is left of it when the shim is gone; a shim that
// does not answer leaves the record as it is.
func (g *globals) currentState(ctx context.Context, sb *sandbox.Sandbox, rec *sandbox.Container) {
	if !shimAlive(sb) {
		offlineState(rec)
		return
	}
	c, err := g.dial(ctx, sb)
	if err != nil {
		return
	}
	defer c.Close()
	if s, ok, err := taskState(ctx, c, rec.ID); err == nil && ok {
		applyTaskState(g.store(), rec, s)
	}
}
