package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// archive is an OCI layout archive read back: every regular file by name,
// and the names in archive order.
type archive struct {
	files map[string][]byte
	names []string
	hdrs  map[string]*tar.Header
}

func readArchive(t *testing.T, b []byte) archive {
	t.Helper()
	a := archive{files: map[string][]byte{}, hdrs: map[string]*tar.Header{}}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read archive: %v", err)
		}
		a.names = append(a.names, h.Name)
		a.hdrs[h.Name] = h
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read %s: %v", h.Name, err)
		}
		if h.Typeflag == tar.TypeReg {
			a.files[h.Name] = data
		}
	}
	return a
}

// blob returns the blob d points at, checking its size and digest.
func (a archive) blob(t *testing.T, d ocispec.Descriptor) []byte {
	t.Helper()
	b, ok := a.files["blobs/sha256/"+d.Digest.Encoded()]
	if !ok {
		t.Fatalf("blob %s (%s) missing from archive %q", d.Digest, d.MediaType, a.names)
	}
	if int64(len(b)) != d.Size {
		t.Errorf("blob %s: size %d, descriptor says %d", d.Digest, len(b), d.Size)
	}
	if got := digest.FromBytes(b); got != d.Digest {
		t.Errorf("blob %s: content hashes to %s", d.Digest, got)
	}
	return b
}

func decode(t *testing.T, what string, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v\n%s", what, err, b)
	}
}

