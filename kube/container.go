package kube

import (
	"fmt"
	"math"
	"net/netip"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/podbox/podbox/image/store"
	"github.com/podbox/podbox/kube/plan"
)

type metaV1 = metav1.ObjectMeta

// container converts one container at path at (spec.containers[i]) of pod
// p; names and ports collect what must be unique across the pod.
func (c *converter) container(d *document, at string, p *plan.Pod, ctr corev1.Container, vols map[string]bool,
	podSC *corev1.PodSecurityContext, names map[string]bool, ports map[string]string, init bool) plan.Container {
	bad := func(field, format string, args ...any) { c.fail(d, join(at, field)+": "+format, args...) }
	c.errs = append(c.errs, prefix(d, unsupported(at, ctr, "name", "image", "command", "args", "workingDir", "ports",
		"env", "envFrom", "resources", "volumeMounts", "imagePullPolicy", "securityContext"))...)
	pc := plan.Container{Name: p.Name + "-" + ctr.Name, Image: ctr.Image, Command: ctr.Command, Args: ctr.Args, WorkingDir: ctr.WorkingDir}
	if errs := validation.IsDNS1123Label(ctr.Name); len(errs) > 0 {
		bad("name", "%q: want a DNS-1123 label", ctr.Name)
	} else if names[ctr.Name] {
		bad("name", "%q: two containers of the pod have this name", ctr.Name)
	} else if len(pc.Name) > 63 {
		// Container names are the node's: POD-CONTAINER, a podbox name.
		bad("name", "%q: podbox names the container %q, longer than 63 characters", ctr.Name, pc.Name)
	}
	names[ctr.Name] = true
	if ctr.Image == "" {
		bad("image", "is missing")
	} else if _, err := store.ParseReference(ctr.Image); err != nil {
		bad("image", "%v", err)
	}
	pc.Pull = pullPolicy(ctr)
	if pc.Pull == "" {
		bad("imagePullPolicy", "%q: want Always, IfNotPresent or Never", ctr.ImagePullPolicy)
	}
	if ctr.WorkingDir != "" && !path.IsAbs(ctr.WorkingDir) {
		bad("workingDir", "%q: want an absolute path", ctr.WorkingDir)
	}
	env := c.env(d, at, p, ctr)
	pc.Env, pc.SecretEnv = env.list, env.secret
	pc.Command = expandAll(ctr.Command, env.vals)
	pc.Args = expandAll(ctr.Args, env.vals)
	if ctr.Command != nil && len(ctr.Command) == 0 {
		pc.Command = nil
	}

	for i, port := range ctr.Ports {
		pp := fmt.Sprintf("%s.ports[%d]", at, i)
		c.errs = append(c.errs, prefix(d, unsupported(pp, port, "name", "containerPort", "hostPort", "hostIP", "protocol"))...)
		proto := strings.ToLower(string(port.Protocol))
		if proto == "" {
			proto = "tcp"
		}
		if proto != "tcp" && proto != "udp" {
			c.fail(d, "%s.protocol: %q: want TCP or UDP", pp, port.Protocol)
			continue
		}
		if port.ContainerPort < 1 || port.ContainerPort > 65535 {
			c.fail(d, "%s.containerPort: %d: want 1 to 65535", pp, port.ContainerPort)
			continue
		}
		if port.HostPort == 0 {
			if port.HostIP != "" {
				c.fail(d, "%s.hostIP: needs a hostPort", pp)
			}
			continue // the pod's own port: nothing to publish
		}
		if port.HostPort < 1 || port.HostPort > 65535 {
			c.fail(d, "%s.hostPort: %d: want 1 to 65535", pp, port.HostPort)
			continue
		}
		if a, err := netip.ParseAddr(port.HostIP); port.HostIP != "" && (err != nil || !a.Is4()) {
			c.fail(d, "%s.hostIP: %q: want an IPv4 address (the pod network is IPv4)", pp, port.HostIP)
			continue
		}
		spec := fmt.Sprintf("%d:%d/%s", port.HostPort, port.ContainerPort, proto)
		if port.HostIP != "" {
			spec = port.HostIP + ":" + spec
		}
		k := fmt.Sprintf("%d/%s", port.HostPort, proto)
		if prev, ok := ports[k]; ok {
			c.fail(d, "%s.hostPort: %s is published by %s already", pp, k, prev)
			continue
		}
		ports[k] = pp
		p.Ports = append(p.Ports, spec)
	}
	if init && len(ctr.Ports) > 0 {
		bad("ports", "init containers have no ports")
	}

	c.resources(d, at, &pc, ctr.Resources)
	c.security(d, at, &pc, ctr.SecurityContext, podSC)
	for i, m := range ctr.VolumeMounts {
		mp := fmt.Sprintf("%s.volumeMounts[%d]", at, i)
		c.errs = append(c.errs, prefix(d, unsupported(mp, m, "name", "mountPath", "readOnly", "subPath"))...)
		switch {
		case !vols[m.Name]:
			c.fail(d, "%s.name: %q names no volume of the pod", mp, m.Name)
		case !path.IsAbs(m.MountPath):
			c.fail(d, "%s.mountPath: %q: want an absolute path", mp, m.MountPath)
		case !plainPath(m.MountPath):
			c.fail(d, "%s.mountPath: %q: %s", mp, m.MountPath, notPlainPath)
		case m.SubPath != "" && !localPath(m.SubPath):
			c.fail(d, "%s.subPath: %q: want a relative path without ..", mp, m.SubPath)
		case !plainPath(m.SubPath):
			c.fail(d, "%s.subPath: %q: %s", mp, m.SubPath, notPlainPath)
		default:
			pc.Mounts = append(pc.Mounts, plan.Mount{Volume: m.Name, Target: m.MountPath, ReadOnly: m.ReadOnly, SubPath: m.SubPath})
		}
	}
	return pc
}

