// Command containerd2 is containerd 2.x, built from source for podbox's
// integration tests: Debian ships only containerd 1.6, and `go install` of
// containerd's own main is refused (its go.mod has exclude directives), so
// this one-file module wraps the upstream command instead. It lives in its own
// module so that podbox's go.mod never carries containerd 2's dependency tree.
package main

import (
	"fmt"
	"os"

	"github.com/containerd/containerd/v2/cmd/containerd/command"

	// Every plugin the upstream binary registers, CRI included (builtins_cri.go
	// is compiled unless the no_cri build tag is set).
	_ "github.com/containerd/containerd/v2/cmd/containerd/builtins"
)

func main() {
	if err := command.App().Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "containerd: %s\n", err)
		os.Exit(1)
	}
}
