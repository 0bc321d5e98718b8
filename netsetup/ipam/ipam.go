// Package ipam leases IPv4 addresses of one subnet to owners (sandbox IDs),
// host-local style: leases are persisted in a directory under the state root
// and guarded by a file lock, so many processes (one shim per sandbox) and
// many goroutines can lease and release at once. It never hands out the
// network, gateway or broadcast address.
//
// It owns only the bookkeeping of who holds which address: it never
// configures an interface, a route or a namespace, and it knows nothing about
// containers.
//
// On disk a pool is two files in its directory, both 0600 in a 0700 dir:
//
//	lock    empty; flock(2)ed around every read-modify-write
//	leases  the whole pool, one lease per line, ordered by address:
//
//	    podbox-ipam 1
//	    subnet 10.89.0.0/16
//	    gateway 10.89.0.1
//	    last 10.89.0.3
//	    leases 2
//	    10.89.0.2 3f9c…e1
//	    10.89.0.3 web
//
// "last" is the most recently allocated address ("-" before the first), the
// point where the next allocation resumes. A line format rather than JSON
// because every Lease reads and rewrites the whole file: with 1000 leases
// encoding/json took 1.2 ms per call, this format 0.2 ms (on tmpfs; see
// BenchmarkLeaseRelease), and the file stays readable with cat and grep. Owners hold no newline or
// control character, so an owner is simply the rest of its line.
//
// The leases file is replaced atomically (write a temporary file, rename), so
// a crash of a process at any point leaves either the old or the new state,
// never a torn one. In a runtime directory (under /run, or on tmpfs) that is
// all: its content, like the namespaces and links the leases stand for, does
// not outlive a reboot. Anywhere else the temporary file and the directory
// are fsynced too, so that a power cut cannot leave a torn pool behind.
package ipam

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// ErrExhausted is returned (wrapped, naming the subnet) when every address of
// the subnet is leased.
var ErrExhausted = errors.New("no free address")

const (
	lockName  = "lock"
	stateName = "leases"
	// tmpName is a fixed name: only the holder of the exclusive lock writes
	// it, and a leftover from a crash is simply truncated by the next write.
	tmpName = stateName + ".tmp"

	magic = "podbox-ipam 1"

	// maxOwnerLen bounds an owner so a bad caller cannot bloat the state
	// file that every Lease reads and rewrites. Sandbox IDs are 64 hex
	// characters; this leaves room for readable names.
	maxOwnerLen = 256
)

// Lease is one address held by one owner.
type Lease struct {
	Owner string     `json:"owner"`
	IP    netip.Addr `json:"ip"`
}

// Pool hands out the host addresses of one subnet. A Pool holds no open
// file and no copy of the leases: every call takes the lock and reads the
// state afresh, because other processes change it. A Pool is safe for
// concurrent use and needs no Close.
type Pool struct {
	dir     string
	subnet  netip.Prefix
	gateway netip.Addr
	// durable: fsync each update (see store); false in a runtime dir.
	durable bool

	// First and last host address (network+1 … broadcast-1), as integers so
	// that allocation is plain arithmetic.
	lo, hi uint32
}

// state is the content of the leases file.
type state struct {
	// last is the most recently allocated address, where the next
	// allocation resumes (see Lease); the zero Addr before the first.
	last netip.Addr
	// leases is ordered by address, as in the file; that order makes
	// allocation a walk and duplicate addresses easy to detect.
	leases []Lease
}

// Open opens the pool persisted in dir, creating dir (0700, and its
// parents) and the pool if needed. subnet must be IPv4; its host bits are
// ignored (10.89.0.1/16 means 10.89.0.0/16); it must leave at least one host
// address besides gateway. gateway must be a host address of subnet and is
// never leased.
//
// Opening a dir that holds the pool of another subnet or gateway is an
// error: its leases were made for another network, and silently mixing the
// two could hand out an address twice.
func Open(dir string, subnet netip.Prefix, gateway netip.Addr) (*Pool, error) {
	p, err := newPool(dir, subnet, gateway)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ipam %s: create state dir: %w", p.subnet, err)
	}
	err = p.withLock(unix.LOCK_EX, func() error {
		st, exists, err := p.load()
		if err != nil || exists {
			return err
		}
		// Write the empty pool now so that the directory records its
		// subnet from the start, and a later Open with another subnet
		// fails even before the first lease.
		return p.store(st)
	})
	if err != nil {
		return nil, fmt.Errorf("ipam %s: open: %w", p.subnet, err)
	}
	return p, nil
}

