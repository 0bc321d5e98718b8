package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podbox/podbox/sandbox"
)

// Bad mount, limit and capability flags fail with one line naming the flag
// and its value, before anything is made: no state, no shim, no volume and
// no host directory for -v.
func TestRunOptionsBadInputChangesNothing(t *testing.T) {
	e := newTestEnv(t)
	rootfs := t.TempDir()
	host := t.TempDir()
	newDir := filepath.Join(host, "new")
	// A profile that is not JSON (a line break inside, which the error
	// must not carry), and one with nothing in it.
	badProfile := filepath.Join(t.TempDir(), "bad.json")
	emptyProfile := filepath.Join(t.TempDir(), "empty.json")
	os.WriteFile(badProfile, []byte("{\n\"defaultAction\": SCMP_ACT_ERRNO}"), 0o644)
	os.WriteFile(emptyProfile, []byte("{}"), 0o644)
	e.addSandbox("web", sandbox.StateReady, true)
	run := []string{"run", "--sandbox", "web", "--rootfs", rootfs}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"-v", "./data:/data"}, []string{`-v "./data:/data"`, "relative"}},
		{[]string{"-v", "/data"}, []string{`-v "/data"`, "anonymous volumes are not supported"}},
		{[]string{"-v", host + ":/etc/hosts"}, []string{"/etc/hosts is the sandbox's"}},
		{[]string{"--mount", "type=bind,source=/nonexistent-podbox,target=/x"}, []string{`--mount "type=bind,source=/nonexistent-podbox,target=/x"`, "does not exist"}},
		{[]string{"--mount", "type=nfs,target=/x"}, []string{`--mount "type=nfs,target=/x"`, `unknown type "nfs"`}},
		{[]string{"--mount", "type=tmpfs,target=/x,frob=1"}, []string{`unknown option "frob"`}},
		{[]string{"-v", host + ":/x", "--mount", "type=tmpfs,target=/x"}, []string{"two mounts at /x"}},
		{[]string{"--memory", "4m"}, []string{`--memory "4m"`, "below the minimum of 6 MiB"}},
		{[]string{"--memory", "12q"}, []string{`--memory "12q"`, "want a size"}},
		{[]string{"--cpus", "0"}, []string{`--cpus "0"`, "at least 0.01"}},
		{[]string{"--cpus", "-1"}, []string{`--cpus "-1"`}},
		{[]string{"--cpus", "1000"}, []string{`--cpus "1000"`, "more than the node's"}},
		{[]string{"--pids-limit", "-3"}, []string{"--pids-limit -3"}},
		{[]string{"--cap-add", "BOGUS"}, []string{`--cap-add "BOGUS": unknown capability`}},
		{[]string{"--cap-drop", "cap_frob"}, []string{`--cap-drop "cap_frob": unknown capability`}},
		{[]string{"--security-opt", "apparmor=unconfined"}, []string{`--security-opt "apparmor=unconfined": unknown option`}},
		{[]string{"--security-opt", "seccomp"}, []string{`--security-opt "seccomp": unknown option`}},
		{[]string{"--security-opt", "seccomp="}, []string{`--security-opt "seccomp=": no profile`}},
		{[]string{"--security-opt", "seccomp=/nonexistent-podbox.json"}, []string{"--security-opt seccomp=/nonexistent-podbox.json:", "no such file"}},
		{[]string{"--security-opt", "seccomp=" + badProfile}, []string{"--security-opt seccomp=" + badProfile + ":", "invalid character"}},
		{[]string{"--security-opt", "seccomp=" + emptyProfile}, []string{"--security-opt seccomp=" + emptyProfile + ":", "no defaultAction"}},
		{[]string{"--privileged", "--cap-drop", "NET_RAW"}, []string{"--privileged and --cap-drop exclude each other"}},
		{[]string{"--privileged", "--security-opt", "seccomp=" + emptyProfile}, []string{"--privileged and --security-opt seccomp=PROFILE exclude each other"}},
		// A named volume and a missing -v host path are made only once
		// everything else is right.
		{[]string{"-v", "data:/data", "-v", newDir + ":/new", "--memory", "12q"}, []string{`--memory "12q"`}},
		{[]string{"-v", "data:/data", "-v", newDir + ":/new", "--cap-add", "BOGUS"}, []string{`--cap-add "BOGUS"`}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			before := e.tree()
			args := append(append(append([]string{}, run...), tc.args...), "--", "true")
			code, out, stderr := e.run(args...)
			assertOneLineError(t, code, stderr, append([]string{`container "(unnamed)": run:`}, tc.want...)...)
			if out != "" {
				t.Errorf("stdout %q", out)
			}
			e.assertUntouched(before)
			if _, err := os.Stat(newDir); !os.IsNotExist(err) {
				t.Errorf("the -v host directory was made for bad input: %v", err)
			}
		})
	}
}

