package kube

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/netip"
	"os"
	"path"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"unicode"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/api/validate/content"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/podbox/podbox/kube/plan"
)

// minMemory is the smallest memory limit podbox accepts, as Docker: below
// it a container's runtime itself does not fit.
const minMemory = 6 << 20

// Options are the node-side facts a plan depends on.
type Options struct {
	// Stat looks at a hostPath or a seccomp profile on the node (os.Stat
	// when nil).
	Stat func(string) (os.FileInfo, error)
}

// SeccompRoot is where a Localhost seccompProfile's localhostProfile is
// found: the kubelet's default, so that a node's profiles and the
// manifests that name them work unchanged.
const SeccompRoot = "/var/lib/kubelet/seccomp"

// Plan reads the manifests of r and returns the plan that runs their pods.
// Every problem found is reported, each naming its document and field.
func Plan(r io.Reader, o Options) (*plan.Plan, error) {
	if o.Stat == nil {
		o.Stat = os.Stat
	}
	docs, err := decode(r)
	if err != nil {
		return nil, err
	}
	c := &converter{o: o, configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	// ConfigMaps and Secrets first: a pod may use one defined after it.
	for _, d := range docs {
		switch obj := d.obj.(type) {
		case *corev1.ConfigMap:
			c.errs = append(c.errs, prefix(d, unsupported("", obj, "metadata", "data", "binaryData", "immutable"))...)
			c.errs = append(c.errs, prefix(d, unsupported("metadata", obj.ObjectMeta, "name", "namespace", "labels", "annotations"))...)
			c.configMaps[key(obj.Namespace, obj.Name)] = obj
		case *corev1.Secret:
			c.errs = append(c.errs, prefix(d, unsupported("", obj, "metadata", "data", "stringData", "type", "immutable"))...)
			c.errs = append(c.errs, prefix(d, unsupported("metadata", obj.ObjectMeta, "name", "namespace", "labels", "annotations"))...)
			c.secrets[key(obj.Namespace, obj.Name)] = obj
		}
	}
	p := &plan.Plan{}
	names := map[string]string{}
	for _, d := range docs {
		var pods []plan.Pod
		switch obj := d.obj.(type) {
		case *corev1.Pod:
			pods = c.pod(d, obj.ObjectMeta, obj.Spec, "")
		case *appsv1.Deployment:
			pods = c.deployment(d, obj)
		}
		for _, pod := range pods {
			if prev, ok := names[pod.Name]; ok {
				c.errs = append(c.errs, fmt.Errorf("%s: pod %q: the name is taken by %s", d, pod.Name, prev))
				continue
			}
			names[pod.Name] = d.String()
			p.Pods = append(p.Pods, pod)
		}
	}
	if err := errors.Join(c.errs...); err != nil {
		return nil, err
	}
	if len(p.Pods) == 0 {
		return nil, errors.New("no Pod or Deployment in the input")
	}
	return p, nil
}

type converter struct {
	o          Options
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	errs       []error
}

func key(ns, name string) string {
	if ns == "" {
		ns = "default"
	}
	return ns + "/" + name
}

func prefix(d *document, errs []error) []error {
	for i, err := range errs {
		errs[i] = fmt.Errorf("%s: %w", d, err)
	}
	return errs
}

func (c *converter) fail(d *document, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%s: "+format, append([]any{d}, args...)...))
}

func (c *converter) deployment(d *document, dep *appsv1.Deployment) []plan.Pod {
	c.errs = append(c.errs, prefix(d, unsupported("", dep, "metadata", "spec"))...)
	c.errs = append(c.errs, prefix(d, unsupported("metadata", dep.ObjectMeta, "name", "namespace", "labels", "annotations"))...)
	// A selector and a strategy only matter to a controller; replicas and
	// the template are what podbox runs.
	c.errs = append(c.errs, prefix(d, unsupported("spec", dep.Spec, "replicas", "selector", "template", "strategy"))...)
	replicas := 1
	if dep.Spec.Replicas != nil {
		replicas = int(*dep.Spec.Replicas)
	}
	if replicas < 0 || replicas > 100 {
		c.fail(d, "spec.replicas: %d: want 0 to 100", replicas)
		return nil
	}
	meta := dep.Spec.Template.ObjectMeta
	meta.Namespace = dep.Namespace
	var pods []plan.Pod
	for i := range replicas {
		meta.Name = fmt.Sprintf("%s-%d", dep.Name, i)
		before := len(c.errs)
		pods = append(pods, c.pod(d, meta, dep.Spec.Template.Spec, "spec.template.")...)
		if len(c.errs) > before {
			break // the other replicas have the same problems
		}
	}
	return pods
}

// pod converts one pod; at is the path of its template in the document.
func (c *converter) pod(d *document, meta metaV1, spec corev1.PodSpec, at string) []plan.Pod {
	before := len(c.errs)
	bad := func(field, format string, args ...any) { c.fail(d, at+field+": "+format, args...) }
	c.errs = append(c.errs, prefix(d, unsupported(strings.TrimSuffix(at+"metadata", "."), meta, "name", "namespace", "labels", "annotations"))...)
	if meta.Name == "" {
		bad("metadata.name", "is missing")
	} else if errs := validation.IsDNS1123Subdomain(meta.Name); len(errs) > 0 || len(meta.Name) > 63 {
		bad("metadata.name", "%q: want a DNS-1123 name of at most 63 characters", meta.Name)
	}
	ns := meta.Namespace
	if ns == "" {
		ns = "default"
	} else if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		bad("metadata.namespace", "%q: want a DNS-1123 label", ns)
	}
	for _, k := range slices.Sorted(maps.Keys(meta.Labels)) {
		if errs := content.IsLabelKey(k); len(errs) > 0 {
			bad("metadata.labels", "%q: not a label key: %s", k, strings.Join(errs, "; "))
		} else if k == plan.LabelPod || k == plan.LabelNamespace {
			bad("metadata.labels", "%q: the label podbox play marks its sandboxes with", k)
		} else if errs := content.IsLabelValue(meta.Labels[k]); len(errs) > 0 {
			bad("metadata.labels."+k, "%q: not a label value: %s", meta.Labels[k], strings.Join(errs, "; "))
		}
	}
	if spec.Hostname != "" {
		if errs := validation.IsDNS1123Label(spec.Hostname); len(errs) > 0 {
			bad("spec.hostname", "%q: want a DNS-1123 label", spec.Hostname)
		}
	}
	p := plan.Pod{Name: meta.Name, Namespace: ns, Hostname: spec.Hostname, Labels: meta.Labels}
	c.errs = append(c.errs, prefix(d, unsupported(at+"spec", spec, "volumes", "initContainers", "containers", "restartPolicy",
		"dnsPolicy", "dnsConfig", "hostname", "shareProcessNamespace", "securityContext", "terminationGracePeriodSeconds"))...)
	if spec.ShareProcessNamespace != nil {
		p.SharePID = *spec.ShareProcessNamespace
	}
	restart := "always"
	switch spec.RestartPolicy {
	case "", corev1.RestartPolicyAlways:
	case corev1.RestartPolicyOnFailure:
		restart = "on-failure"
	case corev1.RestartPolicyNever:
		restart = "no"
	default:
		bad("spec.restartPolicy", "%q: want Always, OnFailure or Never", spec.RestartPolicy)
	}
	c.dns(d, at, &p, spec)
	podSC := c.podSecurity(d, at, spec.SecurityContext)
	vols := c.volumes(d, at, &p, spec.Volumes, ns)
	if len(spec.Containers) == 0 {
		bad("spec.containers", "a pod needs at least one container")
	}
	names := map[string]bool{}
	ports := map[string]string{}
	for i, ctr := range spec.InitContainers {
		pc := c.container(d, fmt.Sprintf("%sspec.initContainers[%d]", at, i), &p, ctr, vols, podSC, names, ports, true)
		pc.Restart = "no"
		p.InitContainers = append(p.InitContainers, pc)
	}
	for i, ctr := range spec.Containers {
		pc := c.container(d, fmt.Sprintf("%sspec.containers[%d]", at, i), &p, ctr, vols, podSC, names, ports, false)
		pc.Restart = restart
		p.Containers = append(p.Containers, pc)
	}
	podLimits(&p, spec)
	if len(c.errs) > before {
		return nil
	}
	return []plan.Pod{p}
}

