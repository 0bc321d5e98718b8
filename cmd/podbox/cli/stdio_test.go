package cli

import (
	"context"
	"os"
	"testing"
)

// The FIFOs that carry a container's streams, and their directory, are the
// CLI's user's alone: another user who opened one would read the output or
// type into the container.
func TestProcIOFifosAreOwnerOnly(t *testing.T) {
	p, err := newProcIO(context.Background(), false, false)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	for path, want := range map[string]os.FileMode{p.dir: os.ModeDir | 0o700, p.stdout: os.ModeNamedPipe | 0o600, p.stderr: os.ModeNamedPipe | 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode() & (os.ModeType | os.ModePerm); got != want {
			t.Errorf("%s: mode %v, want %v", path, got, want)
		}
	}
}
