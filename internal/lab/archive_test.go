package lab_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stagehand/internal/disk"
	"stagehand/internal/errdefs"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/events"
)

// wait waits for a job and returns its final snapshot.
func (e *env) wait(j jobs.Job, err error) jobs.Job {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	j, err = e.jobs.Wait(ctx, j.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return j
}

// ok waits for a job that must succeed.
func (e *env) ok(j jobs.Job, err error) {
	e.t.Helper()
	if j = e.wait(j, err); j.State != jobs.Succeeded {
		e.t.Fatalf("job %s %s: %s %s", j.Kind, j.Subject, j.State, j.Error)
	}
}

func compare(t testing.TB, a, b string) {
	t.Helper()
	eq, err := disk.Compare(context.Background(), a, b)
	if err != nil {
		t.Fatal(err)
	}
	if !eq {
		t.Errorf("qemu-img compare %s %s: different", a, b)
	}
}

// archiveDirs lists the archive directories on disk.
func archiveDirs(t testing.TB, e *env) []string {
	t.Helper()
	ds, _ := filepath.Glob(filepath.Join(e.svc.Archives.Dir(), "*"))
	return ds
}

// sourceFixture: a template with direct kernel boot, a network, and a
// configuration of two VMs (pool and manual addresses) with data.
func sourceFixture(t *testing.T, e *env) (*lab.ConfigView, string) {
	t.Helper()
	dir := t.TempDir()
	kernel, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd")
	os.WriteFile(kernel, bytes.Repeat([]byte("kernel"), 1000), 0o644)
	os.WriteFile(initrd, bytes.Repeat([]byte("initrd"), 2000), 0o644)
	if _, err := e.svc.Templates.Import(context.Background(), lab.TemplateSpec{Name: "kern", Disks: []string{makeImage(t, 64)},
		Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0", CPUs: 2, MemoryMiB: 384}); err != nil {
		t.Fatal(err)
	}
	e.network("lan", "10.72.0.0/24", "10.72.0.10-10.72.0.20")
	c := e.config("src", lab.VMSpec{Name: "web", Template: "kern", Network: "lan"}, lab.VMSpec{Name: "db", Template: "kern", Network: "lan", IP: "10.72.0.5"})
	qemuIO(t, top(c, "web"), "write -P 0x5a 2M 6M")
	qemuIO(t, top(c, "db"), "write -P 0x6b 10M 1M")
	e.linked("src", "src2") // a chain of 3 to consolidate
	qemuIO(t, top(e.get("src"), "web"), "write -P 0x7c 20M 1M")
	return e.get("src"), kernel
}

func TestArchiveRestore(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	src, kernel := sourceFixture(t, e)
	e.ok(e.svc.Archives.StartCreate(ctx, "src", "arch", lab.CreateOptions{}))
	a, err := e.svc.Archives.Get(ctx, "arch")
	if err != nil {
		t.Fatal(err)
	}
	if a.Source != "src" || len(a.VMs) != 2 || len(a.VMs[0].Disks) != 1 || a.Networks[0] != "lan" {
		t.Fatalf("archive: %+v", a)
	}
	var chainBytes int64
	for i, vm := range a.VMs {
		d := vm.Disks[0]
		if !strings.HasPrefix(d.Path, e.svc.Archives.Dir()) || !isReadOnly(t, d.Path) {
			t.Errorf("archive disk %s: outside the archive dir or writable", d.Path)
		}
		info, err := disk.New().Info(ctx, d.Path)
		if err != nil || info.BackingFile != "" {
			t.Errorf("archive disk %s: %+v %v, want standalone", d.Path, info, err)
		}
		if sha(t, d.Path) != d.SHA256 {
			t.Errorf("archive disk %s: checksum differs from the manifest", d.Path)
		}
		compare(t, d.Path, src.VMs[i].Disks[0].Path)
		for _, l := range src.VMs[i].Disks[0].Chain {
			st, _ := os.Stat(l)
			chainBytes += st.Size()
		}
	}
	if a.Size >= chainBytes {
		t.Errorf("archive is %d bytes, the chains %d: want it compressed", a.Size, chainBytes)
	}
	if err := e.svc.Configs.Delete(ctx, "src"); !errors.Is(err, nil) {
		t.Fatal(err)
	}

	// Restore: a full clone back, same network parameters, new MACs; the
	// addresses rejoin their families (src2 still holds them).
	e.ok(e.svc.Archives.StartRestore(ctx, "arch", "back", lab.CreateOptions{}))
	back := e.get("back")
	for i, vm := range back.VMs {
		if len(vm.Disks[0].Chain) != 1 || isReadOnly(t, vm.Disks[0].Path) {
			t.Errorf("%s: chain %v, want one writable base", vm.Name, vm.Disks[0].Chain)
		}
		compare(t, vm.Disks[0].Path, a.VMs[i].Disks[0].Path)
		want := src.VMs[i].NICs[0]
		got := vm.NICs[0]
		if got.Network != want.Network || got.IPMode != want.IPMode || got.IP != want.IP || got.MAC == want.MAC {
			t.Errorf("%s NIC %+v, source %+v: want same network parameters, new MAC", vm.Name, got, want)
		}
		if vm.Template != "kern" || vm.CPUs != 2 || vm.MemoryMiB != 384 {
			t.Errorf("%s hardware: %+v", vm.Name, vm)
		}
	}
	nw, _ := e.svc.Networks.Get(ctx, "lan")
	for _, u := range nw.Usage {
		if len(u.Holders) != 2 {
			t.Errorf("%s held by %+v, want src2 and back (one family)", u.IP, u.Holders)
		}
	}

	// With the template and every holder gone, a restore makes the
	// template again (hardware and boot files) and takes the addresses.
	for _, n := range []string{"back", "src2"} {
		if err := e.svc.Configs.Delete(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.svc.Templates.Delete(ctx, "kern"); err != nil {
		t.Fatal(err)
	}
	e.ok(e.svc.Archives.StartRestore(ctx, "arch", "again", lab.CreateOptions{}))
	tv, err := e.svc.Templates.Get(ctx, "kern")
	if err != nil {
		t.Fatal(err)
	}
	if tv.CPUs != 2 || tv.MemoryMiB != 384 || tv.Cmdline != "console=ttyS0" || tv.Kernel == "" || sha(t, tv.Kernel) != sha(t, kernel) {
		t.Errorf("template made again: %+v", tv)
	}
	again := e.get("again")
	if again.VMs[1].NICs[0].IP != "10.72.0.5" || again.VMs[0].NICs[0].IP != src.VMs[0].NICs[0].IP {
		t.Errorf("addresses after restore: %+v", again.VMs)
	}
	verifyPattern(t, top(again, "web"), 20<<20, 1<<20, 0x7c)
	e.assertConsistent()

	// Delete: the archive's directory goes.
	if err := e.svc.Archives.Delete(ctx, "arch"); err != nil {
		t.Fatal(err)
	}
	if ds := archiveDirs(t, e); len(ds) != 0 {
		t.Errorf("archive dirs left: %v", ds)
	}
}

func TestArchiveFailuresLeaveNothing(t *testing.T) {
	for _, step := range []string{"archive:convert", "archive:copy-boot-file", "archive:commit", "restore:convert", "restore:commit"} {
		t.Run(strings.ReplaceAll(step, ":", "-"), func(t *testing.T) {
			var armed bool
			e := newEnv(t, func(o *lab.Options) {
				o.FailAt = func(op, s string) error {
					if armed && op+":"+s == step {
						return fmt.Errorf("injected")
					}
					return nil
				}
			})
			ctx := context.Background()
			sourceFixture(t, e)
			op, _, _ := strings.Cut(step, ":")
			if op != "archive" {
				e.ok(e.svc.Archives.StartCreate(ctx, "src", "arch", lab.CreateOptions{}))
			}
			before := archiveDirs(t, e)
			armed = true
			var j jobs.Job
			var err error
			switch op {
			case "archive":
				j, err = e.svc.Archives.StartCreate(ctx, "src", "arch", lab.CreateOptions{})
			case "restore":
				j, err = e.svc.Archives.StartRestore(ctx, "arch", "back", lab.CreateOptions{})
			}
			if j = e.wait(j, err); j.State != jobs.Failed || !strings.Contains(j.Error, "injected") {
				t.Fatalf("job: %s %s", j.State, j.Error)
			}
			if after := archiveDirs(t, e); strings.Join(after, " ") != strings.Join(before, " ") {
				t.Errorf("archive dirs %v, before %v", after, before)
			}
			if _, err := e.svc.Configs.Get(ctx, "back"); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("restored configuration exists: %v", err)
			}
			if op == "archive" {
				if _, err := e.svc.Archives.Get(ctx, "arch"); !errors.Is(err, errdefs.ErrNotFound) {
					t.Errorf("archive exists: %v", err)
				}
			}
			e.assertConsistent()
			evs, _ := e.svc.Events.List(ctx, 0, 0)
			if last := evs[len(evs)-1]; last.Result != events.ResultFailed {
				t.Errorf("last event %+v, want the failure", last)
			}
		})
	}
}

// bundleFixture makes an archive in a first lab, exports it, and returns
// the bundle's path with the source configuration.
func bundleFixture(t *testing.T) (string, *lab.ConfigView, *lab.ArchiveView) {
	t.Helper()
	e := newEnv(t)
	ctx := context.Background()
	src, _ := sourceFixture(t, e)
	e.ok(e.svc.Archives.StartCreate(ctx, "src", "arch", lab.CreateOptions{}))
	file := filepath.Join(t.TempDir(), "arch.tar")
	exportBundle(t, e.svc, "arch", file)
	a, err := e.svc.Archives.Get(ctx, "arch")
	if err != nil {
		t.Fatal(err)
	}
	return file, src, a
}

// exportBundle streams archive name into a new file, as a download does.
func exportBundle(t testing.TB, svc *lab.Service, name, file string) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := svc.Archives.Export(context.Background(), name, f); err != nil {
		t.Fatal(err)
	}
}

// TestExportImportOnAnotherLab moves an archive between two labs with
// their own data dirs, maps a network, and checks the disks and network
// parameters are the same.
func TestExportImportOnAnotherLab(t *testing.T) {
	file, src, a := bundleFixture(t)
	ctx := context.Background()
	e2 := newEnv(t)
	e2.network("office", "10.72.0.0/24", "10.72.0.30-10.72.0.40")

	// A network the bundle needs is missing: refused before anything.
	if _, err := e2.svc.Archives.StartImport(ctx, lab.ImportSpec{File: file}); !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "lan") {
		t.Errorf("import without network lan: %v", err)
	}
	e2.ok(e2.svc.Archives.StartImport(ctx, lab.ImportSpec{File: file, Name: "moved", MapNetwork: map[string]string{"lan": "office"}}))
	b, err := e2.svc.Archives.Get(ctx, "moved")
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.VMs {
		if b.VMs[i].Disks[0].SHA256 != a.VMs[i].Disks[0].SHA256 {
			t.Errorf("VM %s: imported disk differs", b.VMs[i].Name)
		}
	}
	e2.ok(e2.svc.Archives.StartRestore(ctx, "moved", "here", lab.CreateOptions{}))
	here := e2.get("here")
	for i, vm := range here.VMs {
		compare(t, vm.Disks[0].Path, src.VMs[i].Disks[0].Path)
		want, got := src.VMs[i].NICs[0], vm.NICs[0]
		if got.Network != "office" || got.IPMode != want.IPMode || got.IP != want.IP {
			t.Errorf("%s NIC %+v, source %+v: want the same mode and address on office", vm.Name, got, want)
		}
	}
	e2.assertConsistent()
}

// tarOffset returns the offset in the bundle of the data of entry name.
func tarOffset(t *testing.T, b []byte, name string) (int64, int64) {
	t.Helper()
	r := bytes.NewReader(b)
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no %s in the bundle: %v", name, err)
		}
		if h.Name == name {
			return int64(len(b)) - int64(r.Len()), h.Size
		}
	}
}

