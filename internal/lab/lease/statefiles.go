package lease

import (
	"os"
	"syscall"
)

// freedStateBytes returns the bytes deleting the saved state files paths
// frees. Instant copies share a state as hard links (one a copy), and a
// file's blocks go only with its last link: a shared state counts once,
// and only when every link to it is among paths.
func freedStateBytes(paths []string) int64 {
	type inode struct{ dev, ino uint64 }
	named := map[inode]map[string]bool{}
	links := map[inode]uint64{}
	blocks := map[inode]int64{}
	var total int64
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			continue // gone already: frees nothing
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		if !ok {
			total += AllocatedBytes(p)
			continue
		}
		k := inode{uint64(sys.Dev), sys.Ino}
		if named[k] == nil {
			named[k] = map[string]bool{}
		}
		named[k][p] = true
		links[k], blocks[k] = uint64(sys.Nlink), sys.Blocks*512
	}
	for k, ps := range named {
		if uint64(len(ps)) >= links[k] {
			total += blocks[k]
		}
	}
	return total
}
