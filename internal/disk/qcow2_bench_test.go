package disk

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"
)

// BenchmarkRepeatedL2Table times the native L1/L2 walk (hasDataNative, as
// HasData runs it, without the qemu-img fallback) of the fuzz-found image
// whose 65,536 L1 entries all point at one L2 table (640 KiB on disk, 32
// TiB virtual), against the same walk of an empty qcow2 of the same
// virtual size made by qemu-img (an L1 table of the same length, all
// zero), alternating in each iteration. The walk used to reread the
// shared L2 table for every entry: 4 GiB of reads for a 640 KiB file. It
// reports repeated ÷ normal, which should stay near 1: the work is bounded
// by the file, not by what its tables claim.
func BenchmarkRepeatedL2Table(b *testing.B) {
	requireQemu(b)
	ctx := context.Background()
	dir := b.TempDir()
	const l1Entries = 65536
	img := repeatedL2Image(l1Entries)
	repeated := join(dir, "repeated.qcow2")
	if err := os.WriteFile(repeated, img, 0o644); err != nil {
		b.Fatal(err)
	}
	size := l1Entries * (64 << 10 / 8) * (64 << 10) // as repeatedL2Image
	normal := newQcow2(b, join(dir, "normal.qcow2"), strconv.Itoa(size))
	timeIt := func(path string) time.Duration {
		start := time.Now()
		has, err := hasDataNative(ctx, path)
		took := time.Since(start)
		if err != nil || has {
			b.Fatalf("hasDataNative(%s) = %v, %v; want false, nil", path, has, err)
		}
		return took
	}
	var tRepeated, tNormal time.Duration
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			tRepeated += timeIt(repeated)
			tNormal += timeIt(normal)
		} else {
			tNormal += timeIt(normal)
			tRepeated += timeIt(repeated)
		}
	}
	b.ReportMetric(float64(len(img)), "B-repeated-file")
	b.ReportMetric(float64(tRepeated.Microseconds())/float64(b.N), "µs-repeated/op")
	b.ReportMetric(float64(tNormal.Microseconds())/float64(b.N), "µs-normal/op")
	b.ReportMetric(float64(tRepeated)/float64(tNormal), "repeated/normal")
}
