package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var (
	fileTime = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	// PAX headers carry sub-second times and atime.
	paxTime  = time.Date(2022, 5, 6, 7, 8, 9, 123456789, time.UTC)
	paxAtime = time.Date(2023, 1, 1, 0, 0, 0, 500, time.UTC)
	dirTime  = time.Date(2019, 1, 2, 3, 4, 5, 0, time.UTC)
)

func needRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			tb.Fatal("needs root")
		}
		tb.Skip("needs root")
	}
}

type tarEntry struct {
	hdr  tar.Header
	body string
}

func reg(name, body string, mode int64) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}, body: body}
}

func dir(name string, mode int64) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: dirTime}}
}

func symlink(name, target string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

func hardlink(name, target string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}}
}

func owned(e tarEntry, uid, gid int) tarEntry {
	e.hdr.Uid, e.hdr.Gid = uid, gid
	return e
}

func xattrs(e tarEntry, kv ...string) tarEntry {
	e.hdr.PAXRecords = map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		e.hdr.PAXRecords["SCHILY.xattr."+kv[i]] = kv[i+1]
	}
	return e
}

func buildTar(tb testing.TB, entries ...tarEntry) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.Size = int64(len(e.body))
		if h.ModTime.IsZero() {
			h.ModTime = fileTime
		}
		if err := tw.WriteHeader(&h); err != nil {
			tb.Fatalf("write header %q: %v", h.Name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// layerDir returns an empty layer dir inside a parent that holds nothing
// else, so that a write escaping the layer shows up in the parent.
func layerDir(t *testing.T) (parent, dir string) {
	t.Helper()
	parent = t.TempDir()
	dir = filepath.Join(parent, "layer")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return parent, dir
}

func apply(t *testing.T, dir string, entries ...tarEntry) (int64, error) {
	t.Helper()
	return Apply(context.Background(), dir, bytes.NewReader(buildTar(t, entries...)))
}

func lstat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func lgetxattr(p, name string) (string, error) {
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

func mtimeOf(st unix.Stat_t) time.Time {
	return time.Unix(st.Mtim.Unix()).UTC()
}

func TestApplyTypes(t *testing.T) {
	needRoot(t)
	_, d := layerDir(t)
	fifo := tarEntry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o620}}
	null := tarEntry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}}
	loop := tarEntry{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/loop0", Mode: 0o660, Devmajor: 7, Devminor: 0, Gid: 6}}
	pax := reg("pax", "pax", 0o644)
	pax.hdr.Format, pax.hdr.ModTime, pax.hdr.AccessTime = tar.FormatPAX, paxTime, paxAtime
	n, err := apply(t, d,
		dir("./", 0o755),
		dir("./etc/", 0o755),
		dir("./dev/", 0o755),
		owned(dir("srv/", 0o2775), 0, 50),
		reg("./etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644),
		owned(reg("usr/bin/sudo", "sudo binary", 0o4755), 0, 0),
		owned(reg("home/user/notes", "secret", 0o600), 1000, 1001),
		xattrs(reg("usr/bin/ping", "ping", 0o755), "user.note", "hello", "trusted.podbox", "t"),
		symlink("bin/sh", "/bin/busybox"),
		owned(symlink("home/user/link", "notes"), 1000, 1001),
		hardlink("usr/bin/sudoedit", "usr/bin/sudo"),
		fifo, null, loop,
		reg("etc/hostname", "late child", 0o644),
		pax,
	)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len("root:x:0:0::/root:/bin/sh\n") + len("sudo binary") + len("secret") + len("ping") + len("late child") + len("pax")); n != want {
		t.Errorf("Apply returned %d bytes, want %d", n, want)
	}

	for _, tc := range []struct {
		name     string
		mode     uint32 // st_mode: type and permission bits
		uid, gid uint32
		body     string
		link     string
		rdev     uint64
		mtime    time.Time
	}{
		{name: "etc", mode: unix.S_IFDIR | 0o755, mtime: dirTime},
		{name: "dev", mode: unix.S_IFDIR | 0o755, mtime: dirTime},
		{name: "srv", mode: unix.S_IFDIR | 0o2775, gid: 50, mtime: dirTime},
		{name: "etc/passwd", mode: unix.S_IFREG | 0o644, body: "root:x:0:0::/root:/bin/sh\n", mtime: fileTime},
		{name: "usr/bin/sudo", mode: unix.S_IFREG | 0o4755, body: "sudo binary", mtime: fileTime},
		{name: "home/user/notes", mode: unix.S_IFREG | 0o600, uid: 1000, gid: 1001, body: "secret", mtime: fileTime},
		{name: "usr", mode: unix.S_IFDIR | 0o755},
		{name: "usr/bin", mode: unix.S_IFDIR | 0o755},
		{name: "home/user", mode: unix.S_IFDIR | 0o755},
		{name: "bin/sh", mode: unix.S_IFLNK | 0o777, link: "/bin/busybox", mtime: fileTime},
		{name: "home/user/link", mode: unix.S_IFLNK | 0o777, uid: 1000, gid: 1001, link: "notes", mtime: fileTime},
		{name: "run/fifo", mode: unix.S_IFIFO | 0o620, mtime: fileTime},
		{name: "dev/null", mode: unix.S_IFCHR | 0o666, rdev: unix.Mkdev(1, 3), mtime: fileTime},
		{name: "dev/loop0", mode: unix.S_IFBLK | 0o660, gid: 6, rdev: unix.Mkdev(7, 0), mtime: fileTime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(d, tc.name)
			st := lstat(t, p)
			if st.Mode != tc.mode {
				t.Errorf("mode %#o, want %#o", st.Mode, tc.mode)
			}
			if st.Uid != tc.uid || st.Gid != tc.gid {
				t.Errorf("owner %d:%d, want %d:%d", st.Uid, st.Gid, tc.uid, tc.gid)
			}
			if st.Rdev != tc.rdev {
				t.Errorf("rdev %#x, want %#x", st.Rdev, tc.rdev)
			}
			if !tc.mtime.IsZero() && !mtimeOf(st).Equal(tc.mtime) {
				t.Errorf("mtime %v, want %v", mtimeOf(st), tc.mtime)
			}
			if st.Mode&unix.S_IFMT == unix.S_IFREG {
				if b, err := os.ReadFile(p); err != nil || string(b) != tc.body {
					t.Errorf("content %q (%v), want %q", b, err, tc.body)
				}
			}
			if tc.link != "" {
				if l, err := os.Readlink(p); err != nil || l != tc.link {
					t.Errorf("link %q (%v), want %q", l, err, tc.link)
				}
			}
		})
	}

	if st := lstat(t, filepath.Join(d, "pax")); !mtimeOf(st).Equal(paxTime) || !time.Unix(st.Atim.Unix()).Equal(paxAtime) {
		t.Errorf("pax: mtime %v atime %v, want %v and %v", mtimeOf(st), time.Unix(st.Atim.Unix()).UTC(), paxTime, paxAtime)
	}
	if a, b := lstat(t, filepath.Join(d, "usr/bin/sudo")), lstat(t, filepath.Join(d, "usr/bin/sudoedit")); a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("hard link: inodes %d and %d, nlink %d; want one inode, nlink 2", a.Ino, b.Ino, a.Nlink)
	}
	for name, want := range map[string]string{"user.note": "hello", "trusted.podbox": "t"} {
		if got, err := lgetxattr(filepath.Join(d, "usr/bin/ping"), name); err != nil || got != want {
			t.Errorf("xattr %s = %q (%v), want %q", name, got, err, want)
		}
	}
}

