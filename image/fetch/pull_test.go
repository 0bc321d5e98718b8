package fetch

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/podbox/podbox/image/store"
)

// twoLayers is a small image's layers: a base and an application layer
// that overrides one of the base's files.
func twoLayers(t *testing.T) (testLayer, testLayer) {
	base := layerOf(t,
		entry{name: "etc/", typ: '5'},
		file("etc/os-release", "ID=podbox-test\n"),
		file("etc/motd", "base\n"),
		entry{name: "bin/", typ: '5'},
		entry{name: "bin/app", content: "#!/bin/sh\necho app\n", mode: 0o755},
	)
	app := layerOf(t,
		entry{name: "srv/", typ: '5'},
		file("srv/index.html", "<h1>hello</h1>\n"),
		file("etc/motd", "app\n"),
	)
	return base, app
}

func TestPull(t *testing.T) {
	needRoot(t)
	e := newEnv(t, nil)
	base, app := twoLayers(t)
	arch := NodePlatform().Architecture
	img := imageOf(t, arch, base, app)
	e.push(t, "team/app:1", img)
	ctx := context.Background()

	rec := newRecorder()
	got, err := Pull(ctx, e.st, e.ref("team/app:1"), Options{Progress: rec})
	if err != nil {
		t.Fatal(err)
	}
	wantName := e.host + "/team/app:1"
	e.wantListed(t, wantName)
	mdigest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != imageID(t, img) || got.Digest != mdigest.String() {
		t.Errorf("pulled ID %s digest %s, want %s %s", got.ID, got.Digest, imageID(t, img), mdigest)
	}
	if !slices.Equal(got.Layers, []string{base.diffID, app.diffID}) {
		t.Errorf("layers %q, want %q", got.Layers, []string{base.diffID, app.diffID})
	}
	if want := "linux/" + arch; got.Platform != want {
		t.Errorf("platform %q, want %q", got.Platform, want)
	}
	if got.Size <= 0 || got.CompressedSize != int64(len(base.blob)+len(app.blob)) {
		t.Errorf("size %d, compressed %d; want > 0 and %d", got.Size, got.CompressedSize, len(base.blob)+len(app.blob))
	}
	if want := int64(len("ID=podbox-test\n") + len("base\n") + len("#!/bin/sh\necho app\n") + len("<h1>hello</h1>\n") + len("app\n")); got.Size != want {
		t.Errorf("size %d, want %d (the files' bytes)", got.Size, want)
	}
	if got.AddedAt.IsZero() {
		t.Errorf("AddedAt not set")
	}

	// What the index says matches what was returned, and resolves.
	listed, err := e.st.Resolve(wantName)
	if err != nil {
		t.Fatal(err)
	}
	if listed.ID != got.ID || listed.Digest != got.Digest || !slices.Equal(listed.Layers, got.Layers) {
		t.Errorf("listed %+v, pulled %+v", listed, got)
	}
	if _, err := e.st.Resolve(e.host + "/team/app@" + got.Digest); err != nil {
		t.Errorf("resolve by name@digest: %v", err)
	}

	// The layers are unpacked, each in its own directory.
	if s := readFile(t, filepath.Join(e.st.LayerDiff(base.diffID), "etc", "os-release")); s != "ID=podbox-test\n" {
		t.Errorf("base layer's etc/os-release = %q", s)
	}
	if s := readFile(t, filepath.Join(e.st.LayerDiff(app.diffID), "srv", "index.html")); s != "<h1>hello</h1>\n" {
		t.Errorf("app layer's srv/index.html = %q", s)
	}
	if fi, err := os.Stat(filepath.Join(e.st.LayerDiff(base.diffID), "bin", "app")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("bin/app: %v, %v", fi, err)
	}
	fsys := e.st.FS(got)
	if b, err := readFSFile(fsys, "etc/motd"); err != nil || b != "app\n" {
		t.Errorf("etc/motd through the image's FS = %q, %v; want the upper layer's", b, err)
	}
	for _, l := range []testLayer{base, app} {
		info, err := e.st.Layer(l.diffID)
		if err != nil {
			t.Fatal(err)
		}
		if info.Digest != l.digest || info.CompressedSize != int64(len(l.blob)) || info.DiffID != l.diffID {
			t.Errorf("layer record %+v, want digest %s, %d bytes", info, l.digest, len(l.blob))
		}
	}

	// The config and the manifest are stored.
	cfg, err := e.st.Config(got)
	if err != nil {
		t.Fatal(err)
	}
	rc := cfg.Config
	if !slices.Equal(rc.Entrypoint, testRunConfig.Entrypoint) || !slices.Equal(rc.Cmd, testRunConfig.Cmd) ||
		!slices.Equal(rc.Env, testRunConfig.Env) || rc.User != "1000:1000" || rc.WorkingDir != "/srv" {
		t.Errorf("config %+v, want %+v", rc, testRunConfig)
	}
	if _, ok := rc.ExposedPorts["8080/tcp"]; !ok || len(rc.ExposedPorts) != 1 {
		t.Errorf("exposed ports %v", rc.ExposedPorts)
	}
	if cfg.OS != "linux" || cfg.Architecture != arch || !slices.Equal(cfg.RootFS.DiffIDs, got.Layers) {
		t.Errorf("config %+v", cfg)
	}
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	if b, err := e.st.ReadBlob(got.Digest); err != nil || string(b) != string(raw) {
		t.Errorf("stored manifest %q, %v", b, err)
	}

	// Progress heard of each layer by its compressed digest, with its size.
	for _, l := range []testLayer{base, app} {
		id := short(l.digest)
		if total, ok := rec.started[id]; !ok || total != int64(len(l.blob)) {
			t.Errorf("progress: layer %s started with total %d (%v), want %d", id, total, ok, len(l.blob))
		}
		if rec.advanced[id] != int64(len(l.blob)) {
			t.Errorf("progress: layer %s advanced %d bytes, want %d", id, rec.advanced[id], len(l.blob))
		}
		if existed, ok := rec.done[id]; !ok || existed {
			t.Errorf("progress: layer %s done=%v existed=%v, want done and not existed", id, ok, existed)
		}
	}
	if len(rec.started) != 2 {
		t.Errorf("progress heard of %d layers, want 2: %q", len(rec.started), rec.events)
	}
	e.wantTmpEmpty(t)

	// A second pull reuses the stored layers.
	rec2 := newRecorder()
	again, err := Pull(ctx, e.st, e.ref("team/app:1"), Options{Progress: rec2})
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != got.ID {
		t.Errorf("second pull: ID %s, want %s", again.ID, got.ID)
	}
	for _, l := range []testLayer{base, app} {
		if existed, ok := rec2.done[short(l.digest)]; !ok || !existed {
			t.Errorf("second pull: layer %s done=%v existed=%v, want it already present", short(l.digest), ok, existed)
		}
		if n := rec2.advanced[short(l.digest)]; n != 0 {
			t.Errorf("second pull: layer %s downloaded %d bytes again", short(l.digest), n)
		}
	}
	if again.Size != got.Size || again.CompressedSize != got.CompressedSize {
		t.Errorf("second pull: sizes %d/%d, first %d/%d", again.Size, again.CompressedSize, got.Size, got.CompressedSize)
	}
	e.wantListed(t, wantName)

	// The same image by another name is one image with two names.
	e.push(t, "team/app:latest", img)
	if _, err := Pull(ctx, e.st, e.ref("team/app"), Options{}); err != nil {
		t.Fatal(err)
	}
	e.wantListed(t, wantName, e.host+"/team/app:latest")
	if images, _ := e.st.Images(); len(images) != 1 {
		t.Errorf("%d images listed, want 1", len(images))
	}
	e.wantTmpEmpty(t)
}

