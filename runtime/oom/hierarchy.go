package oom

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// memoryHierarchy is the tree whose memory controller the watcher listens
// to.
type memoryHierarchy struct {
	mount string
	// v2 is true when the memory controller is the unified tree's (pure v2
	// hosts), false when it is a v1 hierarchy (v1 and hybrid hosts).
	v2 bool
}

// findMemoryHierarchy reads a mountinfo file the way runtime/metrics does
// (whose parser is unexported): a mounted v1 memory controller wins, since on
// hybrid hosts the unified mount holds no controllers; otherwise the unified
// tree is used.
func findMemoryHierarchy(mountinfo string) (memoryHierarchy, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return memoryHierarchy{}, err
	}
	defer f.Close()
	var v1, v2 string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "35 31 0:32 / /sys/fs/cgroup/memory rw,… - cgroup cgroup rw,memory"
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, sf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(sf) < 3 {
			continue
		}
		mount := unescapeMount(pf[4])
		switch sf[0] {
		case "cgroup2":
			// Prefer the conventional mount if the tree is mounted twice.
			if v2 == "" || mount == "/sys/fs/cgroup" {
				v2 = mount
			}
		case "cgroup":
			if v1 == "" && slices.Contains(strings.Split(sf[2], ","), "memory") {
				v1 = mount
			}
		}
	}
	if err := sc.Err(); err != nil {
		return memoryHierarchy{}, fmt.Errorf("%s: %w", mountinfo, err)
	}
	switch {
	case v1 != "":
		return memoryHierarchy{mount: v1}, nil
	case v2 != "":
		return memoryHierarchy{mount: v2, v2: true}, nil
	}
	return memoryHierarchy{}, errors.New("no memory cgroup hierarchy mounted")
}

// unescapeMount undoes mountinfo's octal escapes ("\040" for a space), which
// are Go's own octal escapes too. Mountinfo leaves '"' unescaped, which
// Unquote rejects; such a path is returned as it is.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	if u, err := strconv.Unquote(`"` + s + `"`); err == nil {
		return u
	}
	return s
}
