package fetch

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/podbox/podbox/image/store"
	"github.com/podbox/podbox/image/unpack"
)

// parallelLayers is how many layers are fetched and unpacked at once, as
// containerd's default: enough to keep a link busy, few enough that layers
// finish in order on a small node.
const parallelLayers = 3

// source says how far a source's blobs can be checked beyond their diff
// IDs: a registry and an OCI layout name each layer by its compressed
// digest and size; a `docker save` archive names layers by diff ID only.
type source struct {
	compressedDigests bool
}

// ingest stores img under names: its layers (those not stored yet),
// config and manifest, then its index entry. The caller holds st.Use().
func ingest(ctx context.Context, st store.Store, img v1.Image, names []string, src source, p Progress) (*store.Image, error) {
	rec, err := stage(ctx, st, img, names, src, p)
	if err != nil {
		return nil, err
	}
	if err := st.AddImage(rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// stage stores what img needs, as ingest does, and returns its index entry
// without listing it.
func stage(ctx context.Context, st store.Store, img v1.Image, names []string, src source, p Progress) (*store.Image, error) {
	manifest, err := img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	mdigest := store.Digest(manifest)
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cname, err := img.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	id := store.Digest(rawConfig)
	if id != cname.String() {
		return nil, fmt.Errorf("config %s: content has digest %s", cname, id)
	}
	var cfg store.Config
	if err := json.Unmarshal(rawConfig, &cfg); err != nil {
		return nil, fmt.Errorf("config %s: %w", cname, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("layers: %w", err)
	}
	if len(layers) != len(cfg.RootFS.DiffIDs) {
		return nil, fmt.Errorf("config %s lists %d layers, the manifest %d", cname, len(cfg.RootFS.DiffIDs), len(layers))
	}
	infos := make([]store.LayerInfo, len(layers))
	errs := make([]error, len(layers))
	sem := make(chan struct{}, parallelLayers)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i, l := range layers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			infos[i], errs[i] = fetchLayer(ctx, st, l, cfg.RootFS.DiffIDs[i], src, p)
			if errs[i] != nil {
				cancel() // one bad layer fails the image: stop the others
			}
		}()
	}
	wg.Wait()
	// The first error in layer order, unless it is only the cancellation
	// another layer's failure caused.
	var first error
	for _, err := range errs {
		if err != nil && (first == nil || errors.Is(first, context.Canceled) && !errors.Is(err, context.Canceled)) {
			first = err
		}
	}
	if first != nil {
		return nil, first
	}
	if err := st.PutBlob(id, rawConfig); err != nil {
		return nil, err
	}
	if err := st.PutBlob(mdigest, manifest); err != nil {
		return nil, err
	}
	rec := &store.Image{
		ID: id, Digest: mdigest, Names: names, Layers: cfg.RootFS.DiffIDs,
		Platform: platformString(cfg.OS, cfg.Architecture, cfg.Variant), AddedAt: time.Now().UTC(),
	}
	if rec.Names == nil {
		rec.Names = []string{}
	}
	if cfg.Created != nil {
		rec.Created = cfg.Created.UTC()
	}
	for _, in := range infos {
		rec.Size += in.Size
		rec.CompressedSize += in.CompressedSize
	}
	return rec, nil
}

func platformString(os, arch, variant string) string {
	s := os + "/" + arch
	if variant != "" {
		s += "/" + variant
	}
	return s
}

// fetchLayer stores layer l (diff ID diffID) unless the store has it.
func fetchLayer(ctx context.Context, st store.Store, l v1.Layer, diffID string, src source, p Progress) (store.LayerInfo, error) {
	if err := store.ValidDigest(diffID); err != nil {
		return store.LayerInfo{}, fmt.Errorf("layer: diff ID: %w", err)
	}
	var want v1.Hash
	var wantSize int64 = -1
	if src.compressedDigests {
		var err error
		if want, err = l.Digest(); err != nil {
			return store.LayerInfo{}, fmt.Errorf("layer %s: %w", short(diffID), err)
		}
		if wantSize, err = l.Size(); err != nil {
			return store.LayerInfo{}, fmt.Errorf("layer %s: %w", short(diffID), err)
		}
	}
	label := short(diffID)
	if src.compressedDigests {
		label = short(want.String())
	}
	if st.HasLayer(diffID) {
		info, err := st.Layer(diffID)
		if err != nil {
			return store.LayerInfo{}, err
		}
		p.Layer(label, info.CompressedSize)
		p.LayerDone(label, true)
		return *info, nil
	}
	p.Layer(label, wantSize)
	work, diffDir, err := st.NewLayerWork()
	if err != nil {
		return store.LayerInfo{}, err
	}
	defer work.Close()

	var rc io.ReadCloser
	if src.compressedDigests {
		rc, err = l.Compressed()
	} else {
		rc, err = l.Uncompressed()
	}
	if err != nil {
		return store.LayerInfo{}, fmt.Errorf("layer %s: %w", label, err)
	}
	defer rc.Close()
	counted := &countingReader{r: rc, h: sha256.New(), advance: func(n int64) { p.Advance(label, n) }}
	tarStream, closeDecomp, err := decompress(counted)
	if err != nil {
		return store.LayerInfo{}, fmt.Errorf("layer %s: %w", label, err)
	}
	defer closeDecomp()
	diffHash := sha256.New()
	size, err := unpack.Apply(ctx, diffDir, io.TeeReader(tarStream, diffHash))
	if err != nil {
		return store.LayerInfo{}, fmt.Errorf("layer %s: %w", label, err)
	}
	// The decompressor may stop at the end of its stream; the blob's digest
	// covers every byte the registry sent.
	if _, err := io.Copy(io.Discard, counted); err != nil {
		return store.LayerInfo{}, fmt.Errorf("layer %s: %w", label, err)
	}
	if src.compressedDigests {
		got := "sha256:" + hex.EncodeToString(counted.h.Sum(nil))
		if got != want.String() {
			return store.LayerInfo{}, fmt.Errorf("layer %s: digest mismatch: manifest says %s, content is %s", label, want, got)
		}
		if wantSize >= 0 && counted.n != wantSize {
			return store.LayerInfo{}, fmt.Errorf("layer %s: size mismatch: manifest says %d bytes, got %d", label, wantSize, counted.n)
		}
	}
	if got := "sha256:" + hex.EncodeToString(diffHash.Sum(nil)); got != diffID {
		return store.LayerInfo{}, fmt.Errorf("layer %s: diff ID mismatch: config says %s, content is %s", label, diffID, got)
	}
	info := store.LayerInfo{DiffID: diffID, CompressedSize: counted.n, Size: size}
	if src.compressedDigests {
		info.Digest = want.String()
	}
	if err := st.CommitLayer(work, info); err != nil {
		return store.LayerInfo{}, err
	}
	p.LayerDone(label, false)
	return info, nil
}

// decompress returns the tar stream inside r: gzip and zstd are recognised
// by their magic numbers, anything else is taken as a plain tar.
func decompress(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		z, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return z, func() { z.Close() }, nil
	case len(magic) == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd:
		z, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return z, z.Close, nil
	}
	return br, func() {}, nil
}

// countingReader hashes and counts what passes, and reports progress.
type countingReader struct {
	r       io.Reader
	h       hash.Hash
	n       int64
	advance func(int64)
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if n > 0 {
		c.h.Write(b[:n])
		c.n += int64(n)
		c.advance(int64(n))
	}
	return n, err
}

func short(digest string) string {
	if len(digest) > 7 && digest[:7] == "sha256:" {
		digest = digest[7:]
	}
	return digest[:min(12, len(digest))]
}
