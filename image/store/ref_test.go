package store_test

import (
	"strings"
	"testing"

	"github.com/podbox/podbox/image/store"
)

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseReference(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want store.Reference
		str  string
	}{
		{"busybox", store.Reference{Domain: "docker.io", Path: "library/busybox", Tag: "latest"}, "docker.io/library/busybox:latest"},
		{"busybox:1.36", store.Reference{Domain: "docker.io", Path: "library/busybox", Tag: "1.36"}, "docker.io/library/busybox:1.36"},
		{"user/app", store.Reference{Domain: "docker.io", Path: "user/app", Tag: "latest"}, "docker.io/user/app:latest"},
		{"docker.io/busybox", store.Reference{Domain: "docker.io", Path: "library/busybox", Tag: "latest"}, "docker.io/library/busybox:latest"},
		{"index.docker.io/x", store.Reference{Domain: "docker.io", Path: "library/x", Tag: "latest"}, "docker.io/library/x:latest"},
		{"localhost/app", store.Reference{Domain: "localhost", Path: "app", Tag: "latest"}, "localhost/app:latest"},
		{"localhost:5000/app:1", store.Reference{Domain: "localhost:5000", Path: "app", Tag: "1"}, "localhost:5000/app:1"},
		{"127.0.0.1:5000/a/b/c:v1.2", store.Reference{Domain: "127.0.0.1:5000", Path: "a/b/c", Tag: "v1.2"}, "127.0.0.1:5000/a/b/c:v1.2"},
		{"Reg.IO/a_b__c-d.e/f--g:Tag_1-x.y", store.Reference{Domain: "Reg.IO", Path: "a_b__c-d.e/f--g", Tag: "Tag_1-x.y"}, "Reg.IO/a_b__c-d.e/f--g:Tag_1-x.y"},
		{"reg.io/x@sha256:" + hex64, store.Reference{Domain: "reg.io", Path: "x", Digest: "sha256:" + hex64}, "reg.io/x@sha256:" + hex64},
		{"name:tag@sha256:" + hex64, store.Reference{Domain: "docker.io", Path: "library/name", Tag: "tag", Digest: "sha256:" + hex64}, "docker.io/library/name:tag@sha256:" + hex64},
		// A port-like suffix without a slash after it is a tag, as in Docker.
		{"localhost:5000", store.Reference{Domain: "docker.io", Path: "library/localhost", Tag: "5000"}, "docker.io/library/localhost:5000"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := store.ParseReference(tc.in)
			if err != nil {
				t.Fatalf("ParseReference(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseReference(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
			if got.String() != tc.str {
				t.Errorf("String() = %q, want %q", got.String(), tc.str)
			}
			// The normalized form parses to itself.
			again, err := store.ParseReference(got.String())
			if err != nil || again != got {
				t.Errorf("ParseReference(%q) = %+v, %v; want %+v", got.String(), again, err, got)
			}
		})
	}
}

func TestParseReferenceErrors(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"", "empty"},
		{"UPPER", "lowercase"},
		{"docker.io/Library/x", "lowercase"},
		{"docker.io/aBc", "invalid character"},
		{"a//b", "empty path component"},
		{"x/", "empty path component"},
		{"reg.io/", "empty path component"},
		{"x:", "invalid tag"},
		{"x:.tag", "invalid tag"},
		{"x:-tag", "invalid tag"},
		{"x:a+b", "invalid tag"},
		{"x:" + strings.Repeat("t", 129), "invalid tag"},
		{"x@sha256:abc", "digest"},
		{"x@sha256:" + strings.ToUpper(hex64), "digest"},
		{"x@md5:" + hex64[:32], "digest"},
		{"x@", "digest"},
		{"a-/b", "must start and end"},
		{"a/b-", "must start and end"},
		{"-a", "must start and end"},
		{"a/_b", "must start and end"},
		{"a..b", "consecutive dots"},
		{"a b", "invalid character"},
		{"reg.io:/x", "invalid registry host"},
		{"reg.io:5x/x", "invalid registry host"},
		{"re_g.io/x", "invalid registry host"},
		{strings.Repeat("a", 256), "longer than 255"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			r, err := store.ParseReference(tc.in)
			if err == nil {
				t.Fatalf("ParseReference(%q) = %+v, want an error", tc.in, r)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseReference(%q): %v, want it to mention %q", tc.in, err, tc.want)
			}
		})
	}
}

func TestValidDigest(t *testing.T) {
	if err := store.ValidDigest("sha256:" + hex64); err != nil {
		t.Errorf("ValidDigest: %v", err)
	}
	for _, d := range []string{"", hex64, "sha256:", "sha256:" + hex64[1:], "sha256:" + hex64 + "0", "sha512:" + hex64, "sha256:" + strings.Replace(hex64, "a", "g", 1)} {
		if err := store.ValidDigest(d); err == nil {
			t.Errorf("ValidDigest(%q) = nil, want an error", d)
		}
	}
	if got, want := store.Digest([]byte("")), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"; got != want {
		t.Errorf("Digest(\"\") = %s, want %s", got, want)
	}
}
