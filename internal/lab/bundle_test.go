package lab_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
	"stagehand/internal/store"
)

type bundleEntry struct {
	name string
	data []byte
}

func readEntries(t *testing.T, file string) []bundleEntry {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var es []bundleEntry
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return es
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, bundleEntry{h.Name, b})
	}
}

func writeEntries(t *testing.T, path string, es []bundleEntry) {
	t.Helper()
	if err := os.WriteFile(path, tarOf(t, es), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tarOf is a bundle's tar stream of es, in that order.
func tarOf(t testing.TB, es []bundleEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// withManifest returns es with its manifest edited by edit and its
// checksum entry made to match, as a forger would.
func withManifest(t *testing.T, es []bundleEntry, edit func(m map[string]any)) []bundleEntry {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(es[0].data, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	out := append([]bundleEntry(nil), es...)
	out[0] = bundleEntry{"manifest.json", raw}
	out[1] = bundleEntry{"manifest.json.sha256", []byte(hex.EncodeToString(sum[:]) + "\n")}
	return out
}

// path walks a decoded JSON value: keys of objects, indexes of arrays.
func path(v any, keys ...any) map[string]any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			v = v.(map[string]any)[k]
		case int:
			v = v.([]any)[k]
		}
	}
	return v.(map[string]any)
}

// importErr imports file and returns why it was refused (at once or by
// its job), or nil when it was imported.
func importErr(t *testing.T, e *env, file string) error {
	t.Helper()
	j, err := e.svc.Archives.StartImport(context.Background(), lab.ImportSpec{File: file})
	if err != nil {
		return err
	}
	if j = e.wait(j, nil); j.State == jobs.Failed {
		return errors.New(j.Error)
	}
	return nil
}

// assertNoArchive checks a refused import left nothing: no archive, no
// directory (temporary ones included), no journal entry.
func assertNoArchive(t *testing.T, e *env) {
	t.Helper()
	if as, _ := e.svc.Archives.List(context.Background()); len(as) != 0 {
		t.Errorf("archives after a refused import: %d", len(as))
	}
	if ents, _ := os.ReadDir(e.svc.Archives.Dir()); len(ents) != 0 {
		t.Errorf("archive dir holds %v after a refused import", ents)
	}
	var ops []store.Op
	e.db.View(context.Background(), func(tx store.Tx) error {
		var err error
		ops, err = tx.Ops().List()
		return err
	})
	if len(ops) != 0 {
		t.Errorf("journal entries left: %+v", ops)
	}
}

// TestImportRefusesSparseBomb is M1 of the security review: a bundle made
// with `tar --sparse --format=pax` whose kernel is a 128 MiB hole. Go's
// tar reader expands it, so the 100 KiB bundle used to become a 128 MiB
// archive. It must be refused, whether the manifest's total exceeds the
// bundle (as made) or the bundle is padded past it.
func TestImportRefusesSparseBomb(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("GNU tar not installed")
	}
	file, _, _ := bundleFixture(t)
	const bombSize = 128 << 20
	h := sha256.New()
	zero := make([]byte, 1<<20)
	for i := 0; i < bombSize>>20; i++ {
		h.Write(zero)
	}
	es := withManifest(t, readEntries(t, file), func(m map[string]any) {
		m["name"] = "bomb"
		k := path(m, "templates", 0, "kernel")
		k["size"] = bombSize
		k["sha256"] = hex.EncodeToString(h.Sum(nil))
	})
	dir := t.TempDir()
	var names []string
	for _, e := range es {
		p := filepath.Join(dir, e.name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		data := e.data
		if strings.HasSuffix(e.name, "-kernel") {
			data = nil // then all hole
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(e.name, "-kernel") {
			if err := os.Truncate(p, bombSize); err != nil {
				t.Fatal(err)
			}
		}
		names = append(names, e.name)
	}
	bomb := filepath.Join(t.TempDir(), "bomb.tar")
	if out, err := exec.Command("tar", append([]string{"--sparse", "--format=pax", "-cf", bomb, "-C", dir}, names...)...).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	st, _ := os.Stat(bomb)
	t.Logf("bomb bundle: %d bytes, kernel %d bytes", st.Size(), bombSize)

	e2 := newEnv(t)
	e2.network("lan", "10.72.0.0/24", "10.72.0.10-10.72.0.20")
	t.Run("as-made", func(t *testing.T) {
		err := importErr(t, e2, bomb)
		if err == nil || !strings.Contains(err.Error(), "more than the bundle") {
			t.Fatalf("import of the bomb: %v, want refused for listing more than the bundle holds", err)
		}
		assertNoArchive(t, e2)
	})
	t.Run("padded", func(t *testing.T) {
		padded := filepath.Join(t.TempDir(), "padded.tar")
		b, _ := os.ReadFile(bomb)
		os.WriteFile(padded, b, 0o644)
		if err := os.Truncate(padded, st.Size()+2*bombSize); err != nil { // a hole: costs nothing
			t.Fatal(err)
		}
		start := time.Now()
		err := importErr(t, e2, padded)
		if err == nil || !strings.Contains(err.Error(), "sparse member") {
			t.Fatalf("import of the padded bomb: %v, want a sparse member refused", err)
		}
		t.Logf("refused in %v: %v", time.Since(start), err)
		assertNoArchive(t, e2)
	})
}

// TestImportBundleFIFO is M4(a): a FIFO given as the bundle is refused at
// once; it used to pin a thread in open(2) until a writer came.
func TestImportBundleFIFO(t *testing.T) {
	e := newEnv(t)
	fifo := filepath.Join(t.TempDir(), "bundle.tar")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- importErr(t, e, fifo) }()
	select {
	case err := <-done:
		if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "named pipe") {
			t.Fatalf("import of a FIFO: %v, want ErrInvalid naming a named pipe", err)
		}
	case <-time.After(5 * time.Second):
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		t.Fatal("import of a FIFO still blocked after 5 s")
	}
	assertNoArchive(t, e)
}

