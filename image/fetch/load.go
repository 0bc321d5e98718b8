package fetch

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/gzip"

	"github.com/podbox/podbox/image/store"
)

// Index annotations that name an image in an OCI layout: containerd's
// (a full reference) and the OCI one (a full reference or only a tag).
const (
	annotationContainerdName = "io.containerd.image.name"
	annotationOCIRefName     = "org.opencontainers.image.ref.name"
)

// Load stores the images of the archive at path: a `docker save` tar
// (plain or gzip'd), or an OCI image layout as a tar or a directory. Nothing
// is listed unless every image of the archive is stored whole.
func Load(ctx context.Context, st store.Store, path string, o Options) ([]*store.Image, error) {
	imgs, err := load(ctx, st, path, o)
	if err != nil {
		return nil, fmt.Errorf("archive %s: load: %w", path, err)
	}
	return imgs, nil
}

// namedImage is an image of an archive with the names it comes with.
type namedImage struct {
	img   v1.Image
	names []string
}

func load(ctx context.Context, st store.Store, archive string, o Options) ([]*store.Image, error) {
	release, err := st.Use()
	if err != nil {
		return nil, err
	}
	defer release()
	if _, err := st.CleanTemp(); err != nil {
		return nil, err
	}
	work, err := st.NewWork("load")
	if err != nil {
		return nil, err
	}
	defer work.Close()
	platform := o.Platform
	if platform.OS == "" {
		platform = NodePlatform()
	}
	var imgs []namedImage
	src := source{compressedDigests: true}
	fi, err := os.Stat(archive)
	switch {
	case err != nil:
		return nil, err
	case fi.IsDir():
		imgs, err = layoutImages(archive, platform)
	default:
		var kind, at string
		if kind, at, err = prepareArchive(ctx, archive, work.Dir); err == nil {
			if kind == "oci" {
				imgs, err = layoutImages(at, platform)
			} else {
				src = source{}
				imgs, err = dockerImages(at)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if len(imgs) == 0 {
		return nil, errors.New("no image for " + platformString(platform.OS, platform.Architecture, platform.Variant) + " in it")
	}
	// Every image is stored before the first is listed.
	var out []*store.Image
	for _, ni := range imgs {
		rec, err := stage(ctx, st, ni.img, ni.names, src, o.progress())
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	for _, rec := range out {
		if err := st.AddImage(rec); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// prepareArchive looks into the tar at path and returns what it holds: "oci"
// with the directory it was unpacked to, or "docker" with the path of a plain
// tar (the file itself, or its gunzipped copy in dir).
func prepareArchive(ctx context.Context, archive, dir string) (string, string, error) {
	f, err := os.Open(archive)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	gzipped := false
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		z, err := gzip.NewReader(br)
		if err != nil {
			return "", "", fmt.Errorf("gzip: %w", err)
		}
		defer z.Close()
		r, gzipped = z, true
	}
	// Read the whole archive once: into a layout directory if it turns out
	// to be one, and into a plain tar copy if it was gzip'd, since
	// go-containerregistry reads a docker archive by seeking.
	layoutDir := filepath.Join(dir, "layout")
	plain := filepath.Join(dir, "archive.tar")
	var copyTo *os.File
	if gzipped {
		if copyTo, err = os.Create(plain); err != nil {
			return "", "", err
		}
		defer copyTo.Close()
		r = io.TeeReader(r, copyTo)
	}
	tr := tar.NewReader(r)
	var isOCI, isDocker bool
	n := 0
	for {
		if err := ctx.Err(); err != nil {
			return "", "", err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if n == 0 {
				return "", "", fmt.Errorf("not a tar archive: %w", err)
			}
			return "", "", fmt.Errorf("read archive: %w", err)
		}
		n++
		clean := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		switch clean {
		case "oci-layout":
			isOCI = true
		case "manifest.json":
			isDocker = true
		}
		if err := extractEntry(layoutDir, clean, hdr, tr); err != nil {
			return "", "", err
		}
	}
	if n == 0 {
		return "", "", errors.New("not a tar archive: no entries")
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return "", "", fmt.Errorf("read archive: %w", err)
	}
	switch {
	case isOCI:
		if _, err := os.Stat(filepath.Join(layoutDir, "index.json")); err != nil {
			return "", "", errors.New("OCI image layout without index.json")
		}
		return "oci", layoutDir, nil
	case isDocker:
		if gzipped {
			return "docker", plain, nil
		}
		return "docker", archive, nil
	}
	return "", "", errors.New("neither a docker save archive (manifest.json) nor an OCI image layout (oci-layout, index.json)")
}

// extractEntry writes one archive entry under dir: regular files and
// directories only, by names that stay inside dir. An OCI layout holds
// nothing else; a docker archive is read in place, so its entries are
// written only to be found by name, never used.
func extractEntry(dir, clean string, hdr *tar.Header, r io.Reader) error {
	if clean == "." || clean == ".." || strings.HasPrefix(clean, "../") || path.IsAbs(clean) {
		return fmt.Errorf("archive entry %q: path escapes the archive", hdr.Name)
	}
	p := filepath.Join(dir, filepath.FromSlash(clean))
	switch hdr.Typeflag {
	case tar.TypeDir:
		return os.MkdirAll(p, 0o700)
	case tar.TypeReg:
		if !strings.HasPrefix(clean, "blobs/") && !strings.HasSuffix(clean, ".json") && clean != "oci-layout" {
			return nil // docker archives' layer tars are read from the archive itself
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("archive entry %q: %w", hdr.Name, err)
		}
	}
	return nil
}

// layoutImages lists the images of the OCI layout at dir for platform: each
// manifest of its index, and the platform's manifest of each nested index.
func layoutImages(dir string, platform v1.Platform) ([]namedImage, error) {
	lp, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("OCI image layout: %w", err)
	}
	ix, err := lp.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("OCI image layout: %w", err)
	}
	im, err := ix.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("OCI image layout: index: %w", err)
	}
	var out []namedImage
	for _, d := range im.Manifests {
		names := layoutNames(d.Annotations)
		switch {
		case d.MediaType.IsImage():
			img, err := ix.Image(d.Digest)
			if err != nil {
				return nil, fmt.Errorf("OCI image layout: manifest %s: %w", d.Digest, err)
			}
			if cf, err := img.ConfigFile(); err == nil && !platformMatches(cf, platform) {
				continue
			}
			out = append(out, namedImage{img: img, names: names})
		case d.MediaType.IsIndex():
			child, err := ix.ImageIndex(d.Digest)
			if err != nil {
				return nil, fmt.Errorf("OCI image layout: index %s: %w", d.Digest, err)
			}
			img, err := platformImage(child, platform)
			if err != nil {
				return nil, fmt.Errorf("OCI image layout: index %s: %w", d.Digest, err)
			}
			if img != nil {
				out = append(out, namedImage{img: img, names: names})
			}
		}
	}
	return out, nil
}

// platformImage is the image of ix for platform, nil if it has none.
func platformImage(ix v1.ImageIndex, platform v1.Platform) (v1.Image, error) {
	im, err := ix.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		if d.Platform == nil || !d.MediaType.IsImage() {
			continue
		}
		if d.Platform.OS == platform.OS && d.Platform.Architecture == platform.Architecture &&
			(platform.Variant == "" || d.Platform.Variant == platform.Variant) {
			return ix.Image(d.Digest)
		}
	}
	return nil, nil
}

// layoutNames are the names an index entry gives its image: containerd's
// annotation, or the OCI one when it is a whole reference (a bare tag names
// nothing on its own).
func layoutNames(ann map[string]string) []string {
	for _, k := range []string{annotationContainerdName, annotationOCIRefName} {
		v := ann[k]
		if v == "" || k == annotationOCIRefName && !strings.ContainsAny(v, "/:") {
			continue
		}
		if r, err := store.ParseReference(v); err == nil {
			return []string{r.String()}
		}
	}
	return nil
}

// dockerImages lists the images of the `docker save` tar at path, each
// under its RepoTags.
func dockerImages(path string) ([]namedImage, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(path) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("docker archive: manifest.json: %w", err)
	}
	var out []namedImage
	for i, d := range m {
		var tag *name.Tag
		var names []string
		for _, rt := range d.RepoTags {
			r, err := store.ParseReference(rt)
			if err != nil {
				return nil, fmt.Errorf("docker archive: image %d: %w", i, err)
			}
			names = append(names, r.String())
			if tag == nil {
				t, err := name.NewTag(rt)
				if err != nil {
					return nil, fmt.Errorf("docker archive: image %d: %w", i, err)
				}
				tag = &t
			}
		}
		if tag == nil && len(m) > 1 {
			return nil, fmt.Errorf("docker archive: image %d has no RepoTags, and the archive holds %d images", i, len(m))
		}
		img, err := tarball.Image(opener, tag)
		if err != nil {
			return nil, fmt.Errorf("docker archive: image %d: %w", i, err)
		}
		out = append(out, namedImage{img: img, names: names})
	}
	return out, nil
}
