package store_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/podbox/podbox/image/store"
)

func noUsers() (store.UsedBy, error) { return func(string) string { return "" }, nil }

// usedBy makes Users from a map of image ID to container name.
func usedBy(m map[string]string) store.Users {
	return func() (store.UsedBy, error) { return func(id string) string { return m[id] }, nil }
}

// snapshot is what a removal may change: the index, the layers, the blobs.
type snapshot struct {
	index  map[string][]string
	layers []string
	blobs  []string
}

func snap(t *testing.T, st store.Store) snapshot {
	t.Helper()
	return snapshot{
		index:  listed(t, st),
		layers: dirEntries(t, filepath.Join(st.Root, "layers")),
		blobs:  dirEntries(t, filepath.Join(st.Root, "blobs", "sha256")),
	}
}

func wantUnchanged(t *testing.T, st store.Store, before snapshot) {
	t.Helper()
	if after := snap(t, st); !reflect.DeepEqual(before, after) {
		t.Errorf("the store changed:\nbefore %+v\nafter  %+v", before, after)
	}
}

func wantImageStored(t *testing.T, st store.Store, img *store.Image) {
	t.Helper()
	for _, l := range img.Layers {
		if !st.HasLayer(l) {
			t.Errorf("layer %s of image %s is gone", l[:19], img.ID[:19])
		}
	}
	for _, d := range []string{img.ID, img.Digest} {
		if !blobExists(st, d) {
			t.Errorf("blob %s of image %s is gone", d[:19], img.ID[:19])
		}
	}
}

func wantImageGone(t *testing.T, st store.Store, img *store.Image) {
	t.Helper()
	if _, ok := listed(t, st)[img.ID]; ok {
		t.Errorf("image %s still listed", img.ID[:19])
	}
	for _, d := range []string{img.ID, img.Digest} {
		if blobExists(st, d) {
			t.Errorf("blob %s of removed image %s is still stored", d[:19], img.ID[:19])
		}
	}
}

func TestRemoveUntag(t *testing.T) {
	st := newStore(t)
	l := addLayer(t, st, "f", "x")
	img := addImage(t, st, "a", []string{"docker.io/library/app:1", "docker.io/library/app:2"}, l)
	rep, err := st.Remove([]string{"app:1"}, false, noUsers)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Untagged, []string{"docker.io/library/app:1"}) || len(rep.Deleted) != 0 || rep.Layers != 0 || rep.Blobs != 0 {
		t.Errorf("Remove = %+v, want app:1 untagged only", rep)
	}
	wantNames(t, st, img.ID, "docker.io/library/app:2")
	wantImageStored(t, st, img)

	// The last name deletes the image and what only it used.
	rep, err = st.Remove([]string{"docker.io/library/app:2"}, false, noUsers)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Untagged, []string{"docker.io/library/app:2"}) || !slices.Equal(rep.Deleted, []string{img.ID}) {
		t.Errorf("Remove = %+v, want app:2 untagged and %s deleted", rep, img.ID)
	}
	if rep.Layers != 1 || rep.Blobs != 2 || rep.Freed <= 0 {
		t.Errorf("Remove collected %d layers, %d blobs, %d bytes; want 1, 2, >0", rep.Layers, rep.Blobs, rep.Freed)
	}
	wantImageGone(t, st, img)
	if st.HasLayer(l) {
		t.Errorf("layer of the deleted image is still stored")
	}
	if n := len(listed(t, st)); n != 0 {
		t.Errorf("%d images listed after the last was removed", n)
	}
}

func TestRemoveByID(t *testing.T) {
	st := newStore(t)
	l := addLayer(t, st, "f", "x")
	img := addImage(t, st, "a", []string{"example.com/a:1", "example.com/a:2"}, l)
	// An ID deletes the image with all its names.
	rep, err := st.Remove([]string{strings.TrimPrefix(img.ID, "sha256:")[:12]}, false, noUsers)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Deleted, []string{img.ID}) || len(rep.Untagged) != 2 {
		t.Errorf("Remove by ID = %+v", rep)
	}
	wantImageGone(t, st, img)
}

