// Command podbox-image fetches images into podbox's image store: `pull` from
// a registry and `load` from an archive. Users run it as `podbox image pull`
// and `podbox image load`; it is a binary of its own so that the registry
// client's package init (net/http, crypto) never runs in a podbox command
// that does not fetch, a sandbox create first of all.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/image/fetch"
	"github.com/podbox/podbox/image/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, isTerminal(os.Stderr))
	stop()
	os.Exit(code)
}

const usage = `usage: podbox-image pull --image-root DIR [--platform OS/ARCH] [--creds USER:PASS] [--insecure] [-q] REF
       podbox-image load --image-root DIR [--platform OS/ARCH] [-q] -i FILE
(run as podbox image pull / podbox image load)`

// run executes one command and returns the exit code: 0, 1 for a failure
// (one line on stderr), 2 for a usage error, 130 when interrupted. The IDs
// of the images stored go to stdout, one per line; progress to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, terminal bool) int {
	if len(args) == 0 || args[0] != "pull" && args[0] != "load" {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("podbox-image "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	root := fs.String("image-root", "", "image store directory")
	platform := fs.String("platform", "", "OS/ARCH[/VARIANT] to pick")
	creds := fs.String("creds", "", "USER:PASSWORD for the registry")
	insecure := fs.Bool("insecure", false, "allow plain HTTP and unverified TLS")
	quiet := fs.Bool("q", false, "no progress")
	input := fs.String("i", "", "archive to load")
	if err := fs.Parse(args[1:]); err != nil {
		fmt.Fprintf(stderr, "podbox image %s: %v\n%s\n", args[0], err, usage)
		return 2
	}
	o := fetch.Options{Insecure: *insecure}
	stopProgress := func() {}
	fail := func(err error) int {
		stopProgress()
		fmt.Fprintln(stderr, "podbox: "+strings.Join(strings.Fields(err.Error()), " "))
		if errors.Is(err, context.Canceled) {
			return 130
		}
		return 1
	}
	if *root == "" {
		return fail(errors.New("--image-root is required"))
	}
	if *platform != "" {
		p, err := fetch.ParsePlatform(*platform)
		if err != nil {
			return fail(err)
		}
		o.Platform = p
	}
	if *creds != "" {
		u, p, ok := strings.Cut(*creds, ":")
		if !ok || u == "" {
			return fail(errors.New("--creds: want USER:PASSWORD"))
		}
		o.Username, o.Password = u, p
	}
	// The terminal display is stopped (its last frame drawn) before
	// anything else is written, since it redraws the lines above the cursor.
	switch {
	case *quiet:
	case terminal:
		t := &fetch.Terminal{W: stderr}
		t.Start()
		stopProgress = t.Stop
		o.Progress = t
	default:
		o.Progress = &fetch.Plain{W: stderr}
	}
	st := store.Store{Root: *root}
	var imgs []*store.Image
	switch args[0] {
	case "pull":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, usage)
			return 2
		}
		img, err := fetch.Pull(ctx, st, fs.Arg(0), o)
		if err != nil {
			return fail(err)
		}
		imgs = []*store.Image{img}
	case "load":
		if *input == "" || fs.NArg() != 0 {
			fmt.Fprintln(stderr, usage)
			return 2
		}
		var err error
		if imgs, err = fetch.Load(ctx, st, *input, o); err != nil {
			return fail(err)
		}
	default:
		fmt.Fprintln(stderr, usage)
		return 2
	}
	stopProgress()
	for _, img := range imgs {
		fmt.Fprintln(stdout, img.ID)
	}
	return 0
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