// pullPolicy is Kubernetes' image pull policy as podbox's --pull: the
// default is Always for :latest or no tag, else IfNotPresent.
func pullPolicy(ctr corev1.Container) string {
	switch ctr.ImagePullPolicy {
	case corev1.PullAlways:
		return "always"
	case corev1.PullIfNotPresent:
		return "missing"
	case corev1.PullNever:
		return "never"
	case "":
		ref := ctr.Image
		if strings.Contains(ref, "@") {
			return "missing"
		}
		last := ref[strings.LastIndex(ref, "/")+1:]
		tag := ""
		if i := strings.LastIndex(last, ":"); i >= 0 {
			tag = last[i+1:]
		}
		if tag == "" || tag == "latest" {
			return "always"
		}
		return "missing"
	}
	return ""
}

// envs are a container's environment in order, and the values $(VAR)
// references expand to.
type envs struct {
	list   []string
	vals   map[string]string
	secret []string // names whose values are a Secret's
}

func (c *converter) env(d *document, at string, p *plan.Pod, ctr corev1.Container) envs {
	e := envs{vals: map[string]string{}}
	set := func(k, v string) {
		if _, ok := e.vals[k]; ok {
			for i, kv := range e.list {
				if strings.HasPrefix(kv, k+"=") {
					e.list = slices.Delete(e.list, i, i+1)
					break
				}
			}
		}
		e.vals[k] = v
		e.list = append(e.list, k+"="+v)
	}
	ns := p.Namespace
	for i, src := range ctr.EnvFrom {
		ep := fmt.Sprintf("%s.envFrom[%d]", at, i)
		c.errs = append(c.errs, prefix(d, unsupported(ep, src, "prefix", "configMapRef", "secretRef"))...)
		var data map[string]string
		switch {
		case src.ConfigMapRef != nil:
			if cm := c.configMaps[key(ns, src.ConfigMapRef.Name)]; cm != nil {
				data = cm.Data
			} else if !optional(src.ConfigMapRef.Optional) {
				c.fail(d, "%s.configMapRef.name: no ConfigMap %q in namespace %s in this file", ep, src.ConfigMapRef.Name, ns)
			}
		case src.SecretRef != nil:
			if s := c.secrets[key(ns, src.SecretRef.Name)]; s != nil {
				data = secretData(s)
			} else if !optional(src.SecretRef.Optional) {
				c.fail(d, "%s.secretRef.name: no Secret %q in namespace %s in this file", ep, src.SecretRef.Name, ns)
			}
		}
		for _, k := range sortedKeys(data, nil) {
			if !envName(src.Prefix + k) {
				c.fail(d, "%s: key %q: %s", ep, src.Prefix+k, notEnvName)
				continue
			}
			set(src.Prefix+k, data[k])
			if src.SecretRef != nil {
				e.secret = append(e.secret, src.Prefix+k)
			}
		}
	}
	for i, ev := range ctr.Env {
		vp := fmt.Sprintf("%s.env[%d]", at, i)
		if !envName(ev.Name) {
			c.fail(d, "%s.name: %q: %s", vp, ev.Name, notEnvName)
			continue
		}
		if ev.ValueFrom == nil {
			set(ev.Name, expand(ev.Value, e.vals))
			continue
		}
		v, ok := c.envFrom(d, vp+".valueFrom", p, ev.ValueFrom)
		if ok {
			set(ev.Name, v)
			if ev.ValueFrom.SecretKeyRef != nil {
				e.secret = append(e.secret, ev.Name)
			}
		}
	}
	return e
}

