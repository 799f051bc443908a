package disk

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCreateDeltaMatchesQemuImg writes a delta natively and one with
// qemu-img create on the same parent and wants the same bytes, a clean
// qemu-img check and the same qemu-img info.
func TestCreateDeltaMatchesQemuImg(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	tests := []struct {
		name     string
		size     string   // parent's virtual size
		options  []string // parent's qemu-img create -o options
		wantSize int64
		// headerSize, when not 0, is written into the parent's header
		// after qemu-img made it: a size QEMU rounds down to 512.
		headerSize uint64
	}{
		{name: "1 MiB", size: "1M", wantSize: 1 << 20},
		{name: "1 GiB", size: "1G", wantSize: 1 << 30},
		{name: "64 GiB", size: "64G", wantSize: 64 << 30},
		{name: "1 TiB", size: "1T", wantSize: 1 << 40},
		{name: "8 TiB, L1 of two clusters", size: "8T", wantSize: 8 << 40},
		{name: "not a cluster multiple", size: "1000000000", wantSize: 1000000000},
		{name: "empty", size: "0", wantSize: 0},
		{name: "header size not a sector multiple", size: "1000448", headerSize: 1000001, wantSize: 999936},
		{name: "version 2 parent", size: "1G", options: []string{"compat=0.10"}, wantSize: 1 << 30},
		{name: "extended L2 parent", size: "1G", options: []string{"extended_l2=on"}, wantSize: 1 << 30},
		{name: "4 KiB cluster parent", size: "1G", options: []string{"cluster_size=4096"}, wantSize: 1 << 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dir := t.TempDir()
			base := join(dir, "base.qcow2")
			args := []string{"create", "-q", "-f", "qcow2"}
			if len(tt.options) > 0 {
				args = append(args, "-o", strings.Join(tt.options, ","))
			}
			runTool(t, "qemu-img", append(args, base, tt.size)...)
			if tt.headerSize != 0 {
				writeHeaderField(t, base, hdrSize, binary.BigEndian.AppendUint64(nil, tt.headerSize))
			}
			q := New()
			native, ref := join(dir, "native.qcow2"), join(dir, "ref.qcow2")
			if err := q.CreateDelta(ctx, base, native); err != nil {
				t.Fatal(err)
			}
			if err := q.createDeltaQemuImg(ctx, base, ref); err != nil {
				t.Fatal(err)
			}
			got, want := readFile(t, native), readFile(t, ref)
			if !bytes.Equal(got, want) {
				// The layout is QEMU 7.2's; another version may write an
				// equivalent file differently (check and info still apply).
				report := t.Errorf
				if !isQemu72(t) {
					report = t.Logf
				}
				report("native delta differs from qemu-img's: %s", firstDifference(got, want))
			}
			if err := q.Check(ctx, native); err != nil {
				t.Errorf("qemu-img check: %v", err)
			}
			info := qemuInfo(t, native)
			if info["virtual-size"] != float64(tt.wantSize) || info["backing-filename"] != "base.qcow2" ||
				info["backing-filename-format"] != "qcow2" || info["cluster-size"] != float64(64<<10) {
				t.Errorf("qemu-img info = %v", info)
			}
			spec := info["format-specific"].(map[string]any)["data"].(map[string]any)
			if spec["compat"] != "1.1" || spec["lazy-refcounts"] != false || spec["refcount-bits"] != float64(16) ||
				spec["corrupt"] != false || spec["extended-l2"] != false {
				t.Errorf("qemu-img info format-specific = %v", spec)
			}
			refInfo := qemuInfo(t, ref)
			for _, m := range []map[string]any{info, refInfo} {
				delete(m, "filename")
				delete(m, "actual-size")
			}
			if a, b := mustJSON(t, info), mustJSON(t, refInfo); a != b {
				t.Errorf("qemu-img info differs:\nnative   %s\nqemu-img %s", a, b)
			}
		})
	}
}

