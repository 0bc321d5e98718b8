package kube

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/podbox/podbox/kube/plan"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// The dry run of a file with every supported field, against its golden
// output: what `podbox play --dry-run` prints.
func TestPlanGolden(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "pod.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := Plan(f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "pod.golden")
	if *update {
		os.WriteFile(golden, buf.Bytes(), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if buf.String() != string(want) {
		t.Errorf("dry run differs from %s (go test -update rewrites it):\n%s", golden, buf.String())
	}
}

const podHead = `apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
`

func planOf(t *testing.T, yaml string) (*plan.Plan, error) {
	t.Helper()
	return Plan(strings.NewReader(yaml), Options{})
}

// Bad input: each is refused with a message naming the document and the
// field or value.
func TestPlanRefuses(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"not yaml", "{{{", "document 1: not a manifest"},
		{"empty", "# nothing\n---\n", "no manifests"},
		{"unknown kind", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n", "document 1 (Service x): kind Service is not supported"},
		{"wrong apiVersion", "apiVersion: apps/v1\nkind: Pod\nmetadata: {name: x}\n", `apiVersion "apps/v1": want v1`},
		{"unknown field", podHead + "  containers:\n  - name: a\n    image: busybox\n    imagePolicy: Never\n", `unknown field "spec.containers[0].imagePolicy"`},
		{"duplicate container", podHead + "  containers:\n  - {name: a, image: busybox}\n  - {name: a, image: busybox}\n", `spec.containers[1].name: "a": two containers`},
		{"init and app share a name", podHead + "  initContainers:\n  - {name: a, image: busybox}\n  containers:\n  - {name: a, image: busybox}\n", `spec.containers[0].name: "a": two containers`},
		{"mount of no volume", podHead + "  containers:\n  - name: a\n    image: busybox\n    volumeMounts: [{name: data, mountPath: /data}]\n", `spec.containers[0].volumeMounts[0].name: "data" names no volume`},
		{"hostPath Directory missing", podHead + "  volumes: [{name: h, hostPath: {path: /no/such/dir, type: Directory}}]\n  containers: [{name: a, image: busybox}]\n", "spec.volumes[0].hostPath.path: /no/such/dir does not exist (type Directory)"},
		{"hostPath File is a dir", podHead + "  volumes: [{name: h, hostPath: {path: /tmp, type: File}}]\n  containers: [{name: a, image: busybox}]\n", "/tmp is not a file"},
		{"memory below 6Mi", podHead + "  containers:\n  - name: a\n    image: busybox\n    resources: {limits: {memory: 4Mi}}\n", "spec.containers[0].resources.limits.memory: 4Mi is below the minimum of 6Mi"},
		{"malformed quantity", podHead + "  containers:\n  - name: a\n    image: busybox\n    resources: {limits: {memory: 12q}}\n", `spec.containers[0].resources.limits.memory: "12q" is not a quantity`},
		{"request over limit", podHead + "  containers:\n  - name: a\n    image: busybox\n    resources: {limits: {cpu: 100m}, requests: {cpu: 200m}}\n", "requests.cpu: 200m is more than the limit 100m"},
		{"probe", podHead + "  containers:\n  - name: a\n    image: busybox\n    livenessProbe: {exec: {command: [\"true\"]}}\n", "spec.containers[0].livenessProbe: not supported"},
		{"privileged without escalation", podHead + "  containers:\n  - name: a\n    image: busybox\n    securityContext: {privileged: true, allowPrivilegeEscalation: false}\n", "securityContext.allowPrivilegeEscalation: false contradicts privileged: true"},
		{"escalation unprivileged", podHead + "  containers:\n  - name: a\n    image: busybox\n    securityContext: {allowPrivilegeEscalation: true}\n", "allowPrivilegeEscalation: true is not supported without privileged"},
		{"seccomp profile missing", podHead + "  containers:\n  - name: a\n    image: busybox\n    securityContext: {seccompProfile: {type: Localhost, localhostProfile: no/such.json}}\n", "spec.containers[0].securityContext.seccompProfile.localhostProfile: /var/lib/kubelet/seccomp/no/such.json is not a profile file on this node"},
		{"seccomp Localhost alone", podHead + "  securityContext: {seccompProfile: {type: Localhost}}\n  containers: [{name: a, image: busybox}]\n", "spec.securityContext.seccompProfile.localhostProfile: required for type Localhost"},
		{"seccomp profile escapes", podHead + "  containers:\n  - name: a\n    image: busybox\n    securityContext: {seccompProfile: {type: Localhost, localhostProfile: ../../etc/x.json}}\n", `localhostProfile: "../../etc/x.json": want a path below /var/lib/kubelet/seccomp`},
		{"seccomp profile for default", podHead + "  containers:\n  - name: a\n    image: busybox\n    securityContext: {seccompProfile: {type: RuntimeDefault, localhostProfile: x.json}}\n", "localhostProfile: only for type Localhost"},
		{"seccomp type", podHead + "  containers:\n  - name: a\n    image: busybox\n    securityContext: {seccompProfile: {type: Strict}}\n", `seccompProfile.type: "Strict": want RuntimeDefault, Unconfined or Localhost`},
		{"host network", podHead + "  hostNetwork: true\n  containers: [{name: a, image: busybox}]\n", "spec.hostNetwork: not supported"},
		{"missing configMap", podHead + "  volumes: [{name: c, configMap: {name: nope}}]\n  containers: [{name: a, image: busybox}]\n", `spec.volumes[0].configMap.name: no ConfigMap "nope"`},
		{"no image", podHead + "  containers: [{name: a}]\n", "spec.containers[0].image: is missing"},
		{"no containers", podHead + "  restartPolicy: Never\n", "a pod needs at least one container"},
		{"bad pod name", "apiVersion: v1\nkind: Pod\nmetadata: {name: Web_1}\nspec:\n  containers: [{name: a, image: busybox}]\n", `metadata.name: "Web_1"`},
		{"sctp", podHead + "  containers:\n  - name: a\n    image: busybox\n    ports: [{containerPort: 80, hostPort: 80, protocol: SCTP}]\n", `protocol: "SCTP": want TCP or UDP`},
		{"host port twice", podHead + "  containers:\n  - name: a\n    image: busybox\n    ports: [{containerPort: 80, hostPort: 8080}]\n  - name: b\n    image: busybox\n    ports: [{containerPort: 81, hostPort: 8080}]\n", "8080/tcp is published by spec.containers[0].ports[0] already"},
		{"subPath escapes", podHead + "  volumes: [{name: d, emptyDir: {}}]\n  containers:\n  - name: a\n    image: busybox\n    volumeMounts: [{name: d, mountPath: /d, subPath: ../x}]\n", `subPath: "../x"`},
		{"runAsNonRoot as root", podHead + "  containers:\n  - name: a\n    image: busybox\n    securityContext: {runAsNonRoot: true, runAsUser: 0}\n", "runAsNonRoot: true, but runAsUser is 0"},
		{"two pods one name", podHead + "  containers: [{name: a, image: busybox}]\n---\n" + podHead + "  containers: [{name: a, image: busybox}]\n", `pod "web": the name is taken by document 1`},
		{"sizeLimit on disk", podHead + "  volumes: [{name: d, emptyDir: {sizeLimit: 1Gi}}]\n  containers: [{name: a, image: busybox}]\n", "emptyDir.sizeLimit: supported with medium: Memory only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := planOf(t, tc.yaml)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Plan = %+v, %v; want an error with %q", p, err, tc.want)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	vals := map[string]string{"A": "1", "B": "two"}
	for in, want := range map[string]string{
		"$(A)":          "1",
		"x$(A)y$(B)z":   "x1ytwoz",
		"$$(A)":         "$(A)",
		"$(C)":          "$(C)",
		"$(A":           "$(A",
		"$":             "$",
		"cost: $5 $$":   "cost: $5 $",
		"$(A)$(A)$(NO)": "11$(NO)",
	} {
		if got := expand(in, vals); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCommandSemantics(t *testing.T) {
	for _, tc := range []struct {
		name, spec string
		want       string
	}{
		{"neither", "", "run --sandbox SB --name web-a --image busybox:1 --pull missing -d"},
		{"args only", "    args: [echo, hi]\n", "run --sandbox SB --name web-a --image busybox:1 --pull missing -d -- echo hi"},
		{"command only", "    command: [sh, -c, 'exit 0']\n", "run --sandbox SB --name web-a --image busybox:1 --pull missing -d --entrypoint sh -- -c exit 0"},
		{"both", "    command: [/bin/app]\n    args: [--port, '80']\n", "run --sandbox SB --name web-a --image busybox:1 --pull missing -d --entrypoint /bin/app -- --port 80"},
		{"empty command", "    command: []\n", "run --sandbox SB --name web-a --image busybox:1 --pull missing -d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := planOf(t, podHead+"  containers:\n  - name: a\n    image: busybox:1\n"+tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			c := p.Pods[0].Containers[0]
			if got := strings.Join(c.RunArgs("SB", nil, true), " "); got != tc.want+" --restart always" && got != strings.Replace(tc.want, " -d", " -d --restart always", 1) {
				t.Errorf("RunArgs:\n got %s\nwant %s (with --restart always)", got, tc.want)
			}
		})
	}
}

func TestPullPolicyDefaults(t *testing.T) {
	for image, want := range map[string]string{
		"busybox":                               "always",
		"busybox:latest":                        "always",
		"busybox:1.36":                          "missing",
		"localhost:5000/app":                    "always",
		"localhost:5000/app:v2":                 "missing",
		"app@sha256:" + strings.Repeat("a", 64): "missing",
	} {
		p, err := planOf(t, podHead+"  containers:\n  - name: a\n    image: "+image+"\n")
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Pods[0].Containers[0].Pull; got != want {
			t.Errorf("image %s: pull %q, want %q", image, got, want)
		}
	}
}

// The pod's cgroup gets the sum of its containers' limits when all have
// them, or the largest init container's if more.
func TestPodLimits(t *testing.T) {
	p, err := planOf(t, podHead+`  initContainers:
  - {name: i, image: busybox, resources: {limits: {memory: 256Mi, cpu: 250m}}}
  containers:
  - {name: a, image: busybox, resources: {limits: {memory: 64Mi, cpu: 500m}}}
  - {name: b, image: busybox, resources: {limits: {memory: 64Mi, cpu: 1}}}
`)
	if err != nil {
		t.Fatal(err)
	}
	if pod := p.Pods[0]; pod.Memory != 256<<20 || pod.CPUs != "1.5" {
		t.Errorf("pod limits %d bytes, %s CPUs; want 256Mi (the init container's) and 1.5 (the sum)", pod.Memory, pod.CPUs)
	}
	p, err = planOf(t, podHead+"  containers:\n  - {name: a, image: busybox, resources: {limits: {memory: 64Mi}}}\n")
	if err != nil {
		t.Fatal(err)
	}
	if pod := p.Pods[0]; pod.Memory != 0 || pod.CPUs != "" {
		t.Errorf("a container without a cpu limit: pod limits %d, %q; want none", pod.Memory, pod.CPUs)
	}
}

// seccompProfile: a container's overrides its pod's; Unconfined and
// Localhost become --security-opt, RuntimeDefault podbox's default profile.
func TestPlanSeccomp(t *testing.T) {
	yaml := podHead + `  securityContext:
    seccompProfile: {type: Localhost, localhostProfile: profiles/audit.json}
  containers:
  - {name: inherits, image: busybox}
  - name: unconfined
    image: busybox
    securityContext:
      seccompProfile: {type: Unconfined}
  - name: default
    image: busybox
    securityContext:
      seccompProfile: {type: RuntimeDefault}
`
	var statted []string
	stat := func(p string) (os.FileInfo, error) {
		statted = append(statted, p)
		return os.Stat(os.Args[0]) // a regular file
	}
	p, err := Plan(strings.NewReader(yaml), Options{Stat: stat})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"web-inherits": "seccomp=/var/lib/kubelet/seccomp/profiles/audit.json", "web-unconfined": "seccomp=unconfined", "web-default": ""}
	for _, c := range p.Pods[0].Containers {
		args := c.RunArgs("web", nil, true)
		got := ""
		if i := slices.Index(args, "--security-opt"); i >= 0 {
			got = args[i+1]
		}
		if got != want[c.Name] {
			t.Errorf("%s: --security-opt %q, want %q (args %q)", c.Name, got, want[c.Name], args)
		}
	}
	if !slices.Equal(statted, []string{"/var/lib/kubelet/seccomp/profiles/audit.json"}) {
		t.Errorf("looked for profiles %q", statted)
	}
}
