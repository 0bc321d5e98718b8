package ipam

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

var (
	subnet29 = netip.MustParsePrefix("10.89.0.0/29")
	gw29     = netip.MustParseAddr("10.89.0.1")
)

func mustOpen(t testing.TB, dir string, subnet netip.Prefix, gw netip.Addr) *Pool {
	t.Helper()
	p, err := Open(dir, subnet, gw)
	if err != nil {
		t.Fatalf("Open(%s, %s): %v", subnet, gw, err)
	}
	return p
}

func mustLease(t testing.TB, p *Pool, owner string) netip.Addr {
	t.Helper()
	ip, err := p.Lease(owner)
	if err != nil {
		t.Fatalf("Lease(%q): %v", owner, err)
	}
	return ip
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestOpenRejectsInvalidInput(t *testing.T) {
	tests := []struct {
		name    string
		dir     string
		subnet  string // "" means the zero Prefix
		gateway string // "" means the zero Addr
		want    string // substring of the error
	}{
		{"empty dir", "", "10.89.0.0/24", "10.89.0.1", "empty state dir"},
		{"zero subnet", "d", "", "10.89.0.1", "must be IPv4"},
		{"ipv6 subnet", "d", "fd00::/64", "fd00::1", "fd00::/64: subnet must be IPv4"},
		{"v4-mapped subnet", "d", "::ffff:10.89.0.0/120", "10.89.0.1", "subnet must be IPv4"},
		{"/31 leaves no host", "d", "10.89.0.0/31", "10.89.0.0", "10.89.0.0/31: subnet too small"},
		{"/32 leaves no host", "d", "10.89.0.1/32", "10.89.0.1", "10.89.0.1/32: subnet too small"},
		{"zero gateway", "d", "10.89.0.0/24", "", "gateway invalid IP: must be IPv4"},
		{"ipv6 gateway", "d", "10.89.0.0/24", "fd00::1", "gateway fd00::1: must be IPv4"},
		{"gateway outside", "d", "10.89.0.0/24", "10.89.1.1", "10.89.0.0/24: gateway 10.89.1.1: not in subnet"},
		{"gateway is network", "d", "10.89.0.0/24", "10.89.0.0", "gateway 10.89.0.0: is the network or broadcast"},
		{"gateway is broadcast", "d", "10.89.0.0/24", "10.89.0.255", "gateway 10.89.0.255: is the network or broadcast"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var subnet netip.Prefix
			if tt.subnet != "" {
				subnet = netip.MustParsePrefix(tt.subnet)
			}
			var gw netip.Addr
			if tt.gateway != "" {
				gw = netip.MustParseAddr(tt.gateway)
			}
			dir := tt.dir
			if dir != "" {
				dir = filepath.Join(t.TempDir(), dir)
			}
			p, err := Open(dir, subnet, gw)
			if err == nil {
				t.Fatalf("Open(%q, %s, %s) = %v, want error containing %q", dir, subnet, gw, p, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open error %q, want it to contain %q", err, tt.want)
			}
			if dir != "" {
				if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("invalid Open created %s (stat: %v)", dir, err)
				}
			}
		})
	}
}

func TestOwnerValidation(t *testing.T) {
	p := mustOpen(t, t.TempDir(), subnet29, gw29)
	bad := []struct{ owner, want string }{
		{"", "empty owner"},
		{"a/b", `owner "a/b": contains '/'`},
		{"a\nb", "contains a control character"},
		{"a\x00b", "contains a control character"},
		{"a\tb", "contains a control character"},
		{"\xff\xfe", "not valid UTF-8"},
		{strings.Repeat("x", maxOwnerLen+1), "longer than"},
	}
	for _, tt := range bad {
		t.Run(fmt.Sprintf("%.20q", tt.owner), func(t *testing.T) {
			for op, call := range map[string]func() error{
				"Lease":   func() error { _, err := p.Lease(tt.owner); return err },
				"Release": func() error { return p.Release(tt.owner) },
				"Lookup":  func() error { _, _, err := p.Lookup(tt.owner); return err },
			} {
				err := call()
				if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "ipam 10.89.0.0/29") {
					t.Errorf("%s(%.20q) error = %v, want one naming the subnet and containing %q", op, tt.owner, err, tt.want)
				}
			}
		})
	}
	if l, _ := p.Leases(); len(l) != 0 {
		t.Errorf("invalid owners left leases: %v", l)
	}
	// Ordinary sandbox IDs and names are accepted.
	for _, owner := range []string{strings.Repeat("ab12", 16), "web-1", "ns_x.y:z", strings.Repeat("é", maxOwnerLen/2)} {
		mustLease(t, p, owner)
	}
}