// patchHeader edits the first header of a tar stream and fixes its checksum,
// to make headers that archive/tar's writer will not.
func patchHeader(b []byte, edit func(hdr []byte)) []byte {
	hdr := b[:512]
	edit(hdr)
	copy(hdr[148:156], "        ")
	var sum int64
	for _, c := range hdr {
		sum += int64(c)
	}
	copy(hdr[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// TestApplyLegacyTypes checks headers of old tar writers: a file typed
// '\x00', and an old GNU sparse file ('S') whose hole must read as zeros.
func TestApplyLegacyTypes(t *testing.T) {
	needRoot(t)
	regA := patchHeader(buildTar(t, reg("old", "legacy", 0o644)), func(hdr []byte) { hdr[156] = 0 })
	gnu := reg("sparse", "abc", 0o644)
	gnu.hdr.Format = tar.FormatGNU
	sparse := patchHeader(buildTar(t, gnu), func(hdr []byte) {
		hdr[156] = tar.TypeGNUSparse
		copy(hdr[386:], "00000000005\x0000000000003\x00") // one fragment: 3 bytes at offset 5
		copy(hdr[483:], "00000000010\x00")                // real size 8
	})
	for _, tc := range []struct {
		name, file, want string
		layer            []byte
	}{
		{"TypeRegA", "old", "legacy", regA},
		{"TypeGNUSparse", "sparse", "\x00\x00\x00\x00\x00abc", sparse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, d := layerDir(t)
			n, err := Apply(context.Background(), d, bytes.NewReader(tc.layer))
			if err != nil {
				t.Fatal(err)
			}
			wantFile(t, filepath.Join(d, tc.file), tc.want, 0o644)
			if n != int64(len(tc.want)) {
				t.Errorf("Apply returned %d bytes, want %d", n, len(tc.want))
			}
		})
	}
}

func TestApplyWhiteouts(t *testing.T) {
	needRoot(t)
	_, d := layerDir(t)
	_, err := apply(t, d,
		dir("a/", 0o755),
		owned(reg("a/.wh.foo", "", 0o600), 7, 8),
		reg(".wh.bar", "", 0o600),
		reg("c", "replaced by its whiteout", 0o644),
		reg(".wh.c", "", 0o600),
		dir("a/d/", 0o755),
		reg("a/d/keep", "kept", 0o644),
		reg("a/d/.wh..wh..opq", "", 0o600),
		reg("new/sub/.wh..wh..opq", "", 0o600),
		reg(".wh..wh..opq", "", 0o600),
		dir(".wh..wh.plnk/", 0o700),
		reg("a/.wh..wh.aufs", "", 0o600),
	)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		uid, gid uint32
	}{{"a/foo", 7, 8}, {"bar", 0, 0}, {"c", 0, 0}} {
		st := lstat(t, filepath.Join(d, tc.name))
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			t.Errorf("%s: mode %#o rdev %#x, want a 0/0 char device", tc.name, st.Mode, st.Rdev)
		}
		if st.Uid != tc.uid || st.Gid != tc.gid {
			t.Errorf("%s: owner %d:%d, want %d:%d", tc.name, st.Uid, st.Gid, tc.uid, tc.gid)
		}
	}
	for _, name := range []string{"a/d", "new/sub", "."} {
		if v, err := lgetxattr(filepath.Join(d, name), "trusted.overlay.opaque"); err != nil || v != "y" {
			t.Errorf("%s: trusted.overlay.opaque = %q (%v), want y", name, v, err)
		}
	}
	if _, err := lgetxattr(filepath.Join(d, "a"), "trusted.overlay.opaque"); err == nil {
		t.Error("a: opaque, want not")
	}
	if _, err := os.Lstat(filepath.Join(d, "a/d/keep")); err != nil {
		t.Errorf("opaque marker removed a sibling from the same layer: %v", err)
	}
	for _, name := range []string{"a/.wh.foo", ".wh.bar", "a/d/.wh..wh..opq", ".wh..wh.plnk", "a/.wh..wh.aufs"} {
		if _, err := os.Lstat(filepath.Join(d, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists (%v), want not written", name, err)
		}
	}
}

func TestApplyDuplicates(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name    string
		entries []tarEntry
		check   func(t *testing.T, d string)
	}{
		{
			name:    "file then file",
			entries: []tarEntry{reg("x", "first, longer", 0o600), reg("x", "second", 0o644)},
			check: func(t *testing.T, d string) {
				wantFile(t, filepath.Join(d, "x"), "second", 0o644)
			},
		},
		{
			name:    "file then dir",
			entries: []tarEntry{reg("x", "file", 0o644), dir("x/", 0o750)},
			check: func(t *testing.T, d string) {
				wantDir(t, filepath.Join(d, "x"), 0o750)
			},
		},
		{
			name:    "dir then file",
			entries: []tarEntry{dir("x/", 0o755), reg("x/child", "c", 0o644), symlink("x/sub", "/"), reg("x", "file", 0o600)},
			check: func(t *testing.T, d string) {
				wantFile(t, filepath.Join(d, "x"), "file", 0o600)
			},
		},
		{
			name:    "dir then dir keeps children",
			entries: []tarEntry{dir("x/", 0o700), reg("x/child", "c", 0o644), owned(dir("x/", 0o755), 3, 4)},
			check: func(t *testing.T, d string) {
				st := wantDir(t, filepath.Join(d, "x"), 0o755)
				if st.Uid != 3 || st.Gid != 4 {
					t.Errorf("x owner %d:%d, want 3:4", st.Uid, st.Gid)
				}
				wantFile(t, filepath.Join(d, "x/child"), "c", 0o644)
			},
		},
		{
			// The symlink is replaced, not followed: the file lands in the layer.
			name:    "symlink then file",
			entries: []tarEntry{symlink("x", "/etc/hostname"), reg("x", "file", 0o644)},
			check: func(t *testing.T, d string) {
				wantFile(t, filepath.Join(d, "x"), "file", 0o644)
			},
		},
		{
			// Once the symlink is replaced, paths below it are fine again.
			name:    "symlink then dir then child",
			entries: []tarEntry{symlink("x", "/tmp"), dir("x/", 0o755), reg("x/child", "c", 0o644)},
			check: func(t *testing.T, d string) {
				wantDir(t, filepath.Join(d, "x"), 0o755)
				wantFile(t, filepath.Join(d, "x/child"), "c", 0o644)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, d := layerDir(t)
			if _, err := apply(t, d, tc.entries...); err != nil {
				t.Fatal(err)
			}
			tc.check(t, d)
		})
	}
}

