// Package runspec applies an image's config to a container's process as
// container runtimes do (Docker, containerd, podman): the command from
// Entrypoint and Cmd with the user's overrides, the environment, the working
// directory, and the user, whose names it resolves in the image's own
// /etc/passwd and /etc/group.
//
// It decides the process only: it never writes a spec, never reads the
// image store's index and never mounts.
package runspec

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
)

// Overrides are what the user gave on the command line; empty means "as the
// image says".
type Overrides struct {
	// Entrypoint replaces the image's Entrypoint, and, as with docker run
	// --entrypoint, drops the image's Cmd too. Set with a nil slice it
	// means "not given".
	Entrypoint []string
	// Cmd replaces the image's Cmd (the arguments after --).
	Cmd        []string
	Env        []string // KEY=VALUE, over the image's
	WorkingDir string
	User       string
}

// Image is what an image says about its process.
type Image struct {
	Entrypoint, Cmd []string
	Env             []string
	WorkingDir      string
	User            string
}

// Process is the result.
type Process struct {
	Args           []string
	Env            []string
	Cwd            string
	UID, GID       uint32
	AdditionalGIDs []uint32
}

// DefaultPath is the PATH of a container whose image sets none, as
// containerd and Docker give it.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Resolve computes the process. files reads the container's root
// filesystem (the image's layers merged), for /etc/passwd and /etc/group.
func Resolve(img Image, o Overrides, files fs.FS) (*Process, error) {
	var args []string
	switch {
	case o.Entrypoint != nil:
		args = append(append(args, o.Entrypoint...), o.Cmd...)
	case o.Cmd != nil:
		args = append(append(args, img.Entrypoint...), o.Cmd...)
	default:
		args = append(append(args, img.Entrypoint...), img.Cmd...)
	}
	if len(args) == 0 || args[0] == "" {
		return nil, errors.New("no command: the image has no Entrypoint or Cmd; give one after --")
	}
	p := &Process{Args: args, Cwd: "/"}
	env := img.Env
	if !hasKey(env, "PATH") {
		env = append([]string{DefaultPath}, env...)
	}
	p.Env = MergeEnv(env, o.Env)
	if img.WorkingDir != "" {
		p.Cwd = img.WorkingDir
	}
	if o.WorkingDir != "" {
		p.Cwd = o.WorkingDir
	}
	user := img.User
	if o.User != "" {
		user = o.User
	}
	var err error
	if p.UID, p.GID, p.AdditionalGIDs, err = ResolveUser(user, files); err != nil {
		return nil, err
	}
	return p, nil
}

// MergeEnv returns base with every KEY=VALUE of over replacing the same KEY
// in place or, when new, appended, so the process sees each variable once.
func MergeEnv(base, over []string) []string {
	out := append([]string(nil), base...)
	for _, kv := range over {
		k, _, _ := strings.Cut(kv, "=")
		i := indexKey(out, k)
		if i >= 0 {
			out[i] = kv
		} else {
			out = append(out, kv)
		}
	}
	return out
}

func hasKey(env []string, k string) bool { return indexKey(env, k) >= 0 }

func indexKey(env []string, k string) int {
	for i, kv := range env {
		if bk, _, _ := strings.Cut(kv, "="); bk == k {
			return i
		}
	}
	return -1
}

// ResolveUser turns USER[:GROUP] (names or numbers) into IDs as containerd's
// WithUser does: a name must be in the image's /etc/passwd (a group name in
// /etc/group); a UID without a group takes the primary group /etc/passwd
// gives it, or 0; the supplementary groups are those /etc/group lists the
// user in.
func ResolveUser(spec string, files fs.FS) (uid, gid uint32, extra []uint32, err error) {
	if spec == "" {
		spec = "0"
	}
	user, group, hasGroup := strings.Cut(spec, ":")
	if user == "" || hasGroup && group == "" {
		return 0, 0, nil, fmt.Errorf("user %q: want USER[:GROUP]", spec)
	}
	passwd, perr := readDB(files, "etc/passwd")
	userName := ""
	if n, ok := parseID(user); ok {
		uid = n
		if e := findEntry(passwd, func(e []string) bool { return e[2] == user }); e != nil {
			userName = e[0]
			gid, _ = parseID(e[3])
		}
	} else {
		e := findEntry(passwd, func(e []string) bool { return e[0] == user })
		if e == nil {
			return 0, 0, nil, unknown("user", user, "/etc/passwd", perr)
		}
		// A UID that does not parse must not become 0: the image asked
		// for a user, not for root.
		var ok bool
		if uid, ok = parseID(e[2]); !ok {
			return 0, 0, nil, badID("user", user, "/etc/passwd", e[2])
		}
		gid, _ = parseID(e[3])
		userName = user
	}
	groups, gerr := readDB(files, "etc/group")
	if hasGroup {
		if n, ok := parseID(group); ok {
			gid = n
		} else {
			e := findEntry(groups, func(e []string) bool { return e[0] == group })
			if e == nil {
				return 0, 0, nil, unknown("group", group, "/etc/group", gerr)
			}
			var ok bool
			if gid, ok = parseID(e[2]); !ok {
				return 0, 0, nil, badID("group", group, "/etc/group", e[2])
			}
		}
	}
	if userName != "" {
		for _, e := range groups {
			for _, m := range strings.Split(e[3], ",") {
				if m == userName {
					if g, ok := parseID(e[2]); ok && g != gid {
						extra = append(extra, g)
					}
				}
			}
		}
	}
	return uid, gid, extra, nil
}

func unknown(kind, name, file string, readErr error) error {
	if readErr != nil {
		return fmt.Errorf("%s %q: the container's root has no readable %s: %w", kind, name, file, readErr)
	}
	return fmt.Errorf("%s %q: not found in the container's %s", kind, name, file)
}

func badID(kind, name, file, id string) error {
	return fmt.Errorf("%s %q: the container's %s gives it the ID %q, not a number", kind, name, file, id)
}

func parseID(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil
}

// readDB reads a colon-separated database (/etc/passwd, /etc/group),
// skipping comments and lines too short to use.
func readDB(files fs.FS, name string) ([][]string, error) {
	if files == nil {
		return nil, fs.ErrNotExist
	}
	f, err := files.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(io.LimitReader(f, 16<<20))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		e := strings.Split(line, ":")
		if len(e) < 3 {
			continue
		}
		for len(e) < 4 { // a group without its member list
			e = append(e, "")
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

func findEntry(db [][]string, match func([]string) bool) []string {
	for _, e := range db {
		if match(e) {
			return e
		}
	}
	return nil
}