// TestFillSubnet leases every address of small subnets and checks that the
// set handed out is exactly the host addresses minus the gateway, and that
// one more lease is ErrExhausted, naming the subnet.
func TestFillSubnet(t *testing.T) {
	tests := []struct {
		subnet, gateway string
		want            []netip.Addr
	}{
		{"10.89.0.0/29", "10.89.0.1", addrs("10.89.0.2", "10.89.0.3", "10.89.0.4", "10.89.0.5", "10.89.0.6")},
		{"10.89.0.0/29", "10.89.0.6", addrs("10.89.0.1", "10.89.0.2", "10.89.0.3", "10.89.0.4", "10.89.0.5")},
		{"10.89.0.0/29", "10.89.0.4", addrs("10.89.0.1", "10.89.0.2", "10.89.0.3", "10.89.0.5", "10.89.0.6")},
		{"10.89.0.5/29", "10.89.0.1", addrs("10.89.0.2", "10.89.0.3", "10.89.0.4", "10.89.0.5", "10.89.0.6")}, // host bits ignored
		{"10.89.0.0/30", "10.89.0.1", addrs("10.89.0.2")},
		{"10.89.0.0/30", "10.89.0.2", addrs("10.89.0.1")},
		{"192.168.7.248/29", "192.168.7.249", addrs("192.168.7.250", "192.168.7.251", "192.168.7.252", "192.168.7.253", "192.168.7.254")},
	}
	for _, tt := range tests {
		t.Run(tt.subnet+"_gw_"+tt.gateway, func(t *testing.T) {
			subnet := netip.MustParsePrefix(tt.subnet)
			p := mustOpen(t, t.TempDir(), subnet, netip.MustParseAddr(tt.gateway))
			var got []netip.Addr
			for i := range tt.want {
				got = append(got, mustLease(t, p, fmt.Sprint("owner-", i)))
			}
			slices.SortFunc(got, netip.Addr.Compare)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("leased %v, want exactly %v", got, tt.want)
			}
			ip, err := p.Lease("one-too-many")
			if !errors.Is(err, ErrExhausted) {
				t.Fatalf("Lease on a full pool = %v, %v; want ErrExhausted", ip, err)
			}
			if want := "ipam " + subnet.Masked().String() + ":"; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("exhaustion error %q does not start with %q", err, want)
			}
			// An owner that already holds an address still gets it from a
			// full pool.
			if ip, err := p.Lease("owner-0"); err != nil || !slices.Contains(tt.want, ip) {
				t.Errorf("Lease(owner-0) on a full pool = %v, %v; want its address", ip, err)
			}
			// Freeing one address makes exactly that one available again.
			freed, _, _ := p.Lookup("owner-0")
			if err := p.Release("owner-0"); err != nil {
				t.Fatal(err)
			}
			if ip := mustLease(t, p, "newcomer"); ip != freed {
				t.Errorf("after freeing %s the pool leased %s", freed, ip)
			}
		})
	}
}

func TestLeaseIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	p := mustOpen(t, dir, subnet29, gw29)
	a := mustLease(t, p, "a")
	b := mustLease(t, p, "b")
	if a == b {
		t.Fatalf("a and b both got %s", a)
	}
	for range 3 {
		if got := mustLease(t, p, "a"); got != a {
			t.Fatalf("second Lease(a) = %s, want %s", got, a)
		}
	}
	// Also through another Pool, as another process would see it.
	if got := mustLease(t, mustOpen(t, dir, subnet29, gw29), "b"); got != b {
		t.Fatalf("Lease(b) from a reopened pool = %s, want %s", got, b)
	}
	if l, _ := p.Leases(); len(l) != 2 {
		t.Errorf("repeated Lease created extra leases: %v", l)
	}
}

