package cli

import (
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podbox/podbox/sandbox"
	"github.com/podbox/podbox/volume"
)

// propagations are the bind propagation modes docker takes, in -v's
// options and --mount's bind-propagation.
var propagations = []string{"rprivate", "private", "rshared", "shared", "rslave", "slave"}

// userMount is a mount parsed from -v or --mount: the record, and whether a
// missing bind source is made (docker's -v) or refused (--mount).
type userMount struct {
	sandbox.Mount
	mkdir bool
}

// parseVolumeFlag parses -v: HOST:CTR[:OPTS] binds the absolute host path
// HOST, NAME:CTR[:OPTS] mounts the named volume NAME (made on first use).
// OPTS are comma-separated: ro or rw, and for a bind a propagation mode.
func parseVolumeFlag(v string) (userMount, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("-v %q: %s", v, fmt.Sprintf(format, a...))
	}
	parts := strings.Split(v, ":")
	switch {
	case len(parts) == 1:
		return userMount{}, bad("want HOST-PATH:CONTAINER-PATH[:ro] or VOLUME:CONTAINER-PATH[:ro] (anonymous volumes are not supported)")
	case len(parts) > 3:
		return userMount{}, bad("too many ':'; want SOURCE:CONTAINER-PATH[:OPTIONS]")
	}
	m := userMount{Mount: sandbox.Mount{Destination: parts[1]}}
	src := parts[0]
	switch {
	case filepath.IsAbs(src):
		m.Type, m.Source, m.mkdir = sandbox.MountBind, filepath.Clean(src), true
	case volume.ValidName(src) == nil:
		m.Type, m.Source = sandbox.MountVolume, src
	case src == "":
		return userMount{}, bad("empty source; want an absolute host path or a volume name")
	default:
		return userMount{}, bad("host path %q is relative: give an absolute path, or a volume name (letters, digits, '_', '.', '-')", src)
	}
	propagation := ""
	if len(parts) == 3 {
		var mode []string // ro or rw, at most one
		for _, o := range strings.Split(parts[2], ",") {
			switch {
			case o == "ro" || o == "rw":
				mode = append(mode, o)
			case slices.Contains(propagations, o):
				if m.Type != sandbox.MountBind {
					return userMount{}, bad("option %q: a propagation mode is for host paths, not volumes", o)
				}
				if propagation != "" {
					return userMount{}, bad("options %s and %s exclude each other", propagation, o)
				}
				propagation = o
			case o == "nocopy" && m.Type == sandbox.MountVolume:
				// podbox never copies the image's files into a volume.
			case o == "z" || o == "Z":
				return userMount{}, bad("option %q: SELinux relabelling is not supported", o)
			default:
				return userMount{}, bad("unknown option %q (want ro or rw, and for a host path one of %s)", o, strings.Join(propagations, ", "))
			}
		}
		if len(mode) > 1 {
			return userMount{}, bad("options %s exclude each other", strings.Join(mode, " and "))
		}
		m.ReadOnly = len(mode) == 1 && mode[0] == "ro"
	}
	if m.Type == sandbox.MountBind {
		if propagation == "" {
			propagation = "rprivate"
		}
		m.Options = []string{"rbind", propagation}
	}
	if err := checkDestination(m.Destination); err != nil {
		return userMount{}, bad("%v", err)
	}
	m.Destination = filepath.Clean(m.Destination)
	return m, nil
}

