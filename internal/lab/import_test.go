package lab_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"stagehand/internal/disk"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
	"stagehand/internal/store"
)

// within runs f and fails the test if it has not returned after d: a
// FIFO must never hang a request.
func within(t *testing.T, d time.Duration, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("still blocked after %v", d)
		return nil
	}
}

// assertNothingImported checks a refused template import left no
// template, no file in layers/ or files/ (temporary ones included) and no
// journal entry.
func assertNothingImported(t *testing.T, e *env, name string) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.svc.Templates.Get(ctx, name); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("template %q: %v, want not found", name, err)
	}
	for _, d := range []string{"layers", "files"} {
		if ents, _ := os.ReadDir(filepath.Join(e.dir, d)); len(ents) != 0 {
			t.Errorf("%s holds %v", d, ents)
		}
	}
	if ops := journal(t, e); len(ops) != 0 {
		t.Errorf("journal entries left: %+v", ops)
	}
}

func journal(t *testing.T, e *env) []store.Op {
	t.Helper()
	var ops []store.Op
	if err := e.db.View(context.Background(), func(tx store.Tx) error {
		var err error
		ops, err = tx.Ops().List()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return ops
}

// TestImportTemplateRefusesBadInput: the text file named fake.qcow2 of
// the issue, special files as disks or boot files, and strings QEMU or the
// kernel would choke on are refused at once with ErrInvalid, leaving
// nothing.
func TestImportTemplateRefusesBadInput(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	fake := filepath.Join(dir, "fake.qcow2")
	os.WriteFile(fake, []byte("this is not a disk image"), 0o644)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	kernel := filepath.Join(dir, "vmlinuz")
	os.WriteFile(kernel, []byte("kernel"), 0o644)
	link := filepath.Join(dir, "vmlinuz-link")
	os.Symlink(kernel, link)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o644)
	img := makeImage(t, 8)

	cases := []struct {
		name string
		spec lab.TemplateSpec
		msg  string
	}{
		{"text named qcow2", lab.TemplateSpec{Disks: []string{fake}}, "is not a qcow2 image: it starts with text"},
		{"FIFO as disk", lab.TemplateSpec{Disks: []string{fifo}}, "named pipe"},
		{"device as disk", lab.TemplateSpec{Disks: []string{"/dev/zero"}}, "device"},
		{"FIFO as kernel", lab.TemplateSpec{Disks: []string{img}, Kernel: fifo}, "named pipe"},
		{"FIFO as initrd", lab.TemplateSpec{Disks: []string{img}, Kernel: kernel, Initrd: fifo}, "named pipe"},
		{"device as kernel", lab.TemplateSpec{Disks: []string{img}, Kernel: "/dev/zero"}, "device"},
		{"symlink as kernel", lab.TemplateSpec{Disks: []string{img}, Kernel: link}, "symbolic link"},
		{"empty kernel", lab.TemplateSpec{Disks: []string{img}, Kernel: empty}, "empty"},
		{"cmdline with NUL", lab.TemplateSpec{Disks: []string{img}, Kernel: kernel, Cmdline: "a,b\x00c"}, "control character"},
		{"cmdline with newline", lab.TemplateSpec{Disks: []string{img}, Kernel: kernel, Cmdline: "console=ttyS0\n-drive file=/etc/shadow"}, "control character"},
		{"cmdline too long", lab.TemplateSpec{Disks: []string{img}, Kernel: kernel, Cmdline: strings.Repeat("x", 4097)}, "longer than"},
		{"path with NUL", lab.TemplateSpec{Disks: []string{img + "\x00"}}, "control character"},
		{"relative path", lab.TemplateSpec{Disks: []string{"disk.img"}}, "absolute"},
	}
	for i, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "-"), func(t *testing.T) {
			c.spec.Name = fmt.Sprintf("t%d", i)
			err := within(t, 5*time.Second, func() error {
				_, err := e.svc.Templates.Import(context.Background(), c.spec)
				return err
			})
			if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("import: %v, want ErrInvalid saying %q", err, c.msg)
			}
			assertNothingImported(t, e, c.spec.Name)
		})
	}
}

