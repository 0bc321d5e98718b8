// Package volume owns podbox's named volumes: a directory per volume under
// the state root, its record, the lock that keeps a removal from racing a
// container about to use one, and the refusal to remove a volume a
// container uses.
//
// It never mounts anything (the OCI runtime bind-mounts a volume's data
// directory into each container whose spec names it) and never reads
// container records itself: which containers use a volume is answered by
// the caller, from the sandbox store, under the volumes' lock.
//
// On disk, under the state root:
//
//	volumes/NAME/volume.json   the record
//	volumes/NAME/_data/        what containers see, bind-mounted
//	volumes/.new-*, .rm-*      a creation or a removal under way
//
// The lock is a flock(2) on the volumes directory itself, so no lock file
// outlives the volumes. A volume appears whole: it is built in a .new-
// directory and renamed into place; a removal renames it away first, so
// a crash midway never leaves a half-removed volume listed.
package volume

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/netsetup/nodenet"
)

// ErrNotFound is wrapped by lookups of a volume that does not exist.
var ErrNotFound = errors.New("no such volume")

// Volume is a volume's record, as `podbox volume inspect` shows it.
type Volume struct {
	Name string `json:"name"`
	// Mountpoint is the host directory containers get.
	Mountpoint string    `json:"mountpoint"`
	CreatedAt  time.Time `json:"createdAt"`
}

// Store is the volumes of one state root.
type Store struct {
	// Root is podbox's state root; the volumes live in Root/volumes.
	Root string
}

func (s Store) dir() string { return filepath.Join(s.Root, "volumes") }

// Mountpoint is the data directory of volume name.
func (s Store) Mountpoint(name string) string { return filepath.Join(s.dir(), name, "_data") }

// ValidName reports an error if name cannot name a volume: the rule of
// sandbox and container names, which keeps it a single path element and
// tells it from a host path in `-v NAME:/dir`.
func ValidName(name string) error {
	if !nodenet.IsName(name) {
		return fmt.Errorf("volume name %q is invalid: use 1 to 63 of [a-zA-Z0-9_.-], starting with a letter or digit", name)
	}
	return nil
}

// lock takes the flock how (LOCK_SH or LOCK_EX) on the volumes directory,
// waiting for it, and returns its release.
func (s Store) lock(how int) (func(), error) {
	if err := os.MkdirAll(s.dir(), 0o700); err != nil {
		return nil, fmt.Errorf("volumes: %w", err)
	}
	f, err := os.Open(s.dir())
	if err != nil {
		return nil, fmt.Errorf("volumes: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("volumes: lock %s: %w", s.dir(), err)
	}
	return func() { f.Close() }, nil
}

// Create makes volume name, or returns it as it is if it exists (docker
// volume create is idempotent too); created says which.
func (s Store) Create(name string) (v *Volume, created bool, err error) {
	if err := ValidName(name); err != nil {
		return nil, false, err
	}
	unlock, err := s.lock(unix.LOCK_SH)
	if err != nil {
		return nil, false, err
	}
	defer unlock()
	return s.ensure(name)
}

// ensure is Create with the lock held (shared: the rename makes two
// creations of one name safe; removals take it exclusively).
func (s Store) ensure(name string) (*Volume, bool, error) {
	if v, err := s.Get(name); !errors.Is(err, ErrNotFound) {
		return v, false, err
	}
	fail := func(err error) error { return fmt.Errorf("volume %q: create: %w", name, err) }
	tmp, err := os.MkdirTemp(s.dir(), ".new-")
	if err != nil {
		return nil, false, fail(err)
	}
	v := &Volume{Name: name, Mountpoint: s.Mountpoint(name), CreatedAt: time.Now().UTC()}
	b, err := json.MarshalIndent(v, "", "  ")
	if err == nil {
		// The volume's directory (MkdirTemp's 0700) is root's; _data is
		// what containers see, 0755 as docker's, so that a container's
		// non-root user can read it.
		err = os.Mkdir(filepath.Join(tmp, "_data"), 0o755)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(tmp, "volume.json"), append(b, '\n'), 0o600)
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir(), name))
	}
	if err != nil {
		os.RemoveAll(tmp)
		// Another creation of the same name won the rename.
		if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
			v, err := s.Get(name)
			return v, false, err
		}
		return nil, false, fail(err)
	}
	return v, true, nil
}

