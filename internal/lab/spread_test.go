package lab_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"stagehand/internal/disk"
	"stagehand/internal/errdefs"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/deploy"
	"stagehand/internal/lab/labtest"
	"stagehand/internal/lab/lease"
	"stagehand/internal/store"
)

// spreadHosts makes h1 (400 MiB: one 256 MiB VM fits) and h2 (4 GiB)
// with underlay addresses, h1 on dir with failAt, the template "base" and
// network "lan" unless e already has them, and configuration "a" (vm1,
// vm2 on lan) on h1.
func spreadHosts(t *testing.T, db store.Store, dir string, failAt func(op, step string) error, fresh bool) *installation {
	t.Helper()
	return spreadHostsWith(t, db, dir, func(o *lab.Options) { o.FailAt = failAt }, fresh)
}

// spreadHostsWith is spreadHosts with both labs' options set by opt.
func spreadHostsWith(t *testing.T, db store.Store, dir string, opt func(*lab.Options), fresh bool) *installation {
	t.Helper()
	in := newInstallation(t, db)
	h1 := in.hostWith("h1", dir, 400, opt)
	in.hostWith("h2", filepath.Join(t.TempDir(), "h2"), 4096, opt)
	setUnderlay(t, db, "h1", "10.88.0.1")
	setUnderlay(t, db, "h2", "10.88.0.2")
	if fresh {
		in.base(h1)
		if _, err := h1.Networks.Create(context.Background(), lab.NetworkSpec{Name: "lan", Subnet: "10.2.0.0/24", Pools: []string{"10.2.0.10-10.2.0.30"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := h1.Configs.Create(context.Background(), lab.ConfigSpec{Name: "a", VMs: []lab.VMSpec{
			{Name: "vm1", Template: "base", Network: "lan"}, {Name: "vm2", Template: "base", Network: "lan"}}}); err != nil {
			t.Fatal(err)
		}
	}
	return in
}

func setUnderlay(t *testing.T, db store.Store, host, addr string) {
	t.Helper()
	if err := db.Update(context.Background(), func(tx store.Tx) error {
		h, err := tx.Hosts().Get(host)
		if err != nil {
			return err
		}
		h.Underlay = addr
		return tx.Hosts().Register(h)
	}); err != nil {
		t.Fatal(err)
	}
}

var spreadOpts = lab.DeployOptions{Fenced: true, FencePolicy: "out", Spread: true, Explain: true}

// vmTop is the data-dir path of the top of VM vm of "a".
func (in *installation) vmTop(vm string) string {
	in.t.Helper()
	c := in.config("a")
	var path string
	for _, v := range c.VMs {
		if v.Name != vm {
			continue
		}
		if err := in.db.View(context.Background(), func(tx store.Tx) error {
			l, err := tx.Layers().Get(v.Disks[0].TopLayerID)
			if err == nil {
				path = l.Path
			}
			return err
		}); err != nil {
			in.t.Fatal(err)
		}
	}
	return path
}

func exists(dir, rel string) bool {
	_, err := os.Stat(filepath.Join(dir, rel))
	return err == nil
}

// assertGathered checks that "a" is undeployed and whole on h1 again:
// every VM without a host, its tops on h1 and none on h2, no VNI held,
// nothing left running on either host.
func (in *installation) assertGathered(what string) {
	in.t.Helper()
	c := in.config("a")
	if c.State != store.StateUndeployed {
		in.t.Errorf("%s: a is %s, want undeployed", what, c.State)
	}
	for _, vm := range c.VMs {
		if vm.Host != "" {
			in.t.Errorf("%s: VM %s left on host %q", what, vm.Name, vm.Host)
		}
		top := in.vmTop(vm.Name)
		if !exists(in.dirs["h1"], top) || exists(in.dirs["h2"], top) {
			in.t.Errorf("%s: VM %s's top on h1 %v, on h2 %v; want only on h1", what, vm.Name, exists(in.dirs["h1"], top), exists(in.dirs["h2"], top))
		}
	}
	if err := in.db.View(context.Background(), func(tx store.Tx) error {
		vnis, err := tx.FenceVNIs().OfConfig(c.ID)
		if len(vnis) > 0 {
			in.t.Errorf("%s: VNIs still held: %+v", what, vnis)
		}
		return err
	}); err != nil {
		in.t.Fatal(err)
	}
	for _, h := range []string{"h1", "h2"} {
		if left := in.rt[h].Leftovers(); len(left) > 0 {
			in.t.Errorf("%s: left on %s: %q", what, h, left)
		}
	}
}

// TestSpreadDeploy: a fenced configuration deployed --spread whose two
// VMs do not both fit on its home h1 runs vm1 on h1 (the home first) and
// vm2 on h2, whose top moved there; h1 holds the fence's router, h2 its
// inside part, both with the same VNI and each other's underlay address
// as the peer. Undeploy stops both parts and brings vm2's top home; a
// restart of h2's daemon re-adopts its part with the same span; --spread
// without --fenced is refused naming the rule.
func TestSpreadDeploy(t *testing.T) {
	requireQemuImg(t)
	e := newEnv(t)
	in := spreadHosts(t, e.db, filepath.Join(t.TempDir(), "h1"), nil, true)
	h1 := in.labs["h1"]
	ctx := context.Background()

	_, err := h1.Deployments.Deploy(ctx, "a", lab.DeployOptions{Spread: true})
	if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "--spread needs --fenced") {
		t.Fatalf("--spread without --fenced: %v, want invalid naming the rule", err)
	}

	top2 := in.vmTop("vm2")
	in.rt["h1"].Calls.Take()
	in.rt["h2"].Calls.Take()
	v, err := h1.Deployments.Deploy(ctx, "a", spreadOpts)
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string]string{}
	for _, vm := range v.VMs {
		hosts[vm.Name] = vm.Host
	}
	if diff := cmp.Diff(map[string]string{"vm1": "h1", "vm2": "h2"}, hosts); diff != "" {
		t.Errorf("VM hosts (-want +got):\n%s", diff)
	}
	if v.Placement == nil || len(v.Placement.VMs) != 2 || !v.Placement.Moved {
		t.Fatalf("placement: %+v", v.Placement)
	}
	for _, p := range v.Placement.VMs {
		t.Logf("%s -> %s: %v", p.VM, p.Host, p.Verdicts)
	}
	if got := in.rt["h1"].Hypervisor.Running(); len(got) != 1 {
		t.Errorf("running on h1: %v, want one VM", got)
	}
	if got := in.rt["h2"].Hypervisor.Running(); len(got) != 1 {
		t.Errorf("running on h2: %v, want one VM", got)
	}
	if !exists(in.dirs["h2"], top2) || exists(in.dirs["h1"], top2) {
		t.Errorf("vm2's top: on h2 %v, on h1 %v; want moved to h2", exists(in.dirs["h2"], top2), exists(in.dirs["h1"], top2))
	}
	wantFence := map[string]string{
		"h1": "span local=10.88.0.1 underlay=ul-10.88.0.1 peers=[10.88.0.2] router=true vni[lan=1]",
		"h2": "span local=10.88.0.2 underlay=ul-10.88.0.2 peers=[10.88.0.1] router=false vni[lan=1]",
	}
	for h, want := range wantFence {
		calls := in.rt[h].Calls.Take()
		i := slices.IndexFunc(calls, func(l string) bool { return strings.HasPrefix(l, "fence setup") })
		if i < 0 || !strings.HasSuffix(calls[i], want) {
			t.Errorf("%s: fence calls %q, want a setup with %q", h, calls, want)
		}
		if slices.ContainsFunc(calls, func(l string) bool { return strings.HasPrefix(l, "seg ensure") }) != (h == "h1") {
			t.Errorf("%s: outside segments %q: only the router's host has them", h, calls)
		}
	}

	// h1's lab refuses to act on the VM of the other host, naming it (the
	// API forwards such requests to h2); h2 acts on it and records its
	// state as one host does.
	if _, err := h1.Deployments.VMAction(ctx, "a", "vm2", lab.VMActionReset); !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), `"h2"`) {
		t.Errorf("reset of vm2 on h1: %v", err)
	}
	if _, err := h1.Deployments.VMConsole(ctx, "a", "vm2"); !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), `"h2"`) {
		t.Errorf("console of vm2 on h1: %v", err)
	}
	in.vmActionOn("h2", "vm2", lab.VMActionStop, deploy.VMStateStopped)
	in.vmActionOn("h2", "vm2", lab.VMActionStart, deploy.VMStateRunning)
	in.vmActionOn("h2", "vm2", lab.VMActionReset, deploy.VMStateRunning)
	// h2's daemon restarts: it re-adopts its part with the same span.
	rt2 := in.rt["h2"]
	rt2.Restart()
	restartOn(t, in, "h2", rt2)
	calls := rt2.Calls.Take()
	if i := slices.IndexFunc(calls, func(l string) bool { return strings.HasPrefix(l, "fence adopt") }); i < 0 || !strings.HasSuffix(calls[i], wantFence["h2"]) {
		t.Errorf("h2 after a restart: %q, want the fence adopted with %q", calls, wantFence["h2"])
	}

	if _, err := h1.Deployments.Undeploy(ctx, "a", false); err != nil {
		t.Fatal(err)
	}
	in.assertGathered("after undeploy")
}

