package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/podbox/podbox/sandbox"
	"github.com/podbox/podbox/volume"
)

func TestParseVolumeFlag(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want sandbox.Mount
	}{
		{"/srv/data:/data", sandbox.Mount{Type: "bind", Source: "/srv/data", Destination: "/data", Options: []string{"rbind", "rprivate"}}},
		{"/srv/data/:/data/:ro", sandbox.Mount{Type: "bind", Source: "/srv/data", Destination: "/data", ReadOnly: true, Options: []string{"rbind", "rprivate"}}},
		{"/srv:/srv:rw,rshared", sandbox.Mount{Type: "bind", Source: "/srv", Destination: "/srv", Options: []string{"rbind", "rshared"}}},
		{"data:/data", sandbox.Mount{Type: "volume", Source: "data", Destination: "/data"}},
		{"my.vol-1:/var/lib/x:ro,nocopy", sandbox.Mount{Type: "volume", Source: "my.vol-1", Destination: "/var/lib/x", ReadOnly: true}},
	} {
		m, err := parseVolumeFlag(tc.in)
		if err != nil {
			t.Errorf("-v %s: %v", tc.in, err)
			continue
		}
		if fmt.Sprint(m.Mount) != fmt.Sprint(tc.want) {
			t.Errorf("-v %s = %+v, want %+v", tc.in, m.Mount, tc.want)
		}
		if m.mkdir != (m.Type == "bind") {
			t.Errorf("-v %s: mkdir %v; -v makes a missing host path, as docker does", tc.in, m.mkdir)
		}
	}
	for in, want := range map[string]string{
		"/data":                         "anonymous volumes are not supported",
		"./data:/data":                  `host path "./data" is relative`,
		"data/sub:/data":                `host path "data/sub" is relative`,
		":/data":                        "empty source",
		"/srv:data":                     `container path "data" is not absolute`,
		"/srv:/":                        "root",
		"/srv:/proc":                    "/proc is the container's own",
		"/srv:/etc/hosts":               "/etc/hosts is the sandbox's",
		"/srv:/etc/resolv.conf/":        "/etc/resolv.conf is the sandbox's",
		"/srv:/x:rx":                    `unknown option "rx"`,
		"/srv:/x:ro,rw":                 "ro and rw exclude each other",
		"/srv:/x:shared,slave":          "shared and slave exclude each other",
		"data:/x:rshared":               "for host paths, not volumes",
		"/srv:/x:Z":                     "SELinux",
		"/a:/b:ro:extra":                "too many ':'",
		"/srv:/x:nocopy":                `unknown option "nocopy"`,
		strings.Repeat("v", 64) + ":/x": "is relative",
	} {
		_, err := parseVolumeFlag(in)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), fmt.Sprintf("-v %q", in)) {
			t.Errorf("-v %s: %v, want an error naming -v %q and saying %q", in, err, in, want)
		}
	}
}

