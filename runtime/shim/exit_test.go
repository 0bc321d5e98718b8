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
