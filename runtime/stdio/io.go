package stdio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/console"
	"github.com/containerd/fifo"
)

// Config says where a process's streams go.
type Config struct {
	// LogPath is the container's log file (required): all output lands
	// there.
	LogPath string
	// Stdin, Stdout, Stderr are client FIFO paths; empty means none.
	// Stderr is ignored in terminal mode.
	Stdin, Stdout, Stderr string
	// FIFODrain is how long, once the process's output has ended, a FIFO
	// client may take to read what is queued for it before it is given up
	// on (default 2s). It bounds Wait when a client never opened its FIFO.
	FIFODrain time.Duration
	// QueueChunks bounds the output queued for a FIFO client that does not
	// keep up (default 256 chunks of at most 32 KiB); beyond it, that
	// client's copy is dropped, never the log's.
	QueueChunks int
}

func (c *Config) defaults() error {
	if c.LogPath == "" {
		return errors.New("no log path")
	}
	if c.FIFODrain == 0 {
		c.FIFODrain = 2 * time.Second
	}
	if c.QueueChunks == 0 {
		c.QueueChunks = 256
	}
	return nil
}

// IO is the running plumbing of one process.
type IO struct {
	cfg Config
	log *logFile

	// Child ends, handed to the runtime in pipe mode and closed in the
	// shim once the runtime has passed them on (CloseChild).
	childIn, childOut, childErr *os.File
	// Shim ends of the pipes, or the pty master in terminal mode.
	stdinW   io.WriteCloser
	outR     []*os.File
	console  console.Console
	stdinSrc io.ReadCloser // the stdin FIFO

	copiers   sync.WaitGroup // output copiers: done when the log has it all
	sinks     []*sink
	closeIn   sync.Once
	closeOnce sync.Once
}

// NewPipes sets up stdio for a process without a terminal: pipes for the
// process (Child), copied to the log and to the client FIFOs in cfg.
func NewPipes(ctx context.Context, cfg Config) (_ *IO, retErr error) {
	if err := cfg.defaults(); err != nil {
		return nil, fmt.Errorf("stdio: %w", err)
	}
	log, err := openLog(cfg.LogPath)
	if err != nil {
		return nil, fmt.Errorf("stdio: %w", err)
	}
	p := &IO{cfg: cfg, log: log}
	defer func() {
		if retErr != nil {
			p.CloseChild()
			p.Close()
		}
	}()
	if cfg.Stdin != "" {
		src, err := openStdinFIFO(ctx, cfg.Stdin)
		if err != nil {
			return nil, err
		}
		p.stdinSrc = src
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("stdio: stdin pipe: %w", err)
		}
		p.childIn, p.stdinW = r, w
	}
	for _, s := range []struct {
		name, fifo string
		child      **os.File
	}{{Stdout, cfg.Stdout, &p.childOut}, {Stderr, cfg.Stderr, &p.childErr}} {
		sk, err := p.openSink(ctx, s.name, s.fifo)
		if err != nil {
			return nil, err
		}
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("stdio: %s pipe: %w", s.name, err)
		}
		*s.child = w
		p.outR = append(p.outR, r)
		p.startCopy(s.name, r, sk)
	}
	p.startStdin()
	return p, nil
}

