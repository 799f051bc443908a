package disk

import (
	"fmt"
	"os"
	"path/filepath"
)

// Output files are written under a temporary name in the destination's
// directory and renamed into place once complete and synced, so a crash or
// a failure never leaves a half-written layer under its real name.

// reserveTemp creates an empty, uniquely named file beside dst, for
// qemu-img to overwrite. The name starts with a dot and ends in ".tmp" so
// a directory scan can tell leftovers from layers.
func reserveTemp(dst string) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*.tmp")
	if err != nil {
		return "", err
	}
	name := f.Name()
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

// publish makes tmp durable and renames it to dst. It refuses to replace
// an existing dst: layers are never overwritten.
func publish(tmp, dst string) error {
	if err := os.Chmod(tmp, 0o644); err != nil {
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