// newPool validates the arguments of Open.
func newPool(dir string, subnet netip.Prefix, gateway netip.Addr) (*Pool, error) {
	if dir == "" {
		return nil, errors.New("ipam: empty state dir")
	}
	if !subnet.IsValid() || !subnet.Addr().Is4() {
		return nil, fmt.Errorf("ipam %s: subnet must be IPv4", subnet)
	}
	subnet = subnet.Masked()
	// Network and broadcast are never hosts, and one more goes to the
	// gateway: a /30 (two hosts) is the smallest subnet with a free one.
	if subnet.Bits() > 30 {
		return nil, fmt.Errorf("ipam %s: subnet too small: need a host address besides the gateway", subnet)
	}
	base := u32(subnet.Addr())
	size := uint32(1) << (32 - subnet.Bits()) // for a /0 this is 0, and hi below wraps to 255.255.255.254, as wanted
	p := &Pool{dir: dir, subnet: subnet, lo: base + 1, hi: base + size - 2, durable: !Volatile(dir)}
	if !gateway.Is4() {
		return nil, fmt.Errorf("ipam %s: gateway %s: must be IPv4", subnet, gateway)
	}
	if !subnet.Contains(gateway) {
		return nil, fmt.Errorf("ipam %s: gateway %s: not in subnet", subnet, gateway)
	}
	if g := u32(gateway); g < p.lo || g > p.hi {
		return nil, fmt.Errorf("ipam %s: gateway %s: is the network or broadcast address", subnet, gateway)
	}
	p.gateway = gateway
	return p, nil
}

// Subnet returns the pool's subnet, masked.
func (p *Pool) Subnet() netip.Prefix { return p.subnet }

// Gateway returns the pool's gateway, which is never leased.
func (p *Pool) Gateway() netip.Addr { return p.gateway }

// Lease returns owner's address, allocating one if owner holds none. Calling
// it again for the same owner returns the same address, so a retried or
// replayed sandbox setup keeps its address. When every host address is
// leased the error wraps ErrExhausted.
//
// Allocation rotates, as CNI's host-local does: the search resumes after
// the address allocated last and wraps around the subnet. A just-released
// address is therefore reused only after all the others were handed out,
// which gives peers' ARP caches, conntrack entries and anyone still talking
// to the old sandbox time to forget it before its traffic reaches a new
// sandbox, and lets netsetup free a lease while the kernel is still
// destroying the namespace that held the address.
func (p *Pool) Lease(owner string) (netip.Addr, error) {
	ip, _, err := p.Acquire(owner)
	return ip, err
}

// Acquire is Lease that also reports whether this call allocated the
// address (fresh) rather than found owner holding it: a caller undoing its
// own work releases only what it took.
func (p *Pool) Acquire(owner string) (ip netip.Addr, fresh bool, err error) {
	if err := checkOwner(owner); err != nil {
		return netip.Addr{}, false, fmt.Errorf("ipam %s: lease: %w", p.subnet, err)
	}
	err = p.withLock(unix.LOCK_EX, func() error {
		st, _, err := p.load()
		if err != nil {
			return err
		}
		if i := st.find(owner); i >= 0 {
			ip = st.leases[i].IP
			return nil
		}
		got, err := p.allocate(st)
		if err != nil {
			return err
		}
		i, _ := slices.BinarySearchFunc(st.leases, got, byIP)
		st.leases = slices.Insert(st.leases, i, Lease{Owner: owner, IP: got})
		st.last = got
		if err := p.store(st); err != nil {
			return err
		}
		ip, fresh = got, true
		return nil
	})
	if err != nil {
		return netip.Addr{}, false, fmt.Errorf("ipam %s: lease for %q: %w", p.subnet, owner, err)
	}
	return ip, fresh, nil
}

