package cli

import (
	"bytes"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/podbox/podbox/image/store"
	"github.com/podbox/podbox/kube"
	"github.com/podbox/podbox/kube/plan"
	"github.com/podbox/podbox/sandbox"
)

// FuzzPlayArgs turns arbitrary manifests into a plan, as podbox-kube does,
// and parses every command of the plan as podbox would run it: play runs
// `sandbox create` and `run` with the plan's arguments, so a manifest that
// kube.Plan accepts must give arguments that these commands' flags and
// parsers accept too (else play fails half-way, with a flag's error where
// the manifest's field should be named), and that mean what the manifest
// says: each --mount is the volume's directory at the mount path, each -e
// the container's variable, each label the pod's. Manifests come from
// anywhere (kubectl's output, a chart, the internet), and a value that
// breaks out of its flag (a mount path with ",source=/") would change what
// a container gets.
func FuzzPlayArgs(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("..", "..", "..", "kube", "testdata", "pod.yaml")); err == nil {
		f.Add(b)
	}
	const head = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n"
	for _, spec := range []string{
		"  containers: [{name: a, image: busybox}]\n",
		"  hostname: web\n  dnsConfig: {nameservers: [10.0.0.53], searches: [svc.example], options: [{name: ndots, value: '2'}]}\n  containers: [{name: a, image: busybox}]\n",
		"  containers:\n  - name: a\n    image: busybox\n    ports: [{containerPort: 80, hostPort: 8080, hostIP: 127.0.0.1}]\n",
		"  volumes: [{name: d, emptyDir: {}}]\n  containers:\n  - name: a\n    image: busybox\n    volumeMounts: [{name: d, mountPath: /d, subPath: x}]\n",
		"  containers:\n  - name: a\n    image: busybox\n    securityContext: {runAsUser: 1000, capabilities: {add: [NET_ADMIN], drop: [ALL]}}\n",
		"  containers:\n  - name: a\n    image: busybox\n    resources: {limits: {memory: 64Mi, cpu: 500m}}\n",
	} {
		f.Add([]byte(head + spec))
	}
	f.Fuzz(func(t *testing.T, manifest []byte) {
		p, err := kube.Plan(bytes.NewReader(manifest), kube.Options{Stat: statDir})
		if err != nil {
			return
		}
		for i := range p.Pods {
			pod := &p.Pods[i]
			checkCreateArgs(t, manifest, pod)
			// The sandbox's cgroup holds every container's: its limit,
			// when it has one, is no less than any of theirs.
			for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
				if pod.Memory != 0 && pod.Memory < c.Memory {
					t.Fatalf("manifest %q: pod memory %d, container %s %d", manifest, pod.Memory, c.Name, c.Memory)
				}
			}
			dirs := map[string]string{}
			for _, v := range pod.Volumes {
				dirs[v.Name] = t.TempDir()
			}
			for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
				checkRunArgs(t, manifest, c, dirs)
			}
		}
	})
}

// statDir is a node on which every hostPath is a directory.
func statDir(name string) (fs.FileInfo, error) { return dirInfo(filepath.Base(name)), nil }

type dirInfo string

func (d dirInfo) Name() string       { return string(d) }
func (d dirInfo) Size() int64        { return 0 }
func (d dirInfo) Mode() fs.FileMode  { return fs.ModeDir | 0o755 }
func (d dirInfo) ModTime() time.Time { return time.Time{} }
func (d dirInfo) IsDir() bool        { return true }
func (d dirInfo) Sys() any           { return nil }

// parseArgs parses args with cmd's own flags, as cobra does before RunE.
func parseArgs(t *testing.T, manifest []byte, cmd *cobra.Command, args []string) *cobra.Command {
	t.Helper()
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatalf("manifest %q: podbox %q: %v", manifest, args, err)
	}
	return cmd
}

