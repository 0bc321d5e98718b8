package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/netsetup"
)

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"web", true}, {"a", true}, {"web-1.prod_2", true}, {"9lives", true},
		{"", false}, {"-x", false}, {".x", false}, {"_x", false}, {"a/b", false},
		{"..", false}, {"../etc", false}, {"a b", false}, {"a\nb", false},
		{"Web", true}, {"a-", true}, {"a.", true}, {"é", false}, {"aé", false}, {"a\x00", false},
		{string(make([]byte, 64)), false},
		{"a123456789012345678901234567890123456789012345678901234567890ab", true},   // 63
		{"a1234567890123456789012345678901234567890123456789012345678901ab", false}, // 64
	} {
		err := ValidName("sandbox", tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestSandboxRecordLifecycle(t *testing.T) {
	s := Store{Root: t.TempDir()}
	a := &Sandbox{ID: NewID(), Name: "web", State: StateCreating}
	if err := s.CreateSandboxRecord(a); err != nil {
		t.Fatal(err)
	}
	b := &Sandbox{ID: NewID(), Name: "web"}
	if err := s.CreateSandboxRecord(b); !errors.Is(err, ErrNameInUse) {
		t.Fatalf("second sandbox named web: err = %v, want ErrNameInUse", err)
	}
	if _, err := os.Stat(s.SandboxDir(b.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("refused create left %s behind", s.SandboxDir(b.ID))
	}
	a.State = StateReady
	if err := s.SaveSandbox(a); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{a.ID, "web", a.ID[:5]} {
		got, err := s.ResolveSandbox(ref)
		if err != nil || got.ID != a.ID || got.State != StateReady {
			t.Fatalf("ResolveSandbox(%q) = %+v, %v", ref, got, err)
		}
	}
	if _, err := s.ResolveSandbox("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown sandbox: err = %v, want ErrNotFound", err)
	}
	if err := s.RemoveSandboxRecord(a); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveSandboxRecord(a); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	if ids, _ := s.SandboxIDs(); len(ids) != 0 {
		t.Fatalf("sandboxes left after remove: %v", ids)
	}
	// The name is free again.
	if err := s.CreateSandboxRecord(&Sandbox{ID: NewID(), Name: "web"}); err != nil {
		t.Fatalf("reuse of a released name: %v", err)
	}
}

func TestResolveAmbiguousPrefix(t *testing.T) {
	s := Store{Root: t.TempDir()}
	for _, id := range []string{"abc1" + NewID()[4:], "abc2" + NewID()[4:]} {
		if err := s.CreateSandboxRecord(&Sandbox{ID: id, Name: id[:8]}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.ResolveSandbox("abc"); !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("err = %v, want ErrAmbiguous", err)
	}
	if _, err := s.ResolveSandbox("abc2"); err != nil {
		t.Fatalf("unique prefix: %v", err)
	}
}

func TestContainerRecords(t *testing.T) {
	s := Store{Root: t.TempDir()}
	sb := &Sandbox{ID: NewID(), Name: "pod"}
	if err := s.CreateSandboxRecord(sb); err != nil {
		t.Fatal(err)
	}
	c := &Container{ID: NewID(), Name: "app", SandboxID: sb.ID, State: ContainerCreated}
	if err := s.CreateContainerRecord(c); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateContainerRecord(&Container{ID: NewID(), Name: "app", SandboxID: sb.ID}); !errors.Is(err, ErrNameInUse) {
		t.Fatalf("duplicate container name: err = %v", err)
	}
	got, err := s.ResolveContainer("app")
	if err != nil || got.ID != c.ID || got.SandboxID != sb.ID {
		t.Fatalf("ResolveContainer(app) = %+v, %v", got, err)
	}
	if ids, _ := s.ContainerIDs(sb.ID); len(ids) != 1 || ids[0] != c.ID {
		t.Fatalf("ContainerIDs = %v", ids)
	}
	// Removing the sandbox removes its containers, their links and names.
	if err := s.RemoveSandboxRecord(sb); err != nil {
		t.Fatal(err)
	}
	if ids, _ := s.ContainerIDs(""); len(ids) != 0 {
		t.Fatalf("container links left: %v", ids)
	}
	if _, err := os.Stat(filepath.Join(s.Root, "names", "container", "app")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("container name not released: %v", err)
	}
}

// A sandbox's containers are its container records, as LoadSandbox finds
// them, whatever its own record (never rewritten for a container) says.
func TestSandboxContainersAreItsRecords(t *testing.T) {
	s := Store{Root: t.TempDir()}
	sb := &Sandbox{ID: NewID(), Name: "pod", Containers: []string{"stale"}}
	if err := s.CreateSandboxRecord(sb); err != nil {
		t.Fatal(err)
	}
	load := func() []string {
		t.Helper()
		got, err := s.LoadSandbox(sb.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.Containers
	}
	if got := load(); len(got) != 0 {
		t.Fatalf("new sandbox lists containers %v", got)
	}
	c := &Container{ID: NewID(), Name: "app", SandboxID: sb.ID}
	if err := s.CreateContainerRecord(c); err != nil {
		t.Fatal(err)
	}
	if got := load(); len(got) != 1 || got[0] != c.ID {
		t.Fatalf("after a container's create: containers %v, want [%s]", got, c.ID)
	}
	if err := s.RemoveContainerRecord(c); err != nil {
		t.Fatal(err)
	}
	if got := load(); len(got) != 0 {
		t.Fatalf("after its removal: containers %v, want none", got)
	}
	b, err := os.ReadFile(filepath.Join(s.SandboxDir(sb.ID), "sandbox.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "stale") {
		t.Fatalf("the sandbox record stores a container list: %s", b)
	}
}

// Concurrent creates of one name: exactly one wins.
func TestNameReservationIsExclusive(t *testing.T) {
	s := Store{Root: t.TempDir()}
	var wg sync.WaitGroup
	wins := make(chan string, 32)
	for range 32 {
		wg.Go(func() {
			sb := &Sandbox{ID: NewID(), Name: "same"}
			if s.CreateSandboxRecord(sb) == nil {
				wins <- sb.ID
			}
		})
	}
	wg.Wait()
	close(wins)
	if n := len(wins); n != 1 {
		t.Fatalf("%d creates of the same name succeeded, want 1", n)
	}
}

// A sandbox whose netns pin is still mounted must not be deleted through it.
func TestRemoveRefusesMountedPin(t *testing.T) {
	testnode.RequirePrivileged(t)
	s := Store{Root: t.TempDir()}
	sb := &Sandbox{ID: NewID(), Name: "pinned"}
	if err := s.CreateSandboxRecord(sb); err != nil {
		t.Fatal(err)
	}
	pin := filepath.Join(s.SandboxDir(sb.ID), "netns")
	if err := netsetup.CreateNetNS(pin); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netsetup.RemoveNetNS(pin) })
	if err := s.RemoveSandboxRecord(sb); err == nil {
		t.Fatal("RemoveSandboxRecord succeeded with a mounted netns pin")
	}
	if _, err := s.LoadSandbox(sb.ID); err != nil {
		t.Fatalf("record gone after refused remove: %v", err)
	}
}

// SomeSandboxIDs gives at most n of the sandboxes, each one that exists, and
// all of them when there are fewer.
func TestSomeSandboxIDs(t *testing.T) {
	s := Store{Root: t.TempDir()}
	if ids, err := s.SomeSandboxIDs(3); err != nil || len(ids) != 0 {
		t.Fatalf("empty store: %v, %v", ids, err)
	}
	all := map[string]bool{}
	for range 10 {
		id := NewID()
		if err := s.CreateSandboxRecord(&Sandbox{ID: id, Name: id[:12]}); err != nil {
			t.Fatal(err)
		}
		all[id] = true
	}
	// A temporary entry, as a record being written leaves, is no sandbox.
	if err := os.Mkdir(filepath.Join(s.Root, "sandboxes", ".tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 3, 10, 50} {
		ids, err := s.SomeSandboxIDs(n)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, id := range ids {
			if !all[id] || seen[id] {
				t.Errorf("n=%d: %q is not a sandbox, or listed twice: %v", n, id, ids)
			}
			seen[id] = true
		}
		if want := min(n, len(all)); len(ids) != want {
			t.Errorf("n=%d: %d IDs, want %d", n, len(ids), want)
		}
	}
}
