package disk

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

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
			if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("dst mode = %v, %v; want 0600", fi.Mode(), err)
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

// TestImportSniffsTheFormat: the bytes decide, not the name. A text file
// named *.qcow2 is refused naming what it is; a raw image must be whole
// 512-byte sectors; an explicit format overrides the name's guess.
func TestImportSniffsTheFormat(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	src := t.TempDir()
	write := func(name string, b []byte) string {
		p := join(src, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fake := write("fake.qcow2", []byte("this is not a disk image\n"))
	text := write("notes.img", []byte(strings.Repeat("a line of text\n", 512))[:4096])
	odd := write("odd.img", bytes.Repeat([]byte{0xeb, 0x3c}, 1000)) // 2000 bytes
	tiny := write("tiny.img", []byte{0xeb, 0x3c, 0x90})
	gz := write("disk.img.gz", append([]byte{0x1f, 0x8b, 0x08, 0}, make([]byte, 1020)...))
	mbr := make([]byte, 1<<20)
	mbr[510], mbr[511] = 0x55, 0xaa
	rawNamedQcow2 := write("really-raw.qcow2", mbr)
	vdi := join(src, "disk.vdi")
	runTool(t, "qemu-img", "create", "-q", "-f", "vdi", vdi, "4M")
	vhdx := join(src, "disk.vhdx")
	runTool(t, "qemu-img", "create", "-q", "-f", "vhdx", vhdx, "4M")
	iso := make([]byte, 64<<10)
	copy(iso[0x8001:], "CD001")
	isoPath := write("image.iso", iso)

	refused := []struct {
		name, src, format, msg string
	}{
		{"text named qcow2", fake, "", "is not a qcow2 image: it starts with text"},
		{"text named qcow2, claimed qcow2", fake, "qcow2", "is not a qcow2 image: it starts with text"},
		{"text detected", text, "", "is not a disk image: it starts with text"},
		{"compressed", gz, "", "gzip"},
		{"raw not whole sectors", odd, "", "not a whole number of 512-byte sectors"},
		{"raw smaller than a sector", tiny, "raw", "less than one 512-byte sector"},
		{"text claimed raw, smaller than a sector", fake, "raw", "less than one 512-byte sector"},
		{"mbr named qcow2", rawNamedQcow2, "", "is not a qcow2 image: it is a raw disk with an MBR"},
		{"iso claimed qcow2", isoPath, "qcow2", "is not a qcow2 image: it is an ISO 9660 image"},
		{"vdi", vdi, "", "unsupported format vdi"},
		{"vhdx claimed raw", vhdx, "raw", "given as raw but it is a vhdx image"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			_, err := New().ImportBase(context.Background(), tt.src, tt.format, join(dir, "base.qcow2"))
			if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), tt.src) {
				t.Fatalf("err = %v, want ErrInvalid naming %s and saying %q", err, tt.src, tt.msg)
			}
			if names := dirNames(t, dir); len(names) != 0 {
				t.Errorf("left %q", names)
			}
		})
	}
	accepted := []struct {
		name, src, format string
		size              int64
	}{
		{"explicit raw overrides the name", rawNamedQcow2, "raw", 1 << 20},
		{"explicit raw overrides text", text, "raw", 4096},
		{"iso detected as raw", isoPath, "", 64 << 10},
	}
	for _, tt := range accepted {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dst := join(t.TempDir(), "base.qcow2")
			size, err := New().ImportBase(context.Background(), tt.src, tt.format, dst)
			if err != nil || size != tt.size {
				t.Fatalf("ImportBase = %d, %v; want %d", size, err, tt.size)
			}
			if eq, err := Compare(context.Background(), tt.src, dst); err != nil || !eq {
				t.Errorf("Compare = %v, %v", eq, err)
			}
		})
	}
}

// TestImportRefusesSpecialFilesAtOnce: a FIFO, a device, a symlink or a
// directory as a source is refused at once; a FIFO never blocks the
// caller (it used to hang in open(2) until a writer came).
func TestImportRefusesSpecialFilesAtOnce(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	src := t.TempDir()
	fifo := join(src, "fifo.qcow2")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	good := newQcow2(t, join(src, "good.qcow2"), "1M")
	link := join(src, "link.qcow2")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, src, msg string }{
		{"fifo", fifo, "not a regular file (a named pipe)"},
		{"char device", "/dev/zero", "not a regular file (a device)"},
		{"symlink", link, "symbolic link"},
		{"directory", src, "not a regular file (a directory)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			done := make(chan error, 1)
			go func() {
				_, err := New().ImportBase(context.Background(), tt.src, "", join(t.TempDir(), "base.qcow2"))
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), tt.msg) {
					t.Fatalf("err = %v, want ErrInvalid saying %q", err, tt.msg)
				}
			case <-time.After(5 * time.Second):
				// Unblock the hung open so the test can end.
				if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					w.Close()
				}
				t.Fatalf("import of %s still blocked after 5 s", tt.src)
			}
		})
	}
}

