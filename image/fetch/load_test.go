package fetch

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/podbox/podbox/image/store"
)

// newStoreEnv is a store in its own temporary directory, with no registry.
func newStoreEnv(t *testing.T) *testEnv {
	t.Helper()
	parent := t.TempDir()
	return &testEnv{st: store.Store{Root: filepath.Join(parent, "store")}, parent: parent}
}

// dockerSave writes img as `docker save` would, under tag, to a file.
func dockerSave(t *testing.T, img v1.Image, tag string) string {
	t.Helper()
	tg, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := tarball.Write(tg, img, f); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeFile(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "archive")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func readAll(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ociLayout writes an OCI image layout holding img, annotated with
// ref.name, to a directory.
func ociLayout(t *testing.T, refName string, img v1.Image) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	var opts []layout.Option
	if refName != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": refName}))
	}
	if err := lp.AppendImage(img, opts...); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tarDir packs dir into a tar file, names relative to dir.
func tarDir(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "layout.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.Type().IsRegular() {
			src, err := os.Open(path)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = io.Copy(tw, src)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// wantLoaded checks that Load stored img whole under names.
func (e *testEnv) wantLoaded(t *testing.T, got []*store.Image, img v1.Image, layers []testLayer, names ...string) {
	t.Helper()
	if len(got) != 1 {
		t.Fatalf("loaded %d images, want 1", len(got))
	}
	rec := got[0]
	if rec.ID != imageID(t, img) {
		t.Errorf("loaded ID %s, want %s", rec.ID, imageID(t, img))
	}
	if !slices.Equal(rec.Names, names) && !(len(rec.Names) == 0 && len(names) == 0) {
		t.Errorf("loaded names %q, want %q", rec.Names, names)
	}
	e.wantListed(t, names...)
	var diffIDs []string
	for _, l := range layers {
		diffIDs = append(diffIDs, l.diffID)
		if !e.st.HasLayer(l.diffID) {
			t.Errorf("layer %s not stored", l.diffID)
		}
	}
	if !slices.Equal(rec.Layers, diffIDs) {
		t.Errorf("loaded layers %q, want %q", rec.Layers, diffIDs)
	}
	if rec.Platform != "linux/"+NodePlatform().Architecture || rec.Size <= 0 {
		t.Errorf("loaded platform %q, size %d", rec.Platform, rec.Size)
	}
	cfg, err := e.st.Config(rec)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Config.Entrypoint, testRunConfig.Entrypoint) {
		t.Errorf("loaded entrypoint %q", cfg.Config.Entrypoint)
	}
	if _, err := e.st.ReadBlob(rec.Digest); err != nil {
		t.Errorf("manifest: %v", err)
	}
	if s, err := readFSFile(e.st.FS(rec), "etc/motd"); err != nil || s != "app\n" {
		t.Errorf("etc/motd = %q, %v", s, err)
	}
	e.wantTmpEmpty(t)
}

func TestLoadDockerArchive(t *testing.T) {
	needRoot(t)
	base, app := twoLayers(t)
	img := imageOf(t, NodePlatform().Architecture, base, app)
	saved := dockerSave(t, img, "app:1")
	ctx := context.Background()

	e := newStoreEnv(t)
	got, err := Load(ctx, e.st, saved, Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.wantLoaded(t, got, img, []testLayer{base, app}, "docker.io/library/app:1")
	if info, err := e.st.Layer(base.diffID); err != nil || info.Size <= 0 {
		t.Errorf("layer record %+v, %v", info, err)
	}

	// Gzip'd, as `docker save | gzip` makes it.
	gz := writeFile(t, gzipOf(t, readAll(t, saved)))
	e2 := newStoreEnv(t)
	rec := newRecorder()
	got, err = Load(ctx, e2.st, gz, Options{Progress: rec})
	if err != nil {
		t.Fatal(err)
	}
	e2.wantLoaded(t, got, img, []testLayer{base, app}, "docker.io/library/app:1")
	if len(rec.done) != 2 {
		t.Errorf("progress heard of %d layers done, want 2: %q", len(rec.done), rec.events)
	}

	// Loading it again reuses the layers.
	rec = newRecorder()
	if _, err := Load(ctx, e2.st, saved, Options{Progress: rec}); err != nil {
		t.Fatal(err)
	}
	for _, l := range []testLayer{base, app} {
		if existed, ok := rec.done[short(l.diffID)]; !ok || !existed {
			t.Errorf("second load: layer %s done=%v existed=%v", short(l.diffID), ok, existed)
		}
	}
	e2.wantListed(t, "docker.io/library/app:1")
	e2.wantTmpEmpty(t)
}

func TestLoadOCILayout(t *testing.T) {
	needRoot(t)
	base, app := twoLayers(t)
	img := imageOf(t, NodePlatform().Architecture, base, app)
	dir := ociLayout(t, "example.com/app:1", img)
	ctx := context.Background()

	e := newStoreEnv(t)
	got, err := Load(ctx, e.st, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.wantLoaded(t, got, img, []testLayer{base, app}, "example.com/app:1")
	mdigest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Digest != mdigest.String() {
		t.Errorf("loaded digest %s, want %s", got[0].Digest, mdigest)
	}
	if info, err := e.st.Layer(app.diffID); err != nil || info.Digest != app.digest {
		t.Errorf("layer record %+v, %v; want digest %s", info, err, app.digest)
	}

	// The layout packed into a tar, plain and gzip'd.
	packed := tarDir(t, dir)
	for _, p := range []string{packed, writeFile(t, gzipOf(t, readAll(t, packed)))} {
		e := newStoreEnv(t)
		got, err := Load(ctx, e.st, p, Options{})
		if err != nil {
			t.Fatal(err)
		}
		e.wantLoaded(t, got, img, []testLayer{base, app}, "example.com/app:1")
	}

	// A bare tag names nothing: the image is loaded without a name.
	e = newStoreEnv(t)
	got, err = Load(ctx, e.st, ociLayout(t, "1", img), Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.wantLoaded(t, got, img, []testLayer{base, app})
	if _, err := e.st.Resolve(got[0].ID); err != nil {
		t.Errorf("resolve the unnamed image: %v", err)
	}
}

func TestLoadOCILayoutPlatforms(t *testing.T) {
	needRoot(t)
	amdLayer := layerOf(t, file("arch", "amd64\n"))
	armLayer := layerOf(t, file("arch", "arm64\n"))
	amd := imageOf(t, "amd64", amdLayer)
	arm := imageOf(t, "arm64", armLayer)
	dir := filepath.Join(t.TempDir(), "layout")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendIndex(indexOf(t, amd, arm), layout.WithAnnotations(map[string]string{"io.containerd.image.name": "example.com/multi:1"})); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e := newStoreEnv(t)
	got, err := Load(ctx, e.st, dir, Options{Platform: v1.Platform{OS: "linux", Architecture: "arm64"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != imageID(t, arm) || got[0].Platform != "linux/arm64" {
		t.Fatalf("loaded %+v, want the arm64 image", got)
	}
	e.wantListed(t, "example.com/multi:1")
	if s := readFile(t, filepath.Join(e.st.LayerDiff(armLayer.diffID), "arch")); s != "arm64\n" {
		t.Errorf("arch = %q", s)
	}
	if e.st.HasLayer(amdLayer.diffID) {
		t.Errorf("the amd64 layer was stored too")
	}

	// No image for the platform.
	e = newStoreEnv(t)
	_, err = Load(ctx, e.st, dir, Options{Platform: v1.Platform{OS: "linux", Architecture: "s390x"}})
	if err == nil || !strings.Contains(err.Error(), "no image for linux/s390x") {
		t.Errorf("load for s390x: %v", err)
	}
	single := ociLayout(t, "example.com/arm:1", arm)
	_, err = Load(ctx, e.st, single, Options{Platform: v1.Platform{OS: "linux", Architecture: "amd64"}})
	if err == nil || !strings.Contains(err.Error(), "no image for linux/amd64") {
		t.Errorf("load of an arm64 layout for amd64: %v", err)
	}
	e.wantNoImages(t)
	e.wantTmpEmpty(t)
}

func TestLoadBadArchives(t *testing.T) {
	base, app := twoLayers(t)
	saved := readAll(t, dockerSave(t, imageOf(t, NodePlatform().Architecture, base, app), "app:1"))
	rnd := make([]byte, 64<<10)
	rand.New(rand.NewSource(1)).Read(rnd)
	rnd[0] = 'x' // not gzip's magic
	for _, tc := range []struct {
		name    string
		content []byte
		want    string
	}{
		{"truncated", truncate(saved), "unexpected EOF"},
		{"truncated at a block", saved[:len(saved)/2/512*512], "neither a docker save archive|unexpected EOF"},
		{"truncated gzip", truncate(gzipOf(t, saved)), "unexpected EOF"},
		{"random bytes", rnd, "not a tar archive"},
		{"empty", nil, "not a tar archive"},
		{"gzip'd nothing", gzipOf(t, nil), "not a tar archive"},
		{"tar of other files", tarOf(t, file("hello.txt", "hi")), "neither a docker save archive"},
		{"oci-layout without index.json", tarOf(t, file("oci-layout", `{"imageLayoutVersion":"1.0.0"}`)), "without index.json"},
		{"manifest.json not json", tarOf(t, file("manifest.json", "{")), "manifest.json"},
		{"manifest.json without images", tarOf(t, file("manifest.json", "[]")), "no image"},
		{"../evil", tarOf(t, file("manifest.json", "[]"), file("../evil", "pwned")), `"../evil"`},
		{"/evil", tarOf(t, file("/evil", "pwned")), "escapes"},
		{"blobs/../../evil", tarOf(t, file("oci-layout", "{}"), file("blobs/../../evil", "pwned")), "escapes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newStoreEnv(t)
			p := writeFile(t, tc.content)
			_, err := Load(context.Background(), e.st, p, Options{})
			t.Logf("load: %v", err)
			if err == nil || !slices.ContainsFunc(strings.Split(tc.want, "|"), func(w string) bool { return strings.Contains(err.Error(), w) }) {
				t.Errorf("Load: %v, want an error mentioning %q", err, tc.want)
			}
			if err != nil && !strings.Contains(err.Error(), p) {
				t.Errorf("Load: %v does not name the archive", err)
			}
			e.wantNoImages(t)
			e.wantTmpEmpty(t)
			wantNothingNamed(t, filepath.Dir(e.parent), "evil")
			if _, err := os.Stat("/evil"); err == nil {
				t.Errorf("/evil was written")
			}
		})
	}
	e := newStoreEnv(t)
	if _, err := Load(context.Background(), e.st, filepath.Join(e.parent, "missing.tar"), Options{}); err == nil {
		t.Errorf("load of a missing file succeeded")
	}
	if _, err := Load(context.Background(), e.st, t.TempDir(), Options{}); err == nil || !strings.Contains(err.Error(), "OCI image layout") {
		t.Errorf("load of an empty directory: %v", err)
	}
	e.wantNoImages(t)
	e.wantTmpEmpty(t)
}

// dockerArchive builds a `docker save` tar by hand: images of one layer
// each, whose configs may lie about their diff IDs.
type dockerImage struct {
	tag    string
	layer  []byte // a plain tar
	diffID string // what the config says; the layer's digest if ""
}

func dockerArchive(t *testing.T, imgs ...dockerImage) string {
	t.Helper()
	var entries []entry
	type manifestEntry struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	var manifest []manifestEntry
	for i, img := range imgs {
		diffID := img.diffID
		if diffID == "" {
			diffID = store.Digest(img.layer)
		}
		cfg, err := json.Marshal(map[string]any{
			"architecture": NodePlatform().Architecture, "os": "linux",
			"config": map[string]any{"Entrypoint": []string{"/bin/" + img.tag}},
			"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}},
		})
		if err != nil {
			t.Fatal(err)
		}
		cfgName := strings.TrimPrefix(store.Digest(cfg), "sha256:") + ".json"
		layerName := strings.Repeat(string(rune('a'+i)), 64) + "/layer.tar"
		entries = append(entries, file(cfgName, string(cfg)), file(layerName, string(img.layer)))
		manifest = append(manifest, manifestEntry{Config: cfgName, RepoTags: []string{img.tag}, Layers: []string{layerName}})
	}
	m, err := json.Marshal(manifest)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, tarOf(t, append(entries, file("manifest.json", string(m)))...))
}

func TestLoadDockerArchiveDiffIDMismatch(t *testing.T) {
	needRoot(t)
	good := tarOf(t, file("good", "good\n"))
	bad := tarOf(t, file("bad", "bad\n"))
	e := newStoreEnv(t)
	// The archive is read in place: the diff IDs in its configs are all
	// that vouches for its layers.
	p := dockerArchive(t, dockerImage{tag: "example.com/bad:1", layer: bad, diffID: store.Digest([]byte("something else"))})
	_, err := Load(context.Background(), e.st, p, Options{})
	if err == nil || !strings.Contains(err.Error(), "diff ID mismatch") {
		t.Errorf("load of a layer that does not match its diff ID: %v", err)
	}
	e.wantNoImages(t)
	e.wantTmpEmpty(t)
	if entries, _ := os.ReadDir(filepath.Join(e.st.Root, "layers")); len(entries) != 0 {
		t.Errorf("layers stored: %v", entries)
	}

	// Two images, the second bad: nothing is listed.
	p = dockerArchive(t,
		dockerImage{tag: "example.com/good:1", layer: good},
		dockerImage{tag: "example.com/bad:1", layer: bad, diffID: store.Digest([]byte("something else"))},
	)
	_, err = Load(context.Background(), e.st, p, Options{})
	if err == nil || !strings.Contains(err.Error(), "diff ID mismatch") {
		t.Errorf("load of an archive with a bad image: %v", err)
	}
	e.wantNoImages(t)
	e.wantTmpEmpty(t)

	// Both good: both listed.
	p = dockerArchive(t,
		dockerImage{tag: "example.com/good:1", layer: good},
		dockerImage{tag: "example.com/bad:1", layer: bad},
	)
	got, err := Load(context.Background(), e.st, p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Errorf("loaded %d images, want 2", len(got))
	}
	e.wantListed(t, "example.com/good:1", "example.com/bad:1")
	if s := readFile(t, filepath.Join(e.st.LayerDiff(store.Digest(bad)), "bad")); s != "bad\n" {
		t.Errorf("bad = %q", s)
	}
}

func TestLoadCanceled(t *testing.T) {
	base, app := twoLayers(t)
	saved := dockerSave(t, imageOf(t, NodePlatform().Architecture, base, app), "app:1")
	e := newStoreEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Load(ctx, e.st, writeFile(t, gzipOf(t, readAll(t, saved))), Options{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("load with a canceled context: %v, want it to wrap context.Canceled", err)
	}
	e.wantNoImages(t)
	e.wantTmpEmpty(t)
}

// truncate is the first half of b, in a slice of its own (b's spare
// capacity must not be read as more archive).
func truncate(b []byte) []byte { return slices.Clone(b[:len(b)/2]) }
