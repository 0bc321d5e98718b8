package sandboxapi_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestBinariesLinkNoGRPC checks the reason this package exists: the shim and
// the CLI speak the Sandbox API through it, and neither links grpc nor
// containerd's sandbox/v1 package (whose grpc stubs would bring grpc back,
// and whose proto registrations would collide with this package's). Nor
// containerd's api/events, whose task events runtime/taskevents registers
// under the same names (and whose other events cost every shim start).
func TestBinariesLinkNoGRPC(t *testing.T) {
	mod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || len(strings.TrimSpace(string(mod))) == 0 {
		t.Fatalf("find the podbox module: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(mod)))
	forbidden := []string{
		"google.golang.org/grpc",
		"github.com/containerd/containerd/api/runtime/sandbox/v1",
		"github.com/containerd/containerd/api/events",
	}
	for _, bin := range []string{"containerd-shim-podbox-v1", "podbox"} {
		t.Run(bin, func(t *testing.T) {
			cmd := exec.Command("go", "list", "-deps", "./cmd/"+bin)
			cmd.Dir = root
			// The dependencies of the binary `make build` makes.
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("go list -deps ./cmd/%s: %v", bin, err)
			}
			deps := strings.Fields(string(out))
			if !slices.Contains(deps, "github.com/podbox/podbox/runtime/sandboxapi") {
				t.Fatalf("%s does not link runtime/sandboxapi: no Sandbox API, or the list is wrong (%d packages)", bin, len(deps))
			}
			for _, p := range forbidden {
				if slices.Contains(deps, p) {
					t.Errorf("%s links %s (`go mod why %s` shows who imports it)", bin, p, p)
				}
			}
		})
	}
}
