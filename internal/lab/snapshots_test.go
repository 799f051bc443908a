package lab_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
)

func (e *env) snap(config, name string) *lab.SnapshotView {
	e.t.Helper()
	v, err := e.svc.Snapshots.Create(context.Background(), config, name, false)
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

func (e *env) revert(config, name string) *lab.ConfigView {
	e.t.Helper()
	v, err := e.svc.Snapshots.Revert(context.Background(), config, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

func (e *env) snapList(config string) map[string]lab.SnapshotView {
	e.t.Helper()
	vs, err := e.svc.Snapshots.List(context.Background(), config)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]lab.SnapshotView{}
	for _, v := range vs {
		out[v.Name] = v
	}
	return out
}

// TestSnapshotTree builds a tree s1 → {s2, s3} with different data at each
// point, and checks: each snapshot freezes the top and gives a fresh
// delta; revert and clone-from-snapshot read each point's data; the tree
// (parents, depths, current) is drawn right; the snapshot's layers stay
// while it exists; deleting one frees exactly its exclusive bytes and no
// chain breaks; deleting the configuration releases every layer.
func TestSnapshotTree(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.template("base")
	e.network("lan", "10.2.0.0/24", "10.2.0.10-10.2.0.30")
	e.config("a", lab.VMSpec{Name: "vm1", Template: "base", Network: "lan"}, lab.VMSpec{Name: "vm2", Template: "base", Network: "lan"})

	write := func(p string) { qemuIO(t, top(e.get("a"), "vm1"), "write -P "+p+" 0 64k") }
	write("1")
	top1 := top(e.get("a"), "vm1")
	s1 := e.snap("a", "s1")
	if !isReadOnly(t, top1) || top(e.get("a"), "vm1") == top1 || chainOf(e.get("a"), "vm1")[1] != top1 {
		t.Fatalf("snapshot s1: old top %s read-only %v, new chain %v: want the old top frozen under a fresh delta", top1, isReadOnly(t, top1), chainOf(e.get("a"), "vm1"))
	}
	if len(s1.Layers) != 2 || s1.Parent != "" || !s1.Current {
		t.Fatalf("s1 = %+v; want 2 layers, a root, current", s1)
	}
	write("2")
	e.snap("a", "s2")
	e.revert("a", "s1")
	verifyPattern(t, top(e.get("a"), "vm1"), 0, 65536, 1)
	write("3")
	e.snap("a", "s3")

	got := e.snapList("a")
	if got["s2"].Parent != "s1" || got["s3"].Parent != "s1" || got["s2"].Depth != 1 || !got["s3"].Current || got["s1"].Current {
		t.Errorf("tree = %+v; want s2 and s3 children of s1 at depth 1, s3 current", got)
	}
	if _, err := e.svc.Snapshots.Create(ctx, "a", "s3", false); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("second snapshot s3: %v, want a conflict", err)
	}

	for _, c := range []struct {
		name    string
		pattern byte
	}{{"s2", 2}, {"s1", 1}, {"s3", 3}} {
		e.revert("a", c.name)
		verifyPattern(t, top(e.get("a"), "vm1"), 0, 65536, c.pattern)
		clone, err := e.svc.Configs.CloneFromSnapshot(ctx, "a", c.name, "from-"+c.name, lab.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		verifyPattern(t, top(clone, "vm1"), 0, 65536, c.pattern)
		// disk chain names the snapshot each layer belongs to.
		for _, cc := range []struct{ config, want string }{{"a", c.name}, {"from-" + c.name, "a@" + c.name}} {
			chain, err := e.svc.Configs.DiskChain(ctx, cc.config, "vm1", 0)
			if err != nil {
				t.Fatal(err)
			}
			if chain[0].Snapshot != "" || chain[1].Snapshot != cc.want {
				t.Errorf("disk chain of %s after revert/clone at %s: snapshots %q, %q; want \"\", %q", cc.config, c.name, chain[0].Snapshot, chain[1].Snapshot, cc.want)
			}
		}
	}
	e.assertConsistent()

	// Current is s3 now: s2's layer holds data nothing but s2 (and its
	// clone) uses. Delete the clone, then s2's exclusive bytes are what
	// its delete frees.
	if err := e.svc.Configs.Delete(ctx, "from-s2"); err != nil {
		t.Fatal(err)
	}
	got = e.snapList("a")
	if got["s1"].ExclusiveBytes != 0 {
		t.Errorf("s1 holds %d exclusive bytes; want 0 (s2, s3 and clones build on it)", got["s1"].ExclusiveBytes)
	}
	s2 := got["s2"]
	if s2.ExclusiveBytes <= 0 {
		t.Fatalf("s2 holds %d exclusive bytes; want its data", s2.ExclusiveBytes)
	}
	var s2Files []string
	for _, l := range s2.Layers {
		s2Files = append(s2Files, l.Path)
	}
	before := map[string]bool{}
	for _, f := range dataFiles(t, e.dir) {
		before[f] = true
	}
	if err := e.svc.Snapshots.Delete(ctx, "a", "s2"); err != nil {
		t.Fatal(err)
	}
	for _, f := range s2Files {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("s2's layer %s is still there after its delete (%v)", f, err)
		}
	}
	after := len(dataFiles(t, e.dir))
	if len(before)-after != len(s2Files) {
		t.Errorf("deleting s2 removed %d files; want its %d layers", len(before)-after, len(s2Files))
	}
	// s1 has children (s3, clones): deleting it frees nothing, every
	// chain still reads.
	if err := e.svc.Snapshots.Delete(ctx, "a", "s1"); err != nil {
		t.Fatal(err)
	}
	if n := len(dataFiles(t, e.dir)); n != after {
		t.Errorf("deleting s1 removed %d files; want none (others build on its layers)", after-n)
	}
	got = e.snapList("a")
	if got["s3"].Parent != "" || len(got) != 1 {
		t.Errorf("after deletes: %+v; want only s3, now a root", got)
	}
	verifyPattern(t, top(e.get("from-s1"), "vm1"), 0, 65536, 1)
	verifyPattern(t, top(e.get("a"), "vm1"), 0, 65536, 3)
	e.assertConsistent()

	for _, c := range []string{"a", "from-s1", "from-s3"} {
		if err := e.svc.Configs.Delete(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	e.assertConsistent()
	if fs := dataFiles(t, e.dir); len(fs) != 1 || !strings.HasPrefix(fs[0], "layers"+string(filepath.Separator)) {
		t.Errorf("after deleting every configuration: files %v; want only the template's base", fs)
	}
}

// TestSnapshotChainLimit: a snapshot deepens each chain by one and is
// refused past the chain limit; deleting a snapshot does not shorten a
// chain, a consolidate does.
func TestSnapshotChainLimit(t *testing.T) {
	e := newEnv(t, func(o *lab.Options) { o.ChainLimit = 3 })
	e.template("base")
	e.network("lan", "10.2.0.0/24", "10.2.0.10-10.2.0.30")
	e.config("a", lab.VMSpec{Name: "vm1", Template: "base", Network: "lan"})
	e.snap("a", "one") // base, frozen top, new top: 3
	_, err := e.svc.Snapshots.Create(context.Background(), "a", "two", false)
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "limit of 3") {
		t.Fatalf("snapshot past the limit: %v; want a conflict naming the limit", err)
	}
	if _, err := e.svc.Configs.CloneFromSnapshot(context.Background(), "a", "one", "c", lab.CreateOptions{}); err != nil {
		t.Fatalf("clone from snapshot at depth 3: %v", err)
	}
	e.assertConsistent()
}

// TestSnapshotRevertDiscardsSavedState: an undeployed configuration's
// saved state belongs to its current tops; reverting to a snapshot
// without state discards it (its next deploy boots).
func TestSnapshotRevertDiscardsSavedState(t *testing.T) {
	e := newEnv(t)
	e.template("base")
	e.network("lan", "10.2.0.0/24", "10.2.0.10-10.2.0.30")
	e.config("a", lab.VMSpec{Name: "vm1", Template: "base", Network: "lan"})
	e.snap("a", "s")
	// The first VM of a fresh store has ID 1; the view confirms the file
	// is that VM's saved state.
	dir := filepath.Join(e.dir, "state")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "vm-1.state")
	if err := os.WriteFile(state, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !e.get("a").VMs[0].HasSavedState {
		t.Fatal("the view does not see the saved state")
	}
	e.revert("a", "s")
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("saved state after revert to a snapshot without state: %v; want it gone", err)
	}
	if e.get("a").VMs[0].HasSavedState {
		t.Error("the view still shows a saved state")
	}
}

// TestEverySnapshotStepRollsBack fails each step of snapshot create,
// revert, delete and clone-from-snapshot in turn: the operation reports
// the failure, the state is exactly as before, the doctor finds nothing.
func TestEverySnapshotStepRollsBack(t *testing.T) {
	ctx := context.Background()
	ops := []struct {
		kind string
		run  func(e *env) error
	}{
		{"snapshot", func(e *env) error { _, err := e.svc.Snapshots.Create(ctx, "a", "new", false); return err }},
		{"snapshot-revert", func(e *env) error { _, err := e.svc.Snapshots.Revert(ctx, "a", "s1"); return err }},
		{"snapshot-delete", func(e *env) error { return e.svc.Snapshots.Delete(ctx, "a", "s2") }},
		{"clone", func(e *env) error {
			_, err := e.svc.Configs.CloneFromSnapshot(ctx, "a", "s1", "new", lab.CreateOptions{})
			return err
		}},
	}
	for _, op := range ops {
		t.Run(op.kind, func(t *testing.T) {
			rollsBackAtEveryStep(t, op.kind, func(e *env) {
				e.template("base")
				e.network("lan", "10.2.0.0/24", "10.2.0.10-10.2.0.30")
				e.config("a", lab.VMSpec{Name: "vm1", Template: "base", Network: "lan"}, lab.VMSpec{Name: "vm2", Template: "base", Network: "lan"})
				qemuIO(t, top(e.get("a"), "vm1"), "write -P 9 0 4k")
				e.snap("a", "s1")
				qemuIO(t, top(e.get("a"), "vm1"), "write -P 8 0 4k")
				e.snap("a", "s2")
				e.revert("a", "s1") // s2's layer is held by s2 alone
			}, op.run, func(e *env) string { return e.snapshot() + snapNames(e) })
		})
	}
}

func snapNames(e *env) string {
	vs, err := e.svc.Snapshots.List(context.Background(), "a")
	if err != nil {
		e.t.Fatal(err)
	}
	var b strings.Builder
	for _, v := range vs {
		b.WriteString(" snapshot " + v.Name + " parent " + v.Parent)
		for _, l := range v.Layers {
			b.WriteString(" " + l.Path)
		}
	}
	return b.String()
}

// TestSnapshotSpace: the cleanup view's space of a configuration counts
// its snapshots' layers (they go with it), and after deleting it exactly
// those bytes are gone.
func TestSnapshotSpace(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.template("base")
	e.network("lan", "10.2.0.0/24", "10.2.0.10-10.2.0.30")
	e.config("a", lab.VMSpec{Name: "vm1", Template: "base", Network: "lan"})
	qemuIO(t, top(e.get("a"), "vm1"), "write -P 1 0 1M")
	e.snap("a", "s1")
	qemuIO(t, top(e.get("a"), "vm1"), "write -P 2 0 1M")
	e.snap("a", "s2")
	e.revert("a", "s1") // s2's layer now held by s2 alone
	sp, err := e.svc.Leases.Space(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, name := range []string{"s1", "s2"} {
		for _, l := range e.snapList("a")[name].Layers {
			want[l.Path] = true
		}
	}
	want[top(e.get("a"), "vm1")] = true
	got := map[string]bool{}
	for _, l := range sp.Layers {
		got[l.Path] = true
	}
	if len(got) != len(want) {
		t.Fatalf("space of a frees layers %v; want its top and both snapshots' layers %v", got, want)
	}
	for p := range want {
		if !got[p] {
			t.Errorf("space of a does not count %s", p)
		}
	}
	if err := e.svc.Configs.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	for p := range want {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there after the delete (%v)", p, err)
		}
	}
	e.assertConsistent()
}