// allocate picks a free host address, resuming after st.last and wrapping.
//
// It walks addresses and the sorted leases side by side. Every address it
// skips is leased or the gateway, so it takes at most len(leases)+2 steps,
// O(leases) even in a /16; exhaustion is found by counting, before walking.
func (p *Pool) allocate(st *state) (netip.Addr, error) {
	hosts := uint64(p.hi) - uint64(p.lo) + 1
	if uint64(len(st.leases))+1 >= hosts { // +1: the gateway
		return netip.Addr{}, ErrExhausted
	}
	c := p.lo
	if st.last.IsValid() {
		if l := u32(st.last); l >= p.lo && l < p.hi {
			c = l + 1
		}
	}
	g := u32(p.gateway)
	i, _ := slices.BinarySearchFunc(st.leases, addr(c), byIP) // first lease ≥ c
	for {
		switch {
		case c == g:
		case i < len(st.leases) && u32(st.leases[i].IP) == c:
			i++
		default:
			return addr(c), nil
		}
		if c == p.hi {
			c, i = p.lo, 0
		} else {
			c++
		}
	}
}

// Release frees owner's address. Releasing an owner that holds none is
// success, so teardown can run again after a crash.
func (p *Pool) Release(owner string) error {
	if err := checkOwner(owner); err != nil {
		return fmt.Errorf("ipam %s: release: %w", p.subnet, err)
	}
	err := p.withLock(unix.LOCK_EX, func() error {
		st, _, err := p.load()
		if err != nil {
			return err
		}
		i := st.find(owner)
		if i < 0 {
			return nil
		}
		st.leases = slices.Delete(st.leases, i, i+1)
		// st.last stays: rotation goes on where it was (see Lease).
		return p.store(st)
	})
	if err != nil {
		return fmt.Errorf("ipam %s: release of %q: %w", p.subnet, owner, err)
	}
	return nil
}

// Lookup returns owner's address and true, or false if owner holds none. It
// never allocates; recovery uses it to learn what a sandbox held.
func (p *Pool) Lookup(owner string) (netip.Addr, bool, error) {
	if err := checkOwner(owner); err != nil {
		return netip.Addr{}, false, fmt.Errorf("ipam %s: lookup: %w", p.subnet, err)
	}
	var ip netip.Addr
	err := p.withLock(unix.LOCK_SH, func() error {
		st, _, err := p.load()
		if err != nil {
			return err
		}
		if i := st.find(owner); i >= 0 {
			ip = st.leases[i].IP
		}
		return nil
	})
	if err != nil {
		return netip.Addr{}, false, fmt.Errorf("ipam %s: lookup of %q: %w", p.subnet, owner, err)
	}
	return ip, ip.IsValid(), nil
}

