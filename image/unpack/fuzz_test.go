package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A layer comes from a registry: whatever it holds, Apply must write only
// inside its directory and forge no overlay metadata. The fuzz targets
// check that after every layer, applied or refused: the directory's parent
// holds only the layer and a secret file, unchanged (no write through a
// symlink, a "..", an absolute name or a hard link got out), and no file
// of the layer carries a trusted.overlay.* xattr other than the opaque
// marker of a directory, which only a whiteout entry makes.

// FuzzApply feeds arbitrary bytes to Apply as a layer tar. Mutated tar
// headers mostly fail their checksum, so this mainly tries archive/tar's
// reader and Apply's handling of broken streams; FuzzApplyEntries builds
// well-formed layers of hostile entries.
func FuzzApply(f *testing.F) {
	needRoot(f)
	for _, script := range applySeeds {
		b, ok := buildScript("/parent", script)
		if ok {
			f.Add(b)
		}
	}
	f.Add([]byte(strings.Repeat("this is not a tar stream\n", 40)))
	f.Fuzz(func(t *testing.T, layer []byte) {
		if !small(layer) {
			return
		}
		parent, d := fuzzLayerDir(t)
		Apply(context.Background(), d, bytes.NewReader(layer))
		checkLayer(t, parent, d)
	})
}

// FuzzApplyEntries applies a layer built from a script, one entry per
// line: KIND NAME [LINK], where KIND is f (a file), d (a directory), l (a
// symlink to LINK), h (a hard link to LINK), c, b, p (a character device,
// a block device, a FIFO) or x (a file with the xattr LINK set to "y").
// An absolute LINK of a symlink is taken below the directory that holds the
// layer, so that a symlink followed out of the layer lands where the check
// sees it, never in the machine's own /etc.
func FuzzApplyEntries(f *testing.F) {
	needRoot(f)
	for _, s := range applySeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, script string) {
		parent, d := fuzzLayerDir(t)
		layer, ok := buildScript(parent, script)
		if !ok {
			return
		}
		Apply(context.Background(), d, bytes.NewReader(layer))
		checkLayer(t, parent, d)
	})
}

// applySeeds are the layers of the unit tests (TestApplyTypes,
// TestApplyWhiteouts, TestApplyDuplicates, TestApplyHostile and
// TestApplyDropsOverlayXattrs) as scripts; "/" in a link stands for the
// layer's parent directory.
var applySeeds = []string{
	"d ./\nd ./etc/\nf ./etc/passwd\nf usr/bin/sudo\nx usr/bin/ping user.note\nl bin/sh /bin/busybox\nh usr/bin/sudoedit usr/bin/sudo\np run/fifo\nc dev/null\nb dev/loop0\nf etc/hostname",
	"d a/\nf a/.wh.foo\nf .wh.bar\nf c\nf .wh.c\nd a/d/\nf a/d/keep\nf a/d/.wh..wh..opq\nf new/sub/.wh..wh..opq\nf .wh..wh..opq\nd .wh..wh.plnk/\nf a/.wh..wh.aufs",
	"f x\nf x",
	"f x\nd x/",
	"d x/\nf x/child\nl x/sub /\nf x",
	"l x /etc/hostname\nf x",
	"l x /tmp\nd x/\nf x/child",
	"f ../evil",
	"f ./../evil",
	"f a/../../evil",
	"f a/../b",
	"d ../evil/",
	"f /evil",
	"l a /\nf a/evil",
	"l a ..\nf a/evil",
	"d d/\nl d/up ../..\nd d/up/evil/",
	"l a ..\nh b a\nf b/evil",
	"l a ..\nf a/.wh.secret",
	"l a ..\nf a/.wh..wh..opq",
	"f .wh...",
	"l a /\nh b a/secret",
	"h b ../secret",
	"h b /secret",
	"h b nothing",
	"x d trusted.overlay.opaque\nx f trusted.overlay.redirect\nx g trusted.overlay.metacopy",
	"l a ../secret\nh b a",
	"d a/\nl a/b ../../secret\nf a/b",
}

// buildScript makes a layer tar of a script (see FuzzApplyEntries); ok is
// false for a script archive/tar cannot write.
func buildScript(parent, script string) ([]byte, bool) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	lines := strings.Split(script, "\n")
	if len(lines) > 64 {
		return nil, false
	}
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		link := ""
		if len(f) > 2 {
			link = f[2]
		}
		hdr := &tar.Header{Name: f[1], Mode: 0o755, Format: tar.FormatPAX}
		body := ""
		switch f[0] {
		case "f":
			hdr.Typeflag, hdr.Mode, body = tar.TypeReg, 0o644, "content of "+f[1]
		case "d":
			hdr.Typeflag = tar.TypeDir
		case "l":
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, link
			if strings.HasPrefix(link, "/") {
				hdr.Linkname = parent + link
			}
		case "h":
			hdr.Typeflag, hdr.Linkname = tar.TypeLink, link
		case "c":
			hdr.Typeflag, hdr.Devmajor, hdr.Devminor = tar.TypeChar, 1, 3
		case "b":
			hdr.Typeflag, hdr.Devmajor = tar.TypeBlock, 7
		case "p":
			hdr.Typeflag = tar.TypeFifo
		case "x":
			hdr.Typeflag, body = tar.TypeReg, "x"
			hdr.PAXRecords = map[string]string{paxXattr + link: "y"}
		default:
			continue
		}
		hdr.Size = int64(len(body))
		if tw.WriteHeader(hdr) != nil {
			return nil, false
		}
		if _, err := io.WriteString(tw, body); err != nil {
			return nil, false
		}
	}
	if tw.Close() != nil {
		return nil, false
	}
	return buf.Bytes(), true
}

// small reports whether a layer's entries are all small, so that an
// arbitrary header cannot make a run write gigabytes (a sparse file's holes
// cost no input).
func small(layer []byte) bool {
	tr := tar.NewReader(bytes.NewReader(layer))
	for i := 0; ; i++ {
		hdr, err := tr.Next()
		if err != nil {
			return true
		}
		if hdr.Size > 1<<20 || i > 1000 {
			return false
		}
	}
}

// fuzzLayerDir is layerDir with the secret file beside the layer.
func fuzzLayerDir(t *testing.T) (parent, dir string) {
	parent, dir = layerDir(t)
	if err := os.WriteFile(filepath.Join(parent, "secret"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	return parent, dir
}

// checkLayer checks what every layer must leave: nothing outside dir
// changed, and no overlay metadata but directories' opaque markers.
func checkLayer(t *testing.T, parent, dir string) {
	t.Helper()
	assertContained(t, parent)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		names := make([]byte, 4096)
		n, err := unix.Llistxattr(p, names)
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, name := range strings.Split(strings.TrimRight(string(names[:n]), "\x00"), "\x00") {
			if !strings.HasPrefix(name, overlayXattr) {
				continue
			}
			v, _ := lgetxattr(p, name)
			if name != opaqueXattr || v != "y" || !d.IsDir() {
				t.Errorf("%s: %s = %q", p, name, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
