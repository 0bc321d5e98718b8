// Package image owns writing OCI image archives of podbox's own binaries —
// today the sandbox (pause) image that containerd's CRI starts for every pod —
// so that a node can get podbox-pause into containerd with
// `ctr -n k8s.io images import` and no external image tool.
//
// It only writes: it never pulls, pushes, unpacks or runs anything, and never
// talks to containerd.
//
// An archive is an OCI image layout (image-spec v1.1 "image-layout") in one
// tar stream: oci-layout, index.json, and blobs/sha256/ holding one gzip'd
// layer, the image config and the manifest. The index names the image with
// both the OCI annotation (org.opencontainers.image.ref.name) and
// containerd's (io.containerd.image.name), which is what `ctr images import`
// of containerd 1.6 and 2.x reads to name the imported image.
package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"
)

// AnnotationImageName is containerd's index annotation naming an image in an
// archive (images.AnnotationImageName in containerd); spelled out here so
// this package does not depend on containerd.
const AnnotationImageName = "io.containerd.image.name"

// PauseUser is the user the pause runs as: 65535 ("nobody" on most
// distributions, and what Kubernetes' own pause image uses), numeric so that
// the image needs no /etc/passwd.
const PauseUser = "65535:65535"

// PausePath is where the pause binary lives in its image, and the image's
// entrypoint.
const PausePath = "/pause"

// epoch is every timestamp in an archive. Fixed times (and sorted entries,
// and no host-dependent tar fields) make the output a function of the inputs
// alone: the same pause binary always gives the same layer, config and
// manifest digests, so the image digest identifies the binary, a rebuild
// does not churn every node's content store, and an image can be checked by
// writing it again.
var epoch = time.Unix(0, 0).UTC()

// File is one regular file of an image's single layer.
type File struct {
	// Path is the absolute path inside the image, e.g. "/pause".
	Path string
	// Mode is the permission bits (e.g. 0o555); owner and group are root.
	Mode fs.FileMode
	// Data is the file's content.
	Data []byte
}

// Image describes a single-layer image.
type Image struct {
	// Ref is the image's full reference, e.g. "localhost/podbox/pause:1.0".
	Ref string
	// Files make up the one layer. Parent directories are added (root-owned,
	// 0755) for paths below "/".
	Files []File
	// Entrypoint is the image's config.Entrypoint.
	Entrypoint []string
	// User is config.User, e.g. "65535:65535".
	User string
	// OS and Architecture are the platform (GOOS/GOARCH spelling), e.g.
	// "linux" and "amd64".
	OS, Architecture string
	// Labels go into config.Labels (and may be nil).
	Labels map[string]string
}

// Digests are what an archive's content hashes to, each as an OCI digest
// string ("sha256:" and 64 hex digits).
type Digests struct {
	// Manifest is the image digest containerd shows (ctr images ls).
	Manifest string
	Config   string
	// Layer is the compressed layer blob; DiffID the uncompressed tar.
	Layer  string
	DiffID string
}

