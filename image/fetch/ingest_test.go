package fetch

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"

	"github.com/podbox/podbox/image/store"
)

// lyingLayer is a layer whose manifest entry (digest, size) says other
// than its content: what a registry or an archive that serves the wrong
// bytes looks like to fetchLayer, with nothing below it checking.
type lyingLayer struct {
	v1.Layer
	digest *v1.Hash
	size   *int64
}

func (l lyingLayer) Digest() (v1.Hash, error) {
	if l.digest != nil {
		return *l.digest, nil
	}
	return l.Layer.Digest()
}

func (l lyingLayer) Size() (int64, error) {
	if l.size != nil {
		return *l.size, nil
	}
	return l.Layer.Size()
}

func zstdOf(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestFetchLayer(t *testing.T) {
	needRoot(t)
	tarb := tarOf(t, file("etc/hostname", "box\n"), file("empty", ""))
	diffID := store.Digest(tarb)
	gz := gzipOf(t, tarb)
	zs := zstdOf(t, tarb)
	for _, tc := range []struct {
		name  string
		layer v1.Layer
		src   source
	}{
		{"gzip", static.NewLayer(gz, types.OCILayer), source{compressedDigests: true}},
		{"zstd", static.NewLayer(zs, types.OCILayerZStd), source{compressedDigests: true}},
		{"plain tar", static.NewLayer(tarb, types.OCIUncompressedLayer), source{compressedDigests: true}},
		{"docker archive", static.NewLayer(tarb, types.DockerLayer), source{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newStoreEnv(t)
			rec := newRecorder()
			info, err := fetchLayer(context.Background(), e.st, tc.layer, diffID, tc.src, rec)
			if err != nil {
				t.Fatal(err)
			}
			blob, _ := tc.layer.Compressed()
			b, _ := io.ReadAll(blob)
			if tc.src.compressedDigests {
				if info.Digest != store.Digest(b) || info.CompressedSize != int64(len(b)) {
					t.Errorf("info %+v, want digest %s and %d bytes", info, store.Digest(b), len(b))
				}
			} else if info.Digest != "" {
				t.Errorf("a docker archive's layer got a digest: %+v", info)
			}
			if info.DiffID != diffID || info.Size != 4 {
				t.Errorf("info %+v", info)
			}
			if s := readFile(t, filepath.Join(e.st.LayerDiff(diffID), "etc", "hostname")); s != "box\n" {
				t.Errorf("etc/hostname = %q", s)
			}
			stored, err := e.st.Layer(diffID)
			if err != nil || *stored != info {
				t.Errorf("stored record %+v, %v; want %+v", stored, err, info)
			}
			if len(rec.done) != 1 {
				t.Errorf("progress: %q", rec.events)
			}
			e.wantTmpEmpty(t)
		})
	}
}

func TestFetchLayerChecks(t *testing.T) {
	needRoot(t)
	tarb := tarOf(t, file("etc/hostname", "box\n"))
	diffID := store.Digest(tarb)
	gz := gzipOf(t, tarb)
	good := static.NewLayer(gz, types.OCILayer)
	other := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	bigger, smaller := int64(len(gz)+1), int64(len(gz)-1)
	for _, tc := range []struct {
		name   string
		layer  v1.Layer
		diffID string
		src    source
		want   string
	}{
		{"digest", lyingLayer{Layer: good, digest: &other}, diffID, source{compressedDigests: true}, "digest mismatch"},
		{"size larger", lyingLayer{Layer: good, size: &bigger}, diffID, source{compressedDigests: true}, "size mismatch"},
		{"size smaller", lyingLayer{Layer: good, size: &smaller}, diffID, source{compressedDigests: true}, "size mismatch"},
		{"diff ID", good, store.Digest([]byte("other")), source{compressedDigests: true}, "diff ID mismatch"},
		{"diff ID of a docker archive", static.NewLayer(tarb, types.DockerLayer), store.Digest([]byte("other")), source{}, "diff ID mismatch"},
		{"invalid diff ID", good, "sha256:xyz", source{compressedDigests: true}, "diff ID"},
		{"trailing garbage", static.NewLayer(append(bytes.Clone(gz), "garbage"...), types.OCILayer), diffID, source{compressedDigests: true}, "read layer"},
		{"not a tar", static.NewLayer(gzipOf(t, bytes.Repeat([]byte("x"), 2048)), types.OCILayer), diffID, source{compressedDigests: true}, "layer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newStoreEnv(t)
			_, err := fetchLayer(context.Background(), e.st, tc.layer, tc.diffID, tc.src, Quiet{})
			t.Logf("fetchLayer: %v", err)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("fetchLayer: %v, want an error mentioning %q", err, tc.want)
			}
			if e.st.HasLayer(diffID) || e.st.HasLayer(tc.diffID) {
				t.Errorf("the layer was committed")
			}
			if entries, _ := os.ReadDir(filepath.Join(e.st.Root, "layers")); len(entries) != 0 {
				t.Errorf("layers/ holds %v", entries)
			}
			e.wantTmpEmpty(t)
		})
	}
}

func TestDecompress(t *testing.T) {
	plain := tarOf(t, file("f", "content"))
	for _, tc := range []struct {
		name string
		in   []byte
		want []byte
	}{
		{"gzip", gzipOf(t, plain), plain},
		{"zstd", zstdOf(t, plain), plain},
		{"plain", plain, plain},
		{"empty", nil, nil},
		{"short", []byte{0x1f}, []byte{0x1f}},
	} {
		r, closeFn, err := decompress(bytes.NewReader(tc.in))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		got, err := io.ReadAll(r)
		closeFn()
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: %d bytes, %v; want %d bytes", tc.name, len(got), err, len(tc.want))
		}
	}
	if _, _, err := decompress(bytes.NewReader([]byte{0x1f, 0x8b, 0, 0})); err == nil {
		t.Errorf("a broken gzip header was accepted")
	}
	if _, _, err := decompress(iotestErrReader{}); err == nil {
		t.Errorf("a read error was ignored")
	}
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("boom") }

// configLies is an image whose config is not what its manifest names.
type configLies struct {
	v1.Image
	raw []byte
}

func (c configLies) RawConfigFile() ([]byte, error) { return c.raw, nil }

func TestIngestChecksConfig(t *testing.T) {
	needRoot(t)
	base, app := twoLayers(t)
	img := imageOf(t, NodePlatform().Architecture, base, app)
	raw, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	e := newStoreEnv(t)
	// A config that differs from the one the manifest names.
	changed := bytes.Replace(raw, []byte("/bin/app"), []byte("/bin/evil"), 1)
	_, err = ingest(context.Background(), e.st, configLies{img, changed}, []string{"example.com/x:1"}, source{compressedDigests: true}, Quiet{})
	if err == nil || !strings.Contains(err.Error(), "content has digest") {
		t.Errorf("ingest of a config that is not the manifest's: %v", err)
	}
	e.wantNoImages(t)
	e.wantTmpEmpty(t)
}
