package lab_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
	"stagehand/internal/store"
)

// cloneChain makes FIRST-1..FIRST-N, each a linked clone of the one
// before, writing first into the source's top pattern i at i*4k, where i
// is the source's depth less one (so every clone freezes a layer, a chain
// D deep reads patterns 1..D-2, and a configuration made from one
// template is 2 deep), and returns the names, first included.
func (e *env) cloneChain(first string, n int) []string {
	e.t.Helper()
	names := []string{first}
	for k := 1; k <= n; k++ {
		prev := names[len(names)-1]
		i := len(chainOf(e.get(prev), "vm1")) - 1
		qemuIO(e.t, top(e.get(prev), "vm1"), fmt.Sprintf("write -P %d %dk 4k", i, i*4))
		name := fmt.Sprintf("%s-%d", first, k)
		e.linked(prev, name)
		names = append(names, name)
	}
	return names
}

// verifyChainData checks that config's vm1 reads every write cloneChain
// made before it (i = 1..upto) and the template's pattern below.
func (e *env) verifyChainData(config string, upto int) {
	e.t.Helper()
	p := top(e.get(config), "vm1")
	for i := 1; i <= upto; i++ {
		qemuIO(e.t, p, fmt.Sprintf("read -P %d %dk 4k", i, i*4))
	}
	qemuIO(e.t, p, "read -P 0xaa 512k 4k")
}

// shortcutLayers returns the recorded shortcut layers.
func (e *env) shortcutLayers() []store.Layer {
	e.t.Helper()
	var out []store.Layer
	if err := e.db.View(context.Background(), func(tx store.Tx) error {
		ls, err := tx.Layers().List()
		for _, l := range ls {
			if l.ShortcutOf != 0 {
				out = append(out, l)
			}
		}
		return err
	}); err != nil {
		e.t.Fatal(err)
	}
	return out
}

func shortcutEnv(t *testing.T, opts ...envOpt) *env {
	t.Helper()
	e := newEnv(t, opts...)
	e.template("base")
	e.network("lan", "10.2.0.0/24", "10.2.0.10-10.2.0.30")
	e.config("c", lab.VMSpec{Name: "vm1", Template: "base", Network: "lan"})
	return e
}

// TestShortcutThresholdTriggers: the daemon's round leaves chains at or
// under the depth alone; one clone more and the deep chain reads through
// one shortcut (top, shortcut, base) with every byte as before, the
// shortcut records the run it stands for, disk chain shows it, and the
// run's top, which nothing refers to any more, is released while the
// rest of the run (other clones' chains) stays.
func TestShortcutThresholdTriggers(t *testing.T) {
	e := shortcutEnv(t, func(o *lab.Options) { o.ShortcutDepth = 6 })
	ctx := context.Background()
	names := e.cloneChain("c", 4) // c-4's chain: 6 deep
	e.svc.Shortcuts.Round(ctx)
	if sc := e.shortcutLayers(); len(sc) != 0 {
		t.Fatalf("a round at depth 6 built %d shortcut(s) for chains of at most 6", len(sc))
	}
	names = append(names, e.cloneChain("c-4", 1)[1:]...) // c-4-1: 7 deep
	deep := names[len(names)-1]
	before := chainOf(e.get(deep), "vm1")
	if len(before) != 7 {
		t.Fatalf("chain of %s: %d layers, want 7", deep, len(before))
	}
	e.svc.Shortcuts.Round(ctx)
	after := chainOf(e.get(deep), "vm1")
	if len(after) != 3 || after[2] != before[6] || after[0] != before[0] {
		t.Fatalf("after the round %s reads through %d layers %v; want its top, a shortcut and the base", deep, len(after), after)
	}
	e.verifyChainData(deep, 5)
	sc := e.shortcutLayers()
	if len(sc) != 1 || sc[0].ShortcutLayers != 5 || !sc[0].Frozen || sc[0].SHA256 == "" {
		t.Fatalf("shortcut records %+v; want one frozen, hashed, standing for 5 layers", sc)
	}
	ls, err := e.svc.Configs.DiskChain(ctx, deep, "vm1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if ls[1].Shortcut == nil || ls[1].Shortcut.Layers != 5 || ls[1].Shortcut.RunBottom != before[5] || !strings.Contains(ls[1].Shortcut.RunTop, "released") {
		t.Errorf("disk chain's shortcut %+v; want 5 layers from %s, the run's top released", ls[1].Shortcut, before[5])
	}
	// The run's top was read only by c-4 (its new top) and c-4-1: both
	// moved, so it is gone; the layer below still serves c-3.
	if _, err := os.Stat(before[1]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run top %s: %v; want it released", before[1], err)
	}
	if _, err := os.Stat(before[2]); err != nil {
		t.Errorf("layer %s under the run top, still in c-3's chain: %v", before[2], err)
	}
	e.verifyChainData("c-4", 5)
	e.verifyChainData("c-3", 4)
	e.assertConsistent()
	// Nothing more to do: a second round changes nothing.
	snap := e.snapshot()
	e.svc.Shortcuts.Round(ctx)
	if got := e.snapshot(); got != snap {
		t.Errorf("a second round changed the state:\nbefore %s\nafter  %s", snap, got)
	}
}

