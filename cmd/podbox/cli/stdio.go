package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/fifo"
	"golang.org/x/sys/unix"
)

// procIO is the client end of one process's stdio: FIFOs in a private
// temporary directory, created and opened (without blocking) before the
// shim is asked to create the process, as containerd's cio does, so the shim
// finds them whichever end it opens first.
type procIO struct {
	dir                   string
	stdin, stdout, stderr string
	in                    io.WriteCloser
	out, err              io.ReadCloser
	copies                sync.WaitGroup
}

// newProcIO makes the FIFOs: stdout always, stderr unless terminal (a pty
// merges both into one stream), stdin if attachStdin.
func newProcIO(ctx context.Context, attachStdin, terminal bool) (_ *procIO, retErr error) {
	dir, err := os.MkdirTemp("", "podbox-io-")
	if err != nil {
		return nil, fmt.Errorf("stdio fifos: %w", err)
	}
	p := &procIO{dir: dir}
	defer func() {
		if retErr != nil {
			p.close()
		}
	}()
	open := func(name string, flag int) (io.ReadWriteCloser, string, error) {
		path := filepath.Join(dir, name)
		f, err := fifo.OpenFifo(ctx, path, flag|syscall.O_CREAT|syscall.O_NONBLOCK, 0o600)
		if err != nil {
			return nil, "", fmt.Errorf("stdio fifo %s: %w", path, err)
		}
		return f, path, nil
	}
	if attachStdin {
		if p.in, p.stdin, err = open("stdin", syscall.O_WRONLY); err != nil {
			return nil, err
		}
	}
	if p.out, p.stdout, err = open("stdout", syscall.O_RDONLY); err != nil {
		return nil, err
	}
	if !terminal {
		if p.err, p.stderr, err = open("stderr", syscall.O_RDONLY); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// copyOut starts copying the process's output to stdout and stderr.
func (p *procIO) copyOut(stdout, stderr io.Writer) {
	for _, c := range []struct {
		w io.Writer
		r io.Reader
	}{{stdout, p.out}, {stderr, p.err}} {
		if c.r == nil {
			continue
		}
		p.copies.Add(1)
		go func() {
			defer p.copies.Done()
			io.Copy(c.w, c.r)
		}()
	}
}

// copyIn copies stdin into the process and, at its end of file, closes the
// FIFO and calls closed (CloseIO), so the process sees end of file too. It
// is not waited for: a terminal's read never ends by itself.
func (p *procIO) copyIn(stdin io.Reader, closed func()) {
	if p.in == nil || stdin == nil {
		return
	}
	go func() {
		io.Copy(p.in, stdin)
		p.in.Close()
		closed()
	}()
}

// drainTimeout bounds how long output is awaited after the process exited:
// a background child that inherited its stdout would otherwise hold the
// FIFO open, and the CLI, forever.
const drainTimeout = 2 * time.Second

// wait waits until the shim has closed the output FIFOs, or drainTimeout.
func (p *procIO) wait() {
	done := make(chan struct{})
	go func() { p.copies.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainTimeout):
	}
}

// close closes every FIFO (ending any copy still blocked on one) and
// removes the directory.
func (p *procIO) close() {
	for _, c := range []io.Closer{p.in, p.out, p.err} {
		if c != nil {
			c.Close()
		}
	}
	os.RemoveAll(p.dir)
}

// terminalFd returns r's file descriptor if r is a terminal.
func terminalFd(r io.Reader) (int, bool) {
	f, ok := r.(*os.File)
	if !ok {
		return 0, false
	}
	fd := int(f.Fd())
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return fd, err == nil
}

// makeRaw puts the terminal fd into raw mode, so keys (^C included) go to the
// container's pty rather than being interpreted here, and returns the undo.
func makeRaw(fd int) (func(), error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	raw := *old
	// cfmakeraw(3)
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN] = 1
	raw.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, err
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}

// windowSize is the terminal's size in characters.
func windowSize(fd int) (width, height uint32, ok bool) {
	ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 {
		return 0, 0, false
	}
	return uint32(ws.Col), uint32(ws.Row), true
}
