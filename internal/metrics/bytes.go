package metrics

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DirBytes sums the bytes the files of one directory take on the host
// (st_blocks × 512, what `du` and qemu-img's actual-size count: a sparse
// qcow2 costs what it holds), caching the sum for at most maxAge so that a
// scraper polling every few seconds costs one directory walk per maxAge.
type DirBytes struct {
	dir    string
	suffix string // only files named *suffix (not hidden: temporary files are)
	maxAge time.Duration
	now    func() time.Time

	mu    sync.Mutex
	sum   int64
	taken time.Time
}

// NewDirBytes returns the sum of the allocated bytes of the files in dir
// whose names end in suffix and do not start with a dot, cached for maxAge.
func NewDirBytes(dir, suffix string, maxAge time.Duration) *DirBytes {
	return &DirBytes{dir: dir, suffix: suffix, maxAge: maxAge, now: time.Now}
}

// Bytes returns the sum, walking the directory again when the cached one
// is older than maxAge. A missing directory holds nothing.
func (d *DirBytes) Bytes() (int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if now := d.now(); !d.taken.IsZero() && now.Sub(d.taken) < d.maxAge {
		return d.sum, nil
	}
	entries, err := os.ReadDir(d.dir)
	if err != nil && !os.IsNotExist(err) {
		return 0, fmt.Errorf("sum bytes of %s: %w", d.dir, err)
	}
	var sum int64
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") || !strings.HasSuffix(e.Name(), d.suffix) {
			continue
		}
		n, err := AllocatedBytes(filepath.Join(d.dir, e.Name()))
		if err != nil {
			if os.IsNotExist(err) {
				continue // deleted since the listing
			}
			return 0, err
		}
		sum += n
	}
	d.sum, d.taken = sum, d.now()
	return sum, nil
}

// AllocatedBytes returns the bytes file p takes on the host filesystem.
func AllocatedBytes(p string) (int64, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, &fs.PathError{Op: "stat", Path: p, Err: fmt.Errorf("no block count on this system")}
	}
	return st.Blocks * 512, nil
}
