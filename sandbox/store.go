package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/podbox/podbox/netsetup"
	"github.com/podbox/podbox/netsetup/nodenet"
)

// ErrNotFound is wrapped by lookups of a sandbox or container that does not
// exist; ErrAmbiguous by a prefix that matches more than one.
var (
	ErrNotFound  = errors.New("not found")
	ErrAmbiguous = errors.New("ambiguous prefix")
	ErrNameInUse = errors.New("name already in use")
	// ErrCorrupt: a record exists but cannot be read (an empty or cut
	// file, as a full disk or a crash can leave). Node.Salvage makes what
	// can be known of the sandbox from everything else.
	ErrCorrupt = errors.New("record is unreadable")
)

// isName tells whether s follows the name rule for sandboxes and containers
// (nodenet.IsName, where node peers follow it too).
func isName(s string) bool { return nodenet.IsName(s) }

// ValidName reports an error if name is not a valid sandbox or container name.
func ValidName(kind, name string) error {
	if !isName(name) {
		return fmt.Errorf("%s name %q is invalid: use 1 to 63 of [a-zA-Z0-9_.-], starting with a letter or digit", kind, name)
	}
	return nil
}

// Store is the on-disk state under one root:
//
//	ROOT/sandboxes/ID/sandbox.json        the sandbox record
//	ROOT/sandboxes/ID/containers/CID/     bundle, container.json, log
//	ROOT/sandboxes/ID/shm/                the sandbox's /dev/shm, a tmpfs
//	                                      mounted at its first container
//	ROOT/containers/CID -> ../sandboxes/ID/containers/CID
//	ROOT/names/sandbox/NAME, ROOT/names/container/NAME   hold the ID
//	ROOT/netns/ID                          the sandbox's network namespace pin
//	                                       (Node.NetNSPin; not the Store's)
//
// Names are reserved by exclusive file creation, so two concurrent creates of
// the same name cannot both win, and no lookup scans every record. Records
// are written to a temporary file and renamed into place, so a crash never
// leaves a torn record.
type Store struct {
	Root string
}

const (
	kindSandbox   = "sandbox"
	kindContainer = "container"
)

// SandboxDir is the directory holding sandbox id's state.
func (s Store) SandboxDir(id string) string { return filepath.Join(s.Root, "sandboxes", id) }

// ContainerDir is the directory holding container cid of sandbox sid.
func (s Store) ContainerDir(sid, cid string) string {
	return filepath.Join(s.SandboxDir(sid), "containers", cid)
}

func (s Store) nameFile(kind, name string) string {
	return filepath.Join(s.Root, "names", kind, name)
}

// ReserveName claims name for id. It fails with ErrNameInUse if another
// sandbox (or container, by kind) holds it.
func (s Store) reserveName(kind, name, id string) error {
	if err := ValidName(kind, name); err != nil {
		return err
	}
	p := s.nameFile(kind, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("%s %q: reserve name: %w", kind, name, err)
	}
	// The reservation appears whole or not at all: written beside it
	// first, then linked into place (link(2) fails if the name exists).
	// A reservation created empty and written after would let a loser of
	// the race read no holder, and a crash in between hold the name for
	// nobody.
	tmp := filepath.Join(filepath.Dir(p), ".reserve-"+id)
	if err := os.WriteFile(tmp, []byte(id), 0o600); err != nil {
		return fmt.Errorf("%s %q: reserve name: %w", kind, name, err)
	}
	defer os.Remove(tmp)
	err := os.Link(tmp, p)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s name %q: %w", kind, name, ErrNameInUse)
	}
	if err != nil {
		return fmt.Errorf("%s %q: reserve name: %w", kind, name, err)
	}
	return nil
}

// SandboxNameHolder is the ID of the sandbox that holds name, from the
// reservation alone: a sandbox still being created holds its name before it
// has a record. It fails with ErrNotFound if nobody holds it.
func (s Store) SandboxNameHolder(name string) (string, error) {
	b, err := os.ReadFile(s.nameFile(kindSandbox, name))
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("sandbox name %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("sandbox name %q: %w", name, err)
	}
	return string(b), nil
}

