package disk

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestHasData(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	tests := []struct {
		name  string
		write []string // qemu-io commands on the delta
		want  bool
	}{
		{"fresh delta", nil, false},
		{"data written", []string{"write -P 0xbb 2M 4k"}, true},
		{"data over the base's data", []string{"write -P 0xbb 0 64k"}, true},
		{"zeroes written", []string{"write -z 0 64k"}, true},
		{"zeroes written, unmapped", []string{"write -z -u 3M 64k"}, true},
		{"discard", []string{"discard 0 1M"}, true},
		{"read only", []string{"read -P 0xaa 0 1M"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			base := newQcow2(t, join(dir, "base.qcow2"), "64M")
			qemuIO(t, base, "write -P 0xaa 0 1M")
			delta := newDelta(t, base, join(dir, "delta.qcow2"))
			if len(tt.write) > 0 {
				qemuIO(t, delta, tt.write...)
			}
			got, err := New().HasData(context.Background(), delta)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("HasData = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHasDataBase(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	dir := t.TempDir()
	empty := newQcow2(t, join(dir, "empty.qcow2"), "64M")
	full := newQcow2(t, join(dir, "full.qcow2"), "64M")
	qemuIO(t, full, "write -P 0xaa 32M 4k")
	for path, want := range map[string]bool{empty: false, full: true} {
		if got, err := New().HasData(context.Background(), path); err != nil || got != want {
			t.Errorf("HasData(%s) = %v, %v; want %v", filepath.Base(path), got, err, want)
		}
	}
	if _, err := New().HasData(context.Background(), join(dir, "missing.qcow2")); err == nil {
		t.Error("HasData on a missing file: no error")
	}
}

func TestCreateDelta(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	ctx := context.Background()
	data := t.TempDir()
	layers := join(data, "layers")
	if err := os.Mkdir(layers, 0o755); err != nil {
		t.Fatal(err)
	}
	base := newQcow2(t, join(layers, "base.qcow2"), "16M")
	qemuIO(t, base, "write -P 0xaa 0 1M")
	q := New()

	same := join(layers, "same-dir.qcow2")
	if err := q.CreateDelta(ctx, base, same); err != nil {
		t.Fatal(err)
	}
	if got := recordedBacking(t, same); got != "base.qcow2" {
		t.Errorf("same directory: recorded backing %q, want %q", got, "base.qcow2")
	}
	other := join(t.TempDir(), "other-dir.qcow2")
	if err := q.CreateDelta(ctx, base, other); err != nil {
		t.Fatal(err)
	}
	if got := recordedBacking(t, other); got != base {
		t.Errorf("other directory: recorded backing %q, want %q", got, base)
	}
	if has, err := q.HasData(ctx, same); err != nil || has {
		t.Errorf("new delta HasData = %v, %v; want false", has, err)
	}

	// The relative name lets the whole data directory move.
	moved := data + "-moved"
	if err := os.Rename(data, moved); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(moved) })
	movedDelta, movedBase := join(moved, "layers/same-dir.qcow2"), join(moved, "layers/base.qcow2")
	if eq, err := Compare(ctx, movedDelta, movedBase); err != nil || !eq {
		t.Errorf("after moving the data dir: Compare(delta, base) = %v, %v; want equal", eq, err)
	}
}

func TestCreateDeltaColonInName(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	dir := t.TempDir()
	base := newQcow2(t, join(dir, "tmpl:web.qcow2"), "4M")
	delta := join(dir, "delta.qcow2")
	if err := New().CreateDelta(context.Background(), base, delta); err != nil {
		t.Fatal(err)
	}
	chain, err := New().Chain(context.Background(), delta)
	if err != nil || !slices.Equal(chain, []string{delta, base}) {
		t.Errorf("Chain = %q, %v; want [delta base]", chain, err)
	}
}

func TestCreateDeltaFailures(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	base := newQcow2(t, join(dir, "base.qcow2"), "4M")
	raw := join(dir, "raw.img")
	runTool(t, "qemu-img", "create", "-q", "-f", "raw", raw, "4M")

	existing := join(dir, "existing.qcow2")
	if err := os.WriteFile(existing, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := New().CreateDelta(ctx, base, existing); !errors.Is(err, os.ErrExist) {
		t.Errorf("over an existing file: err = %v, want ErrExist", err)
	}
	if b, _ := os.ReadFile(existing); string(b) != "keep me" {
		t.Errorf("existing file overwritten: %q", b)
	}

	for name, parent := range map[string]string{"missing parent": join(dir, "missing.qcow2"), "raw parent": raw} {
		dst := join(dir, "delta-"+filepath.Base(parent))
		if err := New().CreateDelta(ctx, parent, dst); err == nil {
			t.Errorf("%s: no error", name)
		}
		if _, err := os.Lstat(dst); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: left %s behind", name, dst)
		}
	}
}

// TestCreateDeltaCostIndependentOfSize is a smoke test; the real numbers
// come from the benchmarks.
func TestCreateDeltaCostIndependentOfSize(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	for _, size := range []string{"1G", "64G"} {
		dir := t.TempDir()
		base := newQcow2(t, join(dir, "base.qcow2"), size)
		qemuIO(t, base, "write -P 0xaa 0 4M", "write -P 0xbb 512M 4M")
		dst := join(dir, "delta.qcow2")
		start := time.Now()
		if err := New().CreateDelta(context.Background(), base, dst); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s base: CreateDelta took %v, want under a second", size, d)
		}
		if fi, err := os.Stat(dst); err != nil || fi.Size() > 1<<20 {
			t.Errorf("%s base: delta is %d bytes (%v), want a small header-only file", size, fi.Size(), err)
		}
	}
}

func TestSetReadOnly(t *testing.T) {
	t.Parallel()
	path := join(t.TempDir(), "layer.qcow2")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	q := New()
	for _, tt := range []struct {
		readOnly bool
		want     os.FileMode
	}{{true, 0o400}, {false, 0o600}, {true, 0o400}} {
		if err := q.SetReadOnly(path, tt.readOnly); err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != tt.want {
			t.Errorf("SetReadOnly(%v): mode %v, want %v", tt.readOnly, fi.Mode().Perm(), tt.want)
		}
	}
	if err := q.SetReadOnly(path+".missing", true); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v, want ErrNotExist", err)
	}
}

