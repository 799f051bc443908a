package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// BackingFile returns the absolute path of the backing file recorded in the
// qcow2 layer at path, or "" for a base: what Info reports as BackingFile.
// It reads the name from the header itself, which costs a read instead of
// a qemu-img process; the doctor asks it of every layer. A file it does
// not read natively (not qcow2, a header QEMU would refuse, a name out of
// bounds) is answered by qemu-img info.
func (q *QemuImg) BackingFile(ctx context.Context, path string) (string, error) {
	path, err := absPath(path)
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	name, err := backingNameNative(path)
	var u *unusualImage
	if errors.As(err, &u) || errors.Is(err, errNotQcow2) {
		info, err := q.Info(ctx, path)
		if err != nil {
			return "", err
		}
		return info.BackingFile, nil
	}
	if err != nil {
		return "", fmt.Errorf("backing file of %q: %w", path, err)
	}
	return resolveBacking(path, name), nil
}

// backingNameNative reads the backing file name as recorded in the header.
func backingNameNative(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h, err := readQcow2Header(f)
	if errors.Is(err, errNotQcow2) {
		return "", err
	}
	if err == nil {
		err = h.check()
	}
	if err != nil {
		return "", unusual("%v", err)
	}
	if h.backingFileOffset == 0 || h.backingFileSize == 0 {
		return "", nil
	}
	// QEMU refuses a name longer than 1023 bytes or not in cluster 0.
	end := h.backingFileOffset + uint64(h.backingFileSize)
	if h.backingFileSize > maxBackingNameLen || end > h.clusterSize() || end < h.backingFileOffset {
		return "", unusual("backing file name at %d+%d out of bounds", h.backingFileOffset, h.backingFileSize)
	}
	b := make([]byte, h.backingFileSize)
	if _, err := f.ReadAt(b, int64(h.backingFileOffset)); err != nil {
		return "", unusual("read backing file name: %v", err)
	}
	return string(b), nil
}
