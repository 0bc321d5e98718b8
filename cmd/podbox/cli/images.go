package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/podbox/podbox/image/store"
)

// ImageBinary is the image fetcher's executable name: pull and load run in
// it, so that the registry client's package init stays out of this binary.
const ImageBinary = "podbox-image"

// imageStore is the image store the flags name: --image-root, else
// $PODBOX_IMAGE_ROOT, else ROOT/images.
func (g *globals) imageStore() store.Store {
	if g.imageRoot != "" {
		return store.Store{Root: g.imageRoot}
	}
	return store.Store{Root: filepath.Join(g.root, "images")}
}

// imageBinary finds podbox-image: $PODBOX_IMAGE_BIN, beside podbox, or PATH.
func (a *App) imageBinary() (string, error) {
	p, err := a.companion(ImageBinary, "PODBOX_IMAGE_BIN", "set PODBOX_IMAGE_BIN")
	if err != nil {
		return "", fmt.Errorf("find %s: %w", ImageBinary, err)
	}
	return p, nil
}

// fetchOptions are pull's and load's flags, passed on to podbox-image.
type fetchOptions struct {
	platform, creds string
	insecure, quiet bool
}

func (o fetchOptions) args() []string {
	var args []string
	if o.platform != "" {
		args = append(args, "--platform", o.platform)
	}
	if o.creds != "" {
		args = append(args, "--creds", o.creds)
	}
	if o.insecure {
		args = append(args, "--insecure")
	}
	if o.quiet {
		args = append(args, "-q")
	}
	return args
}

// execImageBinary hands the process over to podbox-image with args (see
// App.Exec); without Exec it runs it as runImageBinary does.
func (a *App) execImageBinary(ctx context.Context, g *globals, args ...string) error {
	if a.Exec == nil {
		return a.runImageBinary(ctx, g, a.Stdout, args...)
	}
	bin, err := a.imageBinary()
	if err != nil {
		return err
	}
	argv := append([]string{ImageBinary, args[0], "--image-root", g.imageStore().Root}, args[1:]...)
	if err := a.Exec(bin, argv, os.Environ()); err != nil {
		return fmt.Errorf("run %s: %w", bin, err)
	}
	return nil
}

// runImageBinary runs podbox-image with args and the CLI's stdio, and turns
// its exit into podbox's: it prints its own one-line errors, so a failure
// here is only its exit code.
func (a *App) runImageBinary(ctx context.Context, g *globals, stdout io.Writer, args ...string) error {
	bin, err := a.imageBinary()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{args[0], "--image-root", g.imageStore().Root}, args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = a.Stdin, stdout, a.Stderr
	// ^C reaches podbox-image from the terminal too: let it clean up and
	// exit rather than killing it.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 30 * time.Second
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ExitError{Code: ee.ExitCode()}
	}
	return err
}

func (a *App) imageCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage images: pull, load, ls, inspect, rm, prune",
		Long: `Images are stored under --image-root (default ROOT/images): each layer is
unpacked once and shared, read-only, by every image and container that uses
it; a container gets its own writable layer over them (overlayfs).`,
		Example: `  podbox image pull busybox
  podbox image load -i app.tar
  podbox image ls
  podbox run --sandbox web --image busybox -d -- httpd -f -p 80`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.imagePullCommand(g), a.imageLoadCommand(g), a.imageListCommand(g),
		a.imageInspectCommand(g), a.imageRemoveCommand(g), a.imagePruneCommand(g))
	return cmd
}

func addFetchFlags(cmd *cobra.Command, o *fetchOptions) {
	f := cmd.Flags()
	f.StringVar(&o.platform, "platform", "", "OS/ARCH[/VARIANT] to pick from a multi-platform image (default: this node's)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "print only the image ID, no progress")
}

func (a *App) imagePullCommand(g *globals) *cobra.Command {
	var o fetchOptions
	cmd := &cobra.Command{
		Use:   "pull REF",
		Short: "Pull an image from a registry",
		Long: `Pull an image from a registry that speaks the OCI distribution API, for this
node's platform, and print its ID. REF is [REGISTRY/]NAME[:TAG][@DIGEST];
without a registry it is Docker Hub's (busybox is docker.io/library/busybox:latest).
Credentials come from --creds, else from ~/.docker/config.json ($DOCKER_CONFIG)
as docker login writes it. Plain HTTP is used only for a loopback registry or
with --insecure. Layers already stored are not fetched again; an interrupted
pull keeps the layers it finished and lists nothing.`,
		Example: `  podbox image pull busybox:1.36
  podbox image pull localhost:5000/app:1
  podbox image pull --creds me:secret registry.example.com/team/app@sha256:...`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := store.ParseReference(args[0]); err != nil {
				return err
			}
			return a.execImageBinary(cmd.Context(), g, append(append([]string{"pull"}, o.args()...), args[0])...)
		},
	}
	addFetchFlags(cmd, &o)
	cmd.Flags().StringVar(&o.creds, "creds", "", "USER:PASSWORD for the registry")
	cmd.Flags().BoolVar(&o.insecure, "insecure", false, "allow plain HTTP and unverified TLS for this registry")
	return cmd
}