// parseMountFlag parses --mount as docker does: comma-separated KEY=VALUE
// fields (CSV, so a value with a comma can be quoted): type=bind|volume|tmpfs
// (default volume), source/src, target/dst/destination, readonly/ro, and
// each type's own: bind-propagation, bind-nonrecursive, bind-recursive;
// volume-nocopy; tmpfs-size, tmpfs-mode. consistency is accepted and, as on
// every Linux docker, ignored.
func parseMountFlag(v string) (userMount, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("--mount %q: %s", v, fmt.Sprintf(format, a...))
	}
	fields, err := csv.NewReader(strings.NewReader(v)).Read()
	if err != nil {
		return userMount{}, bad("%v", err)
	}
	m := userMount{Mount: sandbox.Mount{Type: sandbox.MountVolume}}
	propagation, recursive := "", true
	var size, mode string
	typed := map[string]string{} // a type's own option → the type it belongs to
	for _, f := range fields {
		key, val, hasVal := strings.Cut(strings.TrimSpace(f), "=")
		key = strings.ToLower(key)
		flag := func() (bool, error) { // readonly, readonly=true|false
			if !hasVal {
				return true, nil
			}
			b, err := strconv.ParseBool(val)
			if err != nil {
				return false, bad("%s=%q: want true or false", key, val)
			}
			return b, nil
		}
		if !hasVal && !slices.Contains([]string{"readonly", "ro", "bind-nonrecursive", "volume-nocopy"}, key) {
			return userMount{}, bad("option %q needs a value (%s=VALUE)", key, key)
		}
		switch key {
		case "type":
			if val != sandbox.MountBind && val != sandbox.MountVolume && val != sandbox.MountTmpfs {
				return userMount{}, bad("unknown type %q (want bind, volume or tmpfs)", val)
			}
			m.Type = val
		case "source", "src":
			m.Source = val
		case "target", "dst", "destination":
			m.Destination = val
		case "readonly", "ro":
			if m.ReadOnly, err = flag(); err != nil {
				return userMount{}, err
			}
		case "consistency":
		case "bind-propagation":
			if !slices.Contains(propagations, val) {
				return userMount{}, bad("bind-propagation=%q: want one of %s", val, strings.Join(propagations, ", "))
			}
			propagation, typed[key] = val, sandbox.MountBind
		case "bind-nonrecursive":
			nonrec, err := flag()
			if err != nil {
				return userMount{}, err
			}
			recursive, typed[key] = !nonrec, sandbox.MountBind
		case "bind-recursive":
			switch val {
			case "enabled":
				recursive = true
			case "disabled":
				recursive = false
			case "writable", "readonly":
				return userMount{}, bad("bind-recursive=%s is not supported (want enabled or disabled)", val)
			default:
				return userMount{}, bad("bind-recursive=%q: want enabled or disabled", val)
			}
			typed[key] = sandbox.MountBind
		case "volume-nocopy":
			// podbox never copies the image's files into a volume.
			if _, err := flag(); err != nil {
				return userMount{}, err
			}
			typed[key] = sandbox.MountVolume
		case "volume-driver", "volume-label", "volume-opt", "volume-subpath":
			return userMount{}, bad("option %q is not supported: podbox's volumes are local directories", key)
		case "tmpfs-size":
			n, err := parseSize(val)
			if err != nil || n <= 0 {
				return userMount{}, bad("tmpfs-size=%q: want a size such as 64m or 1g", val)
			}
			size, typed[key] = "size="+strconv.FormatInt(n, 10), sandbox.MountTmpfs
		case "tmpfs-mode":
			n, err := strconv.ParseUint(val, 8, 32)
			if err != nil || n > 0o7777 {
				return userMount{}, bad("tmpfs-mode=%q: want octal permissions such as 1777", val)
			}
			mode, typed[key] = fmt.Sprintf("mode=%o", n), sandbox.MountTmpfs
		default:
			return userMount{}, bad("unknown option %q", key)
		}
	}
	for key, t := range typed {
		if t != m.Type {
			return userMount{}, bad("option %q is for type=%s, not type=%s", key, t, m.Type)
		}
	}
	if m.Destination == "" {
		return userMount{}, bad("target is required (target=CONTAINER-PATH)")
	}
	if err := checkDestination(m.Destination); err != nil {
		return userMount{}, bad("%v", err)
	}
	m.Destination = filepath.Clean(m.Destination)
	switch m.Type {
	case sandbox.MountBind:
		if m.Source == "" {
			return userMount{}, bad("source is required for type=bind")
		}
		if !filepath.IsAbs(m.Source) {
			return userMount{}, bad("source %q is relative: give an absolute host path", m.Source)
		}
		m.Source = filepath.Clean(m.Source)
		// docker refuses a missing bind source with --mount, unlike -v.
		if _, err := os.Stat(m.Source); errors.Is(err, os.ErrNotExist) {
			return userMount{}, bad("bind source path %s does not exist", m.Source)
		} else if err != nil {
			return userMount{}, bad("bind source: %v", err)
		}
		if propagation == "" {
			propagation = "rprivate"
		}
		m.Options = []string{"rbind", propagation}
		if !recursive {
			m.Options[0] = "bind"
		}
	case sandbox.MountVolume:
		if m.Source == "" {
			return userMount{}, bad("source=VOLUME is required for type=volume (anonymous volumes are not supported)")
		}
		if err := volume.ValidName(m.Source); err != nil {
			return userMount{}, bad("%v", err)
		}
	case sandbox.MountTmpfs:
		if m.Source != "" {
			return userMount{}, bad("type=tmpfs takes no source")
		}
		for _, o := range []string{size, mode} {
			if o != "" {
				m.Options = append(m.Options, o)
			}
		}
	}
	return m, nil
}

