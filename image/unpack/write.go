package unpack

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// parentFD returns a directory fd for dir, creating missing directories:
// real layers often omit them.
func (a *applier) parentFD(dir string) (int, error) {
	if a.parent != nil && a.parentPath == dir {
		return int(a.parent.Fd()), nil
	}
	if a.parent != nil {
		a.parent.Close()
		a.parent = nil
	}
	f, err := a.openDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := a.mkdirAll(dir); err != nil {
			return -1, err
		}
		f, err = a.openDir(dir)
	}
	if err != nil {
		return -1, err
	}
	a.parent, a.parentPath = f, dir
	return int(f.Fd()), nil
}

func (a *applier) openDir(dir string) (*os.File, error) {
	return a.root.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
}

// mkdirAll sets 0755 explicitly because Mkdir's mode is cut by the
// process umask, and the layer's content must not depend on it.
func (a *applier) mkdirAll(dir string) error {
	for i := 0; i <= len(dir); i++ {
		if i < len(dir) && dir[i] != '/' {
			continue
		}
		err := a.root.Mkdir(dir[:i], 0o755)
		if err == nil {
			err = a.root.Chmod(dir[:i], 0o755)
		}
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return nil
}

// prepare opens p's parent and makes room for p: a later entry replaces an
// earlier one, except that a directory over a directory only updates it.
func (a *applier) prepare(p string, dir bool) (pfd int, base string, err error) {
	pfd, err = a.parentFD(path.Dir(p))
	if err != nil {
		return -1, "", err
	}
	base = path.Base(p)
	var st unix.Stat_t
	err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return pfd, base, nil
	}
	if err != nil {
		return -1, "", fmt.Errorf("stat: %w", err)
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if isDir && dir {
		return pfd, base, nil
	}
	a.forget(p, isDir)
	if isDir {
		err = a.root.RemoveAll(p)
	} else {
		err = unix.Unlinkat(pfd, base, 0)
	}
	if err != nil {
		return -1, "", fmt.Errorf("replace: %w", err)
	}
	return pfd, base, nil
}

// forget drops what the bookkeeping knows about p (and, for a directory,
// everything under it) once p is removed.
func (a *applier) forget(p string, dir bool) {
	delete(a.symlinks, p)
	delete(a.dirTimes, p)
	if !dir {
		return
	}
	prefix := p + "/"
	for q := range a.symlinks {
		if strings.HasPrefix(q, prefix) {
			delete(a.symlinks, q)
		}
	}
	for q := range a.dirTimes {
		if strings.HasPrefix(q, prefix) {
			delete(a.dirTimes, q)
		}
	}
}

func (a *applier) file(p string, hdr *tar.Header, body io.Reader) error {
	pfd, base, err := a.prepare(p, false)
	if err != nil {
		return err
	}
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	f := os.NewFile(uintptr(fd), p)
	// Hiding ReadFrom keeps io.CopyBuffer on a.buf instead of a fresh
	// 32 KiB buffer per file.
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, body, a.buf)
	a.written += n
	if err == nil {
		err = setMeta(fd, hdr)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return setTimes(pfd, base, hdr)
}

func (a *applier) dir(p string, hdr *tar.Header) error {
	pfd, base, err := a.prepare(p, true)
	if err != nil {
		return err
	}
	if err := unix.Mkdirat(pfd, base, 0o700); err != nil && err != unix.EEXIST {
		return fmt.Errorf("mkdir: %w", err)
	}
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	err = setMeta(fd, hdr)
	unix.Close(fd)
	if err != nil {
		return err
	}
	ts, err := timespecs(hdr)
	if err != nil {
		return err
	}
	a.dirTimes[p] = ts
	return nil
}

func (a *applier) symlink(p string, hdr *tar.Header) error {
	pfd, base, err := a.prepare(p, false)
	if err != nil {
		return err
	}
	if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
		return fmt.Errorf("symlink: %w", err)
	}
	a.symlinks[p] = true
	if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	return setTimes(pfd, base, hdr)
}

