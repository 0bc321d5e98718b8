// Package plan is what `podbox play` carries out: the sandboxes, volumes
// and containers a set of Kubernetes manifests describes, in podbox's own
// terms. Package kube makes a plan from manifests (in the podbox-kube
// binary, which links the Kubernetes API types); the CLI runs it, step by
// step, as the podbox commands each step names (Pod.CreateArgs,
// Container.RunArgs), so that a plan does exactly what a user typing those
// commands would get, and `play --dry-run` can show them.
//
// It depends on nothing beyond the standard library: the CLI links it.
package plan

import (
	"encoding/csv"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// Labels every sandbox of a plan carries: what `play --down` and
// `--replace` recognise as theirs.
const (
	LabelPod       = "io.podbox.kube.pod"
	LabelNamespace = "io.kubernetes.pod.namespace"
)

// Plan is every pod of a set of manifests, in the order they came.
type Plan struct {
	Pods []Pod `json:"pods"`
}

// Pod is one sandbox with its volumes and containers.
type Pod struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Hostname  string `json:"hostname,omitempty"`
	SharePID  bool   `json:"sharePid,omitempty"`
	// Labels are the pod's own (metadata.labels).
	Labels map[string]string `json:"labels,omitempty"`
	// Ports are -p values: [HOSTIP:]HOSTPORT:PORT/PROTO.
	Ports []string `json:"ports,omitempty"`
	// DNS servers, searches and options (dnsConfig).
	DNSServers  []string `json:"dnsServers,omitempty"`
	DNSSearches []string `json:"dnsSearches,omitempty"`
	DNSOptions  []string `json:"dnsOptions,omitempty"`
	// Memory (bytes) and CPUs of the pod's cgroup: the sums of its
	// containers' limits, when every container has one.
	Memory int64  `json:"memory,omitempty"`
	CPUs   string `json:"cpus,omitempty"`

	Volumes        []Volume    `json:"volumes,omitempty"`
	InitContainers []Container `json:"initContainers,omitempty"`
	Containers     []Container `json:"containers"`
}

// Volume kinds.
const (
	EmptyDir  = "emptyDir"
	HostPath  = "hostPath"
	ConfigMap = "configMap"
	Secret    = "secret"
)

// Volume is one of the pod's volumes. EmptyDir, ConfigMap and Secret
// volumes live in the sandbox's state directory and go with it; a HostPath
// is the node's.
type Volume struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Memory: an emptyDir on tmpfs (medium: Memory); secrets always are.
	Memory bool `json:"memory,omitempty"`
	// SizeLimit bounds a tmpfs (bytes; 0: the kernel's default, half of
	// RAM).
	SizeLimit int64 `json:"sizeLimit,omitempty"`
	// Path and Create are a hostPath's: Create is "directory" or "file"
	// for DirectoryOrCreate and FileOrCreate.
	Path   string `json:"path,omitempty"`
	Create string `json:"create,omitempty"`
	// Files are a configMap's or secret's keys.
	Files []File `json:"files,omitempty"`
}

// File is one key of a configMap or secret volume.
type File struct {
	Path string `json:"path"`
	Data []byte `json:"data"`
	Mode uint32 `json:"mode"`
}