func TestInfoAndChain(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	base := newQcow2(t, join(dir, "base.qcow2"), "32M")
	qemuIO(t, base, "write -P 0xaa 0 2M")
	// Relative backing names, as CreateDelta records them.
	runTool(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "base.qcow2", join(dir, "mid.qcow2"))
	runTool(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "mid.qcow2", join(dir, "top.qcow2"))
	mid, top := join(dir, "mid.qcow2"), join(dir, "top.qcow2")
	q := New()

	info, err := q.Info(ctx, top)
	if err != nil {
		t.Fatal(err)
	}
	want := Info{Path: top, Format: "qcow2", VirtualSize: 32 << 20, ActualSize: info.ActualSize, BackingFile: mid}
	if info != want || info.ActualSize <= 0 {
		t.Errorf("Info(top) = %+v, want %+v with ActualSize > 0", info, want)
	}
	baseInfo, err := q.Info(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	if baseInfo.BackingFile != "" || baseInfo.ActualSize < 2<<20 {
		t.Errorf("Info(base) = %+v, want no backing file and at least 2 MiB allocated", baseInfo)
	}

	chain, err := q.Chain(ctx, dir+"/./top.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(chain, []string{top, mid, base}) {
		t.Errorf("Chain = %q, want %q", chain, []string{top, mid, base})
	}
	if _, err := q.Info(ctx, join(dir, "missing.qcow2")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Info(missing) err = %v, want ErrNotExist", err)
	}
	os.Remove(mid)
	if _, err := q.Chain(ctx, top); err == nil {
		t.Error("Chain with a missing backing file: no error")
	}
}
