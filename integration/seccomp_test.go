package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Seccomp (issue #17) through the real CLI, shim, pause and runc in the
// test's own node: the pause under its own allow-list, containers under
// docker's default profile unless told otherwise.

// statusField reads one field of /proc/PID/status.
func statusField(t *testing.T, pid int, field string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return ""
}

// The pause that podbox starts (uid 65535, no capabilities) filters itself
// as the last step of its start, and under the filter it still reaps the
// sandbox's orphans as PID 1 and exits 0 on SIGTERM.
func TestSeccompPause(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	n.sandbox("--name", "pod", "--share-pid")
	pause := int(n.inspect("pod")["pausePid"].(float64))
	deadline := time.Now().Add(5 * time.Second)
	for statusField(t, pause, "Seccomp") != "2" {
		if time.Now().After(deadline) {
			t.Fatalf("the pause (pid %d) is not under a seccomp filter: Seccomp %s", pause, statusField(t, pause, "Seccomp"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if f, nnp := statusField(t, pause, "Seccomp_filters"), statusField(t, pause, "NoNewPrivs"); f != "1" || nnp != "1" {
		t.Errorf("the pause (pid %d): Seccomp_filters %s, NoNewPrivs %s; want 1 and 1", pause, f, nnp)
	}

	// An orphan reparented to the pause, reaped once it exits.
	script := `sh -c "sleep 0.3 &"; sleep 1; echo "zombies $(grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l)"`
	if out := n.mustRun("run", "--rm", "--sandbox", "pod", "--rootfs", fs, "--", "sh", "-c", script); out != "zombies 0\n" {
		t.Errorf("under its filter the pause left an orphan a zombie: %q", out)
	}
	if s := statusField(t, pause, "State"); strings.HasPrefix(s, "Z") {
		t.Fatalf("the pause died reaping: %s", s)
	}

	if err := syscall.Kill(pause, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		if exit, _ := n.inspect("pod")["pauseExit"].(map[string]any); exit != nil {
			if exit["status"] != 0.0 {
				t.Errorf("the pause's exit status on SIGTERM under its filter: %v, want 0", exit["status"])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pause has not exited 15 s after SIGTERM")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSeccompRun(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	n.sandbox("--name", "pod")
	run := func(args ...string) (int, string, string) {
		t.Helper()
		return n.run(append([]string{"run", "--rm", "--sandbox", "pod", "--rootfs", fs}, args...)...)
	}
	// A user namespace needs no capability, so without a filter any
	// container may make one; docker's default profile allows unshare
	// only to a container with CAP_SYS_ADMIN.
	status := []string{"--", "sh", "-c", "grep '^Seccomp:' /proc/self/status; unshare -U true && echo unshared"}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"default", nil, "Seccomp:\t2\n"},
		{"unconfined", []string{"--security-opt", "seccomp=unconfined"}, "Seccomp:\t0\nunshared\n"},
		{"privileged: no filter", []string{"--privileged"}, "Seccomp:\t0\nunshared\n"},
		{"CAP_SYS_ADMIN", []string{"--cap-add", "SYS_ADMIN"}, "Seccomp:\t2\nunshared\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, stderr := run(append(tt.args, status...)...)
			if out != tt.want {
				t.Errorf("run %v: exit %d, stdout %q, stderr %q; want stdout %q", tt.args, code, out, stderr, tt.want)
			}
			if !strings.Contains(tt.want, "unshared") && (code == 0 || !strings.Contains(stderr, "Operation not permitted")) {
				t.Errorf("run %v: unshare -U: exit %d, stderr %q; want Operation not permitted", tt.args, code, stderr)
			}
		})
	}

	t.Run("profile file", func(t *testing.T) {
		profile := filepath.Join(t.TempDir(), "no-mkdir.json")
		os.WriteFile(profile, []byte(`{"defaultAction": "SCMP_ACT_ALLOW",
			"syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}`), 0o644)
		n.mustRun("run", "-d", "--sandbox", "pod", "--name", "filtered", "--security-opt", "seccomp="+profile,
			"--rootfs", fs, "--", "sleep", "600")
		t.Cleanup(func() { n.run("rm", "-f", "filtered") })
		code, out, stderr := n.run("exec", "filtered", "--", "sh", "-c", "grep '^Seccomp:' /proc/self/status; mkdir /tmp/d")
		if code == 0 || out != "Seccomp:\t2\n" || !strings.Contains(stderr, "Permission denied") {
			t.Errorf("exec under a profile refusing mkdir with EACCES: exit %d, stdout %q, stderr %q", code, out, stderr)
		}
		if cfg := n.containerConfig("filtered"); cfg["seccomp"] != profile {
			t.Errorf("inspect's config %v, want seccomp %s", cfg, profile)
		}
	})

	t.Run("privileged: capabilities, devices, /proc, /sys", func(t *testing.T) {
		// Every capability, the host's devices, /sys writable, /proc
		// unmasked: /proc/keys is masked with /dev/null otherwise.
		script := "grep '^CapEff:' /proc/self/status; test -c /dev/kmsg && echo kmsg; grep ' /sys sysfs rw' /proc/mounts >/dev/null && echo sys-rw; test -f /proc/keys && echo keys; unshare -n true && echo netns"
		code, out, stderr := run("--privileged", "--", "sh", "-c", script)
		bnd := statusField(t, os.Getpid(), "CapBnd")
		if want := "CapEff:\t" + bnd + "\nkmsg\nsys-rw\nkeys\nnetns\n"; code != 0 || out != want {
			t.Errorf("--privileged: exit %d, stdout %q, stderr %q; want %q", code, out, stderr, want)
		}
		code, out, _ = run("--", "sh", "-c", "test -c /dev/kmsg || echo no-kmsg; test -c /proc/keys && echo keys-masked")
		if code != 0 || out != "no-kmsg\nkeys-masked\n" {
			t.Errorf("without --privileged: exit %d, stdout %q; want no /dev/kmsg and /proc/keys masked", code, out)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, tt := range []struct {
			args []string
			want string
		}{
			{[]string{"--security-opt", "label=disable"}, `--security-opt "label=disable": unknown option`},
			{[]string{"--security-opt", "seccomp=/nonexistent.json"}, "--security-opt seccomp=/nonexistent.json: open /nonexistent.json: no such file or directory"},
		} {
			before := n.mustRun("ps", "-a", "-q")
			code, out, stderr := run(append(tt.args, "--", "true")...)
			assertOneLineError(t, code, stderr, tt.want)
			if out != "" || n.mustRun("ps", "-a", "-q") != before {
				t.Errorf("run %v: stdout %q, or a container was made", tt.args, out)
			}
		}
	})
}