func (c *converter) dns(d *document, at string, p *plan.Pod, spec corev1.PodSpec) {
	switch spec.DNSPolicy {
	case "", corev1.DNSClusterFirst, corev1.DNSDefault:
		// No cluster DNS on a bare host: the node's resolver, as Default.
	case corev1.DNSNone:
		if spec.DNSConfig == nil || len(spec.DNSConfig.Nameservers) == 0 {
			c.fail(d, "%sspec.dnsPolicy: None needs spec.dnsConfig.nameservers", at)
		}
	default:
		c.fail(d, "%sspec.dnsPolicy: %q: want ClusterFirst, Default or None", at, spec.DNSPolicy)
	}
	if dc := spec.DNSConfig; dc != nil {
		p.DNSServers, p.DNSSearches = dc.Nameservers, dc.Searches
		for i, s := range dc.Nameservers {
			if a, err := netip.ParseAddr(s); err != nil || a.Zone() != "" {
				c.fail(d, "%sspec.dnsConfig.nameservers[%d]: %q: want an IP address", at, i, s)
			}
		}
		for i, s := range dc.Searches {
			if errs := validation.IsDNS1123Subdomain(strings.TrimSuffix(s, ".")); len(errs) > 0 {
				c.fail(d, "%sspec.dnsConfig.searches[%d]: %q: want a DNS-1123 subdomain", at, i, s)
			}
		}
		for i, o := range dc.Options {
			v := o.Name
			if o.Value != nil {
				v += ":" + *o.Value
			}
			// resolv.conf's options line holds words.
			if o.Name == "" || strings.ContainsFunc(v, func(r rune) bool { return r == ',' || unicode.IsSpace(r) || unicode.IsControl(r) }) {
				c.fail(d, "%sspec.dnsConfig.options[%d]: %q: want a name and value without spaces, commas or control characters", at, i, v)
			}
			p.DNSOptions = append(p.DNSOptions, v)
		}
	}
}

