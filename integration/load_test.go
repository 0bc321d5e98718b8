package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/podbox/podbox/integration/leakcheck"
	"github.com/podbox/podbox/netsetup/ipam"
)

// Load on one node: many CLIs at once, as a script or an orchestrator that
// starts a batch of pods runs them.

// 64 sandboxes created at once on one bridge each get an address of their
// own, held by their own eth0; removed at once, they leave nothing.
func TestParallelCreatesOneBridge(t *testing.T) {
	n := newCLINode(t)
	const count = 64
	names := make([]string, count)
	for i := range names {
		names[i] = fmt.Sprintf("par%02d", i)
	}
	// Whatever a failure leaves, the leak check must see removed first.
	t.Cleanup(func() { parallel(names, func(name string) { n.run("sandbox", "rm", "-f", name) }) })

	parallel(names, func(name string) {
		if code, out, stderr := n.run("sandbox", "create", "--name", name); code != 0 || len(strings.TrimSpace(out)) != 64 {
			t.Errorf("sandbox create --name %s: exit %d, stdout %q, stderr %q", name, code, out, stderr)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	var listed []struct {
		ID, Name, State, IP string
		PausePID            int `json:"pausePid"`
	}
	if err := json.Unmarshal([]byte(n.mustRun("sandbox", "ls", "-o", "json")), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed) != count {
		t.Fatalf("sandbox ls lists %d sandboxes, want %d", len(listed), count)
	}
	owner := map[string]string{}
	for _, sb := range listed {
		if sb.State != "ready" || sb.IP == "" || sb.IP == "10.89.0.1" {
			t.Errorf("sandbox %s: state %s, address %q", sb.Name, sb.State, sb.IP)
			continue
		}
		if other, dup := owner[sb.IP]; dup {
			t.Errorf("sandboxes %s and %s both have %s", other, sb.Name, sb.IP)
		}
		owner[sb.IP] = sb.Name
		// The address is the one its namespace holds, not only the one
		// its record says: the pause's view of its network's local
		// addresses.
		trie, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/fib_trie", sb.PausePID))
		if err != nil || !strings.Contains(string(trie), "|-- "+sb.IP+"\n") {
			t.Errorf("sandbox %s: its network namespace does not hold %s (%v)", sb.Name, sb.IP, err)
		}
	}
	leases := poolLeases(t, n.root)
	if len(leases) != count {
		t.Errorf("%d leases for %d sandboxes: %v", len(leases), count, leases)
	}

	parallel(names, func(name string) {
		if code, _, stderr := n.run("sandbox", "rm", "-f", name); code != 0 {
			t.Errorf("sandbox rm -f %s: exit %d: %s", name, code, stderr)
		}
	})
	if out := n.mustRun("sandbox", "ls", "-q"); out != "" {
		t.Errorf("after the parallel rm -f, sandbox ls -q says %q", out)
	}
	// The leak check, at the end, proves the rest: processes, pins,
	// veths, leases, cgroups and state.
}

// parallel runs fn for every name at once and waits for all. fn reports
// with Errorf; a command that cannot run at all fails the test from fn's
// goroutine, which t.Failed then shows.
func parallel(names []string, fn func(name string)) {
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(name)
		}()
	}
	wg.Wait()
}

// poolLeases lists the leases of every address pool under root as
// "ADDRESS OWNER".
func poolLeases(t *testing.T, root string) []string {
	t.Helper()
	pools, _ := filepath.Glob(filepath.Join(root, "ipam", "*"))
	var out []string
	for _, dir := range pools {
		p, err := ipam.OpenExisting(dir)
		if err != nil {
			t.Fatal(err)
		}
		ls, err := p.Leases()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			out = append(out, l.IP.String()+" "+l.Owner)
		}
	}
	slices.Sort(out)
	return out
}

// Two CLIs that create a sandbox of the same name at the same moment: one
// wins and its sandbox is whole, the other fails with one line naming the
// sandbox and the cause, and leaves nothing of its attempt: no state, pin,
// veth, lease, shim or pause. Several rounds, as the race can fall either
// way at each step of a create.
func TestCreateSameNameRace(t *testing.T) {
	n := newCLINode(t)
	t.Cleanup(func() { n.run("sandbox", "rm", "-f", "race") })
	baseline := leakcheck.Take(n.leaks)
	for round := range 8 {
		type result struct {
			code           int
			stdout, stderr string
		}
		var res [2]result
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range res {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				res[i].code, res[i].stdout, res[i].stderr = n.run("sandbox", "create", "--name", "race")
			}()
		}
		close(start)
		wg.Wait()
		if (res[0].code == 0) == (res[1].code == 0) {
			t.Fatalf("round %d: two creates of one name: %+v; want one success and one failure", round, res)
		}
		win, lose := res[0], res[1]
		if win.code != 0 {
			win, lose = lose, win
		}
		id := strings.TrimSpace(win.stdout)
		if lose.stdout != "" {
			t.Errorf("round %d: the loser printed %q", round, lose.stdout)
		}
		assertOneLineError(t, lose.code, lose.stderr, `sandbox "race": create: name is already used by sandbox `+id[:12])

		// The winner's sandbox is whole and alone.
		if out := n.mustRun("sandbox", "ls", "-q"); out != id+"\n" {
			t.Fatalf("round %d: the winner is %s, sandbox ls -q says %q", round, id, out)
		}
		sb := n.inspect("race")
		if sb["id"] != id || sb["state"] != "ready" {
			t.Errorf("round %d: inspect race: %v", round, sb)
		}
		if leases := poolLeases(t, n.root); !slices.Equal(leases, []string{fmt.Sprint(sb["ip"]) + " " + id}) {
			t.Errorf("round %d: leases %v, want only the winner's %v", round, leases, sb["ip"])
		}
		if pins, _ := filepath.Glob(filepath.Join(n.root, "netns", "*")); len(pins) != 1 {
			t.Errorf("round %d: netns pins %v, want the winner's alone", round, pins)
		}
		n.mustRun("sandbox", "rm", "-f", "race")
		if leaks := baseline.Leaks(); len(leaks) > 0 {
			t.Fatalf("round %d: after the winner's removal:\n  %s", round, strings.Join(leaks, "\n  "))
		}
	}
}
