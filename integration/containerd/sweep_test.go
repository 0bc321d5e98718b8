package containerd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/console"
	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/sandbox"
)

// The sweep: the rest of what CRI asks of a runtime, run the same way on the
// runc handler and on podbox in one containerd, and compared field by field.
// Each handler gets the same pod and container configs (the same files,
// one handler after the other, so that even names and UIDs agree); what it
// shows is gathered as observations, flat "what → value" pairs, and the two
// sets must be equal once the fields listed in mayDiffer are normalised.

// observations are what one handler's pods showed, by a path that says
// where each value was read ("inspect probe .status.exitCode").
type observations map[string]string

// addJSON flattens a JSON document (crictl's -o json) into o under prefix:
// one entry per scalar, named by its path.
func (o observations) addJSON(t *testing.T, prefix, raw string) {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		t.Fatalf("%s: decode: %v\n%s", prefix, err, raw)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if len(v) == 0 {
				o[path] = "{}"
			}
			for k, x := range v {
				walk(path+"."+k, x)
			}
		case []any:
			if len(v) == 0 {
				o[path] = "[]"
			}
			for i, x := range v {
				walk(path+"["+elementName(x, i)+"]", x)
			}
		default:
			b, _ := json.Marshal(v)
			o[path] = string(b)
		}
	}
	walk(prefix+" ", v)
}

// elementName names the i'th element of a JSON list: by its container's
// name in a list of stats, which CRI gives in no particular order, else by
// its index.
func elementName(x any, i int) string {
	m, _ := x.(map[string]any)
	attrs, _ := m["attributes"].(map[string]any)
	meta, _ := attrs["metadata"].(map[string]any)
	if name, ok := meta["name"].(string); ok {
		return name
	}
	return strconv.Itoa(i)
}

// addSections splits the output of probeScript into o, one entry per line
// of each section ("exec probe status Uid" …), so that a difference names
// its line.
func (o observations) addSections(prefix, out string) {
	sec := ""
	n := 0
	for line := range strings.SplitSeq(out, "\n") {
		if name, ok := strings.CutPrefix(line, "== "); ok {
			sec, n = name, 0
			continue
		}
		key := fmt.Sprintf("%s #%d", strings.TrimSpace(prefix+" "+sec), n)
		switch sec {
		case "status":
			// "Uid:\t0\t0\t0\t0": keyed by the field's name.
			if k, v, ok := strings.Cut(line, ":"); ok {
				key, line = prefix+" status "+k, strings.Join(strings.Fields(v), " ")
			}
		case "mounts":
			// mountinfo: keyed by the mount point, the value is the
			// mount's options, type, source and the superblock's
			// options. IDs and parent links are the kernel's own.
			f := strings.Fields(line)
			dash := slices.Index(f, "-")
			if dash < 0 || len(f) < dash+4 {
				break
			}
			key = prefix + " mount " + f[4]
			line = fmt.Sprintf("%s %s %s %s", f[5], f[dash+1], f[dash+2], f[dash+3])
		}
		if line == "" && n > 0 {
			continue
		}
		o[key] = line
		n++
	}
}

// probeScript prints, section by section, what a process in a container
// sees of its security context, namespaces, mounts and environment. It
// writes nothing outside the container's own files: on these machines a
// write to the read-only /proc/sys of a container succeeds, and a pod
// with hostIPC would set the node's IPC sysctls (mountinfo shows the
// read-only and masked paths instead).
const probeScript = `
echo "== status"; grep -E '^(Uid|Gid|Groups|Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status
echo "== id"; id
echo "== mounts"; cat /proc/self/mountinfo
echo "== write rootfs"; touch /probe-file 2>&1; echo "exit $?"
echo "== write /tmp"; touch /tmp/probe-file 2>&1; echo "exit $?"
echo "== read masked /proc/kcore"; wc -c </proc/kcore 2>&1
echo "== list masked /proc/acpi"; ls /proc/acpi 2>&1; echo "exit $?"
echo "== pid 1"; tr '\0' ' ' </proc/1/cmdline; echo
echo "== hostname"; hostname
echo "== /etc/hostname"; cat /etc/hostname 2>&1
echo "== /etc/hosts"; cat /etc/hosts 2>&1
echo "== /etc/resolv.conf"; cat /etc/resolv.conf 2>&1
echo "== env"; env | sort
echo "== cwd"; pwd
echo "== umask"; umask
echo "== oom_score_adj"; cat /proc/self/oom_score_adj
echo "== limits"; cat /proc/self/limits
echo "== cgroup limits"; cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpu/cpu.shares 2>/dev/null || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max /sys/fs/cgroup/cpu.weight
`

