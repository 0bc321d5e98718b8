// Package unpack applies one image layer to an empty directory and leaves
// that directory the way overlayfs wants a lower layer, as containerd's
// overlay snapshotter stores a layer's "fs" directory: OCI whiteouts
// (".wh.NAME") become overlay whiteouts (0/0 character devices) and opaque
// markers (".wh..wh..opq") become trusted.overlay.opaque=y on the directory.
//
// It owns the tar-to-directory step and the promise that nothing a layer says
// writes outside the directory: names that are absolute or hold "..", paths
// through a symlink the layer made, and hard links out of the layer are
// refused, and every write is made through os.Root or relative to a directory
// fd opened from it, so even a missed check cannot leave the directory. A
// layer cannot forge overlay metadata either: trusted.overlay.* xattrs in the
// tar are dropped.
//
// It never decompresses, hashes, downloads or mounts anything: the caller
// hands it the decompressed tar stream, checks digests itself (Apply reads
// the stream to EOF so a hashing io.TeeReader sees every byte), and discards
// the directory when Apply fails.
package unpack

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
	paxXattr       = "SCHILY.xattr."
	overlayXattr   = "trusted.overlay."
	opaqueXattr    = "trusted.overlay.opaque"
)

var errEscapes = errors.New("path escapes the layer")

// Apply writes the layer tar read from r into dir, which must exist and be empty, and returns the number of bytes of regular-file content written.
func Apply(ctx context.Context, dir string, r io.Reader) (int64, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, fmt.Errorf("open layer dir: %w", err)
	}
	a := &applier{
		root:     root,
		symlinks: map[string]bool{},
		dirTimes: map[string][]unix.Timespec{},
		buf:      make([]byte, 32<<10),
	}
	defer a.close()
	// The symlink bookkeeping only sees what this Apply creates, so a
	// directory with earlier content would hide symlinks from it.
	if err := checkEmpty(root); err != nil {
		return 0, err
	}
	if err := a.entries(ctx, tar.NewReader(r)); err != nil {
		return a.written, err
	}
	// A caller hashing r through a TeeReader must see the trailing blocks
	// that archive/tar stops short of.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return a.written, fmt.Errorf("read layer: %w", err)
	}
	return a.written, a.setDirTimes()
}

type applier struct {
	root *os.Root
	// symlinks holds every symlink this Apply created and has not replaced:
	// since dir started empty, these are all the symlinks under it.
	symlinks map[string]bool
	// dirTimes waits until the end: writing a child changes a dir's mtime.
	dirTimes map[string][]unix.Timespec
	// parent caches the last parent directory opened; layers list a
	// directory's entries together. Only children of the cached directory
	// are ever removed, so the cached fd never goes stale.
	parent     *os.File
	parentPath string
	buf        []byte
	written    int64
}

func (a *applier) close() {
	if a.parent != nil {
		a.parent.Close()
	}
	a.root.Close()
}

func checkEmpty(root *os.Root) error {
	d, err := root.Open(".")
	if err != nil {
		return fmt.Errorf("open layer dir: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(1)
	if len(names) > 0 {
		return fmt.Errorf("layer dir %s is not empty", root.Name())
	}
	if err != nil && err != io.EOF {
		return fmt.Errorf("read layer dir: %w", err)
	}
	return nil
}

func (a *applier) entries(ctx context.Context, tr *tar.Reader) error {
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("apply layer: %w", err)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		// With GODEBUG tarinsecurepath=0 archive/tar flags ".." and absolute
		// names itself; entry refuses them with the entry's name.
		if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && hdr != nil) {
			return fmt.Errorf("read layer: %w", err)
		}
		if err := a.entry(hdr, layerReader{tr}); err != nil {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	}
}

func (a *applier) entry(hdr *tar.Header, body io.Reader) error {
	p, err := cleanName(hdr.Name)
	if err != nil || p == "." {
		return err
	}
	if err := a.notThroughSymlink(p); err != nil {
		return err
	}
	dir, base := path.Dir(p), path.Base(p)
	switch {
	case base == whiteoutOpaque:
		return a.opaque(dir)
	case strings.HasPrefix(base, whiteoutMeta):
		return nil // AUFS bookkeeping (.wh..wh.plnk and the like), meaningless to overlayfs
	case strings.HasPrefix(base, whiteoutPrefix):
		return a.whiteout(dir, strings.TrimPrefix(base, whiteoutPrefix), hdr)
	}
	switch hdr.Typeflag {
	// archive/tar reads the legacy TypeRegA as TypeReg (or TypeDir) and
	// fills in the holes of old GNU sparse files.
	case tar.TypeReg, tar.TypeGNUSparse:
		return a.file(p, hdr, body)
	case tar.TypeDir:
		return a.dir(p, hdr)
	case tar.TypeSymlink:
		return a.symlink(p, hdr)
	case tar.TypeLink:
		return a.hardlink(p, hdr)
	case tar.TypeChar:
		return a.node(p, hdr, unix.S_IFCHR)
	case tar.TypeBlock:
		return a.node(p, hdr, unix.S_IFBLK)
	case tar.TypeFifo:
		return a.node(p, hdr, unix.S_IFIFO)
	}
	return nil // global headers and the like carry nothing to write
}

// cleanName refuses rather than cleans "..": a layer that needs it is
// malformed or hostile, even when the name would clean to inside.
func cleanName(name string) (string, error) {
	name = strings.TrimPrefix(name, "./")
	if path.IsAbs(name) {
		return "", errEscapes
	}
	for c := range strings.SplitSeq(name, "/") {
		if c == ".." {
			return "", errEscapes
		}
	}
	return path.Clean(name), nil
}

func (a *applier) notThroughSymlink(p string) error {
	for i := range len(p) {
		if p[i] == '/' && a.symlinks[p[:i]] {
			return fmt.Errorf("through symlink %q", p[:i])
		}
	}
	return nil
}

// layerReader tells a short tar from a failed write when copying a file.
type layerReader struct{ r io.Reader }

func (l layerReader) Read(b []byte) (int, error) {
	n, err := l.r.Read(b)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("read layer: %w", err)
	}
	return n, err
}

func (a *applier) setDirTimes() error {
	paths := slices.Collect(maps.Keys(a.dirTimes))
	slices.SortFunc(paths, func(x, y string) int {
		if d := strings.Count(y, "/") - strings.Count(x, "/"); d != 0 {
			return d
		}
		return strings.Compare(x, y)
	})
	for _, p := range paths {
		pfd, err := a.parentFD(path.Dir(p))
		if err == nil {
			err = unix.UtimesNanoAt(pfd, path.Base(p), a.dirTimes[p], unix.AT_SYMLINK_NOFOLLOW)
		}
		if err != nil {
			return fmt.Errorf("set times of %q: %w", p, err)
		}
	}
	return nil
}
