package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Work is a directory under tmp/ for one piece of work in progress (a layer
// being unpacked, an archive being read). Its owner.lock is held for as long
// as the Work is open, which is how CleanTemp tells an abandoned directory
// (its process died) from one in use.
type Work struct {
	Dir  string
	lock *os.File
}

// NewWork makes a work directory whose name starts with kind.
func (s Store) NewWork(kind string) (*Work, error) {
	// Between MkdirTemp and the flock the directory looks abandoned: keep
	// CleanTemp out until it is locked.
	unlock, err := s.lock("tmp.lock", unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer unlock()
	tmp := filepath.Join(s.Root, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("image store %s: %w", s.Root, err)
	}
	dir, err := os.MkdirTemp(tmp, kind+"-")
	if err != nil {
		return nil, fmt.Errorf("image store %s: %w", s.Root, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "owner.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		os.RemoveAll(dir)
		return nil, fmt.Errorf("image store %s: lock work directory: %w", s.Root, err)
	}
	return &Work{Dir: dir, lock: f}, nil
}

// NewLayerWork is a Work with an empty layer/diff directory to unpack a
// layer into, for CommitLayer.
func (s Store) NewLayerWork() (*Work, string, error) {
	w, err := s.NewWork("layer")
	if err != nil {
		return nil, "", err
	}
	// The layer's own directory holds its record and is root's; diff is
	// the top of the layer's files, whose mode a container sees.
	diff := filepath.Join(w.Dir, "layer", "diff")
	err = os.Mkdir(filepath.Dir(diff), 0o700)
	if err == nil {
		err = os.Mkdir(diff, 0o755)
	}
	if err != nil {
		w.Close()
		return nil, "", fmt.Errorf("image store %s: %w", s.Root, err)
	}
	return w, diff, nil
}

// Close removes the work directory and whatever is left in it.
func (w *Work) Close() error {
	err := os.RemoveAll(w.Dir)
	w.lock.Close()
	return err
}

// CleanTemp removes the work directories that no live process holds: what a
// crash or a kill in the middle of a pull or a load left. It returns how
// many it removed.
func (s Store) CleanTemp() (int, error) {
	unlock, err := s.lock("tmp.lock", unix.LOCK_EX)
	if err != nil {
		return 0, err
	}
	defer unlock()
	tmp := filepath.Join(s.Root, "tmp")
	entries, err := os.ReadDir(tmp)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("image store %s: %w", s.Root, err)
	}
	n := 0
	var errs []error
	for _, e := range entries {
		dir := filepath.Join(tmp, e.Name())
		if !abandoned(dir) {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// abandoned reports whether nobody holds dir's owner.lock. A directory
// without one (a crash between MkdirTemp and the lock) is abandoned too.
func abandoned(dir string) bool {
	f, err := os.OpenFile(filepath.Join(dir, "owner.lock"), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	if err != nil {
		return false
	}
	defer f.Close()
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil
}

// lock takes the flock how (LOCK_SH or LOCK_EX) on the store's lock file
// name, waiting for it, and returns its release.
func (s Store) lock(name string, how int) (func(), error) {
	if err := os.MkdirAll(s.Root, 0o700); err != nil {
		return nil, fmt.Errorf("image store %s: %w", s.Root, err)
	}
	f, err := os.OpenFile(filepath.Join(s.Root, name), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("image store %s: %w", s.Root, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("image store %s: lock %s: %w", s.Root, name, err)
	}
	return func() { f.Close() }, nil
}

// Use holds the store against removal for as long as the caller needs what
// it read to stay (a pull between its first layer and its index entry, a
// run between resolving an image and recording the container that uses
// it). Removals and prunes wait for every user to release.
func (s Store) Use() (release func(), err error) { return s.lock("gc.lock", unix.LOCK_SH) }