// TestCreateDeltaChain stacks native deltas three deep (the last in
// another directory, so with an absolute backing path), writes into each
// and reads every layer's data back through the top.
func TestCreateDeltaChain(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	ctx := context.Background()
	dir, other := t.TempDir(), t.TempDir()
	base := newQcow2(t, join(dir, "base.qcow2"), "64M")
	qemuIO(t, base, "write -P 0xaa 0 2M")
	q := New()
	d1, d2, d3 := join(dir, "d1.qcow2"), join(dir, "d2.qcow2"), join(other, "d3.qcow2")
	for _, l := range [][2]string{{base, d1}, {d1, d2}, {d2, d3}} {
		if err := q.CreateDelta(ctx, l[0], l[1]); err != nil {
			t.Fatal(err)
		}
		// A fresh delta reads as its parent.
		if eq, err := Compare(ctx, l[1], l[0]); err != nil || !eq {
			t.Errorf("Compare(%s, parent) = %v, %v; want equal", filepath.Base(l[1]), eq, err)
		}
	}
	qemuIO(t, d1, "write -P 0xbb 1M 1M")
	qemuIO(t, d2, "write -z 0 64k")
	qemuIO(t, d3, "write -P 0xdd 3M 64k")
	qemuIO(t, d3,
		"read -P 0 0 64k",
		"read -P 0xaa 64k 960k",
		"read -P 0xbb 1M 1M",
		"read -P 0 2M 1M",
		"read -P 0xdd 3M 64k",
		"read -P 0 4M 60M")

	if got := recordedBacking(t, d2); got != "d1.qcow2" {
		t.Errorf("d2 records backing %q, want d1.qcow2", got)
	}
	if got := recordedBacking(t, d3); got != d2 {
		t.Errorf("d3 records backing %q, want %q", got, d2)
	}
	chain, err := q.Chain(ctx, d3)
	if err != nil || !slices.Equal(chain, []string{d3, d2, d1, base}) {
		t.Errorf("Chain = %q, %v; want [d3 d2 d1 base]", chain, err)
	}
	for _, l := range []string{d1, d2, d3} {
		if err := q.Check(ctx, l); err != nil {
			t.Errorf("after writes: %v", err)
		}
		if has, err := q.HasData(ctx, l); err != nil || !has {
			t.Errorf("HasData(%s) = %v, %v; want true", filepath.Base(l), has, err)
		}
	}
}

func TestCreateDeltaRefusals(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	raw := join(dir, "raw.img")
	runTool(t, "qemu-img", "create", "-q", "-f", "raw", raw, "4M")
	unknownFeature := newQcow2(t, join(dir, "unknown-feature.qcow2"), "4M")
	writeHeaderField(t, unknownFeature, hdrIncompatibleFeatures, binary.BigEndian.AppendUint64(nil, 1<<5))
	tooBig := newQcow2(t, join(dir, "too-big.qcow2"), "1M")
	writeHeaderField(t, tooBig, hdrSize, binary.BigEndian.AppendUint64(nil, 1<<51+1<<20))
	// A parent whose absolute path is longer than the 1023 bytes qcow2
	// allows for a backing file name.
	deep := dir
	for len(deep) < 1030 {
		deep = join(deep, strings.Repeat("d", 200))
	}
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	longName := newQcow2(t, join(deep, "base.qcow2"), "4M")

	tests := []struct {
		name, parent, msg string
	}{
		{"raw parent", raw, "not a qcow2 image"},
		{"unknown incompatible feature", unknownFeature, "unknown incompatible features"},
		{"virtual size over qcow2's limit", tooBig, "too large"},
		{"backing name over 1023 bytes", longName, "backing file name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := t.TempDir()
			native, ref := join(out, "native.qcow2"), join(out, "ref.qcow2")
			err := New().CreateDelta(ctx, tt.parent, native)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %v, want one saying %q", err, tt.msg)
			}
			if refErr := New().createDeltaQemuImg(ctx, tt.parent, ref); refErr == nil {
				t.Errorf("qemu-img create accepts what CreateDelta refuses")
			}
			if names := dirNames(t, out); len(names) != 0 {
				t.Errorf("left %q behind", names)
			}
		})
	}
}

// hasDataCase builds one layer for the HasData comparison and returns its
// path.
type hasDataCase struct {
	name  string
	build func(t *testing.T, dir string) string
	want  bool // meaningless when wantErr
	// wantErr: both implementations fail.
	wantErr bool
	// native: the native reader answers by itself, without qemu-img.
	native bool
}

