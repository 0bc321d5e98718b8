// Package timed runs a benchmarked command and measures it the one way every
// latency figure of the bench is measured: from the start of the process to
// its exit, output captured, so that podbox and the peer are timed alike.
package timed

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Run runs cmd and returns its trimmed standard output and how long it took
// from start to exit. A failure names the command (name and args, as the
// user would type it) and carries its standard error.
func Run(cmd *exec.Cmd, name string, args []string) (string, time.Duration, error) {
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return "", d, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), d, nil
}