func TestImportRefusesDamagedBundles(t *testing.T) {
	file, _, _ := bundleFixture(t)
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	diskOff, diskSize := tarOffset(t, good, "disks/vm0-disk0.qcow2")
	manOff, manSize := tarOffset(t, good, "manifest.json")
	sumOff, _ := tarOffset(t, good, "manifest.json.sha256")
	manifest := string(good[manOff : manOff+manSize])

	cases := map[string]func([]byte) []byte{
		"flipped byte in a disk":       func(b []byte) []byte { b[diskOff+diskSize/2] ^= 0x01; return b },
		"flipped byte in the manifest": func(b []byte) []byte { b[manOff+10] ^= 0x01; return b },
		"truncated":                    func(b []byte) []byte { return b[:diskOff+diskSize/3] },
		"truncated at the end":         func(b []byte) []byte { return b[:len(b)-3000] },
		"manifest edited": func(b []byte) []byte {
			edited := strings.Replace(manifest, "10.72.0.5", "10.72.0.6", 1)
			copy(b[manOff:], edited)
			return b
		},
		"manifest and its checksum edited": func(b []byte) []byte {
			// Someone changes a disk's checksum and fixes the manifest's:
			// the disk then does not match.
			i := strings.Index(manifest, `"sha256":"`) + len(`"sha256":"`)
			edited := manifest[:i] + strings.Repeat("0", 64) + manifest[i+64:]
			copy(b[manOff:], edited)
			sum := sha256.Sum256([]byte(edited))
			copy(b[sumOff:], hex.EncodeToString(sum[:]))
			return b
		},
		"not a bundle": func(b []byte) []byte { return []byte("hello") },
	}
	e2 := newEnv(t)
	e2.network("lan", "10.72.0.0/24", "10.72.0.10-10.72.0.20")
	ctx := context.Background()
	for name, damage := range cases {
		t.Run(strings.ReplaceAll(name, " ", "-"), func(t *testing.T) {
			bad := filepath.Join(t.TempDir(), "bad.tar")
			if err := os.WriteFile(bad, damage(append([]byte(nil), good...)), 0o644); err != nil {
				t.Fatal(err)
			}
			j, err := e2.svc.Archives.StartImport(ctx, lab.ImportSpec{File: bad})
			if err == nil {
				j = e2.wait(j, nil)
				if j.State != jobs.Failed {
					t.Fatalf("import of a damaged bundle: %s", j.State)
				}
				err = errors.New(j.Error)
			}
			t.Logf("refused: %v", err)
			if as, _ := e2.svc.Archives.List(ctx); len(as) != 0 {
				t.Errorf("archives after a refused import: %+v", as)
			}
			if ds := archiveDirs(t, e2); len(ds) != 0 {
				t.Errorf("archive dirs after a refused import: %v", ds)
			}
		})
	}
	// The good one still imports.
	e2.ok(e2.svc.Archives.StartImport(ctx, lab.ImportSpec{File: file}))
}

