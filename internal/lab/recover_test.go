package lab_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"stagehand/internal/disk"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
	"stagehand/internal/store"
)

// errDead is what a "dead" writer returns once the test lets its goroutine
// go, long after the restarted service recovered.
var errDead = errors.New("the daemon was killed here")

// crashDisks is the real disk tool, except that the first write of the
// armed kind stops as a SIGKILL would stop it: the files the writer had
// made so far are on disk, and the calling goroutine (the dead daemon)
// never goes on, until the test ends. Consolidate really runs qemu-img
// and dies after qemu-img has written the whole temporary file, before it
// is published; the others leave the partial files their writer makes
// (the names disk documents).
type crashDisks struct {
	lab.DiskTool
	mu       sync.Mutex
	armed    string // "import", "delta" or "consolidate"
	left     []string
	crashed  chan struct{}
	release  chan struct{}
	journal  func() []string // the files the journal names, at the crash
	named    []string
	notNamed []string
}

func newCrashDisks() *crashDisks {
	return &crashDisks{DiskTool: disk.New(), crashed: make(chan struct{}), release: make(chan struct{})}
}

func (c *crashDisks) take(kind string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.armed != kind {
		return false
	}
	c.armed = ""
	return true
}

// die records the files the crash leaves and whether the journal named
// each before it existed, then blocks until the test ends.
func (c *crashDisks) die(partial ...string) error {
	named := c.journal()
	for _, p := range partial {
		if slices.Contains(named, p) {
			c.named = append(c.named, p)
		} else {
			c.notNamed = append(c.notNamed, p)
		}
		if _, err := os.Stat(p); err != nil {
			if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
				return err
			}
		}
		c.left = append(c.left, p)
	}
	close(c.crashed)
	<-c.release
	return errDead
}

func (c *crashDisks) ImportFile(ctx context.Context, f *os.File, name string, private bool, format, dst string) (int64, error) {
	if c.take("import") {
		// Killed while qemu-img converted the private copy of the source.
		return 0, c.die(disk.ImportCopyPath(dst), disk.TempPath(dst))
	}
	return c.DiskTool.ImportFile(ctx, f, name, private, format, dst)
}

func (c *crashDisks) CreateDelta(ctx context.Context, parent, dst string) error {
	if c.take("delta") {
		return c.die(dst) // CreateDelta writes dst itself
	}
	return c.DiskTool.CreateDelta(ctx, parent, dst)
}

func (c *crashDisks) Consolidate(ctx context.Context, top, dst string, progress func(done, total int64)) error {
	if !c.take("consolidate") {
		return c.DiskTool.Consolidate(ctx, top, dst, progress)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var once sync.Once
	err := c.DiskTool.Consolidate(ctx, top, dst, func(done, total int64) {
		progress(done, total)
		if done == total && total > 0 {
			// qemu-img reported 100 %: its output is complete under
			// the temporary name and not yet published.
			once.Do(func() {
				if _, err := os.Stat(disk.TempPath(dst)); err != nil {
					c.notNamed = append(c.notNamed, "no temporary file at 100 %: "+err.Error())
				}
				c.die(disk.TempPath(dst))
				cancel() // the dead daemon never publishes it
			})
		}
	})
	if err == nil {
		return fmt.Errorf("consolidate %s: the crash point was never reached", dst)
	}
	return err
}

// restarted opens a second service on e's data dir and store, as a daemon
// started after a SIGKILL does, and recovers.
func (e *env) restarted(t *testing.T) *env {
	t.Helper()
	jm := jobs.NewManager()
	t.Cleanup(jm.Close)
	svc, err := lab.New(lab.Options{DataDir: e.dir, Store: e.db, Disks: disk.New(), Jobs: jm})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Recover(context.Background()); err != nil {
		t.Fatalf("recover: %v", err)
	}
	return &env{t: t, svc: svc, dir: e.dir, db: e.db, jobs: jm}
}

// dataFiles lists every entry of the layers and files directories, dot
// files included (a glob of "*" would miss the temporary ones).
func dataFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	for _, d := range []string{"layers", "files"} {
		es, err := os.ReadDir(filepath.Join(dir, d))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		for _, e := range es {
			out = append(out, filepath.Join(d, e.Name()))
		}
	}
	return out
}

