package sandbox

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// maxMountNSCandidates bounds how many other sandboxes' records a create
// reads looking for a live pause to share a mount namespace with.
const maxMountNSCandidates = 4

// pauseMountNS opens the mount namespace of a live pause of another sandbox
// of this state root, for a new pause to join, or returns nil if it finds
// none; the new pause then builds its own (see StartPause).
//
// Why share: a pause's own mount namespace starts as a copy of the host's,
// which holds a netns pin for every sandbox, and the pivot that empties it
// again walks every thread on the machine. Both grow with the node's
// sandbox count: they were much of why a create at the thousandth sandbox took
// several times as long as the first. A pause's namespace holds a single
// read-only mount, the directory with the pause binary, the same for every
// sandbox of a root; joining one is two system calls. Each pause still has
// its own network, IPC, UTS and PID namespaces, and containers never join
// the pause's mount namespace.
func (n Node) pauseMountNS(self, rootDir string) *os.File {
	// One more than the candidates, since self may be among them.
	ids, err := n.Store.SomeSandboxIDs(maxMountNSCandidates + 1)
	if err != nil {
		return nil
	}
	var root, own unix.Stat_t
	if unix.Stat(rootDir, &root) != nil || unix.Stat("/proc/thread-self/ns/mnt", &own) != nil {
		return nil
	}
	tried := 0
	for _, id := range ids {
		if id == self {
			continue
		}
		if tried++; tried > maxMountNSCandidates {
			break
		}
		sb, err := n.Store.LoadSandbox(id)
		if err != nil || !Alive(sb.PausePID, sb.PauseStart) {
			continue
		}
		proc := "/proc/" + strconv.Itoa(sb.PausePID)
		f, err := os.Open(proc + "/ns/mnt")
		if err != nil {
			continue
		}
		// Only a namespace whose root is this root's pause directory, and
		// never our own (the host's): the pause would see the host. The
		// second Alive makes sure the namespace opened is that pause's,
		// not a process's that took over its PID meanwhile.
		var ns, pr unix.Stat_t
		ok := unix.Fstat(int(f.Fd()), &ns) == nil && ns.Ino != own.Ino &&
			unix.Stat(proc+"/root", &pr) == nil && pr.Dev == root.Dev && pr.Ino == root.Ino &&
			Alive(sb.PausePID, sb.PauseStart)
		if ok {
			return f
		}
		f.Close()
	}
	return nil
}
