package lab

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"stagehand/internal/disk"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab/bundle"
	"stagehand/internal/store"
	"stagehand/internal/store/sqlite"
)

// bundleEntry is one file of a hand-made bundle.
type bundleEntry struct {
	name string
	data []byte
}

// makeBundle writes a bundle: manifest.json, its checksum, then entries.
func makeBundle(t testing.TB, m *bundle.Manifest, entries ...bundleEntry) []byte {
	t.Helper()
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	all := append([]bundleEntry{{bundle.ManifestName, raw}, {"manifest.json.sha256", []byte(hex.EncodeToString(sum[:]) + "\n")}}, entries...)
	for _, e := range all {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o400, Size: int64(len(e.data)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func fileOf(p string, data []byte) bundle.File {
	sum := sha256.Sum256(data)
	return bundle.File{Path: p, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
}

// seedBundle is a valid bundle of one VM with one disk (disk, a qcow2 of
// virtual size vsize) on network lan, its template with a kernel.
func seedBundle(t testing.TB, diskImage []byte, vsize int64) []byte {
	kernel := []byte("kernelbytes")
	d := fileOf("disks/vm0-disk0.qcow2", diskImage)
	k := fileOf("boot/t0-kernel", kernel)
	m := &bundle.Manifest{
		Format: bundle.Format, Version: bundle.Version, Name: "a1", Source: "c1",
		Description: "seed", Owner: "fuzz", CreatedAt: time.Unix(0, 0).UTC(),
		Networks:  []bundle.Network{{Name: "lan", Subnet: "10.9.0.0/24", Gateway: "10.9.0.1", DNS: []string{}, Pools: []string{"10.9.0.10-10.9.0.50"}}},
		Templates: []bundle.Template{{Name: "t1", CPUs: 1, MemoryMiB: 64, Kernel: &k, Cmdline: "console=ttyS0"}},
		VMs: []bundle.VM{{Name: "vm1", Template: "t1", CPUs: 1, MemoryMiB: 64,
			Disks: []bundle.Disk{{Index: 0, VirtualSize: vsize, File: d}},
			NICs:  []bundle.NIC{{Index: 0, Network: "lan", MAC: "52:54:00:12:34:56", IPMode: store.IPModePool, IP: "10.9.0.10"}}}},
	}
	return makeBundle(t, m, bundleEntry{d.Path, diskImage}, bundleEntry{k.Path, kernel})
}

// snapshotImages makes, with qemu-img (512-byte clusters, so the seed
// stays small), a 1 MiB base, a delta on it named by the relative backing
// name "vm0-disk0-base.qcow2" and a delta on that one named
// "vm0-disk0-s0.qcow2": the disk files of an archive with one snapshot.
func snapshotImages(t testing.TB) (base, s0, cur []byte) {
	t.Helper()
	dir := t.TempDir()
	run := func(args ...string) {
		if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
		}
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	run("create", "-q", "-f", "qcow2", "-o", "cluster_size=512", p("vm0-disk0-base.qcow2"), "1M")
	run("create", "-q", "-f", "qcow2", "-o", "cluster_size=512", "-F", "qcow2", "-b", "vm0-disk0-base.qcow2", p("vm0-disk0-s0.qcow2"))
	run("create", "-q", "-f", "qcow2", "-o", "cluster_size=512", "-F", "qcow2", "-b", "vm0-disk0-s0.qcow2", p("vm0-disk0.qcow2"))
	read := func(name string) []byte {
		b, err := os.ReadFile(p(name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return read("vm0-disk0-base.qcow2"), read("vm0-disk0-s0.qcow2"), read("vm0-disk0.qcow2")
}

// seedSnapshotBundle is a valid version 2 bundle: seedBundle's VM with a
// snapshot s1 taken with state, its disk a base, s1's layer on it and the
// current top on s1's layer (the images of snapshotImages, of virtual
// size vsize), and the VM's current saved state.
func seedSnapshotBundle(t testing.TB, base, s0, cur []byte, vsize int64) []byte {
	state := []byte("QEVM saved state")
	b := fileOf("disks/vm0-disk0-base.qcow2", base)
	l := fileOf("disks/vm0-disk0-s0.qcow2", s0)
	l.Backing = b.Path
	d := fileOf("disks/vm0-disk0.qcow2", cur)
	d.Backing = l.Path
	st := fileOf("states/vm0-s0.state", state)
	current := []byte("QEVM current state")
	saved := fileOf("states/vm0.state", current)
	m := &bundle.Manifest{
		Format: bundle.Format, Version: bundle.VersionSnapshots, Name: "a1", Source: "c1",
		Description: "seed", Owner: "fuzz", CreatedAt: time.Unix(0, 0).UTC(),
		Networks:  []bundle.Network{{Name: "lan", Subnet: "10.9.0.0/24", Gateway: "10.9.0.1", DNS: []string{}, Pools: []string{"10.9.0.10-10.9.0.50"}}},
		Templates: []bundle.Template{{Name: "t1", CPUs: 1, MemoryMiB: 64}},
		VMs: []bundle.VM{{Name: "vm1", Template: "t1", CPUs: 1, MemoryMiB: 64,
			Disks: []bundle.Disk{{Index: 0, VirtualSize: vsize, Base: &b, File: d}},
			NICs:  []bundle.NIC{{Index: 0, Network: "lan", MAC: "52:54:00:12:34:56", IPMode: store.IPModePool, IP: "10.9.0.10"}},
			State: &saved}},
		Snapshots: []bundle.Snapshot{{Name: "s1", CreatedAt: time.Unix(0, 0).UTC(), WithState: true,
			Disks:  []bundle.SnapshotDisk{{VM: "vm1", Index: 0, File: l}},
			States: []bundle.SnapshotState{{VM: "vm1", File: st}}}},
	}
	return makeBundle(t, m, bundleEntry{b.Path, base}, bundleEntry{l.Path, s0}, bundleEntry{d.Path, cur}, bundleEntry{st.Path, state}, bundleEntry{saved.Path, current})
}

// dirBytes is the total size of the regular files under dir.
func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// FuzzBundleImport feeds arbitrary bytes as a bundle file to what an
// archive import runs on it before anything is recorded: the manifest and
// checksum reader and checker (bundle.ParseHead with the server's rules),
// the extraction of every member into a new archive directory (the real
// qemu-img checks the disks), and the network mapping. Nothing may panic, every refusal is
// of a known kind (an API 4xx), and the extraction never writes more
// bytes than the bundle holds (the sparse-tar bomb of the security
// review's M1 wrote 512 MiB from 210 KiB). The seed corpus holds a valid
// bundle, a valid one with a snapshot (manifest version 2: deltas whose
// backing names must stay inside the archive) and near misses; more
// valid bundles are made at run time.
func FuzzBundleImport(f *testing.F) {
	f.Add(seedBundle(f, []byte("not a qcow2 image"), 512))
	f.Add([]byte{})
	f.Add([]byte("manifest.json"))
	if _, err := exec.LookPath("qemu-img"); err == nil {
		p := filepath.Join(f.TempDir(), "d.qcow2")
		if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", p, "1M").CombinedOutput(); err != nil {
			f.Fatalf("qemu-img: %v\n%s", err, out)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(seedBundle(f, b, 1<<20))
		base, s0, cur := snapshotImages(f)
		f.Add(seedSnapshotBundle(f, base, s0, cur, 1<<20))
	}

	ctx := context.Background()
	dir := f.TempDir()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "stagehand.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	s, err := New(Options{DataDir: filepath.Join(dir, "data"), Store: db, Disks: disk.New(), ArchiveDir: filepath.Join(dir, "archive")})
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		head, err := bundle.ParseHead(bytes.NewReader(data), int64(len(data)), checkManifestRules)
		if err != nil {
			if errdefs.Kind(err) == nil {
				t.Fatalf("refusal of no known kind (a 500): %v", err)
			}
			return
		}
		// One work directory, emptied after each input (t.TempDir per
		// input would cost more than most inputs do).
		work := filepath.Join(dir, "work")
		if err := os.MkdirAll(work, 0o700); err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(work)
		tarFile := filepath.Join(work, "bundle.tar")
		if err := os.WriteFile(tarFile, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if head.File, err = os.Open(tarFile); err != nil {
			t.Fatal(err)
		}
		defer head.File.Close()
		tmp, final := filepath.Join(work, ".a.tmp"), filepath.Join(work, "a")
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		err = s.archives.Extract(cctx, &store.Op{Kind: "archive-import", Subject: "a"}, head, head.Manifest, tmp, final, func(int64, int64) {})
		written := dirBytes(tmp) + dirBytes(final)
		manifestCopy := int64(0)
		if err == nil {
			if fi, serr := os.Stat(filepath.Join(final, "manifest.json")); serr == nil {
				manifestCopy = fi.Size()
			}
		}
		if written-manifestCopy > int64(len(data)) {
			t.Fatalf("extraction wrote %d bytes from a %d-byte bundle", written-manifestCopy, len(data))
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("extraction of a %d-byte bundle ran out of time", len(data))
		}
		// The import maps networks after the checks; a refusal is a 400.
		if err := s.archives.MapNetworks(head.Manifest, map[string]string{"lan": "office"}); err != nil && errdefs.Kind(err) == nil {
			t.Fatalf("mapNetworks refusal of no known kind: %v", err)
		}
	})
}

// The fuzzer's valid seeds really are valid: they go through every check
// and are extracted, so mutations start from the deepest path.
func TestSeedBundleExtracts(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skipf("qemu-img not installed: %v", err)
	}
	ctx := context.Background()
	dir := t.TempDir()
	p := filepath.Join(dir, "d.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", p, "1M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, out)
	}
	img, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	base, s0, cur := snapshotImages(t)
	db, err := sqlite.Open(ctx, filepath.Join(dir, "stagehand.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := New(Options{DataDir: filepath.Join(dir, "data"), Store: db, Disks: disk.New()})
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"v1": seedBundle(t, img, 1<<20), "v2": seedSnapshotBundle(t, base, s0, cur, 1<<20)} {
		head, err := bundle.ParseHead(bytes.NewReader(data), int64(len(data)), checkManifestRules)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		tarFile := filepath.Join(dir, name+".tar")
		if err := os.WriteFile(tarFile, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if head.File, err = os.Open(tarFile); err != nil {
			t.Fatal(err)
		}
		defer head.File.Close()
		if err := s.archives.Extract(ctx, &store.Op{Kind: "archive-import"}, head, head.Manifest, filepath.Join(dir, "."+name+".tmp"), filepath.Join(dir, name), func(int64, int64) {}); err != nil {
			t.Fatalf("extract the %s seed: %v", name, err)
		}
	}
}
