package cli

import (
	"github.com/spf13/cobra"
)

func (a *App) inspectCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect CONTAINER...",
		Short: "Show containers' records as JSON",
		Long: `Print a JSON array with each container's record: id, name, sandbox, image
or rootfs, command, state (from its shim, as ps shows it), pid, exit, and
under config what run was asked for besides the command: mounts (binds,
volumes, tmpfs), resources (memory in bytes, cpus, pidsLimit),
readOnlyRootfs, capAdd and capDrop. CONTAINER is a name, an ID or a unique
ID prefix.`,
		Example: `  podbox inspect srv
  podbox inspect srv | jq '.[0].config.resources'`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			views := make([]containerView, 0, len(args))
			for _, ref := range args {
				rec, sb, err := g.resolveContainer(cmd.Context(), ref)
				if err != nil {
					return err
				}
				if c, err := g.dial(cmd.Context(), sb); err == nil {
					if s, ok, err := taskState(cmd.Context(), c, rec.ID); err == nil && ok {
						applyTaskState(rec, s)
					}
					c.Close()
				} else {
					offlineState(rec)
				}
				views = append(views, containerView{Container: *rec, SandboxName: sb.Name})
			}
			return writeJSON(a.Stdout, views)
		},
	}
}
