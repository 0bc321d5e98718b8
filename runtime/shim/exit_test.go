package shim

import (
	"context"
	"testing"
	"time"
)

// TestExitAfterAnswer: an exit asked for by a request waits for that
// request's context to end (ttrpc ends it once the answer is on its way),
// and then comes.
func TestExitAfterAnswer(t *testing.T) {
	s := &Service{exit: make(chan struct{})}
	ctx, answered := context.WithCancel(context.Background())
	s.exitAfterAnswer(ctx)
	select {
	case <-s.exit:
		t.Fatal("exit requested before the request was answered")
	case <-time.After(100 * time.Millisecond):
	}
	answered()
	select {
	case <-s.exit:
	case <-time.After(5 * time.Second):
		t.Fatal("no exit requested after the request was answered")
	}
}

// With a client connection open, the exit waits for it to close after the
// answer (its close is what says the answer arrived), and comes without
// it after exitAfterAnswerGrace.
func TestExitAfterAnswerWaitsForTheClient(t *testing.T) {
	for _, closes := range []bool{true, false} {
		cc := &clientCounter{open: 1, idle: make(chan struct{}, 1)}
		s := &Service{exit: make(chan struct{}), clients: cc}
		ctx, answered := context.WithCancel(context.Background())
		s.exitAfterAnswer(ctx)
		answered()
		select {
		case <-s.exit:
			t.Fatal("exit requested while the client still had its connection")
		case <-time.After(100 * time.Millisecond):
		}
		if closes {
			// What serve's idle loop does when the last connection goes.
			cc.mu.Lock()
			cc.open = 0
			cc.mu.Unlock()
			if !s.exitWhenNoClients.Load() {
				t.Fatal("the answered request did not leave the exit to the clients' close")
			}
			s.requestExit()
		}
		select {
		case <-s.exit:
		case <-time.After(exitAfterAnswerGrace + 5*time.Second):
			t.Fatalf("client closes %v: no exit", closes)
		}
	}
}