// TestRecoverAfterKillRemovesEveryTemporaryFile kills each journalled
// operation in the middle of writing a file (or, for delete, between its
// commit and the removal of the files it released), restarts on the same
// data dir and store, and checks that the journal had named every file
// the dead writer left before it existed, that recovery removed them all,
// and that the lab is exactly as before (delete: as after).
func TestRecoverAfterKillRemovesEveryTemporaryFile(t *testing.T) {
	for _, c := range []struct {
		op    string
		crash string // crashDisks kind, or "" for the FailAt pause
		run   func(e *env) error
	}{
		{"import", "import", func(e *env) error {
			_, err := e.svc.Templates.Import(context.Background(), lab.TemplateSpec{Name: "t2", Disks: []string{makeImage(t, 8)}})
			return err
		}},
		{"create", "delta", func(e *env) error {
			_, err := e.svc.Configs.Create(context.Background(), lab.ConfigSpec{Name: "new", VMs: []lab.VMSpec{{Name: "v", Template: "base", Network: "lan"}}})
			return err
		}},
		{"clone", "delta", func(e *env) error {
			_, err := e.svc.Configs.LinkedClone(context.Background(), "a", "new", lab.CreateOptions{})
			return err
		}},
		{"full-clone", "consolidate", func(e *env) error {
			j, err := e.svc.Configs.StartFullClone(context.Background(), "a", "new", lab.CreateOptions{})
			if err != nil {
				return err
			}
			return waitJob(e, j)
		}},
		{"consolidate", "consolidate", func(e *env) error {
			j, err := e.svc.Configs.StartConsolidate(context.Background(), "a", "vm1", 0)
			if err != nil {
				return err
			}
			return waitJob(e, j)
		}},
		{"delete", "", func(e *env) error { return e.svc.Configs.Delete(context.Background(), "a") }},
	} {
		t.Run(c.op, func(t *testing.T) {
			cd := newCrashDisks()
			paused := make(chan struct{})
			e := newEnv(t, func(o *lab.Options) {
				o.Disks = cd
				o.FailAt = func(op, step string) error {
					if c.crash == "" && op == c.op && step == "remove-files" {
						close(paused)
						<-cd.release
						return errDead
					}
					return nil
				}
			})
			cd.journal = func() []string {
				var named []string
				for _, op := range journal(t, e) {
					for _, f := range op.CreatedFiles {
						named = append(named, filepath.Join(e.dir, f))
					}
				}
				return named
			}
			e.template("base")
			e.network("lan", "10.3.0.0/24", "10.3.0.10-10.3.0.30")
			e.config("a", lab.VMSpec{Name: "vm1", Template: "base", Network: "lan"}, lab.VMSpec{Name: "vm2", Template: "base"})
			qemuIO(t, top(e.get("a"), "vm1"), "write -P 9 0 4M")
			before := e.snapshot()
			cd.mu.Lock()
			cd.armed = c.crash
			cd.mu.Unlock()

			dead := make(chan error, 1)
			go func() { dead <- c.run(e) }()
			t.Cleanup(func() {
				close(cd.release)
				select {
				case <-dead:
				case <-time.After(time.Minute):
					t.Errorf("the dead operation never returned")
				}
			})
			crashed := cd.crashed
			if c.crash == "" {
				crashed = paused
			}
			select {
			case <-crashed:
			case err := <-dead:
				t.Fatalf("operation ended (%v) without reaching the crash point", err)
			case <-time.After(time.Minute):
				t.Fatal("the crash point was never reached")
			}
			if len(cd.notNamed) > 0 {
				t.Errorf("files the journal did not name before they existed: %v (it named %v)", cd.notNamed, cd.named)
			}
			if c.crash != "" && len(cd.named) == 0 {
				t.Errorf("the crash left no file (want the partial output)")
			}
			for _, p := range cd.left {
				if _, err := os.Stat(p); err != nil {
					t.Errorf("the crash should have left %s: %v", p, err)
				}
			}

			e2 := e.restarted(t)
			for _, f := range dataFiles(t, e.dir) {
				if disk.IsTempName(filepath.Base(f)) {
					t.Errorf("recovery left %s", f)
				}
			}
			if len(journal(t, e2)) != 0 {
				t.Errorf("journal after recovery: %+v", journal(t, e2))
			}
			if c.op == "delete" {
				if _, err := e2.svc.Configs.Get(context.Background(), "a"); err == nil {
					t.Error("deleted configuration is back")
				}
			} else if after := e2.snapshot(); after != before {
				t.Errorf("recovery did not restore the state\nbefore %s\nafter  %s", before, after)
			}
			e2.assertConsistent()
		})
	}
}