// releaseName frees name if id holds it; anything else is left alone so that
// a stale remover never frees a name a newer object took.
func (s Store) releaseName(kind, name, id string) error {
	p := s.nameFile(kind, name)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) || (err == nil && string(b) != id) {
		return nil
	}
	if err == nil {
		err = os.Remove(p)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s %q: release name: %w", kind, name, err)
	}
	return nil
}

// writeJSON writes v to path atomically (ReplaceFile).
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return ReplaceFile(path, append(b, '\n'))
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// resolve finds the ID a reference means among ids: an exact ID, a name
// (looked up in the name index), or a unique ID prefix, in that order.
func (s Store) resolve(kind, ref string, ids []string) (string, error) {
	if ref == "" {
		return "", fmt.Errorf("%s: empty reference", kind)
	}
	if slices.Contains(ids, ref) {
		return ref, nil
	}
	if isName(ref) {
		if b, err := os.ReadFile(s.nameFile(kind, ref)); err == nil && slices.Contains(ids, string(b)) {
			return string(b), nil
		}
	}
	var match []string
	for _, id := range ids {
		if strings.HasPrefix(id, ref) {
			match = append(match, id)
		}
	}
	switch len(match) {
	case 0:
		return "", fmt.Errorf("%s %q: %w", kind, ref, ErrNotFound)
	case 1:
		return match[0], nil
	default:
		return "", fmt.Errorf("%s %q: %w (matches %d)", kind, ref, ErrAmbiguous, len(match))
	}
}

// listDirN is listDir stopping after n names: os.ReadDir sorts, so it reads
// the whole directory, and File.ReadDir(n) only as many blocks as it needs.
func listDirN(dir string, n int) ([]string, error) {
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ids []string
	for len(ids) < n {
		entries, err := f.ReadDir(n - len(ids))
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), ".") {
				ids = append(ids, e.Name())
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return ids, nil
}

func listDir(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(entries))
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// CreateSandboxRecord reserves sb's name and writes its first record. It
// fails, changing nothing, if the name is taken or invalid.
func (s Store) CreateSandboxRecord(sb *Sandbox) error {
	if err := s.reserveName(kindSandbox, sb.Name, sb.ID); err != nil {
		return err
	}
	dir := s.SandboxDir(sb.ID)
	err := os.MkdirAll(filepath.Join(dir, "containers"), 0o700)
	if err == nil {
		err = writeSandbox(dir, sb)
	}
	if err != nil {
		os.RemoveAll(dir)
		s.releaseName(kindSandbox, sb.Name, sb.ID)
		return fmt.Errorf("sandbox %q: write record: %w", sb.Name, err)
	}
	return nil
}

// writeSandbox writes sb's record in dir, without its containers (see
// Sandbox.Containers).
func writeSandbox(dir string, sb *Sandbox) error {
	rec := *sb
	rec.Containers = nil
	return writeJSON(filepath.Join(dir, "sandbox.json"), &rec)
}

// SaveSandbox rewrites sb's record.
func (s Store) SaveSandbox(sb *Sandbox) error {
	if err := writeSandbox(s.SandboxDir(sb.ID), sb); err != nil {
		return fmt.Errorf("sandbox %q: save record: %w", sb.Name, err)
	}
	return nil
}

// LoadSandbox reads sandbox id's record.
func (s Store) LoadSandbox(id string) (*Sandbox, error) {
	var sb Sandbox
	err := readJSON(filepath.Join(s.SandboxDir(id), "sandbox.json"), &sb)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("sandbox %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sandbox %q: read record: %w: %v", id, ErrCorrupt, err)
	}
	if sb.ID != id || !isName(sb.Name) {
		return nil, fmt.Errorf("sandbox %q: read record: %w: it names sandbox %q (%q)", id, ErrCorrupt, sb.ID, sb.Name)
	}
	if sb.Containers, err = s.ContainerIDs(id); err != nil {
		return nil, fmt.Errorf("sandbox %q: %w", id, err)
	}
	return &sb, nil
}