// Leases lists the current leases, ordered by address.
func (p *Pool) Leases() ([]Lease, error) {
	var out []Lease
	err := p.withLock(unix.LOCK_SH, func() error {
		st, _, err := p.load()
		if err != nil {
			return err
		}
		out = st.leases
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ipam %s: list leases: %w", p.subnet, err)
	}
	return out, nil
}

// find returns the index of owner's lease, or -1. A linear scan: with 1000
// leases it costs a few microseconds, less than keeping a map would.
func (st *state) find(owner string) int {
	return slices.IndexFunc(st.leases, func(l Lease) bool { return l.Owner == owner })
}

func byIP(l Lease, ip netip.Addr) int { return l.IP.Compare(ip) }

// withLock runs fn holding flock(how) on dir/lock.
//
// The lock is a file of its own, not the leases file: store replaces that
// by rename, and a lock held on the replaced inode would no longer exclude
// anyone. The lock file is opened afresh on every call because flock
// belongs to the open file description: goroutines sharing one descriptor
// would all "hold" it at once, while separate opens exclude each other
// within a process just as across processes. The lock dies with the
// descriptor, so a process killed while holding it cannot wedge the pool.
func (p *Pool) withLock(how int, fn func() error) error {
	path := filepath.Join(p.dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("open lock: %w", err)
	}
	defer f.Close() // releases the lock
	for {
		err = unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	return fn()
}

// load reads the leases file. A missing file is an empty pool (exists
// false). A file that does not parse, breaks an invariant, or belongs to
// another subnet or gateway is an error, never silently reset: resetting
// would hand out addresses that sandboxes still use.
func (p *Pool) load() (st *state, exists bool, err error) {
	path := filepath.Join(p.dir, stateName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &state{}, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read state: %w", err)
	}
	st, err = p.parse(b)
	if err != nil {
		return nil, false, fmt.Errorf("state %s: %w", path, err)
	}
	return st, true, nil
}

// parse decodes and checks the leases file (format in the package doc).
// O(leases); the checks keep a damaged or hand-edited file from making the
// pool hand out a reserved or duplicate address.
//
// It converts the file to one string and slices the owners out of it, so
// the owners cost no allocation each.
func (p *Pool) parse(b []byte) (*state, error) {
	var (
		line int
		rest = string(b)
	)
	next := func() (string, bool) {
		l, r, ok := strings.Cut(rest, "\n")
		if !ok {
			return "", false // the end, or a last line without newline: truncated
		}
		line++
		rest = r
		return l, true
	}
	field := func(key string) (string, error) {
		l, ok := next()
		if !ok {
			return "", fmt.Errorf("corrupt: line %d: want %q, got end of file", line+1, key+" …")
		}
		v, found := strings.CutPrefix(l, key+" ")
		if !found {
			return "", fmt.Errorf("corrupt: line %d: want %q", line, key+" …")
		}
		return v, nil
	}
	if l, _ := next(); l != magic {
		return nil, fmt.Errorf("unknown format %.40q (want %q)", l, magic)
	}
	var subnet netip.Prefix
	var gateway netip.Addr
	if v, err := field("subnet"); err != nil {
		return nil, err
	} else if subnet, err = netip.ParsePrefix(v); err != nil {
		return nil, fmt.Errorf("corrupt: line %d: %w", line, err)
	}
	if v, err := field("gateway"); err != nil {
		return nil, err
	} else if gateway, err = netip.ParseAddr(v); err != nil {
		return nil, fmt.Errorf("corrupt: line %d: %w", line, err)
	}
	if subnet != p.subnet || gateway != p.gateway {
		return nil, fmt.Errorf("holds the pool of %s (gateway %s), not of %s (gateway %s); remove %s once no sandbox holds its leases",
			subnet, gateway, p.subnet, p.gateway, p.dir)
	}
	st := &state{}
	if v, err := field("last"); err != nil {
		return nil, err
	} else if v != "-" {
		if st.last, err = netip.ParseAddr(v); err != nil || !st.last.Is4() {
			return nil, fmt.Errorf("corrupt: line %d: bad last address %q", line, v)
		}
	}
	v, err := field("leases")
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(v)
	// Every host address but the gateway is the most a pool can lease.
	if err != nil || n < 0 || uint64(n) > uint64(p.hi-p.lo) {
		return nil, fmt.Errorf("corrupt: line %d: bad lease count %q", line, v)
	}
	// The count sizes what is made before the leases are read, so it is
	// believed only as far as the rest of the file can hold that many
	// lines ("1.2.3.4 x\n" is the shortest): a damaged count must not make
	// a large subnet's pool allocate gigabytes.
	room := min(n, len(rest)/len("1.2.3.4 x\n"))
	st.leases = make([]Lease, 0, room+1) // +1: room for the Lease that loads it
	owners := make(map[string]struct{}, room)
	for l, ok := next(); ok; l, ok = next() {
		a, owner, _ := strings.Cut(l, " ")
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return nil, fmt.Errorf("corrupt: line %d: %w", line, err)
		}
		// Only what keeps the pool consistent is checked here, not all of
		// checkOwner: this file holds only owners that passed it, and the
		// full check would be a sixth of the cost of every call.
		if owner == "" {
			return nil, fmt.Errorf("corrupt: line %d: lease of %s without owner", line, a)
		}
		if !ip.Is4() || u32(ip) < p.lo || u32(ip) > p.hi || ip == p.gateway {
			return nil, fmt.Errorf("corrupt: line %d: owner %q holds %s, not a free host address of the subnet", line, owner, ip)
		}
		if k := len(st.leases); k > 0 && !st.leases[k-1].IP.Less(ip) {
			return nil, fmt.Errorf("corrupt: line %d: address %s duplicate or out of order", line, ip)
		}
		if _, dup := owners[owner]; dup {
			return nil, fmt.Errorf("corrupt: line %d: owner %q holds two addresses", line, owner)
		}
		owners[owner] = struct{}{}
		st.leases = append(st.leases, Lease{Owner: owner, IP: ip})
	}
	if len(rest) != 0 || len(st.leases) != n {
		return nil, fmt.Errorf("corrupt: %d leases of %d, or a truncated last line", len(st.leases), n)
	}
	return st, nil
}

// store replaces the leases file atomically: write a temporary file, rename
// it over the old one; in a durable pool, fsync the file before the rename
// and the directory after it.
//
// The rename alone makes the update atomic against a crash of the process.
// The fsyncs make it survive a crash of the machine too, which matters only
// where the file outlives a reboot: there, without the fsync before the
// rename, some filesystems can show a renamed but empty file after a power
// cut, a corrupt pool that refuses every lease until it is removed by hand.
// In a runtime dir (see Volatile) the file goes with the reboot, together
// with the namespaces and links that used its leases, so the fsyncs (1.3 ms
// per update on this ext4 /run, a tenth of a sandbox create) buy nothing.
func (p *Pool) store(st *state) error {
	n := 128
	for _, l := range st.leases {
		n += len("255.255.255.255  \n") + len(l.Owner)
	}
	b := make([]byte, 0, n)
	b = fmt.Appendf(b, "%s\nsubnet %s\ngateway %s\nlast ", magic, p.subnet, p.gateway)
	if st.last.IsValid() {
		b = st.last.AppendTo(b)
	} else {
		b = append(b, '-')
	}
	b = append(b, "\nleases "...)
	b = strconv.AppendInt(b, int64(len(st.leases)), 10)
	b = append(b, '\n')
	for _, l := range st.leases {
		b = l.IP.AppendTo(b)
		b = append(b, ' ')
		b = append(b, l.Owner...)
		b = append(b, '\n')
	}

	tmp := filepath.Join(p.dir, tmpName)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	_, err = f.Write(b)
	if err == nil && p.durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write state %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(p.dir, stateName)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write state: %w", err)
	}
	if !p.durable {
		return nil
	}
	d, err := os.Open(p.dir)
	if err != nil {
		return fmt.Errorf("sync state dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync state dir %s: %w", p.dir, err)
	}
	return nil
}

