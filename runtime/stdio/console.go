package stdio

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ConsoleSocket is the unix socket an OCI runtime sends a terminal process's
// pty master to (runc --console-socket). It lives in its own directory under
// the system temp dir because a socket path must fit in 108 bytes, which a
// bundle or test directory often does not.
type ConsoleSocket struct {
	dir string
	l   *net.UnixListener
}

// NewConsoleSocket listens on a fresh socket.
func NewConsoleSocket() (*ConsoleSocket, error) {
	dir, err := os.MkdirTemp("", "podbox-pty")
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	path := filepath.Join(dir, "pty.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err == nil {
		// Root's only, as the directory is: it hands over a terminal.
		if err = os.Chmod(path, 0o600); err != nil {
			l.Close()
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("console socket %s: %w", path, err)
	}
	return &ConsoleSocket{dir: dir, l: l}, nil
}

// Path is the socket's path, for --console-socket.
func (s *ConsoleSocket) Path() string { return filepath.Join(s.dir, "pty.sock") }

// ReceiveMaster accepts the runtime's connection and receives the pty master.
// Call it after the runtime command (create or exec) returned: the runtime
// sent the descriptor before exiting, and the kernel holds the connection and
// the message until they are read.
func (s *ConsoleSocket) ReceiveMaster(ctx context.Context) (*os.File, error) {
	if dl, ok := ctx.Deadline(); ok {
		s.l.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { s.l.Close() })
	defer stop()
	conn, err := s.l.AcceptUnix()
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("console socket %s: accept: %w", s.Path(), err)
	}
	defer conn.Close()
	name := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := conn.ReadMsgUnix(name, oob)
	if err != nil {
		return nil, fmt.Errorf("console socket %s: receive: %w", s.Path(), err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("console socket %s: expected one control message, got %d: %v", s.Path(), len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("console socket %s: expected one descriptor, got %d: %v", s.Path(), len(fds), err)
	}
	unix.CloseOnExec(fds[0])
	// Non-blocking before os.NewFile, so the file uses Go's poller: a read
	// parked on the master then returns when the master is closed.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, fmt.Errorf("console socket %s: %w", s.Path(), err)
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}

// Close stops listening and removes the socket's directory.
func (s *ConsoleSocket) Close() error {
	s.l.Close()
	return os.RemoveAll(s.dir)
}