// vmActionOn runs action on VM vm of "a" through host h's lab and waits
// for the store to record the VM's state want.
func (in *installation) vmActionOn(h, vm, action, want string) {
	in.t.Helper()
	if _, err := in.labs[h].Deployments.VMAction(context.Background(), "a", vm, action); err != nil {
		in.t.Fatalf("%s of %s on %s: %v", action, vm, h, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := in.config("a")
		i := slices.IndexFunc(c.VMs, func(v store.VM) bool { return v.Name == vm })
		if c.VMs[i].State == want {
			return
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("%s of %s on %s: state %q, want %q", action, vm, h, c.VMs[i].State, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stateOf is the data-dir path of VM vm of "a"'s saved state.
func (in *installation) stateOf(vm string) string {
	in.t.Helper()
	for _, v := range in.config("a").VMs {
		if v.Name == vm {
			return deploy.StateFile(v.ID)
		}
	}
	in.t.Fatalf("a has no VM %q", vm)
	return ""
}

// assertSavedHome checks that "a" is gathered (assertGathered) with both
// VMs saved, their state files on h1 and none on h2.
func (in *installation) assertSavedHome(what string) {
	in.t.Helper()
	in.assertGathered(what)
	for _, vm := range in.config("a").VMs {
		st := in.stateOf(vm.Name)
		if vm.State != lab.VMStateSaved || !exists(in.dirs["h1"], st) || exists(in.dirs["h2"], st) {
			in.t.Errorf("%s: VM %s is %s, its state on h1 %v, on h2 %v; want saved, only on h1", what, vm.Name, vm.State,
				exists(in.dirs["h1"], st), exists(in.dirs["h2"], st))
		}
	}
}

// resumed lists host h's VM starts that resumed a state, as
// "resume=vm-N.state".
func (in *installation) resumed(h string) []string {
	var out []string
	for _, c := range in.callsWith(h, "hv start") {
		if i := strings.Index(c, "resume="); i >= 0 && !strings.HasSuffix(c, "resume=-") {
			out = append(out, c[i:])
		}
	}
	return out
}

// TestSpreadSaveStateTravels: undeploy --save-state of a spread
// deployment saves vm1 on its home h1 and vm2 on h2 (over the host link),
// and vm2's state comes home with its top; the configuration is
// undeployed and whole on h1 with both VMs saved. Deployed --spread again,
// vm2's state moves to h2 with its top, and each host resumes its VM
// (h2 removes the state it resumed from at the next undeploy, once the
// deployment committed). Saved again, a plain deploy at home resumes both
// there.
func TestSpreadSaveStateTravels(t *testing.T) {
	requireQemuImg(t)
	e := newEnv(t)
	in := spreadHosts(t, e.db, filepath.Join(t.TempDir(), "h1"), nil, true)
	h1 := in.labs["h1"]
	ctx := context.Background()
	if _, err := h1.Deployments.Deploy(ctx, "a", spreadOpts); err != nil {
		t.Fatal(err)
	}
	st1, st2 := in.stateOf("vm1"), in.stateOf("vm2")
	in.rt["h1"].Calls.Take()
	in.rt["h2"].Calls.Take()

	v, err := h1.Deployments.Undeploy(ctx, "a", true)
	if err != nil {
		t.Fatal(err)
	}
	if got1, got2 := in.callsWith("h1", "save-state"), in.callsWith("h2", "save-state"); len(got1) != 1 || len(got2) != 1 {
		t.Errorf("saves: h1 %q, h2 %q; want one on each host", got1, got2)
	}
	for _, vm := range v.VMs {
		if vm.State != lab.VMStateSaved || vm.Host != "h1" {
			t.Errorf("undeploy's view: VM %s %s on %q, want saved on h1", vm.Name, vm.State, vm.Host)
		}
	}
	in.assertSavedHome("after undeploy --save-state")
	if b, err := os.ReadFile(filepath.Join(in.dirs["h1"], st2)); err != nil || !strings.HasPrefix(string(b), "labtest state of ") {
		t.Errorf("vm2's state at home: %q %v; want the one h2 wrote", b, err)
	}

	if _, err := h1.Deployments.Deploy(ctx, "a", spreadOpts); err != nil {
		t.Fatal(err)
	}
	if c := in.config("a"); c.VMs[1].Host != "h2" {
		t.Fatalf("vm2 on %q, want h2 again", c.VMs[1].Host)
	}
	want1, want2 := "resume="+filepath.Base(st1), "resume="+filepath.Base(st2)
	if got1, got2 := in.resumed("h1"), in.resumed("h2"); !slices.Equal(got1, []string{want1}) || !slices.Equal(got2, []string{want2}) {
		t.Errorf("resumed: h1 %q, h2 %q; want %s on h1, %s on h2", got1, got2, want1, want2)
	}
	if exists(in.dirs["h1"], st1) || exists(in.dirs["h1"], st2) {
		t.Errorf("deployed: states left on h1 (vm1 %v, vm2 %v)", exists(in.dirs["h1"], st1), exists(in.dirs["h1"], st2))
	}
	if _, err := h1.Deployments.Undeploy(ctx, "a", false); err != nil {
		t.Fatal(err)
	}
	in.assertGathered("after undeploy")
	for _, h := range []string{"h1", "h2"} {
		if exists(in.dirs[h], st1) || exists(in.dirs[h], st2) {
			t.Errorf("undeployed without saving: a state left on %s", h)
		}
	}
	for _, vm := range in.config("a").VMs {
		if vm.State != store.StateUndeployed {
			t.Errorf("VM %s is %s after an undeploy without saving", vm.Name, vm.State)
		}
	}

	// Saved again, then deployed on one host: its home, with room now.
	if _, err := h1.Deployments.Deploy(ctx, "a", spreadOpts); err != nil {
		t.Fatal(err)
	}
	if _, err := h1.Deployments.Undeploy(ctx, "a", true); err != nil {
		t.Fatal(err)
	}
	in.assertSavedHome("saved again")
	in.setMemory("h1", 4096)
	in.rt["h1"].Calls.Take()
	in.rt["h2"].Calls.Take()
	if v, err := h1.Deployments.Deploy(ctx, "a", lab.DeployOptions{Fenced: true}); err != nil || v.Host != "h1" {
		t.Fatalf("plain deploy: %v on %+v, want h1", err, v)
	}
	if got1, got2 := in.resumed("h1"), in.resumed("h2"); len(got1) != 2 || len(got2) != 0 {
		t.Errorf("plain deploy resumed: h1 %q, h2 %q; want both VMs on h1", got1, got2)
	}
	if _, err := h1.Deployments.Undeploy(ctx, "a", false); err != nil {
		t.Fatal(err)
	}
}

// setMemory sets host name's registered memory.
func (in *installation) setMemory(name string, mib int) {
	in.t.Helper()
	if err := in.db.Update(context.Background(), func(tx store.Tx) error {
		h, err := tx.Hosts().Get(name)
		if err != nil {
			return err
		}
		h.MemoryMiB = mib
		return tx.Hosts().Register(h)
	}); err != nil {
		in.t.Fatal(err)
	}
}

// restartOn starts host name's lab again on its data dir with the same
// fake host (what runs there stays), as a daemon restart does.
func restartOn(t *testing.T, in *installation, name string, rt *labtest.Host) {
	t.Helper()
	jm := jobs.NewManager()
	t.Cleanup(jm.Close)
	o := lab.Options{DataDir: in.dirs[name], Store: in.db, Disks: disk.New(), Jobs: jm, HostName: name, HostLink: in.hosts.Link(name)}
	rt.Use(&o)
	svc, err := lab.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	in.hosts.Serve(name, svc.MoveEndpoints())
	in.labs[name] = svc
}

// TestSpreadEveryStepRollsBack fails each step of a spread deploy in
// turn, on either host (the two share the fault hook, so the steps count
// across both): each failure is reported with nothing left running on
// either host, the configuration undeployed and whole on its home again.
// Then each step of the undeploy of a spread deployment, without and with
// --save-state: a failure leaves it failed, and an undeploy again finishes
// on both hosts (with --save-state: both VMs saved, their states at home,
// including what the failed attempt saved). Then each step of a spread
// deploy that resumes saved VMs: each failure leaves both saved with their
// states at home, and the deploy that passes resumes one on each host.
func TestSpreadEveryStepRollsBack(t *testing.T) {
	requireQemuImg(t)
	f := &faults{}
	ctx := context.Background()
	fresh := func() *installation {
		return spreadHosts(t, newEnv(t).db, filepath.Join(t.TempDir(), "h1"), f.hook, true)
	}
	deployed := func() *installation {
		in := fresh()
		if _, err := in.labs["h1"].Deployments.Deploy(ctx, "a", spreadOpts); err != nil {
			t.Fatal(err)
		}
		return in
	}
	deployOp := func(in *installation) error {
		_, err := in.labs["h1"].Deployments.Deploy(ctx, "a", spreadOpts)
		return err
	}
	failEachStep(t, f, "spread deploy", "deploy", fresh, deployOp,
		func(in *installation, step string, err error) {
			if strings.Contains(err.Error(), "rollback incomplete") {
				t.Errorf("step %s: %v", step, err)
			}
			in.assertGathered("step " + step)
		}, func(in *installation) {})

	for _, save := range []bool{false, true} {
		assert := undeployedAs(save)
		undeployOp := func(in *installation) error {
			_, err := in.labs["h1"].Deployments.Undeploy(ctx, "a", save)
			return err
		}
		failEachStep(t, f, fmt.Sprintf("spread undeploy (save %v)", save), "undeploy", deployed, undeployOp,
			func(in *installation, step string, _ error) {
				if c := in.config("a"); c.State != store.StateFailed {
					t.Errorf("undeploy step %s: a is %s, want failed", step, c.State)
				}
				if err := undeployOp(in); err != nil {
					t.Fatalf("undeploy again after step %s: %v", step, err)
				}
				assert(in, "undeploy again after step "+step)
			}, func(in *installation) { assert(in, "undeploy") })
	}

	saved := func() *installation {
		in := deployed()
		if _, err := in.labs["h1"].Deployments.Undeploy(ctx, "a", true); err != nil {
			t.Fatal(err)
		}
		in.rt["h1"].Calls.Take()
		in.rt["h2"].Calls.Take()
		return in
	}
	failEachStep(t, f, "spread deploy resuming", "deploy", saved, deployOp,
		func(in *installation, step string, err error) {
			if strings.Contains(err.Error(), "rollback incomplete") {
				t.Errorf("step %s: %v", step, err)
			}
			in.assertSavedHome("resuming, step " + step)
		}, func(in *installation) {
			if got1, got2 := in.resumed("h1"), in.resumed("h2"); len(got1) != 1 || len(got2) != 1 {
				t.Errorf("resumed: h1 %q, h2 %q; want one VM on each host", got1, got2)
			}
		})
	// The moves of the deploy that resumes (vm2's top and state to h2).
	failEachStep(t, f, "spread deploy resuming, its moves", "move", saved, deployOp,
		func(in *installation, step string, _ error) { in.assertSavedHome("resuming, move step " + step) },
		func(in *installation) {})
	gatherFailsAtEachStep(t, f, deployed)
}

// gatherFailsAtEachStep fails each step of the move that brings vm2's top
// and saved state home after an undeploy --save-state: the undeploy is
// done all the same, vm2 saved with its top and state still on h2 (none
// left half-pulled on h1), and the next spread deploy gathers it first and
// resumes both VMs.
func gatherFailsAtEachStep(t *testing.T, f *faults, deployed func() *installation) {
	ctx := context.Background()
	for k := 1; ; k++ {
		in := deployed()
		f.arm("move", k)
		_, err := in.labs["h1"].Deployments.Undeploy(ctx, "a", true)
		f.mu.Lock()
		seen, steps := f.seen, f.steps
		f.mu.Unlock()
		f.arm("", 0)
		if err != nil {
			t.Fatalf("undeploy --save-state with gather step %d failed: %v", k, err)
		}
		if seen < k {
			in.assertSavedHome("gather unfailed")
			t.Logf("gather of a saved VM: %d steps, each failure left it on h2: %v", k-1, steps)
			return
		}
		step := steps[k-1]
		c := in.config("a")
		top, st := in.vmTop("vm2"), in.stateOf("vm2")
		if c.State != store.StateUndeployed || c.VMs[1].Host != "h2" || c.VMs[1].State != lab.VMStateSaved {
			t.Errorf("gather failed at %s: a %s, vm2 %s on %q; want undeployed, vm2 saved on h2", step, c.State, c.VMs[1].State, c.VMs[1].Host)
		}
		for _, rel := range []string{top, st} {
			if !exists(in.dirs["h2"], rel) || exists(in.dirs["h1"], rel) {
				t.Errorf("gather failed at %s: %s on h2 %v, on h1 %v; want only on h2", step, rel, exists(in.dirs["h2"], rel), exists(in.dirs["h1"], rel))
			}
		}
		for _, h := range []string{"h1", "h2"} {
			// vm2's state is on h2 with its top: missing on neither.
			r, err := in.labs[h].Doctor(ctx, false)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range r.Problems {
				t.Errorf("gather failed at %s: doctor on %s: %s %s: %s", step, h, p.Kind, p.Subject, p.Detail)
			}
		}
		in.rt["h1"].Calls.Take()
		in.rt["h2"].Calls.Take()
		if _, err := in.labs["h1"].Deployments.Deploy(ctx, "a", spreadOpts); err != nil {
			t.Fatalf("deploy after the gather failed at %s: %v", step, err)
		}
		if got1, got2 := in.resumed("h1"), in.resumed("h2"); len(got1) != 1 || len(got2) != 1 {
			t.Errorf("deploy after the gather failed at %s resumed: h1 %q, h2 %q; want one VM on each host", step, got1, got2)
		}
	}
}

// undeployedAs checks how an undeploy of "a" (saving or not) ends.
func undeployedAs(save bool) func(in *installation, what string) {
	if save {
		return (*installation).assertSavedHome
	}
	return (*installation).assertGathered
}

// failEachStep fails, for k = 1, 2, …, the k-th step of kind (the fault
// hook's operation) of op on a fresh installation from setup, until op
// passes every step: each failure must be the injected one, and failed
// checks what it left; done checks the run that passed.
func failEachStep(t *testing.T, f *faults, name, kind string, setup func() *installation, op func(*installation) error,
	failed func(in *installation, step string, err error), done func(*installation)) {
	t.Helper()
	for k := 1; ; k++ {
		f.arm("", 0)
		in := setup()
		f.arm(kind, k)
		err := op(in)
		f.mu.Lock()
		seen, steps := f.seen, f.steps
		f.mu.Unlock()
		f.arm("", 0)
		if seen < k {
			if err != nil {
				t.Fatalf("%s, unfailed: %v", name, err)
			}
			done(in)
			t.Logf("%s: %d steps, each failure rolled back: %v", name, k-1, steps)
			return
		}
		if err == nil || !strings.Contains(err.Error(), errInjected.Error()) {
			t.Fatalf("%s, step %d (%s): %v, want the injected failure", name, k, steps[k-1], err)
		}
		failed(in, steps[k-1], err)
	}
}

// spreadAcross is TestEveryStepRollsBack's spread deploy: e's
// configuration "a" deployed --fenced --spread from e's data dir (h1,
// room for one VM) onto h1 and h2, both with e's fault hook; one that
// succeeds is undeployed (which gathers it back) without faults.
func spreadAcross(e *env) error {
	t := e.t.(*testing.T)
	in := spreadHosts(t, e.db, e.dir, e.opts.FailAt, false)
	_, err := in.labs["h1"].Deployments.Deploy(context.Background(), "a", spreadOpts)
	if err != nil {
		in.assertGathered("failed spread deploy")
		return err
	}
	if c := in.config("a"); c.VMs[1].Host != "h2" {
		t.Errorf("vm2 on %q, want h2", c.VMs[1].Host)
	}
	if _, err := in.labs["h1"].Deployments.Undeploy(context.Background(), "a", false); err != nil {
		t.Fatalf("undeploy: %v", err)
	}
	return nil
}

// TestConcurrentSpreadDeploysDoNotOvercommit: a deploy that takes h2's
// room between a spread deploy's placement (vm2 on h2) and its commit
// makes the spread deploy refused, naming the VM and the host, instead of
// overcommitting h2; "a" is undeployed and whole on its home again.
func TestConcurrentSpreadDeploysDoNotOvercommit(t *testing.T) {
	requireQemuImg(t)
	e := newEnv(t)
	ctx := context.Background()
	var raced atomic.Bool
	var racer error
	var in *installation
	in = spreadHosts(t, e.db, filepath.Join(t.TempDir(), "h1"), func(op, step string) error {
		if op == "deploy" && step == "spread-placed" && raced.CompareAndSwap(false, true) {
			_, racer = in.labs["h1"].Deployments.Deploy(ctx, "b", lab.DeployOptions{Host: "h2"})
		}
		return nil
	}, true)
	h1 := in.labs["h1"]
	in.create(h1, "b")
	if err := e.db.Update(ctx, func(tx store.Tx) error { // h2 as small as h1: one 256 MiB VM fits
		h, err := tx.Hosts().Get("h2")
		if err != nil {
			return err
		}
		h.MemoryMiB = 400
		return tx.Hosts().Register(h)
	}); err != nil {
		t.Fatal(err)
	}

	_, err := h1.Deployments.Deploy(ctx, "a", spreadOpts)
	if racer != nil {
		t.Fatalf("the deploy of b between a's placement and its commit: %v", racer)
	}
	if !raced.Load() {
		t.Fatal("the spread deploy never reached its placed step")
	}
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), `VM "vm2": host "h2" no longer has room`) ||
		!strings.Contains(err.Error(), "needs 256 MiB of memory, 144 free") {
		t.Fatalf("spread deploy of a after b took h2's room: %v; want unavailable naming vm2, h2 and 144 MiB free", err)
	}
	if b := in.config("b"); b.State != store.StateDeployed || b.Host != "h2" {
		t.Errorf("b is %s on %q, want deployed on h2", b.State, b.Host)
	}
	if _, err := in.labs["h2"].Deployments.Undeploy(ctx, "b", false); err != nil {
		t.Fatal(err)
	}
	in.assertGathered("after the refused spread deploy")
}

// TestSpreadSaveStateSurvivesHomeRestart: the home's daemon dies in an
// undeploy --save-state of a spread deployment after both hosts saved
// their VMs (at its release step); the new daemon finishes it towards
// undeployed keeping both states (vm1's on h1, vm2's on h2 with its top),
// and the next spread deploy gathers vm2 first, then moves it back and
// resumes both.
func TestSpreadSaveStateSurvivesHomeRestart(t *testing.T) {
	requireQemuImg(t)
	e := newEnv(t)
	ctx := context.Background()
	reached, release := make(chan struct{}, 1), make(chan struct{})
	var armed atomic.Bool
	hook := func(op, step string) error {
		if op == "undeploy" && step == "release" && armed.CompareAndSwap(true, false) {
			reached <- struct{}{}
			<-release // the daemon "dies" here
			return errInjected
		}
		return nil
	}
	in := spreadHosts(t, e.db, filepath.Join(t.TempDir(), "h1"), hook, true)
	if _, err := in.labs["h1"].Deployments.Deploy(ctx, "a", spreadOpts); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	done := make(chan error, 1)
	go func() {
		_, err := in.labs["h1"].Deployments.Undeploy(ctx, "a", true)
		done <- err
	}()
	select {
	case <-reached:
	case err := <-done:
		t.Fatalf("the undeploy ended before its release step: %v", err)
	}
	// The first daemon is dead in real life; here it wakes up at the
	// end and fails, after the checks.
	t.Cleanup(func() { close(release); <-done })
	rt1 := in.rt["h1"]
	rt1.Restart()
	restartOn(t, in, "h1", rt1)

	c := in.config("a")
	if c.State != store.StateUndeployed || c.VMs[1].Host != "h2" {
		t.Fatalf("after the restart: a is %s, vm2 on %q; want undeployed, vm2 still on h2", c.State, c.VMs[1].Host)
	}
	st1, st2 := in.stateOf("vm1"), in.stateOf("vm2")
	for _, vm := range c.VMs {
		if vm.State != lab.VMStateSaved {
			t.Errorf("after the restart: VM %s is %s, want saved", vm.Name, vm.State)
		}
	}
	if !exists(in.dirs["h1"], st1) || !exists(in.dirs["h2"], st2) {
		t.Errorf("after the restart: vm1's state on h1 %v, vm2's on h2 %v; want both kept", exists(in.dirs["h1"], st1), exists(in.dirs["h2"], st2))
	}
	for _, h := range []string{"h1", "h2"} {
		if left := in.rt[h].Leftovers(); len(left) > 0 {
			t.Errorf("after the restart: left on %s: %q", h, left)
		}
	}
	in.rt["h1"].Calls.Take()
	in.rt["h2"].Calls.Take()
	if _, err := in.labs["h1"].Deployments.Deploy(ctx, "a", spreadOpts); err != nil {
		t.Fatal(err)
	}
	want1, want2 := "resume="+filepath.Base(st1), "resume="+filepath.Base(st2)
	if got1, got2 := in.resumed("h1"), in.resumed("h2"); !slices.Equal(got1, []string{want1}) || !slices.Equal(got2, []string{want2}) {
		t.Errorf("resumed: h1 %q, h2 %q; want %s on h1, %s on h2", got1, got2, want1, want2)
	}
	if _, err := in.labs["h1"].Deployments.Undeploy(ctx, "a", false); err != nil {
		t.Fatal(err)
	}
	in.assertGathered("after the undeploy")
}

// TestSpreadLeaseExpirySavesState: the lease reaper undeploys an expired
// spread deployment saving its state (the default undeploy action of a
// lease, and the ladder's suspend step): both VMs saved, their states at
// home with the tops, the configuration undeployed and whole on h1.
func TestSpreadLeaseExpirySavesState(t *testing.T) {
	requireQemuImg(t)
	for _, tc := range []struct{ name, ladder, action string }{
		{"lease", "", lab.ReapUndeploy},
		{"ladder-suspend", "suspend,undeploy=1d", lease.ReapSuspend},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newClock()
			var ladder lease.Ladder
			if tc.ladder != "" {
				var err error
				if ladder, err = lease.ParseLadder(tc.ladder); err != nil {
					t.Fatal(err)
				}
			}
			in := spreadHostsWith(t, newEnv(t).db, filepath.Join(t.TempDir(), "h1"), func(o *lab.Options) {
				o.Now = clock.Now
				o.Leases = lab.LeasePolicy{Ladder: ladder}
			}, true)
			h1 := in.labs["h1"]
			ctx := context.Background()
			hour := time.Hour
			opts := spreadOpts
			opts.DeployLease = &hour
			if _, err := h1.Deployments.Deploy(ctx, "a", opts); err != nil {
				t.Fatal(err)
			}
			clock.Advance(2 * hour)
			as, err := h1.Leases.Reap(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := actions(as); got != tc.action+":a" {
				t.Fatalf("reaper did %q, want %s:a without an error", got, tc.action)
			}
			in.assertSavedHome("after the reaper")
		})
	}
}
