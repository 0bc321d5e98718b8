package store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotFound is wrapped by lookups of an image the store does not have.
var ErrNotFound = errors.New("no such image")

// Store is an image store rooted at Root.
type Store struct{ Root string }

// Image is one entry of the index.
type Image struct {
	// ID is the digest of the image's config, as Docker and podman name
	// images: two manifests of the same image are one image.
	ID string `json:"id"`
	// Digest is the manifest's digest (what `name@digest` pulls).
	Digest string `json:"digest"`
	// Names are the normalized references that point at the image; an
	// image whose last name moved to another is dangling and has none.
	Names []string `json:"names"`
	// Layers are the diff IDs, bottom layer first.
	Layers []string `json:"layers"`
	// Size is the unpacked size of the layers; CompressedSize what a pull
	// transfers for them.
	Size           int64     `json:"size"`
	CompressedSize int64     `json:"compressedSize"`
	Platform       string    `json:"platform"`
	Created        time.Time `json:"created,omitzero"`
	AddedAt        time.Time `json:"addedAt"`
}

// LayerInfo is a stored layer's record (layers/HEX/layer.json).
type LayerInfo struct {
	DiffID         string `json:"diffId"`
	Digest         string `json:"digest"`
	CompressedSize int64  `json:"compressedSize"`
	Size           int64  `json:"size"`
}

type index struct {
	Images []*Image `json:"images"`
}

func (s Store) indexPath() string { return filepath.Join(s.Root, "images.json") }
func (s Store) blobPath(digest string) string {
	return filepath.Join(s.Root, "blobs", "sha256", hexOf(digest))
}
func (s Store) layerDir(diffID string) string { return filepath.Join(s.Root, "layers", hexOf(diffID)) }

// LayerDiff is the directory holding layer diffID's files: an overlayfs lower
// directory.
func (s Store) LayerDiff(diffID string) string { return filepath.Join(s.layerDir(diffID), "diff") }

func hexOf(digest string) string { return strings.TrimPrefix(digest, "sha256:") }

// Images returns the index; a store that was never written has no images.
func (s Store) Images() ([]*Image, error) {
	b, err := os.ReadFile(s.indexPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image store %s: read index: %w", s.Root, err)
	}
	var ix index
	if err := json.Unmarshal(b, &ix); err != nil {
		return nil, fmt.Errorf("image store %s: read index: %w", s.Root, err)
	}
	for i, img := range ix.Images {
		if err := img.check(); err != nil {
			return nil, fmt.Errorf("image store %s: read index: image %d: %w", s.Root, i+1, err)
		}
	}
	return ix.Images, nil
}

// check refuses an index entry that podbox never writes: a null, or an ID,
// manifest digest or layer that is not a sha256 digest. The layers name
// directories of the store that become a container's root filesystem, so
// a damaged index must not name one elsewhere ("sha256:../../etc").
func (img *Image) check() error {
	if img == nil {
		return errors.New("null")
	}
	for _, d := range append([]string{img.ID, img.Digest}, img.Layers...) {
		if err := ValidDigest(d); err != nil {
			return err
		}
	}
	return nil
}

// writeIndex replaces the index; the caller holds the index lock.
func (s Store) writeIndex(images []*Image) error {
	if images == nil {
		images = []*Image{}
	}
	b, err := json.MarshalIndent(index{Images: images}, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileSync(s.indexPath(), append(b, '\n')); err != nil {
		return fmt.Errorf("image store %s: write index: %w", s.Root, err)
	}
	return nil
}

// Resolve finds the image ref means: a name (normalized, so `busybox` finds
// docker.io/library/busybox:latest), NAME@DIGEST or a bare manifest digest,
// an image ID, or a unique prefix of an ID (with or without "sha256:").
func (s Store) Resolve(ref string) (*Image, error) {
	images, err := s.Images()
	if err != nil {
		return nil, err
	}
	return resolveIn(images, ref)
}

func resolveIn(images []*Image, ref string) (*Image, error) {
	if ValidDigest(ref) == nil {
		for _, img := range images {
			if img.ID == ref || img.Digest == ref {
				return img, nil
			}
		}
	}
	if r, err := ParseReference(ref); err == nil {
		name := r.String()
		for _, img := range images {
			if slices.Contains(img.Names, name) || r.Digest != "" && img.Digest == r.Digest {
				return img, nil
			}
		}
	}
	prefix := strings.TrimPrefix(ref, "sha256:")
	if len(prefix) >= 4 && isLowerHex(prefix) {
		var found *Image
		for _, img := range images {
			if strings.HasPrefix(hexOf(img.ID), prefix) {
				if found != nil && found.ID != img.ID {
					return nil, fmt.Errorf("image %q: ID prefix matches more than one image", ref)
				}
				found = img
			}
		}
		if found != nil {
			return found, nil
		}
	}
	return nil, fmt.Errorf("image %q: %w", ref, ErrNotFound)
}

// Config reads img's config from the store.
func (s Store) Config(img *Image) (*Config, error) {
	b, err := s.ReadBlob(img.ID)
	if err != nil {
		return nil, err
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("image %s: config: %w", short(img.ID), err)
	}
	return &c, nil
}

// ReadBlob returns the document stored under digest, checked against it:
// a store damaged on disk must not hand a different config to a container.
func (s Store) ReadBlob(digest string) ([]byte, error) {
	b, err := os.ReadFile(s.blobPath(digest))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", digest, err)
	}
	if got := Digest(b); got != digest {
		return nil, fmt.Errorf("blob %s: content on disk has digest %s", digest, got)
	}
	return b, nil
}

