package volume

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func noUsers() (UsedBy, error) { return func(string) []string { return nil }, nil }

func names(t *testing.T, s Store) []string {
	t.Helper()
	vols, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, v := range vols {
		out = append(out, v.Name)
	}
	return out
}

func TestCreateGetListRemove(t *testing.T) {
	s := Store{Root: t.TempDir()}
	if vols, err := s.List(); err != nil || len(vols) != 0 {
		t.Fatalf("List of a fresh root = %v, %v", vols, err)
	}
	v, created, err := s.Create("data")
	if err != nil || !created {
		t.Fatalf("Create = %v, %v, %v", v, created, err)
	}
	if v.Mountpoint != filepath.Join(s.Root, "volumes", "data", "_data") {
		t.Errorf("mountpoint %s", v.Mountpoint)
	}
	if st, err := os.Stat(v.Mountpoint); err != nil || !st.IsDir() || st.Mode().Perm() != 0o755 {
		t.Errorf("data directory: %v %v", st, err)
	}
	os.WriteFile(filepath.Join(v.Mountpoint, "f"), []byte("x"), 0o644)
	// A second create is the same volume, data and all.
	again, created, err := s.Create("data")
	if err != nil || created || !again.CreatedAt.Equal(v.CreatedAt) {
		t.Errorf("second Create = %+v, %v, %v", again, created, err)
	}
	if _, err := os.Stat(filepath.Join(v.Mountpoint, "f")); err != nil {
		t.Errorf("second Create lost the data: %v", err)
	}
	s.Create("cache")
	if got := names(t, s); !slices.Equal(got, []string{"cache", "data"}) {
		t.Errorf("List = %v", got)
	}
	if err := s.Remove([]string{"data", "cache"}, false, noUsers); err != nil {
		t.Fatal(err)
	}
	if got := names(t, s); len(got) != 0 {
		t.Errorf("List after Remove = %v", got)
	}
	if _, err := s.Get("data"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `volume "data"`) {
		t.Errorf("Get after Remove: %v", err)
	}
	// Nothing but the empty volumes directory is left.
	if entries, _ := os.ReadDir(filepath.Join(s.Root, "volumes")); len(entries) != 0 {
		t.Errorf("left in volumes/: %v", entries)
	}
}

func TestBadNames(t *testing.T) {
	s := Store{Root: t.TempDir()}
	for _, name := range []string{"", "a/b", "../x", ".hidden", "-x", "with space", strings.Repeat("a", 64)} {
		if _, _, err := s.Create(name); err == nil || !strings.Contains(err.Error(), "invalid") {
			t.Errorf("Create(%q) = %v, want invalid", name, err)
		}
		if _, _, err := s.Use([]string{name}); err == nil {
			t.Errorf("Use(%q) succeeded", name)
		}
	}
	if _, err := os.Stat(filepath.Join(s.Root, "volumes")); !os.IsNotExist(err) {
		t.Errorf("bad names made the volumes directory: %v", err)
	}
}

// A volume a container mounts is refused, with or without force, and
// naming the container; one bad name removes nothing; force skips a
// missing volume only.
func TestRemoveRefusals(t *testing.T) {
	s := Store{Root: t.TempDir()}
	s.Create("free")
	s.Create("used")
	users := func() (UsedBy, error) {
		return func(name string) []string {
			if name == "used" {
				return []string{"web", "db"}
			}
			return nil
		}, nil
	}
	for _, force := range []bool{false, true} {
		err := s.Remove([]string{"free", "used"}, force, users)
		if err == nil || !strings.Contains(err.Error(), `volume "used": remove: in use by containers "web", "db"`) {
			t.Errorf("force=%v: Remove of a used volume: %v", force, err)
		}
	}
	err := s.Remove([]string{"free", "nope"}, false, users)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `volume "nope"`) {
		t.Errorf("Remove of a missing volume: %v", err)
	}
	if got := names(t, s); !slices.Equal(got, []string{"free", "used"}) {
		t.Errorf("refused removals removed something: %v", got)
	}
	if err := s.Remove([]string{"free", "nope"}, true, users); err != nil {
		t.Errorf("Remove -f with a missing volume: %v", err)
	}
	if got := names(t, s); !slices.Equal(got, []string{"used"}) {
		t.Errorf("after Remove -f: %v", got)
	}
	failing := func() (UsedBy, error) { return nil, errors.New("records unreadable") }
	if err := s.Remove([]string{"used"}, true, failing); err == nil {
		t.Error("Remove went ahead without knowing the volume's users")
	}
}

// Use creates what is missing, and a removal waits until the user has
// released (its container's record is written by then).
func TestUseHoldsAgainstRemoval(t *testing.T) {
	s := Store{Root: t.TempDir()}
	vols, release, err := s.Use([]string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	if len(vols) != 2 || vols[1].Name != "b" {
		t.Fatalf("Use = %+v", vols)
	}
	removed := make(chan error, 1)
	go func() { removed <- s.Remove([]string{"a"}, false, noUsers) }()
	select {
	case err := <-removed:
		t.Fatalf("Remove did not wait for the user: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	release()
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	if got := names(t, s); !slices.Equal(got, []string{"b"}) {
		t.Errorf("after Remove: %v", got)
	}
}

// What a crash leaves midway is not listed, and the next removal sweeps it.
func TestCrashLeftovers(t *testing.T) {
	s := Store{Root: t.TempDir()}
	s.Create("keep")
	for _, d := range []string{".new-123", ".rm-old"} {
		os.MkdirAll(filepath.Join(s.Root, "volumes", d, "_data"), 0o755)
	}
	if got := names(t, s); !slices.Equal(got, []string{"keep"}) {
		t.Errorf("List = %v", got)
	}
	if err := s.Remove([]string{"keep"}, false, noUsers); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(filepath.Join(s.Root, "volumes")); len(entries) != 0 {
		t.Errorf("left in volumes/: %v", entries)
	}
}
