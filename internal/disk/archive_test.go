package disk

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stagehand/internal/errdefs"
)

// chainFixture is base (0xaa) ← l1 (0x11, and zeroes over base's data) ←
// l2 (0x22) in a layers directory, as a configuration with two snapshots
// has them.
func chainFixture(t *testing.T) (base, l1, l2 string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layers")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	base = newQcow2(t, filepath.Join(dir, "base.qcow2"), "16M")
	qemuIO(t, base, "write -P 0xaa 0 4M")
	l1 = newDelta(t, base, filepath.Join(dir, "l1.qcow2"))
	qemuIO(t, l1, "write -P 0x11 1M 1M", "write -z 2M 512k")
	l2 = newDelta(t, l1, filepath.Join(dir, "l2.qcow2"))
	qemuIO(t, l2, "write -P 0x22 3M 64k", "write -z 0 64k")
	return base, l1, l2
}

// A chain goes into an archive as a compressed base and compressed deltas
// named by relative backing names, and comes back out as layers that read
// as the originals, each point of the chain.
func TestArchiveDeltaRoundTrip(t *testing.T) {
	requireQemu(t)
	ctx := context.Background()
	q := New()
	base, l1, l2 := chainFixture(t)
	arch := filepath.Join(t.TempDir(), "disks")
	if err := os.Mkdir(arch, 0o700); err != nil {
		t.Fatal(err)
	}
	ab, a1, a2 := filepath.Join(arch, "d-base.qcow2"), filepath.Join(arch, "d-s0.qcow2"), filepath.Join(arch, "d-s1.qcow2")
	if err := q.ConsolidateCompressed(ctx, base, ab, nil); err != nil {
		t.Fatal(err)
	}
	if err := q.ArchiveDelta(ctx, l1, base, a1, "d-base.qcow2"); err != nil {
		t.Fatal(err)
	}
	if err := q.ArchiveDelta(ctx, l2, l1, a2, "d-s0.qcow2"); err != nil {
		t.Fatal(err)
	}
	if got := dirNames(t, arch); strings.Join(got, " ") != "d-base.qcow2 d-s0.qcow2 d-s1.qcow2" {
		t.Errorf("archive dir holds %v; want the three files and no temporary one", got)
	}
	for _, c := range []struct{ file, backing, original string }{{a1, "d-base.qcow2", l1}, {a2, "d-s0.qcow2", l2}} {
		if got := recordedBacking(t, c.file); got != c.backing {
			t.Errorf("%s records backing %q, want %q", c.file, got, c.backing)
		}
		if err := q.CheckDelta(ctx, c.file, c.backing); err != nil {
			t.Errorf("CheckDelta of a delta we wrote: %v", err)
		}
		if eq, err := q.compare(ctx, c.original, c.file); err != nil || !eq {
			t.Errorf("%s reads differently from %s (%v)", c.file, c.original, err)
		}
	}
	// Each delta maps only its layer's own clusters (data and zeroes):
	// l1's 1.5 MiB, l2's 128 KiB.
	for _, c := range []struct {
		file string
		want int64
	}{{a1, 1536 << 10}, {a2, 128 << 10}} {
		if got := ownBytes(t, c.file); got != c.want {
			t.Errorf("%s maps %d bytes of its own, want %d", c.file, got, c.want)
		}
	}

	// Back into layers: base, then each delta onto the layer before it.
	out := filepath.Join(t.TempDir(), "layers")
	if err := os.Mkdir(out, 0o700); err != nil {
		t.Fatal(err)
	}
	nb, n1, n2 := filepath.Join(out, "nb.qcow2"), filepath.Join(out, "n1.qcow2"), filepath.Join(out, "n2.qcow2")
	if err := q.Consolidate(ctx, ab, nb, nil); err != nil {
		t.Fatal(err)
	}
	if err := q.ExpandDelta(ctx, a1, nb, n1, nil); err != nil {
		t.Fatal(err)
	}
	if err := q.ExpandDelta(ctx, a2, n1, n2, nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ restored, original, backing string }{{n1, l1, "nb.qcow2"}, {n2, l2, "n1.qcow2"}} {
		if got := recordedBacking(t, c.restored); got != c.backing {
			t.Errorf("%s records backing %q, want %q", c.restored, got, c.backing)
		}
		if eq, err := q.compare(ctx, c.original, c.restored); err != nil || !eq {
			t.Errorf("restored %s reads differently from %s (%v)", c.restored, c.original, err)
		}
	}
	if err := q.ExpandDelta(ctx, a1, nb, n1, nil); !errors.Is(err, os.ErrExist) {
		t.Errorf("expand onto an existing layer: %v, want ErrExist", err)
	}
}

// ownBytes is how many bytes of path's virtual disk its own clusters map
// (qemu-img map entries at depth 0).
func ownBytes(t *testing.T, path string) int64 {
	t.Helper()
	var entries []struct {
		Length  int64 `json:"length"`
		Depth   int   `json:"depth"`
		Present bool  `json:"present"`
	}
	if err := json.Unmarshal([]byte(runTool(t, "qemu-img", "map", "--output=json", "-f", "qcow2", path)), &entries); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range entries {
		if e.Depth == 0 && e.Present {
			n += e.Length
		}
	}
	return n
}

// A backing name that is not a plain file beside the delta is refused
// before anything is written; a delta from elsewhere that names another
// backing file than the manifest's, or an unsafe one, is invalid.
func TestArchiveDeltaRefusals(t *testing.T) {
	requireQemu(t)
	ctx := context.Background()
	q := New()
	base, l1, _ := chainFixture(t)
	arch := t.TempDir()
	ab := filepath.Join(arch, "b.qcow2")
	if err := q.ConsolidateCompressed(ctx, base, ab, nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"../b.qcow2", "/etc/passwd", "nbd:localhost", "missing.qcow2", ""} {
		if err := q.ArchiveDelta(ctx, l1, base, filepath.Join(arch, "d.qcow2"), name); err == nil {
			t.Errorf("ArchiveDelta with backing %q: no error", name)
		}
	}
	if got := dirNames(t, arch); strings.Join(got, " ") != "b.qcow2" {
		t.Errorf("refusals left %v", got)
	}
	// A hand-made delta naming an absolute backing path, and one with the
	// right name but no backing format (QEMU would probe it).
	abs := newDelta(t, ab, filepath.Join(arch, "abs.qcow2"))
	probe := filepath.Join(arch, "probe.qcow2")
	runTool(t, "qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", "b.qcow2", "-F", "raw", probe, "16M")
	for _, c := range []struct{ file, want string }{{abs, "names backing file"}, {probe, "backing format"}} {
		err := q.CheckDelta(ctx, c.file, "b.qcow2")
		if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckDelta %s: %v; want ErrInvalid saying %q", c.file, err, c.want)
		}
	}
	if err := q.CheckDelta(ctx, ab, "b.qcow2"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("CheckDelta of a standalone image: %v; want ErrInvalid", err)
	}
}
