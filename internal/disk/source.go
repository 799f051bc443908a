package disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"stagehand/internal/errdefs"
)

// Files a user names (template disks, kernels, initrds, bundles) are read
// by a root daemon, so every one is opened once, checked on the open
// descriptor, and read only through it: a path swapped after the check
// (a symlink re-pointed, a file renamed over) cannot change what is read,
// and a FIFO or a device never reaches a read that could block or never
// end.

// OpenSource opens path for reading as a source the daemon imports. It
// refuses, as errdefs.ErrInvalid naming path, anything but a regular file:
// a symbolic link as the last component (O_NOFOLLOW), a FIFO (opened with
// O_NONBLOCK, so the open cannot wait for a writer), a device, a socket or
// a directory. The returned file is in blocking mode; its FileInfo comes
// from fstat on the same descriptor.
func OpenSource(path string) (*os.File, fs.FileInfo, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	for errors.Is(err, unix.EINTR) {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, nil, errdefs.Invalid("%q is a symbolic link: give the path of the file itself", path)
		}
		return nil, nil, errdefs.Invalid("cannot read %q: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, nil, errdefs.Invalid("%q is not a regular file (%s)", path, fileKind(st.Mode))
	}
	// Blocking again before os.NewFile, so the runtime treats it as the
	// plain file it is (a non-blocking descriptor goes to the poller).
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err == nil {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags&^unix.O_NONBLOCK)
	}
	if err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("%s: clear O_NONBLOCK: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

func fileKind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "a named pipe"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "a device"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symbolic link"
	}
	return "a special file"
}

// CopySource copies the first size bytes of src (from OpenSource, whose
// fstat gave size) into a new file dst, created with mode 0600 and
// O_EXCL|O_NOFOLLOW, then sets dst's mode to perm, and fsyncs it when
// durable (a file that is kept; a scratch copy that is deleted once used
// need not pay for it: a crash leaves a journalled temporary file that
// recovery removes). Holes of
// src stay holes. The copy honours ctx between chunks and never reads more
// than size bytes, whatever src grows to; a src that shrank or grew while
// it was copied is refused (errdefs.ErrInvalid). On failure dst is removed.
func CopySource(ctx context.Context, src *os.File, size int64, dst string, perm os.FileMode, durable bool) (err error) {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src.Name(), err)
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("copy %s: %w", src.Name(), cerr)
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	if err := copySparse(ctx, out, src, size); err != nil {
		return fmt.Errorf("copy %s: %w", src.Name(), err)
	}
	if fi, err := src.Stat(); err != nil {
		return err
	} else if fi.Size() != size {
		return errdefs.Invalid("%s changed size while it was copied (%d bytes, then %d)", src.Name(), size, fi.Size())
	}
	if err := out.Chmod(perm); err != nil {
		return err
	}
	if !durable {
		return nil
	}
	return out.Sync()
}

// copyChunk is how much one copy step moves before looking at ctx again.
const copyChunk = 8 << 20

// copySparse copies [0, size) of src to dst at the same offsets, skipping
// the holes SEEK_DATA/SEEK_HOLE report, then sets dst's length to size.
func copySparse(ctx context.Context, dst, src *os.File, size int64) error {
	sfd := int(src.Fd())
	var off int64
	for off < size {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := unix.Seek(sfd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil { // no SEEK_DATA here: copy everything
			data = off
		}
		end := size
		if err == nil {
			if hole, herr := unix.Seek(sfd, data, unix.SEEK_HOLE); herr == nil && hole < end {
				end = hole
			}
		}
		if data >= size {
			break
		}
		if err := copyRange(ctx, dst, src, data, end); err != nil {
			return err
		}
		off = end
	}
	return dst.Truncate(size)
}

// copyRange copies [from, to) of src to the same place in dst, in chunks,
// in the kernel when it can (copy_file_range), through a buffer otherwise.
func copyRange(ctx context.Context, dst, src *os.File, from, to int64) error {
	var buf []byte
	for off := from; off < to; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(to-off, copyChunk)
		if buf == nil {
			roff, woff := off, off
			k, err := unix.CopyFileRange(int(src.Fd()), &roff, int(dst.Fd()), &woff, int(n), 0)
			switch {
			case err == nil && k > 0:
				off += int64(k)
				continue
			case err == nil && k == 0:
				return errdefs.Invalid("%s is shorter than it was: it changed while it was copied", src.Name())
			case errors.Is(err, unix.EINTR):
				continue
			}
			buf = make([]byte, 1<<20) // EXDEV, ENOSYS, EINVAL...: copy by hand
		}
		k, err := src.ReadAt(buf[:min(n, int64(len(buf)))], off)
		if k > 0 {
			if _, werr := dst.WriteAt(buf[:k], off); werr != nil {
				return werr
			}
			off += int64(k)
		}
		if errors.Is(err, io.EOF) && off < to {
			return errdefs.Invalid("%s is shorter than it was: it changed while it was copied", src.Name())
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
	}
	return nil
}

// CheckSpace refuses, as errdefs.ErrUnavailable, to write need more bytes
// on the filesystem of dir when that would leave less than a small
// reserve free: an import must fail cleanly before it fills the disk the
// store and the running VMs write to.
func CheckSpace(dir string, need int64) error {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return fmt.Errorf("free space of %s: %w", dir, err)
	}
	avail := int64(fs.Bavail) * int64(fs.Bsize)
	if need > avail-spaceReserve {
		return errdefs.Unavailable("not enough free space in %s: %d bytes needed, %d available (keeping %d in reserve)",
			dir, need, max(avail, 0), int64(spaceReserve))
	}
	return nil
}

// spaceReserve is the free space an import leaves untouched.
const spaceReserve = 256 << 20

// Allocated returns the bytes fi's file occupies on disk (less than its
// size when it is sparse).
func Allocated(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return min(st.Blocks*512, fi.Size())
	}
	return fi.Size()
}
