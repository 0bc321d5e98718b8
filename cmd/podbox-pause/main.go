// The runtime would otherwise keep two cgroup files open and re-read them
// from sysmon every minute to follow CPU-limit changes: that is file I/O after
// start, for a GOMAXPROCS the pause pins to 1 anyway (see package pause).
//go:debug updatemaxprocs=0
//go:debug containermaxprocs=0

// Command podbox-pause holds a podbox sandbox's namespaces: it waits until
// SIGTERM or SIGINT, then exits 0, reaping children meanwhile. All of its
// logic is in package pause.
package main

import (
	"os"

	"github.com/podbox/podbox/pause"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(pause.Run(os.Args, version, os.Stdout, os.Stderr))
}