// Volatile reports whether dir is a runtime directory, whose content does
// not survive a reboot: /run or below it (the FHS has it emptied at boot,
// whatever filesystem holds it), or a tmpfs or ramfs. Pools there are not
// fsynced.
func Volatile(dir string) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	if abs == "/run" || strings.HasPrefix(abs, "/run/") {
		return true
	}
	var fs unix.Statfs_t
	for d := abs; ; d = filepath.Dir(d) {
		// The dir itself may not exist yet: ask its nearest ancestor.
		err := unix.Statfs(d, &fs)
		if err == nil {
			return fs.Type == unix.TMPFS_MAGIC || fs.Type == unix.RAMFS_MAGIC
		}
		if d == "/" {
			return false
		}
	}
}

// checkOwner rejects owners that are empty, overlong, not UTF-8, or hold
// '/' or a control character. Owners are stored one per line and end up in
// file names and log lines elsewhere; a newline would split a lease in two.
func checkOwner(owner string) error {
	// Fast path for the usual IDs and names; anything unusual takes the
	// thorough checks.
	simple := owner != "" && len(owner) <= maxOwnerLen
	for i := 0; simple && i < len(owner); i++ {
		c := owner[i]
		simple = c >= 0x20 && c < 0x7f && c != '/'
	}
	if simple {
		return nil
	}
	switch {
	case owner == "":
		return errors.New("empty owner")
	case len(owner) > maxOwnerLen:
		return fmt.Errorf("owner %.32q…: longer than %d bytes", owner, maxOwnerLen)
	case !utf8.ValidString(owner):
		return fmt.Errorf("owner %q: not valid UTF-8", owner)
	case strings.ContainsRune(owner, '/'):
		return fmt.Errorf("owner %q: contains '/'", owner)
	case strings.ContainsFunc(owner, unicode.IsControl):
		return fmt.Errorf("owner %q: contains a control character", owner)
	}
	return nil
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func addr(n uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], n)
	return netip.AddrFrom4(b)
}

// OpenExisting opens the pool already persisted in dir, taking its subnet and
// gateway from the state itself. It is for tools that inspect leases without
// knowing the network's configuration (leak checks, recovery); it fails with
// an error wrapping fs.ErrNotExist if dir holds no pool.
func OpenExisting(dir string) (*Pool, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateName))
	if err != nil {
		return nil, fmt.Errorf("ipam %s: %w", dir, err)
	}
	var subnet, gateway string
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "subnet "); ok && subnet == "" {
			subnet = v
		}
		if v, ok := strings.CutPrefix(line, "gateway "); ok && gateway == "" {
			gateway = v
		}
	}
	s, err1 := netip.ParsePrefix(subnet)
	g, err2 := netip.ParseAddr(gateway)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("ipam %s: corrupt header: %w", dir, err)
	}
	return Open(dir, s, g)
}