// checkDestination refuses a container path a user mount cannot have.
func checkDestination(dest string) error {
	if !filepath.IsAbs(dest) {
		return fmt.Errorf("container path %q is not absolute", dest)
	}
	switch d := filepath.Clean(dest); d {
	case "/":
		return errors.New("cannot mount over the container's root (/)")
	case "/proc", "/sys", "/dev":
		return fmt.Errorf("%s is the container's own", d)
	case "/etc/hosts", "/etc/hostname", "/etc/resolv.conf":
		return fmt.Errorf("%s is the sandbox's, shared by all its containers", d)
	}
	return nil
}

// parseMounts parses every -v and --mount, refusing two at one path.
func parseMounts(vols, mounts []string) ([]userMount, error) {
	var ms []userMount
	for _, v := range vols {
		m, err := parseVolumeFlag(v)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	for _, v := range mounts {
		m, err := parseMountFlag(v)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	seen := map[string]bool{}
	for _, m := range ms {
		if seen[m.Destination] {
			return nil, fmt.Errorf("-v/--mount: two mounts at %s", m.Destination)
		}
		seen[m.Destination] = true
	}
	return ms, nil
}

// specMounts adds ms to the spec's mounts, as runc gets them: a bind of the
// host path or of the volume's data directory (mountpoint names them), or
// a tmpfs with docker's default options. A mount at the path of one of the
// spec's own (/dev/shm) replaces it. They go after the spec's own, parents
// before children, so that /data is mounted before /data/cache.
func specMounts(spec *specs.Spec, ms []sandbox.Mount, mountpoint func(volume string) string) {
	user := make([]specs.Mount, 0, len(ms))
	for _, m := range ms {
		var sm specs.Mount
		switch m.Type {
		case sandbox.MountBind:
			sm = specs.Mount{Type: "bind", Source: m.Source, Options: slices.Clone(m.Options)}
		case sandbox.MountVolume:
			sm = specs.Mount{Type: "bind", Source: mountpoint(m.Source), Options: []string{"rbind", "rprivate"}}
		case sandbox.MountTmpfs:
			// docker's defaults for a tmpfs mount.
			sm = specs.Mount{Type: "tmpfs", Source: "tmpfs", Options: append([]string{"nosuid", "nodev", "noexec"}, m.Options...)}
		}
		sm.Destination = m.Destination
		if m.ReadOnly {
			sm.Options = append(sm.Options, "ro")
		} else {
			sm.Options = append(sm.Options, "rw")
		}
		user = append(user, sm)
	}
	slices.SortStableFunc(user, func(a, b specs.Mount) int {
		return strings.Count(a.Destination, "/") - strings.Count(b.Destination, "/")
	})
	spec.Mounts = slices.DeleteFunc(spec.Mounts, func(own specs.Mount) bool {
		return slices.ContainsFunc(user, func(u specs.Mount) bool { return u.Destination == own.Destination })
	})
	spec.Mounts = append(spec.Mounts, user...)
}
