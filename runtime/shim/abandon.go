package shim

import (
	"net"
	"sync"
	"time"
)

// clientCounter is the shim's listener, counting the client connections
// still open: when the last one closes it signals idle, and the shim asks
// itself whether anyone still needs it (Service.abandoned).
//
// A shim is started for one sandbox and told to build it on its first
// connection. A client that goes before it asked for anything (a CLI killed
// between starting the shim and CreateSandbox) would otherwise leave an
// idle shim for good, and the network namespace the CLI pinned for the
// sandbox with it. So would a client that never connects (a CLI killed
// between starting the shim and connecting to it): after grace without a
// first client, the shim asks itself the same question.
type clientCounter struct {
	net.Listener
	mu       sync.Mutex
	open     int
	accepted bool
	idle     chan struct{} // one slot: a pending signal is enough
	// grace fires if no client came; the first one stops it, so that a
	// served shim never wakes for it.
	grace *time.Timer
}

func newClientCounter(l net.Listener, grace time.Duration) *clientCounter {
	c := &clientCounter{Listener: l, idle: make(chan struct{}, 1)}
	c.grace = time.AfterFunc(grace, func() {
		c.mu.Lock()
		never := !c.accepted
		c.mu.Unlock()
		if never {
			c.signalIdle()
		}
	})
	return c
}

// openConns is how many client connections are open.
func (l *clientCounter) openConns() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

func (l *clientCounter) signalIdle() {
	select {
	case l.idle <- struct{}{}:
	default:
	}
}

func (l *clientCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.open++
	if !l.accepted {
		l.accepted = true
		l.grace.Stop()
	}
	l.mu.Unlock()
	return &countedConn{Conn: c, l: l}, nil
}

// countedConn is a client connection whose Close (ttrpc closes a
// connection once its client has gone) counts down.
type countedConn struct {
	net.Conn
	l    *clientCounter
	once sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.open--
		last := c.l.open == 0
		c.l.mu.Unlock()
		if last {
			c.l.signalIdle()
		}
	})
	return err
}

// abandoned reports whether the shim serves nothing and nobody: no sandbox,
// no container, no removal under way. Its clients are gone, so none will
// ever ask it for one.
func (s *Service) abandoned() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sb == nil && len(s.containers) == 0 && len(s.creating) == 0 && !s.removing
}