func (a *App) imageLoadCommand(g *globals) *cobra.Command {
	var o fetchOptions
	var input string
	cmd := &cobra.Command{
		Use:   "load -i FILE",
		Short: "Load images from a docker save archive or an OCI image layout",
		Long: `Load the images of an archive and print their IDs: a docker save tar (plain
or gzip'd) or an OCI image layout, as a tar or a directory. Images are named
by the archive (docker's RepoTags, the layout's io.containerd.image.name or
org.opencontainers.image.ref.name annotations).`,
		Example: `  podbox image load -i busybox.tar
  podbox image load -i ./oci-layout-dir`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if input == "" {
				return errors.New("image load: -i FILE is required")
			}
			abs, err := filepath.Abs(input)
			if err != nil {
				return fmt.Errorf("archive %s: %w", input, err)
			}
			return a.execImageBinary(cmd.Context(), g, append(append([]string{"load"}, o.args()...), "-i", abs)...)
		},
	}
	addFetchFlags(cmd, &o)
	cmd.Flags().StringVarP(&input, "input", "i", "", "archive file or OCI layout directory (required)")
	return cmd
}

// imageView is an image as ls and inspect show it.
type imageView struct {
	*store.Image
	Config *store.Config `json:"config,omitempty"`
}

func (a *App) imageListCommand(g *globals) *cobra.Command {
	var format string
	var quiet bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List images",
		Long:    `List the stored images: one row per name (an image without one shows <none>).`,
		Example: `  podbox image ls
  podbox image ls -o json | jq -r '.[].names[]'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			images, err := g.imageStore().Images()
			if err != nil {
				return err
			}
			return writeList(a.Stdout, images, quiet, format, func(img *store.Image) string { return img.ID },
				func() error { return writeImageTable(a.Stdout, images, a.Now()) })
		},
	}
	cmd.Flags().StringVarP(&format, "output", "o", "table", "output format: table or json")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only image IDs")
	return cmd
}

func writeImageTable(w io.Writer, images []*store.Image, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tIMAGE ID\tDIGEST\tPLATFORM\tSIZE\tCREATED")
	for _, img := range images {
		names := img.Names
		if len(names) == 0 {
			names = []string{"<none>"}
		}
		for _, n := range names {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n, shortID(strings.TrimPrefix(img.ID, "sha256:")),
				shortDigest(img.Digest), img.Platform, store.FormatSize(img.Size), orDash(ago(now, img.Created)))
		}
	}
	return tw.Flush()
}

func shortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}

func (a *App) imageInspectCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect IMAGE...",
		Short: "Show images' records and configs as JSON",
		Long: `Print a JSON array with each image's record (names, digest, layers, sizes)
and its config (entrypoint, command, environment, working directory, user,
exposed ports, labels). IMAGE is a name, an ID or an ID prefix.`,
		Example: `  podbox image inspect busybox
  podbox image inspect busybox | jq '.[0].config.config.ExposedPorts'`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st := g.imageStore()
			views := make([]imageView, 0, len(args))
			for _, ref := range args {
				img, err := st.Resolve(ref)
				if err != nil {
					return err
				}
				cfg, err := st.Config(img)
				if err != nil {
					return fmt.Errorf("image %q: %w", ref, err)
				}
				views = append(views, imageView{Image: img, Config: cfg})
			}
			return writeJSON(a.Stdout, views)
		},
	}
}

// imageUsers answers which container of the state root uses an image: the
// store does not know containers. The store calls it with its lock held,
// after any run that was between resolving an image and recording its
// container has recorded it, so the answer is complete.
func (g *globals) imageUsers() (store.UsedBy, error) {
	cs, err := containerRecords(g.store())
	if err != nil {
		return nil, err
	}
	users := map[string]string{}
	for _, c := range cs {
		if c.ImageID != "" {
			users[c.ImageID] = c.Name
		}
	}
	return func(id string) string { return users[id] }, nil
}

func (a *App) imageRemoveCommand(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm IMAGE...",
		Aliases: []string{"remove", "rmi"},
		Short:   "Remove images",
		Long: `Remove images, as docker rmi does: a name of an image that has other names
is untagged; otherwise the image and the layers no other image uses are
deleted. An image a container uses is refused; -f untags it instead, and a
later prune deletes it once no container uses it.`,
		Example: `  podbox image rm busybox
  podbox image rm -f app:1`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rep, err := g.imageStore().Remove(args, force, g.imageUsers)
			if err != nil {
				return err
			}
			for _, n := range rep.Untagged {
				fmt.Fprintln(a.Stdout, "Untagged: "+n)
			}
			for _, id := range rep.Deleted {
				fmt.Fprintln(a.Stdout, "Deleted: "+id)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "untag images that containers still use")
	return cmd
}

func (a *App) imagePruneCommand(g *globals) *cobra.Command {
	var all bool
	var format string
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove unused images, layers and leftovers of interrupted pulls",
		Long: `Delete the images without a name that no container uses (with -a: every
image no container uses), then every stored layer and document no image
needs, and what interrupted pulls and loads left behind.`,
		Example: `  podbox image prune
  podbox image prune -a -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			rep, err := g.imageStore().Prune(all, g.imageUsers)
			if err != nil {
				return err
			}
			if format == "json" {
				if rep.Deleted == nil {
					rep.Deleted = []string{}
				}
				if rep.Untagged == nil {
					rep.Untagged = []string{}
				}
				return writeJSON(a.Stdout, rep)
			}
			for _, id := range rep.Deleted {
				fmt.Fprintln(a.Stdout, "Deleted: "+id)
			}
			fmt.Fprintf(a.Stdout, "Removed %d layers, %d documents, %d leftovers; freed %s\n", rep.Layers, rep.Blobs, rep.Temp, store.FormatSize(rep.Freed))
			return nil
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "delete every image no container uses, named or not")
	cmd.Flags().StringVarP(&format, "output", "o", "table", "output format: table or json")
	return cmd
}