// Acquire says whether it allocated: fresh the first time for an owner,
// not again, and fresh again after a release.
func TestAcquireReportsFresh(t *testing.T) {
	p := mustOpen(t, t.TempDir(), subnet29, gw29)
	ip, fresh, err := p.Acquire("a")
	if err != nil || !fresh {
		t.Fatalf("first Acquire: %s, fresh %v, %v; want fresh", ip, fresh, err)
	}
	again, fresh, err := p.Acquire("a")
	if err != nil || fresh || again != ip {
		t.Fatalf("second Acquire: %s, fresh %v, %v; want %s, not fresh", again, fresh, err, ip)
	}
	if err := p.Release("a"); err != nil {
		t.Fatal(err)
	}
	if _, fresh, err := p.Acquire("a"); err != nil || !fresh {
		t.Fatalf("Acquire after Release: fresh %v, %v; want fresh", fresh, err)
	}
}

func TestReleaseIsIdempotent(t *testing.T) {
	p := mustOpen(t, t.TempDir(), subnet29, gw29)
	if err := p.Release("never-leased"); err != nil {
		t.Fatalf("Release of an owner without a lease: %v", err)
	}
	mustLease(t, p, "a")
	b := mustLease(t, p, "b")
	for range 2 {
		if err := p.Release("a"); err != nil {
			t.Fatalf("Release(a): %v", err)
		}
	}
	if _, ok, err := p.Lookup("a"); ok || err != nil {
		t.Errorf("Lookup(a) after Release = %v, %v; want no lease", ok, err)
	}
	if got, _ := p.Leases(); !slices.Equal(got, []Lease{{"b", b}}) {
		t.Errorf("Leases = %v, want only b", got)
	}
}

// TestRotation checks that allocation continues after the last allocated
// address and wraps, so a released address is not reused at once, and that
// the rotation point survives reopening.
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	p := mustOpen(t, dir, subnet29, gw29)
	steps := []struct {
		op, owner string
		want      string // for lease
	}{
		{"lease", "a", "10.89.0.2"},
		{"lease", "b", "10.89.0.3"},
		{"release", "a", ""},
		{"lease", "c", "10.89.0.4"}, // not .2, just released
		{"release", "b", ""},
		{"reopen", "", ""},
		{"lease", "d", "10.89.0.5"}, // rotation point persisted
		{"lease", "e", "10.89.0.6"},
		{"lease", "f", "10.89.0.2"}, // wrapped, skipping network .0 and gateway .1
		{"lease", "g", "10.89.0.3"},
		{"release", "e", ""},
		{"lease", "h", "10.89.0.6"}, // .4 and .5 held; .6 is next free after .3
	}
	for i, s := range steps {
		switch s.op {
		case "lease":
			if got := mustLease(t, p, s.owner); got.String() != s.want {
				t.Fatalf("step %d: Lease(%s) = %s, want %s", i, s.owner, got, s.want)
			}
		case "release":
			if err := p.Release(s.owner); err != nil {
				t.Fatalf("step %d: Release(%s): %v", i, s.owner, err)
			}
		case "reopen":
			p = mustOpen(t, dir, subnet29, gw29)
		}
	}
}

// TestReleasedAddressIsReusedLast pins down the guarantee netsetup's
// Teardown relies on when it frees a lease while the kernel is still
// destroying the namespace whose eth0 carries the address: a released
// address is handed out again only after every other free address of the
// subnet has been: here only the 244th allocation after it, in a /24.
func TestReleasedAddressIsReusedLast(t *testing.T) {
	p := mustOpen(t, t.TempDir(), netip.MustParsePrefix("10.89.0.0/24"), netip.MustParseAddr("10.89.0.1"))
	for i := range 10 { // .2 … .11
		mustLease(t, p, fmt.Sprint("old-", i))
	}
	released := netip.MustParseAddr("10.89.0.5")
	if err := p.Release("old-3"); err != nil {
		t.Fatal(err)
	}
	// Free now: .5 and the 243 of .12 … .254; .5 must come last.
	for i := range 244 {
		got := mustLease(t, p, fmt.Sprint("new-", i))
		if (got == released) != (i == 243) {
			t.Fatalf("lease %d after the release got %s; %s was to come back only as the last free address", i+1, got, released)
		}
	}
}

func TestLeasesPersistAcrossOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ipam", "podbox0") // nested: Open creates it
	subnet := netip.MustParsePrefix("10.89.0.0/16")
	gw := netip.MustParseAddr("10.89.0.1")
	p := mustOpen(t, dir, subnet, gw)
	want := map[string]netip.Addr{}
	for i := range 20 {
		o := fmt.Sprintf("sandbox-%02d", i)
		want[o] = mustLease(t, p, o)
	}
	if err := p.Release("sandbox-07"); err != nil {
		t.Fatal(err)
	}
	delete(want, "sandbox-07")

	q := mustOpen(t, dir, netip.MustParsePrefix("10.89.3.4/16"), gw) // same subnet, other spelling
	got, err := q.Leases()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("reopened pool has %d leases, want %d: %v", len(got), len(want), got)
	}
	for i, l := range got {
		if want[l.Owner] != l.IP {
			t.Errorf("reopened lease %s = %s, want %s", l.Owner, l.IP, want[l.Owner])
		}
		if i > 0 && !got[i-1].IP.Less(l.IP) {
			t.Errorf("Leases not ordered by address: %s before %s", got[i-1].IP, l.IP)
		}
	}
	for o, ip := range want {
		if got, ok, err := q.Lookup(o); !ok || err != nil || got != ip {
			t.Errorf("Lookup(%s) = %s, %v, %v; want %s", o, got, ok, err, ip)
		}
	}
	if q.Subnet() != subnet || q.Gateway() != gw {
		t.Errorf("Subnet, Gateway = %s, %s; want %s, %s", q.Subnet(), q.Gateway(), subnet, gw)
	}
}

func TestOpenOtherPoolFails(t *testing.T) {
	dir := t.TempDir()
	mustOpen(t, dir, netip.MustParsePrefix("10.89.0.0/24"), netip.MustParseAddr("10.89.0.1"))
	tests := []struct {
		name, subnet, gateway string
	}{
		{"other subnet", "10.89.1.0/24", "10.89.1.1"},
		{"wider subnet", "10.89.0.0/16", "10.89.0.1"},
		{"other gateway", "10.89.0.0/24", "10.89.0.254"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(dir, netip.MustParsePrefix(tt.subnet), netip.MustParseAddr(tt.gateway))
			if err == nil {
				t.Fatal("Open of a dir holding another pool succeeded")
			}
			for _, want := range []string{"ipam " + tt.subnet, dir, "10.89.0.0/24 (gateway 10.89.0.1)"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
		})
	}
}

func TestCorruptStateIsAnError(t *testing.T) {
	const head = "podbox-ipam 1\nsubnet 10.89.0.0/29\ngateway 10.89.0.1\nlast -\n"
	tests := []struct {
		name, content, want string
	}{
		{"empty", "", "unknown format"},
		{"json", `{"version":1}`, "unknown format"},
		{"future version", "podbox-ipam 2\n", `unknown format "podbox-ipam 2"`},
		{"no subnet", "podbox-ipam 1\ngateway 10.89.0.1\n", `line 2: want "subnet …"`},
		{"bad subnet", "podbox-ipam 1\nsubnet 10.89.0/29\n", "line 2"},
		{"bad last", "podbox-ipam 1\nsubnet 10.89.0.0/29\ngateway 10.89.0.1\nlast fd00::1\nleases 0\n", "bad last address"},
		{"no count", head, `line 5: want "leases …"`},
		{"bad count", head + "leases -1\n", "bad lease count"},
		{"count too high", head + "leases 2\n10.89.0.2 a\n", "1 leases of 2"},
		{"count too low", head + "leases 0\n10.89.0.2 a\n", "1 leases of 0"},
		{"truncated line", head + "leases 1\n10.89.0.2 a", "truncated"},
		{"bad address", head + "leases 1\n10.89.0.x a\n", "line 6"},
		{"ipv6 address", head + "leases 1\nfd00::2 a\n", "not a free host address"},
		{"duplicate address", head + "leases 2\n10.89.0.2 a\n10.89.0.2 b\n", "address 10.89.0.2 duplicate"},
		{"unordered", head + "leases 2\n10.89.0.3 a\n10.89.0.2 b\n", "out of order"},
		{"duplicate owner", head + "leases 2\n10.89.0.2 a\n10.89.0.3 a\n", `owner "a" holds two addresses`},
		{"gateway leased", head + "leases 1\n10.89.0.1 a\n", "not a free host address"},
		{"network leased", head + "leases 1\n10.89.0.0 a\n", "not a free host address"},
		{"broadcast leased", head + "leases 1\n10.89.0.7 a\n", "not a free host address"},
		{"outside subnet", head + "leases 1\n10.90.0.2 a\n", "not a free host address"},
		{"no owner", head + "leases 1\n10.89.0.2\n", "lease of 10.89.0.2 without owner"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, stateName), []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Open(dir, subnet29, gw29)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), stateName) {
				t.Fatalf("Open over %s = %v, want an error naming the file and containing %q", tt.name, err, tt.want)
			}
			// The damaged file is left for a human, not reset.
			if b, _ := os.ReadFile(filepath.Join(dir, stateName)); string(b) != tt.content {
				t.Errorf("Open rewrote the corrupt state to %q", b)
			}
		})
	}
}