// SandboxIDs lists the IDs of every sandbox with a state directory.
func (s Store) SandboxIDs() ([]string, error) {
	ids, err := listDir(filepath.Join(s.Root, "sandboxes"))
	if err != nil {
		return nil, fmt.Errorf("list sandboxes in %s: %w", s.Root, err)
	}
	return ids, nil
}

// SomeSandboxIDs lists the IDs of up to n sandboxes with a state directory,
// in no particular order, for a caller that wants a few: it reads only as
// much of a node's sandbox directory, which holds thousands, as it needs.
func (s Store) SomeSandboxIDs(n int) ([]string, error) {
	ids, err := listDirN(filepath.Join(s.Root, "sandboxes"), n)
	if err != nil {
		return nil, fmt.Errorf("list sandboxes in %s: %w", s.Root, err)
	}
	return ids, nil
}

// ResolveSandbox finds the sandbox a user means by ref: an ID, a name, or a
// unique ID prefix.
func (s Store) ResolveSandbox(ref string) (*Sandbox, error) {
	id, err := s.ResolveSandboxID(ref)
	if err != nil {
		return nil, err
	}
	return s.LoadSandbox(id)
}

// ResolveSandboxID is the ID of the sandbox ref means, without reading its
// record (which may be unreadable).
func (s Store) ResolveSandboxID(ref string) (string, error) {
	ids, err := s.SandboxIDs()
	if err != nil {
		return "", err
	}
	return s.resolve(kindSandbox, ref, ids)
}

// RemoveSandboxRecord deletes sandbox sb's state directory, container links
// and name. It refuses while a mount (the netns pin) remains inside the
// directory, so it can never delete through a live mount. Missing pieces are
// success.
func (s Store) RemoveSandboxRecord(sb *Sandbox) error {
	if pin := filepath.Join(s.SandboxDir(sb.ID), "netns"); netsetup.IsNetNSPin(pin) {
		return fmt.Errorf("sandbox %q: remove state directory: network namespace %s is still mounted", sb.Name, pin)
	}
	cids, _ := listDir(filepath.Join(s.SandboxDir(sb.ID), "containers"))
	for _, cid := range cids {
		if err := unmountRootfs(s.ContainerDir(sb.ID, cid)); err != nil {
			return fmt.Errorf("sandbox %q: container %s: %w", sb.Name, cid, err)
		}
		if c, err := s.LoadContainer(sb.ID, cid); err == nil {
			s.releaseName(kindContainer, c.Name, c.ID)
		}
		os.Remove(filepath.Join(s.Root, "containers", cid))
	}
	if err := unmountVolumes(s.SandboxDir(sb.ID)); err != nil {
		return fmt.Errorf("sandbox %q: %w", sb.Name, err)
	}
	if err := unmountShm(s.SandboxDir(sb.ID)); err != nil {
		return fmt.Errorf("sandbox %q: /dev/shm: %w", sb.Name, err)
	}
	if err := os.RemoveAll(s.SandboxDir(sb.ID)); err != nil {
		return fmt.Errorf("sandbox %q: remove state directory: %w", sb.Name, err)
	}
	return s.releaseName(kindSandbox, sb.Name, sb.ID)
}

// CreateContainerRecord reserves c's name, makes its directory (the bundle
// lives there) and writes its first record.
func (s Store) CreateContainerRecord(c *Container) error {
	if err := s.reserveName(kindContainer, c.Name, c.ID); err != nil {
		return err
	}
	dir := s.ContainerDir(c.SandboxID, c.ID)
	link := filepath.Join(s.Root, "containers", c.ID)
	err := os.MkdirAll(dir, 0o700)
	if err == nil {
		err = os.MkdirAll(filepath.Dir(link), 0o700)
	}
	if err == nil {
		err = os.Symlink(filepath.Join("..", "sandboxes", c.SandboxID, "containers", c.ID), link)
	}
	if err == nil {
		err = writeJSON(filepath.Join(dir, "container.json"), c)
	}
	if err != nil {
		os.Remove(link)
		os.RemoveAll(dir)
		s.releaseName(kindContainer, c.Name, c.ID)
		return fmt.Errorf("container %q: write record: %w", c.Name, err)
	}
	return nil
}

