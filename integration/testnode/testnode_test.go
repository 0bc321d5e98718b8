package testnode_test

import (
	"context"
	"strings"
	"testing"

	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/netsetup"
)

// A node namespace is fresh (only lo, and lo up), really separate from the
// machine's own, and gone after the test.
func TestNodeIsFreshAndRemoved(t *testing.T) {
	var pin string
	t.Run("node", func(t *testing.T) {
		n := testnode.New(t)
		pin = n.Path
		out, err := n.Command(context.Background(), "ip", "-o", "link", "show").CombinedOutput()
		if err != nil {
			t.Fatalf("ip link in node: %v: %s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], "lo:") || !strings.Contains(lines[0], "UP") {
			t.Fatalf("fresh node should hold only lo, up; ip link says:\n%s", out)
		}
		if !netsetup.IsNetNSPin(pin) {
			t.Fatalf("%s is not a netns pin", pin)
		}
	})
	if netsetup.IsNetNSPin(pin) {
		t.Fatalf("node pin %s still mounted after the test", pin)
	}
}