// deltaWith returns a builder of a delta over a 64 MiB base holding data
// at 0..1M, made with createOpts (qemu-img create -o) and then written
// with the qemu-io commands.
func deltaWith(createOpts string, cmds ...string) func(*testing.T, string) string {
	return func(t *testing.T, dir string) string {
		base := join(dir, "base.qcow2")
		runTool(t, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=1.1", base, "64M")
		qemuIO(t, base, "write -P 0xaa 0 1M")
		delta := join(dir, "delta.qcow2")
		args := []string{"create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base}
		if createOpts != "" {
			args = append(args, "-o", createOpts)
		}
		runTool(t, "qemu-img", append(args, delta)...)
		if len(cmds) > 0 {
			qemuIO(t, delta, cmds...)
		}
		return delta
	}
}

// baseWith returns a builder of a standalone image of the given size made
// with createOpts and written with the qemu-io commands.
func baseWith(size, createOpts string, cmds ...string) func(*testing.T, string) string {
	return func(t *testing.T, dir string) string {
		path := join(dir, "base.qcow2")
		args := []string{"create", "-q", "-f", "qcow2"}
		if createOpts != "" {
			args = append(args, "-o", createOpts)
		}
		runTool(t, "qemu-img", append(args, path, size)...)
		if len(cmds) > 0 {
			qemuIO(t, path, cmds...)
		}
		return path
	}
}

// then runs edit on the layer build made.
func then(build func(*testing.T, string) string, edit func(t *testing.T, path string)) func(*testing.T, string) string {
	return func(t *testing.T, dir string) string {
		path := build(t, dir)
		edit(t, path)
		return path
	}
}

func setIncompatible(bits uint64) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		writeHeaderField(t, path, hdrIncompatibleFeatures, binary.BigEndian.AppendUint64(nil, bits))
	}
}