// sweepPod is one pod config of the sweep and its containers' configs, in
// start order.
type sweepPod struct {
	name       string
	config     map[string]any
	containers []sweepContainer
}

type sweepContainer struct {
	name   string
	config map[string]any
	// exits: the container ends by itself (its inspect is read once it
	// has); the others run until the sweep stops them.
	exits bool
}

// CRI's namespace modes (NamespaceMode).
const (
	podNS       = 0
	containerNS = 1
	nodeNS      = 2
)

// sweepPods are the pods of the sweep.
func (e *podboxEnv) sweepPods() []sweepPod {
	pod := func(name string, nsOpts map[string]any) map[string]any {
		p := map[string]any{
			"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name + "-uid"},
			"log_directory": filepath.Join(e.dir, name+"-logs"),
			"labels":        map[string]string{"app": name},
			"annotations":   map[string]string{"note": "sweep"},
			"linux": map[string]any{
				"cgroup_parent":    "/" + e.cg,
				"security_context": map[string]any{"namespace_options": nsOpts},
			},
		}
		if nsOpts["network"] != nodeNS {
			// A pod on the node's network has the node's UTS namespace
			// too, and runc refuses a hostname there.
			p["hostname"] = name
		}
		return p
	}
	ctr := func(name string, cmd []string, linux map[string]any, extra map[string]any) sweepContainer {
		c := map[string]any{
			"metadata":    map[string]any{"name": name},
			"image":       map[string]any{"image": appRef},
			"command":     cmd,
			"log_path":    name + ".log",
			"labels":      map[string]string{"role": name},
			"annotations": map[string]string{"note": "sweep-" + name},
			"envs":        []map[string]string{{"key": "SWEEP", "value": name}},
			"linux":       linux,
		}
		for k, v := range extra {
			c[k] = v
		}
		return sweepContainer{name: name, config: c}
	}
	sh := func(script string) []string { return []string{"/bin/sh", "-c", script} }
	// The node pod shares the node's network, PID and IPC namespaces.
	// Not its network with containerd 2.1's shim sandboxer, which crashes
	// on a host-network pod before it asks the shim anything
	// (containerd/containerd#12983, fixed after 2.1.4).
	nodeOpts := map[string]any{"network": nodeNS, "pid": nodeNS, "ipc": nodeNS}
	if e.d.Opts.ShimSandboxer {
		nodeOpts["network"] = podNS
	}
	exits := func(c sweepContainer) sweepContainer { c.exits = true; return c }
	return []sweepPod{{
		name:   "sweep",
		config: pod("sweep", map[string]any{"pid": podNS, "ipc": podNS}),
		containers: []sweepContainer{
			ctr("probe", []string{"/bin/sleep", "600"}, map[string]any{
				"resources": map[string]any{"memory_limit_in_bytes": 128 << 20, "cpu_quota": 50000, "cpu_period": 100000, "cpu_shares": 512},
				"security_context": map[string]any{
					"readonly_rootfs":   true,
					"capabilities":      map[string]any{"add_capabilities": []string{"NET_ADMIN", "SYS_TIME"}, "drop_capabilities": []string{"CHOWN", "NET_RAW"}},
					"namespace_options": map[string]any{"pid": podNS, "ipc": podNS},
				},
			}, nil),
			ctr("user", []string{"/bin/sleep", "600"}, map[string]any{
				"security_context": map[string]any{
					"run_as_user":         map[string]any{"value": 1000},
					"run_as_group":        map[string]any{"value": 2000},
					"supplemental_groups": []int{3000, 3001},
					"namespace_options":   map[string]any{"pid": containerNS, "ipc": podNS},
				},
			}, nil),
			ctr("logger", sh(`echo before; echo before-err >&2; while [ ! -e /tmp/after ]; do sleep 0.1; done; echo after; exec sleep 600`), map[string]any{}, nil),
			exits(ctr("exit3", sh(`echo out; echo err >&2; exit 3`), map[string]any{}, nil)),
			exits(ctr("exit0", []string{"/bin/true"}, map[string]any{}, nil)),
			ctr("stdin", []string{"/bin/cat"}, map[string]any{}, map[string]any{"stdin": true, "stdin_once": true}),
			ctr("tty", sh(`tty; stty size; read x; echo "got $x"; exec sleep 600`), map[string]any{}, map[string]any{"stdin": true, "tty": true}),
		},
	}, {
		name:   "sweep-node",
		config: pod("sweep-node", nodeOpts),
		containers: []sweepContainer{
			ctr("node", []string{"/bin/sleep", "600"}, map[string]any{
				"security_context": map[string]any{"namespace_options": nodeOpts},
			}, nil),
		},
	}}
}

