package store

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// FS reads img's root filesystem as a container would see it, without
// mounting: a file comes from the topmost layer that has it, and a
// whiteout or an opaque directory in a layer hides what the layers below
// hold there. Only Open is offered; it is for reading a few files such as
// /etc/passwd before the container exists. Symbolic links are not followed.
func (s Store) FS(img *Image) fs.FS {
	dirs := make([]string, 0, len(img.Layers))
	for i := len(img.Layers) - 1; i >= 0; i-- {
		dirs = append(dirs, s.LayerDiff(img.Layers[i]))
	}
	return layersFS(dirs)
}

// layersFS is a stack of overlayfs layer directories, top first.
type layersFS []string

func (l layersFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	parts := strings.Split(name, "/")
	for _, dir := range l {
		found, hidden := lookup(dir, parts)
		if found {
			return openNoFollow(filepath.Join(dir, filepath.FromSlash(name)), name)
		}
		if hidden {
			break
		}
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

// lookup reports whether layer dir has parts as a real file (found), or
// hides it from the layers below (a whiteout of it or of a parent, or an
// opaque parent directory).
func lookup(dir string, parts []string) (found, hidden bool) {
	p := dir
	for i, part := range parts {
		p = filepath.Join(p, part)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return false, hidden
		}
		if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
			return false, true // a whiteout
		}
		if i == len(parts)-1 {
			return true, false
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return false, true // a file or link shadows the directory
		}
		// Below an opaque directory the layers under this one show
		// nothing; the rest of the path is still looked up component by
		// component here, so that a symlink or a whiteout in it counts.
		if opaque(p) {
			hidden = true
		}
	}
	return false, hidden
}

func opaque(dir string) bool {
	var b [1]byte
	n, err := unix.Lgetxattr(dir, "trusted.overlay.opaque", b[:])
	return err == nil && n == 1 && b[0] == 'y'
}

func openNoFollow(p, name string) (fs.File, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errors.New("is a symbolic link")}
	}
	return f, err
}