func TestFileModes(t *testing.T) {
	old := unix.Umask(0) // the modes must not depend on a permissive umask
	defer unix.Umask(old)
	dir := filepath.Join(t.TempDir(), "ipam", "podbox0")
	p := mustOpen(t, dir, subnet29, gw29)
	mustLease(t, p, "a")
	for path, want := range map[string]os.FileMode{
		filepath.Dir(dir):             os.ModeDir | 0o700,
		dir:                           os.ModeDir | 0o700,
		filepath.Join(dir, lockName):  0o600,
		filepath.Join(dir, stateName): 0o600,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode(), want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("dir holds %d entries, want lock and %s only (no leftover temp file): %v", len(entries), stateName, entries)
	}
}

// checkDistinct fails unless ips are n distinct host addresses of the pool,
// none of them reserved, and the pool's persisted leases are exactly them.
func checkDistinct(t *testing.T, p *Pool, owners []string, ips []netip.Addr) {
	t.Helper()
	seen := map[netip.Addr]string{}
	for i, ip := range ips {
		if prev, dup := seen[ip]; dup {
			t.Errorf("%s leased to both %s and %s", ip, prev, owners[i])
		}
		seen[ip] = owners[i]
		if !p.Subnet().Contains(ip) || ip == p.Gateway() || ip == p.Subnet().Addr() {
			t.Errorf("%s got reserved or foreign address %s", owners[i], ip)
		}
	}
	leases, err := p.Leases()
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != len(owners) {
		t.Errorf("%d leases persisted, want %d", len(leases), len(owners))
	}
	for _, l := range leases {
		if seen[l.IP] != l.Owner {
			t.Errorf("persisted lease %s → %s, but Lease returned %s to %q", l.Owner, l.IP, l.IP, seen[l.IP])
		}
	}
}

const concurrency = 64

func TestConcurrentGoroutines(t *testing.T) {
	subnet := netip.MustParsePrefix("10.89.0.0/24")
	gw := netip.MustParseAddr("10.89.0.1")
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared-pool=%v", shared), func(t *testing.T) {
			dir := t.TempDir()
			sharedPool := mustOpen(t, dir, subnet, gw)
			owners := make([]string, concurrency)
			ips := make([]netip.Addr, concurrency)
			errs := make([]error, concurrency)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range concurrency {
				owners[i] = fmt.Sprint("g", i)
				wg.Go(func() {
					p := sharedPool
					if !shared {
						p, errs[i] = Open(dir, subnet, gw)
						if errs[i] != nil {
							return
						}
					}
					<-start
					ips[i], errs[i] = p.Lease(owners[i])
				})
			}
			close(start)
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			checkDistinct(t, mustOpen(t, dir, subnet, gw), owners, ips)
		})
	}
}