// TestCRISweep runs the sweep's pods on runc and on podbox in each
// containerd setup and compares what crictl shows of them.
func TestCRISweep(t *testing.T) {
	eachVariant(t, func(t *testing.T, e *podboxEnv) {
		got := map[string]observations{}
		for _, h := range handlers() {
			start := time.Now()
			got[h] = e.sweep(t, h)
			t.Logf("%s: %d observations in %s", h, len(got[h]), time.Since(start).Round(time.Millisecond))
		}
		for _, h := range handlers() {
			checkExpected(t, h, got[h], e.d.Opts.ShimSandboxer)
		}
		compareObservations(t, got["runc"], got["podbox"], e.d.Opts.ShimSandboxer)
	})
}

// sweep runs the sweep's pods on handler and returns what they showed,
// with the IDs of its pods and containers replaced by their names.
func (e *podboxEnv) sweep(t *testing.T, h string) observations {
	t.Helper()
	o := observations{}
	ids := map[string]string{} // ID → "<pod NAME>" / "<ctr NAME>"
	ctrs := map[string]string{}
	pods := map[string]string{}
	for _, p := range e.sweepPods() {
		os.RemoveAll(filepath.Join(e.dir, p.name+"-logs"))
		pc := writeJSON(t, e.dir, p.name+".json", p.config)
		id := crictl(t, e.d, "runp", "--runtime", h, pc)
		t.Cleanup(func() { e.d.Crictl("stopp", id); e.d.Crictl("rmp", id) })
		pods[p.name], ids[id] = id, "<pod "+p.name+">"
		for _, c := range p.containers {
			cc := writeJSON(t, e.dir, p.name+"-"+c.name+".json", c.config)
			cid := crictl(t, e.d, "create", id, cc, pc)
			crictl(t, e.d, "start", cid)
			ctrs[c.name], ids[cid] = cid, "<ctr "+c.name+">"
		}
		for _, c := range p.containers {
			if c.exits {
				waitExited(t, e.d, ctrs[c.name], 20*time.Second)
			}
		}
	}
	e.attach(t, o, ctrs)
	for name, id := range pods {
		o.addJSON(t, "inspectp "+name, crictl(t, e.d, "inspectp", "-o", "json", id))
	}
	for name, id := range ctrs {
		o.addJSON(t, "inspect "+name, crictl(t, e.d, "inspect", "-o", "json", id))
	}
	for _, name := range []string{"probe", "user", "node"} {
		o.exec(t, e.d, "exec "+name, ctrs[name], nil, nil, "sh", "-c", probeScript)
		pod := pods["sweep"]
		if name == "node" {
			pod = pods["sweep-node"]
		}
		root := ""
		if h == "podbox" {
			root = e.root
		}
		o.namespaces(t, e.d, root, "namespaces "+name, ctrs[name], pod)
	}
	e.execs(t, o, ctrs["probe"])
	// A pod's containers share its /dev/shm, as they share its IPC
	// namespace.
	o.exec(t, e.d, "shm write", ctrs["probe"], nil, nil, "sh", "-c", "echo shared >/dev/shm/sweep")
	o.exec(t, e.d, "shm read", ctrs["user"], nil, nil, "cat", "/dev/shm/sweep")
	e.stats(t, o, pods["sweep"], ctrs["probe"])
	e.update(t, o, ctrs["probe"])
	e.logs(t, o, filepath.Join(e.dir, "sweep-logs"), ctrs)
	// Stopped: probe's sleep is not PID 1 of its namespace and ends at
	// SIGTERM; user's is, ignores it, and is killed at the timeout.
	for _, name := range []string{"probe", "user"} {
		crictl(t, e.d, "stop", "--timeout", "1", ctrs[name])
		o.addJSON(t, "stopped "+name, crictl(t, e.d, "inspect", "-o", "json", ctrs[name]))
	}
	// The pods go before the other handler's, which have the same names.
	for _, id := range pods {
		crictl(t, e.d, "stopp", id)
		crictl(t, e.d, "rmp", id)
	}
	return o.replaceIDs(ids)
}

