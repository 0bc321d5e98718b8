package cli

import (
	"encoding/csv"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/podbox/podbox/sandbox"
	"github.com/podbox/podbox/volume"
)

// The targets below fuzz the parsers of run's and sandbox create's flags.
// Their values come from users, and from manifests through play, which
// passes a pod's fields to these same parsers as flags; what they accept
// goes into records, specs and annotations that the shim reads back.

// checkMount checks what every parsed -v or --mount must be: a clean
// absolute container path a user may mount on; a bind of a clean absolute
// host path with a recursion option and one propagation mode; a volume by
// a valid name; a tmpfs with a positive size and a mode of permission bits
// only.
func checkMount(t *testing.T, flag, v string, m sandbox.Mount) {
	t.Helper()
	bad := func(why string) { t.Fatalf("%s %q = %+v: %s", flag, v, m, why) }
	if checkDestination(m.Destination) != nil || filepath.Clean(m.Destination) != m.Destination {
		bad("destination")
	}
	switch m.Type {
	case sandbox.MountBind:
		if !filepath.IsAbs(m.Source) || filepath.Clean(m.Source) != m.Source || len(m.Options) != 2 ||
			m.Options[0] != "rbind" && m.Options[0] != "bind" || !slices.Contains(propagations, m.Options[1]) {
			bad("bind")
		}
	case sandbox.MountVolume:
		if volume.ValidName(m.Source) != nil || len(m.Options) != 0 {
			bad("volume")
		}
	case sandbox.MountTmpfs:
		for _, o := range m.Options {
			k, v, _ := strings.Cut(o, "=")
			base := map[string]int{"size": 10, "mode": 8}[k]
			n, err := strconv.ParseInt(v, base, 64)
			if base == 0 || err != nil || k == "size" && n <= 0 || k == "mode" && n > 0o7777 {
				bad("tmpfs option " + o)
			}
		}
		if m.Source != "" {
			bad("tmpfs source")
		}
	default:
		bad("type")
	}
}

// FuzzParseVolumeFlag checks -v: what it accepts passes checkMount, and
// written back as a -v value it parses to the same mount.
func FuzzParseVolumeFlag(f *testing.F) {
	for _, s := range []string{"/srv/data:/data", "/srv/data/:/data/:ro", "/srv:/srv:rw,rshared", "data:/data", "my.vol-1:/var/lib/x:ro,nocopy",
		"/data", "./data:/data", ":/data", "/srv:data", "/srv:/", "/srv:/proc", "/srv:/etc/resolv.conf/", "/srv:/x:ro,rw",
		"/srv:/x:shared,slave", "data:/x:rshared", "/srv:/x:Z", "/a:/b:ro:extra", "/srv:/x:nocopy", "/a/../..:/x/../y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		m, err := parseVolumeFlag(v)
		if err != nil {
			return
		}
		checkMount(t, "-v", v, m.Mount)
		back := m.Source + ":" + m.Destination
		var opts []string
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		if m.Type == sandbox.MountBind {
			opts = append(opts, m.Options[1])
		}
		if len(opts) > 0 {
			back += ":" + strings.Join(opts, ",")
		}
		again, err := parseVolumeFlag(back)
		if err != nil || !slices.Equal(again.Options, m.Options) || again.Type != m.Type || again.Source != m.Source ||
			again.Destination != m.Destination || again.ReadOnly != m.ReadOnly {
			t.Fatalf("-v %q = %+v, written back as %q parses as %+v, %v", v, m.Mount, back, again.Mount, err)
		}
	})
}