// Use makes sure every volume names names exists, creating those that do
// not (as `docker run -v NAME:/dir` does), and holds them against removal
// until release (which may be called more than once): the caller releases
// once the record of the container that mounts them is written, from
// which on a removal's UsedBy sees it.
func (s Store) Use(names []string) (vols []*Volume, release func(), err error) {
	for _, n := range names {
		if err := ValidName(n); err != nil {
			return nil, nil, err
		}
	}
	unlock, err := s.lock(unix.LOCK_SH)
	if err != nil {
		return nil, nil, err
	}
	for _, n := range names {
		v, _, err := s.ensure(n)
		if err != nil {
			unlock()
			return nil, nil, err
		}
		vols = append(vols, v)
	}
	return vols, sync.OnceFunc(unlock), nil
}

// Get reads volume name's record.
func (s Store) Get(name string) (*Volume, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(s.dir(), name, "volume.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("volume %q: %w", name, ErrNotFound)
	}
	var v Volume
	if err == nil {
		err = json.Unmarshal(b, &v)
	}
	if err != nil {
		return nil, fmt.Errorf("volume %q: read record: %w", name, err)
	}
	v.Mountpoint = s.Mountpoint(name) // the record may come from another root path
	return &v, nil
}

// List returns every volume, by name.
func (s Store) List() ([]*Volume, error) {
	entries, err := os.ReadDir(s.dir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("volumes: %w", err)
	}
	var vols []*Volume
	for _, e := range entries {
		if !e.IsDir() || ValidName(e.Name()) != nil {
			continue // work under way (.new-, .rm-)
		}
		v, err := s.Get(e.Name())
		if errors.Is(err, ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		vols = append(vols, v)
	}
	return vols, nil
}

// UsedBy names the containers that mount volume name. The store does not
// know containers; the caller answers from the sandbox records.
type UsedBy func(name string) []string

// Users makes the UsedBy of a removal. It is called once, with the
// volumes locked exclusively, so that no run is between creating or
// finding a volume and recording the container that mounts it.
type Users func() (UsedBy, error)

// Remove deletes the volumes names names and their data. A volume that a
// container mounts is refused, whatever its state: its record still names
// the volume, and a stopped container's data is still its own. force does
// not change that (data under a container is never what -f should
// delete); it makes a volume that does not exist no error, as docker's
// does. Every name is checked before anything is removed.
func (s Store) Remove(names []string, force bool, users Users) error {
	unlock, err := s.lock(unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	usedBy, err := users()
	if err != nil {
		return err
	}
	var gone []string
	for _, name := range names {
		if _, err := s.Get(name); err != nil {
			if force && errors.Is(err, ErrNotFound) {
				continue
			}
			return err
		}
		if cs := usedBy(name); len(cs) > 0 {
			return fmt.Errorf("volume %q: remove: in use by %s (remove the containers first)", name, containerList(cs))
		}
		if !slices.Contains(gone, name) {
			gone = append(gone, name)
		}
	}
	s.sweep()
	var errs []error
	for _, name := range gone {
		// Out of the way first: a failure below leaves a .rm- directory,
		// which the next removal sweeps, not a volume half gone.
		tmp := filepath.Join(s.dir(), ".rm-"+name)
		if err := os.Rename(filepath.Join(s.dir(), name), tmp); err != nil {
			errs = append(errs, fmt.Errorf("volume %q: remove: %w", name, err))
			continue
		}
		if err := os.RemoveAll(tmp); err != nil {
			errs = append(errs, fmt.Errorf("volume %q: remove: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// sweep removes what a crashed creation or removal left (.new-*, .rm-*);
// the caller holds the lock exclusively, so none of it is under way.
func (s Store) sweep() {
	entries, _ := os.ReadDir(s.dir())
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".new-") || strings.HasPrefix(e.Name(), ".rm-") {
			os.RemoveAll(filepath.Join(s.dir(), e.Name()))
		}
	}
}

// containerList names containers for an error: `container "a"`,
// `containers "a", "b"`.
func containerList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	if len(q) == 1 {
		return "container " + q[0]
	}
	return "containers " + strings.Join(q, ", ")
}
