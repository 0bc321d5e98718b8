package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podbox/podbox/image/store"
)

// addImage lists a fake image in the test root's store.
func (e *testEnv) addImage(t *testing.T, names ...string) *store.Image {
	t.Helper()
	st := store.Store{Root: filepath.Join(e.root, "images")}
	cfg := []byte(`{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[]}}`)
	img := &store.Image{ID: store.Digest(cfg), Digest: store.Digest([]byte("manifest " + strings.Join(names, ","))), Names: names, Layers: []string{}, Platform: "linux/amd64"}
	if err := st.PutBlob(img.ID, cfg); err != nil {
		t.Fatal(err)
	}
	if err := st.AddImage(img); err != nil {
		t.Fatal(err)
	}
	return img
}

func TestImageCommands(t *testing.T) {
	e := newTestEnv(t)
	code, out, stderr := e.run("image", "ls", "-o", "json")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("image ls of an empty store: exit %d, %q %q", code, out, stderr)
	}
	img := e.addImage(t, "docker.io/library/busybox:latest")
	code, out, _ = e.run("image", "ls")
	if code != 0 || !strings.Contains(out, "docker.io/library/busybox:latest") || !strings.Contains(out, img.ID[7:19]) {
		t.Errorf("image ls: %q", out)
	}
	// Short names resolve as docker's do.
	code, out, stderr = e.run("image", "inspect", "busybox")
	var views []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &views) != nil || len(views) != 1 || views[0]["id"] != img.ID {
		t.Errorf("image inspect busybox: exit %d, %q %q", code, out, stderr)
	}
	// A container that uses the image keeps it.
	sb := e.addSandbox("web", "ready", true)
	c := e.addContainer(sb, "srv", "running")
	c.ImageID = img.ID
	if err := e.store().SaveContainer(c); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = e.run("image", "rm", "busybox")
	assertOneLineError(t, code, stderr, `image "busybox"`, `in use by container "srv"`)
	code, out, _ = e.run("image", "rm", "-f", "busybox")
	if code != 0 || !strings.Contains(out, "Untagged: docker.io/library/busybox:latest") {
		t.Errorf("image rm -f: %q", out)
	}
	code, out, _ = e.run("image", "prune", "-a", "-o", "json")
	if code != 0 || strings.Contains(out, img.ID) {
		t.Errorf("prune deleted an image a container uses: %q", out)
	}
}

func TestImageCommandsBadInput(t *testing.T) {
	e := newTestEnv(t)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"image", "inspect", "nope"}, []string{`image "nope"`, "no such image"}},
		{[]string{"image", "rm", "nope"}, []string{`image "nope"`, "no such image"}},
		{[]string{"image", "pull", "UPPER/case"}, []string{`image reference "UPPER/case"`}},
		{[]string{"image", "load"}, []string{"-i FILE is required"}},
		{[]string{"image", "ls", "-o", "yaml"}, []string{`--output "yaml"`}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, stderr := e.run(tc.args...)
			assertOneLineError(t, code, stderr, tc.want...)
			if out != "" {
				t.Errorf("stdout %q", out)
			}
			if _, err := os.Stat(filepath.Join(e.root, "images", "images.json")); err == nil {
				t.Error("a refused command wrote the image index")
			}
		})
	}
}
