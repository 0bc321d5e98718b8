package sandbox

import (
	"errors"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ReplaceFile writes b to path atomically: a reader, or a process that
// crashes half way and is run again, finds the old content or the new one,
// never a torn mix. The new content goes to a temporary file beside path,
// which renameat2(RENAME_EXCHANGE) swaps with path; the temporary name,
// which then holds the old content, is removed. A rename over path would be
// as atomic, but ext4 (auto_da_alloc) flushes the new file's data whenever
// a rename replaces a file: about 0.2 ms per record on an ext4 /run, on
// every container create and start. Nothing here is fsynced either way: the
// state root is meant for tmpfs (/run), and its records describe processes
// that do not outlive the machine. A new path, or a filesystem that cannot
// exchange, gets the plain rename.
func ReplaceFile(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat2(unix.AT_FDCWD, tmp.Name(), unix.AT_FDCWD, path, unix.RENAME_EXCHANGE)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
			err = os.Rename(tmp.Name(), path)
		}
	}
	// After an exchange the temporary name holds the old content; after a
	// failure, the unused new one.
	os.Remove(tmp.Name())
	return err
}
