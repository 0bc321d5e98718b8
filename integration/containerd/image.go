package containerd

import (
	"archive/tar"
	"bytes"
	_ "crypto/sha256" // registers SHA-256 for go-digest
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/podbox/podbox/integration/rootfs"
)

// BusyboxIndex is the content of /www/index.html in BusyboxImage, what
// `httpd -h /www` serves at /.
const BusyboxIndex = "hello from podbox busybox\n"

// BusyboxCmd is BusyboxImage's default command: a stand-in pause that exits 0
// on SIGTERM (a PID 1 without a handler ignores it) and otherwise waits
// forever, so the image can serve as CRI's sandbox image too. `sleep & wait`
// rather than a sleep loop lets the trap run at once.
var BusyboxCmd = []string{"/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done"}

// annotationImageName is containerd's index annotation naming an image in
// an archive; `ctr images import` (1.6 and 2.x) prefers it to the OCI
// ref.name, which holds just the tag.
const annotationImageName = "io.containerd.image.name"

// BusyboxImage writes an OCI image layout archive of a busybox image named
// ref into a temporary directory of t and returns its path, ready for
// ImportImage. ref must be fully qualified ("docker.io/podbox/busybox:test"),
// the form CRI normalizes image names to. The single uncompressed layer is
// the rootfs of integration/rootfs (/bin/busybox and its applets,
// /etc/passwd, /etc/group, /www/index.html holding BusyboxIndex); the config
// runs BusyboxCmd with PATH=/bin.
func BusyboxImage(t testing.TB, ref string) string {
	t.Helper()
	tag := ref[strings.LastIndex(ref, ":")+1:]
	if !strings.Contains(ref, "/") || !strings.Contains(ref, ":") || strings.Contains(tag, "/") {
		t.Fatalf("busybox image: ref %q is not fully qualified (host/path:tag)", ref)
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	if err := rootfs.BuildBusybox(root, BusyboxIndex); err != nil {
		t.Fatalf("busybox image %s: %v", ref, err)
	}
	layer, err := tarDir(root)
	if err != nil {
		t.Fatalf("busybox image %s: layer: %v", ref, err)
	}
	archive, err := ociArchive(ref, tag, layer)
	if err != nil {
		t.Fatalf("busybox image %s: %v", ref, err)
	}
	out := filepath.Join(dir, "busybox.tar")
	if err := os.WriteFile(out, archive, 0o644); err != nil {
		t.Fatalf("busybox image %s: %v", ref, err)
	}
	return out
}

// epoch is every timestamp in an archive, so that the same busybox gives
// the same digests run after run.
var epoch = time.Unix(0, 0).UTC()

// tarDir makes a layer of the tree at dir: root-owned, fixed times, entries
// in lexical order (WalkDir's), symlinks kept as links.
func tarDir(dir string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		rel, _ := filepath.Rel(dir, path)
		h.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			h.Name += "/"
		}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		h.ModTime, h.AccessTime, h.ChangeTime = epoch, time.Time{}, time.Time{}
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if _, err := tw.Write(b); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ociArchive wraps one layer into an OCI image layout tar: oci-layout,
// index.json (naming ref), and the layer, config and manifest blobs.
func ociArchive(ref, tag string, layer []byte) ([]byte, error) {
	blobs := map[digest.Digest][]byte{}
	add := func(mediaType string, b []byte) ocispec.Descriptor {
		dg := digest.FromBytes(b)
		blobs[dg] = b
		return ocispec.Descriptor{MediaType: mediaType, Digest: dg, Size: int64(len(b))}
	}
	platform := ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
	layerDesc := add(ocispec.MediaTypeImageLayer, layer)
	config, err := json.Marshal(ocispec.Image{
		Created:  &epoch,
		Platform: platform,
		Config: ocispec.ImageConfig{
			Env:        []string{"PATH=/bin"},
			Cmd:        BusyboxCmd,
			WorkingDir: "/",
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layerDesc.Digest}},
	})
	if err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	manifest, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    add(ocispec.MediaTypeImageConfig, config),
		Layers:    []ocispec.Descriptor{layerDesc},
	})
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	mdesc := add(ocispec.MediaTypeImageManifest, manifest)
	mdesc.Platform = &platform
	mdesc.Annotations = map[string]string{
		annotationImageName:       ref,
		ocispec.AnnotationRefName: tag,
	}
	index, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{mdesc},
	})
	if err != nil {
		return nil, fmt.Errorf("encode index: %w", err)
	}
	layout, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	file := func(name string, b []byte) error {
		h := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: epoch, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	dirs := []string{"blobs/", "blobs/sha256/"}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Name: d, Mode: 0o755, ModTime: epoch, Typeflag: tar.TypeDir}); err != nil {
			return nil, err
		}
	}
	for _, dg := range []digest.Digest{layerDesc.Digest, digest.FromBytes(config), mdesc.Digest} {
		if err := file("blobs/sha256/"+dg.Encoded(), blobs[dg]); err != nil {
			return nil, err
		}
	}
	if err := file(ocispec.ImageLayoutFile, layout); err != nil {
		return nil, err
	}
	if err := file(ocispec.ImageIndexFile, index); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
