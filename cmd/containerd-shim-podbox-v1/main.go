// Command containerd-shim-podbox-v1 is podbox's per-sandbox shim, started by
// containerd (runtime io.containerd.podbox.v1) or by the podbox CLI exactly as
// containerd starts any v2 shim. All of its logic is in runtime/shim.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/podbox/podbox/runtime/shim"
	"github.com/podbox/podbox/runtime/shimclient"
)

var version = "dev"

func init() {
	// Keep the main thread for main alone. The shim switches namespaces on
	// locked threads that it then lets die (see sandbox.StartPause); Go can
	// end any thread but the main one, which it only parks, still in the
	// foreign namespace. /proc/self shows the main thread's view, so a
	// parked main thread would make it lie about mounts and namespaces.
	runtime.LockOSThread()
	// The Go runtime settings `start` gave the serving shim have been read:
	// put the environment back as the caller gave it, so that runc and the
	// containers' inits do not run with them (see shimclient.CallerEnv).
	if env, back := os.Environ(), shimclient.CallerEnv(os.Environ()); !slices.Equal(back, env) {
		os.Clearenv()
		for _, kv := range back {
			if k, v, ok := strings.Cut(kv, "="); ok {
				os.Setenv(k, v)
			}
		}
	}
}

func main() {
	var cfg shim.Config
	fs := flag.NewFlagSet("containerd-shim-podbox-v1", flag.ContinueOnError)
	fs.StringVar(&cfg.Namespace, "namespace", "", "namespace of the caller (containerd's, or podbox for the CLI)")
	fs.StringVar(&cfg.Address, "address", "", "containerd's socket address")
	fs.StringVar(&cfg.ID, "id", "", "ID of the task (start, delete) or of the served group")
	fs.StringVar(&cfg.Bundle, "bundle", "", "bundle path (delete)")
	fs.BoolVar(&cfg.Debug, "debug", false, "log at debug level")
	fs.String("publish-binary", "", "ignored: events go to $TTRPC_ADDRESS")
	showVersion := fs.Bool("v", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s -namespace NS -address ADDR -id ID [-debug] [start|delete]\n"+
			"  start   start (or find) the shim serving ID's sandbox and print its address\n"+
			"  delete  clean up after task ID and print a DeleteResponse\n"+
			"  (none)  serve, on the listener inherited from start as fd 3\n", os.Args[0])
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if *showVersion {
		fmt.Printf("containerd-shim-podbox-v1 %s\n", version)
		return
	}
	cfg = cfg.ConfigFromEnv()
	level := slog.LevelInfo
	if cfg.Debug {
		level = slog.LevelDebug
	}
	out := os.Stderr
	if fs.Arg(0) == "" {
		// Serving: fd 2 may be containerd's log FIFO, see shim.LogOutput.
		// ttrpc logs through logrus, which writes to os.Stderr unless
		// told otherwise.
		out = shim.LogOutput()
		logrus.SetOutput(out)
	}
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level})).With("shim", cfg.ID)
	ctx := context.Background()

	var err error
	switch action := fs.Arg(0); action {
	case "start":
		err = shim.Start(ctx, cfg, os.Stdout)
	case "delete":
		err = shim.Delete(ctx, cfg, os.Stdout)
	case "":
		err = shim.Serve(ctx, cfg, log)
	default:
		err = fmt.Errorf("unknown action %q", action)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "containerd-shim-podbox-v1: %v\n", err)
		os.Exit(1)
	}
}
