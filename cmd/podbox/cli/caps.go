package cli

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// allCapabilities are the Linux capabilities, in the kernel's order
// (capabilities(7)), up to the last one runc 1.1 knows.
var allCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// capAll is the name that stands for every capability.
const capAll = "ALL"

// normalizeCaps turns --cap-add's or --cap-drop's names into CAP_NAME (or
// ALL), as docker does: any case, with or without the CAP_ prefix. A name
// given twice counts once; an unknown one is an error.
func normalizeCaps(flag string, names []string) ([]string, error) {
	var out []string
	for _, n := range names {
		c := strings.ToUpper(strings.TrimSpace(n))
		if c != capAll && !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		if c != capAll && !slices.Contains(allCapabilities, c) {
			return nil, fmt.Errorf("%s %q: unknown capability (want a name of capabilities(7) such as NET_ADMIN, or ALL)", flag, n)
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

// boundingSet reads the capability bounding set of this process, which the
// shim and runc inherit: no container can have a capability outside it
// (runc fails with "unable to apply caps"), and a host may lack some, as a
// VM or a container does that was started without them.
func boundingSet() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("capability bounding set: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("capability bounding set: no CapBnd in /proc/self/status")
}

// checkBounding refuses an added capability outside the bounding set bnd.
func checkBounding(add []string, bnd uint64) error {
	for _, c := range add {
		if i := slices.Index(allCapabilities, c); i >= 0 && bnd&(1<<i) == 0 {
			return fmt.Errorf("--cap-add %s: not in this host's capability bounding set, so no container here can have it", c)
		}
	}
	return nil
}

// capabilities is the set a container gets from the defaults, adds and
// drops (normalized), with docker's rules: adding ALL gives every
// capability of the bounding set bnd but the dropped ones; dropping ALL
// keeps only the added ones; otherwise the drops come off the defaults,
// then the adds go on.
func capabilities(defaults, add, drop []string, bnd uint64) []string {
	var caps []string
	switch {
	case slices.Contains(add, capAll):
		for i, c := range allCapabilities {
			if bnd&(1<<i) != 0 && !slices.Contains(drop, c) {
				caps = append(caps, c)
			}
		}
	case slices.Contains(drop, capAll):
		caps = slices.Clone(add)
	default:
		for _, c := range defaults {
			if !slices.Contains(drop, c) {
				caps = append(caps, c)
			}
		}
		for _, c := range add {
			if !slices.Contains(caps, c) {
				caps = append(caps, c)
			}
		}
	}
	if caps == nil {
		caps = []string{} // no capabilities at all, not "unset"
	}
	return caps
}
