package store

import (
	"fmt"
	"strings"
)

// DefaultDomain is the registry a reference without a host names, as in
// Docker, podman and containerd: `busybox` is
// docker.io/library/busybox:latest.
const DefaultDomain = "docker.io"

// Reference is a parsed image reference: [DOMAIN/]PATH[:TAG][@DIGEST].
type Reference struct {
	Domain string // registry host[:port], DefaultDomain when none was given
	Path   string // repository path, library/NAME on Docker Hub
	Tag    string // "latest" when neither tag nor digest was given
	Digest string // sha256:HEX, or ""
}

// Repository is DOMAIN/PATH.
func (r Reference) Repository() string { return r.Domain + "/" + r.Path }

// String is the normalized reference: the name images are stored under.
func (r Reference) String() string {
	s := r.Repository()
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// ParseReference parses and normalizes ref the way Docker's reference
// package does, without its regular expressions (compiled at every start of
// the CLI, which links this package): the first path component is a
// registry host when it has a dot or a colon or is "localhost"; Docker Hub's
// single-component names get "library/"; no tag and no digest means
// ":latest".
func ParseReference(ref string) (Reference, error) {
	bad := func(why string) (Reference, error) {
		return Reference{}, fmt.Errorf("image reference %q: %s", ref, why)
	}
	if ref == "" {
		return bad("empty")
	}
	var r Reference
	rest := ref
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		rest, r.Digest = rest[:i], rest[i+1:]
		if err := ValidDigest(r.Digest); err != nil {
			return bad(err.Error())
		}
	}
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.Contains(rest[i+1:], "/") {
		rest, r.Tag = rest[:i], rest[i+1:]
		if !validTag(r.Tag) {
			return bad("invalid tag " + fmt.Sprintf("%q", r.Tag))
		}
	}
	if first, tail, ok := strings.Cut(rest, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		r.Domain, r.Path = first, tail
		if !validDomain(first) {
			return bad(fmt.Sprintf("invalid registry host %q", first))
		}
	} else {
		r.Domain, r.Path = DefaultDomain, rest
	}
	if r.Domain == "index.docker.io" {
		r.Domain = DefaultDomain
	}
	if r.Domain == DefaultDomain && !strings.Contains(r.Path, "/") {
		r.Path = "library/" + r.Path
	}
	if err := validPath(r.Path); err != nil {
		return bad(err.Error())
	}
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	return r, nil
}

// validPath checks the repository path: components of lowercase letters and
// digits, separated inside a component by '.', '_', '__' or runs of '-'.
func validPath(p string) error {
	if len(p) > 255 {
		return fmt.Errorf("repository name longer than 255 characters")
	}
	for _, c := range strings.Split(p, "/") {
		if c == "" {
			return fmt.Errorf("empty path component in %q", p)
		}
		if !isAlnum(c[0]) || !isAlnum(c[len(c)-1]) {
			return fmt.Errorf("path component %q must start and end with a lowercase letter or digit", c)
		}
		for i := 0; i < len(c); i++ {
			switch ch := c[i]; {
			case isAlnum(ch):
			case ch == '.' || ch == '_' || ch == '-':
				if ch == '.' && (c[i-1] == '.' || c[i+1] == '.') {
					return fmt.Errorf("path component %q has consecutive dots", c)
				}
			default:
				return fmt.Errorf("path component %q: invalid character %q (lowercase letters, digits, '.', '_' and '-' only)", c, ch)
			}
		}
	}
	return nil
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func validTag(t string) bool {
	if t == "" || len(t) > 128 || t[0] == '.' || t[0] == '-' {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(isAlnum(c) || c >= 'A' && c <= 'Z' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func validDomain(d string) bool {
	host, port, hasPort := strings.Cut(d, ":")
	if host == "" || hasPort && port == "" {
		return false
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return false
		}
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(isAlnum(c) || c >= 'A' && c <= 'Z' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// ValidDigest checks a sha256 digest, the only algorithm podbox stores.
func ValidDigest(d string) error {
	hex, ok := strings.CutPrefix(d, "sha256:")
	if !ok {
		return fmt.Errorf("digest %q: want sha256:<64 hex digits>", d)
	}
	if len(hex) != 64 || !isLowerHex(hex) {
		return fmt.Errorf("digest %q: want sha256:<64 hex digits>", d)
	}
	return nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}
