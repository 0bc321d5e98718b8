package store_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/podbox/podbox/image/store"
)

// refSeeds are the references of TestParseReference and
// TestParseReferenceErrors.
var refSeeds = []string{
	"busybox", "busybox:1.36", "user/app", "docker.io/busybox", "index.docker.io/x", "localhost/app",
	"localhost:5000/app:1", "127.0.0.1:5000/a/b/c:v1.2", "Reg.IO/a_b__c-d.e/f--g:Tag_1-x.y",
	"reg.io/x@sha256:" + hex64, "name:tag@sha256:" + hex64, "localhost:5000",
	"", "UPPER", "docker.io/Library/x", "a//b", "x/", "reg.io/", "x:", "x:.tag", "x:a+b",
	"x@sha256:abc", "x@md5:" + hex64[:32], "x@", "a-/b", "-a", "a/_b", "a..b", "a b",
	"reg.io:/x", "reg.io:5x/x", "re_g.io/x", strings.Repeat("a", 256),
}

// FuzzParseReference checks image references, which come from users and
// from manifests off the internet, and name the directories and index
// entries of the store. A reference it accepts has a registry host, a path
// and a tag or digest of the allowed characters (nothing a path could climb
// out with), and its normalized form (String, the name images are stored
// under) parses to the same reference: normalizing twice changes nothing.
func FuzzParseReference(f *testing.F) {
	for _, s := range refSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		r, err := store.ParseReference(ref)
		if err != nil {
			return
		}
		if r.Domain == "" || r.Path == "" || r.Tag == "" && r.Digest == "" {
			t.Fatalf("ParseReference(%q) = %+v", ref, r)
		}
		if r.Digest != "" && store.ValidDigest(r.Digest) != nil {
			t.Fatalf("ParseReference(%q): digest %q", ref, r.Digest)
		}
		for _, c := range strings.Split(r.Path, "/") {
			if c == "" || c == "." || c == ".." {
				t.Fatalf("ParseReference(%q): path %q", ref, r.Path)
			}
		}
		again, err := store.ParseReference(r.String())
		if err != nil || again != r {
			t.Fatalf("ParseReference(%q) = %+v, whose String %q parses as %+v, %v", ref, r, r.String(), again, err)
		}
	})
}

// FuzzIndex writes arbitrary bytes as the store's index (images.json) and
// resolves a reference in it. The index is on disk, where a crash or a hand
// edit can leave anything, and every image command and run reads it.
// Reading it must never panic, nor must resolving any reference against
// what it accepts; an image found is one of the index's; and every image
// it accepts keeps its layers inside the store (the layers' directories
// become a container's root filesystem).
func FuzzIndex(f *testing.F) {
	img := `{"id": "sha256:` + hex64 + `", "digest": "sha256:` + strings.Repeat("1", 64) + `", "names": ["docker.io/library/busybox:latest"], ` +
		`"layers": ["sha256:` + strings.Repeat("2", 64) + `"], "size": 1, "platform": "linux/amd64", "addedAt": "2024-01-01T00:00:00Z"}`
	f.Add([]byte(`{"images": [`+img+`]}`), "busybox")
	f.Add([]byte(`{"images": [`+img+`]}`), hex64[:6])
	f.Add([]byte(`{"images": [`+img+`, `+img+`]}`), "sha256:"+hex64)
	f.Add([]byte(`{"images": []}`), "x")
	f.Add([]byte(`{not json`), "x")
	f.Fuzz(func(t *testing.T, index []byte, ref string) {
		st := store.Store{Root: t.TempDir()}
		if err := os.WriteFile(filepath.Join(st.Root, "images.json"), index, 0o600); err != nil {
			t.Fatal(err)
		}
		images, err := st.Images()
		if err != nil {
			return
		}
		for _, img := range images {
			if img == nil {
				t.Fatalf("index %q: a null image", index)
			}
			for _, l := range img.Layers {
				if d := st.LayerDiff(l); !strings.HasPrefix(d, filepath.Join(st.Root, "layers")+"/") || filepath.Dir(filepath.Dir(d)) != filepath.Join(st.Root, "layers") {
					t.Fatalf("index %q: layer %q is at %s, outside the store's layers", index, l, d)
				}
			}
		}
		got, err := st.Resolve(ref)
		if err == nil && !slices.Contains(images, got) && !slices.ContainsFunc(images, func(img *store.Image) bool { return img.ID == got.ID }) {
			t.Fatalf("index %q: Resolve(%q) = %+v, not one of the index's", index, ref, got)
		}
	})
}