func TestParseMountFlag(t *testing.T) {
	dir := t.TempDir()
	comma := filepath.Join(dir, "a,b")
	os.Mkdir(comma, 0o755)
	for _, tc := range []struct {
		in   string
		want sandbox.Mount
	}{
		{"type=bind,source=" + dir + ",target=/data", sandbox.Mount{Type: "bind", Source: dir, Destination: "/data", Options: []string{"rbind", "rprivate"}}},
		{"type=bind,src=" + dir + ",dst=/data,readonly,bind-propagation=rslave", sandbox.Mount{Type: "bind", Source: dir, Destination: "/data", ReadOnly: true, Options: []string{"rbind", "rslave"}}},
		{"type=bind,src=" + dir + ",destination=/d,ro=false,bind-nonrecursive", sandbox.Mount{Type: "bind", Source: dir, Destination: "/d", Options: []string{"bind", "rprivate"}}},
		{"type=bind,src=" + dir + ",target=/d,bind-recursive=disabled,consistency=cached", sandbox.Mount{Type: "bind", Source: dir, Destination: "/d", Options: []string{"bind", "rprivate"}}},
		{`type=bind,"source=` + comma + `",target=/d`, sandbox.Mount{Type: "bind", Source: comma, Destination: "/d", Options: []string{"rbind", "rprivate"}}},
		{"source=data,target=/data", sandbox.Mount{Type: "volume", Source: "data", Destination: "/data"}},
		{"type=volume,src=data,dst=/data,ro=1,volume-nocopy", sandbox.Mount{Type: "volume", Source: "data", Destination: "/data", ReadOnly: true}},
		{"type=tmpfs,target=/scratch", sandbox.Mount{Type: "tmpfs", Destination: "/scratch"}},
		{"type=tmpfs,target=/scratch,tmpfs-size=1m,tmpfs-mode=1770", sandbox.Mount{Type: "tmpfs", Destination: "/scratch", Options: []string{"size=1048576", "mode=1770"}}},
		{"Type=tmpfs,Target=/s,TMPFS-SIZE=64Mi", sandbox.Mount{Type: "tmpfs", Destination: "/s", Options: []string{"size=67108864"}}},
	} {
		m, err := parseMountFlag(tc.in)
		if err != nil {
			t.Errorf("--mount %s: %v", tc.in, err)
			continue
		}
		if fmt.Sprint(m.Mount) != fmt.Sprint(tc.want) {
			t.Errorf("--mount %s = %+v, want %+v", tc.in, m.Mount, tc.want)
		}
		if m.mkdir {
			t.Errorf("--mount %s would make its source; docker refuses a missing one", tc.in)
		}
	}
	for in, want := range map[string]string{
		"type=nfs,target=/x":                                          `unknown type "nfs"`,
		"type=bind,src=" + dir + ",target=/x,frob=1":                  `unknown option "frob"`,
		"type=bind,src=" + dir + ",target=/x,frob":                    `option "frob" needs a value`,
		"type=bind,src=" + dir + "/missing,target=/x":                 "bind source path " + dir + "/missing does not exist",
		"type=bind,src=rel,target=/x":                                 `source "rel" is relative`,
		"type=bind,target=/x":                                         "source is required for type=bind",
		"type=bind,src=" + dir:                                        "target is required",
		"type=bind,src=" + dir + ",target=x":                          `container path "x" is not absolute`,
		"type=bind,src=" + dir + ",target=/etc/hostname":              "/etc/hostname is the sandbox's",
		"type=bind,src=" + dir + ",target=/x,ro=maybe":                `ro="maybe": want true or false`,
		"type=bind,src=" + dir + ",target=/x,bind-propagation=weird":  `bind-propagation="weird"`,
		"type=bind,src=" + dir + ",target=/x,bind-recursive=readonly": "not supported",
		"type=bind,src=" + dir + ",target=/x,tmpfs-size=1m":           `option "tmpfs-size" is for type=tmpfs, not type=bind`,
		"type=volume,target=/x":                                       "anonymous volumes are not supported",
		"type=volume,src=a/b,target=/x":                               `volume name "a/b" is invalid`,
		"type=volume,src=v,target=/x,volume-driver=nfs":               `option "volume-driver" is not supported`,
		"type=volume,src=v,target=/x,bind-propagation=shared":         `option "bind-propagation" is for type=bind, not type=volume`,
		"type=tmpfs,src=x,target=/x":                                  "type=tmpfs takes no source",
		"type=tmpfs,target=/x,tmpfs-size=12q":                         `tmpfs-size="12q"`,
		"type=tmpfs,target=/x,tmpfs-mode=999":                         `tmpfs-mode="999"`,
		"type=tmpfs,target=/x,volume-nocopy":                          `option "volume-nocopy" is for type=volume, not type=tmpfs`,
		`type=bind,"src=/x`:                                           "--mount",
	} {
		_, err := parseMountFlag(in)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), fmt.Sprintf("--mount %q", in)) {
			t.Errorf("--mount %s: %v, want an error naming --mount %q and saying %q", in, err, in, want)
		}
	}
}

