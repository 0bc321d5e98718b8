package integration

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/podbox/podbox/integration/rootfs"
	"github.com/podbox/podbox/integration/testnode"
)

// testRegistry is an OCI distribution registry (go-containerregistry's
// in-process one) listening on the loopback of a test node, where the
// podbox CLI running in the node reaches it as 127.0.0.1:PORT. The test
// pushes to it without the network, through its handler.
type testRegistry struct {
	host    string // 127.0.0.1:PORT, in the node
	handler http.Handler
	// wrap, when set, stands in front of the registry for the CLI's
	// requests (auth, faults).
	wrap atomic.Pointer[func(http.ResponseWriter, *http.Request, http.Handler)]
}

func newTestRegistry(t *testing.T, n *cliNode) *testRegistry {
	t.Helper()
	r := &testRegistry{handler: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	var ln net.Listener
	if err := n.node.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatalf("registry: listen in the node: %v", err)
	}
	r.host = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if f := r.wrap.Load(); f != nil {
			(*f)(w, req, r.handler)
			return
		}
		r.handler.ServeHTTP(w, req)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r
}

// setWrap puts f in front of the registry; nil removes it.
func (r *testRegistry) setWrap(f func(http.ResponseWriter, *http.Request, http.Handler)) {
	if f == nil {
		r.wrap.Store(nil)
		return
	}
	r.wrap.Store(&f)
}

// handlerTransport serves requests with a handler, in process.
type handlerTransport struct{ h http.Handler }

func (h handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	if req.Body == nil {
		req.Body = http.NoBody
	}
	h.h.ServeHTTP(rec, req)
	resp := rec.Result()
	resp.Request = req // the pusher reads upload locations relative to it
	return resp, nil
}

// push stores img in the registry as repo:tag and returns the reference the
// CLI pulls.
func (r *testRegistry) push(t *testing.T, repoTag string, img v1.Image) string {
	t.Helper()
	ref := r.host + "/" + repoTag
	nref, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(nref, img, remote.WithTransport(handlerTransport{r.handler})); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return ref
}

// tarEntry is one entry of a test layer.
type tarEntry struct {
	name, body, link string
	mode             int64
	typ              byte
}

func layerOf(t *testing.T, entries ...tarEntry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Typeflag: e.typ, Linkname: e.link, ModTime: time.Unix(0, 0)}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			io.WriteString(tw, e.body)
		}
	}
	tw.Close()
	return layerFromTar(t, buf.Bytes())
}

// layerFromTar is a layer of the tar b, gzip'd as a registry serves it.
func layerFromTar(t *testing.T, b []byte) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// busyboxLayer is the busybox root filesystem of the other integration
// tests as one layer.
func busyboxLayer(t *testing.T) v1.Layer {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "rootfs")
	if err := rootfs.BuildBusybox(dir, "from the base layer\n"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name, h.Uid, h.Gid, h.Uname, h.Gname = rel, 0, 0, "", ""
		if fi.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tw.Close()
	return layerFromTar(t, buf.Bytes())
}