// FuzzParseMountFlag checks --mount: what it accepts passes checkMount,
// and written back as a --mount value (CSV, so that a path may hold a
// comma) it parses to the same mount, as play's mounts are written and
// parsed. Bind sources must exist: the seeds use / and /tmp.
func FuzzParseMountFlag(f *testing.F) {
	for _, s := range []string{"type=bind,source=/tmp,target=/data", "type=bind,src=/tmp,dst=/data,readonly,bind-propagation=rslave",
		"type=bind,src=/,destination=/d,ro=false,bind-nonrecursive", "type=bind,src=/tmp,target=/d,bind-recursive=disabled,consistency=cached",
		`type=bind,"source=/tmp",target=/d`, "source=data,target=/data", "type=volume,src=data,dst=/data,ro=1,volume-nocopy",
		"type=tmpfs,target=/scratch", "type=tmpfs,target=/scratch,tmpfs-size=1m,tmpfs-mode=1770", "Type=tmpfs,Target=/s,TMPFS-SIZE=64Mi",
		"type=nfs,target=/x", "type=bind,src=/tmp,target=/x,frob", "type=bind,src=rel,target=/x", "type=bind,src=/tmp,target=/etc/hostname",
		"type=tmpfs,target=/x,tmpfs-mode=999", `type=bind,"src=/x`, `type=tmpfs,"target=/a,b"`, "type=tmpfs,target=/x,tmpfs-size=9007199254740993"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		m, err := parseMountFlag(v)
		if err != nil {
			return
		}
		checkMount(t, "--mount", v, m.Mount)
		back := formatMount(m.Mount)
		again, err := parseMountFlag(back)
		if err != nil || !slices.Equal(again.Options, m.Options) || again.Type != m.Type || again.Source != m.Source ||
			again.Destination != m.Destination || again.ReadOnly != m.ReadOnly {
			t.Fatalf("--mount %q = %+v, written back as %q parses as %+v, %v", v, m.Mount, back, again.Mount, err)
		}
	})
}

// formatMount writes m as a --mount value.
func formatMount(m sandbox.Mount) string {
	fields := []string{"type=" + m.Type, "target=" + m.Destination}
	if m.Source != "" {
		fields = append(fields, "source="+m.Source)
	}
	if m.ReadOnly {
		fields = append(fields, "readonly")
	}
	for _, o := range m.Options {
		switch {
		case o == "bind":
			fields = append(fields, "bind-nonrecursive")
		case slices.Contains(propagations, o):
			fields = append(fields, "bind-propagation="+o)
		case strings.HasPrefix(o, "size="):
			fields = append(fields, "tmpfs-size="+strings.TrimPrefix(o, "size="))
		case strings.HasPrefix(o, "mode="):
			fields = append(fields, "tmpfs-mode="+strings.TrimPrefix(o, "mode="))
		}
	}
	var b strings.Builder
	w := csv.NewWriter(&b)
	w.Write(fields)
	w.Flush()
	return strings.TrimSuffix(b.String(), "\n")
}

// FuzzParseSize checks sizes (--memory, tmpfs-size): a size it accepts is a
// byte count, not negative, that written as a plain number parses to
// itself, since that is how a limit travels on (the sandbox's annotation,
// a mount option, play's --memory); and a plain number of bytes is taken
// exactly.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "1024", "1k", "512m", "512M", "512mb", "512Mi", "512MiB", "1g", "1Gi", "1.5g", "2T", "6m", "16 m",
		"", "12q", "m", "1e9", "1.2.3m", "-5m", "1kk", "0x10", "10000000p", "1ib", "1i", "1kbi", "9007199254740993", "8191p", "0.0000001k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("parseSize(%q) = %d", s, n)
		}
		if exact, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil && exact != n {
			t.Fatalf("parseSize(%q) = %d", s, n)
		}
		if back, err := parseSize(strconv.FormatInt(n, 10)); err != nil || back != n {
			t.Fatalf("parseSize(%q) = %d, which written as a number parses as %d, %v", s, n, back, err)
		}
	})
}