func TestPullMultiPlatform(t *testing.T) {
	needRoot(t)
	e := newEnv(t, nil)
	amdLayer := layerOf(t, file("arch", "amd64\n"))
	armLayer := layerOf(t, file("arch", "arm64\n"))
	amd := imageOf(t, "amd64", amdLayer)
	arm := imageOf(t, "arm64", armLayer)
	e.pushIndex(t, "multi:1", indexOf(t, amd, arm))
	ctx := context.Background()

	// The node's platform by default.
	node := NodePlatform().Architecture
	if node == "amd64" || node == "arm64" {
		got, err := Pull(ctx, e.st, e.ref("multi:1"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		want, wantLayer := amd, amdLayer
		if node == "arm64" {
			want, wantLayer = arm, armLayer
		}
		if got.ID != imageID(t, want) || got.Platform != "linux/"+node {
			t.Errorf("default pull: %s %s, want %s linux/%s", got.ID, got.Platform, imageID(t, want), node)
		}
		if s := readFile(t, filepath.Join(e.st.LayerDiff(wantLayer.diffID), "arch")); s != node+"\n" {
			t.Errorf("default pull unpacked %q", s)
		}
	}

	// A chosen platform.
	got, err := Pull(ctx, e.st, e.ref("multi:1"), Options{Platform: v1.Platform{OS: "linux", Architecture: "arm64"}})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != imageID(t, arm) || got.Platform != "linux/arm64" {
		t.Errorf("arm64 pull: %s %s, want %s linux/arm64", got.ID, got.Platform, imageID(t, arm))
	}
	if s := readFile(t, filepath.Join(e.st.LayerDiff(armLayer.diffID), "arch")); s != "arm64\n" {
		t.Errorf("arm64 pull unpacked %q", s)
	}
	// The name now means the arm64 image.
	if r, err := e.st.Resolve(e.ref("multi:1")); err != nil || r.ID != imageID(t, arm) {
		t.Errorf("resolve after the arm64 pull: %v, %v", r, err)
	}

	// No image for the platform: an error that names it, nothing listed.
	e2 := newEnv(t, nil)
	e2.pushIndex(t, "armonly:1", indexOf(t, arm))
	e2.push(t, "armsingle:1", arm)
	amd64 := v1.Platform{OS: "linux", Architecture: "amd64"}
	for _, ref := range []string{"armonly:1", "armsingle:1"} {
		_, err := Pull(ctx, e2.st, e2.ref(ref), Options{Platform: amd64})
		t.Logf("pull of %s for linux/amd64: %v", ref, err)
		if err == nil || !strings.Contains(err.Error(), "linux/amd64") {
			t.Errorf("pull of %s for linux/amd64: %v, want an error naming the platform", ref, err)
		}
		if node == "amd64" {
			_, err := Pull(ctx, e2.st, e2.ref(ref), Options{})
			if err == nil || !strings.Contains(err.Error(), "linux/amd64") {
				t.Errorf("default pull of %s: %v, want an error naming the platform", ref, err)
			}
		}
	}
	e2.wantNoImages(t)
	if e2.st.HasLayer(armLayer.diffID) {
		t.Errorf("the arm64 layer was stored by a pull for amd64")
	}
	e2.wantTmpEmpty(t)
}

// corruptBlob serves digest's blob changed by corrupt, same length.
func corruptBlob(digest string, corrupt func([]byte)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+digest) {
				next.ServeHTTP(w, r)
				return
			}
			rec := &captureWriter{header: http.Header{}}
			next.ServeHTTP(rec, r)
			corrupt(rec.body)
			w.Header().Set("Content-Length", strconv.Itoa(len(rec.body)))
			w.WriteHeader(rec.code)
			w.Write(rec.body)
		})
	}
}