func TestDoctorChecksArchives(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.template("base")
	e.config("a", lab.VMSpec{Name: "vm", Template: "base"})
	e.ok(e.svc.Archives.StartCreate(ctx, "a", "arch", lab.CreateOptions{}))
	e.assertConsistent()
	a, err := e.svc.Archives.Get(ctx, "arch")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(a.VMs[0].Disks[0].Path); err != nil {
		t.Fatal(err)
	}
	orphan := filepath.Join(e.svc.Archives.Dir(), "a-0123456789abcdef")
	notOurs := filepath.Join(e.svc.Archives.Dir(), "someone-elses")
	for _, d := range []string{orphan, notOurs} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r, err := e.svc.Doctor(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range r.Problems {
		got = append(got, fmt.Sprintf("%s %s repaired=%v", p.Kind, filepath.Base(p.Subject), p.Repaired))
	}
	want := "missing-archive-file vm0-disk0.qcow2 repaired=false orphan-file a-0123456789abcdef repaired=true"
	if strings.Join(got, " ") != want {
		t.Errorf("doctor: %q, want %q", strings.Join(got, " "), want)
	}
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphan archive dir kept: %v", err)
	}
	if _, err := os.Stat(notOurs); err != nil {
		t.Errorf("a directory that is not the lab's was touched: %v", err)
	}
}