// TestConcurrentProcesses leases from 64 processes at once: the test binary
// re-executed as a helper process (see TestMain). Each child blocks on stdin until the
// parent has started all of them, so that their leases really overlap.
func TestConcurrentProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 64 processes")
	}
	dir := t.TempDir()
	subnet := netip.MustParsePrefix("10.89.0.0/24")
	gw := netip.MustParseAddr("10.89.0.1")
	type child struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   strings.Builder
	}
	children := make([]*child, concurrency)
	owners := make([]string, concurrency)
	for i := range children {
		owners[i] = fmt.Sprint("proc-", i)
		c := &child{cmd: exec.Command(os.Args[0], "-test.run=^$", "-test.count=1")}
		c.cmd.Env = append(os.Environ(), "PODBOX_IPAM_HELPER=1", "PODBOX_IPAM_DIR="+dir, "PODBOX_IPAM_OWNER="+owners[i])
		c.cmd.Stdout = &c.out
		c.cmd.Stderr = &c.out
		var err error
		if c.stdin, err = c.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		if err := c.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		children[i] = c
	}
	for _, c := range children {
		c.stdin.Close() // go
	}
	ips := make([]netip.Addr, concurrency)
	for i, c := range children {
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("helper %s: %v\n%s", owners[i], err, c.out.String())
		}
		sc := bufio.NewScanner(strings.NewReader(c.out.String()))
		for sc.Scan() {
			if s, ok := strings.CutPrefix(sc.Text(), "leased "); ok {
				ips[i], _ = netip.ParseAddr(s)
			}
		}
		if !ips[i].IsValid() {
			t.Fatalf("helper %s printed no address:\n%s", owners[i], c.out.String())
		}
	}
	checkDistinct(t, mustOpen(t, dir, subnet, gw), owners, ips)
}

// TestMain turns the test binary into one leasing process of
// TestConcurrentProcesses when run with PODBOX_IPAM_HELPER=1.
func TestMain(m *testing.M) {
	if os.Getenv("PODBOX_IPAM_HELPER") == "1" {
		helperProcess()
	}
	os.Exit(m.Run())
}

// helperProcess is one of TestConcurrentProcesses's children: the test binary
// run again with PODBOX_IPAM_HELPER=1 leases one address and exits.
func helperProcess() {
	p, err := Open(os.Getenv("PODBOX_IPAM_DIR"), netip.MustParsePrefix("10.89.0.0/24"), netip.MustParseAddr("10.89.0.1"))
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	io.Copy(io.Discard, os.Stdin) // wait for the parent's go
	ip, err := p.Lease(os.Getenv("PODBOX_IPAM_OWNER"))
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	fmt.Println("leased", ip)
	os.Exit(0)
}

// FuzzLeaseRelease runs random sequences of Lease, Release and reopen on a
// /29 against a model: leases are stable per owner, distinct, never
// reserved, allocated in rotation, exhausted exactly when the model is full,
// and persisted. Without -fuzz only the seeds run.
func FuzzLeaseRelease(f *testing.F) {
	f.Add([]byte{0, 4, 8, 12, 16, 20, 24, 28})       // lease 8 owners into 5 addresses
	f.Add([]byte{0, 2, 0, 4, 6, 3, 0, 8, 10, 1, 12}) // lease, release, reopen mixed
	f.Add([]byte{0, 4, 8, 12, 16, 6, 10, 3, 20, 24, 28, 0, 2, 2, 3})
	hosts := addrs("10.89.0.2", "10.89.0.3", "10.89.0.4", "10.89.0.5", "10.89.0.6") // rotation order
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 200 {
			ops = ops[:200]
		}
		dir := t.TempDir()
		p := mustOpen(t, dir, subnet29, gw29)
		model := map[string]netip.Addr{}
		last := -1 // index into hosts of the last allocation
		for step, op := range ops {
			owner := fmt.Sprint("o", op>>2%8)
			switch op % 4 {
			case 0, 1:
				ip, err := p.Lease(owner)
				if had, ok := model[owner]; ok {
					if err != nil || ip != had {
						t.Fatalf("step %d: Lease(%s) = %s, %v; want its lease %s", step, owner, ip, err, had)
					}
					continue
				}
				if len(model) == len(hosts) {
					if !errors.Is(err, ErrExhausted) {
						t.Fatalf("step %d: Lease(%s) on a full pool = %s, %v", step, owner, ip, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d: Lease(%s): %v", step, owner, err)
				}
				// Rotation: the first free host after the last one allocated.
				held := map[netip.Addr]bool{}
				for _, a := range model {
					held[a] = true
				}
				next := last
				for {
					next = (next + 1) % len(hosts)
					if !held[hosts[next]] {
						break
					}
				}
				if ip != hosts[next] {
					t.Fatalf("step %d: Lease(%s) = %s, want %s (model %v, last %d)", step, owner, ip, hosts[next], model, last)
				}
				model[owner], last = ip, next
			case 2:
				if err := p.Release(owner); err != nil {
					t.Fatalf("step %d: Release(%s): %v", step, owner, err)
				}
				delete(model, owner)
			case 3:
				p = mustOpen(t, dir, subnet29, gw29)
			}
		}
		leases, err := p.Leases()
		if err != nil {
			t.Fatal(err)
		}
		if len(leases) != len(model) {
			t.Fatalf("pool holds %v, model %v", leases, model)
		}
		for _, l := range leases {
			if model[l.Owner] != l.IP {
				t.Fatalf("pool holds %v, model %v", leases, model)
			}
		}
	})
}

