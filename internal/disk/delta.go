package disk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// CreateDelta writes an empty qcow2 at dst backed by parent. The backing
// file is recorded as parent's base name when both are in one directory,
// so the data directory can be moved. It only writes a header: its cost
// does not depend on the size of the disk. An existing dst is never
// overwritten; on failure nothing is left at dst.
//
// It writes the file itself, byte for byte what `qemu-img create -f qcow2
// -F qcow2 -b NAME` (QEMU 7.2) writes, rather than start qemu-img: the
// process costs some twenty times more than the few small writes and two
// syncs (BenchmarkCreateDelta), and a linked clone makes two deltas per
// disk. The file and its directory are
// synced before it returns, so the store may refer to it.
func (q *QemuImg) CreateDelta(ctx context.Context, parent, dst string) (err error) {
	if err := absPaths(&parent, &dst); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("create delta %q on %q: %w", dst, parent, err)
		}
	}()
	if err := ctx.Err(); err != nil {
		return err
	}
	size, err := deltaSize(parent)
	if err != nil {
		return err
	}
	img, err := encodeDelta(size, backingName(parent, dst))
	if err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, modeWritable)
	if err != nil {
		return err
	}
	if err := writeDelta(f, img); err != nil {
		os.Remove(dst)
		return err
	}
	if err := syncPath(filepath.Dir(dst)); err != nil {
		os.Remove(dst) // the caller is told it failed: leave nothing
		return err
	}
	return nil
}

// writeDelta writes img into f, a new empty file, syncs and closes it.
func writeDelta(f *os.File, img deltaImage) error {
	if err := img.writeTo(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// deltaSize returns the virtual size a delta on parent gets: parent's, as
// QEMU reads it from the qcow2 header. A parent QEMU would not open as
// qcow2 (a raw file among them) is refused.
func deltaSize(parent string) (uint64, error) {
	f, err := os.Open(parent)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h, err := readQcow2Header(f)
	if errors.Is(err, errNotQcow2) {
		return 0, errors.New("parent is not a qcow2 image (a raw image cannot back a delta; import it as a template first)")
	}
	if err == nil {
		err = h.check()
	}
	if err != nil {
		return 0, fmt.Errorf("parent: %w", err)
	}
	return h.virtualSize(), nil
}

// createDeltaQemuImg is CreateDelta done by qemu-img create, the
// reference the native version is tested and measured against.
func (q *QemuImg) createDeltaQemuImg(ctx context.Context, parent, dst string) (err error) {
	if err := absPaths(&parent, &dst); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("create delta %q on %q: %w", dst, parent, err)
		}
	}()
	// Claim the name first: qemu-img create would silently truncate an
	// existing layer.
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, modeWritable)
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

// SetReadOnly makes the layer file read-only (0400), as a frozen layer, or
// writable (0600). Either way only the owner (the daemon, and QEMU, both
// root) may read it: a layer is guest data.
func (q *QemuImg) SetReadOnly(path string, readOnly bool) error {
	mode := os.FileMode(modeWritable)
	if readOnly {
		mode = modeFrozen
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
// metadata, never guest data: the header, the L1 table and the L2 tables
// it points to, stopping at the first mapped cluster. Images it does not
// read natively (encrypted, external data file, marked corrupt,
// inconsistent tables) are answered by qemu-img map. Like qemu-img, it
// fails on a layer that a running VM holds open for writing.
func (q *QemuImg) HasData(ctx context.Context, path string) (bool, error) {
	path, err := absPath(path)
	if err != nil {
		return false, err
	}
	has, err := hasDataNative(ctx, path)
	var u *unusualImage
	if errors.As(err, &u) {
		q.log().DebugContext(ctx, "qcow2 layer read by qemu-img map", "layer", path, "reason", u.reason)
		return q.hasDataQemuImg(ctx, path)
	}
	if err != nil {
		return false, fmt.Errorf("map %q: %w", path, err)
	}
	return has, nil
}

// hasDataNative is HasData without the qemu-img fallback: an image it
// does not read gives an *unusualImage error.
func hasDataNative(ctx context.Context, path string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	f, err := os.Open(path)
	if err != nil {
		return false, pathReason(err)
	}
	defer f.Close()
	h, err := readQcow2Header(f)
	if err != nil {
		if errors.Is(err, errNotQcow2) {
			return false, err
		}
		return false, unusual("%v", err)
	}
	switch busy, err := inUseByWriter(f); {
	case err != nil:
		return false, unusual("lock probe: %v", err)
	case busy:
		return false, errors.New("image is in use by another process (it holds a write lock)")
	}
	return mapsAnyCluster(ctx, f, h)
}

// hasDataQemuImg is HasData done by qemu-img map: the reference for the
// native reader, and its fallback.
func (q *QemuImg) hasDataQemuImg(ctx context.Context, path string) (bool, error) {
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