func waitJob(e *env, j jobs.Job) error {
	j, err := e.jobs.Wait(context.Background(), j.ID)
	if err != nil {
		return err
	}
	if j.State != jobs.Succeeded {
		return fmt.Errorf("%s: %s", j.State, j.Error)
	}
	return nil
}

// TestRollbackRemovesTemporaryFilesOfAnOlderDaemon recovers a journal entry
// written before temporary names were journalled, whose writer used a
// random part (".l-ID.qcow2.123456.tmp", what the review found): rollback
// still removes it, as every ".NAME.*.tmp" made for a created NAME.
func TestRollbackRemovesTemporaryFilesOfAnOlderDaemon(t *testing.T) {
	e := newEnv(t)
	layer := filepath.Join("layers", "l-00000000deadbeef.qcow2")
	left := []string{
		filepath.Join("layers", ".l-00000000deadbeef.qcow2.2356032845.tmp"),
		filepath.Join("layers", ".l-00000000deadbeef.qcow2.tmp"),
	}
	for _, f := range left {
		if err := os.WriteFile(filepath.Join(e.dir, f), []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Not made for the layer: must stay.
	other := filepath.Join(e.dir, "layers", ".l-00000000deadbeefX.qcow2.tmp")
	os.WriteFile(other, nil, 0o600)
	putOp(t, e, "full-clone", "old", layer)
	e2 := e.restarted(t)
	for _, f := range left {
		if _, err := os.Stat(filepath.Join(e.dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after recovery: %v", f, err)
		}
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("recovery removed a file not made for the layer: %v", err)
	}
	if ops := journal(t, e2); len(ops) != 0 {
		t.Errorf("journal: %+v", ops)
	}
}

// putOp writes an uncommitted journal entry, as an operation interrupted
// by a crash leaves it.
func putOp(t *testing.T, e *env, kind, subject string, created ...string) {
	t.Helper()
	if err := e.db.Update(context.Background(), func(tx store.Tx) error {
		return tx.Ops().Create(&store.Op{Kind: kind, Subject: subject, CreatedFiles: created})
	}); err != nil {
		t.Fatal(err)
	}
}

// TestRecoverClearsAPathWithNUL is L1: a journal entry
// naming a path with a NUL byte (no such file can exist) is cleared by
// recovery instead of staying forever.
func TestRecoverClearsAPathWithNUL(t *testing.T) {
	e := newEnv(t)
	putOp(t, e, "export", "a1", filepath.Join(t.TempDir(), ".x\x00y.0a1b2c.tmp"))
	e2 := e.restarted(t)
	if ops := journal(t, e2); len(ops) != 0 {
		t.Errorf("journal after recovery: %+v", ops)
	}
}