// NewTerminal sets up stdio for a process with a terminal whose pty master
// (received from the runtime, see ConsoleSocket) is master: output goes to the
// log as "stdout" and to the Stdout FIFO, the Stdin FIFO goes to the master.
// IO owns master from now on.
func NewTerminal(ctx context.Context, cfg Config, master *os.File) (_ *IO, retErr error) {
	if err := cfg.defaults(); err != nil {
		master.Close()
		return nil, fmt.Errorf("stdio: %w", err)
	}
	con, err := console.ConsoleFromFile(master)
	if err != nil {
		master.Close()
		return nil, fmt.Errorf("stdio: pty master %s: %w", master.Name(), err)
	}
	log, err := openLog(cfg.LogPath)
	if err != nil {
		master.Close()
		return nil, fmt.Errorf("stdio: %w", err)
	}
	p := &IO{cfg: cfg, log: log, console: con}
	p.outR = []*os.File{master}
	defer func() {
		if retErr != nil {
			p.Close()
		}
	}()
	if cfg.Stdin != "" {
		src, err := openStdinFIFO(ctx, cfg.Stdin)
		if err != nil {
			return nil, err
		}
		p.stdinSrc = src
		// The master is shared with the output copier: closing stdin must
		// not close it, so wrap it without its Close.
		p.stdinW = nopCloser{master}
	}
	sk, err := p.openSink(ctx, Stdout, cfg.Stdout)
	if err != nil {
		return nil, err
	}
	p.startCopy(Stdout, master, sk)
	p.startStdin()
	return p, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// Child returns the process's ends of the pipes, for the runtime command's
// stdio (nil where the process gets /dev/null, and always nil in terminal
// mode).
func (p *IO) Child() (stdin, stdout, stderr *os.File) {
	return p.childIn, p.childOut, p.childErr
}

// CloseChild closes the shim's copies of the process's pipe ends. Call it once
// the runtime command that passed them on has returned: until then the output
// pipes can never reach end-of-file.
func (p *IO) CloseChild() {
	for _, f := range []*os.File{p.childIn, p.childOut, p.childErr} {
		if f != nil {
			f.Close()
		}
	}
}

// Resize sets the terminal's window size.
func (p *IO) Resize(width, height uint16) error {
	if p.console == nil {
		return errors.New("stdio: resize: process has no terminal")
	}
	if err := p.console.Resize(console.WinSize{Width: width, Height: height}); err != nil {
		return fmt.Errorf("stdio: resize terminal to %dx%d: %w", width, height, err)
	}
	return nil
}

// CloseIO closes the process's stdin (it reads end-of-file) and stops reading
// the client's stdin FIFO.
func (p *IO) CloseIO() error {
	p.closeIn.Do(func() {
		if p.stdinSrc != nil {
			p.stdinSrc.Close()
		}
		if p.stdinW != nil {
			p.stdinW.Close()
		}
	})
	return nil
}

// Wait returns once the process's output has ended and all of it is in the
// log, and every FIFO client has either received its copy or been given up on
// (after Config.FIFODrain). Call it after the process exited and before
// reporting the exit, so the report never races ahead of the last bytes.
// Output ends when every holder of the process's stdout/stderr has exited; a
// background child that keeps them open holds Wait up until ctx ends, and
// then the FIFO clients are given up on (their copy ends there).
func (p *IO) Wait(ctx context.Context) error {
	copied := make(chan struct{})
	go func() { p.copiers.Wait(); close(copied) }()
	select {
	case <-copied:
	case <-ctx.Done():
		// Someone else (a daemonized grandchild) still holds the output
		// open. The log keeps copying until Close, but the FIFO clients
		// are released now: they see end-of-file with the exit. A client
		// may wait for that before anything else (containerd's
		// task.Delete waits for its side of the FIFOs before it asks the
		// shim to delete the task, which is what would close them).
		for _, s := range p.sinks {
			s.abandon()
		}
		return fmt.Errorf("stdio: wait for output of %s: %w", p.cfg.LogPath, ctx.Err())
	}
	drain, cancel := context.WithTimeout(ctx, p.cfg.FIFODrain)
	defer cancel()
	for _, s := range p.sinks {
		select {
		case <-s.done:
			continue
		case <-drain.Done():
		}
		// The client is not reading: give up on it so the exit can go out.
		s.abandon()
		<-s.done
	}
	return nil
}

// Dropped returns how many bytes of output FIFO clients missed because they
// did not keep up or went away (the log has them all).
func (p *IO) Dropped() int64 {
	var n int64
	for _, s := range p.sinks {
		n += s.dropped.Load()
	}
	return n
}

// Close releases everything: pipes, pty master, FIFOs and the log. Copying
// stops; call Wait first to have all output.
func (p *IO) Close() error {
	p.closeOnce.Do(func() {
		p.CloseIO()
		for _, r := range p.outR {
			r.Close()
		}
		for _, s := range p.sinks {
			s.abandon()
		}
		p.copiers.Wait()
		for _, s := range p.sinks {
			s.finish() // a sink whose copier never started
			<-s.done
		}
		p.log.Close()
	})
	return nil
}

func (p *IO) startStdin() {
	if p.stdinSrc == nil {
		return
	}
	go func() {
		// The client's end-of-file (it closed its FIFO) is the process's.
		io.Copy(p.stdinW, p.stdinSrc)
		p.CloseIO()
	}()
}

// startCopy copies one output stream to the log and to its FIFO sink.
func (p *IO) startCopy(stream string, src *os.File, sk *sink) {
	p.copiers.Add(1)
	go func() {
		defer p.copiers.Done()
		if sk != nil {
			defer sk.finish()
		}
		buf := make([]byte, 32*1024)
		var carry []byte
		for {
			n, err := src.Read(buf)
			if n > 0 {
				chunk := append(carry, buf[:n]...)
				head, rest, valid := splitUTF8(chunk)
				carry = append([]byte(nil), rest...)
				if len(head) > 0 {
					// A failing log write (disk full) must not stop the
					// copy: the FIFO client and the pipe drain still
					// matter, and a stalled pipe would block the process.
					_ = p.log.write(stream, head, valid)
					if sk != nil {
						sk.offer(append([]byte(nil), head...))
					}
				}
			}
			if err != nil {
				// EOF on a pipe; EIO on a pty master whose slave side
				// was closed by the process's exit.
				break
			}
		}
		if len(carry) > 0 {
			_ = p.log.write(stream, carry, utf8Valid(carry))
			if sk != nil {
				sk.offer(carry)
			}
		}
	}()
}

func utf8Valid(b []byte) bool { _, _, v := splitUTF8(b); return v && len(b) > 0 }

func openStdinFIFO(ctx context.Context, path string) (io.ReadCloser, error) {
	// O_NONBLOCK: do not wait here for the client to open its end; the
	// fifo package finishes the open in the background and the first read
	// waits for it. The open outlives ctx (the request's context).
	_ = ctx
	f, err := fifo.OpenFifo(context.Background(), path, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("stdio: open stdin fifo %s: %w", path, err)
	}
	return f, nil
}

func (p *IO) openSink(ctx context.Context, stream, path string) (*sink, error) {
	if path == "" {
		return nil, nil
	}
	// Write-only and non-blocking: the open completes in the background
	// when the client opens its reading end, so a missing client never
	// blocks the shim. Not O_RDWR: with no reader of our own, a client that
	// goes away turns writes into EPIPE and the sink stops trying, instead
	// of filling a pipe buffer nobody reads.
	w, err := fifo.OpenFifo(context.Background(), path, syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("stdio: open %s fifo %s: %w", stream, path, err)
	}
	s := &sink{w: w, q: make(chan []byte, p.cfg.QueueChunks), done: make(chan struct{})}
	go s.run()
	p.sinks = append(p.sinks, s)
	return s, nil
}

// sink feeds one client FIFO from a bounded queue.
type sink struct {
	w       io.WriteCloser
	q       chan []byte
	done    chan struct{}
	dropped atomic.Int64
	dead    atomic.Bool
	once    sync.Once
	fin     sync.Once
}

// offer queues b for the client, or drops it if the client is gone or too
// far behind: never blocks.
func (s *sink) offer(b []byte) {
	if s.dead.Load() {
		s.dropped.Add(int64(len(b)))
		return
	}
	select {
	case s.q <- b:
	default:
		s.dropped.Add(int64(len(b)))
	}
}

// finish says no more output is coming.
func (s *sink) finish() { s.fin.Do(func() { close(s.q) }) }

// abandon gives up on the client: a blocked write (or a pending open) returns
// and the rest of the queue is dropped.
func (s *sink) abandon() {
	s.once.Do(func() {
		s.dead.Store(true)
		s.w.Close()
	})
}

func (s *sink) run() {
	defer close(s.done)
	defer s.abandon()
	for b := range s.q {
		if s.dead.Load() {
			s.dropped.Add(int64(len(b)))
			continue
		}
		if _, err := s.w.Write(b); err != nil {
			// EPIPE: the client went away. It does not come back to
			// this FIFO; the log keeps everything.
			s.dead.Store(true)
			s.dropped.Add(int64(len(b)))
		}
	}
}