type captureWriter struct {
	header http.Header
	code   int
	body   []byte
}

func (c *captureWriter) Header() http.Header { return c.header }
func (c *captureWriter) Write(b []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	c.body = append(c.body, b...)
	return len(b), nil
}
func (c *captureWriter) WriteHeader(code int) { c.code = code }

func TestPullDigestMismatch(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name    string
		corrupt func([]byte)
		want    string
	}{
		// Compressed data that no longer decompresses.
		{"deflate data", func(b []byte) {
			for i := len(b) / 3; i < len(b)/3+16 && i < len(b); i++ {
				b[i] ^= 0x5a
			}
		}, ""},
		// The gzip header's MTIME: the blob still decompresses to the
		// same tar, and only its digest tells.
		{"gzip header", func(b []byte) { b[4] ^= 0xff }, "sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, app := twoLayers(t)
			e := newEnv(t, corruptBlob(app.digest, tc.corrupt))
			e.push(t, "app:1", imageOf(t, NodePlatform().Architecture, base, app))
			_, err := Pull(context.Background(), e.st, e.ref("app:1"), Options{})
			if err == nil {
				t.Fatal("pull of a corrupted layer succeeded")
			}
			t.Logf("pull of a corrupted layer: %v", err)
			if !strings.Contains(err.Error(), "layer "+short(app.digest)) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name the layer %s (and %q)", err, short(app.digest), tc.want)
			}
			e.wantNoImages(t)
			if e.st.HasLayer(app.diffID) {
				t.Errorf("the corrupted layer was committed")
			}
			if _, err := os.Stat(e.st.LayerDiff(app.diffID)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the corrupted layer's directory exists: %v", err)
			}
			e.wantTmpEmpty(t)
		})
	}
}

