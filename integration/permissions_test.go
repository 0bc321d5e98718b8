package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/integration/testnode"
)

// Everything podbox keeps under its state root is root's alone: with a live
// sandbox holding containers from a root filesystem, from a pulled image and
// with a terminal, a named volume and an exec behind it, and a pod played
// from a manifest with an emptyDir and a configMap, no directory, record,
// log, socket or FIFO has a group or other permission bit. The root is
// fresh, so podbox makes it, and the image is pulled first, so the image
// store makes it.
func TestStateRootIsRootOnly(t *testing.T) {
	n := newCLINodeAt(t, filepath.Join(t.TempDir(), "state"))
	n.env = append(n.env, "PODBOX_KUBE_BIN="+testnode.Binary(t, "podbox-kube"))
	fs := busybox(t)
	reg := newTestRegistry(t, n)
	ref := reg.push(t, "lib/busybox:1", busyboxImage(t))
	n.mustRun("image", "pull", ref)
	t.Cleanup(func() { n.run("image", "prune", "-a") })
	manifest := filepath.Join(t.TempDir(), "pod.yaml")
	if err := os.WriteFile(manifest, []byte(strings.ReplaceAll(volumesPod, "IMAGE", ref)), 0o644); err != nil {
		t.Fatal(err)
	}
	n.mustRun("play", manifest)
	t.Cleanup(func() { n.run("play", "--down", manifest) })
	t.Cleanup(func() { n.run("volume", "rm", "-f", "data") })
	n.sandbox("--name", "pod", "-p", "8094:80")
	n.mustRun("run", "-d", "--sandbox", "pod", "--name", "plain", "--rootfs", fs, "-v", "data:/data", "--", "sleep", "1000")
	n.mustRun("run", "-d", "--sandbox", "pod", "--name", "fromimage", "--image", ref, "--", "sleep", "1000")
	n.mustRun("run", "-d", "-t", "--sandbox", "pod", "--name", "tty", "--rootfs", fs, "--", "sleep", "1000")
	if out := n.mustRun("exec", "plain", "--", "cat", "/etc/hostname"); out != "pod\n" {
		t.Errorf("exec in the sandbox printed %q", out)
	}
	bad, seen := openEntries(t, n.root)
	for _, b := range bad {
		t.Error(b)
	}
	// The walk met what it is meant to judge.
	for _, want := range judged {
		if seen[want] == 0 {
			t.Errorf("the walk met nothing like %s", want)
		}
	}
}

const volumesPod = `apiVersion: v1
kind: ConfigMap
metadata: {name: conf}
data: {greeting: hello}
---
apiVersion: v1
kind: Pod
metadata: {name: vols}
spec:
  volumes:
  - {name: scratch, emptyDir: {}}
  - {name: conf, configMap: {name: conf}}
  containers:
  - name: app
    image: IMAGE
    imagePullPolicy: IfNotPresent
    command: ["sleep", "1000"]
    volumeMounts: [{name: scratch, mountPath: /scratch}, {name: conf, mountPath: /etc/conf}]
`

// judged are entries the walk must meet for its verdict to mean anything:
// records, logs, pid files, the shim's socket, leases.
var judged = []string{
	"sandboxes/*/sandbox.json", "sandboxes/*/containers/*/container.json", "sandboxes/*/containers/*/log",
	"sandboxes/*/containers/*/init.pid", "sandboxes/*/containers/*/work", "s/*", "ipam/*/*",
	"volumes/data", "volumes/data/volume.json", "images/images.json", "images/layers/*",
	"sandboxes/*/volumes",
}

// served are the parts of a state root that are what a sandbox's processes
// see as their own files, through mounts, never through the state root: their
// modes are those files' own (an image's /bin is 0755, a non-root container
// user reads /etc/resolv.conf). Each is matched with everything below it;
// the directories that lead to it are judged like the rest.
var served = []struct{ glob, why string }{
	{"pause-root", "the pause's root filesystem, which it (uid 65535) executes from"},
	{"images/layers/*/diff", "an image layer's files, the lower layers of a container's root"},
	{"images/empty", "the empty lower layer of an image without layers"},
	{"sandboxes/*/containers/*/upper", "a container's writable layer, whose top is its /"},
	{"sandboxes/*/containers/*/rootfs", "the container's root overlay, mounted"},
	{"sandboxes/*/hostname", "bind-mounted into every container of the sandbox"},
	{"sandboxes/*/hosts", "bind-mounted into every container of the sandbox"},
	{"sandboxes/*/resolv.conf", "bind-mounted into every container of the sandbox"},
	{"sandboxes/*/shm", "the sandbox's /dev/shm (a tmpfs, 1777 as /dev/shm is), bind-mounted into every container"},
	{"volumes/*/_data", "a volume's files, mounted into containers"},
	{"sandboxes/*/volumes/*", "a played pod's emptyDirs, configMaps and secrets, mounted into its containers"},
	// runc's state directory is runc's: it keeps it 0711 and its exec
	// FIFO writable by the container's user until the start. The
	// directory podbox gives it is judged.
	{"runc/*", "runc's own state directories"},
}