// exec runs a command in container id with crictl exec (flags before the
// container, args after) and records its standard output, standard error
// and exit.
func (o observations) exec(t *testing.T, d *Daemon, prefix, id string, stdin *string, flags []string, args ...string) {
	t.Helper()
	var in io.Reader
	if stdin != nil {
		in = strings.NewReader(*stdin)
		flags = append([]string{"-i"}, flags...)
	}
	stdout, stderr, err := d.CrictlIO(in, append(append(append([]string{"exec"}, flags...), id), args...)...)
	o.addSections(prefix, stdout)
	o[prefix+" stderr"] = stderr
	o[prefix+" exit"] = fmt.Sprint(err)
}

// replaceIDs writes every pod and container ID in o's values as the name
// ids gives it.
func (o observations) replaceIDs(ids map[string]string) observations {
	var pairs []string
	for id, name := range ids {
		pairs = append(pairs, id, name)
	}
	r := strings.NewReplacer(pairs...)
	out := observations{}
	for k, v := range o {
		out[k] = r.Replace(v)
	}
	return out
}

// mayDiffer are the fields whose values differ between the handlers for a
// reason that has nothing to do with what the pod sees of its runtime.
// Each entry names the fields (a regular expression over the
// observation's path) and, if only part of the value differs, that part;
// drop leaves the fields out altogether (one handler has them, the other
// not); shimSandboxer limits an entry to containerd 2 with sandboxer
// "shim" for the podbox runtime. Each says why.
var mayDiffer = []struct {
	field, value  *regexp.Regexp
	drop          bool
	shimSandboxer bool
	why           string
}{
	{field: re(`\.(createdAt|startedAt|finishedAt)$`), why: "the time each handler's turn came"},
	{field: re(`\.info\.pid$`), why: "process IDs"},
	{field: re(`\.info\.runtimeSpec\.linux\.namespaces\[\d+\]\.path$`), value: re(`/proc/\d+/|cni-[0-9a-f-]+`),
		why: "the namespaces of the pod's sandbox, by its process ID; CRI's name for the pod's network namespace"},
	{field: re(`\.info\.runtimeType$|\.runtimeHandler$|\.RuntimeHandler$`), why: "the very runtimes compared"},
	{field: re(`\.info\.runtimeOptions`), drop: true, why: "the runc runtime's options in containerd's config (its Root); podbox takes none"},
	{field: re(`\.info\.(sandboxMetadata\.Metadata\.)?(cniResult|CNIResult)\.|\.status\.network\.ip$|\.Metadata\.(IP|NetNSPath)$`),
		why: "each pod's own address, MAC, veth and network namespace from CNI"},
	{field: re(` mount /$`), value: re(`snapshots/\d+/`), why: "the container's rootfs snapshot, one per container"},
	{field: re(`^statsp? .*\.timestamp$`), why: "the time each handler's turn came"},
	{field: re(`^statsp? .*\.value$`), why: "figures of two runs of one workload, which are never equal: " +
		"compared as zero or not (fidelity_test.go compares the main ones by size)"},
	{field: re(`^statsp? .*\.writableLayer\.`), drop: true,
		why: "CRI's snapshot syncer fills it from the snapshotter, not the runtime, every 10 s (stats_collect_period): " +
			"whether a container has been seen yet depends on when its turn came"},
	{field: re(`^statsp? .*\.majorPageFaults\.value$`), drop: true,
		why: "a major fault is a read from disk, which the second run finds in the page cache"},
	{field: re(` stderr$`), value: re(`(?m)^[IWE]\d{4} [\d:.]+ +\d+ `), why: "crictl's own log line: its time and PID"},
	{field: re(`^inspectp [^ ]+ \.info\.`), drop: true, shimSandboxer: true,
		why: "with sandboxer \"shim\" a pod's info is what the sandbox's shim reports of it (podbox's sandbox record); " +
			"the runc handler's is CRI's podsandbox's, its sandbox container"},
	{field: re(`^inspectp [^ ]+ \.[a-zA-Z]+$`), drop: true, shimSandboxer: true, why: "the same info, which crictl prints at the top level"},
	{field: re(` /etc/hosts #\d+$`), drop: true, shimSandboxer: true,
		why: "with sandboxer \"shim\" the pod's /etc/hosts is podbox's (localhost and the pod's hostname), " +
			"where containerd's podsandbox copies the node's; a kubelet mounts its own in every container (hostAliases, " +
			"the pod's IP and hostname) over either"},
	{field: re(`^(inspect [^ ]+|updated inspect|stopped [^ ]+) \.info\.runtimeSpec\.mounts`), drop: true, shimSandboxer: true,
		why: "containerd 2.1's CRI leaves the pod's /etc/hostname, /etc/hosts, /etc/resolv.conf and /dev/shm out of a container's spec " +
			"under sandboxer \"shim\" (podsandbox adds them): podbox adds its own; what the container then sees is compared (exec … mount, etc)"},
}

