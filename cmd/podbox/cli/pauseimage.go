package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/runtime/image"
)

// PauseBinary is the pause's executable name.
const PauseBinary = "podbox-pause"

// defaultPauseRepo is the repository of the default pause image reference.
// It is under "localhost/" because the image exists only where
// `podbox pause-image` wrote it and it was imported: a docker.io name would
// make a node that lacks the image try to pull it from Docker Hub, where
// it does not exist (or, worse, where someone else could publish it).
const defaultPauseRepo = "localhost/podbox/pause"

func (a *App) pauseImageCommand() *cobra.Command {
	var out, ref, pause string
	cmd := &cobra.Command{
		Use:   "pause-image",
		Short: "Write an OCI image archive of podbox-pause, for containerd's sandbox image",
		Long: `pause-image writes an OCI image layout archive holding podbox-pause as
/pause (entrypoint ["/pause"], user 65535:65535), ready for
` + "`ctr -n k8s.io images import`" + `; point containerd's CRI sandbox image at its
reference. The archive is built here, from the binary alone: nothing is pulled
and no image tool is needed. The same binary always gives the same image
digest.

The default reference is ` + defaultPauseRepo + `:<podbox version>; the default
binary is podbox-pause beside podbox, else on PATH. Without -o the archive
goes to standard output (never to a terminal).`,
		Example: `  podbox pause-image -o podbox-pause.tar
  ctr -n k8s.io images import podbox-pause.tar
  # containerd 1.6 config.toml, [plugins."io.containerd.grpc.v1.cri"]:
  #   sandbox_image = "` + defaultPauseRepo + `:<version>"
  # containerd 2.x, [plugins."io.containerd.cri.v1.images".pinned_images]:
  #   sandbox = "` + defaultPauseRepo + `:<version>"`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{noRoot: "yes"}, // a file from a binary: no state
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ref == "" {
				ref = defaultPauseRepo + ":" + imageTag(a.Version)
			}
			if pause == "" {
				var err error
				if pause, err = a.pauseBinary(); err != nil {
					return err
				}
			}
			return a.writePauseImage(out, pause, ref)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&out, "output", "o", "", "write the archive to FILE (default: standard output)")
	f.StringVar(&ref, "ref", "", "image reference (default "+defaultPauseRepo+":<version>)")
	f.StringVar(&pause, "pause", "", "pause binary (default: "+PauseBinary+" beside podbox, else on PATH)")
	return cmd
}

// writePauseImage writes the archive to out (standard output if empty) and
// reports the image on the other stream, so a pipe gets only the archive.
func (a *App) writePauseImage(out, pause, ref string) error {
	if out == "" || out == "-" {
		if isTerminal(a.Stdout) {
			return errors.New("pause image: standard output is a terminal; use -o FILE or redirect it")
		}
		d, err := image.WritePauseImage(a.Stdout, pause, ref)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.Stderr, "%s %s\n", ref, d.Manifest)
		return nil
	}
	// Written beside the target and renamed into place, so a failure never
	// leaves a truncated archive that an import would half-read.
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return fmt.Errorf("pause image %q: create %s: %w", ref, out, err)
	}
	defer os.Remove(tmp.Name())
	d, err := image.WritePauseImage(tmp, pause, ref)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("pause image %q: write %s: %w", ref, out, cerr)
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return fmt.Errorf("pause image %q: %w", ref, err)
	}
	fmt.Fprintf(a.Stdout, "%s: %s %s\n", out, ref, d.Manifest)
	return nil
}

// pauseBinary finds podbox-pause: beside the podbox binary (where make build,
// make install and the release put both), else on PATH.
func (a *App) pauseBinary() (string, error) {
	p, err := a.companion(PauseBinary, "", "use --pause PATH")
	if err != nil {
		return "", fmt.Errorf("pause image: %w", err)
	}
	return p, nil
}

// imageTag turns a version (git describe output, "dev") into a valid image
// tag: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}; any other byte becomes "_".
func imageTag(version string) string {
	if version == "" {
		return "dev"
	}
	t := []byte(version)
	for i, c := range t {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' ||
			i > 0 && (c == '.' || c == '-')
		if !ok {
			t[i] = '_'
		}
	}
	return string(t[:min(len(t), 128)])
}

// isTerminal reports whether w is a terminal, where an archive would only
// garble the screen.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
