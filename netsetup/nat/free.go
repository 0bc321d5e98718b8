package nat

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// CheckFree refuses mappings whose host port is taken: published for
// another sandbox (a *ConflictError naming it), or bound by a process of
// the node (named by its PID and command), and host IPs that are no address
// of the node. It is the early check of a create; Add checks the rules
// again under the lock.
func (r Rules) CheckFree(ms []Mapping) error {
	if len(ms) == 0 {
		return nil
	}
	published, err := r.List()
	if err != nil {
		return err
	}
	for _, m := range ms {
		for _, p := range published {
			if p.Mapping.Overlaps(m) {
				return &ConflictError{Mapping: m, Holder: "sandbox " + p.SandboxID}
			}
		}
	}
	return r.inNode(func() error {
		for _, m := range ms {
			if err := bindable(m); err != nil {
				return err
			}
		}
		return nil
	})
}

// bindable tries to bind m's host address and port as a server would.
func bindable(m Mapping) error {
	typ := unix.SOCK_STREAM
	if m.Protocol == "udp" {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(unix.AF_INET, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("host port %d/%s: %w", m.HostPort, m.Protocol, err)
	}
	defer unix.Close(fd)
	sa := &unix.SockaddrInet4{Port: int(m.HostPort)}
	if m.HostIP.IsValid() {
		sa.Addr = m.HostIP.As4()
	}
	err = unix.Bind(fd, sa)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EADDRNOTAVAIL):
		return fmt.Errorf("-p %s: host IP %s is not an address of the node", m, m.HostIP)
	case errors.Is(err, unix.EADDRINUSE):
		return &ConflictError{Mapping: m, Holder: holder(m)}
	}
	return fmt.Errorf("host port %d/%s: %w", m.HostPort, m.Protocol, err)
}

// holder names the process bound to m's host port, as well as /proc tells
// it: the socket's inode from /proc/net, then the process holding it.
func holder(m Mapping) string {
	inode := socketInode(m)
	if inode == "" {
		return "a process of the node"
	}
	target := "socket:[" + inode + "]"
	pids, _ := filepath.Glob("/proc/[0-9]*/fd")
	for _, dir := range pids {
		fds, _ := os.ReadDir(dir)
		for _, fd := range fds {
			if l, _ := os.Readlink(filepath.Join(dir, fd.Name())); l == target {
				pid := filepath.Base(filepath.Dir(dir))
				comm, _ := os.ReadFile(filepath.Join("/proc", pid, "comm"))
				return fmt.Sprintf("process %s (%s)", pid, strings.TrimSpace(string(comm)))
			}
		}
	}
	return "a process of the node"
}

// socketInode finds, in /proc/net of the calling thread's namespace, the
// inode of a socket bound to m's port (listening, for TCP): among IPv4
// sockets, and IPv6 ones, which take IPv4 too when bound to the wildcard
// (as Go servers and many others bind "0.0.0.0").
func socketInode(m Mapping) string {
	for _, file := range []string{m.Protocol, m.Protocol + "6"} {
		if inode := scanProcNet("/proc/thread-self/net/"+file, m); inode != "" {
			return inode
		}
	}
	return ""
}

func scanProcNet(path string, m Mapping) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			continue
		}
		ipHex, portHex, ok := strings.Cut(f[1], ":")
		port, err := strconv.ParseUint(portHex, 16, 16)
		if !ok || err != nil || uint16(port) != m.HostPort || m.Protocol == "tcp" && f[3] != "0A" {
			continue
		}
		if m.HostIP.IsValid() && len(ipHex) == 8 {
			if ip, ok := procIP(ipHex); ok && !ip.IsUnspecified() && ip != m.HostIP {
				continue
			}
		}
		return f[9]
	}
	return ""
}

// procIP reads an IPv4 address as /proc/net writes it: the 32-bit value in
// the machine's byte order, in hex.
func procIP(h string) (netip.Addr, bool) {
	v, err := strconv.ParseUint(h, 16, 32)
	if err != nil {
		return netip.Addr{}, false
	}
	var b [4]byte
	nativePut(b[:], uint32(v))
	return netip.AddrFrom4(b), true
}
