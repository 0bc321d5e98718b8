package multinode

import (
	"testing"

	"github.com/podbox/podbox/integration/testnode"
)

func TestMain(m *testing.M) { testnode.Main(m) }
