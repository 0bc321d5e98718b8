package tb

import (
	"io"
	"os"
	"slices"
	"testing"
)

func TestRunCleanupOrderAndTempDir(t *testing.T) {
	x := New("x", t.TempDir(), io.Discard)
	var order []int
	var dir string
	err := Run(func() {
		x.Cleanup(func() { order = append(order, 1) })
		dir = x.TempDir()
		x.Cleanup(func() { order = append(order, 2); x.Fatalf("cleanup %d fails", 2) })
		x.Cleanup(func() { order = append(order, 3) })
		x.Fatalf("boom %d", 7)
		order = append(order, 99) // never reached
	})
	if err == nil || err.Error() != "boom 7" {
		t.Fatalf("Run = %v, want boom 7", err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("TempDir %s: %v", dir, err)
	}
	errs := x.Close()
	if !slices.Equal(order, []int{3, 2, 1}) {
		t.Errorf("cleanups ran in order %v, want [3 2 1]", order)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("TempDir %s survived Close: %v", dir, err)
	}
	if !slices.Equal(errs, []string{"boom 7", "cleanup 2 fails"}) || !x.Failed() {
		t.Errorf("errors = %q, failed %v", errs, x.Failed())
	}
	if again := x.Close(); len(again) != 2 || len(order) != 3 {
		t.Errorf("second Close ran cleanups again: %v %v", again, order)
	}
	if err := Run(func() { x.Skipf("no %s", "crictl") }); err == nil || err.Error() != "cannot run: no crictl" {
		t.Errorf("Skip = %v, want a failure", err)
	}
}

func TestRunPassesOtherPanics(t *testing.T) {
	defer func() {
		if r := recover(); r != "other" {
			t.Errorf("recovered %v, want the original panic", r)
		}
	}()
	_ = Run(func() { panic("other") })
}