func basicAuth(user, pass string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func TestPullAuth(t *testing.T) {
	needRoot(t)
	e := newEnv(t, basicAuth("alice", "s3cret"))
	base, _ := twoLayers(t)
	e.push(t, "private/app:1", imageOf(t, NodePlatform().Architecture, base))
	ctx := context.Background()

	for _, o := range []Options{{}, {Username: "alice", Password: "wrong"}, {Username: "bob", Password: "s3cret"}} {
		_, err := Pull(ctx, e.st, e.ref("private/app:1"), o)
		t.Logf("pull as %q: %v", o.Username, err)
		if err == nil {
			t.Fatalf("pull as %q succeeded without the right credentials", o.Username)
		}
		if !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "credentials") {
			t.Errorf("pull as %q: %v, want it to say 401 and credentials", o.Username, err)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
	e.wantNoImages(t)
	e.wantTmpEmpty(t)

	if _, err := Pull(ctx, e.st, e.ref("private/app:1"), Options{Username: "alice", Password: "s3cret"}); err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
	e.wantListed(t, e.ref("private/app:1"))
}

func TestPullAuthDockerConfig(t *testing.T) {
	needRoot(t)
	e := newEnv(t, basicAuth("alice", "s3cret"))
	base, _ := twoLayers(t)
	e.push(t, "private/app:1", imageOf(t, NodePlatform().Architecture, base))
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, e.host, auth)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
	if _, err := Pull(context.Background(), e.st, e.ref("private/app:1"), Options{}); err != nil {
		t.Fatalf("pull with credentials from $DOCKER_CONFIG: %v", err)
	}
	e.wantListed(t, e.ref("private/app:1"))
	// --creds win over the config file.
	_, err := Pull(context.Background(), e.st, e.ref("private/app:1"), Options{Username: "alice", Password: "wrong"})
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("pull with wrong --creds and a good config file: %v", err)
	}
}

