package sandbox

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// ReplaceFile creates a new file, replaces an existing one, leaves no
// temporary file behind, and a reader running alongside only ever sees one
// whole version.
func TestReplaceFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "record.json")
	a, b := bytes.Repeat([]byte("a"), 5000), bytes.Repeat([]byte("b"), 3000)
	if err := ReplaceFile(path, a); err != nil {
		t.Fatalf("new file: %v", err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	torn := make(chan []byte, 1)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, a) && !bytes.Equal(got, b) {
				select {
				case torn <- got:
				default:
				}
				return
			}
		}
	})
	for i := range 500 {
		next := a
		if i%2 == 0 {
			next = b
		}
		if err := ReplaceFile(path, next); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	select {
	case got := <-torn:
		t.Fatalf("a reader saw %d bytes that are neither version", len(got))
	default:
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, a) {
		t.Errorf("content after the last replace: %d bytes, want the last version", len(got))
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("files left beside the record: %v", names)
	}
}
