package store_test

import (
	"strings"
	"testing"

	"github.com/podbox/podbox/image/store"
)

// refSeeds are the references of TestParseReference and
// TestParseReferenceErrors.
var refSeeds = []string{
	"busybox", "busybox:1.36", "user/app", "docker.io/busybox", "index.docker.io/x", "localhost/app",
	"localhost:5000/app:1", "127.0.0.1:5000/a/b/c:v1.2", "Reg.IO/a_b__c-d.e/f--g:Tag_1-x.y",
	"reg.io/x@sha256:" + hex64, "name:tag@sha256:" + hex64, "localhost:5000",
	"", "UPPER", "docker.io/Library/x", "a//b", "x/", "reg.io/", "x:", "x:.tag", "x:a+b",
	"x@sha256:abc", "x@md5:" + hex64[:32], "x@", "a-/b", "-a", "a/_b", "a..b", "a b",
	"reg.io:/x", "reg.io:5x/x", "re_g.io/x", strings.Repeat("a", 256),
}

// FuzzParseReference checks image references, which come from users and
// from manifests off the internet, and name the directories and index
// entries of the store. A reference it accepts has a registry host, a path
// and a tag or digest of the allowed characters (nothing a path could climb
// out with), and its normalized form (String, the name images are stored
// under) parses to the same reference: normalizing twice changes nothing.
func FuzzParseReference(f *testing.F) {
	for _, s := range refSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		r, err := store.ParseReference(ref)
		if err != nil {
			return
		}
		if r.Domain == "" || r.Path == "" || r.Tag == "" && r.Digest == "" {
			t.Fatalf("ParseReference(%q) = %+v", ref, r)
		}
		if r.Digest != "" && store.ValidDigest(r.Digest) != nil {
			t.Fatalf("ParseReference(%q): digest %q", ref, r.Digest)
		}
		for _, c := range strings.Split(r.Path, "/") {
			if c == "" || c == "." || c == ".." {
				t.Fatalf("ParseReference(%q): path %q", ref, r.Path)
			}
		}
		again, err := store.ParseReference(r.String())
		if err != nil || again != r {
			t.Fatalf("ParseReference(%q) = %+v, whose String %q parses as %+v, %v", ref, r, r.String(), again, err)
		}
	})
}
