package disk

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Output files are written under a temporary name in the destination's
// directory and renamed into place once complete and synced, so a crash or
// a failure never leaves a half-written layer under its real name.
//
// Layer files hold guest data: they are private to the daemon (root),
// 0600 while writable and 0400 once frozen.
const (
	modeWritable = 0o600
	modeFrozen   = 0o400
)

// TempPath is the temporary name under which a file for dst is written:
// ".NAME.tmp" beside it. It is a function of dst alone, so that a caller
// can journal it before the file exists and recovery after a crash knows
// what to remove; the leading dot and the ".tmp" suffix let a directory
// scan (the doctor's) tell leftovers from real files.
func TempPath(dst string) string {
	return filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp")
}

// IsTempName reports whether a file name is one TempPath gives (or one the
// lab gives its own temporary files and directories, by the same rule).
func IsTempName(name string) bool {
	return len(name) > len("..tmp") && strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".tmp")
}

// reserveTemp creates TempPath(dst), empty and private, for qemu-img to
// overwrite. A leftover of an earlier attempt at the same dst is replaced:
// the name belongs to dst, and dst does not exist yet.
func reserveTemp(dst string) (string, error) {
	name := TempPath(dst)
	if err := os.Remove(name); err != nil && !os.IsNotExist(err) {
		return "", err
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, modeWritable)
	if err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

// publish makes tmp durable and renames it to dst. It refuses to replace
// an existing dst: layers are never overwritten.
func publish(tmp, dst string) error { return publishAs(tmp, dst, modeWritable) }

// publishAs is publish giving dst the file mode mode first, so that a
// frozen layer never appears writable under its real name.
func publishAs(tmp, dst string, mode os.FileMode) error {
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	if err := syncPath(tmp); err != nil {
		return err
	}
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("%q: %w", dst, os.ErrExist)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	if err := syncPath(filepath.Dir(dst)); err != nil {
		os.Remove(dst) // the caller is told it failed: leave nothing
		return err
	}
	return nil
}

// syncPath flushes a file or directory to stable storage. qemu-img convert
// writes its output with cache=unsafe (no flushes), so this is what makes
// a new base durable before the store refers to it.
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %q: %w", path, err)
	}
	return nil
}