// TestHasDataMatchesQemuImg runs the native reader and qemu-img map on the
// same layers and wants the same answer, and says which layers the native
// reader must answer alone.
func TestHasDataMatchesQemuImg(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	tests := []hasDataCase{
		{name: "fresh delta", build: deltaWith(""), want: false, native: true},
		{name: "data", build: deltaWith("", "write -P 0xbb 2M 4k"), want: true, native: true},
		{name: "data over the base's data", build: deltaWith("", "write -P 0xbb 0 64k"), want: true, native: true},
		{name: "zeroes", build: deltaWith("", "write -z 0 64k"), want: true, native: true},
		{name: "zeroes, unmapped", build: deltaWith("", "write -z -u 3M 64k"), want: true, native: true},
		{name: "discard", build: deltaWith("", "discard 0 1M"), want: true, native: true},
		{name: "read only", build: deltaWith("", "read -P 0xaa 0 1M"), want: false, native: true},
		{name: "compressed", build: deltaWith("", "write -c -P 0xbb 4M 64k"), want: true, native: true},
		{name: "data in the last cluster", build: deltaWith("", "write -P 0xbb 63M 4k"), want: true, native: true},
		{name: "lazy refcounts, dirty", build: then(deltaWith("lazy_refcounts=on", "write -P 0xbb 2M 4k"),
			setIncompatible(incompatDirty)), want: true, native: true},

		{name: "base, empty", build: baseWith("64M", ""), want: false, native: true},
		{name: "base, data", build: baseWith("64M", "", "write -P 0xaa 32M 4k"), want: true, native: true},
		{name: "base, zeroes", build: baseWith("64M", "", "write -z 32M 64k"), want: true, native: true},
		// QEMU keeps a discarded cluster of a version 3 image as a zero
		// cluster, which counts.
		{name: "base, data discarded", build: baseWith("64M", "", "write -P 0xaa 32M 64k", "discard 32M 64k"),
			want: true, native: true},
		{name: "base, 64 GiB, data at the end", build: baseWith("64G", "", "write -P 0xaa 65535M 4k"),
			want: true, native: true},
		{name: "base, size not a cluster multiple, data in the last sector",
			build: baseWith("1000000000", "", "write -P 0xaa 999999488 512"), want: true, native: true},
		{name: "base, internal snapshot of data", build: then(baseWith("64M", "", "write -P 0xaa 0 64k"),
			func(t *testing.T, p string) { runTool(t, "qemu-img", "snapshot", "-c", "s1", p) }),
			want: true, native: true},

		{name: "v2, fresh delta", build: deltaWith("compat=0.10"), want: false, native: true},
		{name: "v2, data", build: deltaWith("compat=0.10", "write -P 0xbb 2M 4k"), want: true, native: true},
		{name: "v2, zeroes", build: deltaWith("compat=0.10", "write -z 0 64k"), want: true, native: true},

		{name: "extended L2, fresh delta", build: deltaWith("extended_l2=on"), want: false, native: true},
		{name: "extended L2, one subcluster of data", build: deltaWith("extended_l2=on", "write -P 0xbb 2M 2k"),
			want: true, native: true},
		{name: "extended L2, zero subcluster", build: deltaWith("extended_l2=on", "write -z 2M 2k"),
			want: true, native: true},
		{name: "extended L2, zeroes unmapped", build: deltaWith("extended_l2=on", "write -z -u 0 64k"),
			want: true, native: true},
		{name: "extended L2, discard", build: deltaWith("extended_l2=on", "discard 0 1M"), want: true, native: true},
		{name: "extended L2, base, empty", build: baseWith("64M", "extended_l2=on"), want: false, native: true},
		{name: "extended L2, base, data discarded",
			build: baseWith("64M", "extended_l2=on", "write -P 0xaa 32M 64k", "discard 32M 64k"),
			want:  true, native: true},

		{name: "marked corrupt", build: then(deltaWith("", "write -P 0xbb 2M 4k"), setIncompatible(incompatCorrupt)),
			want: true},
		{name: "external data file", build: func(t *testing.T, dir string) string {
			p := join(dir, "ext.qcow2")
			runTool(t, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "data_file="+join(dir, "ext.raw"), p, "64M")
			qemuIO(t, p, "write -P 0xaa 0 64k")
			return p
		}, want: true},
		{name: "encrypted", build: func(t *testing.T, dir string) string {
			p := join(dir, "enc.qcow2")
			args := []string{"create", "-q", "--object", "secret,id=sec0,data=secret", "-f", "qcow2",
				"-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=100", p, "64M"}
			// qemu-img times its key derivation by the thread's CPU time
			// and gives up ("Unable to get accurate CPU usage") when a
			// round measured zero, which a coarse or busy clock can do:
			// that is the tool's measurement, not what this test is about.
			for try := 1; ; try++ {
				out, err := exec.Command("qemu-img", args...).CombinedOutput()
				if err == nil {
					break
				}
				if try == 3 || !strings.Contains(string(out), "Unable to get accurate CPU usage") {
					t.Fatalf("qemu-img %s: %v: %s", strings.Join(args, " "), err, out)
				}
				os.Remove(p)
			}
			return p
		}, wantErr: true},
		{name: "unknown incompatible feature", build: then(deltaWith(""), setIncompatible(1<<5)), wantErr: true},
		{name: "tables past the end of the file", build: then(deltaWith("", "write -P 0xbb 2M 4k"),
			func(t *testing.T, p string) {
				// Keep the header, refcounts and L1 table; drop the L2
				// table, which QEMU then reads as zeroes.
				if err := os.Truncate(p, 4<<16); err != nil {
					t.Fatal(err)
				}
			}), want: false},
		{name: "raw file", build: func(t *testing.T, dir string) string {
			p := join(dir, "raw.img")
			runTool(t, "qemu-img", "create", "-q", "-f", "raw", p, "4M")
			return p
		}, wantErr: true, native: true},
		{name: "missing", build: func(t *testing.T, dir string) string { return join(dir, "missing.qcow2") },
			wantErr: true, native: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			path := tt.build(t, t.TempDir())
			q := New()
			ref, refErr := q.hasDataQemuImg(ctx, path)
			got, err := q.HasData(ctx, path)
			if (err != nil) != (refErr != nil) || got != ref {
				t.Fatalf("HasData = %v, %v; qemu-img map says %v, %v", got, err, ref, refErr)
			}
			if tt.wantErr {
				if err == nil {
					t.Errorf("HasData = %v, want an error", got)
				}
				t.Log(err)
			} else if got != tt.want || err != nil {
				t.Errorf("HasData = %v, %v; want %v", got, err, tt.want)
			}
			_, nativeErr := hasDataNative(ctx, path)
			var u *unusualImage
			if fellBack := errors.As(nativeErr, &u); fellBack == tt.native {
				t.Errorf("native reader: err = %v, want it to answer alone: %v", nativeErr, tt.native)
			}
		})
	}
}