func TestRemoveSharedLayer(t *testing.T) {
	st := newStore(t)
	base := addLayer(t, st, "base", "shared")
	onlyX := addLayer(t, st, "x", "x")
	onlyY := addLayer(t, st, "y", "y")
	x := addImage(t, st, "x", []string{"example.com/x:1"}, base, onlyX)
	y := addImage(t, st, "y", []string{"example.com/y:1"}, base, onlyY)
	rep, err := st.Remove([]string{"example.com/x:1"}, false, noUsers)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Layers != 1 || rep.Blobs != 2 {
		t.Errorf("Remove collected %d layers and %d blobs, want 1 and 2", rep.Layers, rep.Blobs)
	}
	wantImageGone(t, st, x)
	if st.HasLayer(onlyX) {
		t.Errorf("x's own layer survived")
	}
	wantImageStored(t, st, y)
	if b, err := os.ReadFile(filepath.Join(st.LayerDiff(base), "base")); err != nil || string(b) != "shared" {
		t.Errorf("shared layer's file = %q, %v", b, err)
	}
}

func TestRemoveInUse(t *testing.T) {
	st := newStore(t)
	l := addLayer(t, st, "f", "x")
	img := addImage(t, st, "a", []string{"example.com/a:1"}, l)
	users := usedBy(map[string]string{img.ID: "web-1"})

	before := snap(t, st)
	_, err := st.Remove([]string{"example.com/a:1"}, false, users)
	if err == nil || !strings.Contains(err.Error(), `"web-1"`) {
		t.Fatalf("Remove of an image in use: %v, want an error naming the container", err)
	}
	wantUnchanged(t, st, before)

	// -f untags it and keeps it for the container.
	rep, err := st.Remove([]string{"example.com/a:1"}, true, users)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Untagged, []string{"example.com/a:1"}) || len(rep.Deleted) != 0 || rep.Layers != 0 || rep.Blobs != 0 {
		t.Errorf("Remove -f = %+v, want untagged only", rep)
	}
	wantNames(t, st, img.ID)
	wantImageStored(t, st, img)

	// A prune keeps it while the container lives, and takes it after.
	rep, err = st.Prune(false, users)
	if err != nil || len(rep.Deleted) != 0 {
		t.Errorf("Prune while in use = %+v, %v", rep, err)
	}
	wantImageStored(t, st, img)
	rep, err = st.Prune(false, noUsers)
	if err != nil || !slices.Equal(rep.Deleted, []string{img.ID}) || rep.Layers != 1 {
		t.Errorf("Prune after the container = %+v, %v", rep, err)
	}
	wantImageGone(t, st, img)
}

// Removing every name of an image a container uses, in one call, must be
// refused as removing its only name is: it would leave the image dangling
// just as -f does.
func TestRemoveAllNamesInUse(t *testing.T) {
	st := newStore(t)
	l := addLayer(t, st, "f", "x")
	img := addImage(t, st, "a", []string{"example.com/a:1", "example.com/a:2"}, l)
	users := usedBy(map[string]string{img.ID: "web-1"})
	before := snap(t, st)
	_, err := st.Remove([]string{"example.com/a:1", "example.com/a:2"}, false, users)
	if err == nil || !strings.Contains(err.Error(), `"web-1"`) {
		t.Errorf("Remove of every name of an image in use: %v, want an error naming the container", err)
	}
	wantUnchanged(t, st, before)

	// One name at a time: the first is untagged, the last refused.
	if _, err := st.Remove([]string{"example.com/a:1"}, false, users); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Remove([]string{"example.com/a:2"}, false, users); err == nil {
		t.Errorf("Remove of the last name of an image in use succeeded")
	}
	wantNames(t, st, img.ID, "example.com/a:2")
}

