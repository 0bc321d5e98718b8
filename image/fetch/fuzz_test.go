package fetch

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/image/store"
)

// FuzzLoad loads arbitrary bytes as an image archive (`podbox image load
// -i FILE`): a `docker save` tar, plain or gzip'd, or an OCI layout as a
// tar, from wherever the user got it. Load must never panic nor write
// outside its store; an archive it refuses leaves no image listed and no
// temporary files; and every image it lists is whole: its config and
// manifest read back checked against their digests, and every layer is
// stored. The store lives on a tmpfs of 64 MiB, so that an archive that
// decompresses to gigabytes fills that rather than the disk.
func FuzzLoad(f *testing.F) {
	needRoot(f)
	base := layerOf(f, entry{name: "etc/", typ: '5'}, file("etc/os-release", "ID=podbox-test\n"), file("etc/motd", "base\n"))
	app := layerOf(f, file("etc/motd", "app\n"), entry{name: "srv/", typ: '5'})
	img := imageOf(f, NodePlatform().Architecture, base, app)
	tag, err := name.NewTag("app:1")
	if err != nil {
		f.Fatal(err)
	}
	var saved bytes.Buffer
	if err := tarball.Write(tag, img, &saved); err != nil {
		f.Fatal(err)
	}
	f.Add(saved.Bytes())
	f.Add(gzipOf(f, saved.Bytes()))
	f.Add(tarOf(f, file("manifest.json", `[{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["l/layer.tar"]}]`), file("c.json", "{}"), file("l/layer.tar", "")))
	f.Add(tarOf(f, file("oci-layout", `{"imageLayoutVersion":"1.0.0"}`), file("index.json", `{"schemaVersion": 2, "manifests": []}`)))
	f.Add(tarOf(f, file("manifest.json", "[]"), file("../evil", "pwned")))
	f.Add(tarOf(f, file("oci-layout", "{}"), file("blobs/../../evil", "pwned")))
	f.Fuzz(func(t *testing.T, archive []byte) {
		parent := t.TempDir()
		if err := unix.Mount("tmpfs", parent, "tmpfs", 0, "size=64m"); err != nil {
			t.Fatal(err)
		}
		defer unix.Unmount(parent, unix.MNT_DETACH)
		p := filepath.Join(parent, "archive")
		if err := os.WriteFile(p, archive, 0o600); err != nil {
			t.Fatal(err)
		}
		e := &testEnv{st: store.Store{Root: filepath.Join(parent, "store")}, parent: parent}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		got, err := Load(ctx, e.st, p, Options{})
		wantNothingNamed(t, parent, "evil")
		e.wantTmpEmpty(t)
		if err != nil {
			e.wantNoImages(t)
			return
		}
		for _, rec := range got {
			if _, err := e.st.Config(rec); err != nil {
				t.Fatalf("archive %q: image %s: %v", archive, rec.ID, err)
			}
			if _, err := e.st.ReadBlob(rec.Digest); err != nil {
				t.Fatalf("archive %q: image %s: manifest: %v", archive, rec.ID, err)
			}
			if _, err := e.st.LowerDirs(rec); err != nil {
				t.Fatalf("archive %q: image %s: %v", archive, rec.ID, err)
			}
		}
	})
}
