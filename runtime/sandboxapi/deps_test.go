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
// any other package of containerd's api module, whose files podbox's own
// copies (runtime/apitypes and its siblings) register under the same names,
// nor what they would bring back: go-digest's regular expressions and
// protobuf's descriptorpb, compiled and registered at every start.
func TestBinariesLinkNoGRPC(t *testing.T) {
	mod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || len(strings.TrimSpace(string(mod))) == 0 {
		t.Fatalf("find the podbox module: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(mod)))
	forbidden := []string{
		"google.golang.org/grpc",
		"github.com/containerd/containerd/api/runtime/sandbox/v1",
		"github.com/containerd/containerd/api/runtime/task/v2",
		"github.com/containerd/containerd/api/types",
		"github.com/containerd/containerd/api/types/task",
		"github.com/containerd/containerd/api/events",
		"github.com/containerd/containerd/api/services/ttrpc/events/v1",
		"google.golang.org/protobuf/types/descriptorpb",
		"github.com/opencontainers/go-digest",
		// Run in helper binaries of their own (podbox-cni, podbox-image),
		// so that their init never costs a create or an idle shim.
		"github.com/containernetworking/cni/libcni",
		"github.com/google/go-containerregistry/pkg/v1/remote",
		"k8s.io/api/core/v1", // podbox-kube's, for play
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
