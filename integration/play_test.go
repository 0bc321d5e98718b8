package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/podbox/podbox/integration/testnode"
)

// busyboxImage is busybox as an image with PATH set, as the images of a
// registry have it.
func busyboxImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, busyboxLayer(t))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Env = []string{"PATH=/bin"}
	cf.Config.Cmd = []string{"sh"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// playNode is a CLI node with busybox in a registry on its loopback, and a
// manifest writer.
type playNode struct {
	*cliNode
	image string
	dir   string
}

func newPlayNode(t *testing.T) *playNode {
	t.Helper()
	n := newCLINode(t)
	n.env = append(n.env, "PODBOX_KUBE_BIN="+testnode.Binary(t, "podbox-kube"))
	reg := newTestRegistry(t, n)
	p := &playNode{cliNode: n, image: reg.push(t, "lib/busybox:1", busyboxImage(t)), dir: t.TempDir()}
	// Pulled beforehand, so that play's stderr holds only its error; the
	// image goes before the leak check looks.
	n.mustRun("image", "pull", p.image)
	t.Cleanup(func() { n.run("image", "prune", "-a") })
	return p
}

func (p *playNode) manifest(name, yaml string) string {
	p.t.Helper()
	f := filepath.Join(p.dir, name)
	if err := os.WriteFile(f, []byte(strings.ReplaceAll(yaml, "IMAGE", p.image)), 0o644); err != nil {
		p.t.Fatal(err)
	}
	return f
}

const webPod = `apiVersion: v1
kind: Secret
metadata: {name: db}
stringData: {password: s3cret}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  greeting: "hello from a configmap\n"
---
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  securityContext:
    seccompProfile: {type: Unconfined}
  volumes:
  - name: content
    emptyDir: {}
  - name: config
    configMap: {name: web-config}
  - name: db
    secret: {secretName: db, defaultMode: 0440}
  - name: scratch
    emptyDir: {medium: Memory, sizeLimit: 1Mi}
  initContainers:
  - name: setup
    image: IMAGE
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo $(MSG) > /content/index.html"]
    env: [{name: MSG, value: hello-from-init}]
    volumeMounts: [{name: content, mountPath: /content}]
  containers:
  - name: server
    image: IMAGE
    imagePullPolicy: IfNotPresent
    args: ["httpd", "-f", "-p", "80", "-h", "/www"]
    ports: [{containerPort: 80, hostPort: 8080}]
    volumeMounts: [{name: content, mountPath: /www, readOnly: true}]
  - name: client
    image: IMAGE
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    securityContext:
      readOnlyRootFilesystem: true
      seccompProfile: {type: RuntimeDefault}
    volumeMounts:
    - {name: config, mountPath: /etc/app}
    - {name: db, mountPath: /etc/db, readOnly: true}
    - {name: scratch, mountPath: /scratch}
`

// The pod: an init container writes into an emptyDir that the
// server serves on the pod's localhost and through its hostPort; a
// read-only root filesystem; a configMap; seccomp profiles; --replace;
// --down leaves nothing.
func TestPlayPod(t *testing.T) {
	p := newPlayNode(t)
	f := p.manifest("web.yaml", webPod)
	out := p.mustRun("play", f)
	if !strings.Contains(out, "pod web: sandbox ") || !strings.Contains(out, "web-server, web-client") {
		t.Fatalf("play printed %q", out)
	}
	exec := func(args ...string) (int, string) {
		code, out, _ := p.run(append([]string{"exec", "web-client", "--"}, args...)...)
		return code, out
	}
	var body string
	waitFor(t, func() bool {
		_, body = exec("wget", "-q", "-O", "-", "http://localhost/")
		return body == "hello-from-init\n"
	})
	if got, err := fetch(t, p.node, "http://127.0.0.1:8080/"); err != nil || got != "hello-from-init" {
		t.Errorf("the hostPort from the node: %q, %v", got, err)
	}
	// The pod's seccompProfile (Unconfined) for the server, the client's
	// own (RuntimeDefault: podbox's default profile, a filter).
	for ctr, want := range map[string]string{"web-server": "Seccomp:\t0", "web-client": "Seccomp:\t2"} {
		if _, out, _ := p.run("exec", ctr, "--", "grep", "^Seccomp:", "/proc/1/status"); strings.TrimSpace(out) != want {
			t.Errorf("%s: %q, want %q", ctr, strings.TrimSpace(out), want)
		}
	}
	if code, _ := exec("touch", "/written"); code == 0 {
		t.Error("readOnlyRootFilesystem: the client wrote to its root")
	}
	if _, got := exec("cat", "/etc/app/greeting"); got != "hello from a configmap\n" {
		t.Errorf("configMap file: %q", got)
	}
	if _, got := exec("stat", "-c", "%a %s", "/etc/db/password"); got != "440 6\n" {
		t.Errorf("secret file mode and size: %q, want 440 6", got)
	}
	// The memory emptyDir is a tmpfs of its sizeLimit: 2 MiB do not fit.
	if code, _ := exec("sh", "-c", "dd if=/dev/zero of=/scratch/big bs=1k count=2048"); code == 0 {
		t.Error("2 MiB fit into an emptyDir of sizeLimit 1Mi")
	}
	rec := p.inspect("web")
	if labels, _ := rec["labels"].(map[string]any); labels["io.kubernetes.pod.namespace"] != "default" {
		t.Errorf("sandbox labels: %v", rec["labels"])
	}

	// Again: refused while the pod runs, replaced with --replace.
	code, _, stderr := p.run("play", f)
	assertOneLineError(t, code, stderr, `pod "web"`, "--replace")
	p.mustRun("play", "--replace", f)
	if id := p.inspect("web")["id"]; id == rec["id"] {
		t.Error("--replace kept the old sandbox")
	}

	if out := p.mustRun("play", "--down", f); out != "pod web: removed\n" {
		t.Errorf("play --down printed %q", out)
	}
	if out := p.mustRun("sandbox", "ls", "-q"); out != "" {
		t.Errorf("sandboxes after --down: %s", out)
	}
}

// A dry run creates nothing and shows the commands.
func TestPlayDryRun(t *testing.T) {
	p := newPlayNode(t)
	f := p.manifest("web.yaml", webPod)
	out := p.mustRun("play", "--dry-run", f)
	for _, want := range []string{"podbox sandbox create --name web", "-p 8080:80/tcp", "--name web-setup", "--read-only"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	var plan struct{ Pods []struct{ Name string } }
	if err := json.Unmarshal([]byte(p.mustRun("play", "--dry-run", "-o", "json", f)), &plan); err != nil || len(plan.Pods) != 1 {
		t.Errorf("dry run -o json: %+v, %v", plan, err)
	}
	if out := p.mustRun("sandbox", "ls", "-q"); out != "" {
		t.Errorf("a dry run made sandboxes: %s", out)
	}
}

// A failing init container stops the pod, kept for its logs; bad manifests
// and a container that cannot start leave nothing.
func TestPlayFailures(t *testing.T) {
	p := newPlayNode(t)
	initFails := p.manifest("init.yaml", `apiVersion: v1
kind: Pod
metadata: {name: broken}
spec:
  initContainers:
  - {name: check, image: IMAGE, imagePullPolicy: IfNotPresent, command: ["sh", "-c", "echo no database; exit 3"]}
  containers:
  - {name: app, image: IMAGE, imagePullPolicy: IfNotPresent, command: ["sleep", "3600"]}
`)
	code, _, stderr := p.run("play", initFails)
	assertOneLineError(t, code, stderr, `pod "broken": init container "broken-check" exited with code 3`, "no database")
	if st := p.inspect("broken")["state"]; st != "stopped" {
		t.Errorf("pod after a failed init container: %v, want stopped", st)
	}
	p.mustRun("play", "--down", initFails)

	secondFails := p.manifest("second.yaml", `apiVersion: v1
kind: Pod
metadata: {name: half}
spec:
  containers:
  - {name: ok, image: IMAGE, imagePullPolicy: IfNotPresent, command: ["sleep", "3600"]}
  - {name: missing, image: nowhere.invalid/none:1, imagePullPolicy: Never}
`)
	code, _, stderr = p.run("play", secondFails)
	assertOneLineError(t, code, stderr, `pod "half": container "half-missing"`, "nowhere.invalid/none:1")
	if out := p.mustRun("sandbox", "ls", "-q"); out != "" {
		t.Errorf("a pod whose second container failed is still here: %s", out)
	}

	for name, tc := range map[string]struct{ yaml, want string }{
		"unknown kind":   {"apiVersion: v1\nkind: Service\nmetadata: {name: s}\n", "kind Service is not supported"},
		"unknown field":  {"apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers: [{name: a, image: IMAGE, tty2: true}]\n", `unknown field "spec.containers[0].tty2"`},
		"probe":          {"apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n  - name: a\n    image: IMAGE\n    readinessProbe: {tcpSocket: {port: 80}}\n", "spec.containers[0].readinessProbe: not supported"},
		"hostPath":       {"apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  volumes: [{name: h, hostPath: {path: /no/such, type: Directory}}]\n  containers: [{name: a, image: IMAGE}]\n", "/no/such does not exist"},
		"not a manifest": {"- just\n- a list\n", "not a manifest"},
	} {
		code, _, stderr := p.run("play", p.manifest(name+".yaml", tc.yaml))
		assertOneLineError(t, code, stderr, tc.want)
	}
	if out := p.mustRun("sandbox", "ls", "-q"); out != "" {
		t.Errorf("bad manifests made sandboxes: %s", out)
	}
}

// A memory limit from the manifest is enforced: the container allocating
// past it is OOM-killed and, under restartPolicy: OnFailure, restarted,
// with the count and the reason visible; the pod's cgroup has the limit.
func TestPlayMemoryLimitRestart(t *testing.T) {
	p := newPlayNode(t)
	p.withBackoff("200ms,1s")
	f := p.manifest("hog.yaml", `apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  restartPolicy: OnFailure
  volumes: [{name: runs, emptyDir: {}}]
  containers:
  - name: eater
    image: IMAGE
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo run >> /runs/count; dd if=/dev/zero of=/dev/null bs=48M count=1"]
    resources: {limits: {memory: 16Mi, cpu: 500m}}
    volumeMounts: [{name: runs, mountPath: /runs}]
`)
	p.mustRun("play", f)
	c := p.waitContainer("hog-eater", "restarted after an OOM kill", 30*time.Second, func(c inspectedContainer) bool {
		return c.RestartCount >= 1 && c.Exit != nil
	})
	if c.Exit.Status != 137 || c.Exit.Reason != "OOMKilled" || c.RestartPolicy != "on-failure" {
		t.Errorf("the container over its limit: exit %+v, policy %q; want 137 OOMKilled under on-failure", c.Exit, c.RestartPolicy)
	}
	// Each run wrote into the pod's emptyDir, which outlives the runs.
	id := p.inspect("hog")["id"].(string)
	if b, err := os.ReadFile(filepath.Join(p.root, "sandboxes", id, "volumes", "runs", "count")); err != nil || strings.Count(string(b), "run\n") < 2 {
		t.Errorf("the emptyDir's count of runs: %q, %v; want two or more", b, err)
	}
	if res, _ := p.inspect("hog")["resources"].(map[string]any); res["memory"] != float64(16<<20) {
		t.Errorf("the pod's cgroup limits: %v, want the container's 16Mi", p.inspect("hog")["resources"])
	}
	p.mustRun("play", "--down", f)
}