// TestHasDataInUse: like qemu-img map, HasData refuses a layer that
// another process has open for writing, and reads it once it is closed.
func TestHasDataInUse(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	ctx := context.Background()
	delta := deltaWith("", "write -P 0xbb 2M 4k")(t, t.TempDir())
	cmd := exec.Command("qemu-io", "-f", "qcow2", delta)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	// qemu-io takes its locks as it opens the image.
	f, err := os.Open(delta)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if busy, err := inUseByWriter(f); err != nil {
			t.Fatal(err)
		} else if busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("qemu-io took no lock")
		}
	}
	q := New()
	if _, err := q.hasDataQemuImg(ctx, delta); err == nil {
		t.Error("qemu-img map read an image in use")
	}
	if has, err := q.HasData(ctx, delta); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("in use: HasData = %v, %v; want an error saying it is in use", has, err)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if has, err := q.HasData(ctx, delta); err != nil || !has {
		t.Errorf("closed: HasData = %v, %v; want true", has, err)
	}
}

func TestHasDataCancelled(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	delta := deltaWith("", "write -P 0xbb 2M 4k")(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := New().HasData(ctx, delta); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if err := New().CreateDelta(ctx, delta, delta+".new"); !errors.Is(err, context.Canceled) {
		t.Errorf("CreateDelta: err = %v, want context.Canceled", err)
	}
}

// TestEncodeDeltaLayout pins the layout qemu-img uses, independently of
// qemu-img: clusters in use and the end of the file.
func TestEncodeDeltaLayout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		size         uint64
		l1Size       uint32
		usedClusters int
		fileSize     int64
	}{
		{0, 0, 3, 3 << 16},
		{1 << 20, 1, 4, 3<<16 + 8},
		{1 << 30, 2, 4, 3<<16 + 16},
		{1<<30 + 512, 3, 4, 3<<16 + 24},
		{64 << 30, 128, 4, 3<<16 + 1024},
		{1 << 40, 2048, 4, 3<<16 + 16384},
		{8 << 40, 16384, 5, 3<<16 + 131072},
		{1 << 51, 1 << 22, 3 + 512, 3<<16 + 32<<20},
	}
	for _, tt := range tests {
		img, err := encodeDelta(tt.size, "base.qcow2")
		if err != nil {
			t.Fatalf("size %d: %v", tt.size, err)
		}
		b := img.bytes()
		be := binary.BigEndian
		l1Offset := uint64(3 << 16)
		if tt.l1Size == 0 {
			l1Offset = 0
		}
		if got := be.Uint32(b[hdrL1Size:]); got != tt.l1Size {
			t.Errorf("size %d: l1_size %d, want %d", tt.size, got, tt.l1Size)
		}
		if got := be.Uint64(b[hdrL1TableOffset:]); got != l1Offset {
			t.Errorf("size %d: l1_table_offset %#x, want %#x", tt.size, got, l1Offset)
		}
		if img.fileSize != tt.fileSize {
			t.Errorf("size %d: file size %d, want %d", tt.size, img.fileSize, tt.fileSize)
		}
		block := b[2<<16 : 3<<16]
		for c := range 1 << 15 {
			want := uint16(0)
			if c < tt.usedClusters {
				want = 1
			}
			if got := be.Uint16(block[2*c:]); got != want {
				t.Fatalf("size %d: refcount of cluster %d is %d, want %d", tt.size, c, got, want)
			}
		}
		if off := be.Uint64(b[hdrBackingFileOffset:]); string(b[off:off+10]) != "base.qcow2" {
			t.Errorf("size %d: backing name at %#x reads %q", tt.size, off, b[off:off+10])
		}
	}
	if _, err := encodeDelta(1<<51+512, "base.qcow2"); err == nil {
		t.Error("size over 2 PiB: no error")
	}
	if _, err := encodeDelta(1<<20, strings.Repeat("x", 1024)); err == nil {
		t.Error("backing name of 1024 bytes: no error")
	}
}

func writeHeaderField(t testing.TB, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// firstDifference describes where a and b first differ.
func firstDifference(a, b []byte) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("at byte %#x: %#02x vs %#02x", i, a[i], b[i])
		}
	}
	return fmt.Sprintf("lengths %d vs %d", len(a), len(b))
}

// qemuInfo decodes `qemu-img info --output=json` of path.
func qemuInfo(t testing.TB, path string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(runTool(t, "qemu-img", "info", "-U", "--output=json", path)), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// isQemu72 reports whether the installed qemu-img is version 7.2, whose
// output CreateDelta reproduces byte for byte.
func isQemu72(t testing.TB) bool {
	return strings.HasPrefix(runTool(t, "qemu-img", "--version"), "qemu-img version 7.2.")
}
