package netsetup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// CreateNetNS creates a new, empty network namespace and pins it at path with a
// bind mount, the way `ip netns add` pins under /run/netns. The namespace lives
// as long as the pin does, whether or not any process is inside it.
//
// If path already pins a network namespace, CreateNetNS returns nil and leaves
// it alone, so a retried create is harmless. On error nothing is left behind.
func CreateNetNS(path string) error {
	_, err := createNetNS(path)
	return err
}

// createNetNS is CreateNetNS that also reports whether it made the namespace,
// so that a caller undoing its work on error removes only what it created.
func createNetNS(path string) (created bool, err error) {
	if IsNetNSPin(path) {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, fmt.Errorf("netns %q: create parent directory: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil && !errors.Is(err, os.ErrExist) {
		return false, fmt.Errorf("netns %q: create pin file: %w", path, err)
	}
	if f != nil {
		f.Close()
	}

	// unshare(CLONE_NEWNET) changes only the calling thread. Do it on a
	// dedicated, locked thread that is never unlocked: when the goroutine
	// returns, the Go runtime throws that thread away instead of letting
	// another goroutine run in the wrong namespace.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind mount: %w", err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return false, fmt.Errorf("netns %q: %w", path, err)
	}
	return true, nil
}

// RemoveNetNS unpins the namespace at path and deletes the pin file. A missing
// or already-unmounted pin is success; the namespace itself disappears once
// the last process inside it exits.
func RemoveNetNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("netns %q: unmount: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netns %q: remove pin file: %w", path, err)
	}
	return nil
}

// IsNetNSPin reports whether path is a mounted network namespace pin.
func IsNetNSPin(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// OpenNetNS opens the pinned namespace at path. The caller closes the handle.
func OpenNetNS(path string) (netns.NsHandle, error) {
	h, err := netns.GetFromPath(path)
	if err != nil {
		return netns.None(), fmt.Errorf("netns %q: open: %w", path, err)
	}
	return h, nil
}

// InNetNS runs fn on a locked OS thread switched into the network namespace at
// path. Only state bound to the calling thread's namespace needs this (for
// example /proc/sys/net); netlink work should use a handle instead.
func InNetNS(path string, fn func() error) error {
	target, err := OpenNetNS(path)
	if err != nil {
		return err
	}
	defer target.Close()

	errc := make(chan error, 1)
	go func() {
		// As in CreateNetNS, the thread is never unlocked, so it dies with
		// the goroutine and can never carry the namespace elsewhere.
		runtime.LockOSThread()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("netns %q: enter: %w", path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// netNSReleased reports whether the namespace known as nsid in the node
// namespace pinned at nodePath ("" = the caller's) has lost its last
// reference, waiting up to grace for that to happen.
//
// The kernel resolves an ID (RTM_GETNSID with NETNSA_NSID) only for a
// namespace it can still take a reference on; for one whose last reference is
// gone, and that is being or has been destroyed, it answers ENOENT.
//
// The wait is for references that are already on their way out: a closed
// netlink socket lets go of its namespace only after an RCU grace period, so
// a sandbox removed within milliseconds of its Setup still shows the
// socket Setup used in it.
func netNSReleased(nodePath string, nsid int, grace time.Duration) (bool, error) {
	// netlink.Handle offers no lookup by ID, and its sockets are its own.
	s, err := routeSocketAt(nodePath)
	if err != nil {
		return false, fmt.Errorf("netns id %d: %w", nsid, err)
	}
	defer s.Close()
	sh := &nl.SocketHandle{Socket: s}
	b := make([]byte, 4)
	nl.NativeEndian().PutUint32(b, uint32(int32(nsid)))
	deadline := time.Now().Add(grace)
	for wait := 250 * time.Microsecond; ; wait = min(2*wait, 4*time.Millisecond) {
		req := &nl.NetlinkRequest{
			NlMsghdr: unix.NlMsghdr{Len: unix.SizeofNlMsghdr, Type: unix.RTM_GETNSID, Flags: unix.NLM_F_REQUEST},
			Sockets:  map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: sh},
		}
		req.AddData(nl.NewRtGenMsg())
		req.AddData(nl.NewRtAttr(netlink.NETNSA_NSID, b))
		_, err = req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWNSID)
		if errors.Is(err, unix.ENOENT) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("netns id %d: look up: %w", nsid, err)
		}
		if time.Now().Add(wait).After(deadline) {
			return false, nil
		}
		time.Sleep(wait)
	}
}

// OpenHandle returns a netlink route handle bound to the namespace pinned at
// path ("" = the caller's), for packages that manage other parts of the same
// node (nodenet). The caller closes it, and never uses it afterwards: a
// closed handle acts on the caller's own namespace.
func OpenHandle(path string) (*netlink.Handle, error) { return openHandle(path) }