func checkCreateArgs(t *testing.T, manifest []byte, pod *plan.Pod) {
	t.Helper()
	args := pod.CreateArgs()
	if !slices.Equal(args[:2], []string{"sandbox", "create"}) {
		t.Fatalf("CreateArgs = %q", args)
	}
	f := parseArgs(t, manifest, (&App{}).sandboxCreateCommand(&globals{}), args[2:]).Flags()
	str := func(name string) string { v, _ := f.GetString(name); return v }
	arr := func(name string) []string { v, _ := f.GetStringArray(name); return v }
	share, _ := f.GetBool("share-pid")
	o := createOptions{name: str("name"), hostname: str("hostname"), network: str("network"), sharePID: share,
		labels: arr("label"), ports: arr("publish"), dns: arr("dns"), dnsSearch: arr("dns-search"), dnsOpt: arr("dns-option"),
		cniConfDir: str("cni-conf-dir"), cniBinDir: str("cni-bin-dir"), memory: str("memory"), cpus: str("cpus")}
	if err := o.validate(); err != nil {
		t.Fatalf("manifest %q: podbox %q: %v", manifest, args, err)
	}
	ann, err := o.annotations(sandbox.NewID())
	if err != nil {
		t.Fatalf("manifest %q: podbox %q: %v", manifest, args, err)
	}
	want := maps.Clone(pod.Labels)
	if want == nil {
		want = map[string]string{}
	}
	want[plan.LabelPod], want[plan.LabelNamespace] = pod.Name, pod.Namespace
	got := map[string]string{}
	for k, v := range ann {
		if k, ok := strings.CutPrefix(k, annLabelPrefix); ok {
			got[k] = v
		}
	}
	if !maps.Equal(got, want) {
		t.Fatalf("manifest %q: podbox %q labels the sandbox %q, want %q", manifest, args, got, want)
	}
}

func checkRunArgs(t *testing.T, manifest []byte, c plan.Container, dirs map[string]string) {
	t.Helper()
	for _, m := range c.Mounts {
		if m.SubPath != "" {
			if err := os.MkdirAll(filepath.Join(dirs[m.Volume], m.SubPath), 0o755); err != nil {
				t.Fatalf("manifest %q: subPath %q: %v", manifest, m.SubPath, err)
			}
		}
	}
	args := c.RunArgs("web", dirs, true)
	cmd := parseArgs(t, manifest, (&App{}).runCommand(&globals{}), args[1:])
	f := cmd.Flags()
	str := func(name string) string { v, _ := f.GetString(name); return v }
	arr := func(name string) []string { v, _ := f.GetStringArray(name); return v }
	boolean := func(name string) bool { v, _ := f.GetBool(name); return v }
	pids, _ := f.GetInt64("pids-limit")
	o := runOptions{sandbox: str("sandbox"), name: str("name"), rootfs: str("rootfs"), image: str("image"), pull: str("pull"),
		detach: boolean("detach"), rm: boolean("rm"), stdin: boolean("interactive"), restart: str("restart"),
		proc: processOptions{args: f.Args(), env: arr("env"), cwd: str("workdir"), user: str("user"), terminal: boolean("tty")},
		host: hostOptions{volumes: arr("volume"), mounts: arr("mount"), memory: str("memory"), cpus: str("cpus"), pidsLimit: pids,
			readOnly: boolean("read-only"), capAdd: arr("cap-add"), capDrop: arr("cap-drop")}}
	if f.Changed("entrypoint") {
		o.entrypoint = []string{}
		if ep := str("entrypoint"); ep != "" {
			o.entrypoint = []string{ep}
		}
	}
	fail := func(format string, a ...any) {
		t.Helper()
		t.Fatalf("manifest %q: podbox %q: "+format, append([]any{manifest, args}, a...)...)
	}
	if err := o.validate(); err != nil {
		fail("%v", err)
	}
	rc, err := o.host.parse()
	// Capability names are the one thing kube leaves to run: the list is
	// the CLI's. A manifest with an unknown one fails at its container's
	// run, with run's message naming it.
	if err != nil && strings.Contains(err.Error(), "unknown capability") {
		return
	}
	if err != nil {
		fail("%v", err)
	}
	if _, err := store.ParseReference(o.image); err != nil {
		fail("%v", err)
	}
	if o.proc.user != "" {
		if _, err := parseUser(o.proc.user); err != nil {
			fail("%v", err)
		}
	}
	env, _ := parseKeyValues("--env", o.proc.env)
	for _, kv := range c.Env {
		k, v, _ := strings.Cut(kv, "=")
		if got, ok := env[k]; !ok || got != v {
			fail("-e gives %s=%q, the manifest %q", k, got, kv)
		}
	}
	var mounts []sandbox.Mount
	if rc.cfg != nil {
		mounts = rc.cfg.Mounts
	}
	if len(mounts) != len(c.Mounts) {
		fail("%d mounts, the manifest %d", len(mounts), len(c.Mounts))
	}
	for i, m := range c.Mounts {
		src := dirs[m.Volume]
		if m.SubPath != "" {
			src = filepath.Join(src, m.SubPath)
		}
		got := mounts[i]
		if got.Type != sandbox.MountBind || got.Source != filepath.Clean(src) || got.Destination != filepath.Clean(m.Target) || got.ReadOnly != m.ReadOnly {
			fail("mount %+v, the manifest %+v of %s", got, m, src)
		}
	}
}