// fakePause is a minimal static x86-64 ELF header standing in for the pause:
// the archive tests need an ELF that debug/elf accepts, not a program, and
// must not depend on a build.
func fakePause(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "podbox-pause")
	if err := os.WriteFile(p, minimalELF(), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// minimalELF is a 64-byte little-endian ELF64 x86-64 executable header with
// no program headers: static by construction.
func minimalELF() []byte {
	h := make([]byte, 64)
	copy(h, "\x7fELF")
	h[4], h[5], h[6] = 2, 1, 1 // ELFCLASS64, little-endian, EV_CURRENT
	h[16] = 2                  // ET_EXEC
	h[18] = 62                 // EM_X86_64
	h[20] = 1                  // EV_CURRENT
	h[52] = 64                 // e_ehsize
	h[54] = 56                 // e_phentsize
	h[58] = 64                 // e_shentsize
	return h
}

func writePause(t *testing.T, bin, ref string) ([]byte, Digests) {
	t.Helper()
	var b bytes.Buffer
	d, err := WritePauseImage(&b, bin, ref)
	if err != nil {
		t.Fatalf("WritePauseImage: %v", err)
	}
	return b.Bytes(), d
}

// TestPauseImageReadsBack walks the archive the way an importer does —
// oci-layout, index, manifest, config, layer — and checks every digest, size,
// media type and the fields containerd's CRI relies on.
func TestPauseImageReadsBack(t *testing.T) {
	bin := fakePause(t)
	pauseData, _ := os.ReadFile(bin)
	const ref = "localhost/podbox/pause:test"
	b, d := writePause(t, bin, ref)
	a := readArchive(t, b)

	if len(a.names) != 7 || !slices.IsSorted(a.names) {
		t.Errorf("archive entries %q: want 7, sorted", a.names)
	}
	for _, h := range a.hdrs {
		if !h.ModTime.Equal(epoch) || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("entry %s: mtime %v uid %d gid %d, want epoch and root", h.Name, h.ModTime, h.Uid, h.Gid)
		}
	}

	var layout ocispec.ImageLayout
	decode(t, "oci-layout", a.files["oci-layout"], &layout)
	if layout.Version != ocispec.ImageLayoutVersion {
		t.Errorf("oci-layout version %q", layout.Version)
	}

	var index ocispec.Index
	decode(t, "index.json", a.files["index.json"], &index)
	if index.SchemaVersion != 2 || index.MediaType != ocispec.MediaTypeImageIndex || len(index.Manifests) != 1 {
		t.Fatalf("index: %+v", index)
	}
	md := index.Manifests[0]
	if md.MediaType != ocispec.MediaTypeImageManifest || string(md.Digest) != d.Manifest {
		t.Errorf("index manifest descriptor %+v, want %s", md, d.Manifest)
	}
	for _, k := range []string{ocispec.AnnotationRefName, AnnotationImageName} {
		if md.Annotations[k] != ref {
			t.Errorf("index annotation %s = %q, want %q", k, md.Annotations[k], ref)
		}
	}
	if md.Platform == nil || md.Platform.OS != "linux" || md.Platform.Architecture != "amd64" {
		t.Errorf("index platform %+v, want linux/amd64", md.Platform)
	}

	var m ocispec.Manifest
	decode(t, "manifest", a.blob(t, md), &m)
	if m.SchemaVersion != 2 || m.MediaType != ocispec.MediaTypeImageManifest ||
		m.Config.MediaType != ocispec.MediaTypeImageConfig || string(m.Config.Digest) != d.Config ||
		len(m.Layers) != 1 || m.Layers[0].MediaType != ocispec.MediaTypeImageLayerGzip || string(m.Layers[0].Digest) != d.Layer {
		t.Fatalf("manifest %+v, digests %+v", m, d)
	}

	var cfg ocispec.Image
	decode(t, "config", a.blob(t, m.Config), &cfg)
	if cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("config platform %s/%s", cfg.OS, cfg.Architecture)
	}
	if !slices.Equal(cfg.Config.Entrypoint, []string{"/pause"}) || cfg.Config.User != "65535:65535" || len(cfg.Config.Cmd) != 0 {
		t.Errorf("config: entrypoint %q cmd %q user %q", cfg.Config.Entrypoint, cfg.Config.Cmd, cfg.Config.User)
	}

	zr, err := gzip.NewReader(bytes.NewReader(a.blob(t, m.Layers[0])))
	if err != nil {
		t.Fatalf("layer is not gzip: %v", err)
	}
	layerTar, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("decompress layer: %v", err)
	}
	if cfg.RootFS.Type != "layers" || len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != digest.FromBytes(layerTar) || d.DiffID != string(cfg.RootFS.DiffIDs[0]) {
		t.Errorf("rootfs %+v: want one diff_id, the uncompressed layer's %s", cfg.RootFS, digest.FromBytes(layerTar))
	}
	layer := readArchive(t, layerTar)
	if !slices.Equal(layer.names, []string{"pause"}) {
		t.Fatalf("layer entries %q, want [pause]", layer.names)
	}
	h := layer.hdrs["pause"]
	if h.Typeflag != tar.TypeReg || h.Mode != 0o555 || h.Uid != 0 || h.Gid != 0 || !bytes.Equal(layer.files["pause"], pauseData) {
		t.Errorf("layer /pause: type %c mode %o uid %d gid %d, same content %v",
			h.Typeflag, h.Mode, h.Uid, h.Gid, bytes.Equal(layer.files["pause"], pauseData))
	}
}

// The same binary and reference must give the same bytes (and so the same
// image digest); a different binary or reference must not.
func TestPauseImageDeterministic(t *testing.T) {
	bin := fakePause(t)
	b1, d1 := writePause(t, bin, "localhost/podbox/pause:a")
	b2, d2 := writePause(t, bin, "localhost/podbox/pause:a")
	if !bytes.Equal(b1, b2) || d1 != d2 {
		t.Fatalf("two writes differ: %+v vs %+v", d1, d2)
	}
	// The name is in index.json only: the image itself is the same.
	_, d3 := writePause(t, bin, "localhost/podbox/pause:b")
	if d3 != d1 {
		t.Errorf("renaming changed the image: %+v vs %+v", d3, d1)
	}
	other := filepath.Join(t.TempDir(), "other")
	os.WriteFile(other, append(minimalELF(), 0), 0o755)
	if _, d4 := writePause(t, other, "localhost/podbox/pause:a"); d4.Manifest == d1.Manifest || d4.DiffID == d1.DiffID {
		t.Errorf("a different binary gave the same image %s", d4.Manifest)
	}
}

