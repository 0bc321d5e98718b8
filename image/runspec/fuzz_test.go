package runspec

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
)

// FuzzResolveUser resolves a user spec against arbitrary /etc/passwd and
// /etc/group contents: both come from the image's layers, which come from a
// registry, and the spec from the image's config or the user. It must never
// panic, and what it resolves is what was asked for: a numeric UID or GID is
// taken as it is; a name resolves to the ID its line in the file gives,
// never to 0 (root) because that ID does not parse; and the supplementary
// groups never repeat the primary one.
func FuzzResolveUser(f *testing.F) {
	passwd, group := files["etc/passwd"].Data, files["etc/group"].Data
	for _, spec := range []string{"", "root", "app", "1234", "app:staff", "app:33", "4242", "4242:web", "nogroup", "short",
		"nobody", "app:nogrp", ":50", "app:", "99999999999", "5:6"} {
		f.Add(spec, passwd, group)
	}
	f.Fuzz(func(t *testing.T, spec string, passwd, group []byte) {
		fsys := fstest.MapFS{"etc/passwd": {Data: passwd}, "etc/group": {Data: group}}
		uid, gid, extra, err := ResolveUser(spec, fsys)
		if err != nil {
			return
		}
		user, grp, hasGroup := strings.Cut(spec, ":")
		if spec == "" {
			user = "0"
		}
		if n, err := strconv.ParseUint(user, 10, 32); err == nil {
			if uid != uint32(n) {
				t.Fatalf("ResolveUser(%q) = UID %d", spec, uid)
			}
		} else {
			db, _ := readDB(fsys, "etc/passwd")
			e := findEntry(db, func(e []string) bool { return e[0] == user })
			if want, ok := parseID(e[2]); !ok || uid != want {
				t.Fatalf("ResolveUser(%q) = UID %d from the line %q of %q", spec, uid, strings.Join(e, ":"), passwd)
			}
		}
		if hasGroup {
			if n, err := strconv.ParseUint(grp, 10, 32); err == nil {
				if gid != uint32(n) {
					t.Fatalf("ResolveUser(%q) = GID %d", spec, gid)
				}
			} else {
				db, _ := readDB(fsys, "etc/group")
				e := findEntry(db, func(e []string) bool { return e[0] == grp })
				if want, ok := parseID(e[2]); !ok || gid != want {
					t.Fatalf("ResolveUser(%q) = GID %d from the line %q of %q", spec, gid, strings.Join(e, ":"), group)
				}
			}
		}
		if slices.Contains(extra, gid) {
			t.Fatalf("ResolveUser(%q) = GID %d, also among the supplementary %v", spec, gid, extra)
		}
	})
}
