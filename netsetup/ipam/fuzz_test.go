package ipam

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// leasesSeeds are leases files of the unit tests, whole and damaged
// (TestCorruptStateIsAnError), all of the /29 pool the fuzz targets open.
var leasesSeeds = []string{
	"podbox-ipam 1\nsubnet 10.89.0.0/29\ngateway 10.89.0.1\nlast -\nleases 0\n",
	"podbox-ipam 1\nsubnet 10.89.0.0/29\ngateway 10.89.0.1\nlast 10.89.0.3\nleases 2\n10.89.0.2 3f9ce1\n10.89.0.3 web\n",
	"podbox-ipam 1\nsubnet 10.89.0.0/29\ngateway 10.89.0.1\nlast 10.89.0.6\nleases 5\n10.89.0.2 a\n10.89.0.3 b\n10.89.0.4 c\n10.89.0.5 d\n10.89.0.6 e\n",
	"",
	`{"version":1}`,
	"podbox-ipam 2\n",
	"podbox-ipam 1\ngateway 10.89.0.1\n",
	"podbox-ipam 1\nsubnet 10.89.0/29\n",
	"podbox-ipam 1\nsubnet 10.89.0.0/29\ngateway 10.89.0.1\nlast fd00::1\nleases 0\n",
	"podbox-ipam 1\nsubnet 10.89.0.0/29\ngateway 10.89.0.1\nlast -\nleases -1\n",
	"podbox-ipam 1\nsubnet 10.89.0.0/29\ngateway 10.89.0.1\nlast -\nleases 2\n10.89.0.2 a\n",
	"podbox-ipam 1\nsubnet 10.89.0.0/29\ngateway 10.89.0.1\nlast -\nleases 1\n10.89.0.2 a",
	"podbox-ipam 1\nsubnet 10.89.0.0/29\ngateway 10.89.0.1\nlast -\nleases 2\n10.89.0.3 a\n10.89.0.2 b\n",
	"podbox-ipam 1\nsubnet 10.89.0.0/29\ngateway 10.89.0.1\nlast -\nleases 2\n10.89.0.2 a\n10.89.0.3 a\n",
	"podbox-ipam 1\nsubnet 10.89.0.0/29\ngateway 10.89.0.1\nlast -\nleases 1\n10.89.0.1 a\n",
	"podbox-ipam 1\nsubnet 10.89.0.0/29\ngateway 10.89.0.1\nlast -\nleases 1\n10.89.0.7 a\n",
	"podbox-ipam 1\nsubnet 10.89.0.0/29\ngateway 10.89.0.1\nlast -\nleases 1\n10.89.0.2\n",
}

// fuzzPool is the /29 pool of the unit tests, not fsynced: the fuzz target
// writes it thousands of times. Its directory is made only when the pool is
// stored, since most inputs never get that far.
func fuzzPool(t *testing.T) *Pool {
	p, err := newPool("unset", subnet29, gw29)
	if err != nil {
		t.Fatal(err)
	}
	p.durable = false
	return p
}

// FuzzParseLeases feeds the leases file's parser arbitrary bytes: the file
// is on disk, where a full disk, a crash of an older version or a hand edit
// can leave anything, and every Lease of every shim reads it. parse must
// never panic nor allocate more than the file can describe. What it accepts
// keeps the pool's invariants (leases ordered by address, each a host
// address of the subnet other than the gateway, owners distinct and not
// empty, "last" IPv4 or unset); written back by store it reads as the same
// state; and an allocation from it is a free host address, or ErrExhausted
// exactly when every one is leased.
func FuzzParseLeases(f *testing.F) {
	for _, s := range leasesSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p := fuzzPool(t)
		st, err := p.parse(b)
		if err != nil {
			return
		}
		if st.last.IsValid() && !st.last.Is4() {
			t.Fatalf("parse(%q): last %v", b, st.last)
		}
		owners := map[string]bool{}
		for i, l := range st.leases {
			if l.Owner == "" || owners[l.Owner] {
				t.Fatalf("parse(%q): owner %q empty or twice", b, l.Owner)
			}
			owners[l.Owner] = true
			if !l.IP.Is4() || u32(l.IP) < p.lo || u32(l.IP) > p.hi || l.IP == p.gateway {
				t.Fatalf("parse(%q): %v is not a free host address of %v", b, l, p.subnet)
			}
			if i > 0 && !st.leases[i-1].IP.Less(l.IP) {
				t.Fatalf("parse(%q): %v after %v", b, l, st.leases[i-1])
			}
		}

		p.dir = t.TempDir()
		if err := p.store(st); err != nil {
			t.Fatal(err)
		}
		again, exists, err := p.load()
		if err != nil || !exists {
			t.Fatalf("parse(%q) = %+v, which stored reads as %v, %v", b, st, exists, err)
		}
		if again.last != st.last || !slices.Equal(again.leases, st.leases) {
			t.Fatalf("parse(%q) = %+v, which stored reads as %+v", b, st, again)
		}

		ip, err := p.allocate(st)
		full := len(st.leases) == int(p.hi-p.lo) // every host but the gateway
		switch {
		case full && !errors.Is(err, ErrExhausted):
			t.Fatalf("parse(%q): allocate from a full pool = %v, %v", b, ip, err)
		case full:
		case err != nil:
			t.Fatalf("parse(%q): allocate: %v", b, err)
		case u32(ip) < p.lo || u32(ip) > p.hi || ip == p.gateway || slices.ContainsFunc(st.leases, func(l Lease) bool { return l.IP == ip }):
			t.Fatalf("parse(%q): allocate = %v, not a free host address", b, ip)
		}
	})
}

// FuzzOpenExisting writes arbitrary bytes as a pool's leases file and opens
// it with OpenExisting, which takes the subnet and gateway from the file
// itself (leak checks and recovery use it on whatever a node holds): an
// error or a pool, never a panic, and a pool whose leases list.
func FuzzOpenExisting(f *testing.F) {
	for _, s := range leasesSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte("podbox-ipam 1\nsubnet 0.0.0.0/0\ngateway 0.0.0.1\nlast -\nleases 1\n10.0.0.2 a\n"))
	f.Add([]byte("podbox-ipam 1\nsubnet 10.0.0.0/30\ngateway 10.0.0.2\nlast -\nleases 1\n10.0.0.1 a\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, stateName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := OpenExisting(dir)
		if err != nil {
			return
		}
		if _, err := p.Leases(); err != nil {
			t.Fatalf("OpenExisting(%q) opened a pool whose leases do not list: %v", b, err)
		}
	})
}