func wantFile(t *testing.T, p, body string, perm uint32) {
	t.Helper()
	st := lstat(t, p)
	if st.Mode != unix.S_IFREG|perm {
		t.Errorf("%s: mode %#o, want regular file %#o", p, st.Mode, perm)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != body {
		t.Errorf("%s: content %q (%v), want %q", p, b, err, body)
	}
}

func wantDir(t *testing.T, p string, perm uint32) unix.Stat_t {
	t.Helper()
	st := lstat(t, p)
	if st.Mode != unix.S_IFDIR|perm {
		t.Errorf("%s: mode %#o, want directory %#o", p, st.Mode, perm)
	}
	return st
}

// TestApplyHostile feeds layers that try to write outside the layer dir.
// Next to the layer dir sits "secret"; after Apply the parent must hold
// exactly those two, and secret must be intact.
func TestApplyHostile(t *testing.T) {
	needRoot(t)
	const outside = "podbox-unpack-test-evil"
	for _, tc := range []struct {
		name    string
		entries func(parent string) []tarEntry
		wantErr string
	}{
		{
			name:    "dotdot",
			entries: func(string) []tarEntry { return []tarEntry{reg("../evil", "x", 0o644)} },
			wantErr: `layer entry "../evil": path escapes the layer`,
		},
		{
			name:    "dot slash dotdot",
			entries: func(string) []tarEntry { return []tarEntry{reg("./../evil", "x", 0o644)} },
			wantErr: `layer entry "./../evil": path escapes the layer`,
		},
		{
			name:    "inner dotdot",
			entries: func(string) []tarEntry { return []tarEntry{reg("a/../../evil", "x", 0o644)} },
			wantErr: `layer entry "a/../../evil": path escapes the layer`,
		},
		{
			name:    "dotdot that cleans inside",
			entries: func(string) []tarEntry { return []tarEntry{reg("a/../b", "x", 0o644)} },
			wantErr: `layer entry "a/../b": path escapes the layer`,
		},
		{
			name:    "dotdot dir",
			entries: func(string) []tarEntry { return []tarEntry{dir("../evil/", 0o755)} },
			wantErr: `layer entry "../evil/": path escapes the layer`,
		},
		{
			name:    "absolute",
			entries: func(parent string) []tarEntry { return []tarEntry{reg(parent+"/evil", "x", 0o644)} },
			wantErr: `/evil": path escapes the layer`,
		},
		{
			name:    "absolute etc",
			entries: func(string) []tarEntry { return []tarEntry{reg("/etc/"+outside, "x", 0o644)} },
			wantErr: `layer entry "/etc/` + outside + `": path escapes the layer`,
		},
		{
			name: "through symlink to parent",
			entries: func(parent string) []tarEntry {
				return []tarEntry{symlink("a", parent), reg("a/evil", "x", 0o644)}
			},
			wantErr: `layer entry "a/evil": through symlink "a"`,
		},
		{
			name: "through symlink to root",
			entries: func(string) []tarEntry {
				return []tarEntry{symlink("a", "/"), reg("a/"+outside, "x", 0o644)}
			},
			wantErr: `layer entry "a/` + outside + `": through symlink "a"`,
		},
		{
			name: "through relative symlink",
			entries: func(string) []tarEntry {
				return []tarEntry{symlink("a", ".."), reg("a/evil", "x", 0o644)}
			},
			wantErr: `layer entry "a/evil": through symlink "a"`,
		},
		{
			name: "through nested symlink",
			entries: func(string) []tarEntry {
				return []tarEntry{dir("d/", 0o755), symlink("d/up", "../.."), dir("d/up/evil/", 0o755)}
			},
			wantErr: `layer entry "d/up/evil/": through symlink "d/up"`,
		},
		{
			name: "symlink replaced by link to symlink",
			entries: func(string) []tarEntry {
				return []tarEntry{symlink("a", ".."), hardlink("b", "a"), reg("b/evil", "x", 0o644)}
			},
			wantErr: `layer entry "b": link target "a" is a symlink`,
		},
		{
			name: "whiteout through symlink",
			entries: func(string) []tarEntry {
				return []tarEntry{symlink("a", ".."), reg("a/.wh.secret", "", 0o600)}
			},
			wantErr: `layer entry "a/.wh.secret": through symlink "a"`,
		},
		{
			name: "opaque through symlink",
			entries: func(string) []tarEntry {
				return []tarEntry{symlink("a", ".."), reg("a/.wh..wh..opq", "", 0o600)}
			},
			wantErr: `layer entry "a/.wh..wh..opq": through symlink "a"`,
		},
		{
			name:    "whiteout of dotdot",
			entries: func(string) []tarEntry { return []tarEntry{reg(".wh...", "", 0o600)} },
			wantErr: `layer entry ".wh...": bad whiteout name ".."`,
		},
		{
			name: "hard link to absolute symlink",
			entries: func(string) []tarEntry {
				return []tarEntry{symlink("a", "/tmp"), hardlink("b", "a")}
			},
			wantErr: `layer entry "b": link target "a" is a symlink`,
		},
		{
			name: "hard link through symlink",
			entries: func(parent string) []tarEntry {
				return []tarEntry{symlink("a", parent), hardlink("b", "a/secret")}
			},
			wantErr: `layer entry "b": link target "a/secret": through symlink "a"`,
		},
		{
			name:    "hard link dotdot",
			entries: func(string) []tarEntry { return []tarEntry{hardlink("b", "../secret")} },
			wantErr: `layer entry "b": link target "../secret": path escapes the layer`,
		},
		{
			name:    "hard link absolute",
			entries: func(string) []tarEntry { return []tarEntry{hardlink("b", "/etc/passwd")} },
			wantErr: `layer entry "b": link target "/etc/passwd": path escapes the layer`,
		},
		{
			name:    "hard link missing",
			entries: func(string) []tarEntry { return []tarEntry{hardlink("b", "nothing")} },
			wantErr: `layer entry "b": link target "nothing": `,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent, d := layerDir(t)
			secret := filepath.Join(parent, "secret")
			if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := apply(t, d, tc.entries(parent)...)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Apply: %v, want error containing %q", err, tc.wantErr)
			}
			assertContained(t, parent)
			for _, p := range []string{"/" + outside, "/etc/" + outside, "/tmp/" + outside} {
				if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s exists (%v)", p, err)
					os.Remove(p)
				}
			}
			if _, err := os.Lstat(filepath.Join(d, "b")); !errors.Is(err, os.ErrNotExist) && strings.Contains(tc.name, "hard link") {
				t.Errorf("hard link b written (%v)", err)
			}
		})
	}
}