// Digest is the sha256 digest of b.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// LowerDirs are img's layer directories in overlayfs lowerdir order (top
// layer first), each checked to exist. An image without layers gets the
// store's empty directory, since overlayfs needs a lower directory.
func (s Store) LowerDirs(img *Image) ([]string, error) {
	if len(img.Layers) == 0 {
		dir := filepath.Join(s.Root, "empty")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("image %s: %w", short(img.ID), err)
		}
		return []string{dir}, nil
	}
	dirs := make([]string, 0, len(img.Layers))
	for i := len(img.Layers) - 1; i >= 0; i-- {
		d := s.LayerDiff(img.Layers[i])
		if _, err := os.Stat(d); err != nil {
			return nil, fmt.Errorf("image %s: layer %s missing from the store: %w", short(img.ID), short(img.Layers[i]), err)
		}
		dirs = append(dirs, d)
	}
	return dirs, nil
}

// HasLayer reports whether layer diffID is stored whole.
func (s Store) HasLayer(diffID string) bool {
	_, err := os.Stat(filepath.Join(s.layerDir(diffID), "layer.json"))
	return err == nil
}

// Layer reads layer diffID's record.
func (s Store) Layer(diffID string) (*LayerInfo, error) {
	b, err := os.ReadFile(filepath.Join(s.layerDir(diffID), "layer.json"))
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", short(diffID), err)
	}
	var l LayerInfo
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("layer %s: %w", short(diffID), err)
	}
	return &l, nil
}

// PutBlob stores a document under its digest, refusing content that does
// not match it.
func (s Store) PutBlob(digest string, b []byte) error {
	if err := ValidDigest(digest); err != nil {
		return err
	}
	if got := Digest(b); got != digest {
		return fmt.Errorf("blob %s: content has digest %s", digest, got)
	}
	p := s.blobPath(digest)
	if _, err := s.ReadBlob(digest); err == nil {
		return nil // stored and intact; a damaged copy is written anew
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("blob %s: %w", digest, err)
	}
	if err := writeFileSync(p, b); err != nil {
		return fmt.Errorf("blob %s: %w", digest, err)
	}
	return nil
}

// CommitLayer moves the layer unpacked in w (from NewLayerWork) into place
// as layer info.DiffID. A layer another pull committed meanwhile wins; w's
// copy is then discarded by its Close.
func (s Store) CommitLayer(w *Work, info LayerInfo) error {
	if err := ValidDigest(info.DiffID); err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	layer := filepath.Join(w.Dir, "layer")
	if err := os.WriteFile(filepath.Join(layer, "layer.json"), b, 0o600); err != nil {
		return fmt.Errorf("layer %s: %w", short(info.DiffID), err)
	}
	// The files must be on disk before the layer is in place: the index
	// that will name it is written with fsync, and a listed image must
	// never have a half-written layer after a power loss.
	if err := syncfs(layer); err != nil {
		return fmt.Errorf("layer %s: %w", short(info.DiffID), err)
	}
	if err := os.MkdirAll(filepath.Join(s.Root, "layers"), 0o700); err != nil {
		return fmt.Errorf("layer %s: %w", short(info.DiffID), err)
	}
	err = os.Rename(layer, s.layerDir(info.DiffID))
	if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("layer %s: %w", short(info.DiffID), err)
	}
	return nil
}

// AddImage lists img under its names. A name that pointed at another image
// moves to img (a tag that moved upstream); an image already listed under
// img.ID gains the names.
func (s Store) AddImage(img *Image) error {
	unlock, err := s.lock("index.lock", unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	images, err := s.Images()
	if err != nil {
		return err
	}
	var merged bool
	for _, other := range images {
		if other.ID == img.ID {
			for _, n := range img.Names {
				if !slices.Contains(other.Names, n) {
					other.Names = append(other.Names, n)
				}
			}
			other.Digest = img.Digest
			merged = true
			continue
		}
		other.Names = slices.DeleteFunc(other.Names, func(n string) bool { return slices.Contains(img.Names, n) })
	}
	if !merged {
		images = append(images, img)
	}
	return s.writeIndex(images)
}

func short(digest string) string {
	h := hexOf(digest)
	return h[:min(12, len(h))]
}

// writeFileSync writes b to path through a temporary file that is synced and
// renamed, so readers see the old content or the new, never a torn one.
func writeFileSync(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func syncfs(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// FormatSize renders a byte count as podbox shows image, layer and transfer
// sizes: decimal units, as docker and podman do.
func FormatSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	// Move up a unit when %.1f would round v to 1000 (999 999 B is
	// "1.0 MB", not "1000.0 kB").
	for v >= unit-0.05 && i < 4 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %cB", v, "kMGTP"[i])
}