// BenchmarkLeaseRelease measures one Lease plus one Release (two locked
// read-modify-writes of the leases file) on a /16 pool that already holds
// 1000 leases (and, to show the cost is linear, none and 10000): the cost a
// sandbox create and remove pay. "tmpfs" is where the state normally lives
// (/run); "tempdir" is the test's temporary directory, where the fsyncs may
// cost real I/O.
func BenchmarkLeaseRelease(b *testing.B) {
	dirs := map[string]string{"tempdir": ""}
	var fs unix.Statfs_t
	if unix.Statfs("/dev/shm", &fs) == nil && fs.Type == unix.TMPFS_MAGIC {
		dirs["tmpfs"] = "/dev/shm"
	}
	for _, where := range []string{"tmpfs", "tempdir"} {
		parent, ok := dirs[where]
		if !ok {
			continue
		}
		for _, n := range []int{0, 1000, 10000} {
			b.Run(fmt.Sprintf("%s/leases=%d", where, n), func(b *testing.B) {
				dir, err := os.MkdirTemp(parent, "ipam-bench-")
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { os.RemoveAll(dir) })
				p := mustOpen(b, dir, netip.MustParsePrefix("10.89.0.0/16"), netip.MustParseAddr("10.89.0.1"))
				// Fill the pool directly: n Leases would take O(n²).
				st := &state{}
				for i := range n {
					st.leases = append(st.leases, Lease{Owner: fmt.Sprintf("%064x", i), IP: addr(p.lo + 1 + uint32(i))})
				}
				if err := p.store(st); err != nil {
					b.Fatal(err)
				}
				owner := strings.Repeat("f", 64)
				for b.Loop() {
					mustLease(b, p, owner)
					if err := p.Release(owner); err != nil {
						b.Fatal(err)
					}
				}
				if l, _ := p.Leases(); len(l) != n {
					b.Fatalf("pool holds %d leases after the benchmark, want %d", len(l), n)
				}
			})
		}
	}
}

func TestOpenExisting(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenExisting(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("OpenExisting of an empty dir: %v, want ErrNotExist", err)
	}
	p, err := Open(dir, netip.MustParsePrefix("10.90.0.0/24"), netip.MustParseAddr("10.90.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	ip, err := p.Lease("a")
	if err != nil {
		t.Fatal(err)
	}
	q, err := OpenExisting(dir)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := q.Leases()
	if err != nil || len(ls) != 1 || ls[0].IP != ip || q.Subnet() != p.Subnet() || q.Gateway() != p.Gateway() {
		t.Fatalf("OpenExisting sees %v (%v), subnet %s gateway %s", ls, err, q.Subnet(), q.Gateway())
	}
}

// TestVolatile checks which directories count as runtime dirs, whose pools
// are not fsynced: anything under /run by path, whatever its filesystem, and
// tmpfs by filesystem.
func TestVolatile(t *testing.T) {
	tmpfs := func(dir string) bool {
		var fs unix.Statfs_t
		return unix.Statfs(dir, &fs) == nil && fs.Type == unix.TMPFS_MAGIC
	}
	tmp := t.TempDir()
	for _, tc := range []struct {
		dir  string
		want bool
	}{
		{"/run", true},
		{"/run/podbox/ipam/podbox0", true}, // not there yet: decided by path
		{"/run/../run/podbox", true},
		{"/runner/podbox", tmpfs("/")},
		{"/dev/shm/podbox/ipam", tmpfs("/dev/shm")},
		{tmp, tmpfs(tmp)},
		{filepath.Join(tmp, "missing", "ipam"), tmpfs(tmp)},
	} {
		if got := Volatile(tc.dir); got != tc.want {
			t.Errorf("Volatile(%q) = %v, want %v", tc.dir, got, tc.want)
		}
	}
}
