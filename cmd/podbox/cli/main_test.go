package cli

import (
	"testing"

	"github.com/podbox/podbox/integration/testnode"
)

// The node commands' tests change network namespaces: fail the run if the
// machine's own one changed.
func TestMain(m *testing.M) { testnode.Main(m) }
