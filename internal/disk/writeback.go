package disk

import (
	"os"
	"syscall"
)

// earlyWriteback pushes a file's dirty pages towards the disk while
// qemu-img is still writing it, so that the final fsync (which publish
// needs for durability) has little left to do and the disk writes overlap
// the conversion instead of following it.
type earlyWriteback struct{ f *os.File }

// startWriteback opens path for early writeback. It is best effort: on any
// error it returns a no-op.
func startWriteback(path string) *earlyWriteback {
	f, err := os.Open(path)
	if err != nil {
		return &earlyWriteback{}
	}
	return &earlyWriteback{f: f}
}

// kick starts asynchronous writeback of every dirty page of the file; it
// does not wait for it.
func (w *earlyWriteback) kick() {
	if w.f == nil {
		return
	}
	_ = syscall.SyncFileRange(int(w.f.Fd()), 0, 0, syncFileRangeWrite)
}

func (w *earlyWriteback) close() {
	if w.f != nil {
		w.f.Close()
	}
}

// syncFileRangeWrite is SYNC_FILE_RANGE_WRITE from <linux/fs.h>.
const syncFileRangeWrite = 2