// Write writes img to w as an OCI image layout tar archive and returns its
// digests.
func Write(w io.Writer, img Image) (Digests, error) {
	if err := img.validate(); err != nil {
		return Digests{}, err
	}
	layerTar, err := layerTar(img.Files)
	if err != nil {
		return Digests{}, fmt.Errorf("image %q: layer: %w", img.Ref, err)
	}
	layer, err := gzipBytes(layerTar)
	if err != nil {
		return Digests{}, fmt.Errorf("image %q: compress layer: %w", img.Ref, err)
	}
	d := Digests{Layer: sha256Digest(layer), DiffID: sha256Digest(layerTar)}

	platform := ociPlatform{OS: img.OS, Architecture: img.Architecture}
	// No "created" time and no history: both would have to be fixed values
	// anyway (see epoch), and containerd needs neither.
	config, err := json.Marshal(ociImage{
		Architecture: platform.Architecture,
		OS:           platform.OS,
		Config: ociImageConfig{
			User:       img.User,
			Entrypoint: img.Entrypoint,
			Labels:     img.Labels,
		},
		RootFS: ociRootFS{Type: "layers", DiffIDs: []string{d.DiffID}},
	})
	if err != nil {
		return Digests{}, fmt.Errorf("image %q: encode config: %w", img.Ref, err)
	}
	d.Config = sha256Digest(config)

	manifest, err := json.Marshal(ociManifest{
		SchemaVersion: 2,
		MediaType:     mediaTypeManifest,
		Config:        descriptor(mediaTypeConfig, config),
		Layers:        []ociDescriptor{descriptor(mediaTypeLayerGzip, layer)},
	})
	if err != nil {
		return Digests{}, fmt.Errorf("image %q: encode manifest: %w", img.Ref, err)
	}
	d.Manifest = sha256Digest(manifest)

	md := descriptor(mediaTypeManifest, manifest)
	md.Platform = &platform
	md.Annotations = map[string]string{
		annotationRefName:   img.Ref,
		AnnotationImageName: img.Ref,
	}
	index, err := json.Marshal(ociIndex{
		SchemaVersion: 2,
		MediaType:     mediaTypeIndex,
		Manifests:     []ociDescriptor{md},
	})
	if err != nil {
		return Digests{}, fmt.Errorf("image %q: encode index: %w", img.Ref, err)
	}
	layout, err := json.Marshal(ociLayout{Version: "1.0.0"})
	if err != nil {
		return Digests{}, fmt.Errorf("image %q: encode oci-layout: %w", img.Ref, err)
	}

	entries := []tarEntry{
		{name: "oci-layout", mode: 0o444, data: layout},
		{name: "index.json", mode: 0o444, data: index},
		{name: "blobs/", mode: 0o755, dir: true},
		{name: "blobs/sha256/", mode: 0o755, dir: true},
		{name: blobPath(d.Layer), mode: 0o444, data: layer},
		{name: blobPath(d.Config), mode: 0o444, data: config},
		{name: blobPath(d.Manifest), mode: 0o444, data: manifest},
	}
	if err := writeTar(w, entries); err != nil {
		return Digests{}, fmt.Errorf("image %q: write archive: %w", img.Ref, err)
	}
	return d, nil
}

// WritePauseImage writes the sandbox image of pauseBinary, named ref: the
// binary as /pause (mode 0555, root-owned), entrypoint ["/pause"], user
// 65535:65535, platform linux and the binary's own architecture (read from
// its ELF header, so a cross-built pause gets the right platform).
func WritePauseImage(w io.Writer, pauseBinary, ref string) (Digests, error) {
	data, err := os.ReadFile(pauseBinary)
	if err != nil {
		return Digests{}, fmt.Errorf("pause image %q: %w", ref, err)
	}
	arch, err := staticLinuxArch(data)
	if err != nil {
		return Digests{}, fmt.Errorf("pause image %q: pause binary %s: %w", ref, pauseBinary, err)
	}
	return Write(w, Image{
		Ref:          ref,
		Files:        []File{{Path: PausePath, Mode: 0o555, Data: data}},
		Entrypoint:   []string{PausePath},
		User:         PauseUser,
		OS:           "linux",
		Architecture: arch,
	})
}

// staticLinuxArch returns the GOARCH of a statically linked Linux ELF
// executable. The pause runs in an image with nothing but itself, so a
// dynamically linked binary would fail only when containerd starts a pod;
// refusing it here gives the error where it can be fixed.
func staticLinuxArch(data []byte) (string, error) {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return "", fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return "", fmt.Errorf("ELF type %v is not an executable", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", errors.New("dynamically linked (has an ELF interpreter); the pause image has no libc, build it with CGO_ENABLED=0")
		}
	}
	arch, ok := map[elf.Machine]string{
		elf.EM_X86_64:  "amd64",
		elf.EM_AARCH64: "arm64",
		elf.EM_386:     "386",
		elf.EM_ARM:     "arm",
		elf.EM_PPC64:   "ppc64le",
		elf.EM_S390:    "s390x",
		elf.EM_RISCV:   "riscv64",
	}[f.Machine]
	if !ok {
		return "", fmt.Errorf("unsupported ELF machine %v", f.Machine)
	}
	return arch, nil
}

