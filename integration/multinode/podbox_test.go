package multinode

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/podbox/podbox/integration/rootfs"
	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/sandbox"
)

// binaries are podbox's programs, built once for all subtests.
type binaries struct {
	podbox, shim, pause string
	// rootfs is a busybox root filesystem whose httpd answers
	// /cgi-bin/who with the client's address.
	rootfs string
}

// whoScript is the CGI program of the test's server pod: it answers with a
// fixed greeting and the address the request came from, as httpd saw it.
const whoScript = `#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
echo "hello from $(hostname) to $REMOTE_ADDR"
`

const httpPort = "8080"

func buildBinaries(t *testing.T) binaries {
	t.Helper()
	testnode.RequirePrivileged(t)
	testnode.RequireBinary(t, "runc")
	testnode.RequireBinary(t, "nsenter")
	testnode.RequireBinary(t, "ip")
	if _, err := os.Stat(rootfs.Busybox); err != nil {
		testnode.Skip(t, "%s missing (install busybox-static): %v", rootfs.Busybox, err)
	}
	b := binaries{
		podbox: testnode.Binary(t, "podbox"),
		shim:   testnode.Binary(t, "containerd-shim-podbox-v1"),
		pause:  os.Getenv("PODBOX_PAUSE"),
		rootfs: filepath.Join(t.TempDir(), "rootfs"),
	}
	if b.pause == "" {
		b.pause = testnode.Binary(t, "podbox-pause")
	}
	if err := rootfs.BuildBusybox(b.rootfs, "index\n"); err != nil {
		t.Fatal(err)
	}
	cgi := filepath.Join(b.rootfs, "www", "cgi-bin")
	if err := os.MkdirAll(cgi, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cgi, "who"), []byte(whoScript), 0o755); err != nil {
		t.Fatal(err)
	}
	return b
}

// podboxNode is podbox on one LAN node: its own state root, cgroup parent
// and environment, the CLI run inside the node's namespace.
type podboxNode struct {
	*lanNode
	t      *testing.T
	bin    binaries
	root   string
	cgroup string
	env    []string
	// pristine is the node's network state before podbox touched it.
	pristine []string
	// wasReset is set once `node reset` succeeded.
	wasReset bool
}

// newPodboxNode prepares podbox on n and registers the end-of-test checks
// (see track).
func newPodboxNode(t *testing.T, n *lanNode, bin binaries) *podboxNode {
	t.Helper()
	root := t.TempDir()
	cg := "podbox-multinode-" + sandbox.NewID()[:12]
	pn := &podboxNode{lanNode: n, t: t, bin: bin, root: root, cgroup: cg, env: append(os.Environ(),
		"PODBOX_ROOT="+root, "PODBOX_SHIM="+bin.shim, "PODBOX_PAUSE="+bin.pause, "PODBOX_CGROUP_PARENT="+cg)}
	pn.pristine = pn.track()
	return pn
}

// run runs podbox args inside the node and returns its exit code and output.
func (n *podboxNode) run(args ...string) (int, string, string) {
	n.t.Helper()
	return n.Run(n.t, n.env, n.bin.podbox, args...)
}

func (n *podboxNode) mustRun(args ...string) string {
	n.t.Helper()
	code, out, stderr := n.run(args...)
	if code != 0 {
		n.t.Fatalf("%s: podbox %s: exit %d: %s%s", n.name, strings.Join(args, " "), code, stderr, out)
	}
	return out
}

// pod is a sandbox on a node.
type pod struct {
	node  *podboxNode
	name  string
	ip    netip.Addr
	pause int
}

// newPod creates a sandbox and registers its forced removal (a no-op once
// the test removed it).
func (n *podboxNode) newPod(name string) *pod {
	n.t.Helper()
	id := strings.TrimSpace(n.mustRun("sandbox", "create", "--name", name))
	n.t.Cleanup(func() {
		if code, _, stderr := n.run("sandbox", "rm", "-f", id); code != 0 && !strings.Contains(stderr, "not found") {
			n.t.Errorf("%s: cleanup: sandbox rm -f %s: %s", n.name, name, stderr)
		}
	})
	var sb struct {
		IP       string `json:"ip"`
		PausePID int    `json:"pausePid"`
	}
	if err := json.Unmarshal([]byte(n.mustRun("sandbox", "inspect", id)), &sb); err != nil {
		n.t.Fatalf("%s: inspect %s: %v", n.name, name, err)
	}
	ip, err := netip.ParseAddr(sb.IP)
	if err != nil {
		n.t.Fatalf("%s: sandbox %s has no IP (%q): %v", n.name, name, sb.IP, err)
	}
	return &pod{node: n, name: name, ip: ip, pause: sb.PausePID}
}

// serve starts httpd in the pod, in a container of its own.
func (p *pod) serve() {
	p.node.t.Helper()
	p.node.mustRun("run", "--sandbox", p.name, "--name", p.name+"-httpd", "--rootfs", p.node.bin.rootfs, "-d",
		"--", "httpd", "-f", "-p", "0.0.0.0:"+httpPort, "-h", "/www")
}

// fetch runs wget in a new container of the pod, for at most limit, and
// returns what it printed, or the error output and exit code if it failed.
func (p *pod) fetch(url string, limit time.Duration) (string, error) {
	p.node.t.Helper()
	code, out, stderr := p.node.run("run", "--sandbox", p.name, "--rootfs", p.node.bin.rootfs, "--rm",
		// busybox 1.35's wget -T crashes on a refused connection, so
		// timeout bounds it instead; under sh, because timeout execs
		// its command, which as the container's PID 1 would ignore the
		// SIGTERM (and "; exit" keeps sh from exec'ing the last command).
		"--", "sh", "-c", `timeout "$1" wget -q -O - "$2"; exit $?`, "sh", strconv.Itoa(int(limit.Seconds())), url)
	if code != 0 {
		return "", &fetchError{code: code, stderr: stderr + out}
	}
	return out, nil
}

type fetchError struct {
	code   int
	stderr string
}

func (e *fetchError) Error() string {
	return "wget exit " + strconv.Itoa(e.code) + ": " + strings.TrimSpace(e.stderr)
}

// who fetches /cgi-bin/who from server:port, retrying while the server
// starts, and fails the test unless the reply is the server's greeting to
// want (the source address the server must see).
func (p *pod) who(server netip.Addr, serverName string, want netip.Addr) {
	p.node.t.Helper()
	url := whoURL(server)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := p.fetch(url, 5*time.Second)
		if err == nil {
			if exp := "hello from " + serverName + " to " + want.String() + "\n"; out != exp {
				p.node.t.Fatalf("%s on %s: GET %s = %q, want %q", p.name, p.node.name, url, out, exp)
			}
			return
		}
		if time.Now().After(deadline) {
			p.node.t.Fatalf("%s on %s: GET %s: %v", p.name, p.node.name, url, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// eth0 returns the pod's eth0 as seen from inside its namespace.
func (p *pod) eth0() netlink.Link {
	p.node.t.Helper()
	ns, err := netns.GetFromPath("/proc/" + strconv.Itoa(p.pause) + "/ns/net")
	if err != nil {
		p.node.t.Fatalf("pod %s: %v", p.name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		p.node.t.Fatalf("pod %s: netlink: %v", p.name, err)
	}
	defer h.Close()
	l, err := h.LinkByName("eth0")
	if err != nil {
		p.node.t.Fatalf("pod %s: eth0: %v", p.name, err)
	}
	return l
}
