package metrics

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestDirBytes sums what the layer-like files take on disk (a sparse file
// only its written block), skips hidden temporary files and other names,
// and keeps the sum for maxAge before walking again.
func TestDirBytes(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte, size int64) {
		t.Helper()
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
	}
	block := make([]byte, 64<<10)
	for i := range block {
		block[i] = 1
	}
	write("l-1.qcow2", block, 1<<30)       // sparse: 64 KiB written of 1 GiB
	write(".l-2.qcow2.tmp", block, 64<<10) // a convert in progress
	write("notes.txt", block, 64<<10)      // not a layer
	write("l-3.qcow2", block[:4096], 4096) // one block
	want := int64(0)
	for _, n := range []string{"l-1.qcow2", "l-3.qcow2"} {
		b, err := AllocatedBytes(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		want += b
	}
	if want < 64<<10+4096 || want > 1<<20 {
		t.Fatalf("allocated bytes %d: the filesystem does not keep the file sparse", want)
	}

	now := time.Unix(1000, 0)
	d := NewDirBytes(dir, ".qcow2", 30*time.Second)
	d.now = func() time.Time { return now }
	if got, err := d.Bytes(); err != nil || got != want {
		t.Fatalf("Bytes() = %d, %v; want %d", got, err, want)
	}
	write("l-4.qcow2", block, 64<<10)
	now = now.Add(29 * time.Second)
	if got, _ := d.Bytes(); got != want {
		t.Errorf("within maxAge: Bytes() = %d, want the cached %d", got, want)
	}
	now = now.Add(2 * time.Second)
	more, _ := AllocatedBytes(filepath.Join(dir, "l-4.qcow2"))
	if got, _ := d.Bytes(); got != want+more {
		t.Errorf("past maxAge: Bytes() = %d, want %d", got, want+more)
	}

	missing := NewDirBytes(filepath.Join(dir, "none"), ".qcow2", time.Second)
	if got, err := missing.Bytes(); err != nil || got != 0 {
		t.Errorf("missing directory: %d, %v; want 0, nil", got, err)
	}
}

// TestRecorders counts into the labelled series the scrape shows.
func TestRecorders(t *testing.T) {
	before := testutil.ToFloat64(reaperActions.WithLabelValues("delete", OutcomeError))
	CountReaperAction("delete", true)
	if got := testutil.ToFloat64(reaperActions.WithLabelValues("delete", OutcomeError)); got != before+1 {
		t.Errorf("reaper delete/error = %v, want %v", got, before+1)
	}
	n := testutil.CollectAndCount(jobDuration)
	ObserveJob("metrics-test", "succeeded", 2.5)
	if got := testutil.CollectAndCount(jobDuration); got != n+1 {
		t.Errorf("job series = %d, want %d", got, n+1)
	}
}
