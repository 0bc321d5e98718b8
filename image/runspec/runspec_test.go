package runspec

import (
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

// files is an image's root with the users and groups the tests resolve.
var files = fstest.MapFS{
	"etc/passwd": {Data: []byte("root:x:0:0:root:/root:/bin/sh\n# a comment\napp:x:1234:1234:app:/app:/bin/sh\nshort:x:7\nnogroup:x:2000:2000::/:/bin/sh\n")},
	"etc/group":  {Data: []byte("root:x:0:\napp:x:1234:\nstaff:x:50:app,other\nwheel:x:10:app\nweb:x:33\n")},
}

func TestResolveCommand(t *testing.T) {
	img := Image{Entrypoint: []string{"/entry", "-x"}, Cmd: []string{"default"}}
	for _, tc := range []struct {
		name string
		img  Image
		o    Overrides
		want []string
	}{
		{"image's own", img, Overrides{}, []string{"/entry", "-x", "default"}},
		{"CMD replaces Cmd", img, Overrides{Cmd: []string{"mine"}}, []string{"/entry", "-x", "mine"}},
		{"--entrypoint drops Cmd", img, Overrides{Entrypoint: []string{"/other"}}, []string{"/other"}},
		{"--entrypoint and CMD", img, Overrides{Entrypoint: []string{"/other"}, Cmd: []string{"a"}}, []string{"/other", "a"}},
		{"--entrypoint '' and CMD", img, Overrides{Entrypoint: []string{}, Cmd: []string{"sh"}}, []string{"sh"}},
		{"Cmd only", Image{Cmd: []string{"sh", "-c", "x"}}, Overrides{}, []string{"sh", "-c", "x"}},
		{"no image", Image{}, Overrides{Cmd: []string{"true"}}, []string{"true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Resolve(tc.img, tc.o, files)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.Args, tc.want) {
				t.Errorf("args %q, want %q", p.Args, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name string
		img  Image
		o    Overrides
	}{
		{"nothing at all", Image{}, Overrides{}},
		{"--entrypoint '' without CMD", img, Overrides{Entrypoint: []string{}}},
		{"empty program", Image{Cmd: []string{""}}, Overrides{}},
	} {
		if _, err := Resolve(tc.img, tc.o, files); err == nil || !strings.Contains(err.Error(), "no command") {
			t.Errorf("%s: error %v, want no command", tc.name, err)
		}
	}
}

func TestResolveEnvAndDir(t *testing.T) {
	p, err := Resolve(Image{Cmd: []string{"x"}, Env: []string{"A=1", "B=2"}, WorkingDir: "/srv"}, Overrides{Env: []string{"B=3", "C=4"}}, files)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Env, []string{DefaultPath, "A=1", "B=3", "C=4"}) || p.Cwd != "/srv" {
		t.Errorf("env %q cwd %q", p.Env, p.Cwd)
	}
	p, _ = Resolve(Image{Cmd: []string{"x"}, Env: []string{"PATH=/opt/bin"}, WorkingDir: "/srv"}, Overrides{WorkingDir: "/tmp", Env: []string{"PATH=/bin"}}, files)
	if !slices.Equal(p.Env, []string{"PATH=/bin"}) || p.Cwd != "/tmp" {
		t.Errorf("image PATH overridden: env %q cwd %q", p.Env, p.Cwd)
	}
	p, _ = Resolve(Image{Cmd: []string{"x"}}, Overrides{}, files)
	if p.Cwd != "/" || p.UID != 0 || p.GID != 0 {
		t.Errorf("defaults: %+v", p)
	}
}

func TestResolveUser(t *testing.T) {
	for _, tc := range []struct {
		spec     string
		uid, gid uint32
		extra    []uint32
	}{
		{"", 0, 0, nil},
		{"root", 0, 0, nil},
		{"app", 1234, 1234, []uint32{50, 10}},
		{"1234", 1234, 1234, []uint32{50, 10}},
		{"app:staff", 1234, 50, []uint32{10}},
		{"app:33", 1234, 33, []uint32{50, 10}},
		{"4242", 4242, 0, nil}, // not in /etc/passwd: primary group 0
		{"4242:web", 4242, 33, nil},
		{"nogroup", 2000, 2000, nil},
		{"short", 7, 0, nil}, // a line without its GID field: group 0
	} {
		uid, gid, extra, err := ResolveUser(tc.spec, files)
		if err != nil || uid != tc.uid || gid != tc.gid || !slices.Equal(extra, tc.extra) {
			t.Errorf("ResolveUser(%q) = %d:%d %v, %v; want %d:%d %v", tc.spec, uid, gid, extra, err, tc.uid, tc.gid, tc.extra)
		}
	}
	for spec, want := range map[string]string{
		"nobody":      `user "nobody": not found in the container's /etc/passwd`,
		"app:nogrp":   `group "nogrp": not found in the container's /etc/group`,
		":50":         `user ":50": want USER[:GROUP]`,
		"app:":        `user "app:": want USER[:GROUP]`,
		"99999999999": `user "99999999999": not found`,
	} {
		if _, _, _, err := ResolveUser(spec, files); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ResolveUser(%q): error %v, want %q", spec, err, want)
		}
	}
	// Numbers need no /etc/passwd; names do.
	if uid, gid, _, err := ResolveUser("5:6", fstest.MapFS{}); err != nil || uid != 5 || gid != 6 {
		t.Errorf("numeric user without /etc/passwd: %d:%d %v", uid, gid, err)
	}
	if _, _, _, err := ResolveUser("app", fstest.MapFS{}); err == nil || !strings.Contains(err.Error(), "no readable /etc/passwd") {
		t.Errorf("a name without /etc/passwd: %v", err)
	}
}

func TestMergeEnv(t *testing.T) {
	got := MergeEnv([]string{"A=1", "B=2", "A=3"}, []string{"A=x", "C=", "B=y"})
	if !slices.Equal(got, []string{"A=x", "B=y", "A=3", "C="}) {
		t.Errorf("MergeEnv = %q", got)
	}
}