// TestImportTemplateReadsWhatItOpened: the kernel path is turned into a
// FIFO (M4b) and the initrd path re-pointed at another file after the
// import started, while the disks convert. The import neither hangs nor
// copies the new files: the boot files were opened once, at the start.
func TestImportTemplateReadsWhatItOpened(t *testing.T) {
	dir := t.TempDir()
	kernel, initrd, other := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd"), filepath.Join(dir, "other")
	os.WriteFile(kernel, bytes.Repeat([]byte("K"), 5000), 0o644)
	os.WriteFile(initrd, bytes.Repeat([]byte("I"), 7000), 0o644)
	os.WriteFile(other, []byte("SECRET"), 0o600)
	swapped := false
	e := newEnv(t, func(o *lab.Options) {
		o.FailAt = func(op, step string) error {
			if op == "import" && step == "convert" && !swapped {
				swapped = true
				os.Remove(kernel)
				if err := syscall.Mkfifo(kernel, 0o644); err != nil {
					return err
				}
				os.Remove(initrd)
				return os.Symlink(other, initrd)
			}
			return nil
		}
	})
	var v *lab.TemplateView
	err := within(t, 60*time.Second, func() error {
		var err error
		v, err = e.svc.Templates.Import(context.Background(), lab.TemplateSpec{Name: "k", Disks: []string{makeImage(t, 8), makeImage(t, 8)},
			Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !swapped {
		t.Fatal("the swap never ran")
	}
	for p, want := range map[string][]byte{v.Kernel: bytes.Repeat([]byte("K"), 5000), v.Initrd: bytes.Repeat([]byte("I"), 7000)} {
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes %q..., %v; want the file as it was when the import started", p, len(got), got[:min(len(got), 8)], err)
		}
		if m := mode(t, p); m != 0o400 {
			t.Errorf("%s: mode %v, want 0400", p, m)
		}
	}
}

// TestImportTemplateJournalsTemporaryFiles: before a temporary file of a
// template import exists, the journal names it, with the convention
// recovery and the doctor know (a dot name ending in .tmp beside the
// final file); rolling the entry back (what recovery does after a kill)
// removes them.
func TestImportTemplateJournalsTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	os.WriteFile(kernel, []byte("kernel"), 0o644)
	var e *env
	var seen []string
	e = newEnv(t, func(o *lab.Options) {
		o.FailAt = func(op, step string) error {
			if op != "import" || step != "convert" || seen != nil {
				return nil
			}
			ops := journal(t, e)
			if len(ops) != 1 {
				return fmt.Errorf("journal holds %d entries", len(ops))
			}
			seen = ops[0].CreatedFiles
			// Leave every temporary file named, as a kill mid-copy would.
			for _, f := range seen {
				if strings.HasSuffix(f, ".tmp") {
					if err := os.WriteFile(filepath.Join(e.dir, f), []byte("partial"), 0o600); err != nil {
						return err
					}
				}
			}
			return errors.New("injected")
		}
	})
	_, err := e.svc.Templates.Import(context.Background(), lab.TemplateSpec{Name: "j", Disks: []string{makeImage(t, 8)}, Kernel: kernel})
	if err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("import: %v, want the injected failure", err)
	}
	var finals, temps []string
	for _, f := range seen {
		if strings.HasSuffix(f, ".tmp") {
			temps = append(temps, f)
		} else {
			finals = append(finals, f)
		}
	}
	// One layer with its import copy and the converted file's temporary
	// name (disk.TempPath), the kernel and its temporary copy.
	if len(finals) != 2 || len(temps) != 3 {
		t.Fatalf("journal names %v, want 2 final files and 3 temporary ones", seen)
	}
	for _, f := range finals {
		want := filepath.Join(filepath.Dir(f), "."+filepath.Base(f))
		found := false
		for _, tmp := range temps {
			found = found || strings.HasPrefix(tmp, want+".") || tmp == disk.ImportCopyPath(f)
		}
		if !found {
			t.Errorf("no temporary name for %s in %v", f, temps)
		}
	}
	assertNothingImported(t, e, "j")
}
