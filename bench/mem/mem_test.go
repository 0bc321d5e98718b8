package mem

import (
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

func TestParseRollup(t *testing.T) {
	in := []byte(`55d0c9a5e000-7ffd2f5f7000 ---p 00000000 00:00 0                          [rollup]
Rss:                1234 kB
Pss:                 567 kB
Pss_Anon:            300 kB
Anonymous:           320 kB
Swap:                  0 kB
`)
	if got, want := parseRollup(in), (Rollup{PSS: 567, Anonymous: 320, RSS: 1234}); got != want {
		t.Errorf("parseRollup = %+v, want %+v", got, want)
	}
}

func TestParseBusy(t *testing.T) {
	in := []byte("cpu  714214 3 594417 4094730 33909 20 13106 399 7 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
	// user+nice+system+irq+softirq+steal ticks; idle and iowait left out.
	want := time.Duration(714214+3+594417+20+13106+399) * 10 * time.Millisecond
	if got, err := parseBusy(in); err != nil || got != want {
		t.Errorf("parseBusy = %v, %v; want %v", got, err, want)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8\n", "cpu 1 2 3\n", "cpu 1 2 x 4 5 6 7 8\n"} {
		if _, err := parseBusy([]byte(bad)); err == nil {
			t.Errorf("parseBusy(%q) succeeded", bad)
		}
	}
}

func TestNodeBusyAdvances(t *testing.T) {
	before, err := NodeBusy()
	if err != nil {
		t.Fatal(err)
	}
	// 150 ms of this process's CPU is at least 15 ticks of the node's.
	for end := time.Now().Add(150 * time.Millisecond); time.Now().Before(end); {
	}
	after, err := NodeBusy()
	if err != nil {
		t.Fatal(err)
	}
	if d := after - before; d < 100*time.Millisecond {
		t.Errorf("node busy advanced %v over 150 ms of spinning, want at least 100 ms", d)
	}
}

// marker is a sleep argument no other process has.
const marker = "0.000000271828"

func TestOwnProcess(t *testing.T) {
	r, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if r.PSS <= 0 || r.RSS < r.PSS || r.Anonymous <= 0 {
		t.Errorf("own memory %+v: want 0 < PSS ≤ RSS and some anonymous memory", r)
	}
	if _, err := Read(-1); err == nil {
		t.Error("Read(-1) succeeded")
	}
	cmd := exec.Command("sleep", "30", marker) // sleep adds its arguments up
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	if kids := Children(os.Getpid()); !slices.Contains(kids, cmd.Process.Pid) {
		t.Errorf("Children(self) = %v, lacks sleep %d", kids, cmd.Process.Pid)
	}
	if got := WithArg("sleep", marker); !slices.Equal(got, []int{cmd.Process.Pid}) {
		t.Errorf("WithArg(sleep, marker) = %v, want [%d]", got, cmd.Process.Pid)
	}
	rs, err := Settled([]int{os.Getpid(), cmd.Process.Pid}, time.Second)
	if err != nil || len(rs) != 2 || rs[1].PSS <= 0 {
		t.Errorf("Settled = %+v, %v", rs, err)
	}
	// Burn CPU until 50 ms of it are counted. On a busy machine the
	// spinning may get little of a CPU, so the bound is generous and on
	// wall time: what fails is CPUTime never growing.
	before, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		after, err := CPUTime(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if after-before >= 50*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPUTime after 30 s of spinning went from %s to %s", before, after)
		}
		for end := time.Now().Add(10 * time.Millisecond); time.Now().Before(end); {
		}
	}
	if kib, err := AvailableKiB(); err != nil || kib <= 0 {
		t.Errorf("AvailableKiB = %d, %v", kib, err)
	}
}
