package disk

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestTempPath(t *testing.T) {
	for _, tt := range []struct{ dst, want string }{
		{"/d/layers/l-0123456789abcdef.qcow2", "/d/layers/.l-0123456789abcdef.qcow2.tmp"},
		{"/d/archive/a-1/vm0.qcow2", "/d/archive/a-1/.vm0.qcow2.tmp"},
	} {
		if got := TempPath(tt.dst); got != tt.want {
			t.Errorf("TempPath(%q) = %q, want %q", tt.dst, got, tt.want)
		}
		if !IsTempName(filepath.Base(TempPath(tt.dst))) {
			t.Errorf("IsTempName does not know TempPath(%q)", tt.dst)
		}
	}
	for name, want := range map[string]bool{
		".l-1.qcow2.tmp": true, ".l-1.qcow2.src.tmp": true, ".a-1.tmp": true, ".x.tar.0a1b.tmp": true,
		"l-1.qcow2": false, ".tmp": false, "..tmp": false, "x.tmp": false, ".hidden": false,
	} {
		if got := IsTempName(name); got != want {
			t.Errorf("IsTempName(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestConsolidateWritesThroughTempPath watches a conversion from its
// progress callback: the output exists only under TempPath(dst) while
// qemu-img runs, private to the owner, and is published as dst (0600)
// with nothing else left. A stale file at TempPath(dst), as a crash
// leaves, is replaced rather than in the way.
func TestConsolidateWritesThroughTempPath(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	dir := t.TempDir()
	base := newQcow2(t, join(dir, "base.qcow2"), "256M")
	qemuIO(t, base, "write -P 0x5a 0 64M")
	dst := join(dir, "new.qcow2")
	if err := os.WriteFile(TempPath(dst), []byte("left by a crash"), 0o644); err != nil {
		t.Fatal(err)
	}
	var seen []string
	err := New().Consolidate(context.Background(), base, dst, func(done, total int64) {
		if done == 0 || done == total {
			return
		}
		st, err := os.Stat(TempPath(dst))
		_, dstErr := os.Lstat(dst)
		switch {
		case err != nil:
			seen = append(seen, "no temp file: "+err.Error())
		case st.Mode().Perm() != 0o600:
			seen = append(seen, "temp mode "+st.Mode().Perm().String())
		case dstErr == nil:
			seen = append(seen, "dst exists during the conversion")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 0 {
		t.Errorf("during the conversion: %q", seen)
	}
	if st, err := os.Stat(dst); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("dst: %v, %v; want mode 0600", st, err)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"base.qcow2", "new.qcow2"}) {
		t.Errorf("directory holds %q", names)
	}
}

func TestCreateDeltaIsPrivate(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	dir := t.TempDir()
	base := newQcow2(t, join(dir, "base.qcow2"), "8M")
	dst := join(dir, "top.qcow2")
	if err := New().CreateDelta(context.Background(), base, dst); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(dst); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("delta: %v, %v; want mode 0600", st, err)
	}
}