func TestRemoveSeveralNames(t *testing.T) {
	st := newStore(t)
	l := addLayer(t, st, "f", "x")
	a := addImage(t, st, "a", []string{"example.com/a:1", "example.com/a:2"}, l)
	b := addImage(t, st, "b", []string{"example.com/b:1", "example.com/b:2"}, l)
	// The same name twice untags it once; the image keeps its other name.
	rep, err := st.Remove([]string{"example.com/a:1", "example.com/a:1"}, false, noUsers)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Untagged, []string{"example.com/a:1"}) || len(rep.Deleted) != 0 {
		t.Errorf("Remove of a name twice = %+v, want it untagged once", rep)
	}
	wantNames(t, st, a.ID, "example.com/a:2")
	wantImageStored(t, st, a)
	// Every name: untagged, then the image deleted.
	rep, err = st.Remove([]string{"example.com/b:1", "example.com/b:2"}, false, noUsers)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Deleted, []string{b.ID}) || !slices.Equal(rep.Untagged, []string{"example.com/b:1", "example.com/b:2"}) {
		t.Errorf("Remove of every name = %+v", rep)
	}
	wantImageGone(t, st, b)
	wantImageStored(t, st, a)
}

func TestRemoveUnknownChangesNothing(t *testing.T) {
	st := newStore(t)
	l := addLayer(t, st, "f", "x")
	a := addImage(t, st, "a", []string{"example.com/a:1"}, l)
	addImage(t, st, "b", []string{"example.com/b:1", "example.com/b:2"}, l)
	before := snap(t, st)
	_, err := st.Remove([]string{"example.com/a:1", "example.com/b:1", "example.com/nope:1"}, false, noUsers)
	if !errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), "example.com/nope:1") {
		t.Errorf("Remove with an unknown ref: %v, want ErrNotFound naming it", err)
	}
	wantUnchanged(t, st, before)

	// An image in use among several refs: nothing changes either.
	_, err = st.Remove([]string{"example.com/b:1", "example.com/a:1"}, false, usedBy(map[string]string{a.ID: "db"}))
	if err == nil || !strings.Contains(err.Error(), `"db"`) {
		t.Errorf("Remove with an image in use: %v", err)
	}
	wantUnchanged(t, st, before)

	// Users failing fails the removal.
	_, err = st.Remove([]string{"example.com/a:1"}, false, func() (store.UsedBy, error) { return nil, errors.New("no sandbox records") })
	if err == nil || !strings.Contains(err.Error(), "no sandbox records") {
		t.Errorf("Remove with failing Users: %v", err)
	}
	wantUnchanged(t, st, before)
}

