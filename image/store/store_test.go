package store_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/podbox/podbox/image/store"
)

func newStore(t *testing.T) store.Store {
	t.Helper()
	return store.Store{Root: filepath.Join(t.TempDir(), "images")}
}

// addLayer commits a fake layer holding one file, name, with content, and
// returns its diff ID (the digest of the content, not of a tar: the store
// does not check it).
func addLayer(t *testing.T, st store.Store, name, content string) string {
	t.Helper()
	diffID := store.Digest([]byte(name + "\x00" + content))
	w, diff, err := st.NewLayerWork()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	p := filepath.Join(diff, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := st.CommitLayer(w, store.LayerInfo{DiffID: diffID, Size: int64(len(content))}); err != nil {
		t.Fatal(err)
	}
	return diffID
}

// addImage stores a config and a manifest for an image of layers and lists
// it under names. seed makes distinct images of the same layers.
func addImage(t *testing.T, st store.Store, seed string, names []string, layers ...string) *store.Image {
	t.Helper()
	cfg, err := json.Marshal(store.Config{
		OS: "linux", Architecture: "amd64",
		Config: store.RunConfig{Entrypoint: []string{"/bin/" + seed}},
		RootFS: store.RootFS{Type: "layers", DiffIDs: layers},
	})
	if err != nil {
		t.Fatal(err)
	}
	id := store.Digest(cfg)
	manifest := []byte(fmt.Sprintf(`{"schemaVersion":2,"config":{"digest":%q}}`, id))
	for _, b := range [][]byte{cfg, manifest} {
		if err := st.PutBlob(store.Digest(b), b); err != nil {
			t.Fatal(err)
		}
	}
	img := &store.Image{ID: id, Digest: store.Digest(manifest), Names: names, Layers: layers, Platform: "linux/amd64"}
	if err := st.AddImage(img); err != nil {
		t.Fatal(err)
	}
	return img
}

// listed returns the index as ID -> names.
func listed(t *testing.T, st store.Store) map[string][]string {
	t.Helper()
	images, err := st.Images()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]string{}
	for _, img := range images {
		if _, dup := m[img.ID]; dup {
			t.Errorf("image %s listed twice", img.ID)
		}
		m[img.ID] = append([]string{}, img.Names...)
	}
	return m
}

func wantNames(t *testing.T, st store.Store, id string, want ...string) {
	t.Helper()
	got, ok := listed(t, st)[id]
	if !ok {
		t.Errorf("image %s not listed, want names %q", id[:19], want)
		return
	}
	if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Errorf("image %s: names %q, want %q", id[:19], got, want)
	}
}

