//go:build !amd64 && !arm64

package pause

import (
	"errors"
	"runtime"
)

// filterSupported reports whether this architecture has an allow-list:
// the pause's system call numbers and its seccomp architecture are known
// only for amd64 and arm64, and a filter built on guesses could kill it
// mid-life.
const filterSupported = false

func installFilter() error {
	return errors.New("no allow-list for " + runtime.GOARCH)
}
