package disk

import (
	"context"
	"os"
	"testing"
)

// TestBackingFileAgreesWithInfo compares the native header read with what
// qemu-img info reports, on bases, deltas recorded by relative and by
// absolute name, a name with a colon, a raw file and a text file.
func TestBackingFileAgreesWithInfo(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	ctx := context.Background()
	dir, other := t.TempDir(), t.TempDir()
	base := newQcow2(t, join(dir, "base.qcow2"), "8M")
	colon := newQcow2(t, join(dir, "tmpl:web.qcow2"), "8M")
	q := New()
	rel := join(dir, "rel.qcow2")
	if err := q.CreateDelta(ctx, base, rel); err != nil { // records "base.qcow2"
		t.Fatal(err)
	}
	relColon := join(dir, "rel-colon.qcow2")
	if err := q.CreateDelta(ctx, colon, relColon); err != nil { // records "./tmpl:web.qcow2"
		t.Fatal(err)
	}
	abs := newDelta(t, base, join(other, "abs.qcow2"))
	raw := join(dir, "disk.raw")
	runTool(t, "qemu-img", "create", "-q", "-f", "raw", raw, "1M")
	text := join(dir, "text")
	if err := os.WriteFile(text, []byte("not a disk"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path, want string
	}{
		{base, ""}, {rel, base}, {relColon, colon}, {abs, base}, {raw, ""}, {text, ""},
	} {
		got, err := q.BackingFile(ctx, tt.path)
		if err != nil {
			t.Errorf("BackingFile(%s): %v", tt.path, err)
			continue
		}
		info, err := q.Info(ctx, tt.path)
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want || got != info.BackingFile {
			t.Errorf("BackingFile(%s) = %q, want %q; qemu-img info says %q", tt.path, got, tt.want, info.BackingFile)
		}
	}
	if _, err := q.BackingFile(ctx, join(dir, "missing.qcow2")); err == nil {
		t.Error("missing file: no error")
	}
}
