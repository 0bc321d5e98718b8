package oom

import (
	"strings"
	"testing"
	"time"
)

// Killed compares the cgroup's counter with the one Add saw, whoever has
// or has not noticed the kill yet.
func TestKilledV2(t *testing.T) {
	f := newFakeV2(t, "podbox/sb/a", "podbox/sb/b")
	f.set("podbox/sb/a", 4, 3) // kills before Add are not this container's
	w := f.watcher(eventBuffer)
	for _, id := range []string{"a", "b"} {
		if err := w.Add(id, "podbox/sb/"+id); err != nil {
			t.Fatal(err)
		}
	}
	if killed, err := w.Killed("a"); err != nil || killed {
		t.Errorf("Killed(a) before any kill = %v, %v", killed, err)
	}
	f.set("podbox/sb/a", 9, 3) // at its limit, but nothing killed
	if killed, err := w.Killed("a"); err != nil || killed {
		t.Errorf("Killed(a) after a max event = %v, %v", killed, err)
	}
	f.set("podbox/sb/a", 9, 4)
	if killed, err := w.Killed("a"); err != nil || !killed {
		t.Errorf("Killed(a) after a kill = %v, %v", killed, err)
	}
	if killed, err := w.Killed("b"); err != nil || killed {
		t.Errorf("Killed(b) after a kill in a = %v, %v", killed, err)
	}
	// Sending the event does not move the baseline Killed compares with.
	expectID(t, w.Events(), "a", 2*time.Second)
	if killed, _ := w.Killed("a"); !killed {
		t.Error("Killed(a) forgot the kill once its event was sent")
	}
	w.Remove("a")
	if _, err := w.Killed("a"); err == nil || !strings.Contains(err.Error(), `"a"`) {
		t.Errorf("Killed of a removed container: %v", err)
	}
}
