package lab_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"stagehand/internal/disk"
	"stagehand/internal/errdefs"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/events"
	"stagehand/internal/store"
)

// clock is an injectable clock for lease tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

const day = 24 * time.Hour

// restart opens a second Service over the same data dir and store, as a
// daemon restart does, and recovers.
func (e *env) restart(opts ...envOpt) *lab.Service {
	e.t.Helper()
	jm := jobs.NewManager()
	e.t.Cleanup(jm.Close)
	o := lab.Options{DataDir: e.dir, Store: e.db, Disks: disk.New(), Jobs: jm}
	for _, f := range opts {
		f(&o)
	}
	svc, err := lab.New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := svc.Recover(context.Background()); err != nil {
		e.t.Logf("recover: %v", err) // lost fake VMs are reported, as they should
	}
	e.svc = svc
	return svc
}

// markDeployed puts a configuration in the deployed state as a deploy
// would, without running anything (the fake runtime cannot).
func (e *env) markDeployed(name string) {
	e.t.Helper()
	err := e.db.Update(context.Background(), func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		c.State = store.StateDeployed
		if err := tx.Configs().Update(c); err != nil {
			return err
		}
		for i := range c.VMs {
			c.VMs[i].State = lab.VMStateRunning
			if err := tx.Configs().UpdateVM(&c.VMs[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func actions(as []lab.ReapAction) string {
	var out []string
	for _, a := range as {
		s := a.Action + ":" + a.Name
		if a.Err != "" {
			s += "!" + a.Err
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func (e *env) reap() string {
	e.t.Helper()
	as, err := e.svc.Leases.Reap(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return actions(as)
}

func TestStorageLeaseMarksThenDeletesAcrossRestart(t *testing.T) {
	clock := newClock()
	policy := func(o *lab.Options) {
		o.Now = clock.Now
		o.Leases = lab.LeasePolicy{DefaultStorage: 30 * day, Cleanup: lab.CleanupDelete, Grace: 7 * day}
	}
	e := newEnv(t, policy, withFakeRuntime)
	ctx := context.Background()
	e.template("base")
	e.config("old", lab.VMSpec{Name: "vm", Template: "base"})
	e.config("kept", lab.VMSpec{Name: "vm", Template: "base"})
	e.config("running", lab.VMSpec{Name: "vm", Template: "base"})
	never := time.Duration(0)
	if _, err := e.svc.Leases.Set(ctx, "kept", lab.LeaseChange{Storage: &never}); err != nil {
		t.Fatal(err)
	}
	e.markDeployed("running")
	if c := e.get("old"); !c.Lease.StorageExpires.Equal(clock.Now().Add(30 * day)) {
		t.Fatalf("default storage lease: expires %v, want now+30d", c.Lease.StorageExpires)
	}

	if got := e.reap(); got != "" {
		t.Errorf("day 0: reaper did %q", got)
	}
	clock.Advance(31 * day)
	if got := e.reap(); got != "mark-expired:old mark-expired:running" {
		t.Errorf("day 31: reaper did %q, want old and running marked", got)
	}
	if c := e.get("old"); c.Lease.ExpiredAt.IsZero() || !c.Lease.DeleteAt.Equal(clock.Now().Add(7*day)) {
		t.Errorf("old after marking: %+v", c.Lease)
	}
	clock.Advance(day)
	if got := e.reap(); got != "" {
		t.Errorf("day 32, in the grace period: reaper did %q", got)
	}

	// The daemon restarts; the marks are in the store.
	e.restart(policy, withFakeRuntime)
	clock.Advance(7 * day)
	if got := e.reap(); got != "delete:old" {
		t.Errorf("after the grace period: reaper did %q, want only old deleted (running is not undeployed)", got)
	}
	if _, err := e.svc.Configs.Get(ctx, "old"); err == nil {
		t.Errorf("old still exists")
	}
	if c := e.get("running"); c.State == store.StateUndeployed {
		t.Errorf("running was touched: %s", c.State)
	}
	e.get("kept")
	if got := e.reap(); got != "" {
		t.Errorf("next pass: %q", got)
	}

	// Extending the lease clears the mark.
	ext := 10 * day
	c, err := e.svc.Leases.Set(ctx, "running", lab.LeaseChange{Storage: &ext})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Lease.ExpiredAt.IsZero() {
		t.Errorf("extended lease still marked expired: %+v", c.Lease)
	}

	evs, _ := e.svc.Events.List(ctx, 0, 0)
	var log []string
	for _, ev := range evs {
		if ev.Actor == lab.ActorReaper {
			log = append(log, ev.Action+":"+ev.Subject)
		}
	}
	if want := "storage-lease-expired:old storage-lease-expired:running delete:old"; strings.Join(log, " ") != want {
		t.Errorf("reaper events %q, want %q", strings.Join(log, " "), want)
	}
	e.assertConsistent()
}

func TestNotifyPolicyNeverDeletes(t *testing.T) {
	clock := newClock()
	e := newEnv(t, func(o *lab.Options) {
		o.Now = clock.Now
		o.Leases = lab.LeasePolicy{DefaultStorage: day}
	})
	e.template("base")
	e.config("a", lab.VMSpec{Name: "vm", Template: "base"})
	clock.Advance(2 * day)
	if got := e.reap(); got != "mark-expired:a" {
		t.Errorf("reaper did %q", got)
	}
	clock.Advance(365 * day)
	if got := e.reap(); got != "" {
		t.Errorf("notify policy: reaper did %q a year later", got)
	}
	e.get("a")
}

func TestDeployLeaseUndeploysAcrossRestart(t *testing.T) {
	clock := newClock()
	opts := func(o *lab.Options) { o.Now = clock.Now }
	e := newEnv(t, opts, withFakeRuntime)
	ctx := context.Background()
	e.template("base")
	e.network("lan", "10.71.0.0/24", "10.71.0.10-10.71.0.20")
	e.config("web", lab.VMSpec{Name: "vm", Template: "base", Network: "lan"})
	e.config("db", lab.VMSpec{Name: "vm", Template: "base"})
	e.markDeployed("web")
	e.markDeployed("db")
	four, discard := 4*time.Hour, store.UndeployDiscard
	c, err := e.svc.Leases.Set(ctx, "web", lab.LeaseChange{Deploy: &four})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Lease.DeployExpires.Equal(clock.Now().Add(4*time.Hour)) || c.Lease.UndeployAction != store.UndeploySave {
		t.Fatalf("deploy lease: %+v", c.Lease)
	}
	if _, err := e.svc.Leases.Set(ctx, "db", lab.LeaseChange{Deploy: &four, UndeployAction: discard}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(3 * time.Hour)
	if got := e.reap(); got != "" {
		t.Errorf("3h into a 4h lease: reaper did %q", got)
	}
	clock.Advance(2 * time.Hour)
	if got := e.reap(); got != "undeploy:web undeploy:db" {
		t.Errorf("after the lease: reaper did %q", got)
	}
	for _, n := range []string{"web", "db"} {
		if c := e.get(n); c.State != store.StateUndeployed || !c.Lease.DeployExpires.IsZero() {
			t.Errorf("%s after its deployment lease: %s, lease %+v", n, c.State, c.Lease)
		}
	}

	// The same with a restart between deploy and expiry: the lease is in
	// the store. (The fake hypervisor cannot re-adopt, so the restart
	// marks the deployment failed, which the reaper undeploys too.)
	e.markDeployed("web")
	if _, err := e.svc.Leases.Set(ctx, "web", lab.LeaseChange{Deploy: &four}); err != nil {
		t.Fatal(err)
	}
	e.restart(opts, withFakeRuntime)
	clock.Advance(5 * time.Hour)
	if got := e.reap(); got != "undeploy:web" {
		t.Errorf("after restart and expiry: reaper did %q", got)
	}
	if c := e.get("web"); c.State != store.StateUndeployed {
		t.Errorf("web after restart and expiry: %s", c.State)
	}
	evs, _ := e.svc.Events.List(ctx, 0, 0)
	var n int
	for _, ev := range evs {
		if ev.Action == "undeploy" && ev.Actor == lab.ActorReaper && ev.Result == events.ResultOK {
			n++
		}
	}
	if n != 3 {
		t.Errorf("%d undeploy events by the reaper, want 3", n)
	}
}

func TestParseLease(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"never", 0, true}, {"30d", 30 * day, true}, {"2w", 14 * day, true}, {"8h", 8 * time.Hour, true},
		{"1.5d", 36 * time.Hour, true}, {"90m", 90 * time.Minute, true},
		{"", 0, false}, {"0d", 0, false}, {"-3h", 0, false}, {"soon", 0, false}, {"3x", 0, false},
	} {
		got, err := lab.ParseLease(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseLease(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// TestOperationsAnswerWithTheirLease gives every operation that makes a
// configuration, library entry or archive an explicit storage lease (and a
// deploy its deployment lease) and checks that what it answers, or what
// is read right after its job, shows that lease, and that an operation
// without one gets the default.
func TestOperationsAnswerWithTheirLease(t *testing.T) {
	clock := newClock()
	e := newEnv(t, withFakeRuntime, func(o *lab.Options) {
		o.Now = clock.Now
		o.Leases = lab.LeasePolicy{DefaultStorage: 30 * day, DefaultDeploy: 8 * time.Hour}
	})
	ctx := context.Background()
	e.template("base")
	e.network("lan", "10.73.0.0/24", "10.73.0.10-10.73.0.30")
	lease := func(d time.Duration) lab.CreateOptions { return lab.CreateOptions{StorageLease: &d} }
	storage := func(what string, got lab.LeaseView, want time.Duration) {
		t.Helper()
		if want == 0 && !got.StorageExpires.IsZero() || want != 0 && !got.StorageExpires.Equal(clock.Now().Add(want)) {
			t.Errorf("%s: storage lease ends %v, want now + %v (%v)", what, got.StorageExpires, want, clock.Now())
		}
		if !got.LastUsed.Equal(clock.Now()) {
			t.Errorf("%s: last used %v, want its creation %v", what, got.LastUsed, clock.Now())
		}
	}
	vm := lab.VMSpec{Name: "vm", Template: "base", Network: "lan"}

	two := 2 * day
	c, err := e.svc.Configs.Create(ctx, lab.ConfigSpec{Name: "a", VMs: []lab.VMSpec{vm}, StorageLease: &two})
	if err != nil {
		t.Fatal(err)
	}
	storage("create --storage-lease 2d", c.Lease, two)
	if c.Lease.DeployLease != 8*time.Hour {
		t.Errorf("create: deployment lease %v, want the default 8h", c.Lease.DeployLease)
	}
	storage("create", e.config("dflt", vm).Lease, 30*day)
	never := time.Duration(0)
	c, err = e.svc.Configs.Create(ctx, lab.ConfigSpec{Name: "never", VMs: []lab.VMSpec{vm}, StorageLease: &never})
	if err != nil {
		t.Fatal(err)
	}
	storage("create --storage-lease never", c.Lease, 0)
	if _, err := e.svc.Configs.Create(ctx, lab.ConfigSpec{Name: "neg", VMs: []lab.VMSpec{vm}, StorageLease: ptr(-day)}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("create with a negative lease: %v", err)
	}

	clock.Advance(time.Hour)
	if c, err = e.svc.Configs.LinkedClone(ctx, "a", "b", lease(3*day)); err != nil {
		t.Fatal(err)
	}
	storage("clone", c.Lease, 3*day)
	if c, err = e.svc.Library.Capture(ctx, "a", "lib", lease(4*day)); err != nil {
		t.Fatal(err)
	}
	storage("capture", c.Lease, 4*day)
	clock.Advance(time.Hour)
	if c, err = e.svc.Library.Checkout(ctx, "lib", "ws", lease(5*day)); err != nil {
		t.Fatal(err)
	}
	storage("checkout", c.Lease, 5*day)
	if lib, err := e.svc.Library.Get(ctx, "lib"); err != nil || !lib.Lease.LastUsed.Equal(clock.Now()) {
		t.Errorf("library entry after checkout: %v, last used %v, want now", err, lib.Lease.LastUsed)
	}
	e.ok(e.svc.Configs.StartFullClone(ctx, "a", "full", lease(6*day)))
	storage("full clone", e.get("full").Lease, 6*day)

	e.ok(e.svc.Archives.StartCreate(ctx, "a", "arch", lease(7*day)))
	a, err := e.svc.Archives.Get(ctx, "arch")
	if err != nil {
		t.Fatal(err)
	}
	storage("archive", a.Lease, 7*day)
	clock.Advance(time.Hour)
	e.ok(e.svc.Archives.StartRestore(ctx, "arch", "back", lease(8*day)))
	storage("restore", e.get("back").Lease, 8*day)
	if a, err = e.svc.Archives.Get(ctx, "arch"); err != nil || !a.Lease.LastUsed.Equal(clock.Now()) {
		t.Errorf("archive after restore: %v, last used %v, want now", err, a.Lease.LastUsed)
	}
	file := filepath.Join(t.TempDir(), "arch.tar")
	exportBundle(t, e.svc, "arch", file)
	e.ok(e.svc.Archives.StartImport(ctx, lab.ImportSpec{File: file, Name: "imported", StorageLease: ptr(9 * day)}))
	if a, err = e.svc.Archives.Get(ctx, "imported"); err != nil {
		t.Fatal(err)
	}
	storage("import", a.Lease, 9*day)

	clock.Advance(time.Hour)
	if c, err = e.svc.Deployments.Deploy(ctx, "b", lab.DeployOptions{DeployLease: ptr(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if c.Lease.DeployLease != time.Hour || !c.Lease.DeployExpires.Equal(clock.Now().Add(time.Hour)) || !c.Lease.LastUsed.Equal(clock.Now()) {
		t.Errorf("deploy --deploy-lease 1h answers %+v, want 1h from now (%v)", c.Lease, clock.Now())
	}
	clock.Advance(time.Minute)
	if c, err = e.svc.Deployments.Undeploy(ctx, "b", false); err != nil {
		t.Fatal(err)
	}
	if !c.Lease.DeployExpires.IsZero() || !c.Lease.LastUsed.Equal(clock.Now()) {
		t.Errorf("undeploy answers %+v, want no deployment lease running", c.Lease)
	}
	if c, err = e.svc.Deployments.Deploy(ctx, "b", lab.DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	if c.Lease.DeployLease != time.Hour || !c.Lease.DeployExpires.Equal(clock.Now().Add(time.Hour)) {
		t.Errorf("second deploy answers %+v, want the 1h it was given before", c.Lease)
	}
}

func ptr[T any](v T) *T { return &v }

// dyingStore is a store whose daemon is killed right after the transaction
// that commits a journalled operation of kind: that Update returns only
// when the test ends, and every later call fails, as nothing runs in a
// dead process.
type dyingStore struct {
	store.Store
	kind    string
	mu      sync.Mutex
	dead    bool
	died    chan struct{}
	release chan struct{}
}

var errKilled = errors.New("the daemon was killed after the commit")

func (d *dyingStore) isDead() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dead
}

func (d *dyingStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	if d.isDead() {
		return errKilled
	}
	committed := false
	err := d.Store.Update(ctx, func(tx store.Tx) error {
		return fn(&commitSpy{Tx: tx, kind: d.kind, committed: &committed})
	})
	if err == nil && committed {
		d.mu.Lock()
		d.dead = true
		d.mu.Unlock()
		close(d.died)
		<-d.release
		return errKilled
	}
	return err
}

func (d *dyingStore) View(ctx context.Context, fn func(store.Tx) error) error {
	if d.isDead() {
		return errKilled
	}
	return d.Store.View(ctx, fn)
}

// commitSpy notes that the transaction commits a journalled operation of
// kind.
type commitSpy struct {
	store.Tx
	kind      string
	committed *bool
}

func (c *commitSpy) Ops() store.Ops { return opsSpy{Ops: c.Tx.Ops(), spy: c} }

// opsSpy is the journal of a commitSpy's transaction.
type opsSpy struct {
	store.Ops
	spy *commitSpy
}

func (o opsSpy) Update(op *store.Op) error {
	if op.Committed && op.Kind == o.spy.kind {
		*o.spy.committed = true
	}
	return o.Ops.Update(op)
}

// TestKillAfterCommitKeepsTheLease kills the daemon right after each
// creating operation committed, restarts it on the same store and checks
// that the new object has the storage lease it was asked for: the lease
// is written in the operation's own transaction, not after it.
func TestKillAfterCommitKeepsTheLease(t *testing.T) {
	const asked = 3 * day
	lease := lab.CreateOptions{StorageLease: ptr(asked)}
	for _, c := range []struct {
		kind   string // the journal's
		object string
		name   string
		run    func(ctx context.Context, e *env) error
	}{
		{"create", lab.ObjectConfig, "new", func(ctx context.Context, e *env) error {
			_, err := e.svc.Configs.Create(ctx, lab.ConfigSpec{Name: "new", VMs: []lab.VMSpec{{Name: "v", Template: "base"}}, StorageLease: lease.StorageLease})
			return err
		}},
		{"clone", lab.ObjectConfig, "new", func(ctx context.Context, e *env) error {
			_, err := e.svc.Configs.LinkedClone(ctx, "a", "new", lease)
			return err
		}},
		{"clone", lab.ObjectLibrary, "new", func(ctx context.Context, e *env) error {
			_, err := e.svc.Library.Capture(ctx, "a", "new", lease)
			return err
		}},
		{"clone", lab.ObjectConfig, "new", func(ctx context.Context, e *env) error {
			_, err := e.svc.Library.Checkout(ctx, "lib", "new", lease)
			return err
		}},
		{"full-clone", lab.ObjectConfig, "new", func(ctx context.Context, e *env) error {
			return e.finished(e.svc.Configs.StartFullClone(ctx, "a", "new", lease))
		}},
		{"archive", lab.ObjectArchive, "new", func(ctx context.Context, e *env) error {
			return e.finished(e.svc.Archives.StartCreate(ctx, "a", "new", lease))
		}},
		{"restore", lab.ObjectConfig, "new", func(ctx context.Context, e *env) error {
			return e.finished(e.svc.Archives.StartRestore(ctx, "arch", "new", lease))
		}},
		{"archive-import", lab.ObjectArchive, "new", func(ctx context.Context, e *env) error {
			return e.finished(e.svc.Archives.StartImport(ctx, lab.ImportSpec{File: filepath.Join(e.dir, "arch.tar"), Name: "new", StorageLease: lease.StorageLease}))
		}},
	} {
		t.Run(c.object+"-"+c.kind, func(t *testing.T) {
			clock := newClock()
			e := newEnv(t, func(o *lab.Options) { o.Now = clock.Now })
			ctx := context.Background()
			e.template("base")
			e.config("a", lab.VMSpec{Name: "vm", Template: "base"})
			if _, err := e.svc.Library.Capture(ctx, "a", "lib", lab.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			e.ok(e.svc.Archives.StartCreate(ctx, "a", "arch", lab.CreateOptions{}))
			exportBundle(t, e.svc, "arch", filepath.Join(e.dir, "arch.tar"))

			dying := &dyingStore{Store: e.db, kind: c.kind, died: make(chan struct{}), release: make(chan struct{})}
			doomed := e.restart(func(o *lab.Options) { o.Store, o.Now = dying, clock.Now })
			dead := make(chan error, 1)
			go func() { dead <- c.run(ctx, &env{t: t, svc: doomed, dir: e.dir, db: dying, jobs: doomed.Jobs()}) }()
			t.Cleanup(func() {
				close(dying.release)
				<-dead
			})
			select {
			case <-dying.died:
			case err := <-dead:
				t.Fatalf("the operation ended (%v) without committing", err)
			case <-time.After(time.Minute):
				t.Fatal("the operation never committed")
			}

			e.restart(func(o *lab.Options) { o.Now = clock.Now })
			var got lab.LeaseView
			switch c.object {
			case lab.ObjectArchive:
				a, err := e.svc.Archives.Get(ctx, c.name)
				if err != nil {
					t.Fatalf("the committed archive is gone after the restart: %v", err)
				}
				got = a.Lease
			case lab.ObjectLibrary:
				v, err := e.svc.Library.Get(ctx, c.name)
				if err != nil {
					t.Fatalf("the committed entry is gone after the restart: %v", err)
				}
				got = v.Lease
			default:
				got = e.get(c.name).Lease
			}
			if want := clock.Now().Add(asked); !got.StorageExpires.Equal(want) {
				t.Errorf("after a kill right after the commit: storage lease ends %v, want %v", got.StorageExpires, want)
			}
		})
	}
}

// finished waits for the job a Start method started, when it did.
func (e *env) finished(j jobs.Job, err error) error {
	if err != nil {
		return err
	}
	return waitJob(e, j)
}
