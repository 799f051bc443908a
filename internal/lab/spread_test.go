package lab_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"stagehand/internal/disk"
	"stagehand/internal/errdefs"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/labtest"
	"stagehand/internal/store"
)

// spreadHosts makes h1 (400 MiB: one 256 MiB VM fits) and h2 (4 GiB)
// with underlay addresses, h1 on dir with failAt, the template "base" and
// network "lan" unless e already has them, and configuration "a" (vm1,
// vm2 on lan) on h1.
func spreadHosts(t *testing.T, db store.Store, dir string, failAt func(op, step string) error, fresh bool) *installation {
	t.Helper()
	in := newInstallation(t, db)
	h1 := in.host("h1", dir, 400, failAt)
	in.host("h2", filepath.Join(t.TempDir(), "h2"), 4096, failAt)
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

	// A VM action on the VM of the other host is refused, naming it.
	if _, err := h1.Deployments.VMAction(ctx, "a", "vm2", lab.VMActionReset); !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), `"h2"`) {
		t.Errorf("reset of vm2 through h1: %v", err)
	}
	// Save-state is refused for a spread deployment.
	if _, err := h1.Deployments.Undeploy(ctx, "a", true); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("undeploy --save-state: %v, want conflict", err)
	}

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
// Then each step of the undeploy of a spread deployment: a failure leaves
// it failed, and an undeploy again finishes on both hosts.
func TestSpreadEveryStepRollsBack(t *testing.T) {
	requireQemuImg(t)
	f := &faults{}
	for k := 1; ; k++ {
		e := newEnv(t)
		in := spreadHosts(t, e.db, filepath.Join(t.TempDir(), "h1"), f.hook, true)
		f.arm("deploy", k)
		_, err := in.labs["h1"].Deployments.Deploy(context.Background(), "a", spreadOpts)
		f.mu.Lock()
		seen, steps := f.seen, f.steps
		f.mu.Unlock()
		if seen < k {
			if err != nil {
				t.Fatalf("unfailed deploy: %v", err)
			}
			t.Logf("spread deploy: %d steps, each failure rolled back: %v", k-1, steps)
			break
		}
		if err == nil || !strings.Contains(err.Error(), errInjected.Error()) {
			t.Fatalf("step %d (%s): %v, want the injected failure", k, steps[k-1], err)
		}
		if strings.Contains(err.Error(), "rollback incomplete") {
			t.Errorf("step %d (%s): %v", k, steps[k-1], err)
		}
		in.assertGathered("step " + steps[k-1])
	}
	for k := 1; ; k++ {
		e := newEnv(t)
		in := spreadHosts(t, e.db, filepath.Join(t.TempDir(), "h1"), f.hook, true)
		h1 := in.labs["h1"]
		f.arm("", 0)
		if _, err := h1.Deployments.Deploy(context.Background(), "a", spreadOpts); err != nil {
			t.Fatal(err)
		}
		f.arm("undeploy", k)
		_, err := h1.Deployments.Undeploy(context.Background(), "a", false)
		f.mu.Lock()
		seen, steps := f.seen, f.steps
		f.mu.Unlock()
		if seen < k {
			if err != nil {
				t.Fatalf("unfailed undeploy: %v", err)
			}
			in.assertGathered("undeploy")
			t.Logf("spread undeploy: %d steps: %v", k-1, steps)
			return
		}
		if err == nil || !strings.Contains(err.Error(), errInjected.Error()) {
			t.Fatalf("undeploy step %d (%s): %v, want the injected failure", k, steps[k-1], err)
		}
		f.arm("", 0)
		if _, err := h1.Deployments.Undeploy(context.Background(), "a", false); err != nil {
			t.Fatalf("undeploy again after step %d (%s): %v", k, steps[k-1], err)
		}
		in.assertGathered("undeploy again after step " + steps[k-1])
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