func (img Image) validate() error {
	prefix := fmt.Sprintf("image %q", img.Ref)
	switch {
	case img.Ref == "":
		return errors.New("image: empty reference")
	case strings.ContainsAny(img.Ref, " \t\n"):
		return fmt.Errorf("%s: reference contains white space", prefix)
	case img.OS == "" || img.Architecture == "":
		return fmt.Errorf("%s: platform %q/%q: OS and architecture are required", prefix, img.OS, img.Architecture)
	case len(img.Files) == 0:
		return fmt.Errorf("%s: no files", prefix)
	}
	seen := map[string]bool{}
	for _, f := range img.Files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
			return fmt.Errorf("%s: file %q: want a clean absolute path", prefix, f.Path)
		}
		if seen[f.Path] {
			return fmt.Errorf("%s: file %q: listed twice", prefix, f.Path)
		}
		if f.Mode&^fs.ModePerm != 0 {
			return fmt.Errorf("%s: file %q: mode %v: want permission bits only", prefix, f.Path, f.Mode)
		}
		seen[f.Path] = true
	}
	return nil
}

func descriptor(mediaType string, blob []byte) ociDescriptor {
	return ociDescriptor{MediaType: mediaType, Digest: sha256Digest(blob), Size: int64(len(blob))}
}

// sha256Digest is blob's OCI digest, "sha256:" and the hex of its SHA-256.
func sha256Digest(blob []byte) string {
	sum := sha256.Sum256(blob)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// blobPath is where an OCI image layout keeps the blob of digest d
// ("sha256:HEX" → blobs/sha256/HEX).
func blobPath(d string) string {
	alg, hexSum, _ := strings.Cut(d, ":")
	return path.Join("blobs", alg, hexSum)
}

// layerTar is the uncompressed layer: files at paths relative to the root
// ("pause", not "/pause", as image layers are written), with their parent
// directories, sorted.
func layerTar(files []File) ([]byte, error) {
	dirs := map[string]bool{}
	var entries []tarEntry
	for _, f := range files {
		rel := strings.TrimPrefix(f.Path, "/")
		for d := path.Dir(rel); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
		entries = append(entries, tarEntry{name: rel, mode: int64(f.Mode.Perm()), data: f.Data})
	}
	for d := range dirs {
		entries = append(entries, tarEntry{name: d + "/", mode: 0o755, dir: true})
	}
	var b bytes.Buffer
	if err := writeTar(&b, entries); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// gzipBytes compresses data with no name and no time in the gzip header, so
// the output depends on the data alone. compress/flate's output may differ
// between Go releases, but so does the pause binary built with them, so the
// digest stays a function of the binary.
func gzipBytes(data []byte) ([]byte, error) {
	var b bytes.Buffer
	zw, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

type tarEntry struct {
	name string
	mode int64
	dir  bool
	data []byte
}

// writeTar writes entries sorted by name (a parent directory "a/" sorts
// before its children "a/…"), root-owned, at the epoch, in PAX-free USTAR
// where it fits, and closes the archive.
func writeTar(w io.Writer, entries []tarEntry) error {
	slices.SortFunc(entries, func(a, b tarEntry) int { return strings.Compare(a.name, b.name) })
	tw := tar.NewWriter(w)
	for _, e := range entries {
		h := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			ModTime: epoch,
			Uname:   "root",
			Gname:   "root",
			Format:  tar.FormatUSTAR,
		}
		if e.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("tar entry %q: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return fmt.Errorf("tar entry %q: %w", e.name, err)
		}
	}
	return tw.Close()
}