func TestParseMountsTwiceAtOnePath(t *testing.T) {
	_, err := parseMounts([]string{"/a:/data"}, []string{"type=tmpfs,target=/data/"})
	if err == nil || !strings.Contains(err.Error(), "two mounts at /data") {
		t.Errorf("two mounts at one path: %v", err)
	}
}

func TestParseSizeAndMemory(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1024": 1024, "1k": 1 << 10, "512m": 512 << 20, "512M": 512 << 20, "512mb": 512 << 20,
		"512Mi": 512 << 20, "512MiB": 512 << 20, "1g": 1 << 30, "1Gi": 1 << 30, "1.5g": 3 << 29, "2T": 2 << 40,
		"6m": 6 << 20, "16 m": 16 << 20,
	} {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "12q", "m", "1e9", "1.2.3m", "-5m", "1kk", "0x10", "10000000p", "1ib", "1i", "1kbi"} {
		if n, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, n)
		}
	}
	if n, err := parseMemory("--memory", "0"); err != nil || n != 0 {
		t.Errorf("--memory 0 (no limit): %d, %v", n, err)
	}
	for in, want := range map[string]string{
		"4m": "below the minimum of 6 MiB", "6291455": "below the minimum", "12q": "want a size such as 512m", "-1g": "want a size",
	} {
		_, err := parseMemory("--memory", in)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), fmt.Sprintf("--memory %q", in)) {
			t.Errorf("--memory %s: %v, want %q", in, err, want)
		}
	}
}

func TestParseCPUs(t *testing.T) {
	for in, want := range map[string]float64{"0.5": 0.5, "1": 1, ".25": 0.25, "0.01": 0.01, "500m": 0.5, "10m": 0.01} {
		got, err := parseCPUs("--cpus", in)
		if err != nil || got != want {
			t.Errorf("--cpus %s = %v, %v; want %v", in, got, err, want)
		}
	}
	over := fmt.Sprint(runtime.NumCPU() + 1)
	for in, want := range map[string]string{
		"0": "want at least 0.01", "0.001": "at least 0.01", "-1": "want a decimal number", "half": "want a decimal number",
		"1e3": "want a decimal", "": "want a decimal", over: fmt.Sprintf("more than the node's %d CPUs", runtime.NumCPU()),
		"1.2.3": "want a decimal", "m": "want a decimal",
	} {
		_, err := parseCPUs("--cpus", in)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), fmt.Sprintf("--cpus %q", in)) {
			t.Errorf("--cpus %q: %v, want %q", in, err, want)
		}
	}
}

func TestParseResources(t *testing.T) {
	if r, err := parseResources("", "", 0); r != nil || err != nil {
		t.Errorf("no limits: %+v, %v", r, err)
	}
	if r, err := parseResources("", "", -1); r != nil || err != nil {
		t.Errorf("--pids-limit -1 (none): %+v, %v", r, err)
	}
	r, err := parseResources("64m", "0.5", 20)
	if err != nil || *r != (sandbox.Resources{Memory: 64 << 20, CPUs: 0.5, PidsLimit: 20}) {
		t.Errorf("parseResources = %+v, %v", r, err)
	}
	if _, err := parseResources("", "", -5); err == nil || !strings.Contains(err.Error(), "--pids-limit -5") {
		t.Errorf("--pids-limit -5: %v", err)
	}
}

