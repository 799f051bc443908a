package disk

import (
	"io"
	"os"
	"syscall"
)

// QEMU (block/file-posix.c) advertises how it uses an image with
// open-file-description locks on single bytes: byte 100+bit while it holds
// a permission, byte 200+bit while it refuses to share one. qemu-img
// without -U wants a consistent read and shares no writer, so it refuses
// an image on which someone holds the write permission or refuses to
// share consistent reads. inUseByWriter makes the same test without
// taking a lock, so that reading metadata natively fails where qemu-img
// would, instead of reading tables a running VM is changing.
const (
	lockPermBase       = 100
	lockSharedBase     = 200
	permConsistentRead = 0  // bit of BLK_PERM_CONSISTENT_READ
	permWrite          = 1  // bit of BLK_PERM_WRITE
	fOFDGetLk          = 36 // F_OFD_GETLK from <fcntl.h>; syscall does not define it
)

// inUseByWriter reports whether another process holds f's image open in a
// way qemu-img (without -U) would not share.
func inUseByWriter(f *os.File) (bool, error) {
	for _, b := range []int64{lockPermBase + permWrite, lockSharedBase + permConsistentRead} {
		lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart, Start: b, Len: 1}
		if err := syscall.FcntlFlock(f.Fd(), fOFDGetLk, &lk); err != nil {
			return false, err
		}
		if lk.Type != syscall.F_UNLCK {
			return true, nil
		}
	}
	return false, nil
}
