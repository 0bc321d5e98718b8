package kube

import (
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/podbox/podbox/kube/plan"
)

// FuzzPlan reads arbitrary bytes as manifests: podbox-kube gets whatever
// file a user points play at, kubectl's output or one off the internet. It
// must never panic (each problem is an error naming its field); a plan it
// makes has pods with containers and prints as a dry run; and the plan
// crosses from podbox-kube to the CLI as JSON, so encoded and decoded it is
// the same plan. FuzzPlayArgs (package cli) checks what play then runs.
func FuzzPlan(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "pod.yaml")); err == nil {
		f.Add(b)
	}
	for _, s := range []string{
		"{{{", "# nothing\n---\n", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n",
		podHead + "  containers:\n  - name: a\n    image: busybox\n    imagePolicy: Never\n",
		podHead + "  volumes: [{name: h, hostPath: {path: /srv, type: DirectoryOrCreate}}, {name: d, emptyDir: {medium: Memory, sizeLimit: 1Gi}}]\n" +
			"  containers:\n  - name: a\n    image: busybox\n    volumeMounts: [{name: h, mountPath: /h}, {name: d, mountPath: /d, subPath: x}]\n",
		podHead + "  containers:\n  - name: a\n    image: busybox\n    resources: {limits: {memory: 12q}}\n",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api}\nspec:\n  replicas: 2\n  template:\n    spec:\n      containers: [{name: a, image: busybox}]\n",
		"apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {k: v}\n---\n" + podHead +
			"  volumes: [{name: s, secret: {secretName: s, items: [{key: k, path: a/b, mode: 0400}]}}]\n  containers:\n  - name: a\n    image: busybox\n" +
			"    env: [{name: K, valueFrom: {secretKeyRef: {name: s, key: k}}}, {name: P, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, manifest []byte) {
		p, err := Plan(bytes.NewReader(manifest), Options{Stat: statDir})
		if err != nil {
			return
		}
		if len(p.Pods) == 0 {
			t.Fatalf("Plan(%q): no pods", manifest)
		}
		for _, pod := range p.Pods {
			if len(pod.Containers) == 0 {
				t.Fatalf("Plan(%q): pod %s without containers", manifest, pod.Name)
			}
		}
		if err := p.Write(io.Discard); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("Plan(%q): %v", manifest, err)
		}
		var back plan.Plan
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("Plan(%q) as JSON %s: %v", manifest, b, err)
		}
		if again, _ := json.Marshal(&back); !bytes.Equal(again, b) {
			t.Fatalf("Plan(%q) as JSON %s decodes as %s", manifest, b, again)
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
