// Package kube turns Kubernetes manifests into a podbox plan (package
// kube/plan): v1 Pods, apps/v1 Deployments (a pod per replica), and the
// ConfigMaps and Secrets of the same file that they use.
//
// Manifests are decoded strictly into the real API types (k8s.io/api): an
// unknown field is an error, and so is every field podbox does not carry
// out, named by its path (spec.containers[1].livenessProbe: not supported)
// rather than ignored, since a pod that silently lacks its probe or its
// limit is worse than one refused. It runs in the podbox-kube binary: the
// API types' packages are large and register much at init, which `podbox
// sandbox create` must not pay.
package kube

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// document is one manifest of a file, numbered from 1.
type document struct {
	n    int
	kind string
	name string
	obj  any // *corev1.Pod, *appsv1.Deployment, *corev1.ConfigMap or *corev1.Secret
}

func (d *document) String() string {
	if d.name == "" {
		return fmt.Sprintf("document %d (%s)", d.n, d.kind)
	}
	return fmt.Sprintf("document %d (%s %s)", d.n, d.kind, d.name)
}

// decode reads every document of r. Empty documents (a leading ---,
// comments only) are skipped.
func decode(r io.Reader) ([]*document, error) {
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs []*document
	for n := 1; ; n++ {
		raw, err := yr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
		if len(bytes.TrimSpace(stripComments(raw))) == 0 {
			n--
			continue
		}
		d, err := decodeOne(n, raw)
		if err != nil {
			return nil, err
		}
		docs = append(docs, d)
	}
	if len(docs) == 0 {
		return nil, errors.New("no manifests in the input")
	}
	return docs, nil
}

func stripComments(b []byte) []byte {
	var out []byte
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(append(out, line...), '\n')
		}
	}
	return out
}

func decodeOne(n int, raw []byte) (*document, error) {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(raw, &meta); err != nil {
		return nil, fmt.Errorf("document %d: not a manifest: %v", n, err)
	}
	d := &document{n: n, kind: meta.Kind, name: meta.Metadata.Name}
	want := map[string]string{"Pod": "v1", "ConfigMap": "v1", "Secret": "v1", "Deployment": "apps/v1"}
	switch {
	case meta.Kind == "":
		return nil, fmt.Errorf("%s: kind is missing", d)
	case want[meta.Kind] == "":
		return nil, fmt.Errorf("%s: kind %s is not supported (want Pod, Deployment, ConfigMap or Secret)", d, meta.Kind)
	case meta.APIVersion != want[meta.Kind]:
		return nil, fmt.Errorf("%s: apiVersion %q: want %s", d, meta.APIVersion, want[meta.Kind])
	}
	switch meta.Kind {
	case "Pod":
		d.obj = &corev1.Pod{}
	case "Deployment":
		d.obj = &appsv1.Deployment{}
	case "ConfigMap":
		d.obj = &corev1.ConfigMap{}
	case "Secret":
		d.obj = &corev1.Secret{}
	}
	// YAML to JSON refusing duplicate keys, then JSON into the type as the
	// API server decodes it: case-sensitive, and with every unknown field
	// named by its path.
	j, err := yaml.YAMLToJSONStrict(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", d, err)
	}
	strict, err := kjson.UnmarshalStrict(j, d.obj)
	if err != nil {
		return nil, fmt.Errorf("%s: %s", d, decodeError(raw, err))
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("%s: %w", d, errors.Join(strict...))
	}
	return d, nil
}

// decodeError words a strict decoding error. A malformed quantity is the
// one whose message names no field: the field is found by parsing every
// quantity of the document.
func decodeError(raw []byte, err error) string {
	msg := strings.TrimPrefix(err.Error(), "error unmarshaling JSON: while decoding JSON: ")
	if !strings.Contains(msg, "quantities must match") {
		return msg
	}
	var generic any
	if yaml.Unmarshal(raw, &generic) != nil {
		return msg
	}
	if path, v, ok := badQuantity("", generic); ok {
		return fmt.Sprintf("%s: %q is not a quantity (e.g. 128Mi, 1G, 500m, 2)", path, v)
	}
	return msg
}

// badQuantity finds a value under resources.limits or resources.requests
// (or an emptyDir's sizeLimit) that does not parse as a quantity.
func badQuantity(path string, v any) (string, string, bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			p := path + "." + k
			if path == "" {
				p = k
			}
			if s, ok := x.(string); ok && quantityField(path, k) {
				if _, err := resource.ParseQuantity(s); err != nil {
					return p, s, true
				}
				continue
			}
			if p, s, ok := badQuantity(p, x); ok {
				return p, s, true
			}
		}
	case []any:
		for i, x := range v {
			if p, s, ok := badQuantity(fmt.Sprintf("%s[%d]", path, i), x); ok {
				return p, s, true
			}
		}
	}
	return "", "", false
}

func quantityField(parent, key string) bool {
	return strings.HasSuffix(parent, "resources.limits") || strings.HasSuffix(parent, "resources.requests") || key == "sizeLimit"
}
