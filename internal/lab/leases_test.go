package lab_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"stagehand/internal/disk"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
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
		c, err := tx.GetConfig(name)
		if err != nil {
			return err
		}
		c.State = store.StateDeployed
		if err := tx.UpdateConfig(c); err != nil {
			return err
		}
		for i := range c.VMs {
			c.VMs[i].State = lab.VMStateRunning
			if err := tx.UpdateVM(&c.VMs[i]); err != nil {
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
	as, err := e.svc.Reap(context.Background())
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
	if _, err := e.svc.SetLease(ctx, "kept", lab.LeaseChange{Storage: &never}); err != nil {
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
	if _, err := e.svc.GetConfig(ctx, "old"); err == nil {
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
	c, err := e.svc.SetLease(ctx, "running", lab.LeaseChange{Storage: &ext})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Lease.ExpiredAt.IsZero() {
		t.Errorf("extended lease still marked expired: %+v", c.Lease)
	}

	evs, _ := e.svc.ListEvents(ctx, 0, 0)
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
	c, err := e.svc.SetLease(ctx, "web", lab.LeaseChange{Deploy: &four})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Lease.DeployExpires.Equal(clock.Now().Add(4*time.Hour)) || c.Lease.UndeployAction != store.UndeploySave {
		t.Fatalf("deploy lease: %+v", c.Lease)
	}
	if _, err := e.svc.SetLease(ctx, "db", lab.LeaseChange{Deploy: &four, UndeployAction: discard}); err != nil {
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
	if _, err := e.svc.SetLease(ctx, "web", lab.LeaseChange{Deploy: &four}); err != nil {
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
	evs, _ := e.svc.ListEvents(ctx, 0, 0)
	var n int
	for _, ev := range evs {
		if ev.Action == "undeploy" && ev.Actor == lab.ActorReaper && ev.Result == lab.ResultOK {
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
