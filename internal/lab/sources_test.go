package lab_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"stagehand/internal/auth"
	"stagehand/internal/disk"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
	"stagehand/internal/store"
)

// The callers of these tests, as the api's authentication makes them.
func asUser(ctx context.Context) context.Context {
	return auth.WithIdentity(ctx, auth.Identity{UserID: 7, Name: "mallory", Via: auth.ViaToken})
}

func asAdminOverTCP(ctx context.Context) context.Context {
	return auth.WithIdentity(ctx, auth.Identity{Name: "root", SystemAdmin: true, Via: auth.ViaToken})
}

func asAdminOnSocket(ctx context.Context) context.Context {
	return auth.WithIdentity(ctx, auth.Identity{Name: "root", SystemAdmin: true, Via: auth.ViaUnixPeer})
}

// everyFile lists every file and directory under dir (dot files
// included) but the store's, relative to dir.
func everyFile(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, p)
		if rel != "." && !strings.HasPrefix(rel, "stagehand.db") {
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// noOps asserts the journal is empty: nothing half done is left.
func (e *env) noOps() {
	e.t.Helper()
	e.db.View(context.Background(), func(tx store.Tx) error {
		ops, err := tx.Ops().List()
		if err != nil {
			e.t.Fatal(err)
		}
		for _, op := range ops {
			e.t.Errorf("journal entry left: %s %s %v", op.Kind, op.Subject, op.CreatedFiles)
		}
		return nil
	})
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestNamingAServerPathIsForbidden is C2: a caller who is not the system
// administrator on the unix socket names /etc/shadow as a template disk, a
// kernel, or a bundle, and gets 403 (ErrForbidden) without the daemon
// opening it, copying it, or saying whether it exists; nothing is created.
// The system administrator over TCP, or on the socket of a daemon without
// --import-dir, is refused the same way.
func TestNamingAServerPathIsForbidden(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	img := makeImage(t, 16)
	before := everyFile(t, e.dir)
	for _, c := range []struct {
		who string
		ctx context.Context
	}{{"user", asUser(ctx)}, {"admin over tcp", asAdminOverTCP(ctx)}, {"admin on the socket, no import dir", asAdminOnSocket(ctx)}} {
		for _, spec := range []lab.TemplateSpec{
			{Name: "leak", Disks: []string{"/etc/shadow"}, Format: "raw"},
			{Name: "leak", Disks: []string{img}, Kernel: "/etc/shadow", Initrd: "/etc/shadow"},
			{Name: "leak", Disks: []string{"/no/such/file"}},
		} {
			_, err := e.svc.Templates.Import(c.ctx, spec)
			if !errors.Is(err, errdefs.ErrForbidden) || !strings.Contains(err.Error(), "upload") {
				t.Errorf("%s: import %v: %v, want forbidden, saying to upload", c.who, spec.Disks, err)
			}
			if err != nil && strings.Contains(err.Error(), "no such file") {
				t.Errorf("%s: the refusal tells whether the path exists: %v", c.who, err)
			}
		}
		if _, err := e.svc.Archives.StartImport(c.ctx, lab.ImportSpec{File: "/etc/shadow"}); !errors.Is(err, errdefs.ErrForbidden) {
			t.Errorf("%s: bundle import of /etc/shadow: %v, want forbidden", c.who, err)
		}
	}
	if _, err := e.svc.Templates.Get(ctx, "leak"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("template leak: %v", err)
	}
	if after := everyFile(t, e.dir); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf("data dir changed:\nbefore %v\nafter  %v", before, after)
	}
	e.noOps()
}

// swapDisks runs a hook just before each disk import, after the lab has
// opened the source: the moment an attacker would swap the file.
type swapDisks struct {
	lab.DiskTool
	before func()
}

func (d *swapDisks) ImportFile(ctx context.Context, f *os.File, name string, private bool, format, dst string) (int64, error) {
	d.before()
	return d.DiskTool.ImportFile(ctx, f, name, private, format, dst)
}

// TestImportDirsForTheAdminOnTheSocket: the system administrator on the
// unix socket may name files under an --import-dir, and only there: a
// path elsewhere, a symlink as the last component (O_NOFOLLOW), and a
// path through a symlinked directory that leads outside are refused. H2:
// the file is opened once; swapping the path for a qcow2 whose backing
// file is a secret, after the open, changes nothing: what was checked is
// what is read.
func TestImportDirsForTheAdminOnTheSocket(t *testing.T) {
	imp, outside := t.TempDir(), t.TempDir()
	var swap func()
	e := newEnv(t, func(o *lab.Options) {
		o.ImportDirs = []string{imp}
		o.Disks = &swapDisks{DiskTool: o.Disks, before: func() {
			if swap != nil {
				swap()
			}
		}}
	})
	ctx := asAdminOnSocket(context.Background())
	good := filepath.Join(imp, "good.qcow2")
	if err := os.Rename(makeImage(t, 16), good); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(outside, "secret.raw")
	os.WriteFile(secret, bytes.Repeat([]byte("root:SECRET:"), 1<<16), 0o600)
	evil := filepath.Join(imp, "evil.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-b", secret, "-F", "raw", evil, "16M").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	os.WriteFile(filepath.Join(outside, "x.qcow2"), nil, 0o600)
	os.Symlink(good, filepath.Join(imp, "link.qcow2"))
	os.Symlink(outside, filepath.Join(imp, "dirlink"))

	for _, c := range []struct {
		path string
		kind error
	}{
		{filepath.Join(outside, "x.qcow2"), errdefs.ErrForbidden},
		{filepath.Join(imp, "..", filepath.Base(outside), "x.qcow2"), errdefs.ErrForbidden},
		{filepath.Join(imp, "dirlink", "x.qcow2"), errdefs.ErrForbidden},
		{filepath.Join(imp, "link.qcow2"), errdefs.ErrInvalid},
		{evil, errdefs.ErrInvalid}, // its backing file is refused
	} {
		if _, err := e.svc.Templates.Import(ctx, lab.TemplateSpec{Name: "t", Disks: []string{c.path}}); !errors.Is(err, c.kind) {
			t.Errorf("import %s: %v, want %v", c.path, err, c.kind)
		}
	}
	// The race of H2, made certain: the path becomes the evil image
	// after the daemon opened it.
	swap = func() {
		if err := os.Rename(evil, good); err != nil {
			t.Error(err)
		}
	}
	v, err := e.svc.Templates.Import(ctx, lab.TemplateSpec{Name: "t", Disks: []string{good}})
	if err != nil {
		t.Fatal(err)
	}
	base := v.Disks[0].Path
	verifyPattern(t, base, 0, 1<<20, 0xaa)
	info, err := disk.New().Info(context.Background(), base)
	if err != nil || info.BackingFile != "" {
		t.Errorf("base %s: %+v %v, want standalone", base, info, err)
	}
	if raw, _ := exec.Command("qemu-img", "dd", "-f", "qcow2", "-O", "raw", "if="+base, "of=/dev/stdout", "bs=1M", "count=2").Output(); bytes.Contains(raw, []byte("SECRET")) {
		t.Errorf("the base holds the secret")
	}
	e.noOps()
}

// receive uploads b as name with sha256 want.
func receive(e *env, name string, b []byte, want string) (*lab.Upload, error) {
	return e.svc.Uploads.Receive(asUser(context.Background()), name, bytes.NewReader(b), int64(len(b)), want)
}

// TestUploadedTemplate: a template is imported from uploaded disk,
// kernel and initrd; the uploads are gone afterwards, and so is their
// journal entry.
func TestUploadedTemplate(t *testing.T) {
	e := newEnv(t)
	img, err := os.ReadFile(makeImage(t, 16))
	if err != nil {
		t.Fatal(err)
	}
	kernel, initrd := bytes.Repeat([]byte("kernel"), 1000), bytes.Repeat([]byte("initrd"), 1000)
	var ups []*lab.Upload
	for _, f := range []struct {
		name string
		b    []byte
	}{{"disk.qcow2", img}, {"vmlinuz", kernel}, {"initrd.img", initrd}} {
		u, err := receive(e, f.name, f.b, strings.ToUpper(sum(f.b)))
		if err != nil {
			t.Fatal(err)
		}
		if u.Size != int64(len(f.b)) || u.SHA256 != sum(f.b) {
			t.Errorf("upload %s: %d bytes %s", f.name, u.Size, u.SHA256)
		}
		ups = append(ups, u)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.dir, "uploads")); len(ents) != 3 {
		t.Errorf("uploads dir holds %d files, want 3", len(ents))
	}
	// The system imports (whether a user may create templates is the
	// access checker's business, tested with it).
	v, err := e.svc.Templates.Import(context.Background(), lab.TemplateSpec{Name: "up", DiskUploads: ups[:1], KernelUpload: ups[1], InitrdUpload: ups[2], Cmdline: "console=ttyS0"})
	if err != nil {
		t.Fatal(err)
	}
	verifyPattern(t, v.Disks[0].Path, 0, 1<<20, 0xaa)
	if got, _ := os.ReadFile(v.Kernel); !bytes.Equal(got, kernel) {
		t.Errorf("kernel differs")
	}
	if ents, _ := os.ReadDir(filepath.Join(e.dir, "uploads")); len(ents) != 0 {
		t.Errorf("uploads left: %v", ents)
	}
	e.noOps()
	e.assertConsistent()
}