func TestCapabilities(t *testing.T) {
	add, err := normalizeCaps("--cap-add", []string{"net_admin", "CAP_SYS_PTRACE", "Net_Admin", "all"})
	if err != nil || !slices.Equal(add, []string{"CAP_NET_ADMIN", "CAP_SYS_PTRACE", "ALL"}) {
		t.Errorf("normalizeCaps = %v, %v", add, err)
	}
	for _, bad := range []string{"BOGUS", "CAP_", "", "CAP_ALL"} {
		if _, err := normalizeCaps("--cap-add", []string{bad}); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("--cap-add %q: unknown capability", bad)) {
			t.Errorf("--cap-add %q: %v", bad, err)
		}
	}
	def := []string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"}
	for _, tc := range []struct {
		add, drop, want []string
	}{
		{nil, nil, def},
		{[]string{"CAP_NET_ADMIN"}, []string{"CAP_NET_RAW"}, []string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_ADMIN"}},
		{[]string{"CAP_KILL"}, nil, def},
		{nil, []string{"ALL"}, []string{}},
		{[]string{"CAP_CHOWN"}, []string{"ALL"}, []string{"CAP_CHOWN"}},
		{[]string{"ALL"}, []string{"CAP_SYS_ADMIN"}, slices.DeleteFunc(slices.Clone(allCapabilities), func(c string) bool { return c == "CAP_SYS_ADMIN" })},
	} {
		got := capabilities(def, tc.add, tc.drop, 1<<41-1)
		if !slices.Equal(got, tc.want) || got == nil {
			t.Errorf("add %v drop %v = %v, want %v", tc.add, tc.drop, got, tc.want)
		}
	}
	// ALL is what the bounding set holds (a host without CAP_SYS_RESOURCE,
	// bit 24, as a VM may be), and adding one outside it is refused.
	bnd := uint64(1<<41-1) &^ (1 << 24)
	if got := capabilities(def, []string{"ALL"}, nil, bnd); len(got) != 40 || slices.Contains(got, "CAP_SYS_RESOURCE") {
		t.Errorf("ALL under a bounding set without CAP_SYS_RESOURCE: %v", got)
	}
	if err := checkBounding([]string{"CAP_CHOWN", "CAP_SYS_RESOURCE"}, bnd); err == nil || !strings.Contains(err.Error(), "--cap-add CAP_SYS_RESOURCE: not in this host's capability bounding set") {
		t.Errorf("checkBounding: %v", err)
	}
	if err := checkBounding([]string{"ALL", "CAP_CHOWN"}, bnd); err != nil {
		t.Errorf("checkBounding: %v", err)
	}
	if b, err := boundingSet(); err != nil || b&1 == 0 {
		t.Errorf("boundingSet() = %x, %v (the test runs with CAP_CHOWN)", b, err)
	}
	if len(allCapabilities) != 41 || allCapabilities[40] != "CAP_CHECKPOINT_RESTORE" || allCapabilities[21] != "CAP_SYS_ADMIN" {
		t.Error("allCapabilities is not the kernel's list in its order")
	}
}