// TestShortcutSharedByTwoClones: two clones on one frozen layer (and the
// source's own top on it) are all moved onto one shortcut, built once; a
// pass over the second clone builds nothing more.
func TestShortcutSharedByTwoClones(t *testing.T) {
	e := shortcutEnv(t)
	ctx := context.Background()
	names := e.cloneChain("c", 11)
	last := names[len(names)-1]
	e.linked(names[len(names)-2], "twin") // on the same frozen layer as last
	rep, err := e.svc.Shortcuts.Pass(ctx, last, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Built) != 1 || len(rep.Rebased) != 3 {
		t.Fatalf("pass report %+v; want one shortcut and three layers rebased (two clones and the source's top)", rep)
	}
	for _, n := range []string{last, "twin", names[len(names)-2]} {
		if c := chainOf(e.get(n), "vm1"); len(c) != 3 || c[1] != rep.Built[0].Path {
			t.Errorf("%s reads through %v; want the shortcut %s", n, c, rep.Built[0].Path)
		}
	}
	e.verifyChainData("twin", 11)
	rep, err = e.svc.Shortcuts.Pass(ctx, "twin", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Built) != 0 || len(e.shortcutLayers()) != 1 {
		t.Errorf("a pass over the twin built %d shortcut(s), %d recorded; want none more", len(rep.Built), len(e.shortcutLayers()))
	}
	e.assertConsistent()
}

// TestShortcutChainLimitCountsLogicalDepth: after a shortcut the disk
// reads through 3 layers, but a clone is still refused where the clone
// history would pass the limit.
func TestShortcutChainLimitCountsLogicalDepth(t *testing.T) {
	e := shortcutEnv(t, func(o *lab.Options) { o.ChainLimit, o.ShortcutDepth = 9, 5 })
	ctx := context.Background()
	names := e.cloneChain("c", 6) // 8 deep
	last := names[len(names)-1]
	if _, err := e.svc.Shortcuts.Pass(ctx, last, ""); err != nil {
		t.Fatal(err)
	}
	if c := chainOf(e.get(last), "vm1"); len(c) != 3 {
		t.Fatalf("%s reads through %d layers, want 3", last, len(c))
	}
	qemuIO(t, top(e.get(last), "vm1"), "write -P 7 28k 4k")
	e.linked(last, "d9") // 9 deep in history: at the limit
	qemuIO(t, top(e.get("d9"), "vm1"), "write -P 8 32k 4k")
	_, err := e.svc.Configs.LinkedClone(ctx, "d9", "d10", lab.CreateOptions{})
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "over the limit of 9") {
		t.Fatalf("clone 10 deep in history (4 read): %v; want the chain limit's conflict", err)
	}
	e.verifyChainData("d9", 8)
	e.assertConsistent()
}

