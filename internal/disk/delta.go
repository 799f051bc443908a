package disk

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// CreateDelta writes an empty qcow2 at dst backed by parent. The backing
// file is recorded as parent's base name when both are in one directory,
// so the data directory can be moved. It only writes a header: its cost
// does not depend on the size of the disk. An existing dst is never
// overwritten.
func (q *QemuImg) CreateDelta(ctx context.Context, parent, dst string) (err error) {
	if parent, err = absPath(parent); err != nil {
		return err
	}
	if dst, err = absPath(dst); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("create delta %q on %q: %w", dst, parent, err)
		}
	}()
	// Claim the name first: qemu-img create would silently truncate an
	// existing layer.
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	f.Close()
	_, err = q.run(ctx, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", backingName(parent, dst), dst)
	if err != nil {
		os.Remove(dst)
		return err
	}
	return nil
}

// backingName is how dst records parent: the base name when they share a
// directory, else the absolute path.
func backingName(parent, dst string) string {
	if filepath.Dir(parent) != filepath.Dir(dst) {
		return parent
	}
	name := filepath.Base(parent)
	if hasProtocol(name) {
		// "a:b.qcow2" would be read as protocol "a".
		name = "./" + name
	}
	return name
}

// SetReadOnly makes the layer file read-only (0444), as a frozen layer, or
// writable (0644).
func (q *QemuImg) SetReadOnly(path string, readOnly bool) error {
	mode := os.FileMode(0o644)
	if readOnly {
		mode = 0o444
	}
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("set read-only=%t on %q: %w", readOnly, path, err)
	}
	return nil
}

// mapEntry is one extent of `qemu-img map --output=json`. Depth is the
// layer that answers for the extent: 0 is the file itself, 1 its backing
// file, and so on. Present (QEMU 6.0 and later) says the extent is
// allocated in that layer; Zero says it reads as zeroes. A zero-write into
// a delta shows as depth 0, present, zero, not data: it still hides the
// backing content.
type mapEntry struct {
	Start   int64 `json:"start"`
	Length  int64 `json:"length"`
	Depth   int   `json:"depth"`
	Present *bool `json:"present"`
	Zero    bool  `json:"zero"`
	Data    bool  `json:"data"`
}

// allocatedHere reports whether the extent is allocated in the layer
// itself, data or zeroes.
func (e mapEntry) allocatedHere() bool {
	if e.Depth != 0 {
		return false
	}
	if e.Present == nil {
		// Without "present" an unallocated extent of a base (depth 0,
		// zero) looks like a zero cluster: err towards "has data", which
		// only costs the empty-delta shortcut.
		return e.Data || e.Zero
	}
	return *e.Present || e.Data
}

// HasData reports whether the layer itself (not its backing chain) holds
// any allocated cluster, written zeroes included. It reads only the qcow2
// metadata (qemu-img map), never guest data.
func (q *QemuImg) HasData(ctx context.Context, path string) (bool, error) {
	path, err := absPath(path)
	if err != nil {
		return false, err
	}
	out, err := q.run(ctx, "map", "--output=json", "-f", "qcow2", path)
	if err != nil {
		return false, fmt.Errorf("map %q: %w", path, err)
	}
	var extents []mapEntry
	if err := json.Unmarshal(out, &extents); err != nil {
		return false, fmt.Errorf("map %q: decode qemu-img map: %w", path, err)
	}
	for _, e := range extents {
		if e.allocatedHere() {
			return true, nil
		}
	}
	return false, nil
}