// appImage is busybox plus a layer that adds a user, a file and a
// whiteout of the base layer's /www/index.html, with a config that sets
// every field run applies.
func appImage(t *testing.T) v1.Image {
	t.Helper()
	app := layerOf(t,
		tarEntry{name: "etc/passwd", body: "root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234:app:/app:/bin/sh\n"},
		tarEntry{name: "etc/group", body: "root:x:0:\napp:x:1234:\nstaff:x:50:app\n"},
		tarEntry{name: "app/", typ: tar.TypeDir, mode: 0o777},
		tarEntry{name: "app/hello.txt", body: "hello from the app layer\n"},
		tarEntry{name: "www/.wh.index.html"},
	)
	img, err := mutate.AppendLayers(empty.Image, busyboxLayer(t), app)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Entrypoint = []string{"/bin/sh", "-c"}
	cf.Config.Cmd = []string{"echo from-image $GREETING; cat hello.txt"}
	cf.Config.Env = []string{"PATH=/bin", "GREETING=hi"}
	cf.Config.WorkingDir = "/app"
	cf.Config.User = "app"
	cf.Config.ExposedPorts = map[string]struct{}{"8080/tcp": {}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

type listedImage struct {
	ID     string   `json:"id"`
	Digest string   `json:"digest"`
	Names  []string `json:"names"`
	Layers []string `json:"layers"`
	Size   int64    `json:"size"`
}

func (n *cliNode) images() []listedImage {
	n.t.Helper()
	var out []listedImage
	if err := json.Unmarshal([]byte(n.mustRun("image", "ls", "-o", "json")), &out); err != nil {
		n.t.Fatal(err)
	}
	return out
}

// pruneAll removes every image and fails t unless the store is empty
// afterwards.
func (n *cliNode) pruneAll(what string) {
	n.t.Helper()
	n.mustRun("image", "prune", "-a")
	n.assertStoreEmpty(what)
}

// assertStoreEmpty fails t if the image store has anything but its index
// and locks: no layers, documents or work directories.
func (n *cliNode) assertStoreEmpty(what string) {
	n.t.Helper()
	for _, d := range []string{"layers", "blobs/sha256", "tmp"} {
		entries, _ := os.ReadDir(filepath.Join(n.root, "images", d))
		if len(entries) > 0 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			n.t.Errorf("%s: images/%s holds %q", what, d, names)
		}
	}
}

func TestImagePullRun(t *testing.T) {
	n := newCLINode(t)
	reg := newTestRegistry(t, n)
	ref := reg.push(t, "team/app:1", appImage(t))

	id := strings.TrimSpace(n.mustRun("image", "pull", ref))
	imgs := n.images()
	if len(imgs) != 1 || imgs[0].ID != id || !slices.Equal(imgs[0].Names, []string{ref}) || len(imgs[0].Layers) != 2 || imgs[0].Size <= 0 {
		t.Fatalf("image ls after pull of %s (ID %s): %+v", ref, id, imgs)
	}
	var inspect []map[string]any
	if err := json.Unmarshal([]byte(n.mustRun("image", "inspect", ref)), &inspect); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fmt.Sprint(inspect[0]["config"]), "8080/tcp") {
		t.Errorf("image inspect shows no exposed port: %v", inspect[0]["config"])
	}

	n.mustRun("sandbox", "create", "--name", "pod")
	defer n.run("sandbox", "rm", "-f", "pod")
	run := func(args ...string) string {
		t.Helper()
		return n.mustRun(append([]string{"run", "--rm", "--sandbox", "pod", "--image", ref}, args...)...)
	}
	// The image's Entrypoint, Cmd, Env and WorkingDir.
	if out := run(); out != "from-image hi\nhello from the app layer\n" {
		t.Errorf("image's own command printed %q", out)
	}
	// CMD after -- replaces Cmd, -e overrides Env, --entrypoint replaces both.
	if out := run("-e", "GREETING=yo", "--", "echo $GREETING; pwd"); out != "yo\n/app\n" {
		t.Errorf("with -e and a CMD: %q", out)
	}
	if out := run("--entrypoint", "/bin/echo", "--", "just", "this"); out != "just this\n" {
		t.Errorf("with --entrypoint: %q", out)
	}
	// User "app" from the image's /etc/passwd, its groups from /etc/group.
	if out := run("--entrypoint", "/bin/id"); !strings.Contains(out, "uid=1234") || !strings.Contains(out, "gid=1234") || !strings.Contains(out, "50") {
		t.Errorf("id in the container: %q, want uid 1234 gid 1234 and group 50", out)
	}
	if out := run("-u", "root", "--entrypoint", "/bin/id", "--", "-u"); out != "0\n" {
		t.Errorf("-u root: %q", out)
	}
	// The whiteout in the upper layer hides the base layer's file.
	if out := run("--", "ls /www; echo end"); out != "end\n" {
		t.Errorf("/www holds %q, want nothing: the whiteout did not apply", out)
	}

	// Two containers of one image: each writes its own layer.
	n.mustRun("run", "-d", "--sandbox", "pod", "--name", "one", "--image", ref, "--", "echo one > /app/mine; sleep 1000")
	n.mustRun("run", "-d", "--sandbox", "pod", "--name", "two", "--image", ref, "--", "sleep 1000")
	waitFor(t, func() bool { c, _, _ := n.run("exec", "one", "--", "cat", "/app/mine"); return c == 0 })
	if code, out, _ := n.run("exec", "two", "--", "cat", "/app/mine"); code == 0 {
		t.Errorf("container two sees container one's write: %q", out)
	}
	if layers, _ := os.ReadDir(filepath.Join(n.root, "images", "layers")); len(layers) != 2 {
		t.Errorf("%d layer directories for one 2-layer image used by two containers", len(layers))
	}
	// An image in use is not removed.
	code, _, stderr := n.run("image", "rm", ref)
	assertOneLineError(t, code, stderr, "in use by container")
	if len(n.images()) != 1 {
		t.Error("a refused image rm changed the image list")
	}
	n.mustRun("rm", "-f", "one", "two")
	if out := n.mustRun("image", "rm", ref); !strings.Contains(out, "Deleted: "+id) {
		t.Errorf("image rm printed %q", out)
	}
	n.pruneAll("after rm and prune")
}

