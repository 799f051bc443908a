package disk

import (
	"context"
	"os"
	"testing"
	"time"
)

// BenchmarkConsolidateVsConvert times Consolidate against a plain
// `qemu-img convert -O qcow2` of the same 4-layer chain (256 MiB virtual,
// 24 MiB of data per layer, overlapping in part) and reports
// time(Consolidate)/time(convert) as "consolidate/convert". Both run in
// each iteration, in alternating order, on a warm page cache.
func BenchmarkConsolidateVsConvert(b *testing.B) {
	requireQemu(b)
	ctx := context.Background()
	dir := b.TempDir()
	chain := buildChain(b, dir, "256M", [4][]string{
		{"write -P 0x01 0 24M", "write -P 0x11 128M 8M"},
		{"write -P 0x02 16M 24M"},
		{"write -P 0x03 64M 24M"},
		{"write -P 0x04 120M 24M"},
	})
	top := chain[3]
	q := New()
	out := b.TempDir()
	dst := join(out, "out.qcow2")

	timeIt := func(f func() error) time.Duration {
		os.Remove(dst)
		start := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	consolidate := func() error { return q.Consolidate(ctx, top, dst, nil) }
	convert := func() error { return ConvertReference(ctx, top, dst) }

	var tConsolidate, tConvert time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			tConsolidate += timeIt(consolidate)
			tConvert += timeIt(convert)
		} else {
			tConvert += timeIt(convert)
			tConsolidate += timeIt(consolidate)
		}
	}
	b.ReportMetric(float64(tConsolidate)/float64(tConvert), "consolidate/convert")
	b.ReportMetric(float64(tConsolidate.Milliseconds())/float64(b.N), "ms-consolidate/op")
	b.ReportMetric(float64(tConvert.Milliseconds())/float64(b.N), "ms-convert/op")
}
