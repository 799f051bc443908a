package lab_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"stagehand/internal/cluster"
	"stagehand/internal/lab"
	"stagehand/internal/lab/deploy"
	"stagehand/internal/store"
)

// work starts host name's worker with its lab's handlers until the test
// ends (or stop is called), as the daemon does.
func (in *installation) work(name string) (stop func()) {
	in.t.Helper()
	var id int64
	if err := in.db.View(context.Background(), func(tx store.Tx) error {
		h, err := tx.Hosts().Get(name)
		if err == nil {
			id = h.ID
		}
		return err
	}); err != nil {
		in.t.Fatal(err)
	}
	w := cluster.NewWorker(in.db, nil, id, nil)
	for kind, h := range in.labs[name].WorkHandlers() {
		w.Handle(kind, h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	stop = func() { cancel(); <-done }
	in.t.Cleanup(stop)
	return stop
}

// items lists the work items about subject as "KIND@HOST:STATE".
func (in *installation) items(subject string) []string {
	in.t.Helper()
	var out []string
	if err := in.db.View(context.Background(), func(tx store.Tx) error {
		hs, err := tx.Hosts().List()
		if err != nil {
			return err
		}
		ws, err := tx.Work().OfSubject(subject)
		for _, w := range ws {
			for _, h := range hs {
				if h.ID == w.HostID {
					out = append(out, w.Kind+"@"+h.Name+":"+w.State)
				}
			}
		}
		return err
	}); err != nil {
		in.t.Fatal(err)
	}
	return out
}

// touch sets host name's last heartbeat to at.
func (in *installation) touch(name string, at time.Time) {
	in.t.Helper()
	if err := in.db.Update(context.Background(), func(tx store.Tx) error { return tx.Hosts().Touch(name, at) }); err != nil {
		in.t.Fatal(err)
	}
}

// stateIn waits until configuration name's recorded state is want.
func (in *installation) stateIn(name, want string) {
	in.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for in.config(name).State != want {
		if time.Now().After(deadline) {
			in.t.Fatalf("%s: state %s, want %s (work %v)", name, in.config(name).State, want, in.items(name))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// callsWith returns the runtime calls of host name that contain part.
func (in *installation) callsWith(name, part string) []string {
	var out []string
	for _, c := range in.rt[name].Calls.Take() {
		if strings.Contains(c, part) {
			out = append(out, c)
		}
	}
	return out
}

// TestReaperActsOnAnotherHostThroughItsQueue: the leader (h1) reaps a
// configuration living on h2 by queueing an undeploy for h2, whose worker
// does it with h2's runtime (h1's never stops a VM); a second pass queues
// nothing more. With h2 offline the decision is queued once however many
// passes run, the configuration shows "host offline" to h1 (and deployed
// to h2 itself), nothing is done from h1, and h2's worker carries it out
// when it returns.
func TestReaperActsOnAnotherHostThroughItsQueue(t *testing.T) {
	requireQemuImg(t)
	clock := newClock()
	e := newEnv(t)
	in := newInstallation(t, e.db)
	opt := func(o *lab.Options) { o.Now = clock.Now }
	h1 := in.hostWith("h1", filepath.Join(t.TempDir(), "h1"), 4096, opt)
	h2 := in.hostWith("h2", filepath.Join(t.TempDir(), "h2"), 4096, opt)
	ctx := context.Background()
	if _, err := h1.Templates.Import(ctx, lab.TemplateSpec{Name: "base", Disks: []string{makeImage(t, 8)}}); err != nil {
		t.Fatal(err)
	}
	hour := time.Hour
	for _, n := range []string{"web", "db"} {
		if _, err := h1.Configs.Create(ctx, lab.ConfigSpec{Name: n, VMs: []lab.VMSpec{{Name: "vm", Template: "base"}}}); err != nil {
			t.Fatal(err)
		}
		if v, err := h1.Deployments.Deploy(ctx, n, lab.DeployOptions{Host: "h2", DeployLease: &hour}); err != nil || v.Host != "h2" {
			t.Fatalf("deploy %s on h2: %v %+v", n, err, v)
		}
	}
	in.rt["h1"].Calls.Take()
	in.rt["h2"].Calls.Take()
	stopH2 := in.work("h2")

	clock.Advance(2 * hour)
	acts, err := h1.Leases.Reap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range acts {
		if a.Err != "" {
			t.Errorf("reaper %s %s: %s", a.Action, a.Name, a.Err)
		}
	}
	for _, n := range []string{"web", "db"} {
		if c := in.config(n); c.State != store.StateUndeployed || c.Host != "h2" {
			t.Errorf("%s after the reaper: %s on %s, want undeployed on h2", n, c.State, c.Host)
		}
		if got := in.items(n); !slices.Equal(got, []string{"undeploy@h2:done"}) {
			t.Errorf("%s: work %v, want one undeploy done by h2", n, got)
		}
	}
	if got := in.callsWith("h1", "vm"); len(got) != 0 {
		t.Errorf("h1's runtime touched VMs: %v", got)
	}
	if got := in.callsWith("h2", "save-state"); len(got) != 2 {
		t.Errorf("h2's runtime saved %v, want both VMs (their lease says save)", got)
	}
	if _, err := h1.Leases.Reap(ctx); err != nil {
		t.Fatal(err)
	}
	if got := in.items("web"); len(got) != 1 {
		t.Errorf("a second pass queued more: %v", got)
	}

	// h2 goes offline holding a deployment whose lease runs out.
	if _, err := h2.Deployments.Deploy(ctx, "web", lab.DeployOptions{Host: "h2", DeployLease: &hour}); err != nil {
		t.Fatal(err)
	}
	stopH2()
	in.rt["h2"].Calls.Take()
	in.touch("h2", time.Now().Add(-cluster.OfflineAfter-time.Second))
	if v, err := h1.Configs.Get(ctx, "web"); err != nil || v.State != lab.StateHostOffline {
		t.Errorf("web seen from h1 with h2 offline: %v %+v, want %q", err, v, lab.StateHostOffline)
	}
	if v, err := h2.Configs.Get(ctx, "web"); err != nil || v.State != store.StateDeployed {
		t.Errorf("web seen from h2 itself: %v %+v, want deployed", err, v)
	}
	clock.Advance(2 * hour)
	for range 3 {
		if _, err := h1.Leases.Reap(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := in.items("web"); !slices.Equal(got, []string{"undeploy@h2:done", "undeploy@h2:queued"}) {
		t.Errorf("web with h2 offline: work %v, want one more undeploy queued", got)
	}
	if c := in.config("web"); c.State != store.StateDeployed {
		t.Errorf("web undeployed while its host was offline: %s", c.State)
	}
	if got := in.callsWith("h1", "vm"); len(got) != 0 {
		t.Errorf("h1's runtime touched VMs: %v", got)
	}
	in.touch("h2", time.Now())
	in.work("h2")
	in.stateIn("web", store.StateUndeployed)
	if got := in.items("web"); !slices.Equal(got, []string{"undeploy@h2:done", "undeploy@h2:done"}) {
		t.Errorf("web after h2 returned: work %v", got)
	}
}

// TestDrainSavesMovesAndResumes: a drain of h1, carried out by h1's
// worker, undeploys its configuration saving its state, moves tops and
// saved state to h2 (the only other host) and deploys it there resuming
// the state; h1 is left with nothing deployed and no copy. A second
// configuration no host fits stops the drain before it is touched, with an
// error naming it and every host's verdict. With --all an undeployed
// configuration's tops move too, and h1 can be removed.
func TestDrainSavesMovesAndResumes(t *testing.T) {
	requireQemuImg(t)
	e := newEnv(t)
	in := newInstallation(t, e.db)
	h1 := in.host("h1", filepath.Join(t.TempDir(), "h1"), 4096, nil)
	in.host("h2", filepath.Join(t.TempDir(), "h2"), 1024, nil)
	ctx := context.Background()
	if _, err := h1.Templates.Import(ctx, lab.TemplateSpec{Name: "base", Disks: []string{makeImage(t, 8)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h1.Configs.Create(ctx, lab.ConfigSpec{Name: "web", VMs: []lab.VMSpec{{Name: "vm", Template: "base"}}}); err != nil {
		t.Fatal(err)
	}
	if v, err := h1.Deployments.Deploy(ctx, "web", lab.DeployOptions{Host: "h1"}); err != nil || v.Host != "h1" {
		t.Fatalf("deploy web on h1: %v %+v", err, v)
	}
	in.work("h1")
	in.work("h2")
	hosts := cluster.NewHosts(e.db)
	if _, err := hosts.Drain(ctx, "h1", false); err != nil {
		t.Fatal(err)
	}
	waitDrain(t, hosts, "h1")
	c := in.config("web")
	if c.State != store.StateDeployed || c.Host != "h2" {
		t.Fatalf("web after the drain: %s on %s, want deployed on h2", c.State, c.Host)
	}
	state := deploy.StateFile(c.VMs[0].ID)
	if got := in.callsWith("h2", "resume="+filepath.Base(state)); len(got) != 1 {
		t.Errorf("h2 did not resume the saved state: %v", got)
	}
	if got := in.callsWith("h1", "save-state"); len(got) != 1 {
		t.Errorf("h1 did not save the state: %v", got)
	}
	if _, err := os.Stat(filepath.Join(in.dirs["h1"], state)); !os.IsNotExist(err) {
		t.Errorf("h1 kept the saved state: %v", err)
	}
	if _, err := os.Stat(filepath.Join(in.dirs["h1"], in.topOf("web"))); !os.IsNotExist(err) {
		t.Errorf("h1 kept the top: %v", err)
	}
	if v, _ := hosts.Get(ctx, "h1"); len(v.Deployed) != 0 || v.Drain.State != store.WorkDone {
		t.Errorf("h1 after the drain: deployed %v, drain %+v", v.Deployed, v.Drain)
	}

	// Back to h1; a configuration of 2 VMs fits h1 alone.
	if _, err := hosts.Undrain(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	if _, err := h1.Configs.Create(ctx, lab.ConfigSpec{Name: "big", VMs: []lab.VMSpec{{Name: "a", Template: "base"}, {Name: "b", Template: "base"}, {Name: "c", Template: "base"}, {Name: "d", Template: "base"}, {Name: "e", Template: "base"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h1.Deployments.Deploy(ctx, "big", lab.DeployOptions{Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	in.rt["h1"].Calls.Take()
	if _, err := hosts.Drain(ctx, "h1", false); err != nil {
		t.Fatal(err)
	}
	v := waitDrain(t, hosts, "h1")
	if v.Drain.State != store.WorkFailed {
		t.Fatalf("drain with an unplaceable configuration: %+v", v.Drain)
	}
	for _, want := range []string{`configuration "big"`, "h1: no: draining", "h2: no: needs"} {
		if !strings.Contains(v.Drain.Error, want) {
			t.Errorf("drain error %q does not say %q", v.Drain.Error, want)
		}
	}
	if c := in.config("big"); c.State != store.StateDeployed || c.Host != "h1" {
		t.Errorf("big after the failed drain: %s on %s, want still deployed on h1", c.State, c.Host)
	}
	if got := in.callsWith("h1", "vm"); len(got) != 0 {
		t.Errorf("the failed drain touched h1's VMs: %v", got)
	}

	// --all: an undeployed configuration's tops move too (before host
	// remove); nothing is deployed for it.
	if _, err := h1.Deployments.Undeploy(ctx, "big", false); err != nil {
		t.Fatal(err)
	}
	if err := h1.Configs.Delete(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	if _, err := h1.Configs.Create(ctx, lab.ConfigSpec{Name: "cold", VMs: []lab.VMSpec{{Name: "vm", Template: "base"}}}); err != nil {
		t.Fatal(err)
	}
	in.touch("h1", time.Now()) // no daemon heartbeats here
	in.touch("h2", time.Now())
	if _, err := hosts.Drain(ctx, "h1", true); err != nil {
		t.Fatal(err)
	}
	if v := waitDrain(t, hosts, "h1"); v.Drain.State != store.WorkDone || len(v.Homed) != 0 {
		t.Errorf("drain --all: %+v, h1 still the home of %v", v.Drain, v.Homed)
	}
	if c := in.config("cold"); c.State != store.StateUndeployed || c.Host != "h2" {
		t.Errorf("cold after drain --all: %s on %s, want undeployed on h2", c.State, c.Host)
	}
	if err := hosts.Remove(ctx, "h1"); err != nil {
		t.Errorf("remove h1 after drain --all: %v", err)
	}
}

// waitDrain waits until host name's drain ended and returns the host.
func waitDrain(t *testing.T, hosts *cluster.Hosts, name string) *cluster.HostView {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v, err := hosts.Get(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if v.Drain != nil && (v.Drain.State == store.WorkDone || v.Drain.State == store.WorkFailed) {
			if v.Drain.Error != "" {
				t.Logf("drain of %s: %s", name, v.Drain.Error)
			}
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("drain of %s did not end: %+v", name, v.Drain)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