// SaveContainer rewrites c's record.
func (s Store) SaveContainer(c *Container) error {
	if err := writeJSON(filepath.Join(s.ContainerDir(c.SandboxID, c.ID), "container.json"), c); err != nil {
		return fmt.Errorf("container %q: save record: %w", c.Name, err)
	}
	return nil
}

// LoadContainer reads container cid of sandbox sid.
func (s Store) LoadContainer(sid, cid string) (*Container, error) {
	return readContainer(filepath.Join(s.ContainerDir(sid, cid), "container.json"), sid, cid)
}

// readContainer reads the record of container cid of sandbox sid at path.
// A record that does not decode, or names another container or sandbox
// (whose removal would remove another's state), is an error wrapping
// ErrCorrupt.
func readContainer(path, sid, cid string) (*Container, error) {
	var c Container
	err := readJSON(path, &c)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("container %q: %w", cid, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("container %q: read record: %w: %v", cid, ErrCorrupt, err)
	}
	if c.ID != cid || c.SandboxID != sid || !isName(c.Name) {
		return nil, fmt.Errorf("container %q: read record: %w: it names container %q (%q) of sandbox %q", cid, ErrCorrupt, c.ID, c.Name, c.SandboxID)
	}
	return &c, nil
}

// ContainerIDs lists the containers of sandbox sid, or of every sandbox if
// sid is empty.
func (s Store) ContainerIDs(sid string) ([]string, error) {
	dir := filepath.Join(s.Root, "containers")
	if sid != "" {
		dir = filepath.Join(s.SandboxDir(sid), "containers")
	}
	ids, err := listDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list containers in %s: %w", dir, err)
	}
	return ids, nil
}

// ResolveContainer finds the container a user means by ref, across all
// sandboxes: an ID, a name, or a unique ID prefix.
func (s Store) ResolveContainer(ref string) (*Container, error) {
	ids, err := s.ContainerIDs("")
	if err != nil {
		return nil, err
	}
	id, err := s.resolve(kindContainer, ref, ids)
	if err != nil {
		return nil, err
	}
	// The link is ../sandboxes/SID/containers/ID: the record must name
	// that sandbox, whose directory its removal goes to.
	link := filepath.Join(s.Root, "containers", id)
	target, err := os.Readlink(link)
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	sid := filepath.Base(filepath.Dir(filepath.Dir(target)))
	return readContainer(filepath.Join(link, "container.json"), sid, id)
}

// RemoveContainerRecord deletes c's directory, link and name, unmounting
// the root a dead shim left mounted there first, so that the removal never
// deletes through a mount.
func (s Store) RemoveContainerRecord(c *Container) error {
	if err := unmountRootfs(s.ContainerDir(c.SandboxID, c.ID)); err != nil {
		return fmt.Errorf("container %q: %w", c.Name, err)
	}
	os.Remove(filepath.Join(s.Root, "containers", c.ID))
	if err := os.RemoveAll(s.ContainerDir(c.SandboxID, c.ID)); err != nil {
		return fmt.Errorf("container %q: remove state directory: %w", c.Name, err)
	}
	return s.releaseName(kindContainer, c.Name, c.ID)
}

// VolumesDir is the directory, in a sandbox's state directory, of the
// sandbox's own volumes (the emptyDirs, configMaps and secrets of `podbox
// play`, a directory or a tmpfs each): they go with the sandbox.
const VolumesDir = "volumes"

// unmountVolumes unmounts the tmpfs volumes of the sandbox whose state
// directory is dir, so that its removal can delete them.
func unmountVolumes(dir string) error {
	names, _ := listDir(filepath.Join(dir, VolumesDir))
	for _, name := range names {
		if err := unmountAll(filepath.Join(dir, VolumesDir, name)); err != nil {
			return fmt.Errorf("volume %q: %w", name, err)
		}
	}
	return nil
}

// unmountRootfs unmounts the root filesystem mounted in container directory
// dir (an image's overlay, which the shim mounts and unmounts; a shim
// killed in between leaves it); one that is not mounted is fine.
func unmountRootfs(dir string) error {
	return unmountAll(filepath.Join(dir, "rootfs"))
}
