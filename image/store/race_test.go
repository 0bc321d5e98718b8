package store_test

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Two pulls at once: one's CleanTemp must never take the other's work
// directory, even between its creation and its lock.
func TestCleanTempRacesNewWork(t *testing.T) {
	st := newStore(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			st.CleanTemp()
			time.Sleep(10 * time.Microsecond) // let NewWork have the lock too
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	deadline := time.Now().Add(time.Second)
	for i := 0; i < 300 && time.Now().Before(deadline); i++ {
		w, diff, err := st.NewLayerWork()
		if err != nil {
			t.Fatalf("NewLayerWork #%d: %v", i, err)
		}
		err = os.WriteFile(filepath.Join(diff, "f"), []byte("x"), 0o644)
		_, lerr := os.Stat(filepath.Join(w.Dir, "owner.lock"))
		w.Close()
		if err != nil || lerr != nil {
			t.Fatalf("work #%d was taken from under its owner: %v, %v", i, err, lerr)
		}
	}
}