// openEntries walks root and describes every entry with a group or other
// permission bit, leaving out what served lists and netns pins (nsfs
// inodes, whose mode is the kernel's). seen counts the entries judged that
// match each glob of judged.
func openEntries(t *testing.T, root string) (bad []string, seen map[string]int) {
	t.Helper()
	seen = map[string]int{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		for _, s := range served {
			if ok, _ := filepath.Match(s.glob, rel); ok {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		for _, g := range judged {
			if ok, _ := filepath.Match(g, rel); ok {
				seen[g]++
			}
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		var sfs unix.Statfs_t
		if err := unix.Statfs(path, &sfs); err == nil && sfs.Type == unix.NSFS_MAGIC {
			return nil
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK && st.Mode&0o077 != 0 {
			bad = append(bad, fmt.Sprintf("%s (%s) is open to others: mode %04o", rel, kind(st.Mode), st.Mode&0o7777))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return bad, seen
}

func kind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFREG:
		return "file"
	}
	return fmt.Sprintf("type %o", mode&unix.S_IFMT)
}

// A user other than root gets one line that says podbox must run as root,
// from every command that would touch podbox's state, and nothing changes:
// not the state root of a live sandbox, not the sandbox. Help and version
// still work for that user.
func TestNonRootRefused(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	t.Cleanup(func() { n.run("volume", "rm", "-f", "vol") })
	n.sandbox("--name", "pod")
	n.mustRun("run", "-d", "--sandbox", "pod", "--name", "c", "--rootfs", fs, "--", "sleep", "1000")
	before := tree(t, n.root)

	// The binary where uid 65534 can execute it: test directories are 0700.
	dir, err := os.MkdirTemp("", "podbox-nonroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	podbox := filepath.Join(dir, "podbox")
	b, err := os.ReadFile(n.podbox)
	if err == nil {
		err = os.WriteFile(podbox, b, 0o755)
	}
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	asNobody := func(args ...string) (int, string, string) {
		t.Helper()
		cmd := exec.Command(podbox, args...)
		cmd.Env = n.env
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		n.inNode(func() { err = cmd.Run() })
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("podbox %s as uid 65534: %v", strings.Join(args, " "), err)
		}
		return cmd.ProcessState.ExitCode(), out.String(), errb.String()
	}

	for _, args := range [][]string{
		{"sandbox", "create", "--name", "other"},
		{"sandbox", "rm", "-f", "pod"},
		{"sandbox", "stop", "pod"},
		{"sandbox", "ls"},
		{"run", "-d", "--sandbox", "pod", "--rootfs", fs, "--", "sleep", "1"},
		{"exec", "c", "--", "true"},
		{"rm", "-f", "c"},
		{"ps", "-a"},
		{"logs", "c"},
		{"image", "pull", "localhost:5000/x:1"},
		{"volume", "create", "vol"},
		{"node", "init", "--pod-cidr", "10.244.1.0/24"},
	} {
		code, out, stderr := asNobody(args...)
		want := "podbox must run as root: "
		if code != 1 || out != "" || !strings.HasPrefix(stderr, want) || !strings.Contains(stderr, "uid 65534") ||
			strings.Count(stderr, "\n") != 1 {
			t.Errorf("podbox %s as uid 65534: exit %d, stdout %q, stderr %q; want exit 1 and one line %q…",
				strings.Join(args, " "), code, out, stderr, want)
		}
	}
	for _, args := range [][]string{{"--help"}, {"help", "sandbox"}, {"sandbox", "create", "--help"}, {"version"}} {
		if code, out, stderr := asNobody(args...); code != 0 || out == "" || stderr != "" {
			t.Errorf("podbox %s as uid 65534: exit %d, stdout %q, stderr %q; want its text", strings.Join(args, " "), code, out, stderr)
		}
	}

	if after := tree(t, n.root); !slices.Equal(before, after) {
		t.Errorf("the state root changed:\nbefore %q\nafter  %q", before, after)
	}
	if st := n.inspect("pod")["state"]; st != "ready" {
		t.Errorf("the sandbox is %v after the refusals", st)
	}
	if ps := n.mustRun("ps", "-q"); strings.Count(ps, "\n") != 1 {
		t.Errorf("containers after the refusals: %q", ps)
	}
}

// tree describes every entry under root: path, type and mode, size and
// modification time.
func tree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if rel == "runc" || strings.HasPrefix(rel, "runc/") {
			return nil // runc's own state is runc's to rewrite
		}
		out = append(out, fmt.Sprintf("%s %o %d %d.%d", rel, st.Mode, st.Size, st.Mtim.Sec, st.Mtim.Nsec))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