func TestPullNotFoundAndDenied(t *testing.T) {
	e := newEnv(t, nil)
	base, _ := twoLayers(t)
	e.push(t, "app:1", imageOf(t, NodePlatform().Architecture, base))
	ctx := context.Background()
	for _, ref := range []string{"nope:1", "app:2", "app@sha256:" + strings.Repeat("ab", 32)} {
		_, err := Pull(ctx, e.st, e.ref(ref), Options{})
		t.Logf("pull of %s: %v", ref, err)
		if err == nil || !strings.Contains(err.Error(), "not found") {
			t.Errorf("pull of %s: %v, want not found", ref, err)
		}
		if err != nil && !strings.Contains(err.Error(), e.ref(ref)) {
			t.Errorf("pull of %s: %v does not name the ref", ref, err)
		}
	}
	e.wantNoImages(t)

	denied := newEnv(t, func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}`))
		})
	})
	_, err := Pull(ctx, denied.st, denied.ref("app:1"), Options{})
	t.Logf("pull from a registry that denies: %v", err)
	if err == nil || !strings.Contains(err.Error(), "denied") || !strings.Contains(err.Error(), "403") {
		t.Errorf("pull from a registry that denies: %v, want denied (403)", err)
	}
	denied.wantNoImages(t)

	for _, ref := range []string{"", "UPPER/x", e.host + "/a//b"} {
		if _, err := Pull(ctx, e.st, ref, Options{}); err == nil || !strings.Contains(err.Error(), "image reference") {
			t.Errorf("pull of %q: %v, want a reference error", ref, err)
		}
	}
}

// blockingBlob serves the first half of digest's blob, then waits for the
// request to end, while block is set.
type blockingBlob struct {
	digest   string
	block    atomic.Bool
	halfSent chan struct{}
	once     sync.Once
}

func (b *blockingBlob) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+b.digest) || !b.block.Load() {
			next.ServeHTTP(w, r)
			return
		}
		rec := &captureWriter{header: http.Header{}}
		next.ServeHTTP(rec, r)
		w.Header().Set("Content-Length", strconv.Itoa(len(rec.body)))
		w.WriteHeader(http.StatusOK)
		w.Write(rec.body[:len(rec.body)/2])
		w.(http.Flusher).Flush()
		b.once.Do(func() { close(b.halfSent) })
		<-r.Context().Done()
	})
}

func TestPullCancel(t *testing.T) {
	needRoot(t)
	// 8 MB that gzip cannot shrink.
	big := make([]byte, 8<<20)
	rand.Read(big)
	bigLayer := layerOf(t, entry{name: "big", content: string(big)})
	small := layerOf(t, file("small", "small\n"))
	bb := &blockingBlob{digest: bigLayer.digest, halfSent: make(chan struct{})}
	bb.block.Store(true)
	e := newEnv(t, bb.wrap)
	e.push(t, "big:1", imageOf(t, NodePlatform().Architecture, small, bigLayer))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := Pull(ctx, e.st, e.ref("big:1"), Options{})
		errc <- err
	}()
	select {
	case <-bb.halfSent:
	case err := <-errc:
		t.Fatalf("pull ended before half the layer was sent: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("half the layer was not sent in 20s")
	}
	cancel()
	var err error
	select {
	case err = <-errc:
	case <-time.After(20 * time.Second):
		t.Fatal("pull did not end 20s after its context was canceled")
	}
	t.Logf("canceled pull: %v", err)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("canceled pull: %v, want it to wrap context.Canceled", err)
	}
	e.wantNoImages(t)
	if e.st.HasLayer(bigLayer.diffID) {
		t.Errorf("the half-fetched layer was committed")
	}
	e.wantTmpEmpty(t)

	bb.block.Store(false)
	got, err := Pull(context.Background(), e.st, e.ref("big:1"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.wantListed(t, e.ref("big:1"))
	if fi, err := os.Stat(filepath.Join(e.st.LayerDiff(bigLayer.diffID), "big")); err != nil || fi.Size() != int64(len(big)) {
		t.Errorf("big file after the second pull: %v, %v", fi, err)
	}
	if got.Size != int64(len(big))+int64(len("small\n")) {
		t.Errorf("size %d", got.Size)
	}
	e.wantTmpEmpty(t)
}

func TestPullHostileLayer(t *testing.T) {
	needRoot(t)
	e := newEnv(t, nil)
	ok := layerOf(t, file("fine", "fine\n"))
	evil := layerOf(t, file("etc/x", "x"), file("../../evil", "pwned\n"))
	e.push(t, "evil:1", imageOf(t, NodePlatform().Architecture, ok, evil))
	_, err := Pull(context.Background(), e.st, e.ref("evil:1"), Options{})
	t.Logf("pull of a hostile layer: %v", err)
	if err == nil || !strings.Contains(err.Error(), `"../../evil"`) {
		t.Errorf("pull of a layer with ../../evil: %v, want an error naming the entry", err)
	}
	e.wantNoImages(t)
	if e.st.HasLayer(evil.diffID) {
		t.Errorf("the hostile layer was committed")
	}
	wantNothingNamed(t, filepath.Dir(e.parent), "evil")
	e.wantTmpEmpty(t)
}

func TestPlainHTTPGuard(t *testing.T) {
	next := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusTeapot, Body: http.NoBody, Request: r}, nil
	})
	for _, tc := range []struct {
		url      string
		insecure bool
		allowed  bool
	}{
		{"http://127.0.0.1:5000/v2/", false, true},
		{"http://[::1]:5000/v2/", false, true},
		{"http://localhost:5000/v2/", false, true},
		{"http://127.1.2.3/v2/", false, true},
		{"https://10.0.0.1/v2/", false, true},
		{"http://10.0.0.1:5000/v2/", false, false},
		{"http://192.168.1.1/v2/", false, false},
		{"http://registry.example.com/v2/", false, false},
		{"http://localhost.example.com/v2/", false, false},
		{"http://10.0.0.1:5000/v2/", true, true},
	} {
		req, err := http.NewRequest(http.MethodGet, tc.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := plainHTTPGuard{next: next, insecure: tc.insecure}.RoundTrip(req)
		if tc.allowed {
			if err != nil || resp.StatusCode != http.StatusTeapot {
				t.Errorf("%s (insecure=%v): %v, want it passed on", tc.url, tc.insecure, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), "--insecure") {
			t.Errorf("%s: %v, want refused with a hint at --insecure", tc.url, err)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A registry answering in plain HTTP on a non-loopback address is refused
// before a byte is sent: the transport below the guard never sees it.
func TestPullPlainHTTPRefused(t *testing.T) {
	noDockerConfig(t)
	var sent atomic.Int32
	tr := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Scheme == "http" {
			sent.Add(1)
		}
		return nil, errors.New("no network in tests")
	})
	st := store.Store{Root: t.TempDir()}
	_, err := Pull(context.Background(), st, "10.0.0.1:5000/app:1", Options{Transport: tr})
	t.Logf("pull from 10.0.0.1:5000: %v", err)
	if err == nil || !strings.Contains(err.Error(), "--insecure") {
		t.Errorf("pull from a plain-HTTP private registry: %v", err)
	}
	if n := sent.Load(); n != 0 {
		t.Errorf("%d requests went out in plain HTTP", n)
	}
}

func TestParsePlatform(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want v1.Platform
	}{
		{"linux/amd64", v1.Platform{OS: "linux", Architecture: "amd64"}},
		{"linux/arm64/v8", v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}},
		{"linux/arm/v7", v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}},
	} {
		got, err := ParsePlatform(tc.in)
		if err != nil || got.String() != tc.want.String() || got.Variant != tc.want.Variant {
			t.Errorf("ParsePlatform(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "linux", "linux/", "/amd64", "linux/arm/v7/x"} {
		if _, err := ParsePlatform(in); err == nil {
			t.Errorf("ParsePlatform(%q) succeeded", in)
		}
	}
	if p := NodePlatform(); p.OS != "linux" || p.Architecture != runtime.GOARCH {
		t.Errorf("NodePlatform() = %+v", p)
	}
}

func TestPlatformMatches(t *testing.T) {
	p := func(os, arch, variant string) v1.Platform {
		return v1.Platform{OS: os, Architecture: arch, Variant: variant}
	}
	for _, tc := range []struct {
		cf   v1.ConfigFile
		p    v1.Platform
		want bool
	}{
		{v1.ConfigFile{OS: "linux", Architecture: "amd64"}, p("linux", "amd64", ""), true},
		{v1.ConfigFile{OS: "linux", Architecture: "arm64"}, p("linux", "amd64", ""), false},
		{v1.ConfigFile{OS: "windows", Architecture: "amd64"}, p("linux", "amd64", ""), false},
		{v1.ConfigFile{}, p("linux", "amd64", ""), true},
		{v1.ConfigFile{OS: "linux", Architecture: "arm", Variant: "v7"}, p("linux", "arm", "v7"), true},
		{v1.ConfigFile{OS: "linux", Architecture: "arm", Variant: "v6"}, p("linux", "arm", "v7"), false},
		{v1.ConfigFile{OS: "linux", Architecture: "arm", Variant: "v7"}, p("linux", "arm", ""), true},
		{v1.ConfigFile{OS: "linux", Architecture: "arm"}, p("linux", "arm", "v7"), true},
	} {
		if got := platformMatches(&tc.cf, tc.p); got != tc.want {
			t.Errorf("platformMatches(%s/%s/%s, %+v) = %v", tc.cf.OS, tc.cf.Architecture, tc.cf.Variant, tc.p, got)
		}
	}
}

// Layers compressed with zstd and not compressed at all pull as gzip'd
// ones do.
func TestPullLayerFormats(t *testing.T) {
	needRoot(t)
	e := newEnv(t, nil)
	gz := layerOf(t, file("gz", "gzip\n"))
	zsTar := tarOf(t, file("zs", "zstd\n"))
	zsBlob := zstdOf(t, zsTar)
	zs, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(zsBlob)), nil },
		tarball.WithMediaType(types.OCILayerZStd))
	if err != nil {
		t.Fatal(err)
	}
	plainTar := tarOf(t, file("plain", "plain\n"))
	plain := static.NewLayer(plainTar, types.OCIUncompressedLayer)
	img, err := mutate.AppendLayers(imageOf(t, NodePlatform().Architecture, gz), zs, plain)
	if err != nil {
		t.Fatal(err)
	}
	e.push(t, "formats:1", img)
	got, err := Pull(context.Background(), e.st, e.ref("formats:1"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{gz.diffID, store.Digest(zsTar), store.Digest(plainTar)}; !slices.Equal(got.Layers, want) {
		t.Errorf("layers %q, want %q", got.Layers, want)
	}
	for name, content := range map[string]string{"gz": "gzip\n", "zs": "zstd\n", "plain": "plain\n"} {
		if s, err := readFSFile(e.st.FS(got), name); err != nil || s != content {
			t.Errorf("%s = %q, %v", name, s, err)
		}
	}
	e.wantTmpEmpty(t)
}

func TestPullByDigest(t *testing.T) {
	needRoot(t)
	e := newEnv(t, nil)
	base, app := twoLayers(t)
	img := imageOf(t, NodePlatform().Architecture, base, app)
	e.push(t, "app:1", img)
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, ref := range []string{"app@" + d.String(), "app:1@" + d.String()} {
		got, err := Pull(ctx, e.st, e.ref(ref), Options{})
		if err != nil {
			t.Fatalf("pull %s: %v", ref, err)
		}
		if got.ID != imageID(t, img) || got.Digest != d.String() {
			t.Errorf("pull %s: %s %s", ref, got.ID, got.Digest)
		}
	}
	e.wantListed(t, e.ref("app@"+d.String()), e.ref("app:1@"+d.String()))
	if r, err := e.st.Resolve(d.String()); err != nil || r.ID != imageID(t, img) {
		t.Errorf("resolve by digest: %v, %v", r, err)
	}
}

// Pulls at once, of different images and of the same one, sharing a base
// layer: each finishes whole, and each layer is stored once.
func TestPullConcurrent(t *testing.T) {
	needRoot(t)
	e := newEnv(t, nil)
	base, _ := twoLayers(t)
	var refs []string
	for i := range 4 {
		own := layerOf(t, file(fmt.Sprintf("own%d", i), strings.Repeat("x", i+1)))
		ref := fmt.Sprintf("app%d:1", i)
		e.push(t, ref, imageOf(t, NodePlatform().Architecture, base, own, own))
		refs = append(refs, ref, ref)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(refs))
	for i, ref := range refs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = Pull(context.Background(), e.st, e.ref(ref), Options{})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("pull %s: %v", refs[i], err)
		}
	}
	e.wantListed(t, e.ref("app0:1"), e.ref("app1:1"), e.ref("app2:1"), e.ref("app3:1"))
	if entries, err := os.ReadDir(filepath.Join(e.st.Root, "layers")); err != nil || len(entries) != 5 {
		t.Errorf("layers/ holds %d layers (%v), want 5", len(entries), err)
	}
	for i := range 4 {
		img, err := e.st.Resolve(e.ref(fmt.Sprintf("app%d:1", i)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.st.LowerDirs(img); err != nil {
			t.Errorf("%v", err)
		}
	}
	e.wantTmpEmpty(t)
}