func TestSandboxCreateLimitsBadInput(t *testing.T) {
	e := newTestEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--memory", "5m"}, `--memory "5m": below the minimum of 6 MiB`},
		{[]string{"--memory", "12q"}, `--memory "12q": want a size`},
		{[]string{"--cpus", "0"}, `--cpus "0": want at least 0.01`},
		{[]string{"--cpus", "-0.5"}, `--cpus "-0.5"`},
		{[]string{"--cpus", "999"}, `--cpus "999": more than the node's`},
	} {
		before := e.tree()
		code, out, stderr := e.run(append([]string{"sandbox", "create", "--name", "pod"}, tc.args...)...)
		assertOneLineError(t, code, stderr, `sandbox "pod": create:`, tc.want)
		if out != "" {
			t.Errorf("stdout %q", out)
		}
		e.assertUntouched(before)
	}
}

func TestCreateLimitAnnotations(t *testing.T) {
	ann, err := createOptions{network: "bridge", memory: "32m", cpus: "0.5"}.annotations(sandbox.NewID())
	if err != nil {
		t.Fatal(err)
	}
	if ann["io.podbox.memory"] != "33554432" || ann["io.podbox.cpus"] != "0.5" {
		t.Errorf("annotations %v", ann)
	}
	ann, _ = createOptions{network: "bridge", cpus: "1500m"}.annotations(sandbox.NewID())
	if _, ok := ann["io.podbox.memory"]; ok || ann["io.podbox.cpus"] != "1.5" {
		t.Errorf("annotations %v", ann)
	}
}

// The volume commands need no shim: create, ls (table, -q, json), inspect,
// and rm, which refuses a volume a container's record mounts.
func TestVolumeCommands(t *testing.T) {
	e := newTestEnv(t)
	if code, out, stderr := e.run("volume", "ls", "-o", "json"); code != 0 || out != "[]\n" {
		t.Errorf("ls -o json of no volumes: %d %q %s", code, out, stderr)
	}
	for range 2 { // a second create is no error, as docker's
		if code, out, stderr := e.run("volume", "create", "data"); code != 0 || out != "data\n" {
			t.Fatalf("volume create: %d %q %s", code, out, stderr)
		}
	}
	code, out, _ := e.run("volume", "create")
	if code != 0 || len(strings.TrimSpace(out)) != 32 {
		t.Errorf("volume create without a name: %d %q", code, out)
	}
	anon := strings.TrimSpace(out)

	sb := e.addSandbox("web", sandbox.StateReady, false)
	c := e.addContainer(sb, "app", sandbox.ContainerStopped)
	c.Config = &sandbox.ContainerConfig{Mounts: []sandbox.Mount{{Type: sandbox.MountVolume, Source: "data", Destination: "/data"}}}
	if err := e.store().SaveContainer(c); err != nil {
		t.Fatal(err)
	}

	if code, out, _ := e.run("volume", "ls", "-q"); code != 0 || out != anon+"\ndata\n" && out != "data\n"+anon+"\n" {
		t.Errorf("ls -q = %q", out)
	}
	if code, out, _ := e.run("volume", "ls"); code != 0 || !strings.Contains(out, "VOLUME NAME") || !strings.Contains(out, "data ") || !strings.Contains(out, " app ") {
		t.Errorf("ls:\n%s", out)
	}
	code, out, _ = e.run("volume", "inspect", "data")
	var views []struct {
		Name, Mountpoint string
		UsedBy           []string
	}
	if err := json.Unmarshal([]byte(out), &views); code != 0 || err != nil || len(views) != 1 ||
		views[0].Mountpoint != filepath.Join(e.root, "volumes", "data", "_data") || len(views[0].UsedBy) != 1 || views[0].UsedBy[0] != "app" {
		t.Errorf("inspect: %d %v %s", code, err, out)
	}

	before := e.tree()
	for _, args := range [][]string{{"volume", "rm", "data"}, {"volume", "rm", "-f", "data"}, {"volume", "rm", anon, "data"}} {
		code, _, stderr := e.run(args...)
		assertOneLineError(t, code, stderr, `volume "data": remove: in use by container "app"`)
	}
	code, _, stderr := e.run("volume", "rm", "nope")
	assertOneLineError(t, code, stderr, `volume "nope"`, "no such volume")
	code, _, stderr = e.run("volume", "create", "a/b")
	assertOneLineError(t, code, stderr, `volume name "a/b" is invalid`)
	code, _, stderr = e.run("volume", "inspect", "nope")
	assertOneLineError(t, code, stderr, `volume "nope"`, "no such volume")
	e.assertUntouched(before)

	if code, _, stderr := e.run("volume", "rm", "-f", anon, "nope"); code != 0 {
		t.Errorf("rm -f of a volume and a missing one: %s", stderr)
	}
	if err := e.store().RemoveContainerRecord(c); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := e.run("volume", "rm", "data"); code != 0 {
		t.Errorf("rm of a volume no container mounts: %s", stderr)
	}
	if code, out, _ := e.run("volume", "ls", "-q"); code != 0 || out != "" {
		t.Errorf("ls -q after rm = %q", out)
	}
}