// Mount is a volumeMount.
type Mount struct {
	Volume   string `json:"volume"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
	SubPath  string `json:"subPath,omitempty"`
}

// Container is one container; Name is podbox's (POD-CONTAINER: container
// names are the node's, not the pod's).
type Container struct {
	Name  string `json:"name"`
	Image string `json:"image"`
	Pull  string `json:"pull"`
	// Command and Args as Kubernetes has them: Command replaces the
	// image's Entrypoint (and drops its Cmd), Args its Cmd.
	Command []string `json:"command,omitempty"`
	Args    []string `json:"args,omitempty"`
	Env     []string `json:"env,omitempty"`
	// SecretEnv names the variables of Env whose values come from a
	// Secret: shown redacted.
	SecretEnv  []string `json:"secretEnv,omitempty"`
	WorkingDir string   `json:"workingDir,omitempty"`
	User       string   `json:"user,omitempty"`
	Mounts     []Mount  `json:"mounts,omitempty"`
	Memory     int64    `json:"memory,omitempty"`
	CPUs       string   `json:"cpus,omitempty"`
	ReadOnly   bool     `json:"readOnlyRootfs,omitempty"`
	CapAdd     []string `json:"capAdd,omitempty"`
	CapDrop    []string `json:"capDrop,omitempty"`
	// Privileged is --privileged (securityContext.privileged).
	Privileged bool `json:"privileged,omitempty"`
	// Seccomp is --security-opt seccomp=VALUE: "unconfined" or a
	// profile's path; empty is podbox's default profile (RuntimeDefault).
	Seccomp string `json:"seccomp,omitempty"`
	// Restart is podbox's --restart: no, on-failure or always.
	Restart string `json:"restart,omitempty"`
}

// CreateArgs is `podbox sandbox create` for p.
func (p *Pod) CreateArgs() []string {
	args := []string{"sandbox", "create", "--name", p.Name}
	if p.Hostname != "" {
		args = append(args, "--hostname", p.Hostname)
	}
	if p.SharePID {
		args = append(args, "--share-pid")
	}
	args = append(args, "--label", LabelPod+"="+p.Name, "--label", LabelNamespace+"="+p.Namespace)
	for _, k := range sortedKeys(p.Labels) {
		args = append(args, "--label", k+"="+p.Labels[k])
	}
	for _, v := range p.Ports {
		args = append(args, "-p", v)
	}
	for _, v := range p.DNSServers {
		args = append(args, "--dns", v)
	}
	for _, v := range p.DNSSearches {
		args = append(args, "--dns-search", v)
	}
	for _, v := range p.DNSOptions {
		args = append(args, "--dns-option", v)
	}
	if p.Memory > 0 {
		args = append(args, "--memory", fmt.Sprint(p.Memory))
	}
	if p.CPUs != "" {
		args = append(args, "--cpus", p.CPUs)
	}
	return args
}

// RunArgs is `podbox run` for c in sandbox sb, with its volumes' directories
// on the node in dirs (by volume name). Init containers run in the
// foreground (their exit decides the pod's start), the others detached.
func (c *Container) RunArgs(sb string, dirs map[string]string, detach bool) []string {
	args := []string{"run", "--sandbox", sb, "--name", c.Name, "--image", c.Image, "--pull", c.Pull}
	if detach {
		args = append(args, "-d")
	}
	for _, e := range c.Env {
		args = append(args, "-e", e)
	}
	if c.WorkingDir != "" {
		args = append(args, "-w", c.WorkingDir)
	}
	if c.User != "" {
		args = append(args, "-u", c.User)
	}
	for _, m := range c.Mounts {
		src := dirs[m.Volume]
		if m.SubPath != "" {
			src += "/" + m.SubPath
		}
		fields := []string{"type=bind", "source=" + src, "target=" + m.Target}
		if m.ReadOnly {
			fields = append(fields, "readonly")
		}
		args = append(args, "--mount", csvLine(fields))
	}
	if c.Memory > 0 {
		args = append(args, "--memory", fmt.Sprint(c.Memory))
	}
	if c.CPUs != "" {
		args = append(args, "--cpus", c.CPUs)
	}
	if c.ReadOnly {
		args = append(args, "--read-only")
	}
	for _, v := range c.CapDrop {
		args = append(args, "--cap-drop", v)
	}
	for _, v := range c.CapAdd {
		args = append(args, "--cap-add", v)
	}
	if c.Privileged {
		args = append(args, "--privileged")
	}
	if c.Seccomp != "" {
		args = append(args, "--security-opt", "seccomp="+c.Seccomp)
	}
	if c.Restart != "" && c.Restart != "no" {
		args = append(args, "--restart", c.Restart)
	}
	// Kubernetes' command is the whole of Entrypoint; podbox's
	// --entrypoint takes the executable and drops the image's Cmd, and the
	// rest follows as the Cmd: the same process.
	var argv []string
	if c.Command != nil {
		ep := ""
		if len(c.Command) > 0 {
			ep, argv = c.Command[0], c.Command[1:]
		}
		args = append(args, "--entrypoint", ep)
	}
	argv = append(argv, c.Args...)
	if len(argv) > 0 {
		args = append(append(args, "--"), argv...)
	}
	return args
}

// csvLine is fields as one line of CSV, the form --mount takes: a field
// with a comma or a quote is quoted, so that a path from a manifest
// ("/data,source=/") stays one field and cannot add options of its own.
func csvLine(fields []string) string {
	var b strings.Builder
	w := csv.NewWriter(&b)
	w.Write(fields)
	w.Flush()
	return strings.TrimSuffix(b.String(), "\n")
}

// Redacted is a copy of p without the values of its secrets: what a dry run
// shows.
func (p *Plan) Redacted() *Plan {
	out := &Plan{Pods: make([]Pod, len(p.Pods))}
	for i, pod := range p.Pods {
		pod.Volumes = append([]Volume(nil), pod.Volumes...)
		for j, v := range pod.Volumes {
			if v.Kind == Secret {
				files := make([]File, len(v.Files))
				for k, f := range v.Files {
					f.Data = []byte(Hidden)
					files[k] = f
				}
				pod.Volumes[j].Files = files
			}
		}
		pod.InitContainers = redactEnv(pod.InitContainers)
		pod.Containers = redactEnv(pod.Containers)
		out.Pods[i] = pod
	}
	return out
}

// Hidden stands for a secret's value in a redacted plan.
const Hidden = "<hidden>"

func redactEnv(cs []Container) []Container {
	out := make([]Container, len(cs))
	for i, c := range cs {
		c.Env = append([]string(nil), c.Env...)
		for j, kv := range c.Env {
			k, _, _ := strings.Cut(kv, "=")
			for _, s := range c.SecretEnv {
				if s == k {
					c.Env[j] = k + "=" + Hidden
				}
			}
		}
		out[i] = c
	}
	return out
}

// The shell variables of Write's output, the sandbox's ID and podbox's
// state root, as Write passes them to RunArgs: marked with a byte that no
// string of a decoded plan holds (JSON and YAML decode to valid UTF-8, of
// which 0xff is never part), so that shellQuote expands these and nothing
// a manifest says.
const (
	sandboxVar = "\xffSANDBOX\xff"
	rootVar    = "\xffROOT\xff"
)

// Write prints p as the podbox commands it stands for, one per line and
// quoted for a POSIX shell, with SANDBOX for the sandbox's ID and the
// volumes' node directories as $ROOT/sandboxes/SANDBOX/volumes/NAME.
// Secrets' contents are not shown. Comment lines show a manifest's text
// with its control characters escaped, so that none can end the comment.
func (p *Plan) Write(w io.Writer) error {
	p = p.Redacted()
	var b strings.Builder
	for i := range p.Pods {
		pod := &p.Pods[i]
		fmt.Fprintf(&b, "# pod %s\n", oneLine(pod.Namespace+"/"+pod.Name))
		fmt.Fprintf(&b, "SANDBOX=$(%s)\n", shellJoin(append([]string{"podbox"}, pod.CreateArgs()...)))
		dirs := map[string]string{}
		for _, v := range pod.Volumes {
			dirs[v.Name] = v.Path
			if v.Kind != HostPath {
				dirs[v.Name] = rootVar + "/sandboxes/" + sandboxVar + "/volumes/" + v.Name
			}
			fmt.Fprintf(&b, "# volume %s\n", oneLine(v.Name+": "+v.describe()))
		}
		for _, c := range pod.InitContainers {
			fmt.Fprintf(&b, "%s\n", shellJoin(append([]string{"podbox"}, c.RunArgs(sandboxVar, dirs, false)...)))
		}
		for _, c := range pod.Containers {
			fmt.Fprintf(&b, "%s\n", shellJoin(append([]string{"podbox"}, c.RunArgs(sandboxVar, dirs, true)...)))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// oneLine is s with its control characters escaped as Go escapes them in a
// quoted string.
func oneLine(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

func (v *Volume) describe() string {
	switch v.Kind {
	case EmptyDir:
		if v.Memory {
			return fmt.Sprintf("emptyDir on tmpfs (size %s)", size(v.SizeLimit))
		}
		return "emptyDir"
	case HostPath:
		if v.Create != "" {
			return fmt.Sprintf("hostPath %s (a %s, made if missing)", v.Path, v.Create)
		}
		return "hostPath " + v.Path
	}
	keys := make([]string, len(v.Files))
	for i, f := range v.Files {
		keys[i] = fmt.Sprintf("%s (%d bytes, mode %04o)", f.Path, len(f.Data), f.Mode)
		if v.Kind == Secret {
			keys[i] = fmt.Sprintf("%s (mode %04o)", f.Path, f.Mode)
		}
	}
	return v.Kind + " with " + strings.Join(keys, ", ")
}

func size(n int64) string {
	if n == 0 {
		return "the kernel's default"
	}
	return fmt.Sprintf("%d bytes", n)
}

// shellJoin quotes args for a POSIX shell, leaving the plan's own variables
// (sandboxVar, rootVar) expandable.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = shellQuote(a)
	}
	return strings.Join(out, " ")
}

// shellQuote is s as one word of a POSIX shell: as it is when it needs no
// quotes, else in single quotes, in which nothing is special. The plan's
// variables in s become $SANDBOX and $ROOT, which the shell expands: in
// double quotes when the rest of s is plain characters, else as "${VAR}"
// between single-quoted pieces, so that nothing a manifest wrote is ever
// inside double quotes (where $, ` and an interactive bash's ! act).
func shellQuote(s string) string {
	if s != "" && plain(s) {
		return s
	}
	lits := strings.NewReplacer(sandboxVar, "", rootVar, "").Replace(s)
	if lits == s {
		return singleQuote(s)
	}
	dq := plain(lits)
	var b strings.Builder
	if dq {
		b.WriteByte('"')
	}
	for s != "" {
		i, name, n := nextVar(s)
		switch {
		case dq:
			b.WriteString(s[:i])
		case i > 0:
			b.WriteString(singleQuote(s[:i]))
		}
		s = s[i+n:]
		switch {
		case name == "":
		case !dq:
			b.WriteString(`"${` + name + `}"`)
		case s != "" && isNameByte(s[0]):
			b.WriteString("${" + name + "}")
		default:
			b.WriteString("$" + name)
		}
	}
	if dq {
		b.WriteByte('"')
	}
	return b.String()
}

func singleQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// nextVar finds the first of the plan's variables in s: its index, its
// shell name and its length; len(s), "" and 0 when s holds none.
func nextVar(s string) (i int, name string, n int) {
	i = len(s)
	for _, v := range [...]struct{ mark, name string }{{sandboxVar, "SANDBOX"}, {rootVar, "ROOT"}} {
		if j := strings.Index(s, v.mark); j >= 0 && j < i {
			i, name, n = j, v.name, len(v.mark)
		}
	}
	return i, name, n
}

// plain reports whether s holds only characters that are not special to a
// shell.
func plain(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,@%+", r))
	}) < 0
}

// isNameByte reports whether c continues a shell variable's name.
func isNameByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
