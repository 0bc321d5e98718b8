package shim

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/podbox/podbox/runtime/restart"
	"github.com/podbox/podbox/runtime/shimclient"
)

// DefaultRoot is podbox's state root when neither --root nor PODBOX_ROOT says
// otherwise.
const DefaultRoot = "/run/podbox"

// Config is what a shim process is told on its command line (in containerd's
// flag names) and environment.
type Config struct {
	Namespace    string // -namespace
	Address      string // -address: containerd's socket (unused by the CLI)
	ID           string // -id
	Bundle       string // -bundle (delete)
	Debug        bool   // -debug
	TTRPCAddress string // $TTRPC_ADDRESS: where events go, if set

	Root         string // $PODBOX_ROOT
	Runtime      string // $PODBOX_RUNTIME: the OCI runtime binary
	CgroupParent string // $PODBOX_CGROUP_PARENT
	PauseBinary  string // $PODBOX_PAUSE
	// ConnectGrace is how long a serving shim waits for its first client
	// before it exits, if it serves nothing ($PODBOX_SHIM_CONNECT_GRACE, a
	// Go duration; zero or less: DefaultConnectGrace). Its starter (containerd,
	// the CLI) connects within milliseconds unless it died meanwhile.
	ConnectGrace time.Duration
	// RestartBackoff is the wait before each restart of a container with
	// a restart policy ($PODBOX_RESTART_BACKOFF, "BASE[,CAP]" in Go
	// durations, over restart.DefaultBackoff): a knob for tests and
	// operators, who may not want to wait 10 s for a first restart.
	RestartBackoff restart.Backoff
	// restartBackoffErr is why $PODBOX_RESTART_BACKOFF was not taken; the
	// serving shim logs it.
	restartBackoffErr error
}

// DefaultConnectGrace is Config.ConnectGrace's default: long enough for any
// starter that is alive, short enough that a dead one's shim goes soon.
const DefaultConnectGrace = 30 * time.Second

// ConfigFromEnv fills the podbox settings of c from the environment and
// defaults.
func (c Config) ConfigFromEnv() Config {
	if c.Root == "" {
		c.Root = envOr("PODBOX_ROOT", DefaultRoot)
	}
	if c.Runtime == "" {
		c.Runtime = envOr("PODBOX_RUNTIME", "runc")
	}
	if c.CgroupParent == "" {
		c.CgroupParent = os.Getenv("PODBOX_CGROUP_PARENT")
	}
	if c.PauseBinary == "" {
		c.PauseBinary = findPause()
	}
	if c.ConnectGrace <= 0 {
		// Unset or unreadable: Serve takes DefaultConnectGrace.
		c.ConnectGrace, _ = time.ParseDuration(os.Getenv("PODBOX_SHIM_CONNECT_GRACE"))
	}
	if c.RestartBackoff == (restart.Backoff{}) {
		c.RestartBackoff = restart.DefaultBackoff()
		if v := os.Getenv("PODBOX_RESTART_BACKOFF"); v != "" {
			b, err := restart.ParseBackoff(v)
			if err != nil {
				c.restartBackoffErr = fmt.Errorf("PODBOX_RESTART_BACKOFF ignored: %w", err)
			} else {
				c.RestartBackoff = b
			}
		}
	}
	if c.TTRPCAddress == "" {
		c.TTRPCAddress = os.Getenv("TTRPC_ADDRESS")
	}
	return c
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// findPause looks for podbox-pause beside the shim (where `make install` and
// the release put it), then on PATH.
func findPause() string {
	if p := os.Getenv("PODBOX_PAUSE"); p != "" {
		return p
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "podbox-pause")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "podbox-pause"
}

func socketPath(address string) (string, error) { return shimclient.SocketPath(address) }
