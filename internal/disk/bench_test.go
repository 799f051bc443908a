package disk

import (
	"context"
	"fmt"
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

// BenchmarkCreateDelta times CreateDelta (written natively) against
// qemu-img create, on a 64 GiB parent, alternating in each iteration, and
// reports each and qemu-img/native. Both sync the file; the native one
// also syncs the directory.
func BenchmarkCreateDelta(b *testing.B) {
	requireQemu(b)
	ctx := context.Background()
	dir := b.TempDir()
	base := newQcow2(b, join(dir, "base.qcow2"), "64G")
	q := New()
	n := 0
	timeIt := func(create func(ctx context.Context, parent, dst string) error) time.Duration {
		n++
		dst := join(dir, fmt.Sprintf("delta-%d.qcow2", n))
		start := time.Now()
		if err := create(ctx, base, dst); err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		os.Remove(dst)
		return d
	}
	var tNative, tQemu time.Duration
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			tNative += timeIt(q.CreateDelta)
			tQemu += timeIt(q.createDeltaQemuImg)
		} else {
			tQemu += timeIt(q.createDeltaQemuImg)
			tNative += timeIt(q.CreateDelta)
		}
	}
	reportVsQemuImg(b, tNative, tQemu)
}

// BenchmarkHasData times HasData (read natively) against qemu-img map on
// deltas of a 64 GiB base: a fresh one (the answer is in the L1 table) and
// one with 4 KiB written at 60 GiB (one L2 table is read).
func BenchmarkHasData(b *testing.B) {
	requireQemu(b)
	ctx := context.Background()
	dir := b.TempDir()
	base := newQcow2(b, join(dir, "base.qcow2"), "64G")
	qemuIO(b, base, "write -P 0xaa 0 1M")
	fresh := newDelta(b, base, join(dir, "fresh.qcow2"))
	data := newDelta(b, base, join(dir, "data.qcow2"))
	qemuIO(b, data, "write -P 0xbb 60G 4k")
	q := New()
	for _, layer := range []struct {
		name, path string
		want       bool
	}{{"fresh", fresh, false}, {"data", data, true}} {
		b.Run(layer.name, func(b *testing.B) {
			timeIt := func(hasData func(ctx context.Context, path string) (bool, error)) time.Duration {
				start := time.Now()
				has, err := hasData(ctx, layer.path)
				if err != nil || has != layer.want {
					b.Fatalf("HasData = %v, %v; want %v", has, err, layer.want)
				}
				return time.Since(start)
			}
			var tNative, tQemu time.Duration
			for i := 0; b.Loop(); i++ {
				if i%2 == 0 {
					tNative += timeIt(q.HasData)
					tQemu += timeIt(q.hasDataQemuImg)
				} else {
					tQemu += timeIt(q.hasDataQemuImg)
					tNative += timeIt(q.HasData)
				}
			}
			reportVsQemuImg(b, tNative, tQemu)
		})
	}
}

// reportVsQemuImg reports the time per operation of the native and the
// qemu-img implementation, and how many times slower qemu-img is.
func reportVsQemuImg(b *testing.B, native, qemuImg time.Duration) {
	b.ReportMetric(float64(native.Nanoseconds())/float64(b.N), "ns-native/op")
	b.ReportMetric(float64(qemuImg.Nanoseconds())/float64(b.N), "ns-qemu-img/op")
	b.ReportMetric(float64(qemuImg)/float64(native), "qemu-img/native")
}