// podSecurity is what a pod's securityContext gives every container.
func (c *converter) podSecurity(d *document, at string, sc *corev1.PodSecurityContext) *corev1.PodSecurityContext {
	if sc == nil {
		return &corev1.PodSecurityContext{}
	}
	c.errs = append(c.errs, prefix(d, unsupported(at+"spec.securityContext", sc, "runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile"))...)
	return sc
}

// podLimits gives the pod's cgroup the limits Kubernetes gives a pod whose
// containers all have them: the sum of the app containers', or the largest
// init container's if that is more (init containers run one at a time,
// before the others).
func podLimits(p *plan.Pod, spec corev1.PodSpec) {
	var mem int64
	var cpu resource.Quantity
	for _, ctr := range spec.Containers {
		m, mok := ctr.Resources.Limits[corev1.ResourceMemory]
		q, cok := ctr.Resources.Limits[corev1.ResourceCPU]
		if !mok || !cok {
			return
		}
		// Saturating: three limits of 6Ei must not wrap to a small sum.
		mem += min(m.Value(), math.MaxInt64-mem)
		cpu.Add(q)
	}
	for _, ctr := range spec.InitContainers {
		m, mok := ctr.Resources.Limits[corev1.ResourceMemory]
		q, cok := ctr.Resources.Limits[corev1.ResourceCPU]
		if !mok || !cok {
			return
		}
		mem = max(mem, m.Value())
		if q.Cmp(cpu) > 0 {
			cpu = q
		}
	}
	p.Memory, p.CPUs = mem, cpus(cpu)
}

// cpus writes a CPU quantity as --cpus takes it: 500m is 0.5. A quota
// beyond the node's CPUs limits nothing, and podbox refuses one: a pod's
// or a container's is at most the node's.
func cpus(q resource.Quantity) string {
	if node := resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI); q.Cmp(*node) > 0 {
		q = *node
	}
	return strconv.FormatFloat(float64(q.MilliValue())/1000, 'f', -1, 64)
}