func (c *converter) envFrom(d *document, at string, p *plan.Pod, src *corev1.EnvVarSource) (string, bool) {
	c.errs = append(c.errs, prefix(d, unsupported(at, src, "fieldRef", "configMapKeyRef", "secretKeyRef"))...)
	ns := p.Namespace
	switch {
	case src.FieldRef != nil:
		switch src.FieldRef.FieldPath {
		case "metadata.name":
			return p.Name, true
		case "metadata.namespace":
			return ns, true
		}
		c.fail(d, "%s.fieldRef.fieldPath: %q: podbox knows metadata.name and metadata.namespace only", at, src.FieldRef.FieldPath)
	case src.ConfigMapKeyRef != nil:
		r := src.ConfigMapKeyRef
		if cm := c.configMaps[key(ns, r.Name)]; cm != nil {
			if v, ok := cm.Data[r.Key]; ok {
				return v, true
			}
		}
		if !optional(r.Optional) {
			c.fail(d, "%s.configMapKeyRef: no key %q in a ConfigMap %q of namespace %s in this file", at, r.Key, r.Name, ns)
		}
	case src.SecretKeyRef != nil:
		r := src.SecretKeyRef
		if s := c.secrets[key(ns, r.Name)]; s != nil {
			if v, ok := secretData(s)[r.Key]; ok {
				return v, true
			}
		}
		if !optional(r.Optional) {
			c.fail(d, "%s.secretKeyRef: no key %q in a Secret %q of namespace %s in this file", at, r.Key, r.Name, ns)
		}
	}
	return "", false
}

// envName reports whether name is a variable name podbox's -e takes:
// Kubernetes' (printable ASCII but '='), without spaces.
func envName(name string) bool {
	return len(validation.IsRelaxedEnvVarName(name)) == 0 && !strings.Contains(name, " ")
}

const notEnvName = "want a variable name of printable ASCII characters other than '=' and space"

