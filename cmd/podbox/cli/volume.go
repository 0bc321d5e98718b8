package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/podbox/podbox/sandbox"
	"github.com/podbox/podbox/volume"
)

func (g *globals) volumes() volume.Store { return volume.Store{Root: g.root} }

// containerRecords reads the record of every container of the state root,
// sandbox by sandbox (one directory listing each, rather than a lookup of
// every ID among all); one being created or removed right now is skipped.
func containerRecords(st sandbox.Store) ([]*sandbox.Container, error) {
	sids, err := st.SandboxIDs()
	if err != nil {
		return nil, err
	}
	var cs []*sandbox.Container
	for _, sid := range sids {
		cids, err := st.ContainerIDs(sid)
		if err != nil {
			return nil, err
		}
		for _, cid := range cids {
			c, err := st.LoadContainer(sid, cid)
			if errors.Is(err, sandbox.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			cs = append(cs, c)
		}
	}
	return cs, nil
}

// volumeUsers answers which containers mount each volume, from the
// containers' records. A removal calls it with the volumes locked, after
// any run between making a volume and recording its container has
// recorded it, so the answer is complete.
func (g *globals) volumeUsers() (volume.UsedBy, error) {
	cs, err := containerRecords(g.store())
	if err != nil {
		return nil, err
	}
	users := map[string][]string{}
	for _, c := range cs {
		if c.Config == nil {
			continue
		}
		for _, m := range c.Config.Mounts {
			if m.Type == sandbox.MountVolume {
				users[m.Source] = append(users[m.Source], c.Name)
			}
		}
	}
	return func(name string) []string { return users[name] }, nil
}

func (a *App) volumeCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "volume",
		Short: "Create, list, inspect and remove named volumes",
		Long: `A named volume is a directory podbox keeps under the state root
(ROOT/volumes/NAME/_data) and mounts into every container that names it with
-v NAME:/PATH or --mount type=volume,source=NAME,target=/PATH: the
containers of a sandbox, or of several, share its files. It outlives them,
until 'podbox volume rm'. 'podbox run' creates a volume it names that does
not exist yet, as docker run does.`,
		Example: `  podbox volume create data
  podbox run --sandbox web --rootfs ./rootfs -v data:/data -- sh -c 'date >> /data/log'
  podbox volume ls
  podbox volume rm data`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.volumeCreateCommand(g), a.volumeLsCommand(g), a.volumeInspectCommand(g), a.volumeRmCommand(g))
	return cmd
}

func (a *App) volumeCreateCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "create [NAME]",
		Short: "Create a named volume and print its name",
		Long: `Create a named volume, empty, and print its name. Without NAME the volume
gets a random one. A volume that exists already is left as it is (and its
name printed), as docker volume create does.`,
		Example: `  podbox volume create data
  vol=$(podbox volume create)`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Half an ID: names stop at 63 characters.
			name := sandbox.NewID()[:32]
			if len(args) == 1 {
				name = args[0]
			}
			if _, _, err := g.volumes().Create(name); err != nil {
				return err
			}
			fmt.Fprintln(a.Stdout, name)
			return nil
		},
	}
}

// volumeView is a volume as ls and inspect show it: its record and the
// containers that mount it.
type volumeView struct {
	*volume.Volume
	UsedBy []string `json:"usedBy"`
}

func (g *globals) volumeViews(vols []*volume.Volume) ([]volumeView, error) {
	usedBy, err := g.volumeUsers()
	if err != nil {
		return nil, err
	}
	views := make([]volumeView, 0, len(vols))
	for _, v := range vols {
		users := usedBy(v.Name)
		if users == nil {
			users = []string{}
		}
		views = append(views, volumeView{Volume: v, UsedBy: users})
	}
	return views, nil
}

func (a *App) volumeLsCommand(g *globals) *cobra.Command {
	var quiet bool
	var format string
	cmd := &cobra.Command{
		Use:     "ls [flags]",
		Aliases: []string{"list"},
		Short:   "List named volumes",
		Long:    `List every named volume of the state root, with the containers that mount it.`,
		Example: `  podbox volume ls
  podbox volume ls -q | xargs podbox volume rm
  podbox volume ls -o json | jq -r '.[] | select(.usedBy == []) | .name'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			vols, err := g.volumes().List()
			if err != nil {
				return err
			}
			views, err := g.volumeViews(vols)
			if err != nil {
				return err
			}
			return writeList(a.Stdout, views, quiet, format, func(v volumeView) string { return v.Name },
				func() error { return writeVolumeTable(a.Stdout, views, a.Now()) })
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only names")
	cmd.Flags().StringVarP(&format, "output", "o", "table", "output format: table or json")
	return cmd
}

func writeVolumeTable(w io.Writer, views []volumeView, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "VOLUME NAME\tUSED BY\tCREATED")
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Name, orDash(strings.Join(v.UsedBy, ",")), ago(now, v.CreatedAt))
	}
	return tw.Flush()
}

func (a *App) volumeInspectCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect VOLUME...",
		Short: "Show named volumes as JSON",
		Long: `Print a JSON array with each volume's name, mountpoint (its directory on the
host), creation time and the containers that mount it (usedBy).`,
		Example: `  podbox volume inspect data
  podbox volume inspect data | jq -r '.[0].mountpoint'`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var vols []*volume.Volume
			for _, name := range args {
				v, err := g.volumes().Get(name)
				if err != nil {
					return err
				}
				vols = append(vols, v)
			}
			views, err := g.volumeViews(vols)
			if err != nil {
				return err
			}
			return writeJSON(a.Stdout, views)
		},
	}
}

func (a *App) volumeRmCommand(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm VOLUME... [flags]",
		Aliases: []string{"remove"},
		Short:   "Remove named volumes and their data",
		Long: `Remove named volumes and every file in them. A volume that a container
mounts (running or stopped: its record still names the volume) is refused,
naming the container; remove the container first (podbox rm). -f does not
change that, as in docker: it only makes a volume that does not exist no
error. Every name is checked before any volume is removed.`,
		Example: `  podbox volume rm data
  podbox volume rm -f data cache`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.volumes().Remove(args, force, g.volumeUsers)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not fail on a volume that does not exist")
	return cmd
}
