package store_test

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/image/store"
)

func needRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			tb.Fatal("needs root")
		}
		tb.Skip("needs root")
	}
}

// fsEntry is one thing in a test layer's diff directory.
type fsEntry struct {
	path    string
	kind    byte // 'f' file, 'd' directory, 'w' whiteout, 'o' opaque directory, 'l' symlink
	content string
}

// commitLayer builds a layer directory the way image/unpack leaves one and
// commits it under a diff ID derived from seed.
func commitLayer(t *testing.T, st store.Store, seed string, entries ...fsEntry) string {
	t.Helper()
	w, diff, err := st.NewLayerWork()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, e := range entries {
		p := filepath.Join(diff, e.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch e.kind {
		case 'f':
			err = os.WriteFile(p, []byte(e.content), 0o644)
		case 'd':
			err = os.MkdirAll(p, 0o755)
		case 'w':
			err = unix.Mknod(p, unix.S_IFCHR, 0) // a whiteout: mode 0, device 0/0
		case 'o':
			if err = os.MkdirAll(p, 0o755); err == nil {
				err = unix.Setxattr(p, "trusted.overlay.opaque", []byte("y"), 0)
			}
		case 'l':
			err = os.Symlink(e.content, p)
		}
		if err != nil {
			t.Fatalf("layer %s: %s: %v", seed, e.path, err)
		}
	}
	diffID := store.Digest([]byte(seed))
	if err := st.CommitLayer(w, store.LayerInfo{DiffID: diffID}); err != nil {
		t.Fatal(err)
	}
	return diffID
}

func readFS(fsys fs.FS, name string) (string, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	return string(b), err
}

func TestFS(t *testing.T) {
	needRoot(t)
	st := newStore(t)
	// A directory outside the store that symlinks in the layers point at:
	// FS must never read it.
	host := t.TempDir()
	if err := os.MkdirAll(filepath.Join(host, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "etc", "secret"), []byte("host secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	bottom := commitLayer(t, st, "bottom",
		fsEntry{"etc/passwd", 'f', "root:x:0:0:lower"},
		fsEntry{"etc/group", 'f', "root:x:0:"},
		fsEntry{"gone", 'f', "lower"},
		fsEntry{"dir/sub/f", 'f', "lower"},
		fsEntry{"opq/a", 'f', "lower a"},
		fsEntry{"opq/b/c", 'f', "lower c"},
		fsEntry{"opq/w", 'f', "lower w"},
		fsEntry{"shadowed/f", 'f', "lower"},
		fsEntry{"empty", 'd', ""},
		fsEntry{"lnk/secret", 'f', "lower"},
	)
	middle := commitLayer(t, st, "middle",
		fsEntry{"etc/passwd", 'f', "root:x:0:0:upper"},
		fsEntry{"gone", 'w', ""},
		fsEntry{"dir", 'w', ""},
		fsEntry{"opq", 'o', ""},
		fsEntry{"opq/new", 'f', "middle new"},
		fsEntry{"opq/w", 'w', ""},
		fsEntry{"opq/l", 'l', filepath.Join(host, "etc")},
		fsEntry{"shadowed", 'f', "a file now"},
	)
	top := commitLayer(t, st, "top",
		fsEntry{"etc/hostname", 'f', "box"},
		fsEntry{"link", 'l', filepath.Join(host, "etc", "secret")},
		fsEntry{"lnk", 'l', filepath.Join(host, "etc")},
	)
	fsys := st.FS(&store.Image{ID: "sha256:" + hex64, Layers: []string{bottom, middle, top}})

	for _, tc := range []struct {
		name, want string
	}{
		{"etc/passwd", "root:x:0:0:upper"}, // overridden in an upper layer
		{"etc/group", "root:x:0:"},         // only in the bottom layer
		{"etc/hostname", "box"},            // only in the top layer
		{"opq/new", "middle new"},          // in the opaque directory itself
		{"shadowed", "a file now"},
	} {
		got, err := readFS(fsys, tc.name)
		if err != nil || got != tc.want {
			t.Errorf("%s = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	for _, name := range []string{
		"gone",         // whited out
		"dir/sub/f",    // under a whited-out directory
		"dir",          // the whiteout itself
		"opq/a",        // hidden by the opaque directory
		"opq/b/c",      // deeper under it
		"opq/w",        // whited out inside the opaque directory
		"shadowed/f",   // its directory is a file above
		"missing",      // nowhere
		"etc/missing",  // nowhere, in a directory that exists
		"opq/l/secret", // through a symlink (to the host) in an opaque directory
		"lnk/secret",   // through a symlink (to the host) in the top layer
	} {
		got, err := readFS(fsys, name)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s = %q, %v; want ErrNotExist", name, got, err)
		}
	}
	// Symbolic links are not followed.
	if got, err := readFS(fsys, "link"); err == nil {
		t.Errorf("link = %q, read through a symbolic link", got)
	}
	// Directories open.
	if f, err := fsys.Open("empty"); err != nil {
		t.Errorf("open a directory: %v", err)
	} else {
		fi, err := f.Stat()
		if err != nil || !fi.IsDir() {
			t.Errorf("stat a directory: %v, %v", fi, err)
		}
		f.Close()
	}
	for _, name := range []string{"/etc/passwd", "../etc/passwd", "etc/../etc/passwd", ""} {
		if _, err := fsys.Open(name); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("Open(%q): %v, want ErrInvalid", name, err)
		}
	}
	// An image without layers has an empty root.
	if _, err := st.FS(&store.Image{ID: "sha256:" + hex64}).Open("etc/passwd"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("open in an image without layers: %v", err)
	}
}