// TestImportRefusesBadManifests is L2: manifests whose checksum matches
// but whose content is out of shape are refused before anything is
// written (they used to import and fail at restore, or restore a VM with
// NIC index -7).
func TestImportRefusesBadManifests(t *testing.T) {
	file, _, _ := bundleFixture(t)
	good := readEntries(t, file)
	e2 := newEnv(t)
	e2.network("lan", "10.72.0.0/24", "10.72.0.10-10.72.0.20")
	cases := []struct {
		name, msg string
		edit      func(m map[string]any)
	}{
		{"disk index out of range", "disk index 1000000", func(m map[string]any) { path(m, "vms", 0, "disks", 0)["index"] = 1000000 }},
		{"negative NIC index", "NIC index -7", func(m map[string]any) { path(m, "vms", 0, "nics", 0)["index"] = -7 }},
		{"NIC index twice", "used twice", func(m map[string]any) {
			vm := path(m, "vms", 0)
			nic := path(m, "vms", 0, "nics", 0)
			vm["nics"] = []any{nic, nic}
		}},
		{"cmdline with NUL", "control character", func(m map[string]any) { path(m, "templates", 0)["cmdline"] = "a\x00b" }},
		{"cmdline with newline", "control character", func(m map[string]any) {
			path(m, "templates", 0)["cmdline"] = "console=ttyS0\n-drive file=/etc/shadow"
		}},
		{"cmdline too long", "longer than", func(m map[string]any) { path(m, "templates", 0)["cmdline"] = strings.Repeat("a", 5000) }},
		{"subnet", "subnet", func(m map[string]any) { path(m, "networks", 0)["subnet"] = "10.72.0.0/33" }},
		{"pool", "pool", func(m map[string]any) { path(m, "networks", 0)["pools"] = []any{"x-y"} }},
		{"NIC address", "not an IPv4 address", func(m map[string]any) { path(m, "vms", 1, "nics", 0)["ip"] = "10.72.0.500" }},
		{"boot file too large", "boot file", func(m map[string]any) { path(m, "templates", 0, "kernel")["size"] = 2 << 30 }},
		{"description with an escape sequence", "control character", func(m map[string]any) { m["description"] = "\x1b[2J\x1b]0;owned\a" }},
		{"owner too long", "longer than", func(m map[string]any) { m["owner"] = strings.Repeat("o", lab.MaxOwner+1) }},
		{"template twice", "appears twice", func(m map[string]any) {
			ts := m["templates"].([]any)
			m["templates"] = append(ts, ts[0])
		}},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "-"), func(t *testing.T) {
			bad := filepath.Join(t.TempDir(), "bad.tar")
			writeEntries(t, bad, withManifest(t, good, c.edit))
			_, err := e2.svc.Archives.StartImport(context.Background(), lab.ImportSpec{File: bad})
			if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("import: %v, want ErrInvalid saying %q", err, c.msg)
			}
			assertNoArchive(t, e2)
		})
	}
	// The same bundle rewritten without an edit still imports.
	same := filepath.Join(t.TempDir(), "same.tar")
	writeEntries(t, same, withManifest(t, good, func(map[string]any) {}))
	if err := importErr(t, e2, same); err != nil {
		t.Fatalf("unedited bundle: %v", err)
	}
}

