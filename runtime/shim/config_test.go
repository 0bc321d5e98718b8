package shim

import (
	"os"
	"testing"
)

// A shim drops to one P once its sandbox is built, unless the environment
// fixed GOMAXPROCS, which it then never overrides.
func TestConfigIdleProcs(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	if got := (Config{}).ConfigFromEnv().IdleProcs; got != 0 {
		t.Errorf("GOMAXPROCS set (empty): IdleProcs %d, want 0", got)
	}
	t.Setenv("GOMAXPROCS", "3")
	if got := (Config{}).ConfigFromEnv().IdleProcs; got != 0 {
		t.Errorf("GOMAXPROCS=3: IdleProcs %d, want 0", got)
	}
	unsetenv(t, "GOMAXPROCS")
	if got := (Config{}).ConfigFromEnv().IdleProcs; got != 1 {
		t.Errorf("GOMAXPROCS unset: IdleProcs %d, want 1", got)
	}
	if got := (Config{IdleProcs: 2}).ConfigFromEnv().IdleProcs; got != 2 {
		t.Errorf("IdleProcs 2 given: %d", got)
	}
}

// unsetenv removes k for the test (t.Setenv restores it afterwards).
func unsetenv(t *testing.T, k string) {
	t.Helper()
	t.Setenv(k, "")
	if err := os.Unsetenv(k); err != nil {
		t.Fatal(err)
	}
}