// TestShortcutReleasesRunOnlyWhenUnreferenced: a frozen child of the run
// top that a running VM reads is switched live and keeps its header (and
// so the run); the run is released by the first pass after the undeploy,
// which rewrites that child's header. A writable top of a running VM is
// switched live with its header.
func TestShortcutReleasesRunOnlyWhenUnreferenced(t *testing.T) {
	e, host := deployEnv(t, nil)
	ctx := context.Background()
	e.config("c", lab.VMSpec{Name: "vm1", Template: "base", Network: "lan"})
	names := e.cloneChain("c", 10)
	src, last := names[len(names)-2], names[len(names)-1]
	runTop := chainOf(e.get(last), "vm1")[1]
	// The source's top gets a snapshot: a frozen child of the run top,
	// read by the source's VM once deployed.
	qemuIO(t, top(e.get(src), "vm1"), "write -P 77 900k 4k")
	if _, err := e.svc.Snapshots.Create(ctx, src, "s1", false); err != nil {
		t.Fatal(err)
	}
	frozenChild := chainOf(e.get(src), "vm1")[1]
	if _, err := e.svc.Deployments.Deploy(ctx, src, lab.DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Deployments.Deploy(ctx, last, lab.DeployOptions{Fenced: true}); err != nil {
		t.Fatal(err)
	}
	host.Calls.Take()
	rep, err := e.svc.Shortcuts.Pass(ctx, last, "")
	if err != nil {
		t.Fatal(err)
	}
	calls := host.Calls.Take()
	switches := slices.DeleteFunc(slices.Clone(calls), func(c string) bool { return !strings.Contains(c, "switch-backing") })
	if len(rep.Built) != 1 || len(switches) != 2 || len(rep.Switched) != 2 {
		t.Fatalf("pass over a deployed chain: report %+v, calls %q; want one shortcut and two live switches", rep, calls)
	}
	if c := chainOf(e.get(last), "vm1"); len(c) != 3 {
		t.Errorf("running %s's top names %v; want it moved onto the shortcut", last, c)
	}
	if c := chainOf(e.get(src), "vm1"); c[2] != runTop {
		t.Errorf("%s's frozen layer names %s; want the run top %s kept while a VM reads it", src, c[2], runTop)
	}
	if _, err := os.Stat(runTop); err != nil {
		t.Fatalf("run top released while a running VM's frozen layer names it: %v", err)
	}
	e.assertConsistent()
	// Passes while it runs change nothing (the VM reads through the
	// shortcut already).
	if rep, err := e.svc.Shortcuts.Pass(ctx, src, ""); err != nil || len(rep.Rebased)+len(rep.Switched)+len(rep.Built) != 0 {
		t.Errorf("pass over the running source: %+v, %v; want nothing done", rep, err)
	}
	if _, err := e.svc.Deployments.Undeploy(ctx, src, false); err != nil {
		t.Fatal(err)
	}
	rep, err = e.svc.Shortcuts.Pass(ctx, src, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rebased) != 1 || rep.Rebased[0] != frozenChild || len(rep.Released) == 0 {
		t.Errorf("pass after the undeploy: %+v; want the frozen child rebased and the run top released", rep)
	}
	if _, err := os.Stat(runTop); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run top after the undeploy: %v; want it released", err)
	}
	qemuIO(t, top(e.get(src), "vm1"), "read -P 77 900k 4k")
	e.verifyChainData(src, 10)
	e.assertConsistent()
}

// TestShortcutEveryStepRollsBack: a failure at each step of building a
// shortcut leaves the state exactly as before and the doctor clean; a
// failure while moving the children (after the shortcut is recorded) is
// rolled forward by the next pass.
func TestShortcutEveryStepRollsBack(t *testing.T) {
	setup := func(e *env) {
		e.template("base")
		e.network("lan", "10.2.0.0/24", "10.2.0.10-10.2.0.30")
		e.config("c", lab.VMSpec{Name: "vm1", Template: "base", Network: "lan"})
		e.cloneChain("c", 9) // 11 deep: over the default depth
		e.linked("c-8", "twin")
	}
	run := func(e *env) error {
		_, err := e.svc.Shortcuts.Pass(context.Background(), "c-9", "")
		return err
	}
	rollsBackAtEveryStep(t, "shortcut", setup, run, (*env).snapshot)

	// The moves: each failure is reported, and a pass without the fault
	// ends where an unfailed pass ends.
	want := func() string {
		e := newEnv(t)
		setup(e)
		if err := run(e); err != nil {
			t.Fatal(err)
		}
		return e.layerShape()
	}()
	f := &faults{}
	for k := 1; ; k++ {
		e := newEnv(t, func(o *lab.Options) { o.FailAt = f.hook })
		setup(e)
		f.arm("shortcut-rebase", k)
		err := run(e)
		f.mu.Lock()
		seen, steps := f.seen, f.steps
		f.mu.Unlock()
		if seen < k {
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("shortcut-rebase: %d steps, each failure rolled forward: %v", k-1, steps)
			break
		}
		if err == nil || !strings.Contains(err.Error(), errInjected.Error()) {
			t.Fatalf("step %d (%s): error %v, want the injected failure", k, steps[k-1], err)
		}
		f.arm("", 0)
		if err := run(e); err != nil {
			t.Fatalf("pass after the failure at step %d (%s): %v", k, steps[k-1], err)
		}
		if got := e.layerShape(); got != want {
			t.Errorf("after a failure at step %d (%s) and a pass: %s; want %s", k, steps[k-1], got, want)
		}
		e.verifyChainData("twin", 9)
		e.verifyChainData("c-9", 9)
		e.assertConsistent()
	}
}

