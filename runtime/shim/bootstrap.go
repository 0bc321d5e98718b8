package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/podbox/podbox/runtime/reaper"
	"github.com/podbox/podbox/runtime/runc"
	"github.com/podbox/podbox/runtime/shimclient"
	"github.com/podbox/podbox/runtime/taskapi"
	"github.com/podbox/podbox/sandbox"
)

// Group returns the shim group of the container whose bundle is dir: the
// sandbox named by its CRI or podbox annotation, or else id itself. All
// containers of one group share one shim.
func Group(dir, id string) string {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return id
	}
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if json.Unmarshal(b, &spec) != nil {
		return id
	}
	for _, k := range []string{sandbox.AnnotationCRISandboxID, sandbox.AnnotationSandbox} {
		if v := spec.Annotations[k]; v != "" {
			return v
		}
	}
	return id
}

// Start is the `start` step: it makes sure a shim serves the group of cfg.ID
// and writes that shim's address to out. If one already serves, its address
// is reused; otherwise Start listens on the socket itself and hands the
// listener to a new serving shim (this binary, without the `start` action)
// that outlives it (see shimclient.Bootstrap, which the podbox CLI runs
// in-process instead of this step).
func Start(ctx context.Context, cfg Config, out io.Writer) error {
	cwd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("shim start: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("shim start: find own binary: %w", err)
	}
	group := Group(cwd, cfg.ID)
	args := []string{"-namespace", cfg.Namespace, "-address", cfg.Address, "-id", group}
	if cfg.Debug {
		args = append(args, "-debug")
	}
	if err := followOOMScore(); err != nil {
		return fmt.Errorf("shim start: %w", err)
	}
	// containerd hands a shim a log FIFO in the bundle, which Serve opens;
	// without one the shim logs to a file beside its socket.
	fi, err := os.Stat("log")
	addr, err := shimclient.Bootstrap{
		Binary: self, Root: cfg.Root, Namespace: cfg.Namespace, Group: group, Args: args,
		Dir: cwd, Env: append(os.Environ(), "PODBOX_ROOT="+cfg.Root),
		Log: err != nil || fi.Mode()&os.ModeNamedPipe == 0,
	}.Run()
	if err != nil {
		return err
	}
	return announce(cwd, addr, out)
}

// followOOMScore sets this process's oom_score_adj, which the serving shim
// it starts inherits, one above its parent's (containerd's), as
// containerd's own shims do: the OOM killer takes a shim before
// containerd, and a container process whose spec sets no score (an exec,
// a container without resources) gets the shim's, as on runc. One above
// what this process inherited is a raise, which needs no privilege.
func followOOMScore() error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", os.Getppid()))
	if err != nil {
		return fmt.Errorf("read containerd's OOM score: %w", err)
	}
	score, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("containerd's OOM score %q: %w", b, err)
	}
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(min(score+1, 1000))), 0o644); err != nil {
		return fmt.Errorf("set the shim's OOM score: %w", err)
	}
	return nil
}

// announce prints addr for the caller and, in a containerd bundle, leaves it
// in the bundle's `address` file, from which a restarted containerd finds the
// shims of the tasks it had.
func announce(bundle, addr string, out io.Writer) error {
	if _, err := os.Stat(filepath.Join(bundle, "config.json")); err == nil {
		if err := os.WriteFile(filepath.Join(bundle, "address"), []byte(addr), 0o600); err != nil {
			return fmt.Errorf("shim start: write address file: %w", err)
		}
	}
	_, err := fmt.Fprint(out, addr)
	return err
}