func assertContained(t *testing.T, parent string) {
	t.Helper()
	ents, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"layer", "secret"}) {
		t.Errorf("parent holds %q, want only layer and secret", names)
	}
	st := lstat(t, filepath.Join(parent, "secret"))
	if b, err := os.ReadFile(filepath.Join(parent, "secret")); err != nil || string(b) != "secret" || st.Nlink != 1 || st.Mode != unix.S_IFREG|0o600 {
		t.Errorf("secret changed: %q (%v), nlink %d, mode %#o", b, err, st.Nlink, st.Mode)
	}
	if _, err := lgetxattr(parent, "trusted.overlay.opaque"); err == nil {
		t.Error("parent made opaque")
	}
}

// TestApplyInsecurePathGodebug checks that archive/tar's own refusal of
// ".." (GODEBUG tarinsecurepath=0) still gives an error naming the entry.
func TestApplyInsecurePathGodebug(t *testing.T) {
	needRoot(t)
	t.Setenv("GODEBUG", "tarinsecurepath=0")
	parent, d := layerDir(t)
	if err := os.WriteFile(filepath.Join(parent, "secret"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := apply(t, d, reg("ok", "fine", 0o644), reg("../evil", "x", 0o644))
	if want := `layer entry "../evil": path escapes the layer`; err == nil || err.Error() != want {
		t.Errorf("Apply: %v, want %q", err, want)
	}
	assertContained(t, parent)
}

func TestApplyDropsOverlayXattrs(t *testing.T) {
	needRoot(t)
	_, d := layerDir(t)
	_, err := apply(t, d,
		xattrs(dir("d/", 0o755), "trusted.overlay.opaque", "y", "trusted.overlay.redirect", "/etc", "user.kept", "1"),
		xattrs(reg("f", "x", 0o644), "trusted.overlay.metacopy", "", "user.kept", "1"),
	)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"d", "f"} {
		for _, name := range []string{"trusted.overlay.opaque", "trusted.overlay.redirect", "trusted.overlay.metacopy"} {
			if v, err := lgetxattr(filepath.Join(d, p), name); err == nil {
				t.Errorf("%s: %s = %q set from the tar", p, name, v)
			}
		}
		if v, err := lgetxattr(filepath.Join(d, p), "user.kept"); err != nil || v != "1" {
			t.Errorf("%s: user.kept = %q (%v), want 1", p, v, err)
		}
	}
}

func TestApplyBadStreams(t *testing.T) {
	needRoot(t)
	big := strings.Repeat("0123456789", 1000)
	valid := buildTar(t, reg("small", "s", 0o644), reg("big", big, 0o644), reg("after", "a", 0o644))
	noise := make([]byte, 4096)
	rand.NewChaCha8([32]byte{1}).Read(noise)
	for _, tc := range []struct {
		name    string
		input   []byte
		wantErr string
	}{
		{"cut in file data", valid[:3*512+5000], `layer entry "big": read layer: unexpected EOF`},
		{"cut in header", valid[:512+512+100], `read layer: unexpected EOF`},
		{"not a tar", noise, `read layer: archive/tar: invalid tar header`},
		{"text", []byte(strings.Repeat("this is not a tar stream\n", 100)), `read layer: archive/tar: invalid tar header`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, d := layerDir(t)
			_, err := Apply(context.Background(), d, bytes.NewReader(tc.input))
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("Apply: %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestApplyNotEmpty(t *testing.T) {
	needRoot(t)
	_, d := layerDir(t)
	if err := os.Symlink("/", filepath.Join(d, "a")); err != nil {
		t.Fatal(err)
	}
	if _, err := apply(t, d, reg("f", "x", 0o644)); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("Apply into a non-empty dir: %v, want a not-empty error", err)
	}
}

func TestApplyCancelled(t *testing.T) {
	needRoot(t)
	var entries []tarEntry
	for i := range 100 {
		entries = append(entries, reg(fmt.Sprintf("f%03d", i), "data", 0o644))
	}
	layer := buildTar(t, entries...)

	t.Run("before", func(t *testing.T) {
		_, d := layerDir(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := Apply(ctx, d, bytes.NewReader(layer)); !errors.Is(err, context.Canceled) {
			t.Errorf("Apply: %v, want context.Canceled", err)
		}
	})
	t.Run("midway", func(t *testing.T) {
		_, d := layerDir(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		r := &cancelAfter{r: bytes.NewReader(layer), n: 10 * 1024, cancel: cancel}
		if _, err := Apply(ctx, d, r); !errors.Is(err, context.Canceled) {
			t.Errorf("Apply: %v, want context.Canceled", err)
		}
		ents, _ := os.ReadDir(d)
		if len(ents) == 0 || len(ents) >= 100 {
			t.Errorf("%d entries written, want some but not all", len(ents))
		}
	})
}

// cancelAfter cancels once n bytes were read, as a ^C during a pull would.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel func()
}

func (c *cancelAfter) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if c.n -= n; c.n <= 0 {
		c.cancel()
	}
	return n, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

func TestApplyReadsToEOF(t *testing.T) {
	needRoot(t)
	_, d := layerDir(t)
	layer := buildTar(t, reg("a", "abc", 0o644), dir("d/", 0o755))
	// GNU tar pads to a 10 KiB record; archive/tar stops at the two zero
	// blocks and never reads the rest.
	layer = append(layer, make([]byte, 10240-len(layer)%10240+10240)...)
	cr := &countingReader{r: bytes.NewReader(layer)}
	h := sha256.New()
	if _, err := Apply(context.Background(), d, io.TeeReader(cr, h)); err != nil {
		t.Fatal(err)
	}
	if cr.n != int64(len(layer)) {
		t.Errorf("read %d of %d bytes", cr.n, len(layer))
	}
	if want := sha256.Sum256(layer); !bytes.Equal(h.Sum(nil), want[:]) {
		t.Error("digest through a TeeReader differs from the stream's")
	}
}

func BenchmarkApply(b *testing.B) {
	needRoot(b)
	var entries []tarEntry
	body := strings.Repeat("x", 1000)
	for i := range 20 {
		entries = append(entries, dir(fmt.Sprintf("d%02d/", i), 0o755))
		for j := range 10 {
			entries = append(entries,
				reg(fmt.Sprintf("d%02d/f%02d", i, j), body, 0o644),
				symlink(fmt.Sprintf("d%02d/l%02d", i, j), fmt.Sprintf("/usr/lib/f%02d", j)))
		}
	}
	layer := buildTar(b, entries...)
	base := b.TempDir()
	b.SetBytes(int64(len(layer)))
	i := 0
	for b.Loop() {
		d := filepath.Join(base, fmt.Sprint(i))
		i++
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
		if _, err := Apply(context.Background(), d, bytes.NewReader(layer)); err != nil {
			b.Fatal(err)
		}
	}
}