// TestUploadRefusalsLeaveNothing: a checksum that does not match, a
// missing checksum, fewer bytes than announced, more than the limit
// (announced or not) are refused, and leave no file and no journal entry.
func TestUploadRefusalsLeaveNothing(t *testing.T) {
	e := newEnv(t, func(o *lab.Options) { o.MaxUpload = 3 << 20 })
	ctx := asUser(context.Background())
	b := bytes.Repeat([]byte{1, 2, 3, 4}, 1<<18) // 1 MiB
	big := bytes.Repeat([]byte{9}, 4<<20)
	for _, c := range []struct {
		name  string
		r     io.Reader
		size  int64
		want  string
		large bool
	}{
		{"wrong sum", bytes.NewReader(b), int64(len(b)), sum([]byte("other")), false},
		{"no sum", bytes.NewReader(b), int64(len(b)), "", false},
		{"short", bytes.NewReader(b[:1000]), int64(len(b)), sum(b[:1000]), false},
		{"announced too large", bytes.NewReader(big), int64(len(big)), sum(big), true},
		{"too large", bytes.NewReader(big), -1, sum(big), true},
	} {
		u, err := e.svc.Uploads.Receive(ctx, c.name, c.r, c.size, c.want)
		if !errors.Is(err, errdefs.ErrInvalid) || errors.Is(err, lab.ErrTooLarge) != c.large {
			t.Errorf("%s: %v %v, want invalid (too large: %v)", c.name, u, err, c.large)
		}
	}
	if left := everyFile(t, filepath.Join(e.dir, "uploads")); len(left) != 0 {
		t.Errorf("uploads left: %v", left)
	}
	e.noOps()
}