// A real static Go binary, podbox-pause built for this machine, gives its
// own architecture.
func TestPauseImageOfGoBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	out := filepath.Join(t.TempDir(), "podbox-pause")
	cmd := exec.Command("go", "build", "-o", out, "github.com/podbox/podbox/cmd/podbox-pause")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build podbox-pause: %v\n%s", err, b)
	}
	var buf bytes.Buffer
	if _, err := WritePauseImage(&buf, out, "localhost/podbox/pause:t"); err != nil {
		t.Fatal(err)
	}
	a := readArchive(t, buf.Bytes())
	var index ocispec.Index
	decode(t, "index.json", a.files["index.json"], &index)
	if got := index.Manifests[0].Platform.Architecture; got != runtime.GOARCH {
		t.Errorf("architecture %q, want %q", got, runtime.GOARCH)
	}
}

func TestWriteRejects(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755)
	dynamic := filepath.Join(dir, "dynamic")
	os.WriteFile(dynamic, dynamicELF(), 0o755)
	ok := Image{Ref: "r", OS: "linux", Architecture: "amd64", Files: []File{{Path: "/pause", Mode: 0o555}}}
	for _, tc := range []struct {
		name string
		err  func() error
		want string
	}{
		{"missing binary", func() error { _, err := WritePauseImage(io.Discard, filepath.Join(dir, "nope"), "r"); return err }, "no such file"},
		{"not ELF", func() error { _, err := WritePauseImage(io.Discard, script, "r"); return err }, "not an ELF executable"},
		{"dynamic", func() error { _, err := WritePauseImage(io.Discard, dynamic, "r"); return err }, "dynamically linked"},
		{"empty ref", func() error { img := ok; img.Ref = ""; _, err := Write(io.Discard, img); return err }, "empty reference"},
		{"relative path", func() error {
			img := ok
			img.Files = []File{{Path: "pause"}}
			_, err := Write(io.Discard, img)
			return err
		}, `file "pause": want a clean absolute path`},
		{"duplicate", func() error {
			img := ok
			img.Files = []File{{Path: "/a"}, {Path: "/a"}}
			_, err := Write(io.Discard, img)
			return err
		}, "listed twice"},
		{"no platform", func() error { img := ok; img.OS = ""; _, err := Write(io.Discard, img); return err }, "OS and architecture are required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// Parent directories of nested files are in the layer, before their
// children.
func TestWriteNestedFiles(t *testing.T) {
	var b bytes.Buffer
	d, err := Write(&b, Image{Ref: "r", OS: "linux", Architecture: "amd64",
		Files: []File{{Path: "/usr/bin/x", Mode: 0o755, Data: []byte("x")}, {Path: "/etc/y", Mode: 0o644}}})
	if err != nil {
		t.Fatal(err)
	}
	a := readArchive(t, b.Bytes())
	zr, err := gzip.NewReader(bytes.NewReader(a.files["blobs/sha256/"+strings.TrimPrefix(d.Layer, "sha256:")]))
	if err != nil {
		t.Fatal(err)
	}
	lt, _ := io.ReadAll(zr)
	want := []string{"etc/", "etc/y", "usr/", "usr/bin/", "usr/bin/x"}
	if got := readArchive(t, lt).names; !slices.Equal(got, want) {
		t.Errorf("layer entries %q, want %q", got, want)
	}
}

// dynamicELF is minimalELF with one PT_INTERP program header.
func dynamicELF() []byte {
	h := minimalELF()
	h[32] = 64 // e_phoff
	h[56] = 1  // e_phnum
	ph := make([]byte, 56)
	ph[0] = 3 // PT_INTERP
	return append(h, ph...)
}