func (c *converter) volumes(d *document, at string, p *plan.Pod, vols []corev1.Volume, ns string) map[string]bool {
	names := map[string]bool{}
	for i, v := range vols {
		vp := fmt.Sprintf("%sspec.volumes[%d]", at, i)
		bad := func(field, format string, args ...any) { c.fail(d, join(vp, field)+": "+format, args...) }
		if errs := validation.IsDNS1123Label(v.Name); len(errs) > 0 {
			bad("name", "%q: want a DNS-1123 label", v.Name)
			continue
		}
		if names[v.Name] {
			bad("name", "%q: two volumes have this name", v.Name)
			continue
		}
		names[v.Name] = true
		c.errs = append(c.errs, prefix(d, unsupported(vp, v.VolumeSource, "emptyDir", "hostPath", "configMap", "secret"))...)
		pv := plan.Volume{Name: v.Name}
		switch s := v.VolumeSource; {
		case s.EmptyDir != nil:
			pv.Kind = plan.EmptyDir
			switch s.EmptyDir.Medium {
			case corev1.StorageMediumDefault:
			case corev1.StorageMediumMemory:
				pv.Memory = true
			default:
				bad("emptyDir.medium", "%q: want \"\" or Memory", s.EmptyDir.Medium)
			}
			if s.EmptyDir.SizeLimit != nil {
				if !pv.Memory {
					// On disk, Kubernetes enforces it by eviction,
					// which a bare host has no one for.
					bad("emptyDir.sizeLimit", "supported with medium: Memory only")
				}
				pv.SizeLimit = s.EmptyDir.SizeLimit.Value()
			}
		case s.HostPath != nil:
			pv.Kind = plan.HostPath
			c.hostPath(d, vp+".hostPath", &pv, s.HostPath)
		case s.ConfigMap != nil:
			pv.Kind = plan.ConfigMap
			cm := c.configMaps[key(ns, s.ConfigMap.Name)]
			c.errs = append(c.errs, prefix(d, unsupported(vp+".configMap", s.ConfigMap, "name", "items", "defaultMode", "optional"))...)
			if cm == nil && !optional(s.ConfigMap.Optional) {
				bad("configMap.name", "no ConfigMap %q in namespace %s in this file", s.ConfigMap.Name, ns)
				continue
			}
			if cm != nil {
				pv.Files = c.files(d, vp+".configMap", cm.Data, cm.BinaryData, s.ConfigMap.Items, s.ConfigMap.DefaultMode)
			}
		case s.Secret != nil:
			pv.Kind, pv.Memory = plan.Secret, true
			sec := c.secrets[key(ns, s.Secret.SecretName)]
			c.errs = append(c.errs, prefix(d, unsupported(vp+".secret", s.Secret, "secretName", "items", "defaultMode", "optional"))...)
			if sec == nil && !optional(s.Secret.Optional) {
				bad("secret.secretName", "no Secret %q in namespace %s in this file", s.Secret.SecretName, ns)
				continue
			}
			if sec != nil {
				pv.Files = c.files(d, vp+".secret", secretData(sec), nil, s.Secret.Items, s.Secret.DefaultMode)
			}
		default:
			bad("", "a volume needs a source (podbox supports emptyDir, hostPath, configMap and secret)")
			continue
		}
		p.Volumes = append(p.Volumes, pv)
	}
	return names
}

func optional(b *bool) bool { return b != nil && *b }

// secretData is a Secret's keys: data, with stringData over it, as the API
// server merges them.
func secretData(s *corev1.Secret) map[string]string {
	m := map[string]string{}
	for k, v := range s.Data {
		m[k] = string(v)
	}
	for k, v := range s.StringData {
		m[k] = v
	}
	return m
}

