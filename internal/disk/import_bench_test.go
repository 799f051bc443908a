package disk

import (
	"context"
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

// BenchmarkImportVsCopyConvert times ImportBase of a sparse raw image
// (1 GiB virtual, 256 MiB of data in 64 extents of 4 MiB) against what a
// user would do by hand with the same file: `cp --sparse=always` of it,
// then `qemu-img convert -f raw -O qcow2` of the copy. Both run in each
// iteration, in alternating order, on a warm page cache. ImportBase
// copies the source into a private file before it checks and converts it
// (so that nobody can swap the file between the checks and the
// conversion), and syncs that copy and its result; the reference syncs
// nothing. It reports import ÷ (cp + convert) and the time of each part;
// then, untimed by that ratio, the reference's two files are fsynced and
// timed ("ms-sync/op"), so that import ÷ (cp + convert + sync) compares
// two equally durable results.
func BenchmarkImportVsCopyConvert(b *testing.B) {
	requireQemu(b)
	ctx := context.Background()
	src := join(b.TempDir(), "src.raw")
	writeSparseRaw(b, src, 1<<30, 64, 4<<20)
	out := b.TempDir()
	dst := join(out, "base.qcow2")
	cp := join(out, "copy.raw")
	q := New()

	importBase := func() time.Duration {
		os.Remove(dst)
		start := time.Now()
		size, err := q.ImportBase(ctx, src, "raw", dst)
		took := time.Since(start)
		if err != nil || size != 1<<30 {
			b.Fatalf("ImportBase = %d, %v; want %d", size, err, 1<<30)
		}
		return took
	}
	var tImport, tCp, tConvert, tSync time.Duration
	reference := func() {
		os.Remove(cp)
		os.Remove(dst)
		start := time.Now()
		runTool(b, "cp", "--sparse=always", src, cp)
		copied := time.Now()
		runTool(b, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", cp, dst)
		converted := time.Now()
		fsyncPath(b, cp)
		fsyncPath(b, dst)
		tCp += copied.Sub(start)
		tConvert += converted.Sub(copied)
		tSync += time.Since(converted)
	}
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			tImport += importBase()
			reference()
		} else {
			reference()
			tImport += importBase()
		}
	}
	tRef := tCp + tConvert
	b.ReportMetric(float64(tImport)/float64(tRef), "import/cp+convert")
	b.ReportMetric(float64(tImport.Milliseconds())/float64(b.N), "ms-import/op")
	b.ReportMetric(float64(tCp.Milliseconds())/float64(b.N), "ms-cp/op")
	b.ReportMetric(float64(tConvert.Milliseconds())/float64(b.N), "ms-convert/op")
	b.ReportMetric(float64(tSync.Milliseconds())/float64(b.N), "ms-sync/op")
	b.ReportMetric(float64(tImport)/float64(tRef+tSync), "import/cp+convert+sync")
}

// fsyncPath flushes the file at path to the disk.
func fsyncPath(t testing.TB, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// writeSparseRaw writes a sparse raw image of size bytes holding extents
// pieces of extentSize random bytes, spread evenly from offset 0.
func writeSparseRaw(t testing.TB, path string, size int64, extents int, extentSize int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, extentSize)
	stride := size / int64(extents)
	for i := range int64(extents) {
		for j := 0; j+8 <= len(buf); j += 8 {
			v := rng.Uint64()
			for k := range 8 {
				buf[j+k] = byte(v >> (8 * k))
			}
		}
		if _, err := f.WriteAt(buf, i*stride); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