// layerShape describes the layer records by what they are, not their
// random names: each configuration's chain as kinds and depths.
func (e *env) layerShape() string {
	e.t.Helper()
	var b strings.Builder
	cs, err := e.svc.Configs.List(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	for _, c := range cs {
		ls, err := e.svc.Configs.DiskChain(context.Background(), c.Name, "vm1", 0)
		if err != nil {
			e.t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:", c.Name)
		for _, l := range ls {
			switch {
			case l.Shortcut != nil:
				fmt.Fprintf(&b, " shortcut(%d)", l.Shortcut.Layers)
			case l.Frozen:
				b.WriteString(" frozen")
			default:
				b.WriteString(" top")
			}
		}
		b.WriteString("; ")
	}
	fmt.Fprintf(&b, "shortcuts %d", len(e.shortcutLayers()))
	return b.String()
}

// TestDoctorChecksShortcuts: the doctor finds a shortcut record whose run
// does not match (another depth), and a shortcut file whose backing name
// is not the run's parent; a correct shortcut passes.
func TestDoctorChecksShortcuts(t *testing.T) {
	e := shortcutEnv(t)
	ctx := context.Background()
	e.cloneChain("c", 9)
	rep, err := e.svc.Shortcuts.Pass(ctx, "c-9", "")
	if err != nil || len(rep.Built) != 1 {
		t.Fatalf("pass: %+v, %v", rep, err)
	}
	e.assertConsistent()
	ls, err := e.svc.Configs.DiskChain(ctx, "c-7", "vm1", 0)
	if err != nil {
		t.Fatal(err)
	}
	runTop, bottom, base := ls[1], ls[len(ls)-2], ls[len(ls)-1]
	bogus := "layers/l-bogus.qcow2"
	data, err := os.ReadFile(rep.Built[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.dir+"/"+bogus, data, 0o400); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Update(ctx, func(tx store.Tx) error {
		return tx.Layers().Create(&store.Layer{Path: bogus, ParentID: base.ID, Frozen: true, VirtualSize: runTop.VirtualSize,
			ShortcutOf: runTop.ID, ShortcutBottom: bottom.ID, ShortcutLayers: 3})
	}); err != nil {
		t.Fatal(err)
	}
	// The real shortcut's header made to name another layer.
	if out, err := exec.Command("qemu-img", "rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b", bottom.Path, rep.Built[0].Path).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img rebase: %v: %s", err, out)
	}
	r, err := e.svc.Doctor(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, p := range r.Problems {
		kinds = append(kinds, p.Kind+" "+p.Subject+": "+p.Detail)
	}
	got := strings.Join(kinds, "\n")
	for _, want := range []string{
		"shortcut-mismatch " + e.dir + "/" + bogus + ": stands for 3 layers, its run is 8 deep",
		"wrong-backing " + rep.Built[0].Path,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("doctor found:\n%s\nwant a finding %q", got, want)
		}
	}
}

// TestCleanupCountsShortcutBytes: the space a configuration frees counts
// a shortcut that only its disk still reads (the shortcut's file), and
// not the run below, which other clones read.
func TestCleanupCountsShortcutBytes(t *testing.T) {
	e := shortcutEnv(t)
	ctx := context.Background()
	e.cloneChain("c", 9)
	rep, err := e.svc.Shortcuts.Pass(ctx, "c-9", "")
	if err != nil || len(rep.Built) != 1 {
		t.Fatalf("pass: %+v, %v", rep, err)
	}
	if err := e.svc.Configs.Delete(ctx, "c-8"); err != nil {
		t.Fatal(err)
	}
	sp, err := e.svc.Leases.Space(ctx, "c-9")
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	var shortcutBytes int64
	for _, l := range sp.Layers {
		paths = append(paths, l.Path)
		if l.Path == rep.Built[0].Path {
			shortcutBytes = l.Bytes
		}
	}
	if len(sp.Layers) != 2 || shortcutBytes <= 0 || sp.Frees < shortcutBytes {
		t.Errorf("deleting c-9 frees %d bytes in %q; want its top and the shortcut %s (with its bytes)", sp.Frees, paths, rep.Built[0].Path)
	}
}