func re(s string) *regexp.Regexp { return regexp.MustCompile(s) }

// normalised returns v as it is compared, and whether it is compared at
// all: the varying part of a field of mayDiffer becomes "<varies>", or all
// of it if the entry names no part (a value set on one handler and empty
// on the other still differs).
func normalised(k, v string, shimSandboxer bool) (string, bool) {
	for _, m := range mayDiffer {
		if !m.field.MatchString(k) || (m.shimSandboxer && !shimSandboxer) {
			continue
		}
		switch {
		case m.drop:
			return "", false
		case isZero(v):
		case m.value == nil:
			v = "<varies>"
		default:
			v = m.value.ReplaceAllString(v, "<varies>")
		}
	}
	return v, true
}

// isZero reports whether an observed value is empty or zero, as JSON
// (crictl writes 64-bit numbers as strings) or as text.
func isZero(v string) bool {
	switch v {
	case "", `""`, "0", `"0"`, "null", "[]", "{}":
		return true
	}
	return false
}

// comparedKey is the path under which an observation is compared: CNI's
// result names the pod's host-side veth, which differs.
func comparedKey(k string) string { return vethName.ReplaceAllString(k, "veth*") }

var vethName = re(`veth[0-9a-f]{8}`)

// comparable is o with its keys as they are compared and its values
// normalised.
func (o observations) comparable(shimSandboxer bool) observations {
	out := observations{}
	for k, v := range o {
		if v, ok := normalised(k, v, shimSandboxer); ok {
			out[comparedKey(k)] = v
		}
	}
	return out
}