// TestUploadCancelledLeavesNothing: the client goes away in the middle of
// an upload: the partial file goes at once. While the upload runs, the
// journal names its file, so a crash there leaves nothing either: a
// daemon started on the same data dir removes it.
func TestUploadCancelledLeavesNothing(t *testing.T) {
	for _, crash := range []bool{false, true} {
		e := newEnv(t)
		ctx, cancel := context.WithCancel(asUser(context.Background()))
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			_, err := e.svc.Uploads.Receive(ctx, "big.raw", pr, -1, sum(nil))
			done <- err
		}()
		if _, err := pw.Write(bytes.Repeat([]byte{7}, 3<<20)); err != nil {
			t.Fatal(err)
		}
		var ops []store.Op
		e.db.View(context.Background(), func(tx store.Tx) (err error) { ops, err = tx.Ops().List(); return })
		left := everyFile(t, filepath.Join(e.dir, "uploads"))
		if len(ops) != 1 || ops[0].Kind != "upload" || len(left) != 1 || !containsSuffix(ops[0].CreatedFiles, left[0]) {
			t.Fatalf("while uploading: journal %+v, files %v", ops, left)
		}
		if crash {
			e.restarted(t) // recovery on the same data dir and store
			if left := everyFile(t, filepath.Join(e.dir, "uploads")); len(left) != 0 {
				t.Errorf("after a crash and recovery, uploads left: %v", left)
			}
		}
		cancel()
		pw.CloseWithError(context.Canceled) // what the server's body read says
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("a cancelled upload succeeded")
			}
		case <-time.After(time.Minute):
			t.Fatal("the upload did not end")
		}
		if left := everyFile(t, filepath.Join(e.dir, "uploads")); len(left) != 0 {
			t.Errorf("uploads left: %v", left)
		}
		e.noOps()
	}
}