// files are the keys of a configMap or secret as files, all of them or the
// items listed (with their paths and modes).
func (c *converter) files(d *document, at string, data map[string]string, binary map[string][]byte, items []corev1.KeyToPath, defMode *int32) []plan.File {
	mode := uint32(0o644)
	if defMode != nil {
		if *defMode < 0 || *defMode > 0o777 {
			c.fail(d, "%s.defaultMode: %#o: want 0 to 0777", at, *defMode)
		}
		mode = uint32(*defMode)
	}
	value := func(k string) ([]byte, bool) {
		if v, ok := data[k]; ok {
			return []byte(v), true
		}
		v, ok := binary[k]
		return v, ok
	}
	var files []plan.File
	if len(items) == 0 {
		for _, k := range sortedKeys(data, binary) {
			v, _ := value(k)
			files = append(files, plan.File{Path: k, Data: v, Mode: mode})
		}
		return files
	}
	for i, it := range items {
		ip := fmt.Sprintf("%s.items[%d]", at, i)
		v, ok := value(it.Key)
		if !ok {
			c.fail(d, "%s.key: %q is not in it", ip, it.Key)
			continue
		}
		if !localPath(it.Path) {
			c.fail(d, "%s.path: %q: want a relative path without ..", ip, it.Path)
			continue
		}
		m := mode
		if it.Mode != nil {
			m = uint32(*it.Mode)
		}
		files = append(files, plan.File{Path: it.Path, Data: v, Mode: m})
	}
	return files
}

func localPath(p string) bool {
	return p != "" && !path.IsAbs(p) && path.Clean(p) == p && p != ".." && !strings.HasPrefix(p, "../")
}

// plainPath reports whether a mount's path passes through run's --mount as
// it is: that flag trims white space off its fields and reads a line
// break in one as "\n", so a path with a control character, or with a
// space at either end, would be mounted somewhere else.
func plainPath(p string) bool {
	return !strings.ContainsFunc(p, unicode.IsControl) && strings.TrimSpace(p) == p
}

const notPlainPath = "want a path without control characters or spaces at its ends"

func (c *converter) hostPath(d *document, at string, pv *plan.Volume, hp *corev1.HostPathVolumeSource) {
	pv.Path = hp.Path
	if !path.IsAbs(hp.Path) {
		c.fail(d, "%s.path: %q: want an absolute path", at, hp.Path)
		return
	}
	if !plainPath(hp.Path) {
		c.fail(d, "%s.path: %q: %s", at, hp.Path, notPlainPath)
		return
	}
	typ := corev1.HostPathUnset
	if hp.Type != nil {
		typ = *hp.Type
	}
	fi, err := c.o.Stat(hp.Path)
	exists := err == nil
	check := func(ok bool, what string) {
		switch {
		case !exists:
			c.fail(d, "%s.path: %s does not exist (type %s)", at, hp.Path, typ)
		case !ok:
			c.fail(d, "%s.path: %s is not a %s (type %s)", at, hp.Path, what, typ)
		}
	}
	switch typ {
	case corev1.HostPathUnset:
		// Kubernetes checks nothing; a bind mount needs the path.
		if !exists {
			c.fail(d, "%s.path: %s does not exist (give type DirectoryOrCreate or FileOrCreate to make it)", at, hp.Path)
		}
	case corev1.HostPathDirectoryOrCreate:
		if exists && !fi.IsDir() {
			c.fail(d, "%s.path: %s is not a directory (type %s)", at, hp.Path, typ)
		}
		pv.Create = "directory"
	case corev1.HostPathFileOrCreate:
		if exists && !fi.Mode().IsRegular() {
			c.fail(d, "%s.path: %s is not a file (type %s)", at, hp.Path, typ)
		}
		pv.Create = "file"
	case corev1.HostPathDirectory:
		check(exists && fi.IsDir(), "directory")
	case corev1.HostPathFile:
		check(exists && fi.Mode().IsRegular(), "file")
	case corev1.HostPathSocket:
		check(exists && fi.Mode()&os.ModeSocket != 0, "socket")
	case corev1.HostPathCharDev:
		check(exists && fi.Mode()&os.ModeCharDevice != 0, "character device")
	case corev1.HostPathBlockDev:
		check(exists && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0, "block device")
	default:
		c.fail(d, "%s.type: %q is not a hostPath type", at, typ)
	}
}
