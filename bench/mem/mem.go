// Package mem reads what processes cost, from /proc: the proportional set
// size and anonymous memory of a process (/proc/PID/smaps_rollup), the CPU
// time it has used, its children, the node's MemAvailable and how long the
// node's cores have been busy. It only reads; it never starts, signals or
// waits for a process.
package mem

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Rollup is a process's memory in KiB, from smaps_rollup.
type Rollup struct {
	PSS, Anonymous, RSS int
}

// Read returns pid's Rollup.
func Read(pid int) (Rollup, error) {
	path := "/proc/" + strconv.Itoa(pid) + "/smaps_rollup"
	b, err := os.ReadFile(path)
	if err != nil {
		return Rollup{}, fmt.Errorf("memory of process %d: %w", pid, err)
	}
	return parseRollup(b), nil
}

// parseRollup picks the fields of smaps_rollup ("Pss:  123 kB").
func parseRollup(b []byte) Rollup {
	var r Rollup
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		v, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		switch f[0] {
		case "Pss:":
			r.PSS = v
		case "Anonymous:":
			r.Anonymous = v
		case "Rss:":
			r.RSS = v
		}
	}
	return r
}

// Settled reads every pid until the total PSS of two reads in a row agrees
// within 1% (or patience runs out), so that the figures are those of idle
// processes rather than of processes still starting up; it returns the
// last read, in the order of pids.
func Settled(pids []int, patience time.Duration) ([]Rollup, error) {
	read := func() ([]Rollup, int, error) {
		out := make([]Rollup, len(pids))
		total := 0
		for i, pid := range pids {
			r, err := Read(pid)
			if err != nil {
				return nil, 0, err
			}
			out[i] = r
			total += r.PSS
		}
		return out, total, nil
	}
	prev, prevTotal, err := read()
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(patience)
	for time.Now().Before(deadline) {
		time.Sleep(300 * time.Millisecond)
		cur, total, err := read()
		if err != nil {
			return nil, err
		}
		diff := total - prevTotal
		prev, prevTotal = cur, total
		if diff < 0 {
			diff = -diff
		}
		if diff*100 <= total {
			break
		}
	}
	return prev, nil
}

// userHZ is the unit of the times in /proc/PID/stat: USER_HZ, 100 on every
// Linux the project runs on.
const userHZ = 100

// CPUTime returns the user + system CPU time pid has used.
func CPUTime(pid int) (time.Duration, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	// After the command: state ppid … utime is the 12th, stime the 13th.
	if len(f) < 13 {
		return 0, fmt.Errorf("process %d: malformed stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("process %d: malformed stat times", pid)
	}
	return time.Duration(ut+st) * time.Second / userHZ, nil
}

// Children returns the processes whose parent is pid.
func Children(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, err := ParentOf(child); err == nil && pp == pid {
			out = append(out, child)
		}
	}
	return out
}

// ParentOf returns pid's parent from /proc/PID/stat.
func ParentOf(pid int) (int, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	if len(f) < 2 {
		return 0, fmt.Errorf("process %d: malformed stat", pid)
	}
	return strconv.Atoi(f[1])
}

// statFields returns the fields of /proc/PID/stat after the command name
// (state first). The name may hold spaces and parentheses, so the fields
// start after the last ')'.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("process %d: malformed stat", pid)
	}
	return strings.Fields(string(b[i+1:])), nil
}

// WithArg returns the processes named name (the base of argv[0]) with arg
// among their arguments: how containerd's shims are told apart by the
// daemon socket they were started for.
func WithArg(name, arg string) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(raw) == 0 {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if base := argv[0][strings.LastIndexByte(argv[0], '/')+1:]; base != name {
			continue
		}
		for _, a := range argv[1:] {
			if a == arg {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

// AvailableKiB returns the node's MemAvailable.
func AvailableKiB() (int, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemAvailable:" {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("/proc/meminfo has no MemAvailable")
}

// NodeBusy returns how long the node's cores have been busy since boot,
// summed over all cores: every state of /proc/stat's "cpu" line but idle
// and iowait. It counts what no process tree shows, such as a daemonized
// shim, a kernel worker or an interrupt, in USER_HZ ticks (10 ms): a
// difference is only as good as its number of ticks.
func NodeBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseBusy(b)
}

// parseBusy reads the busy time from the contents of /proc/stat.
func parseBusy(b []byte) (time.Duration, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	// cpu user nice system idle iowait irq softirq steal [guest guest_nice];
	// guest time is already part of user.
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: first line %q is not the cpu total", line)
	}
	var busy int64
	for i, v := range f[1:9] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: cpu field %d: %w", i+1, err)
		}
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / userHZ, nil
}