// TestImportSwapRace swaps a source between a standalone qcow2 and one
// whose backing file is a secret, as fast as it can, while importing it
// again and again: no imported base may ever hold the secret. Both the
// last path component (a symlink, refused) and a directory component are
// swapped. Before the fix (check a path, then convert the path again) a
// swap between the two let the backing file through.
func TestImportSwapRace(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	dir := t.TempDir()
	secret := bytes.Repeat([]byte("SECRET-BYTES-0123456789-"), (1<<20)/24+1)[:1<<20]
	secretPath := join(dir, "secret.raw")
	if err := os.WriteFile(secretPath, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"good", "evil"} {
		if err := os.Mkdir(join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	newQcow2(t, filepath.Join(dir, "good", "disk.qcow2"), "1M")
	runTool(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", secretPath, filepath.Join(dir, "evil", "disk.qcow2"), "1M")
	if err := os.Symlink("good", join(dir, "cur")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "good", "disk.qcow2"), join(dir, "link")); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	swapped := make(chan int)
	go func() {
		n := 0
		defer func() { swapped <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			target := []string{"good", "evil"}[n%2]
			for _, s := range []struct{ name, target string }{{"cur", target}, {"link", filepath.Join(dir, target, "disk.qcow2")}} {
				tmp := join(dir, ".swap-"+s.name)
				os.Remove(tmp)
				if err := os.Symlink(s.target, tmp); err == nil {
					os.Rename(tmp, join(dir, s.name))
				}
			}
			n++
			time.Sleep(200 * time.Microsecond)
		}
	}()

	var imported, refused int
	deadline := time.Now().Add(8 * time.Second)
	for i := 0; i < 40 && time.Now().Before(deadline); i++ {
		src := filepath.Join(dir, "cur", "disk.qcow2")
		if i%4 == 3 {
			src = join(dir, "link")
		}
		dst := join(t.TempDir(), "base.qcow2")
		_, err := New().ImportBase(context.Background(), src, "", dst)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("import %d: %v, want ErrInvalid", i, err)
			}
			refused++
			continue
		}
		imported++
		b, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("SECRET-BYTES")) {
			close(stop)
			<-swapped
			t.Fatalf("import %d of %s: the base holds the secret (backing file let through)", i, src)
		}
	}
	close(stop)
	n := <-swapped
	t.Logf("%d imported, %d refused, %d swaps", imported, refused, n)
	if imported == 0 {
		t.Errorf("no import went through: the race was not exercised")
	}
}

// TestCopySource: the copy keeps holes, honours a cancelled context, and
// never reads past the size fstat gave (a source that grows meanwhile is
// refused rather than copied without end); nothing is left on failure.
func TestCopySource(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := join(dir, "sparse.img")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{0x5a}, 1<<20)
	f.WriteAt(data, 512<<20)
	f.Truncate(1 << 30)
	f.Close()

	in, fi, err := OpenSource(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := join(dir, "copy")
	start := time.Now()
	if err := CopySource(context.Background(), in, fi.Size(), dst, 0o400, true); err != nil {
		t.Fatal(err)
	}
	out, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if out.Size() != 1<<30 || Allocated(out) > 4<<20 || out.Mode().Perm() != 0o400 {
		t.Errorf("copy: size %d, allocated %d, mode %v; want 1 GiB, about 1 MiB allocated, 0400", out.Size(), Allocated(out), out.Mode().Perm())
	}
	got := make([]byte, 1<<20)
	if c, _ := os.Open(dst); c != nil {
		c.ReadAt(got, 512<<20)
		c.Close()
	}
	if !bytes.Equal(got, data) {
		t.Error("copy: the data differs")
	}
	t.Logf("1 GiB sparse file copied in %v", time.Since(start))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := CopySource(ctx, in, fi.Size(), join(dir, "cancelled"), 0o600, false); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled copy: %v, want context.Canceled", err)
	}
	// The source grows after its size was taken: only that many bytes are
	// read, and the change is reported.
	grow := join(dir, "grow")
	os.WriteFile(grow, data, 0o644)
	g, gi, err := OpenSource(grow)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	w, _ := os.OpenFile(grow, os.O_WRONLY|os.O_APPEND, 0)
	w.Write(data)
	w.Close()
	if err := CopySource(context.Background(), g, gi.Size(), join(dir, "grown"), 0o600, false); !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "changed size") {
		t.Errorf("copy of a growing source: %v, want ErrInvalid saying it changed size", err)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"copy", "grow", "sparse.img"}) {
		t.Errorf("directory holds %q", names)
	}
}

func TestSniff(t *testing.T) {
	for _, tt := range []struct {
		name   string
		head   []byte
		format string
	}{
		{"text", []byte("this is not a disk image\n"), ""},
		{"one printable byte repeated is a raw pattern", bytes.Repeat([]byte("Z"), 8192), "raw"},
		{"printable without white space", []byte(strings.Repeat("abcdefgh", 512)), "raw"},
		{"utf-8 text", []byte("Grüße, 世界\n"), ""},
		{"blank", make([]byte, 4096), "raw"},
		{"qcow2", []byte("QFI\xfb\x00\x00\x00\x03"), "qcow2"},
		{"qcow1", []byte("QFI\xfb\x00\x00\x00\x01"), "qcow"},
		{"vmdk descriptor", []byte("# Disk DescriptorFile\nversion=1\n"), "vmdk"},
		{"xz", []byte("\xfd7zXZ\x00\x00"), ""},
	} {
		if got := sniff(tt.head, nil); got.format != tt.format {
			t.Errorf("%s: sniffed %+v, want format %q", tt.name, got, tt.format)
		}
	}
}