func containsSuffix(list []string, s string) bool {
	for _, l := range list {
		if strings.HasSuffix(l, s) {
			return true
		}
	}
	return false
}

// TestUploadedBundle: a bundle downloaded from one lab and uploaded to
// another becomes an archive there; the upload is gone once the job ends.
func TestUploadedBundle(t *testing.T) {
	file, _, _ := bundleFixture(t)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	e2 := newEnv(t)
	e2.network("lan", "10.72.0.0/24", "10.72.0.10-10.72.0.20")
	u, err := receive(e2, "arch.tar", b, sum(b))
	if err != nil {
		t.Fatal(err)
	}
	e2.ok(e2.svc.Archives.StartImport(context.Background(), lab.ImportSpec{Upload: u, Name: "moved"}))
	a, err := e2.svc.Archives.Get(context.Background(), "moved")
	if err != nil || !strings.Contains(a.Source, "upload arch.tar") {
		t.Fatalf("archive: %+v %v", a, err)
	}
	if left := everyFile(t, filepath.Join(e2.dir, "uploads")); len(left) != 0 {
		t.Errorf("uploads left: %v", left)
	}
	e2.noOps()
}

// TestDataIsPrivate is M5 for what the lab writes: after an import (from
// an upload), an archive, a download and a bundle import, every directory
// under the data and archive dirs is 0700 and no file can be read, let
// alone written, by anyone but root.
func TestDataIsPrivate(t *testing.T) {
	// An archive dir an older version made 0755 is narrowed.
	archives := filepath.Join(t.TempDir(), "archives")
	if err := os.Mkdir(archives, 0o755); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(o *lab.Options) { o.ArchiveDir = archives })
	ctx := context.Background()
	sourceFixture(t, e)
	e.ok(e.svc.Archives.StartCreate(ctx, "src", "arch", lab.CreateOptions{}))
	file := filepath.Join(t.TempDir(), "arch.tar")
	exportBundle(t, e.svc, "arch", file)
	b, _ := os.ReadFile(file)
	u, err := receive(e, "arch.tar", b, sum(b))
	if err != nil {
		t.Fatal(err)
	}
	e.ok(e.svc.Archives.StartImport(ctx, lab.ImportSpec{Upload: u, Name: "again"}))
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("the downloaded bundle as the test wrote it: %v %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(archives); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("archive dir: %v %v, want 0700", fi.Mode(), err)
	}
	for _, root := range []string{e.dir, archives} {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				t.Fatal(err)
			}
			fi, err := d.Info()
			if err != nil {
				t.Fatal(err)
			}
			switch rel, _ := filepath.Rel(root, p); {
			case strings.HasPrefix(rel, "stagehand.db"), rel == ".":
				// the store's, and the test's temporary dir: the daemon's
			case fi.IsDir() && fi.Mode().Perm() != 0o700:
				t.Errorf("%s: %v, want 0700", p, fi.Mode())
			case !fi.IsDir() && fi.Mode().Perm()&0o077 != 0:
				t.Errorf("%s: %v, readable by others", p, fi.Mode())
			}
			return nil
		})
	}
}
