// Package tb lets the benchmark program reuse helpers written for tests
// (integration/containerd, integration/rootfs users) that take a testing.TB.
// T implements the methods those helpers call: Fatal becomes a panic that
// Run turns back into an error, cleanups run in reverse order on Close,
// temporary directories live under one directory the program chose. It
// never decides what a failure means; the caller does.
package tb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
)

// T is a testing.TB for a program. The embedded testing.TB is nil: a helper
// that calls a method T does not implement panics loudly instead of
// silently doing nothing.
type T struct {
	testing.TB

	name string
	dir  string
	log  io.Writer

	mu       sync.Mutex
	cleanups []func()
	errs     []string
}

// New returns a T named name whose temporary directories are made under dir
// and whose log lines go to log.
func New(name, dir string, log io.Writer) *T {
	return &T{name: name, dir: dir, log: log}
}

// fatal is the panic value of Fatal, FailNow and Skip.
type fatal struct{ msg string }

// Run calls fn and returns the message of a Fatal (or Skip) it raised as an
// error; other panics pass through.
func Run(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			err = errors.New(f.msg)
		}
	}()
	fn()
	return nil
}

func (t *T) Name() string { return t.name }
func (t *T) Helper()      {}

// Context is never cancelled: the helpers' daemons outlive any one call.
func (t *T) Context() context.Context { return context.Background() }

func (t *T) Log(args ...any) { t.Logf("%s", fmt.Sprintln(args...)) }
func (t *T) Logf(format string, args ...any) {
	fmt.Fprintf(t.log, "[%s] %s\n", t.name, strings.TrimRight(fmt.Sprintf(format, args...), "\n"))
}

func (t *T) Error(args ...any) { t.Errorf("%s", fmt.Sprintln(args...)) }
func (t *T) Errorf(format string, args ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	t.mu.Lock()
	t.errs = append(t.errs, msg)
	t.mu.Unlock()
	t.Logf("error: %s", msg)
}
func (t *T) Fail() { t.Errorf("failed") }

func (t *T) Fatal(args ...any) { t.Fatalf("%s", fmt.Sprintln(args...)) }
func (t *T) Fatalf(format string, args ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	t.mu.Lock()
	t.errs = append(t.errs, msg)
	t.mu.Unlock()
	panic(fatal{msg})
}
func (t *T) FailNow() { t.Fatalf("failed") }

// Skip is a failure here: a benchmark that cannot run its peer has nothing
// to compare, and must say so.
func (t *T) Skip(args ...any)                 { t.Fatalf("cannot run: %s", fmt.Sprint(args...)) }
func (t *T) Skipf(format string, args ...any) { t.Fatalf("cannot run: "+format, args...) }
func (t *T) SkipNow()                         { t.Fatalf("cannot run") }
func (t *T) Skipped() bool                    { return false }

// Failed reports whether Error or Fatal was called.
func (t *T) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.errs) > 0
}

// Errors returns every Error and Fatal message so far.
func (t *T) Errors() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.errs...)
}

// Cleanup registers f to run on Close, after every cleanup registered later.
func (t *T) Cleanup(f func()) {
	t.mu.Lock()
	t.cleanups = append(t.cleanups, f)
	t.mu.Unlock()
}

// TempDir makes a fresh directory under the T's directory, removed on Close.
func (t *T) TempDir() string {
	d, err := os.MkdirTemp(t.dir, "tmp")
	if err != nil {
		t.Fatalf("temporary directory under %s: %v", t.dir, err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(d); err != nil {
			t.Errorf("remove %s: %v", d, err)
		}
	})
	return d
}

// Close runs the cleanups, last registered first. A cleanup that calls
// Fatal stops only itself. It is safe to call twice (the second does
// nothing) and returns every error recorded over the T's life.
func (t *T) Close() []string {
	for {
		t.mu.Lock()
		if len(t.cleanups) == 0 {
			t.mu.Unlock()
			break
		}
		f := t.cleanups[len(t.cleanups)-1]
		t.cleanups = t.cleanups[:len(t.cleanups)-1]
		t.mu.Unlock()
		_ = Run(f)
	}
	return t.Errors()
}
