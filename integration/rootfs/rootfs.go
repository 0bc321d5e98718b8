// Package rootfs builds the small root filesystems that podbox's tests, demo
// and benchmarks run containers from: busybox-static with its applets linked,
// plus the few files a container expects. No image registry is reachable on
// the build machines, so every rootfs is made locally.
package rootfs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Busybox is where Debian's busybox-static package installs its binary.
const Busybox = "/bin/busybox"

// BuildBusybox makes dir a root filesystem: /bin/busybox with a link for each
// applet, /etc/passwd and /etc/group (root and nobody, so `id` and httpd
// resolve users), empty mount points, and /www/index.html holding index for
// httpd to serve. It is idempotent.
func BuildBusybox(dir, index string) error {
	applets, err := exec.Command(Busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("rootfs %s: list busybox applets (is busybox-static installed?): %w", dir, err)
	}
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "www", "root"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("rootfs %s: %w", dir, err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		return fmt.Errorf("rootfs %s: %w", dir, err)
	}
	if err := copyFile(Busybox, filepath.Join(dir, "bin", "busybox"), 0o755); err != nil {
		return fmt.Errorf("rootfs %s: %w", dir, err)
	}
	for _, a := range strings.Fields(string(applets)) {
		if a == "busybox" {
			continue
		}
		l := filepath.Join(dir, "bin", a)
		if err := os.Symlink("busybox", l); err != nil && !os.IsExist(err) {
			return fmt.Errorf("rootfs %s: link applet %s: %w", dir, a, err)
		}
	}
	files := map[string]string{
		"etc/passwd":     "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"etc/group":      "root:x:0:\nnobody:x:65534:\n",
		"www/index.html": index,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("rootfs %s: %w", dir, err)
		}
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
