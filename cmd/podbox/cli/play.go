package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/kube/plan"
	"github.com/podbox/podbox/sandbox"
)

// KubeBinary turns manifests into plans: the Kubernetes API types live
// there, out of podbox's own start.
const KubeBinary = "podbox-kube"

type playOptions struct {
	down, replace, dryRun bool
	output                string
}

func (a *App) playCommand(g *globals) *cobra.Command {
	var o playOptions
	cmd := &cobra.Command{
		Use:   "play FILE|- [flags]",
		Short: "Run the pods of Kubernetes manifests (v1 Pod, apps/v1 Deployment, ConfigMap, Secret)",
		Long: `Run Kubernetes Pod manifests on this node, as podman kube play does: one
sandbox per pod, named after metadata.name, with the pod's volumes, its init
containers run to completion in order, then its containers, each with the
podbox options its fields stand for (play --dry-run shows them as commands).

Volumes: emptyDir (shared by the pod's containers; medium: Memory is a tmpfs,
with sizeLimit), hostPath (with its type checks; DirectoryOrCreate and
FileOrCreate make it), configMap and secret from the same file (secrets on a
tmpfs). They live in the sandbox's state directory and go with it.

A field podbox does not carry out is refused, naming it (a pod without its
probe or its limit would be worse than none); so are unknown fields. If one
container fails to start, the whole pod is removed; if an init container
fails, the pod is stopped and kept for its logs.

--down removes the pods of the file; --replace removes and recreates pods of
the file that exist. A Deployment runs spec.replicas pods, NAME-0, NAME-1, …`,
		Example: `  podbox play pod.yaml
  podbox play --dry-run pod.yaml
  kubectl create deployment web --image=nginx --dry-run=client -o yaml | podbox play -
  podbox play --down pod.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.play(cmd.Context(), g, args[0], o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.down, "down", false, "remove the pods of the file instead")
	f.BoolVar(&o.replace, "replace", false, "remove a pod of the file that exists and create it again")
	f.BoolVar(&o.dryRun, "dry-run", false, "print what would be created, as podbox commands (or -o json: the plan), and create nothing")
	f.StringVarP(&o.output, "output", "o", "text", "output: text, or json (the plan with --dry-run, else the pods made)")
	return cmd
}

// playedPod is what `play -o json` reports of a pod it made.
type playedPod struct {
	Name       string   `json:"name"`
	Sandbox    string   `json:"sandbox"`
	Containers []string `json:"containers"`
}

func (a *App) play(ctx context.Context, g *globals, file string, o playOptions) error {
	if o.output != "text" && o.output != "json" {
		return fmt.Errorf("-o %q: want text or json", o.output)
	}
	if o.down && (o.replace || o.dryRun) {
		return errors.New("--down takes neither --replace nor --dry-run")
	}
	p, err := a.playPlan(ctx, file)
	if err != nil {
		return err
	}
	switch {
	case o.dryRun && o.output == "json":
		return writeJSON(a.Stdout, p.Redacted())
	case o.dryRun:
		return p.Write(a.Stdout)
	case o.down:
		return a.playDown(ctx, g, p)
	}
	// Every pod's name is checked before anything is made, so that a file
	// with a pod in the way changes nothing.
	st := g.store()
	for i := range p.Pods {
		pod := &p.Pods[i]
		sb, err := st.ResolveSandbox(pod.Name)
		if err != nil || sb.Name != pod.Name {
			continue
		}
		if !o.replace {
			return fmt.Errorf("pod %q: sandbox %s has its name (use --replace, or play --down first)", pod.Name, shortID(sb.ID))
		}
		if sb.Labels[plan.LabelPod] != pod.Name {
			return fmt.Errorf("pod %q: sandbox %s has its name but was not made by podbox play: not replacing it", pod.Name, shortID(sb.ID))
		}
	}
	var made []playedPod
	for i := range p.Pods {
		pod := &p.Pods[i]
		if o.replace {
			if sb, err := st.ResolveSandbox(pod.Name); err == nil && sb.Name == pod.Name {
				if _, err := a.sub(ctx, g, "sandbox", "rm", "-f", sb.ID); err != nil {
					return fmt.Errorf("pod %q: replace: %w", pod.Name, err)
				}
			}
		}
		pp, err := a.playPod(ctx, g, pod)
		if err != nil {
			return err
		}
		made = append(made, pp)
	}
	if o.output == "json" {
		return writeJSON(a.Stdout, made)
	}
	for _, pp := range made {
		fmt.Fprintf(a.Stdout, "pod %s: sandbox %s, containers %s\n", pp.Name, shortID(pp.Sandbox), strings.Join(pp.Containers, ", "))
	}
	return nil
}

// playPlan runs podbox-kube on the manifests of file ("-": stdin).
func (a *App) playPlan(ctx context.Context, file string) (*plan.Plan, error) {
	var in []byte
	var err error
	if file == "-" {
		in, err = io.ReadAll(a.Stdin)
	} else {
		in, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, fmt.Errorf("read manifests: %w", err)
	}
	bin, err := a.companion(KubeBinary, "PODBOX_KUBE_BIN", "set PODBOX_KUBE_BIN")
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", KubeBinary, err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			// One problem per line: joined so that the error stays one
			// line, as every podbox error.
			return nil, fmt.Errorf("%s: %s", file, strings.Join(strings.Split(msg, "\n"), "; "))
		}
		return nil, fmt.Errorf("%s: %w", bin, err)
	}
	var p plan.Plan
	if err := json.Unmarshal(stdout.Bytes(), &p); err != nil {
		return nil, fmt.Errorf("%s answered %q: %w", bin, stdout.String(), err)
	}
	return &p, nil
}

// sub runs one podbox command line in this process, as a user would type it
// with this invocation's global flags, and returns its output; its error
// is the command's one-line message.
func (a *App) sub(ctx context.Context, g *globals, args ...string) (string, error) {
	global := []string{"--root", g.root, "--log-level", g.logLevel}
	if g.imageRoot != "" {
		global = append(global, "--image-root", g.imageRoot)
	}
	if g.runtime != "" {
		global = append(global, "--runtime", g.runtime)
	}
	var out, errb bytes.Buffer
	s := *a
	s.Stdin, s.Stdout, s.Stderr = strings.NewReader(""), &out, &errb
	code := s.Run(ctx, append(global, args...))
	// podbox's own error is its "podbox: " line; the rest of stderr (a
	// pull's progress) is the user's to see.
	var msg string
	for line := range strings.SplitSeq(strings.TrimSpace(errb.String()), "\n") {
		if m, ok := strings.CutPrefix(line, "podbox: "); ok {
			msg = m
		} else if line != "" {
			fmt.Fprintln(a.Stderr, line)
		}
	}
	switch {
	case code == 0:
		return out.String(), nil
	case msg == "":
		// podbox run says nothing of its container's exit status: it
		// exits with it.
		return out.String(), &subError{code: code, msg: fmt.Sprintf("exit status %d", code), exited: true}
	}
	return out.String(), &subError{code: code, msg: msg}
}

type subError struct {
	code int
	msg  string
	// exited: the command ran a container in the foreground and code is
	// its exit status.
	exited bool
}

func (e *subError) Error() string { return e.msg }

// playPod makes one pod: its sandbox, volumes, init containers (to
// completion) and containers. A failure before the containers run removes
// the pod whole; a failing init container stops it, kept for its logs.
func (a *App) playPod(ctx context.Context, g *globals, pod *plan.Pod) (_ playedPod, retErr error) {
	out, err := a.sub(ctx, g, pod.CreateArgs()...)
	if err != nil {
		return playedPod{}, fmt.Errorf("pod %q: %w", pod.Name, err)
	}
	id := strings.TrimSpace(out)
	keep := false
	defer func() {
		if retErr == nil || keep {
			return
		}
		if _, err := a.sub(context.WithoutCancel(ctx), g, "sandbox", "rm", "-f", id); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("remove the half-made pod: %w", err))
		}
	}()
	dirs, err := makeVolumes(g.store().SandboxDir(id), pod)
	if err != nil {
		return playedPod{}, fmt.Errorf("pod %q: %w", pod.Name, err)
	}
	pp := playedPod{Name: pod.Name, Sandbox: id, Containers: []string{}}
	for _, c := range pod.InitContainers {
		if err := makeSubPaths(c, dirs, pod); err != nil {
			return pp, fmt.Errorf("pod %q: init container %q: %w", pod.Name, c.Name, err)
		}
		out, err := a.sub(ctx, g, c.RunArgs(id, dirs, false)...)
		var se *subError
		if errors.As(err, &se) && se.exited {
			// It ran and failed: the pod stops, and stays for its
			// logs, as a pod in Init:Error does.
			keep = true
			_, _ = a.sub(context.WithoutCancel(ctx), g, "sandbox", "stop", "--timeout", "0", id)
			return pp, fmt.Errorf("pod %q: init container %q exited with code %d (the pod is stopped; podbox logs %s; play --down removes it)%s",
				pod.Name, c.Name, se.code, c.Name, lastLine(out))
		}
		if err != nil {
			return pp, fmt.Errorf("pod %q: init container %q: %w", pod.Name, c.Name, err)
		}
	}
	// The containers start together, as nothing orders them once the
	// init containers are done: each start is mostly its own process and
	// runc's, so a pod of several is ready in little more than the time
	// of one.
	errs := make([]error, len(pod.Containers))
	var wg sync.WaitGroup
	for i, c := range pod.Containers {
		if err := makeSubPaths(c, dirs, pod); err != nil {
			return pp, fmt.Errorf("pod %q: container %q: %w", pod.Name, c.Name, err)
		}
		wg.Go(func() {
			if _, err := a.sub(ctx, g, c.RunArgs(id, dirs, true)...); err != nil {
				errs[i] = fmt.Errorf("pod %q: container %q: %w", pod.Name, c.Name, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return pp, err
	}
	for _, c := range pod.Containers {
		pp.Containers = append(pp.Containers, c.Name)
	}
	return pp, nil
}

func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if l := lines[len(lines)-1]; l != "" {
		return ": " + l
	}
	return ""
}

// playDown removes the pods of p that play made.
func (a *App) playDown(ctx context.Context, g *globals, p *plan.Plan) error {
	st := g.store()
	var errs []error
	for _, pod := range p.Pods {
		sb, err := st.ResolveSandbox(pod.Name)
		if err != nil || sb.Name != pod.Name {
			fmt.Fprintf(a.Stdout, "pod %s: not here\n", pod.Name)
			continue
		}
		if sb.Labels[plan.LabelPod] != pod.Name {
			errs = append(errs, fmt.Errorf("pod %q: sandbox %s has its name but was not made by podbox play: not removing it", pod.Name, shortID(sb.ID)))
			continue
		}
		if _, err := a.sub(ctx, g, "sandbox", "rm", "-f", sb.ID); err != nil {
			errs = append(errs, fmt.Errorf("pod %q: %w", pod.Name, err))
			continue
		}
		fmt.Fprintf(a.Stdout, "pod %s: removed\n", pod.Name)
	}
	return errors.Join(errs...)
}

// makeVolumes makes the pod's volumes and returns their directories on the
// node by name: emptyDirs, configMaps and secrets under the sandbox's state
// directory (sandbox.Store.VolumesDir), which goes with the sandbox.
func makeVolumes(sbDir string, pod *plan.Pod) (map[string]string, error) {
	dirs := map[string]string{}
	for _, v := range pod.Volumes {
		if v.Kind == plan.HostPath {
			dirs[v.Name] = v.Path
			if err := makeHostPath(v); err != nil {
				return nil, fmt.Errorf("volume %q: %w", v.Name, err)
			}
			continue
		}
		dir := filepath.Join(sbDir, sandbox.VolumesDir, v.Name)
		dirs[v.Name] = dir
		// An emptyDir is world-writable, as Kubernetes makes it, so that a
		// container of any user can use it.
		mode := os.FileMode(0o777)
		if v.Kind != plan.EmptyDir {
			mode = 0o755
		}
		// The volume is the pod's; the directory of volumes is root's.
		if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
			return nil, fmt.Errorf("volume %q: %w", v.Name, err)
		}
		if err := os.Mkdir(dir, mode); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("volume %q: %w", v.Name, err)
		}
		if v.Memory {
			opts := fmt.Sprintf("mode=%o", mode)
			if v.SizeLimit > 0 {
				opts += fmt.Sprintf(",size=%d", v.SizeLimit)
			}
			if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
				return nil, fmt.Errorf("volume %q: mount tmpfs on %s: %w", v.Name, dir, err)
			}
		}
		if err := os.Chmod(dir, mode); err != nil {
			return nil, fmt.Errorf("volume %q: %w", v.Name, err)
		}
		for _, f := range v.Files {
			p := filepath.Join(dir, f.Path)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return nil, fmt.Errorf("volume %q: %w", v.Name, err)
			}
			if err := os.WriteFile(p, f.Data, os.FileMode(f.Mode)); err != nil {
				return nil, fmt.Errorf("volume %q: %w", v.Name, err)
			}
			if err := os.Chmod(p, os.FileMode(f.Mode)); err != nil { // past the umask
				return nil, fmt.Errorf("volume %q: %w", v.Name, err)
			}
		}
	}
	return dirs, nil
}

func makeHostPath(v plan.Volume) error {
	switch v.Create {
	case "directory":
		return os.MkdirAll(v.Path, 0o755)
	case "file":
		f, err := os.OpenFile(v.Path, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		return f.Close()
	}
	return nil
}

// makeSubPaths makes the subPath directories c mounts from the pod's own
// volumes, as the kubelet does; a hostPath's must exist.
func makeSubPaths(c plan.Container, dirs map[string]string, pod *plan.Pod) error {
	for _, m := range c.Mounts {
		if m.SubPath == "" {
			continue
		}
		p := filepath.Join(dirs[m.Volume], m.SubPath)
		if isHostPath(pod, m.Volume) {
			if _, err := os.Stat(p); err != nil {
				return fmt.Errorf("subPath %q of volume %q: %w", m.SubPath, m.Volume, err)
			}
			continue
		}
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(p, 0o777); err != nil {
				return fmt.Errorf("subPath %q of volume %q: %w", m.SubPath, m.Volume, err)
			}
		}
	}
	return nil
}

func isHostPath(pod *plan.Pod, name string) bool {
	for _, v := range pod.Volumes {
		if v.Name == name {
			return v.Kind == plan.HostPath
		}
	}
	return false
}