func TestPrune(t *testing.T) {
	st := newStore(t)
	base := addLayer(t, st, "base", "base")
	named := addImage(t, st, "named", []string{"example.com/named:1"}, base, addLayer(t, st, "n", "n"))
	dangling := addImage(t, st, "dangling", []string{"example.com/d:1"}, base, addLayer(t, st, "d", "d"))
	addImage(t, st, "newer", []string{"example.com/d:1"}, base) // d:1 moves away: dangling has no name
	newer, err := st.Resolve("example.com/d:1")
	if err != nil {
		t.Fatal(err)
	}
	usedDangling := addImage(t, st, "used", nil, addLayer(t, st, "u", "u"))
	usedNamed := addImage(t, st, "usednamed", []string{"example.com/used:1"})
	users := usedBy(map[string]string{usedDangling.ID: "c1", usedNamed.ID: "c2"})
	// A document no image needs.
	stray := []byte("stray")
	if err := st.PutBlob(store.Digest(stray), stray); err != nil {
		t.Fatal(err)
	}

	rep, err := st.Prune(false, users)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Deleted, []string{dangling.ID}) || len(rep.Untagged) != 0 {
		t.Errorf("Prune = %+v, want only the dangling image deleted", rep)
	}
	if rep.Layers != 1 || rep.Blobs != 3 {
		t.Errorf("Prune collected %d layers and %d blobs, want 1 and 3", rep.Layers, rep.Blobs)
	}
	wantImageGone(t, st, dangling)
	for _, img := range []*store.Image{named, newer, usedDangling, usedNamed} {
		wantImageStored(t, st, img)
	}
	if blobExists(st, store.Digest(stray)) {
		t.Errorf("the stray blob survived a prune")
	}

	rep, err = st.Prune(true, users)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(rep.Deleted)
	want := []string{named.ID, newer.ID}
	slices.Sort(want)
	if !slices.Equal(rep.Deleted, want) {
		t.Errorf("Prune all deleted %q, want %q", rep.Deleted, want)
	}
	wantImageGone(t, st, named)
	wantImageGone(t, st, newer)
	if st.HasLayer(base) {
		t.Errorf("the layer only unused images shared survived")
	}
	wantImageStored(t, st, usedDangling)
	wantImageStored(t, st, usedNamed)
	if got := listed(t, st); len(got) != 2 {
		t.Errorf("listed after prune all: %v", got)
	}

	// Nothing left to do: nothing reported.
	rep, err = st.Prune(true, users)
	if err != nil || len(rep.Deleted) != 0 || rep.Layers != 0 || rep.Blobs != 0 || rep.Freed != 0 {
		t.Errorf("second Prune = %+v, %v", rep, err)
	}
}

func TestPruneTemp(t *testing.T) {
	st := newStore(t)
	tmp := filepath.Join(st.Root, "tmp")
	// What a killed pull leaves: an owner.lock nobody holds, and a
	// directory that died before it had one.
	abandoned := filepath.Join(tmp, "layer-x")
	if err := os.MkdirAll(filepath.Join(abandoned, "layer", "diff", "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(abandoned, "owner.lock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(abandoned, "layer", "diff", "etc", "passwd"), []byte("root"), 0o644); err != nil {
		t.Fatal(err)
	}
	noLock := filepath.Join(tmp, "load-y")
	if err := os.MkdirAll(noLock, 0o700); err != nil {
		t.Fatal(err)
	}
	held, err := st.NewWork("layer")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := os.WriteFile(filepath.Join(held.Dir, "data"), []byte("in progress"), 0o600); err != nil {
		t.Fatal(err)
	}

	rep, err := st.Prune(false, noUsers)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Temp != 2 {
		t.Errorf("Prune removed %d work dirs, want 2", rep.Temp)
	}
	for _, d := range []string{abandoned, noLock} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("abandoned %s survived: %v", d, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(held.Dir, "data")); err != nil || string(b) != "in progress" {
		t.Errorf("the held work dir was touched: %q, %v", b, err)
	}
	if n, err := st.CleanTemp(); n != 0 || err != nil {
		t.Errorf("CleanTemp with only a held dir = %d, %v", n, err)
	}
	if err := held.Close(); err != nil {
		t.Fatal(err)
	}
	if names := dirEntries(t, tmp); len(names) != 0 {
		t.Errorf("tmp/ holds %q after Close", names)
	}
}

// A Work of this process is held against a CleanTemp of this process too:
// flock locks belong to the open file, not to the process.
func TestNewWorkHeldAgainstCleanTemp(t *testing.T) {
	st := newStore(t)
	w, diff, err := st.NewLayerWork()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(w.Dir), "layer-") || filepath.Dir(w.Dir) != filepath.Join(st.Root, "tmp") {
		t.Errorf("work dir %s", w.Dir)
	}
	if n, err := st.CleanTemp(); n != 0 || err != nil {
		t.Errorf("CleanTemp = %d, %v; want the held dir kept", n, err)
	}
	if fi, err := os.Stat(diff); err != nil || !fi.IsDir() {
		t.Errorf("diff dir of a held work: %v", err)
	}
	w.Close()
}
