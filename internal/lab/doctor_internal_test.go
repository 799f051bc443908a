package lab

import (
	"context"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"stagehand/internal/disk"
	"stagehand/internal/store/sqlite"
)

// gatedChecks is the real disk tool; Check counts its calls, and the first
// one waits for the gate to open.
type gatedChecks struct {
	DiskTool
	entered chan struct{} // closed when the first Check starts
	gate    chan struct{}
	once    sync.Once

	mu         sync.Mutex
	calls, now int
	mostAtOnce int
}

func (g *gatedChecks) Check(ctx context.Context, path string) error {
	g.mu.Lock()
	g.calls++
	g.mu.Unlock()
	g.once.Do(func() {
		close(g.entered)
		<-g.gate
	})
	return g.DiskTool.Check(ctx, path)
}

// TestConcurrentDoctorsRunTheCheckOnce (L7): a second caller that asks
// while a doctor runs gets that run's report, so qemu-img check reads
// each layer once; a repair asked meanwhile waits for the running check
// (one run at a time) and reads nothing again, the layers being unchanged.
func TestConcurrentDoctorsRunTheCheckOnce(t *testing.T) {
	for _, b := range []string{"qemu-img", "qemu-io"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed: %v", b, err)
		}
	}
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "stagehand.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	g := &gatedChecks{DiskTool: disk.New(), entered: make(chan struct{}), gate: make(chan struct{})}
	s, err := New(Options{DataDir: dir, Store: db, Disks: g})
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "src.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", img, "16M").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if _, err := s.Templates.Import(ctx, TemplateSpec{Name: "base", Disks: []string{img}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Configs.Create(ctx, ConfigSpec{Name: "a", VMs: []VMSpec{{Name: "v1", Template: "base"}, {Name: "v2", Template: "base"}}}); err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	g.calls = 0 // the import checked its source
	g.mu.Unlock()

	type result struct {
		r   *DoctorReport
		err error
	}
	results := make(chan result, 3)
	ask := func(repair bool) {
		r, err := s.Doctor(ctx, repair)
		results <- result{r, err}
	}
	go ask(false)
	select {
	case <-g.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the first doctor never checked a layer")
	}
	go ask(false)
	go ask(true)
	// Wait until the second caller has joined the running check and the
	// repair is queued behind it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		callers, _, checking := s.doctor.Pending(false)
		_, repairStarted, repairQueued := s.doctor.Pending(true)
		joined := checking && callers == 2 && repairQueued
		if joined && repairStarted {
			t.Error("the repair started while the check ran")
		}
		if joined {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second caller never joined the running doctor")
		}
		time.Sleep(time.Millisecond)
	}
	close(g.gate)
	var reports []*DoctorReport
	for range 3 {
		res := <-results
		if res.err != nil {
			t.Fatal(res.err)
		}
		reports = append(reports, res.r)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.calls != 3 {
		t.Errorf("qemu-img check ran %d times, want 3 (each layer once)", g.calls)
	}
	for _, r := range reports {
		if r.Checked != 3 || len(r.Problems) != 0 {
			t.Errorf("report: %d layers, problems %+v", r.Checked, r.Problems)
		}
	}
}