func blobExists(st store.Store, digest string) bool {
	_, err := os.Stat(filepath.Join(st.Root, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:")))
	return err == nil
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestEmptyStore(t *testing.T) {
	st := newStore(t)
	images, err := st.Images()
	if err != nil || len(images) != 0 {
		t.Fatalf("Images() of a new store = %v, %v; want none", images, err)
	}
	if _, err := st.Resolve("busybox"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Resolve in an empty store: %v, want ErrNotFound", err)
	}
	if n, err := st.CleanTemp(); n != 0 || err != nil {
		t.Errorf("CleanTemp of a new store = %d, %v", n, err)
	}
	rep, err := st.Prune(true, noUsers)
	if err != nil || len(rep.Deleted) != 0 || rep.Layers != 0 || rep.Blobs != 0 {
		t.Errorf("Prune of an empty store = %+v, %v", rep, err)
	}
}

func TestAddImageNames(t *testing.T) {
	st := newStore(t)
	a := addImage(t, st, "a", []string{"docker.io/library/app:1", "docker.io/library/app:latest"})
	b := addImage(t, st, "b", []string{"docker.io/library/app:latest"})
	// The tag moved upstream: it leaves a, which keeps its other name.
	wantNames(t, st, a.ID, "docker.io/library/app:1")
	wantNames(t, st, b.ID, "docker.io/library/app:latest")

	// The same image (same config) pulled by another name and through
	// another manifest: one image with both names and the newer digest.
	again := &store.Image{ID: b.ID, Digest: store.Digest([]byte("other manifest")), Names: []string{"example.com/app:2", "docker.io/library/app:latest"}, Layers: b.Layers}
	if err := st.AddImage(again); err != nil {
		t.Fatal(err)
	}
	wantNames(t, st, b.ID, "docker.io/library/app:latest", "example.com/app:2")
	got, err := st.Resolve(b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != again.Digest {
		t.Errorf("merged image digest %s, want the newer %s", got.Digest, again.Digest)
	}
	if n := len(listed(t, st)); n != 2 {
		t.Errorf("%d images listed, want 2", n)
	}

	// a's last name moves: a is dangling but still listed.
	addImage(t, st, "c", []string{"docker.io/library/app:1"})
	wantNames(t, st, a.ID)
	if n := len(listed(t, st)); n != 3 {
		t.Errorf("%d images listed, want 3", n)
	}
	// The index is valid JSON that names no image twice.
	if b, err := os.ReadFile(filepath.Join(st.Root, "images.json")); err != nil || !json.Valid(b) {
		t.Errorf("images.json: %v, valid=%v", err, json.Valid(b))
	}
}

func TestResolve(t *testing.T) {
	st := newStore(t)
	busybox := addImage(t, st, "busybox", []string{"docker.io/library/busybox:latest", "reg.io/tools/busybox:1"})
	other := addImage(t, st, "other", []string{"localhost:5000/app:1"})
	// Two images whose IDs share a prefix (the store does not check IDs
	// against their configs, so the test can choose them).
	p1 := &store.Image{ID: "sha256:abcd1" + hex64[5:], Digest: store.Digest([]byte("m1")), Names: []string{"example.com/p:1"}}
	p2 := &store.Image{ID: "sha256:abcd2" + hex64[5:], Digest: store.Digest([]byte("m2")), Names: []string{"example.com/p:2"}}
	for _, img := range []*store.Image{p1, p2} {
		if err := st.AddImage(img); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		ref  string
		want *store.Image
	}{
		{"busybox", busybox},
		{"busybox:latest", busybox},
		{"docker.io/library/busybox", busybox},
		{"index.docker.io/library/busybox:latest", busybox},
		{"reg.io/tools/busybox:1", busybox},
		{"localhost:5000/app:1", other},
		{busybox.ID, busybox},
		{busybox.Digest, busybox},
		{"busybox@" + busybox.Digest, busybox},
		{"reg.io/whatever@" + other.Digest, other},
		{strings.TrimPrefix(other.ID, "sha256:")[:12], other},
		{other.ID[:11], other},
		{strings.TrimPrefix(busybox.ID, "sha256:"), busybox},
		{"abcd1", p1},
		{"sha256:abcd2", p2},
	} {
		got, err := st.Resolve(tc.ref)
		if err != nil {
			t.Errorf("Resolve(%q): %v", tc.ref, err)
			continue
		}
		if got.ID != tc.want.ID {
			t.Errorf("Resolve(%q) = %s, want %s", tc.ref, got.ID, tc.want.ID)
		}
	}
	_, err := st.Resolve("abcd")
	if err == nil || !strings.Contains(err.Error(), "more than one") {
		t.Errorf("Resolve of an ambiguous prefix: %v, want an error saying it matches more than one image", err)
	}
	if errors.Is(err, store.ErrNotFound) {
		t.Errorf("Resolve of an ambiguous prefix: %v is ErrNotFound", err)
	}
	for _, ref := range []string{"busybox:1", "app:1", "reg.io/tools/busybox", "abc", "sha256:" + hex64, "ffff", "UPPER", ""} {
		_, err := st.Resolve(ref)
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Resolve(%q): %v, want ErrNotFound", ref, err)
		}
		if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("%q", ref)) {
			t.Errorf("Resolve(%q): %v does not name the ref", ref, err)
		}
	}
}

func TestImagesCorruptIndex(t *testing.T) {
	st := newStore(t)
	if err := os.MkdirAll(st.Root, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(st.Root, "images.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Images(); err == nil || !strings.Contains(err.Error(), "read index") {
		t.Errorf("Images() of a corrupt index: %v", err)
	}
	if err := st.AddImage(&store.Image{ID: "sha256:" + hex64}); err == nil {
		t.Errorf("AddImage over a corrupt index succeeded")
	}
}

func TestBlobs(t *testing.T) {
	st := newStore(t)
	doc := []byte(`{"a":1}`)
	d := store.Digest(doc)
	if err := st.PutBlob(d, []byte(`{"a":2}`)); err == nil || !strings.Contains(err.Error(), "content has digest") {
		t.Errorf("PutBlob of content that does not match: %v", err)
	}
	if blobExists(st, d) {
		t.Errorf("a refused blob was stored")
	}
	if err := st.PutBlob("sha256:abc", []byte("x")); err == nil {
		t.Errorf("PutBlob under an invalid digest succeeded")
	}
	if err := st.PutBlob(d, doc); err != nil {
		t.Fatal(err)
	}
	if err := st.PutBlob(d, doc); err != nil {
		t.Errorf("PutBlob of a stored blob: %v", err)
	}
	got, err := st.ReadBlob(d)
	if err != nil || string(got) != string(doc) {
		t.Errorf("ReadBlob = %q, %v", got, err)
	}
	// Damage on disk is detected.
	p := filepath.Join(st.Root, "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))
	if err := os.WriteFile(p, []byte(`{"a":3}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ReadBlob(d); err == nil || !strings.Contains(err.Error(), "content on disk has digest") {
		t.Errorf("ReadBlob of a corrupted blob: %v", err)
	}
	if _, err := st.ReadBlob(store.Digest([]byte("missing"))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadBlob of a missing blob: %v, want ErrNotExist", err)
	}
	// No temporary files are left next to the blobs.
	if names := dirEntries(t, filepath.Dir(p)); len(names) != 1 {
		t.Errorf("blobs/sha256 holds %q, want only the blob", names)
	}
}

func TestConfig(t *testing.T) {
	st := newStore(t)
	l := addLayer(t, st, "f", "x")
	img := addImage(t, st, "sh", []string{"example.com/a:1"}, l)
	cfg, err := st.Config(img)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != "amd64" || !slices.Equal(cfg.Config.Entrypoint, []string{"/bin/sh"}) || !slices.Equal(cfg.RootFS.DiffIDs, []string{l}) {
		t.Errorf("Config = %+v", cfg)
	}
	if _, err := st.Config(&store.Image{ID: store.Digest([]byte("nope"))}); err == nil {
		t.Errorf("Config of an image without a stored config succeeded")
	}
	notJSON := []byte("not json")
	if err := st.PutBlob(store.Digest(notJSON), notJSON); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Config(&store.Image{ID: store.Digest(notJSON)}); err == nil {
		t.Errorf("Config of a config that is not JSON succeeded")
	}
}

func TestLayers(t *testing.T) {
	st := newStore(t)
	l1 := addLayer(t, st, "etc/one", "1")
	l2 := addLayer(t, st, "etc/two", "22")
	if !st.HasLayer(l1) || !st.HasLayer(l2) {
		t.Fatalf("committed layers are not stored")
	}
	if st.HasLayer(store.Digest([]byte("other"))) {
		t.Errorf("HasLayer of an unknown layer")
	}
	info, err := st.Layer(l2)
	if err != nil || info.DiffID != l2 || info.Size != 2 {
		t.Errorf("Layer = %+v, %v", info, err)
	}
	if b, err := os.ReadFile(filepath.Join(st.LayerDiff(l1), "etc", "one")); err != nil || string(b) != "1" {
		t.Errorf("layer file = %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(st.LayerDiff(l1), "layer.json")); err == nil {
		t.Errorf("layer.json is inside the diff directory, where a container would see it")
	}
	dirs, err := st.LowerDirs(&store.Image{ID: "sha256:" + hex64, Layers: []string{l1, l2}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{st.LayerDiff(l2), st.LayerDiff(l1)}; !slices.Equal(dirs, want) {
		t.Errorf("LowerDirs = %q, want top layer first %q", dirs, want)
	}
	missing := store.Digest([]byte("missing"))
	if _, err := st.LowerDirs(&store.Image{ID: "sha256:" + hex64, Layers: []string{l1, missing}}); err == nil || !strings.Contains(err.Error(), "missing from the store") {
		t.Errorf("LowerDirs with a missing layer: %v", err)
	}
	dirs, err = st.LowerDirs(&store.Image{ID: "sha256:" + hex64})
	if err != nil || len(dirs) != 1 {
		t.Fatalf("LowerDirs of an image without layers = %q, %v", dirs, err)
	}
	if fi, err := os.Stat(dirs[0]); err != nil || !fi.IsDir() {
		t.Errorf("empty lower dir: %v", err)
	}
	if names := dirEntries(t, filepath.Join(st.Root, "tmp")); len(names) != 0 {
		t.Errorf("tmp/ holds %q after the layers were committed", names)
	}
}

func TestCommitLayerTwice(t *testing.T) {
	st := newStore(t)
	diffID := store.Digest([]byte("layer"))
	var works []*store.Work
	for _, content := range []string{"first", "second"} {
		w, diff, err := st.NewLayerWork()
		if err != nil {
			t.Fatal(err)
		}
		works = append(works, w)
		if err := os.WriteFile(filepath.Join(diff, "f"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, w := range works {
		if err := st.CommitLayer(w, store.LayerInfo{DiffID: diffID, Size: int64(i + 1)}); err != nil {
			t.Fatalf("CommitLayer #%d: %v", i+1, err)
		}
	}
	// The layer committed first stays, whole.
	if b, err := os.ReadFile(filepath.Join(st.LayerDiff(diffID), "f")); err != nil || string(b) != "first" {
		t.Errorf("layer file = %q, %v; want the first commit's", b, err)
	}
	if info, err := st.Layer(diffID); err != nil || info.Size != 1 {
		t.Errorf("Layer = %+v, %v; want the first commit's record", info, err)
	}
	for _, w := range works {
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if _, err := os.Stat(w.Dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("work dir %s still there after Close: %v", w.Dir, err)
		}
	}
	if names := dirEntries(t, filepath.Join(st.Root, "tmp")); len(names) != 0 {
		t.Errorf("tmp/ holds %q", names)
	}
	if names := dirEntries(t, filepath.Join(st.Root, "layers")); len(names) != 1 {
		t.Errorf("layers/ holds %q, want one layer", names)
	}

	w, _, err := st.NewLayerWork()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := st.CommitLayer(w, store.LayerInfo{DiffID: "sha256:nothex"}); err == nil {
		t.Errorf("CommitLayer with an invalid diff ID succeeded")
	}
}

func TestFormatSize(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{999, "999 B"},
		{1000, "1.0 kB"},
		{1500, "1.5 kB"},
		{999_949, "999.9 kB"},
		{999_999, "1.0 MB"},
		{1_000_000, "1.0 MB"},
		{30_100_000, "30.1 MB"},
		{2_500_000_000, "2.5 GB"},
		{1_000_000_000_000, "1.0 TB"},
		{3_000_000_000_000_000, "3.0 PB"},
		{3_000_000_000_000_000_000, "3000.0 PB"},
	} {
		if got := store.FormatSize(tc.n); got != tc.want {
			t.Errorf("FormatSize(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}