// The spec run writes for the options: mounts as runc takes them (after
// the spec's own, parents first, replacing one at the same path), limits,
// the read-only root and the capability sets.
func TestRunConfigSpec(t *testing.T) {
	dir := t.TempDir()
	o := hostOptions{
		volumes: []string{dir + ":/data/host:ro", "cache:/data", dir + "/new:/new"},
		mounts:  []string{"type=tmpfs,target=/dev/shm,tmpfs-size=1m", "type=tmpfs,target=/scratch,tmpfs-mode=1770"},
		memory:  "16m", cpus: "0.5", pidsLimit: 7, readOnly: true,
		capAdd: []string{"net_admin"}, capDrop: []string{"chown", "NET_RAW"},
	}
	rc, err := o.parse()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rc.mkdirs, []string{dir + "/new"}) {
		t.Errorf("mkdirs %v", rc.mkdirs)
	}
	if _, err := os.Stat(dir + "/new"); !os.IsNotExist(err) {
		t.Error("parse made a host directory")
	}
	if !slices.Equal(rc.volumeNames(), []string{"cache"}) {
		t.Errorf("volumes %v", rc.volumeNames())
	}
	spec := rootfsSpec(t, "app", "/r", processOptions{args: []string{"true"}})
	rc.apply(spec, volume.Store{Root: "/run/podbox"})

	var got []string
	shm := 0
	for _, m := range spec.Mounts {
		got = append(got, m.Destination+" "+m.Type+" "+m.Source+" "+strings.Join(m.Options, ","))
		if m.Destination == "/dev/shm" {
			shm++
		}
	}
	if shm != 1 {
		t.Errorf("%d mounts at /dev/shm, want the user's only", shm)
	}
	want := []string{
		"/data bind /run/podbox/volumes/cache/_data rbind,rprivate,rw",
		"/new bind " + dir + "/new rbind,rprivate,rw",
		"/scratch tmpfs tmpfs nosuid,nodev,noexec,mode=1770,rw",
		"/data/host bind " + dir + " rbind,rprivate,ro",
		"/dev/shm tmpfs tmpfs nosuid,nodev,noexec,size=1048576,rw",
	}
	if user := got[len(got)-len(want):]; !slices.Equal(user, want) {
		t.Errorf("user mounts:\n%s\nwant\n%s", strings.Join(user, "\n"), strings.Join(want, "\n"))
	}
	if got[0] != "/proc proc proc " {
		t.Errorf("the spec's own mounts do not come first: %q", got[0])
	}
	res := spec.Linux.Resources
	if res == nil || *res.Memory.Limit != 16<<20 || *res.CPU.Quota != 50000 || *res.CPU.Period != 100000 || *res.Pids.Limit != 7 {
		t.Fatalf("resources %+v", res)
	}
	if res.Memory.Swap != nil && *res.Memory.Swap != 16<<20 {
		t.Errorf("swap limit %d, want the memory limit (no swap beyond it)", *res.Memory.Swap)
	}
	if !spec.Root.Readonly {
		t.Error("root is not read-only")
	}
	caps := spec.Process.Capabilities
	for _, set := range [][]string{caps.Bounding, caps.Effective, caps.Permitted} {
		if !slices.Contains(set, "CAP_NET_ADMIN") || slices.Contains(set, "CAP_CHOWN") || slices.Contains(set, "CAP_NET_RAW") || !slices.Contains(set, "CAP_KILL") {
			t.Errorf("capability set %v", set)
		}
	}
	if len(caps.Inheritable)+len(caps.Ambient) != 0 {
		t.Errorf("inheritable %v ambient %v, want none", caps.Inheritable, caps.Ambient)
	}
	// The record gets what was asked for.
	b, _ := json.Marshal(rc.cfg)
	for _, s := range []string{`"readOnlyRootfs":true`, `"memory":16777216`, `"cpus":0.5`, `"pidsLimit":7`, `"capAdd":["CAP_NET_ADMIN"]`, `"capDrop":["CAP_CHOWN","CAP_NET_RAW"]`, `"type":"volume","source":"cache"`} {
		if !strings.Contains(string(b), s) {
			t.Errorf("record %s lacks %s", b, s)
		}
	}

	// --cap-drop ALL leaves every set empty, not unset.
	rc, _ = hostOptions{capDrop: []string{"ALL"}}.parse()
	spec = rootfsSpec(t, "app", "/r", processOptions{args: []string{"true"}})
	rc.apply(spec, volume.Store{})
	if c := spec.Process.Capabilities; c == nil || len(c.Bounding)+len(c.Effective)+len(c.Permitted) != 0 {
		t.Errorf("--cap-drop ALL: %+v", c)
	}
	// Nothing asked: no config, and the spec as before but for the
	// default seccomp profile.
	rc, _ = hostOptions{}.parse()
	if rc.cfg != nil {
		t.Errorf("config without options: %+v", rc.cfg)
	}
	plain := rootfsSpec(t, "app", "/r", processOptions{args: []string{"true"}})
	plain.Linux.Seccomp = rc.seccomp
	before, _ := json.Marshal(plain)
	plain.Linux.Seccomp = nil
	rc.apply(plain, volume.Store{})
	if after, _ := json.Marshal(plain); string(after) != string(before) || rc.seccomp == nil {
		t.Error("apply without options changed the spec beyond the default seccomp profile")
	}
}

func TestSpecResourcesWithoutSwapLimit(t *testing.T) {
	r := specResources(&sandbox.Resources{Memory: 8 << 20}, false)
	if r.Memory.Swap != nil || r.CPU != nil || r.Pids != nil {
		t.Errorf("resources %+v: without swap accounting runc must get no swap limit", r)
	}
}
