package main

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestPullOnTerminal pulls with the terminal display, stdout and stderr
// being one terminal: the image ID must come after the display's last
// frame, which redraws the lines above the cursor and would overwrite it.
func TestPullOnTerminal(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	img, err := random.Image(1000, 2)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	ref := strings.TrimPrefix(srv.URL, "http://") + "/t/app:1"
	nref, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(nref, img); err != nil {
		t.Fatal(err)
	}
	id, _ := img.ConfigName()
	var term bytes.Buffer
	if code := run(context.Background(), []string{"pull", "--image-root", t.TempDir(), ref}, &term, &term, true); code != 0 {
		t.Fatalf("exit %d: %q", code, term.String())
	}
	out := term.String()
	if !strings.HasSuffix(out, id.String()+"\n") || !strings.Contains(out, "done") {
		t.Errorf("terminal output %q does not end in the image ID after the last frame", out)
	}

	term.Reset()
	if code := run(context.Background(), []string{"pull", "--image-root", t.TempDir(), "--creds", "nocolon", ref}, &term, &term, true); code != 1 || !strings.HasPrefix(term.String(), "podbox: --creds") {
		t.Errorf("bad --creds: exit %d, %q", code, term.String())
	}
	term.Reset()
	if code := run(context.Background(), []string{"fetch"}, &term, &term, false); code != 2 || !strings.Contains(term.String(), "usage") {
		t.Errorf("unknown command: exit %d, %q", code, term.String())
	}
}
