package fetch

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

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

// noDockerConfig points every place go-containerregistry's default keychain
// looks for credentials at empty directories, so that the credentials of
// whoever runs the tests never reach a test registry.
func noDockerConfig(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	dockerConfig := filepath.Join(home, "docker")
	if err := os.Mkdir(dockerConfig, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	t.Setenv("DOCKER_CONFIG", dockerConfig)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, "config"))
	t.Setenv("XDG_RUNTIME_DIR", filepath.Join(home, "run"))
	t.Setenv("REGISTRY_AUTH_FILE", "")
	return dockerConfig
}

// testEnv is a store, and a test registry served twice: direct, for the
// test to push to, and through wrap (when not nil) at host, for the code
// under test to pull from. Both are on 127.0.0.1.
type testEnv struct {
	st     store.Store
	parent string // the directory holding the store, for "nothing outside" checks
	host   string // 127.0.0.1:PORT of the wrapped server
	direct string // 127.0.0.1:PORT of the direct server
}

func newEnv(t *testing.T, wrap func(http.Handler) http.Handler) *testEnv {
	t.Helper()
	noDockerConfig(t)
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	direct := httptest.NewServer(reg)
	t.Cleanup(direct.Close)
	h := reg
	if wrap != nil {
		h = wrap(reg)
	}
	pulled := httptest.NewServer(h)
	t.Cleanup(pulled.Close)
	parent := t.TempDir()
	return &testEnv{
		st:     store.Store{Root: filepath.Join(parent, "store")},
		parent: parent,
		host:   strings.TrimPrefix(pulled.URL, "http://"),
		direct: strings.TrimPrefix(direct.URL, "http://"),
	}
}

// push writes img to repo:tag of the test registry; pull it as e.ref(repoTag).
func (e *testEnv) push(t *testing.T, repoTag string, img v1.Image) {
	t.Helper()
	ref, err := name.ParseReference(e.direct + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

func (e *testEnv) pushIndex(t *testing.T, repoTag string, ix v1.ImageIndex) {
	t.Helper()
	ref, err := name.ParseReference(e.direct + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, ix); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

func (e *testEnv) ref(repoTag string) string { return e.host + "/" + repoTag }

// wantListed checks the store's index: the images' names, in any order.
func (e *testEnv) wantListed(t *testing.T, names ...string) {
	t.Helper()
	images, err := e.st.Images()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, img := range images {
		got = append(got, img.Names...)
	}
	slices.Sort(got)
	names = slices.Clone(names)
	slices.Sort(names)
	if !slices.Equal(got, names) {
		t.Errorf("listed names %q, want %q", got, names)
	}
}

// wantNoImages checks that the store lists no image, named or not.
func (e *testEnv) wantNoImages(t *testing.T) {
	t.Helper()
	images, err := e.st.Images()
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range images {
		t.Errorf("image %s %q listed, want none", img.ID, img.Names)
	}
}

// wantTmpEmpty checks that no work directory was left behind.
func (e *testEnv) wantTmpEmpty(t *testing.T) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(e.st.Root, "tmp"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, d := range entries {
		t.Errorf("tmp/ holds %s", d.Name())
	}
}

// wantNothingNamed checks that no file named base exists under dir (the
// test's whole temporary directory, store included).
func wantNothingNamed(t *testing.T, dir, base string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == base {
			t.Errorf("%s was written", p)
		}
		return nil
	})
}

// entry is one tar entry of a test layer or archive.
type entry struct {
	name     string
	content  string
	typ      byte // tar.TypeReg when zero
	mode     int64
	linkname string
}

func file(name, content string) entry { return entry{name: name, content: content} }

func tarOf(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.linkname, Format: tar.FormatPAX}
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
			if hdr.Typeflag == tar.TypeDir {
				hdr.Mode = 0o755
			}
		}
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(e.content))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := io.WriteString(tw, e.content); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipOf(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testLayer is a gzip'd layer whose blob bytes the test knows.
type testLayer struct {
	v1.Layer
	blob   []byte // what the registry serves
	digest string // of blob
	diffID string // of the tar
}

func layerOf(t testing.TB, entries ...entry) testLayer {
	t.Helper()
	return layerFromTar(t, tarOf(t, entries...))
}

func layerFromTar(t testing.TB, tarb []byte) testLayer {
	t.Helper()
	blob := gzipOf(t, tarb)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(blob)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	tl := testLayer{Layer: l, blob: blob, digest: store.Digest(blob), diffID: store.Digest(tarb)}
	if d, err := l.Digest(); err != nil || d.String() != tl.digest {
		t.Fatalf("layer digest %v, %v; want %s", d, err, tl.digest)
	}
	if d, err := l.DiffID(); err != nil || d.String() != tl.diffID {
		t.Fatalf("layer diff ID %v, %v; want %s", d, err, tl.diffID)
	}
	return tl
}

var testRunConfig = v1.Config{
	Entrypoint:   []string{"/bin/app", "--serve"},
	Cmd:          []string{"--port", "8080"},
	Env:          []string{"PATH=/usr/bin:/bin", "MODE=test"},
	User:         "1000:1000",
	WorkingDir:   "/srv",
	ExposedPorts: map[string]struct{}{"8080/tcp": {}},
}

// imageOf is an OCI image of layers for linux/arch, with testRunConfig.
func imageOf(t testing.TB, arch string, layers ...testLayer) v1.Image {
	t.Helper()
	var ls []v1.Layer
	for _, l := range layers {
		ls = append(ls, l.Layer)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, ls...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Config = testRunConfig
	cf.Config.Labels = map[string]string{"arch": arch}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// indexOf is a multi-platform index of images, each for its config's
// platform.
func indexOf(t testing.TB, imgs ...v1.Image) v1.ImageIndex {
	t.Helper()
	var adds []mutate.IndexAddendum
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: cf.OS, Architecture: cf.Architecture}}})
	}
	return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
}

func imageID(t testing.TB, img v1.Image) string {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// recorder is a Progress that keeps what it heard.
type recorder struct {
	mu       sync.Mutex
	started  map[string]int64 // id -> total
	advanced map[string]int64
	done     map[string]bool // id -> existed
	events   []string
}

func newRecorder() *recorder {
	return &recorder{started: map[string]int64{}, advanced: map[string]int64{}, done: map[string]bool{}}
}

func (r *recorder) Layer(id string, total int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.started[id] = total
	r.events = append(r.events, "start "+id)
}

func (r *recorder) Advance(id string, n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.advanced[id] += n
}

func (r *recorder) LayerDone(id string, existed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.started[id]; !ok {
		r.events = append(r.events, "done before start "+id)
	}
	if _, ok := r.done[id]; ok {
		r.events = append(r.events, "done twice "+id)
	}
	r.done[id] = existed
	r.events = append(r.events, "done "+id)
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Errorf("%v", err)
	}
	return string(b)
}

func readFSFile(fsys fs.FS, name string) (string, error) {
	b, err := fs.ReadFile(fsys, name)
	return string(b), err
}