// TestBundlePathsRefuseControlCharacters is L1: an export path with a NUL
// used to leave a journal entry no repair could clear. Export names no
// path any more (it is a download); an import path still may not hold one.
func TestBundlePathsRefuseControlCharacters(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.template("base")
	e.config("a", lab.VMSpec{Name: "vm", Template: "base"})
	e.ok(e.svc.Archives.StartCreate(ctx, "a", "arch", lab.CreateOptions{}))
	dir := t.TempDir()
	for _, p := range []string{dir + "/x\x00y", dir + "/x\ny", dir + "/x\x1b[2Jy", "relative.tar", "/" + strings.Repeat("a", 5000)} {
		if _, err := e.svc.Archives.StartImport(ctx, lab.ImportSpec{File: p}); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("import of %q: %v, want ErrInvalid", p, err)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left %v", ents)
	}
	r, err := e.svc.Doctor(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Problems) != 0 {
		t.Errorf("doctor: %+v", r.Problems)
	}
}

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// TestArchiveFileModes is M5 for archives, bundles and boot files: no
// other local user can read guest data.
func TestArchiveFileModes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sourceFixture(t, e)
	e.ok(e.svc.Archives.StartCreate(ctx, "src", "arch", lab.CreateOptions{}))
	a, err := e.svc.Archives.Get(ctx, "arch")
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(t.TempDir(), "arch.tar")
	exportBundle(t, e.svc, "arch", bundle)
	e2 := newEnv(t)
	e2.network("lan", "10.72.0.0/24", "10.72.0.10-10.72.0.20")
	e2.ok(e2.svc.Archives.StartImport(ctx, lab.ImportSpec{File: bundle}))
	b, err := e2.svc.Archives.Get(ctx, "arch")
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := e.svc.Templates.Get(ctx, "kern")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]os.FileMode{
		filepath.Join(e.dir, "layers"): 0o700,
		filepath.Join(e.dir, "files"):  0o700,
		filepath.Join(e.dir, "run"):    0o700,
		filepath.Join(e.dir, "state"):  0o700,
		e.svc.Archives.Dir():           0o700,
		tmpl.Kernel:                    0o400,
		tmpl.Initrd:                    0o400,
		bundle:                         0o600,
	}
	for _, v := range []*lab.ArchiveView{a, b} {
		want[v.Dir] = 0o700
		want[filepath.Join(v.Dir, "disks")] = 0o700
		want[filepath.Join(v.Dir, "boot")] = 0o700
		want[filepath.Join(v.Dir, "manifest.json")] = 0o400
		want[filepath.Join(v.Dir, "boot", "t0-kernel")] = 0o400
		for _, vm := range v.VMs {
			want[vm.Disks[0].Path] = 0o400
		}
	}
	for p, m := range want {
		if got := mode(t, p); got != m {
			t.Errorf("%s: mode %v, want %v", p, got, m)
		}
	}
	// Restored boot files too.
	if err := e2.svc.Archives.Delete(ctx, "arch"); err != nil {
		t.Fatal(err)
	}
	e.ok(e.svc.Archives.StartRestore(ctx, "arch", "back", lab.CreateOptions{}))
	for _, f := range mustGlob(t, filepath.Join(e.dir, "files", "*")) {
		if got := mode(t, f); got != 0o400 {
			t.Errorf("%s: mode %v, want 0400", f, got)
		}
	}
}

func mustGlob(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
