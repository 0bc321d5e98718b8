package shim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	types "github.com/podbox/podbox/runtime/apitypes"
)

// mountFlags are the mount options that are flags rather than filesystem
// data; the rest of a mount's options are passed to the filesystem.
var mountFlags = map[string]struct {
	clear bool
	flag  uintptr
}{
	"ro": {false, unix.MS_RDONLY}, "rw": {true, unix.MS_RDONLY},
	"bind": {false, unix.MS_BIND}, "rbind": {false, unix.MS_BIND | unix.MS_REC},
	"nosuid": {false, unix.MS_NOSUID}, "suid": {true, unix.MS_NOSUID},
	"nodev": {false, unix.MS_NODEV}, "dev": {true, unix.MS_NODEV},
	"noexec": {false, unix.MS_NOEXEC}, "exec": {true, unix.MS_NOEXEC},
	"noatime": {false, unix.MS_NOATIME}, "relatime": {false, unix.MS_RELATIME},
	"sync": {false, unix.MS_SYNCHRONOUS}, "async": {true, unix.MS_SYNCHRONOUS},
}

// mountRootfs mounts the rootfs that containerd prepared for a container (its
// snapshot: an overlay or a bind) at dir, as containerd's own shims do before
// they create the container. With no mounts (the CLI, `ctr run --rootfs`),
// the spec's root path is used as it is.
func mountRootfs(dir string, mounts []*types.Mount) (retErr error) {
	if len(mounts) == 0 {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("rootfs %s: %w", dir, err)
	}
	var done []string
	defer func() {
		if retErr != nil {
			for i := len(done) - 1; i >= 0; i-- {
				unix.Unmount(done[i], unix.MNT_DETACH)
			}
		}
	}()
	for _, m := range mounts {
		var flags uintptr
		var data []string
		for _, o := range m.Options {
			if f, ok := mountFlags[o]; ok {
				if f.clear {
					flags &^= f.flag
				} else {
					flags |= f.flag
				}
				continue
			}
			data = append(data, o)
		}
		// Read-only bind mounts take a remount: the kernel ignores
		// MS_RDONLY on the bind itself.
		ro := flags&unix.MS_BIND != 0 && flags&unix.MS_RDONLY != 0
		first := flags
		if ro {
			first &^= unix.MS_RDONLY
		}
		if err := unix.Mount(m.Source, dir, m.Type, first, strings.Join(data, ",")); err != nil {
			return fmt.Errorf("rootfs %s: mount %s %s: %w", dir, m.Type, m.Source, err)
		}
		done = append(done, dir)
		if ro {
			if err := unix.Mount("", dir, "", flags|unix.MS_REMOUNT, ""); err != nil {
				return fmt.Errorf("rootfs %s: remount read-only: %w", dir, err)
			}
		}
	}
	return nil
}

// unmountRootfs undoes mountRootfs; a rootfs that is not mounted is fine.
func unmountRootfs(dir string) error {
	for range 8 { // stacked mounts come off one at a time
		err := unix.Unmount(dir, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("rootfs %s: unmount: %w", dir, err)
		}
	}
	return nil
}

func rootfsDir(bundle string) string { return filepath.Join(bundle, "rootfs") }