// expand replaces $(VAR) with VAR's value where VAR is defined, and $$ with
// $, as Kubernetes expands command, args and env values; an undefined
// reference stays as written.
func expand(s string, vals map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
			continue
		case '(':
			if end := strings.IndexByte(s[i+2:], ')'); end >= 0 {
				name := s[i+2 : i+2+end]
				if v, ok := vals[name]; ok {
					b.WriteString(v)
					i += 2 + end
					continue
				}
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func expandAll(ss []string, vals map[string]string) []string {
	if ss == nil {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = expand(s, vals)
	}
	return out
}

func (c *converter) resources(d *document, at string, pc *plan.Container, r corev1.ResourceRequirements) {
	rp := at + ".resources"
	c.errs = append(c.errs, prefix(d, unsupported(rp, r, "limits", "requests"))...)
	for _, list := range []struct {
		name string
		l    corev1.ResourceList
	}{{"limits", r.Limits}, {"requests", r.Requests}} {
		for name := range list.l {
			if name != corev1.ResourceMemory && name != corev1.ResourceCPU {
				c.fail(d, "%s.%s.%s: not supported (memory and cpu are)", rp, list.name, name)
			}
		}
	}
	if m, ok := r.Limits[corev1.ResourceMemory]; ok {
		if m.Value() < minMemory {
			c.fail(d, "%s.limits.memory: %s is below the minimum of 6Mi", rp, m.String())
		}
		pc.Memory = m.Value()
	}
	if q, ok := r.Limits[corev1.ResourceCPU]; ok {
		if q.MilliValue() < 10 {
			c.fail(d, "%s.limits.cpu: %s is below the minimum of 10m", rp, q.String())
		}
		pc.CPUs = cpus(q)
	}
	// Requests are what a scheduler places pods by; a bare host places
	// nothing. They must still make sense next to the limits.
	for _, name := range []corev1.ResourceName{corev1.ResourceMemory, corev1.ResourceCPU} {
		req, rok := r.Requests[name]
		lim, lok := r.Limits[name]
		if rok && lok && req.Cmp(lim) > 0 {
			c.fail(d, "%s.requests.%s: %s is more than the limit %s", rp, name, req.String(), lim.String())
		}
	}
}

func (c *converter) security(d *document, at string, pc *plan.Container, sc *corev1.SecurityContext, pod *corev1.PodSecurityContext) {
	sp := at + ".securityContext"
	uid, gid, nonRoot := pod.RunAsUser, pod.RunAsGroup, pod.RunAsNonRoot
	if sc != nil {
		c.errs = append(c.errs, prefix(d, unsupported(sp, sc, "runAsUser", "runAsGroup", "runAsNonRoot", "readOnlyRootFilesystem",
			"privileged", "allowPrivilegeEscalation", "capabilities", "seccompProfile"))...)
		if sc.RunAsUser != nil {
			uid = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = sc.RunAsGroup
		}
		if sc.RunAsNonRoot != nil {
			nonRoot = sc.RunAsNonRoot
		}
		pc.Privileged = sc.Privileged != nil && *sc.Privileged
		if esc := sc.AllowPrivilegeEscalation; esc != nil {
			switch {
			case pc.Privileged && !*esc:
				// As Kubernetes' validation: a privileged container
				// can always gain privileges.
				c.fail(d, "%s.allowPrivilegeEscalation: false contradicts privileged: true", sp)
			case !pc.Privileged && *esc:
				c.fail(d, "%s.allowPrivilegeEscalation: true is not supported without privileged (podbox sets no_new_privs on every other container)", sp)
			}
		}
		if sc.ReadOnlyRootFilesystem != nil {
			pc.ReadOnly = *sc.ReadOnlyRootFilesystem
		}
		if caps := sc.Capabilities; caps != nil {
			for _, cp := range caps.Add {
				pc.CapAdd = append(pc.CapAdd, string(cp))
			}
			for _, cp := range caps.Drop {
				pc.CapDrop = append(pc.CapDrop, string(cp))
			}
		}
	}
	// A container's seccompProfile overrides the pod's. at is the
	// container's path, below its pod's spec ("spec.containers[0]",
	// "spec.template.spec.initContainers[1]").
	profile, profileAt := pod.SeccompProfile, at[:strings.LastIndex(at, "spec.")]+"spec.securityContext.seccompProfile"
	if sc != nil && sc.SeccompProfile != nil {
		profile, profileAt = sc.SeccompProfile, sp+".seccompProfile"
	}
	if profile != nil {
		pc.Seccomp = c.seccomp(d, profileAt, profile)
	}
	if uid != nil && len(validation.IsValidUserID(*uid)) > 0 {
		c.fail(d, "%s.runAsUser: %d: want 0 to %d", sp, *uid, math.MaxInt32)
	}
	if gid != nil && len(validation.IsValidGroupID(*gid)) > 0 {
		c.fail(d, "%s.runAsGroup: %d: want 0 to %d", sp, *gid, math.MaxInt32)
	}
	switch {
	case uid != nil && gid != nil:
		pc.User = fmt.Sprintf("%d:%d", *uid, *gid)
	case uid != nil:
		pc.User = strconv.FormatInt(*uid, 10)
	case gid != nil:
		c.fail(d, "%s.runAsGroup: needs runAsUser too (podbox takes a user as UID[:GID])", sp)
	}
	if nonRoot != nil && *nonRoot {
		switch {
		case uid == nil:
			c.fail(d, "%s.runAsNonRoot: needs runAsUser (podbox does not check the image's user)", sp)
		case *uid == 0:
			c.fail(d, "%s.runAsNonRoot: true, but runAsUser is 0", sp)
		}
	}
}

// seccomp is the --security-opt seccomp= value of a seccompProfile:
// RuntimeDefault is podbox's default profile (Docker's, as containerd's
// RuntimeDefault), Unconfined none, Localhost a file below SeccompRoot.
func (c *converter) seccomp(d *document, at string, p *corev1.SeccompProfile) string {
	local := p.LocalhostProfile != nil && *p.LocalhostProfile != ""
	switch p.Type {
	case corev1.SeccompProfileTypeRuntimeDefault, corev1.SeccompProfileTypeUnconfined:
		if local {
			c.fail(d, "%s.localhostProfile: only for type Localhost", at)
		}
		if p.Type == corev1.SeccompProfileTypeUnconfined {
			return "unconfined"
		}
		return ""
	case corev1.SeccompProfileTypeLocalhost:
		if !local {
			c.fail(d, "%s.localhostProfile: required for type Localhost", at)
			return ""
		}
		rel := *p.LocalhostProfile
		if filepath.IsAbs(rel) || !filepath.IsLocal(rel) {
			c.fail(d, "%s.localhostProfile: %q: want a path below %s, without ..", at, rel, SeccompRoot)
			return ""
		}
		path := filepath.Join(SeccompRoot, rel)
		if fi, err := c.o.Stat(path); err != nil || !fi.Mode().IsRegular() {
			c.fail(d, "%s.localhostProfile: %s is not a profile file on this node", at, path)
			return ""
		}
		return path
	default:
		c.fail(d, "%s.type: %q: want RuntimeDefault, Unconfined or Localhost", at, p.Type)
		return ""
	}
}

func sortedKeys(a map[string]string, b map[string][]byte) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}
