package disk

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
)

// buildChain makes base <- l1 <- l2 <- top in dir, each layer writing its
// own region, one overwriting base data and one hiding it with zeroes.
func buildChain(t testing.TB, dir, size string, writes [4][]string) []string {
	t.Helper()
	names := []string{"base.qcow2", "l1.qcow2", "l2.qcow2", "top.qcow2"}
	var chain []string
	for i, name := range names {
		path := join(dir, name)
		if i == 0 {
			newQcow2(t, path, size)
		} else {
			newDelta(t, chain[i-1], path)
		}
		qemuIO(t, path, writes[i]...)
		chain = append(chain, path)
	}
	return chain
}

func TestConsolidate(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	chain := buildChain(t, dir, "64M", [4][]string{
		{"write -P 0xa0 0 4M", "write -P 0xa1 60M 1M"},
		{"write -P 0xb0 8M 2M", "write -P 0xb1 1M 64k"}, // overwrites base data
		{"write -P 0xc0 16M 2M", "write -z 60M 512k"},   // hides base data with zeroes
		{"write -P 0xd0 32M 3M", "write -P 0xd1 63M 1M"},
	})
	top := chain[3]
	sums := map[string]string{}
	for _, p := range chain {
		sums[p] = sha256File(t, p)
	}

	out := t.TempDir()
	dst := join(out, "consolidated.qcow2")
	var calls [][2]int64
	q := New()
	err := q.Consolidate(ctx, top, dst, func(done, total int64) {
		calls = append(calls, [2]int64{done, total})
	})
	if err != nil {
		t.Fatal(err)
	}

	if eq, err := Compare(ctx, top, dst); err != nil || !eq {
		t.Errorf("Compare(top, consolidated) = %v, %v; want equal", eq, err)
	}
	info, err := q.Info(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	if info.BackingFile != "" || info.Format != "qcow2" || info.VirtualSize != 64<<20 {
		t.Errorf("Info = %+v, want a standalone 64 MiB qcow2", info)
	}
	if info.ActualSize > 24<<20 {
		t.Errorf("ActualSize = %d, want a sparse file (about 12 MiB of data)", info.ActualSize)
	}
	if has, err := q.Chain(ctx, dst); err != nil || len(has) != 1 {
		t.Errorf("Chain = %q, %v; want one layer", has, err)
	}
	for p, sum := range sums {
		if got := sha256File(t, p); got != sum {
			t.Errorf("source layer %s changed", p)
		}
	}
	if names := dirNames(t, out); !slices.Equal(names, []string{"consolidated.qcow2"}) {
		t.Errorf("output directory holds %q", names)
	}

	// Progress: starts at 0, never goes back, ends at done == total.
	if len(calls) < 2 {
		t.Fatalf("progress called %d times, want at least 2", len(calls))
	}
	for i, c := range calls {
		if c[1] != 64<<20 {
			t.Errorf("call %d: total = %d, want %d", i, c[1], 64<<20)
		}
		if i > 0 && c[0] < calls[i-1][0] {
			t.Errorf("call %d: done went back from %d to %d", i, calls[i-1][0], c[0])
		}
	}
	if first, last := calls[0], calls[len(calls)-1]; first[0] != 0 || last[0] != last[1] {
		t.Errorf("progress from %v to %v, want from 0 to total", first, last)
	}
}

func TestConsolidateNilProgressAndExistingDst(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	base := newQcow2(t, join(dir, "base.qcow2"), "8M")
	qemuIO(t, base, "write -P 0xaa 0 1M")
	top := newDelta(t, base, join(dir, "top.qcow2"))
	dst := join(dir, "new.qcow2")
	if err := New().Consolidate(ctx, top, dst, nil); err != nil {
		t.Fatal(err)
	}
	sum := sha256File(t, dst)
	if err := New().Consolidate(ctx, top, dst, nil); !errors.Is(err, os.ErrExist) {
		t.Errorf("over an existing dst: err = %v, want ErrExist", err)
	}
	if sha256File(t, dst) != sum {
		t.Error("existing dst was overwritten")
	}
	if err := New().Consolidate(ctx, join(dir, "missing.qcow2"), join(dir, "x.qcow2"), nil); err == nil {
		t.Error("missing top: no error")
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"base.qcow2", "new.qcow2", "top.qcow2"}) {
		t.Errorf("directory holds %q", names)
	}
}

func TestConsolidateCancel(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	dir := t.TempDir()
	// Enough real data that qemu-img is still copying at the first
	// progress report.
	chain := buildChain(t, dir, "1G", [4][]string{
		{"write -P 0x01 0 32M"},
		{"write -P 0x02 256M 32M"},
		{"write -P 0x03 512M 32M"},
		{"write -P 0x04 768M 32M"},
	})
	before := dirNames(t, dir)

	tests := []struct {
		name string
		// cancelAt returns whether to cancel at this progress report.
		cancelAt func(done int64) bool
	}{
		{"before start", nil},
		{"mid-way", func(done int64) bool { return done > 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancelAt == nil {
				cancel()
			}
			var last int64
			err := New().Consolidate(ctx, chain[3], join(dir, "out.qcow2"), func(done, total int64) {
				last = done
				if tt.cancelAt != nil && tt.cancelAt(done) {
					cancel()
				}
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			if names := dirNames(t, dir); !slices.Equal(names, before) {
				t.Errorf("directory holds %q, want %q", names, before)
			}
			t.Logf("cancelled at %d bytes: %v", last, err)
		})
	}
}

func TestParseProgress(t *testing.T) {
	const total = 1 << 30
	tests := []struct {
		line string
		want int64
		ok   bool
	}{
		{"    (0.00/100%)", 0, true},
		{"    (50.00/100%)", total / 2, true},
		{"    (100.00/100%)", total, true},
		{"(12.5/100%)", total / 8, true},
		{"    (101.00/100%)", total, true}, // clamped
		{"qemu-img: warning", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseProgress(tt.line, total)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseProgress(%q) = %d, %v; want %d, %v", tt.line, got, ok, tt.want, tt.ok)
		}
	}
}

func TestCompare(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	a := newQcow2(t, join(dir, "a.qcow2"), "4M")
	b := newQcow2(t, join(dir, "b.qcow2"), "4M")
	if eq, err := Compare(ctx, a, b); err != nil || !eq {
		t.Errorf("empty images: Compare = %v, %v; want equal", eq, err)
	}
	qemuIO(t, b, "write -P 0x01 1M 4k")
	if eq, err := Compare(ctx, a, b); err != nil || eq {
		t.Errorf("different images: Compare = %v, %v; want different", eq, err)
	}
	if _, err := Compare(ctx, a, join(dir, "missing.qcow2")); err == nil {
		t.Error("missing image: no error")
	}
}