// TestImageWritableLayerGoesWithShimKill kills the shim while a container
// of an image runs: removing the sandbox must unmount the container's
// overlay and delete its writable layer all the same.
func TestImageWritableLayerGoesWithShimKill(t *testing.T) {
	n := newCLINode(t)
	reg := newTestRegistry(t, n)
	ref := reg.push(t, "team/app:1", appImage(t))
	n.mustRun("sandbox", "create", "--name", "pod")
	n.mustRun("run", "-d", "--sandbox", "pod", "--name", "c", "--image", ref, "--", "sleep 1000")
	sb := n.inspect("pod")
	if err := syscall.Kill(int(sb["shimPid"].(float64)), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	n.mustRun("sandbox", "rm", "-f", "pod")
	n.pruneAll("after the sandbox of a killed shim was removed")
}

func TestImageAuth(t *testing.T) {
	n := newCLINode(t)
	reg := newTestRegistry(t, n)
	ref := reg.push(t, "private/app:1", appImage(t))
	reg.setWrap(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if u, p, ok := r.BasicAuth(); !ok || u != "me" || p != "secret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
	code, out, stderr := n.run("image", "pull", "-q", ref)
	assertOneLineError(t, code, stderr, ref, "401")
	if out != "" || len(n.images()) != 0 {
		t.Errorf("a refused pull printed %q or listed an image", out)
	}
	code, _, stderr = n.run("image", "pull", "-q", "--creds", "me:wrong", ref)
	assertOneLineError(t, code, stderr, "401")
	n.mustRun("image", "pull", "-q", "--creds", "me:secret", ref)
	if imgs := n.images(); len(imgs) != 1 {
		t.Errorf("after a pull with credentials: %+v", imgs)
	}
	n.pruneAll("after prune")
}

func TestImageBadContentRefused(t *testing.T) {
	n := newCLINode(t)
	reg := newTestRegistry(t, n)

	// A layer that writes outside its directory.
	evil, err := mutate.AppendLayers(empty.Image, layerOf(t, tarEntry{name: "../../../../tmp/podbox-evil", body: "x"}))
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.push(t, "evil/traversal:1", evil)
	code, _, stderr := n.run("image", "pull", "-q", ref)
	assertOneLineError(t, code, stderr, ref, "path escapes the layer")
	if _, err := os.Stat("/tmp/podbox-evil"); err == nil {
		t.Error("the hostile layer wrote /tmp/podbox-evil")
	}

	// A blob whose bytes do not match its digest.
	ref = reg.push(t, "good/app:1", appImage(t))
	reg.setWrap(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if len(body) > 1000 { // a layer, not the config
			body[len(body)/2] ^= 0xff
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(body)
	})
	code, _, stderr = n.run("image", "pull", "-q", ref)
	assertOneLineError(t, code, stderr, ref)
	if len(n.images()) != 0 {
		t.Error("an image with a corrupted blob is listed")
	}
	// run --image says why too, and builds nothing.
	n.mustRun("sandbox", "create", "--name", "pod")
	defer n.run("sandbox", "rm", "-f", "pod")
	code, _, stderr = n.run("run", "--rm", "--sandbox", "pod", "--image", ref)
	if code == 0 || !strings.Contains(stderr, ref) {
		t.Errorf("run of a corrupted image: exit %d, %q", code, stderr)
	}
	if ps := n.mustRun("ps", "-aq"); ps != "" {
		t.Errorf("a failed run left containers: %q", ps)
	}
	reg.setWrap(nil)
	n.pruneAll("after the refused pulls")
}

// TestImagePullInterrupted stops a pull in the middle of a layer, with ^C
// and with SIGKILL: nothing is listed, and the next pull succeeds and
// leaves no leftovers.
func TestImagePullInterrupted(t *testing.T) {
	n := newCLINode(t)
	reg := newTestRegistry(t, n)
	ref := reg.push(t, "team/app:1", appImage(t))
	served := make(chan struct{}, 16)
	reg.setWrap(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if len(body) < 100000 {
			w.Write(body)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(http.StatusOK)
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		served <- struct{}{}
		<-r.Context().Done() // the rest never comes
	})
	for _, sig := range []os.Signal{os.Interrupt, os.Kill} {
		cmd := n.node.Command(t.Context(), n.podbox, "image", "pull", ref)
		cmd.Env = n.env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-served:
		case <-time.After(30 * time.Second):
			t.Fatal("the pull never reached the big layer")
		}
		time.Sleep(100 * time.Millisecond)
		// podbox execs podbox-image for a pull, so the signal reaches it
		// as ^C on a terminal would.
		cmd.Process.Signal(sig)
		err := cmd.Wait()
		if err == nil {
			t.Fatalf("%v: the pull succeeded", sig)
		}
		if len(n.images()) != 0 {
			t.Fatalf("%v: a half-pulled image is listed", sig)
		}
		if sig == os.Interrupt && !strings.Contains(stderr.String(), "interrupt") {
			t.Errorf("^C: stderr %q", stderr.String())
		}
	}
	reg.setWrap(nil)
	id := strings.TrimSpace(n.mustRun("image", "pull", "-q", ref))
	if imgs := n.images(); len(imgs) != 1 || imgs[0].ID != id {
		t.Errorf("pull after the interrupted ones: %+v", imgs)
	}
	if entries, _ := os.ReadDir(filepath.Join(n.root, "images", "tmp")); len(entries) != 0 {
		t.Errorf("leftovers of the killed pull remain after the next pull: %d", len(entries))
	}
	n.pruneAll("after prune")
}

func TestImageLoadArchives(t *testing.T) {
	n := newCLINode(t)
	img := appImage(t)
	dir := t.TempDir()
	tag, err := name.NewTag("example.com/team/app:saved")
	if err != nil {
		t.Fatal(err)
	}
	saved := filepath.Join(dir, "saved.tar")
	if err := tarball.WriteToFile(saved, tag, img); err != nil {
		t.Fatal(err)
	}
	out := n.mustRun("image", "load", "-q", "-i", saved)
	id, _ := img.ConfigName()
	if strings.TrimSpace(out) != id.String() {
		t.Errorf("load printed %q, want %s", out, id)
	}
	n.mustRun("sandbox", "create", "--name", "pod")
	defer n.run("sandbox", "rm", "-f", "pod")
	if out := n.mustRun("run", "--rm", "--pull", "never", "--sandbox", "pod", "--image", "example.com/team/app:saved"); out != "from-image hi\nhello from the app layer\n" {
		t.Errorf("run of the loaded image printed %q", out)
	}

	// The pause image archive podbox writes is an OCI layout in a tar.
	pauseTar := filepath.Join(dir, "pause.tar")
	n.mustRun("pause-image", "-o", pauseTar, "--ref", "example.com/podbox/pause:test", "--pause", testnode.Binary(t, "podbox-pause"))
	n.mustRun("image", "load", "-q", "-i", pauseTar)
	names := map[string]bool{}
	for _, i := range n.images() {
		for _, nm := range i.Names {
			names[nm] = true
		}
	}
	if !names["example.com/podbox/pause:test"] || !names["example.com/team/app:saved"] {
		t.Errorf("after loading both archives: %v", names)
	}

	// Not an archive at all, and a truncated one.
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, bytes.Repeat([]byte("not a tar "), 100), 0o644)
	code, _, stderr := n.run("image", "load", "-i", junk)
	assertOneLineError(t, code, stderr, junk, "not a tar archive")
	b, _ := os.ReadFile(saved)
	cut := filepath.Join(dir, "cut.tar")
	os.WriteFile(cut, b[:len(b)/2], 0o644)
	before := len(n.images())
	code, _, stderr = n.run("image", "load", "-i", cut)
	assertOneLineError(t, code, stderr, cut)
	if len(n.images()) != before {
		t.Error("a truncated archive changed the image list")
	}
	n.mustRun("image", "rm", "example.com/team/app:saved", "example.com/podbox/pause:test")
	n.mustRun("image", "prune")
	n.assertStoreEmpty("after rm and prune")
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// assertOneLineError checks a failed podbox command: a non-zero exit and
// one line on stderr holding every part of want.
func assertOneLineError(t *testing.T, code int, stderr string, want ...string) {
	t.Helper()
	if code == 0 {
		t.Errorf("exit 0, want a failure mentioning %q", want)
		return
	}
	if strings.Count(strings.TrimRight(stderr, "\n"), "\n") > 0 {
		t.Errorf("stderr is more than one line: %q", stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr %q lacks %q", stderr, w)
		}
	}
}

// TestImagePullEdges: a pull by digest, a run that pulls what is missing,
// --pull always following a tag that moved, and an unreachable registry.
func TestImagePullEdges(t *testing.T) {
	n := newCLINode(t)
	reg := newTestRegistry(t, n)
	img := appImage(t)
	ref := reg.push(t, "team/app:1", img)
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	byDigest := reg.host + "/team/app@" + digest.String()
	id := strings.TrimSpace(n.mustRun("image", "pull", "-q", byDigest))
	if imgs := n.images(); len(imgs) != 1 || imgs[0].ID != id || imgs[0].Digest != digest.String() || !slices.Equal(imgs[0].Names, []string{byDigest}) {
		t.Errorf("pull by digest: %+v", imgs)
	}

	n.mustRun("sandbox", "create", "--name", "pod")
	defer n.run("sandbox", "rm", "-f", "pod")
	// Not stored under this name: run pulls it (the layers are there).
	if out := n.mustRun("run", "--rm", "--sandbox", "pod", "--image", ref); !strings.HasPrefix(out, "from-image hi") {
		t.Errorf("run of a missing image printed %q", out)
	}
	// The tag moves upstream; --pull missing keeps the stored image,
	// --pull always takes the new one.
	moved, err := mutate.Config(img, v1.Config{Cmd: []string{"/bin/echo", "moved"}, Env: []string{"PATH=/bin"}})
	if err != nil {
		t.Fatal(err)
	}
	reg.push(t, "team/app:1", moved)
	if out := n.mustRun("run", "--rm", "--sandbox", "pod", "--image", ref); !strings.HasPrefix(out, "from-image hi") {
		t.Errorf("--pull missing after the tag moved printed %q", out)
	}
	if out := n.mustRun("run", "--rm", "--sandbox", "pod", "--pull", "always", "--image", ref); out != "moved\n" {
		t.Errorf("--pull always after the tag moved printed %q", out)
	}

	// Nothing listens on port 1 of the node's loopback.
	code, _, stderr := n.run("image", "pull", "-q", "127.0.0.1:1/team/app:1")
	assertOneLineError(t, code, stderr, `image "127.0.0.1:1/team/app:1"`, "connection refused")
	n.pruneAll("after prune")
}

// TestImagePullDiskFull pulls into an image root on a tmpfs too small for
// the image: the pull fails naming the image and the cause, nothing is
// listed, and no work directory is left.
func TestImagePullDiskFull(t *testing.T) {
	n := newCLINode(t)
	reg := newTestRegistry(t, n)
	ref := reg.push(t, "team/app:1", appImage(t))
	small := t.TempDir()
	if err := syscall.Mount("tmpfs", small, "tmpfs", 0, "size=512k"); err != nil {
		t.Fatalf("mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(small, syscall.MNT_DETACH) })
	code, out, stderr := n.run("--image-root", small, "image", "pull", "-q", ref)
	assertOneLineError(t, code, stderr, ref, "no space left on device")
	if out != "" {
		t.Errorf("stdout %q", out)
	}
	if out := n.mustRun("--image-root", small, "image", "ls", "-q"); out != "" {
		t.Errorf("an image is listed after the disk filled: %q", out)
	}
	if entries, _ := os.ReadDir(filepath.Join(small, "tmp")); len(entries) != 0 {
		t.Errorf("tmp holds %d work directories after the failed pull", len(entries))
	}
	// Layers finished before the disk filled are whole and kept for the
	// next pull; a prune takes them.
	n.mustRun("--image-root", small, "image", "prune")
	if entries, _ := os.ReadDir(filepath.Join(small, "layers")); len(entries) != 0 {
		t.Errorf("layers holds %d entries after prune", len(entries))
	}
}
