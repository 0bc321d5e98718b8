// Command podbox is the podbox CLI: it creates sandboxes and joins containers
// into them by talking to each sandbox's shim. The commands live in package
// cli; main only hands them the process's environment.
package main

import (
	"context"
	"os"
	"syscall"
	"time"

	"github.com/podbox/podbox/cmd/podbox/cli"
)

var version = "dev"

func main() {
	exe, _ := os.Executable()
	app := &cli.App{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		Getenv: os.Getenv, Executable: exe, Now: time.Now, Version: version,
		Exec: syscall.Exec, Geteuid: os.Geteuid,
	}
	os.Exit(app.Run(context.Background(), os.Args[1:]))
}
