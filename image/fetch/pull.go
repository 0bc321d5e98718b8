package fetch

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/podbox/podbox/image/store"
)

// Options are a pull's or a load's choices.
type Options struct {
	// Platform is the one to pick from a multi-platform image; the node's
	// own when zero.
	Platform v1.Platform
	// Username and Password, when Username is set, are the registry
	// credentials (--creds); otherwise they come from the Docker config
	// (~/.docker/config.json, $DOCKER_CONFIG) as docker and podman read it.
	Username, Password string
	// Insecure allows plain HTTP and unverified TLS to any registry; without
	// it only a loopback registry may answer in plain HTTP, as with Docker.
	Insecure bool
	// Transport is the HTTP transport; http.DefaultTransport when nil.
	Transport http.RoundTripper
	Progress  Progress
}

func (o *Options) progress() Progress {
	if o.Progress == nil {
		return Quiet{}
	}
	return o.Progress
}

// Pull fetches ref from its registry into st and returns the stored image,
// listed under the normalized ref.
func Pull(ctx context.Context, st store.Store, ref string, o Options) (*store.Image, error) {
	img, err := pull(ctx, st, ref, o)
	if err != nil {
		return nil, fmt.Errorf("image %q: pull: %w", ref, err)
	}
	return img, nil
}

func pull(ctx context.Context, st store.Store, ref string, o Options) (*store.Image, error) {
	r, err := store.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	var nopts []name.Option
	if o.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	// go-containerregistry takes Docker Hub's API host for docker.io.
	nref, err := name.ParseReference(r.String(), nopts...)
	if err != nil {
		return nil, err
	}
	platform := o.Platform
	if platform.OS == "" {
		platform = NodePlatform()
	}
	ropts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithPlatform(platform),
		remote.WithTransport(plainHTTPGuard{next: o.transport(), insecure: o.Insecure}),
		remote.WithUserAgent("podbox"),
	}
	if o.Username != "" {
		ropts = append(ropts, remote.WithAuth(&authn.Basic{Username: o.Username, Password: o.Password}))
	} else {
		ropts = append(ropts, remote.WithAuthFromKeychain(authn.DefaultKeychain))
	}
	release, err := st.Use()
	if err != nil {
		return nil, err
	}
	defer release()
	if _, err := st.CleanTemp(); err != nil {
		return nil, err
	}
	desc, err := remote.Get(nref, ropts...)
	if err != nil {
		return nil, registryError(err)
	}
	img, err := desc.Image()
	if err != nil {
		return nil, registryError(err)
	}
	if cf, err := img.ConfigFile(); err == nil && !platformMatches(cf, platform) {
		return nil, fmt.Errorf("image is for %s, not %s (choose with --platform)",
			platformString(cf.OS, cf.Architecture, cf.Variant), platformString(platform.OS, platform.Architecture, platform.Variant))
	}
	rec, err := ingest(ctx, st, img, []string{r.String()}, source{compressedDigests: true}, o.progress())
	if err != nil {
		return nil, registryError(err)
	}
	return rec, nil
}

func (o *Options) transport() http.RoundTripper {
	if o.Transport != nil {
		return o.Transport
	}
	if o.Insecure {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = t.TLSClientConfig.Clone()
		if t.TLSClientConfig == nil {
			t.TLSClientConfig = new(tls.Config)
		}
		t.TLSClientConfig.InsecureSkipVerify = true
		return t
	}
	return http.DefaultTransport
}

// NodePlatform is the platform of this node's containers.
func NodePlatform() v1.Platform {
	return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

// platformMatches reports whether an image config is for p. A single-
// platform image with no platform in its config is taken as it is.
func platformMatches(cf *v1.ConfigFile, p v1.Platform) bool {
	if cf.OS == "" && cf.Architecture == "" {
		return true
	}
	if cf.OS != p.OS || cf.Architecture != p.Architecture {
		return false
	}
	return p.Variant == "" || cf.Variant == "" || cf.Variant == p.Variant
}

// plainHTTPGuard refuses plain HTTP to a registry the user did not mark
// insecure. go-containerregistry falls back to HTTP on its own for loopback
// and private (RFC 1918) addresses; Docker does it for loopback only, and
// podbox does as Docker does.
type plainHTTPGuard struct {
	next     http.RoundTripper
	insecure bool
}

func (g plainHTTPGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !g.insecure && !isLoopback(req.URL.Hostname()) {
		return nil, fmt.Errorf("registry %s answers only in plain HTTP; use --insecure to allow it", req.URL.Host)
	}
	return g.next.RoundTrip(req)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// registryError turns a registry's HTTP error into what a user can act on;
// other errors pass unchanged.
func registryError(err error) error {
	var te *transport.Error
	if !errors.As(err, &te) {
		return err
	}
	detail := ""
	if len(te.Errors) > 0 {
		detail = ": " + te.Errors[0].Message
	}
	switch {
	case te.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("registry refused the credentials (401 unauthorized%s); log in with docker login or pass --creds USER:PASSWORD: %w", detail, err)
	case te.StatusCode == http.StatusForbidden:
		return fmt.Errorf("registry denied access (403 forbidden%s): %w", detail, err)
	case te.StatusCode == http.StatusNotFound || hasCode(te, transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode):
		return fmt.Errorf("not found in the registry (404%s): %w", detail, err)
	}
	return err
}

func hasCode(te *transport.Error, codes ...transport.ErrorCode) bool {
	for _, e := range te.Errors {
		for _, c := range codes {
			if e.Code == c {
				return true
			}
		}
	}
	return false
}

// ParsePlatform parses --platform: OS/ARCH[/VARIANT].
func ParsePlatform(s string) (v1.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return v1.Platform{}, fmt.Errorf("--platform %q: want OS/ARCH[/VARIANT], e.g. linux/amd64", s)
	}
	p := v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}