// compareObservations fails for every field whose value on podbox is not
// runc's, and for every field that only one of them shows.
func compareObservations(t *testing.T, ref, got observations, shimSandboxer bool) {
	t.Helper()
	ref, got = ref.comparable(shimSandboxer), got.comparable(shimSandboxer)
	keys := map[string]bool{}
	for k := range ref {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	sorted := slices.Sorted(func(yield func(string) bool) {
		for k := range keys {
			if !yield(k) {
				return
			}
		}
	})
	var diffs []string
	for _, k := range sorted {
		r, rok := ref[k]
		g, gok := got[k]
		switch {
		case !rok:
			diffs = append(diffs, fmt.Sprintf("%s: podbox only: %q", k, g))
		case !gok:
			diffs = append(diffs, fmt.Sprintf("%s: runc only: %q", k, r))
		case r != g:
			diffs = append(diffs, fmt.Sprintf("%s: runc %q, podbox %q", k, r, g))
		}
	}
	if len(diffs) > 0 {
		t.Errorf("%d fields differ from the runc handler's:\n%s", len(diffs), strings.Join(diffs, "\n"))
	}
}

// attach feeds the stdin container through crictl attach and reads what it
// echoes; the tty container is attached with a terminal asked for.
func (e *podboxEnv) attach(t *testing.T, o observations, ctrs map[string]string) {
	t.Helper()
	out, errOut, err := e.d.CrictlIO(strings.NewReader("hello\nworld\n"), "attach", "-i", ctrs["stdin"])
	o["attach stdin stdout"], o["attach stdin stderr"], o["attach stdin exit"] = out, errOut, fmt.Sprint(err)
	// stdin_once: the container's stdin closes with the attach's, and cat
	// ends.
	st := waitExited(t, e.d, ctrs["stdin"], 20*time.Second)
	o["attach stdin then"] = fmt.Sprintf("%s %s %d", st.State, st.Reason, st.ExitCode)
	o["attach tty"] = e.withTerminal(t, "typed\r", "got typed", "attach", "-i", "-t", ctrs["tty"])
}

// withTerminal runs crictl with a terminal as its stdin, as a user at a
// terminal does (crictl refuses -t without one): it types typed (a raw
// terminal sends Enter as a carriage return), and returns what crictl
// shows until it has shown until or has ended.
func (e *podboxEnv) withTerminal(t *testing.T, typed, until string, args ...string) string {
	t.Helper()
	pty, slavePath, err := console.NewPty()
	if err != nil {
		t.Fatalf("attach: pty: %v", err)
	}
	defer pty.Close()
	slave, err := os.OpenFile(slavePath, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	defer slave.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	cmd := e.d.Node.Command(ctx, e.d.crictl, e.d.crictlArgs(args)...)
	var out syncBuffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("attach: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() { cancel(); <-exited }()
	// The line goes once crictl has put the terminal in raw mode (its
	// echo off), as a user types at a prompt; a raw terminal sends Enter
	// as a carriage return.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if st, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS); err == nil && st.Lflag&unix.ECHO == 0 {
			break
		}
	}
	if _, err := pty.Write([]byte(typed)); err != nil {
		t.Fatalf("attach: type: %v", err)
	}
	for !strings.Contains(out.String(), until) {
		select {
		case <-exited:
			return out.String()
		case <-ctx.Done():
			return out.String()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return out.String()
}

// syncBuffer is a bytes.Buffer that a command writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// execs runs crictl exec's cases in container id: an exit status with
// both streams, stdin, a terminal, and ExecSync's timeout.
func (e *podboxEnv) execs(t *testing.T, o observations, id string) {
	t.Helper()
	o.exec(t, e.d, "exec status", id, nil, nil, "sh", "-c", "echo out; echo err >&2; exit 7")
	o.exec(t, e.d, "exec sync status", id, nil, []string{"-s"}, "sh", "-c", "echo out; echo err >&2; exit 7")
	in := "from stdin\n"
	o.exec(t, e.d, "exec stdin", id, &in, nil, "cat")
	o["exec tty"] = e.withTerminal(t, "", "\n", "exec", "-i", "-t", id, "tty")
	start := time.Now()
	o.exec(t, e.d, "exec sync timeout", id, nil, []string{"-s", "--timeout", "1"}, "sleep", "7")
	o["exec sync timeout returned within 5 s"] = fmt.Sprint(time.Since(start) < 5*time.Second)
	// The timed-out process is gone.
	o.exec(t, e.d, "exec sync timeout left", id, nil, nil, "sh", "-c", "ps -o args | grep -c '^sleep 7$'")
}

// namespaces records, for each of the container's namespaces, whether it
// is its pod's (the sandbox's process's), the node's (containerd's) or its
// own; root is podbox's state root, for a podbox pod.
func (o observations) namespaces(t *testing.T, d *Daemon, root, prefix, ctr, pod string) {
	t.Helper()
	pidOf := func(what, id string) int {
		var v struct {
			Info struct {
				Pid int `json:"pid"`
			} `json:"info"`
		}
		json.Unmarshal([]byte(crictl(t, d, what, "-o", "json", id)), &v)
		return v.Info.Pid
	}
	c, p := pidOf("inspect", ctr), pidOf("inspectp", pod)
	if p == 0 && root != "" {
		// With sandboxer "shim" CRI shows no pid of a pod: podbox's
		// record of the sandbox names its pause.
		if sb, err := (sandbox.Store{Root: root}).LoadSandbox(pod); err == nil {
			p = sb.PausePID
		}
	}
	d.mu.Lock()
	node := d.cmd.Process.Pid
	d.mu.Unlock()
	link := func(pid int, ns string) string {
		l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		return l
	}
	for _, ns := range []string{"pid", "ipc", "uts", "net", "mnt", "cgroup", "user"} {
		var rel []string
		mine := link(c, ns)
		if p != 0 && mine == link(p, ns) {
			rel = append(rel, "pod")
		}
		if mine == link(node, ns) {
			rel = append(rel, "node")
		}
		if mine == "" {
			rel = []string{"unread"}
		} else if len(rel) == 0 {
			rel = []string{"own"}
		}
		o[prefix+" "+ns] = strings.Join(rel, "+")
	}
}

// stats records the container's and the pod's CRI stats: which figures
// there are, and whether each is zero.
func (e *podboxEnv) stats(t *testing.T, o observations, pod, ctr string) {
	t.Helper()
	o.addJSON(t, "stats", crictl(t, e.d, "stats", "-o", "json", "--id", ctr))
	o.addJSON(t, "statsp", crictl(t, e.d, "statsp", "-o", "json", "--id", pod))
}

// update changes the container's resources with UpdateContainerResources
// and records what the container and CRI then say of them.
func (e *podboxEnv) update(t *testing.T, o observations, id string) {
	t.Helper()
	crictl(t, e.d, "update", "--memory", strconv.Itoa(96<<20), "--cpu-quota", "20000", "--cpu-period", "100000", "--cpu-share", "256", id)
	o.exec(t, e.d, "updated", id, nil, nil, "sh", "-c", probeScript)
	o.addJSON(t, "updated inspect", crictl(t, e.d, "inspect", "-o", "json", id))
}

// logs records what crictl logs shows of the exited and the terminal
// containers, and rotates the logger's log as the kubelet does: the file
// renamed, ReopenContainerLog, and what the container writes next lands in
// a new file at the old path.
func (e *podboxEnv) logs(t *testing.T, o observations, dir string, ctrs map[string]string) {
	t.Helper()
	for _, name := range []string{"exit3", "exit0", "stdin", "tty", "logger"} {
		out, errOut, err := e.d.CrictlIO(nil, "logs", ctrs[name])
		o["logs "+name+" stdout"], o["logs "+name+" stderr"], o["logs "+name+" exit"] = out, errOut, fmt.Sprint(err)
	}
	log := filepath.Join(dir, "logger.log")
	if err := os.Rename(log, log+".1"); err != nil {
		t.Fatal(err)
	}
	crictl(t, e.d, "logs", "--reopen", ctrs["logger"])
	crictl(t, e.d, "exec", ctrs["logger"], "touch", "/tmp/after")
	var now string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if b, _ := os.ReadFile(log); strings.Contains(string(b), "after") {
			now = string(b)
			break
		}
	}
	old, _ := os.ReadFile(log + ".1")
	o.addLog("rotated old", string(old))
	o.addLog("rotated new", now)
	out, errOut, err := e.d.CrictlIO(nil, "logs", ctrs["logger"])
	o["logs logger after rotation stdout"], o["logs logger after rotation stderr"], o["logs logger after rotation exit"] = out, errOut, fmt.Sprint(err)
}

// addLog records a CRI log file line by line, without the time stamps and
// in sorted order: lines of stdout and stderr written together come
// through two pipes, in either order.
func (o observations) addLog(prefix, text string) {
	var lines []string
	for line := range strings.SplitSeq(strings.TrimSuffix(text, "\n"), "\n") {
		if _, rest, ok := strings.Cut(line, " "); ok {
			line = rest
		}
		lines = append(lines, line)
	}
	slices.Sort(lines)
	for i, line := range lines {
		o[fmt.Sprintf("%s #%d", prefix, i)] = line
	}
}

// expected are observations whose value the sweep knows beforehand, on
// either handler: they show that each item ran as meant, so that the
// comparison is not between two runs that both went wrong. A value
// starting with "~" need only be contained.
var expected = map[string]string{
	"inspect exit3 .status.state":           `"CONTAINER_EXITED"`,
	"inspect exit3 .status.exitCode":        "3",
	"inspect exit3 .status.reason":          `"Error"`,
	"inspect exit0 .status.exitCode":        "0",
	"inspect exit0 .status.reason":          `"Completed"`,
	"inspect probe .status.state":           `"CONTAINER_RUNNING"`,
	"stopped probe .status.exitCode":        "143",
	"stopped user .status.exitCode":         "137",
	"attach stdin stdout":                   "hello\nworld\n",
	"attach stdin then":                     "CONTAINER_EXITED Completed 0",
	"attach tty":                            "~got typed",
	"logs exit3 stdout":                     "out\n",
	"logs exit3 stderr":                     "err\n",
	"logs tty stdout":                       "~/dev/pts/0",
	"exec status #0":                        "out",
	"exec status stderr":                    "err\nexecing command in container <ctr probe>: command terminated with exit code 7\n",
	"exec sync status stderr":               "~exited with 7: err\n",
	"exec stdin #0":                         "from stdin",
	"shm read #0":                           "shared",
	"exec tty":                              "~/dev/pts/",
	"exec sync timeout returned within 5 s": "true",
	"exec sync timeout left #0":             "0",
	"exec probe write rootfs #0":            "~Read-only file system",
	"exec probe write /tmp #0":              "~Read-only file system",
	"exec user write /tmp #0":               "exit 0",
	"exec user status Uid":                  "1000 1000 1000 1000",
	"exec user status Gid":                  "2000 2000 2000 2000",
	"exec user status Groups":               "2000 3000 3001",
	"exec probe hostname #0":                "sweep",
	"exec probe pid 1 #0":                   "/pause ",
	"exec user pid 1 #0":                    "/bin/sleep 600 ",
	"exec probe cgroup limits #0":           "134217728",
	"updated cgroup limits #0":              "100663296",
	"updated cgroup limits #1":              "20000",
	"updated cgroup limits #3":              "256",
	"namespaces probe pid":                  "pod",
	"namespaces user pid":                   "own",
	"namespaces probe ipc":                  "pod",
	"namespaces node pid":                   "~node",
	"namespaces node ipc":                   "~node",
	"rotated old #0":                        "stderr F before-err",
	"rotated old #1":                        "stdout F before",
	"rotated new #0":                        "stdout F after",
	"logs logger after rotation stdout":     "after\n",
}

// checkExpected fails for every observation of o that is not as expected,
// but those mayDiffer leaves out in this setup.
func checkExpected(t *testing.T, h string, o observations, shimSandboxer bool) {
	t.Helper()
	for k, want := range expected {
		if _, compared := normalised(k, "", shimSandboxer); !compared {
			continue
		}
		got, ok := o[k]
		if sub, partial := strings.CutPrefix(want, "~"); partial && ok && strings.Contains(got, sub) || ok && got == want {
			continue
		}
		t.Errorf("%s: %s: %q (present %t), want %q", h, k, got, ok, want)
	}
}
