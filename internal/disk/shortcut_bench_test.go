package disk

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// Reads per qemu-img bench run, and the step between them: 7919 4 KiB
// blocks, a prime, so over the 256 MiB image (65536 blocks) the reads
// visit the blocks in a scattered order, as random reads would, instead
// of the sequential order qemu-img bench uses by default.
const (
	benchReads = 40000
	benchStep  = 7919 * 4096
)

// BenchmarkChainDepthReads measures random 4 KiB reads (qemu-img bench,
// 16 in flight) through a chain whose reads all fall through to the base:
// the base holds 256 MiB of data over its whole virtual size and each of
// the 29 deltas above it writes a single 4 KiB block (29 of the 65536
// blocks), so almost every read crosses every layer. It compares the base
// alone (depth 1), the full chain (depth 30) and the same chain with
// layers 1..25 replaced by one shortcut (base, shortcut, 26..29: depth 6),
// each run in every iteration, in rotating order, on a warm page cache,
// and reports throughput (reads/s) of each and the ratios to depth 1. The
// data is 256 MiB so that the whole benchmark takes well under two minutes
// on 2 shared cores.
func BenchmarkChainDepthReads(b *testing.B) {
	requireQemu(b)
	ctx := context.Background()
	dir := b.TempDir()
	base := newQcow2(b, join(dir, "base.qcow2"), "256M")
	qemuIO(b, base, "write -q -P 0xaa 0 256M")
	layers := []string{base}
	for i := 1; i < 30; i++ {
		l := newDelta(b, layers[i-1], join(dir, fmt.Sprintf("l%02d.qcow2", i)))
		qemuIO(b, l, fmt.Sprintf("write -q -P %d %dk 4k", i, i*64))
		layers = append(layers, l)
	}
	q := New()
	sc := join(dir, "sc.qcow2")
	start := time.Now()
	if err := q.BuildShortcut(ctx, layers[25], base, sc); err != nil {
		b.Fatal(err)
	}
	b.Logf("shortcut of layers 1..25 built in %s", time.Since(start).Round(time.Millisecond))
	// The shortcut chain: copies of layers 26..29, the first rebased onto
	// the shortcut, so that both chains exist side by side.
	short := sc
	for i := 26; i < 30; i++ {
		c := copyFile(b, layers[i], join(dir, fmt.Sprintf("s%02d.qcow2", i)))
		if i == 26 {
			if err := q.RebaseOnto(ctx, c, layers[25], sc); err != nil {
				b.Fatal(err)
			}
		} else {
			runTool(b, "qemu-img", "rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b", short, c)
		}
		short = c
	}
	if chain, err := q.Chain(ctx, short); err != nil || len(chain) != 6 {
		b.Fatalf("shortcut chain = %q, %v; want 6 layers", chain, err)
	}
	if eq, err := Compare(ctx, layers[29], short); err != nil || !eq {
		b.Fatalf("Compare(depth 30, shortcut chain) = %v, %v", eq, err)
	}
	benchReadsPerSecond(b, base) // warm the page cache

	tops := []struct{ name, path string }{{"depth1", base}, {"depth30", layers[29]}, {"shortcut", short}}
	elapsed := make([]time.Duration, len(tops))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for j := range tops {
			k := (i + j) % len(tops)
			elapsed[k] += benchReadsPerSecond(b, tops[k].path)
		}
	}
	rate := func(k int) float64 { return float64(benchReads*b.N) / elapsed[k].Seconds() }
	for k, top := range tops {
		b.ReportMetric(rate(k), "reads/s-"+top.name)
	}
	b.ReportMetric(rate(1)/rate(0), "depth30/depth1")
	b.ReportMetric(rate(2)/rate(0), "shortcut/depth1")
}

var benchDoneRE = regexp.MustCompile(`Run completed in ([0-9.]+) seconds`)

// benchReadsPerSecond runs one qemu-img bench over top and returns the
// time qemu-img itself reports for the reads (without its start-up).
func benchReadsPerSecond(b *testing.B, top string) time.Duration {
	b.Helper()
	out, err := exec.Command("qemu-img", "bench", "-f", "qcow2", "-c", strconv.Itoa(benchReads),
		"-d", "16", "-s", "4k", "-S", strconv.Itoa(benchStep), top).CombinedOutput()
	if err != nil {
		b.Fatalf("qemu-img bench %s: %v: %s", top, err, out)
	}
	m := benchDoneRE.FindSubmatch(out)
	if m == nil {
		b.Fatalf("qemu-img bench %s: no time in %q", top, out)
	}
	secs, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		b.Fatal(err)
	}
	return time.Duration(secs * float64(time.Second))
}
