package bundle_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/lab/bundle"
)

// formatOnly applies no rules beyond the format's: what names and
// networks a server accepts is the lab's to test.
func formatOnly(*bundle.Manifest) error { return nil }

// archiveDir writes an archive directory of one VM with one disk and a
// template with a kernel, and returns it with its manifest.
func archiveDir(t *testing.T) (string, *bundle.Manifest, []byte) {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{
		"disks/vm0-disk0.qcow2": bytes.Repeat([]byte("disk"), 300000),
		"boot/t0-kernel":        []byte("kernelbytes"),
	}
	sealed := map[string]bundle.File{}
	for p, data := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), data, 0o400); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		sealed[p] = bundle.File{Path: p, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
	}
	k := sealed["boot/t0-kernel"]
	m := &bundle.Manifest{Format: bundle.Format, Version: bundle.Version, Name: "a1", CreatedAt: time.Unix(0, 0).UTC(),
		Networks:  []bundle.Network{{Name: "lan", Subnet: "10.9.0.0/24", Pools: []string{"10.9.0.10-10.9.0.50"}}},
		Templates: []bundle.Template{{Name: "t1", CPUs: 1, MemoryMiB: 64, Kernel: &k}},
		VMs: []bundle.VM{{Name: "vm1", Template: "t1", CPUs: 1, MemoryMiB: 64,
			Disks: []bundle.Disk{{Index: 0, VirtualSize: 1 << 20, File: sealed["disks/vm0-disk0.qcow2"]}},
			NICs:  []bundle.NIC{{Index: 0, Network: "lan", IPMode: "pool", IP: "10.9.0.10"}}}},
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return dir, m, raw
}

// A bundle written from an archive directory reads back into an equal
// directory: same files, byte for byte, read-only, the manifest as
// written, progress reaching the bundle's size.
func TestWriteThenExtract(t *testing.T) {
	ctx := context.Background()
	dir, m, raw := archiveDir(t)
	file := filepath.Join(t.TempDir(), "a1.tar")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := bundle.Write(ctx, f, raw, m, dir, func(int64, int64) {}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	head, err := bundle.ReadHead(file, formatOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer head.File.Close()
	if !bytes.Equal(head.Raw, raw) || head.Manifest.Size() != m.Size() {
		t.Fatalf("head: manifest %s (%d bytes of files), want %s (%d)", head.Raw, head.Manifest.Size(), raw, m.Size())
	}
	out := t.TempDir()
	for _, sub := range []string{"disks", "boot"} {
		if err := os.Mkdir(filepath.Join(out, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	var last int64
	if err := bundle.Extract(ctx, head, out, func(done, _ int64) { last = done }); err != nil {
		t.Fatal(err)
	}
	for _, mf := range m.Files() {
		want, _ := os.ReadFile(filepath.Join(dir, mf.Path))
		got, err := os.ReadFile(filepath.Join(out, mf.Path))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes (%v), want the %d written", mf.Path, len(got), err, len(want))
		}
		if st, err := os.Stat(filepath.Join(out, mf.Path)); err != nil || st.Mode().Perm() != 0o400 {
			t.Errorf("%s: %v %v, want mode 0400", mf.Path, st.Mode(), err)
		}
	}
	if last <= m.Size() || last > head.Size {
		t.Errorf("progress ended at %d, want past the files' %d and within the bundle's %d", last, m.Size(), head.Size)
	}
}

// A damaged archive is not written, and a bundle whose manifest does not
// match its checksum, or whose shape is wrong, is refused as invalid.
func TestRefusals(t *testing.T) {
	ctx := context.Background()
	dir, m, raw := archiveDir(t)
	var b bytes.Buffer
	k := filepath.Join(dir, "boot/t0-kernel")
	if err := os.Chmod(k, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k, []byte("kernelbyteZ"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := bundle.Write(ctx, &b, raw, m, dir, func(int64, int64) {}); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("write of a damaged archive: %v, want refused as damaged", err)
	}

	good := writeBundle(t, raw)
	edited := bytes.Replace(good, []byte(`"name":"a1"`), []byte(`"name":"a2"`), 1)
	if _, err := bundle.ParseHead(bytes.NewReader(edited), int64(len(edited)), formatOnly); !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("edited manifest: %v, want ErrInvalid naming the checksum", err)
	}
	m2 := *m
	m2.VMs = []bundle.VM{m.VMs[0], m.VMs[0]}
	raw2, _ := json.Marshal(&m2)
	twice := writeBundle(t, raw2)
	if _, err := bundle.ParseHead(bytes.NewReader(twice), int64(len(twice)), formatOnly); !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "appears twice") {
		t.Errorf("VM twice: %v, want ErrInvalid saying it appears twice", err)
	}
	if _, err := bundle.ParseHead(bytes.NewReader(good[:600]), 600, formatOnly); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("truncated head: %v, want ErrInvalid", err)
	}
}

// writeBundle writes the head of a bundle: manifest raw and its checksum
// (only the head is read).
func writeBundle(t *testing.T, raw []byte) []byte {
	t.Helper()
	sum := sha256.Sum256(raw)
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range []struct {
		name string
		data []byte
	}{{bundle.ManifestName, raw}, {"manifest.json.sha256", []byte(hex.EncodeToString(sum[:]) + "\n")}} {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