// Delete is the `delete` step: containerd runs it after a task is gone, and
// also when the task's shim died, to clean up what the task left: the runc
// container (killed), the rootfs mount, and, when the shim is dead and this
// was its sandbox's last container (or CRI's sandbox container itself), the
// whole sandbox. While the shim lives it owns the sandbox, and Delete touches
// only the one container. It prints the protobuf DeleteResponse containerd
// expects.
func Delete(ctx context.Context, cfg Config, out io.Writer) error {
	if cfg.ID == "" {
		return fmt.Errorf("shim delete: %w: no -id", errInvalid)
	}
	bundle := cfg.Bundle
	if bundle == "" {
		bundle, _ = os.Getwd()
	}
	r, err := reaper.New()
	if err != nil {
		return fmt.Errorf("shim delete %s: %w", cfg.ID, err)
	}
	defer r.Close()
	rt := runc.New(r, cfg.Runtime, filepath.Join(cfg.Root, "runc"))
	var errs []error
	group := Group(bundle, cfg.ID)
	addr := shimclient.SocketAddress(cfg.Root, cfg.Namespace, group)
	dead := !shimAnswers(addr)
	if dead {
		// containerd runs one delete per task of the dead shim, all at
		// once. Unserialized, they raced: the sandbox task's delete removed
		// the sandbox while the containers' deletes ran `runc delete
		// --force` on the same containers and each decided from a listing
		// taken mid-way, so the sandbox's removal was left to whichever
		// delete ran slowest, often the sandbox task's, which CRI does not
		// wait for before `rmp` returns. Under one lock, each delete sees
		// the state the previous one left, and the last container's delete
		// (or the sandbox task's, whichever comes first) removes the
		// sandbox.
		unlock, err := lockRoot(cfg.Root)
		if err != nil {
			return fmt.Errorf("shim delete %s: %w", cfg.ID, err)
		}
		defer unlock()
	}
	if err := rt.Delete(ctx, cfg.ID, true); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, unmountRootfs(rootfsDir(bundle)))
	if dead {
		errs = append(errs, cleanupAfterDeadShim(ctx, cfg, rt, cfg.ID))
		// The dead shim's socket and log are of no use to anyone now.
		if path, err := socketPath(addr); err == nil {
			os.Remove(path)
			os.Remove(path + ".log")
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("shim delete %s: %w", cfg.ID, err)
	}
	b, err := proto.Marshal(&taskapi.DeleteResponse{ExitedAt: timestamppb.Now(), ExitStatus: 128 + uint32(syscall.SIGKILL)})
	if err != nil {
		return err
	}
	_, err = out.Write(b)
	return err
}

// lockRoot takes an exclusive flock on podbox's state root, which serializes
// the cleanups after a dead shim; the lock goes with the process.
func lockRoot(root string) (func(), error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, err
	}
	f, err := os.Open(root)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", root, err)
	}
	return func() { f.Close() }, nil
}

func shimAnswers(addr string) bool {
	path, err := socketPath(addr)
	if err != nil {
		return false
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// cleanupAfterDeadShim removes what a crashed shim left of task id: its
// container record, and its sandbox once no container of it remains.
func cleanupAfterDeadShim(ctx context.Context, cfg Config, rt *runc.Runtime, id string) error {
	node := sandbox.Node{Store: sandbox.Store{Root: cfg.Root}, CgroupParent: cfg.CgroupParent}
	var sb *sandbox.Sandbox
	if c, err := node.Store.ResolveContainer(id); err == nil && c.ID == id {
		if sb, err = node.Store.LoadSandbox(c.SandboxID); err != nil {
			sb = nil
		}
		if err := node.Store.RemoveContainerRecord(c); err != nil {
			return err
		}
	} else if s, err := node.Store.LoadSandbox(id); err == nil {
		sb = s // CRI's sandbox container: the task is the sandbox itself
	}
	if sb == nil {
		return nil
	}
	cids, err := node.Store.ContainerIDs(sb.ID)
	if err != nil || (len(cids) > 0 && sb.ID != id) {
		return err
	}
	return node.Remove(ctx, sb, runtimeDeleter{rt})
}

// runtimeDeleter deletes containers straight through the OCI runtime, for
// cleanups without a shim.
type runtimeDeleter struct{ rt *runc.Runtime }

func (d runtimeDeleter) DeleteContainer(ctx context.Context, id string) error {
	return d.rt.Delete(ctx, id, true)
}
