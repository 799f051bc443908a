package disk

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"stagehand/internal/errdefs"
)

func TestImportBase(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	src := t.TempDir()
	rawPath := join(src, "disk.img")
	runTool(t, "qemu-img", "create", "-q", "-f", "raw", rawPath, "8M")
	runTool(t, "qemu-io", "-f", "raw", "-c", "write -P 0x5a 1M 512k", rawPath)
	qcowPath := newQcow2(t, join(src, "disk.qcow2"), "16M")
	qemuIO(t, qcowPath, "write -P 0xa5 4M 1M")

	tests := []struct {
		name, src, format string
		size              int64
	}{
		{"raw", rawPath, "raw", 8 << 20},
		{"raw detected", rawPath, "", 8 << 20},
		{"qcow2", qcowPath, "qcow2", 16 << 20},
		{"qcow2 detected", qcowPath, "", 16 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dst := join(t.TempDir(), "base.qcow2")
			q := New()
			size, err := q.ImportBase(ctx, tt.src, tt.format, dst)
			if err != nil {
				t.Fatal(err)
			}
			if size != tt.size {
				t.Errorf("size = %d, want %d", size, tt.size)
			}
			info, err := q.Info(ctx, dst)
			if err != nil {
				t.Fatal(err)
			}
			if info.Format != "qcow2" || info.BackingFile != "" || info.VirtualSize != tt.size {
				t.Errorf("info = %+v, want a standalone qcow2 of %d bytes", info, tt.size)
			}
			if eq, err := Compare(ctx, tt.src, dst); err != nil || !eq {
				t.Errorf("Compare(src, dst) = %v, %v; want equal", eq, err)
			}
			if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o644 {
				t.Errorf("dst mode = %v, %v; want 0644", fi.Mode(), err)
			}
		})
	}
}

func TestImportBaseRefuses(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	src := t.TempDir()
	rawPath := join(src, "disk.img")
	runTool(t, "qemu-img", "create", "-q", "-f", "raw", rawPath, "4M")
	textPath := join(src, "notes.txt")
	if err := os.WriteFile(textPath, []byte("not a disk image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	emptyPath := join(src, "empty.img")
	if err := os.WriteFile(emptyPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	qcowPath := newQcow2(t, join(src, "plain.qcow2"), "4M")
	qemuIO(t, qcowPath, "write -P 0x11 0 64k")
	withBacking := newDelta(t, qcowPath, join(src, "delta.qcow2"))
	vmdkPath := join(src, "disk.vmdk")
	runTool(t, "qemu-img", "create", "-q", "-f", "vmdk", vmdkPath, "4M")
	corrupt := copyFile(t, qcowPath, join(src, "corrupt.qcow2"))
	setRefcount(t, corrupt, 0, 0) // the header cluster, still referenced

	tests := []struct {
		name, src, format string
		msg               string // part of the error message
	}{
		{"qcow2 claim on raw", rawPath, "qcow2", "not a qcow2 image"},
		{"qcow2 claim on text", textPath, "qcow2", "not a qcow2 image"},
		{"raw claim on qcow2", qcowPath, "raw", "given as raw but it is a qcow2 image"},
		{"raw claim on vmdk", vmdkPath, "raw", "given as raw but it is a vmdk image"},
		{"detected vmdk", vmdkPath, "", "unsupported format vmdk"},
		{"unknown format", rawPath, "vmdk", "unsupported format"},
		{"qcow2 with backing", withBacking, "qcow2", "backing file"},
		{"detected qcow2 with backing", withBacking, "", "backing file"},
		{"corrupt qcow2", corrupt, "qcow2", "corrupt"},
		{"missing", join(src, "missing.img"), "", "no such file"},
		{"directory", src, "raw", "not a regular file"},
		{"empty", emptyPath, "", "empty file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			dst := join(dir, "base.qcow2")
			_, err := New().ImportBase(context.Background(), tt.src, tt.format, dst)
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.src) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %q, want it to name %q and say %q", err, tt.src, tt.msg)
			}
			if testing.Verbose() {
				t.Log(err)
			}
			if names := dirNames(t, dir); len(names) != 0 {
				t.Errorf("left %q in the destination directory", names)
			}
		})
	}
}

func TestImportBaseKeepsExistingDst(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	dir := t.TempDir()
	src := newQcow2(t, join(dir, "src.qcow2"), "4M")
	dst := join(dir, "base.qcow2")
	if err := os.WriteFile(dst, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New().ImportBase(context.Background(), src, "qcow2", dst); !errors.Is(err, os.ErrExist) {
		t.Fatalf("err = %v, want ErrExist", err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "precious" {
		t.Errorf("dst overwritten: %q", b)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"base.qcow2", "src.qcow2"}) {
		t.Errorf("directory holds %q", names)
	}
}

func TestMissingQemuImg(t *testing.T) {
	q := &QemuImg{}
	if _, err := q.Version(context.Background()); !errors.Is(err, errdefs.ErrUnavailable) ||
		!strings.Contains(err.Error(), "qemu-img not found") {
		t.Errorf("Version err = %v, want ErrUnavailable saying qemu-img is missing", err)
	}
	dir := t.TempDir()
	if _, err := q.Info(context.Background(), dir); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("Info err = %v, want ErrUnavailable", err)
	}

	// CreateDelta and HasData read and write qcow2 themselves: a linked
	// clone does not need qemu-img.
	img, err := encodeDelta(1<<20, "base.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	parent, delta := join(dir, "parent.qcow2"), join(dir, "delta.qcow2")
	if err := os.WriteFile(parent, img.bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := q.CreateDelta(context.Background(), parent, delta); err != nil {
		t.Errorf("CreateDelta without qemu-img: %v", err)
	}
	if has, err := q.HasData(context.Background(), delta); err != nil || has {
		t.Errorf("HasData without qemu-img = %v, %v; want false", has, err)
	}
}
