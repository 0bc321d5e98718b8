package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/podbox/podbox/netsetup"
	"github.com/podbox/podbox/sandbox"
)

// isClosed reports an error that only says the shim closed the connection,
// which is how a shim that exits right after ShutdownSandbox may answer.
func isClosed(err error) bool {
	return errors.Is(err, ttrpc.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// shimAnswered reports whether err is an answer from a live shim (it does
// not serve the sandbox), rather than silence or a broken connection.
func shimAnswered(err error) bool {
	switch status.Code(err) {
	case codes.Unknown, codes.DeadlineExceeded, codes.Canceled, codes.Unavailable:
		return false
	}
	return true
}

// killHungShim kills sb's shim process if it is alive but did not answer:
// offline removal must not race a shim that may wake up. The PID is only
// trusted if its command line names the sandbox, so a reused PID is never
// killed.
func killHungShim(sb *sandbox.Sandbox) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(sb.ShimPID) + "/cmdline")
	if err != nil || !bytes.Contains(b, []byte(sb.ID)) {
		return
	}
	syscall.Kill(sb.ShimPID, syscall.SIGKILL)
}

// findShim is the PID of the shim serving sandbox id, found by its command
// line (-id ID), or 0.
func findShim(id string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(b, []byte("\x00-id\x00"+id+"\x00")) && bytes.Contains(b, []byte(ShimBinary)) {
			return pid
		}
	}
	return 0
}

// removeOffline removes sb without its shim: containers through the OCI
// runtime, then everything sandbox.Node.Remove owns, then the shim's socket.
func (a *App) removeOffline(ctx context.Context, g *globals, sb *sandbox.Sandbox) error {
	g.log.Debug("remove sandbox offline", "sandbox", sb.ID)
	node := sandbox.Node{
		Store:        g.store(),
		CgroupParent: sb.CgroupParent,
		Network:      netsetup.Network{Bridge: sb.Bridge},
	}
	if err := node.Remove(ctx, sb, runcDeleter{runtime: g.runtimeBinary(), root: filepath.Join(g.root, "runc")}); err != nil {
		return objErr("sandbox", sb.Name, "remove", err)
	}
	// The socket (and the shim's log beside it) are the shim's to remove on
	// exit; a killed shim could not.
	sock := strings.TrimPrefix(g.shimAddress(sb), "unix://")
	for _, p := range []string{sock, sock + ".log"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return objErr("sandbox", sb.Name, "remove", fmt.Errorf("shim socket: %w", err))
		}
	}
	return nil
}

// runcDeleter deletes containers with the OCI runtime's own CLI, the way
// the shim's runtime driver does, under the runtime root the shim uses.
type runcDeleter struct {
	runtime string
	root    string
}

var _ sandbox.ContainerDeleter = runcDeleter{}

// DeleteContainer runs `RUNTIME --root ROOT delete --force ID`; a container
// the runtime does not know is already deleted.
func (d runcDeleter) DeleteContainer(ctx context.Context, id string) error {
	out, err := exec.CommandContext(ctx, d.runtime, "--root", d.root, "delete", "--force", id).CombinedOutput()
	if err == nil || strings.Contains(string(out), "does not exist") || strings.Contains(string(out), "not found") {
		return nil
	}
	return fmt.Errorf("container %s: %s delete: %w: %s", id, d.runtime, err, oneLine(string(out)))
}
