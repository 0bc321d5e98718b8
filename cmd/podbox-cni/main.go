// Command podbox-cni runs a CNI network configuration list for one sandbox:
// podbox and its shim execute it with a JSON request on stdin (package
// netsetup/cni) and read the result as JSON on stdout. It is a binary of its
// own so that libcni's initialisation is paid only by sandboxes on CNI
// networks, never by every `podbox sandbox create` or idle shim.
//
// On failure it prints the error alone on stderr and exits 1.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/podbox/podbox/netsetup/cni"
	"github.com/podbox/podbox/netsetup/cni/chain"
)

func main() {
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "usage: podbox-cni < REQUEST.json (a request of package netsetup/cni; run by podbox, not by hand)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Stdin, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, in io.Reader, out io.Writer) error {
	var req cni.Request
	dec := json.NewDecoder(in)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return fmt.Errorf("read request: %w", err)
	}
	res, err := chain.Run(ctx, req)
	if err != nil || res == nil {
		return err
	}
	return json.NewEncoder(out).Encode(res)
}