// FuzzParseLimits checks --memory and --cpus together, as parseResources
// reads them: what it accepts the sandbox's Validate accepts too (the shim
// validates again, and must not refuse what the CLI let through); a CPU
// limit gives a CFS quota of at least the kernel's 1 ms; and the CPUs
// written as the annotation writes them read back as the same number.
func FuzzParseLimits(f *testing.F) {
	for _, s := range [][2]string{{"64m", "0.5"}, {"0", "1"}, {"6291456", ".25"}, {"1g", "500m"}, {"4m", "10m"}, {"12q", "0.001"},
		{"-1g", "-1"}, {"", "half"}, {"6291455", "1e3"}, {"8191p", "0.0100000000000000001"}, {"1.5g", "9.99999999999999999m"}} {
		f.Add(s[0], s[1], int64(20))
	}
	f.Fuzz(func(t *testing.T, memory, cpus string, pids int64) {
		r, err := parseResources(memory, cpus, pids)
		if err != nil || r == nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("--memory %q --cpus %q --pids-limit %d = %+v, which the sandbox refuses: %v", memory, cpus, pids, r, err)
		}
		if r.CPUs == 0 {
			return
		}
		if q := r.CPUQuota(); q < 1000 || q > math.MaxInt64/2 {
			t.Fatalf("--cpus %q = %v: quota %d µs", cpus, r.CPUs, q)
		}
		back, err := strconv.ParseFloat(strconv.FormatFloat(r.CPUs, 'f', -1, 64), 64)
		if err != nil || back != r.CPUs {
			t.Fatalf("--cpus %q = %v, which written reads as %v, %v", cpus, r.CPUs, back, err)
		}
	})
}

// FuzzNormalizeCaps checks --cap-add and --cap-drop (one name and a second
// separated by ","): what it accepts is CAP_ names of the kernel's list or
// ALL, each once, and normalizing them again changes nothing.
func FuzzNormalizeCaps(f *testing.F) {
	for _, s := range []string{"NET_ADMIN", "cap_sys_ptrace", "ALL", "all", "BOGUS", "cap_frob", " chown ", "CAP_CHOWN,chown", "CAP_", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		names := strings.Split(s, ",")
		caps, err := normalizeCaps("--cap-add", names)
		if err != nil {
			if !strings.Contains(err.Error(), "--cap-add") {
				t.Fatalf("normalizeCaps(%q): %v does not name the flag", names, err)
			}
			return
		}
		for i, c := range caps {
			if c != capAll && !slices.Contains(allCapabilities, c) || slices.Contains(caps[:i], c) {
				t.Fatalf("normalizeCaps(%q) = %q", names, caps)
			}
		}
		if again, err := normalizeCaps("--cap-add", caps); err != nil || !slices.Equal(again, caps) {
			t.Fatalf("normalizeCaps(%q) = %q, which normalizes to %q, %v", names, caps, again, err)
		}
	})
}

// FuzzParseKeyValues checks -e and --label: a pair it accepts has a key
// that is not empty and holds no '=' nor white space, and KEY=VALUE of the
// result parses to the same pair.
func FuzzParseKeyValues(f *testing.F) {
	for _, s := range []string{"A=1", "A=", "=x", "A", "a b=c", "PATH=/bin:/usr/bin", "A==b", "k=v=w", "x\t=1", "io.kubernetes.pod.namespace=default"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, kv string) {
		m, err := parseKeyValues("--env", []string{kv})
		if err != nil {
			if !strings.Contains(err.Error(), fmt.Sprintf("--env %q", kv)) {
				t.Fatalf("parseKeyValues(%q): %v does not name the value", kv, err)
			}
			return
		}
		if len(m) != 1 {
			t.Fatalf("parseKeyValues(%q) = %q", kv, m)
		}
		for k, v := range m {
			if k == "" || strings.ContainsAny(k, "= \t\n") {
				t.Fatalf("parseKeyValues(%q): key %q", kv, k)
			}
			if again, err := parseKeyValues("--env", []string{k + "=" + v}); err != nil || again[k] != v || len(again) != 1 {
				t.Fatalf("parseKeyValues(%q) = %q, which written parses as %q, %v", kv, m, again, err)
			}
		}
	})
}

// FuzzParseUser checks exec's --user: UID[:GID], numbers only, each
// written back as a decimal number parses to the same user.
func FuzzParseUser(f *testing.F) {
	for _, s := range []string{"", "0", "1000", "1000:100", "root", "1:", ":1", "-1", "1:2:3", "99999999999", "+5", "4294967295:4294967295"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := parseUser(s)
		if err != nil {
			return
		}
		back := fmt.Sprintf("%d:%d", u.UID, u.GID)
		if again, err := parseUser(back); err != nil || again.UID != u.UID || again.GID != u.GID {
			t.Fatalf("parseUser(%q) = %+v, which written as %q parses as %+v, %v", s, u, back, again, err)
		}
	})
}
