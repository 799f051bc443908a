package client_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/client"
	"stagehand/internal/errdefs"
)

// TestUploadAndDownload: a template from files on the client's machine; an
// archive downloaded to a file (0600, the bundle the server sent) and
// uploaded back as a new archive; a download to an existing file refused
// without touching it.
func TestUploadAndDownload(t *testing.T) {
	c, l := newClient(t)
	ctx := context.Background()
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	os.WriteFile(kernel, bytes.Repeat([]byte("k"), 4096), 0o600)
	tmpl, err := c.Templates().Upload(ctx, client.TemplateUpload{Name: "tmpl", Disks: []string{l.Image(t, "a.qcow2", 1<<30)}, Kernel: kernel, CPUs: 2})
	if err != nil || tmpl.CPUs != 2 || len(tmpl.Disks) != 1 || tmpl.Kernel == "" {
		t.Fatalf("UploadTemplate = %+v, %v", tmpl, err)
	}
	if _, err := c.Templates().Upload(ctx, client.TemplateUpload{Name: "t2", Disks: []string{filepath.Join(dir, "missing")}}); err == nil {
		t.Error("a missing local file was uploaded")
	}
	seedArchive(t, c)
	file := filepath.Join(dir, "arch.tar")
	n, err := c.Archives().Download(ctx, "arch", file)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Size() != n || fi.Mode().Perm() != 0o600 {
		t.Fatalf("bundle %v %v (%d bytes announced)", fi, err, n)
	}
	os.WriteFile(filepath.Join(dir, "other"), []byte("mine"), 0o600)
	if _, err := c.Archives().Download(ctx, "arch", filepath.Join(dir, "other")); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("download over an existing file: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "other")); string(b) != "mine" {
		t.Errorf("the existing file was changed")
	}
	j, err := c.Archives().Upload(ctx, client.BundleUpload{File: file, Name: "copy", MapNetwork: map[string]string{"lan": "lan"}})
	if err != nil {
		t.Fatal(err)
	}
	if j, err = c.Jobs().Wait(ctx, j.ID, time.Minute); err != nil || j.State != wire.JobSucceeded || j.Subject != "copy" {
		t.Fatalf("import job = %+v, %v", j, err)
	}
	assertOnly(t, dir, "arch.tar", "other", "vmlinuz")
}

func seedArchive(t *testing.T, c *client.Client) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.Networks().Create(ctx, wire.NetworkRequest{Name: "lan", Subnet: "10.0.0.0/24", Pools: []string{"10.0.0.10-10.0.0.20"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Configs().Create(ctx, wire.ConfigRequest{Name: "web", VMs: []wire.VMRequest{{Name: "vm1", Template: "tmpl", Network: "lan"}}}); err != nil {
		t.Fatal(err)
	}
	j, err := c.Archives().Start(ctx, wire.ArchiveRequest{Config: "web", Name: "arch"})
	if err != nil {
		t.Fatal(err)
	}
	if j, err = c.Jobs().Wait(ctx, j.ID, time.Minute); err != nil || j.State != wire.JobSucceeded {
		t.Fatalf("archive job = %+v, %v", j, err)
	}
}

// assertOnly asserts dir holds exactly names (no temporary file left).
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	es, _ := os.ReadDir(dir)
	var got []string
	for _, e := range es {
		got = append(got, e.Name())
	}
	if len(got) != len(names) {
		t.Errorf("%s holds %v, want %v", dir, got, names)
		return
	}
	for i := range names {
		if got[i] != names[i] {
			t.Errorf("%s holds %v, want %v", dir, got, names)
		}
	}
}

// TestDownloadOfADamagedArchiveLeavesNothing: the server finds a damaged
// disk half way through the bundle and cuts the stream; the client says
// so and leaves neither FILE nor its temporary file.
func TestDownloadOfADamagedArchiveLeavesNothing(t *testing.T) {
	c, l := newClient(t)
	ctx := context.Background()
	if _, err := c.Templates().Import(ctx, wire.TemplateRequest{Name: "tmpl", Disks: []string{l.Image(t, "a.qcow2", 1<<30)}}); err != nil {
		t.Fatal(err)
	}
	seedArchive(t, c)
	a, err := l.Archives.Get(ctx, "arch")
	if err != nil {
		t.Fatal(err)
	}
	d := a.VMs[0].Disks[0].Path
	b, err := os.ReadFile(d)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0xff // a flipped byte: the sha256 check on the way fails
	os.Chmod(d, 0o600)
	if err := os.WriteFile(d, b, 0o400); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := c.Archives().Download(ctx, "arch", filepath.Join(dir, "arch.tar")); err == nil {
		t.Fatal("a damaged archive was downloaded")
	}
	assertOnly(t, dir)
}

// progressLog records what a client.Progress was told.
type progressLog struct {
	mu      sync.Mutex
	samples [][2]int64
}

func (p *progressLog) record(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.samples = append(p.samples, [2]int64{done, total})
}

// check asserts the samples start at 0, never go back, and end at
// wantLast (done, total).
func (p *progressLog) check(t *testing.T, what string, wantLast [2]int64) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.samples) < 3 {
		t.Fatalf("%s: %d progress samples, want a start, steps and an end: %v", what, len(p.samples), p.samples)
	}
	if p.samples[0][0] != 0 {
		t.Errorf("%s: first sample %v, want 0 done", what, p.samples[0])
	}
	for i := 1; i < len(p.samples); i++ {
		if p.samples[i][0] < p.samples[i-1][0] {
			t.Errorf("%s: progress went back: %v then %v", what, p.samples[i-1], p.samples[i])
		}
	}
	if last := p.samples[len(p.samples)-1]; last != wantLast {
		t.Errorf("%s: last sample %v, want %v", what, last, wantLast)
	}
}

// TestTransferProgress: uploads tell their Progress the file bytes sent out
// of the files' total (two template files in one request; a bundle), and a
// download the bytes received, ending at the size written.
func TestTransferProgress(t *testing.T) {
	c, _ := newClient(t)
	ctx := context.Background()
	dir := t.TempDir()
	disk, kernel := filepath.Join(dir, "disk.img"), filepath.Join(dir, "vmlinuz")
	os.WriteFile(disk, make([]byte, 1<<20), 0o600)
	os.WriteFile(kernel, bytes.Repeat([]byte("k"), 300_000), 0o600)
	var up progressLog
	if _, err := c.Templates().Upload(ctx, client.TemplateUpload{Name: "tmpl", Disks: []string{disk}, Format: "raw", Kernel: kernel, Progress: up.record}); err != nil {
		t.Fatal(err)
	}
	up.check(t, "template upload", [2]int64{1<<20 + 300_000, 1<<20 + 300_000})

	seedArchive(t, c)
	file := filepath.Join(dir, "arch.tar")
	var down progressLog
	n, err := c.Archives().DownloadProgress(ctx, "arch", file, down.record)
	if err != nil {
		t.Fatal(err)
	}
	// The daemon streams the bundle without a Content-Length.
	down.check(t, "download", [2]int64{n, 0})

	var bundle progressLog
	j, err := c.Archives().Upload(ctx, client.BundleUpload{File: file, Name: "copy", MapNetwork: map[string]string{"lan": "lan"}, Progress: bundle.record})
	if err != nil {
		t.Fatal(err)
	}
	if j, err = c.Jobs().Wait(ctx, j.ID, time.Minute); err != nil || j.State != wire.JobSucceeded {
		t.Fatalf("import job = %+v, %v", j, err)
	}
	bundle.check(t, "bundle upload", [2]int64{n, n})
}
