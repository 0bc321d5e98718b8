package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podbox/podbox/image/runspec"
	"github.com/podbox/podbox/image/store"
	apitypes "github.com/podbox/podbox/runtime/apitypes"
)

// imageRootfs is the image a container runs, held in the image store until
// the container's record names it.
type imageRootfs struct {
	st     store.Store
	image  *store.Image
	config *store.Config
	name   string // the name the user asked for, normalized
	unuse  func()
}

// release lets removals of the image go ahead; it may be called twice.
func (i *imageRootfs) release() {
	if i.unuse != nil {
		i.unuse()
		i.unuse = nil
	}
}

// prepareImage finds o.image in the store, pulling it first as --pull says,
// and holds the store so that the image stays until released.
func (a *App) prepareImage(ctx context.Context, g *globals, o runOptions) (*imageRootfs, error) {
	st := g.imageStore()
	name := o.image
	if r, err := store.ParseReference(o.image); err == nil {
		name = r.String()
	}
	_, err := st.Resolve(o.image)
	missing := errors.Is(err, store.ErrNotFound)
	if err != nil && !missing {
		return nil, err
	}
	if o.pull == "always" || missing && o.pull == "missing" {
		if _, perr := store.ParseReference(o.image); perr != nil {
			if missing {
				return nil, err // neither a stored ID nor a reference to pull
			}
			return nil, perr
		}
		// The pull's own error is on stderr already, as one line.
		if perr := a.runImageBinary(ctx, g, io.Discard, "pull", o.image); perr != nil {
			return nil, fmt.Errorf("image %q: pull failed", o.image)
		}
	} else if missing {
		return nil, fmt.Errorf("image %q: not in the image store, and --pull never", o.image)
	}
	unuse, err := st.Use()
	if err != nil {
		return nil, err
	}
	// Resolved again under the lock: a removal may have run since.
	img, err := st.Resolve(o.image)
	if err != nil {
		unuse()
		return nil, err
	}
	cfg, err := st.Config(img)
	if err != nil {
		unuse()
		return nil, fmt.Errorf("image %q: %w", o.image, err)
	}
	return &imageRootfs{st: st, image: img, config: cfg, name: name, unuse: unuse}, nil
}

// rootfsFiles reads the container's files before it exists: the image's
// layers merged, or the --rootfs directory (confined to it).
func rootfsFiles(img *imageRootfs, rootfs string) (fs.FS, error) {
	if img != nil {
		return img.st.FS(img.image), nil
	}
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return nil, fmt.Errorf("--rootfs %q: %w", rootfs, err)
	}
	return root.FS(), nil
}

// runProcess is the container's process: the image's config (none for a
// --rootfs container) under the user's flags.
func runProcess(img *imageRootfs, o runOptions, files fs.FS) (*specs.Process, error) {
	var defaults runspec.Image
	if img != nil {
		c := img.config.Config
		defaults = runspec.Image{Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, WorkingDir: c.WorkingDir, User: c.User}
	}
	over := runspec.Overrides{Entrypoint: o.entrypoint, Env: o.proc.env, WorkingDir: o.proc.cwd, User: o.proc.user}
	if len(o.proc.args) > 0 {
		over.Cmd = o.proc.args
	}
	p, err := runspec.Resolve(defaults, over, files)
	if err != nil {
		if img != nil {
			return nil, fmt.Errorf("image %q: %w", img.name, err)
		}
		return nil, err
	}
	return ociProcess(p, o.proc.terminal), nil
}

// maxMountData is the kernel's limit on a mount's options (one page).
const maxMountData = 4095

// mounts is the container's root as the shim mounts it at bundle/rootfs:
// an overlay of the image's layers under a writable layer of the
// container's own, in its state directory, so that it goes with the
// container.
func (i *imageRootfs) mounts(bundle string) ([]*apitypes.Mount, error) {
	lowers, err := i.st.LowerDirs(i.image)
	if err != nil {
		return nil, err
	}
	// upper's mode is the container's / (0755, as an image's root is);
	// work is overlayfs' scratch space, root's alone.
	upper, work := filepath.Join(bundle, "upper"), filepath.Join(bundle, "work")
	for d, mode := range map[string]os.FileMode{upper: 0o755, work: 0o700} {
		if err := os.Mkdir(d, mode); err != nil {
			return nil, fmt.Errorf("writable layer: %w", err)
		}
	}
	for _, p := range append([]string{upper}, lowers...) {
		if strings.ContainsAny(p, ",:") {
			return nil, fmt.Errorf("path %s: overlayfs options cannot hold ',' or ':'", p)
		}
	}
	opts := []string{"lowerdir=" + strings.Join(lowers, ":"), "upperdir=" + upper, "workdir=" + work}
	if n := len(strings.Join(opts, ",")); n > maxMountData {
		return nil, fmt.Errorf("image %q: its %d layers need %d bytes of overlay options, more than the kernel's %d", i.name, len(lowers), n, maxMountData)
	}
	return []*apitypes.Mount{{Type: "overlay", Source: "overlay", Options: opts}}, nil
}