// hardlink leaves the inode's metadata alone: it came with the entry that
// created the file, and link headers often carry none of their own.
func (a *applier) hardlink(p string, hdr *tar.Header) error {
	target, err := a.linkTarget(hdr.Linkname)
	if err != nil || target == p {
		return err
	}
	if _, _, err := a.prepare(p, false); err != nil {
		return err
	}
	if err := a.root.Link(target, p); err != nil {
		return fmt.Errorf("link: %w", err)
	}
	return nil
}

// linkTarget refuses links to symlinks as well as out of the layer: a link
// to a symlink would be a symlink the bookkeeping does not know of.
func (a *applier) linkTarget(name string) (string, error) {
	target, err := cleanName(name)
	if err == nil && target == "." {
		err = errors.New("names the layer root")
	}
	if err == nil {
		err = a.notThroughSymlink(target)
	}
	if err != nil {
		return "", fmt.Errorf("link target %q: %w", name, err)
	}
	fi, err := a.root.Lstat(target)
	switch {
	case err != nil:
		return "", fmt.Errorf("link target %q: %w", name, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return "", fmt.Errorf("link target %q is a symlink", name)
	case fi.IsDir():
		return "", fmt.Errorf("link target %q is a directory", name)
	}
	return target, nil
}

func (a *applier) node(p string, hdr *tar.Header, kind uint32) error {
	pfd, base, err := a.prepare(p, false)
	if err != nil {
		return err
	}
	dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	if err := unix.Mknodat(pfd, base, kind|0o600, int(dev)); err != nil {
		return fmt.Errorf("mknod: %w", err)
	}
	if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := chmodAt(pfd, base, mode(hdr)); err != nil {
		return err
	}
	return setTimes(pfd, base, hdr)
}

// whiteout turns ".wh.NAME" into overlayfs's whiteout for NAME, replacing
// whatever this layer itself wrote there.
func (a *applier) whiteout(dir, name string, hdr *tar.Header) error {
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("bad whiteout name %q", name)
	}
	pfd, base, err := a.prepare(path.Join(dir, name), false)
	if err != nil {
		return err
	}
	if err := unix.Mknodat(pfd, base, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("mknod whiteout: %w", err)
	}
	if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	return nil
}

func (a *applier) opaque(dir string) error {
	pfd, err := a.parentFD(dir)
	if err != nil {
		return err
	}
	if err := unix.Fsetxattr(pfd, opaqueXattr, []byte("y"), 0); err != nil {
		return fmt.Errorf("set %s: %w", opaqueXattr, err)
	}
	return nil
}

func mode(hdr *tar.Header) uint32 {
	return uint32(hdr.Mode) & 0o7777
}

// setMeta chmods after chowning, which clears setuid and setgid, and sets
// xattrs last, since chown also drops security.capability.
func setMeta(fd int, hdr *tar.Header) error {
	if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := unix.Fchmod(fd, mode(hdr)); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	for key, value := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(key, paxXattr)
		// A layer must not forge overlay metadata: opaque markers come
		// from whiteout entries only.
		if !ok || strings.HasPrefix(name, overlayXattr) {
			continue
		}
		if err := unix.Fsetxattr(fd, name, []byte(value), 0); err != nil {
			return fmt.Errorf("set xattr %q: %w", name, err)
		}
	}
	return nil
}

// chmodAt never follows a symlink. Without fchmodat2 (Linux < 6.6) it falls
// back to plain fchmodat once base is seen not to be a symlink; nothing else
// writes in a layer being applied.
func chmodAt(pfd int, base string, m uint32) error {
	err := unix.Fchmodat(pfd, base, m, unix.AT_SYMLINK_NOFOLLOW)
	if err == unix.EOPNOTSUPP || err == unix.ENOSYS {
		var st unix.Stat_t
		err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			err = errors.New("is a symlink")
		}
		if err == nil {
			err = unix.Fchmodat(pfd, base, m, 0)
		}
	}
	if err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return nil
}

func setTimes(pfd int, base string, hdr *tar.Header) error {
	ts, err := timespecs(hdr)
	if err == nil {
		err = unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

func timespecs(hdr *tar.Header) ([]unix.Timespec, error) {
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	at, err := unix.TimeToTimespec(atime)
	if err != nil {
		return nil, err
	}
	mt, err := unix.TimeToTimespec(hdr.ModTime)
	return []unix.Timespec{at, mt}, err
}
