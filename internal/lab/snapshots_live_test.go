package lab_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"stagehand/internal/hostlink"
	"stagehand/internal/lab"
	"stagehand/internal/lab/labtest"
	"stagehand/internal/store"
)

// deployedForSnapshot is deployEnv with "a" deployed and data in vm1.
func deployedForSnapshot(t *testing.T, f *faults) (*env, *labtest.Host) {
	t.Helper()
	e, host := deployEnv(t, f)
	if _, err := e.svc.Deployments.Deploy(context.Background(), "a", lab.DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	qemuIO(t, top(e.get("a"), "vm1"), "write -P 5 0 64k")
	host.Calls.Take()
	return e, host
}

// startCalls takes the host's calls and returns its VM starts.
func startCalls(host *labtest.Host) []string {
	var starts []string
	for _, c := range host.Calls.Take() {
		if strings.HasPrefix(c, "hv start") {
			starts = append(starts, c)
		}
	}
	return starts
}

func sortedCalls(host *labtest.Host) []string {
	c := host.Calls.Take()
	sort.Strings(c)
	return c
}

// TestLiveSnapshot: a deployed configuration's snapshot pauses every
// guest, switches each VM's disks in one call, (with state) writes each
// state while paused, continues every guest, and reports each pause; the
// records match a snapshot of an undeployed one. A revert to a snapshot
// with state deploys again resuming each VM from the snapshot's state
// (which the snapshot keeps).
func TestLiveSnapshot(t *testing.T) {
	e, host := deployedForSnapshot(t, nil)
	ctx := context.Background()
	oldTop := top(e.get("a"), "vm1")
	s, err := e.svc.Snapshots.Create(ctx, "a", "s1", true)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"vm continue vm1", "vm continue vm2", "vm pause vm1", "vm pause vm2",
		"vm snapshot-disks n=1 vm1", "vm snapshot-disks n=1 vm2", "vm write-state vm1", "vm write-state vm2",
	}
	if diff := cmp.Diff(want, sortedCalls(host)); diff != "" {
		t.Errorf("live snapshot calls (-want +got):\n%s", diff)
	}
	if len(s.Pauses) != 2 || s.Pauses[0].Pause <= 0 || !s.WithState || len(s.Layers) != 2 || s.Layers[0].State == "" {
		t.Errorf("snapshot = %+v; want two pauses, with state, two layers with their state files", s)
	}
	if c := e.get("a"); chainOf(c, "vm1")[1] != oldTop || !isReadOnly(t, oldTop) {
		t.Errorf("after a live snapshot vm1's chain is %v; want a new top on the frozen %s", chainOf(c, "vm1"), oldTop)
	}
	e.assertConsistent()

	if _, err := e.svc.Snapshots.Revert(ctx, "a", "s1"); err != nil {
		t.Fatal(err)
	}
	if starts := startCalls(host); len(starts) != 2 || strings.Contains(strings.Join(starts, "\n"), "resume=-") {
		t.Errorf("revert to a snapshot with state started %q; want both VMs resumed", starts)
	}
	if c := e.get("a"); c.State != "deployed" {
		t.Errorf("after revert the configuration is %s, want deployed again", c.State)
	}
	for _, l := range e.snapList("a")["s1"].Layers {
		if _, err := os.Stat(l.State); err != nil {
			t.Errorf("the snapshot's state %s went with the resume", l.State)
		}
	}
	verifyPattern(t, top(e.get("a"), "vm1"), 0, 65536, 5)
	e.assertConsistent()
}

// TestEveryLiveSnapshotStepRollsBack: before the switch a failure rolls
// everything back (the guests never paused); from the switch on the
// guests write their new tops, so a failure keeps those (the store says
// so, the old tops frozen) and records no snapshot; either way the guests
// run on and the doctor finds nothing. A switch that fails for one VM
// keeps the other's.
func TestEveryLiveSnapshotStepRollsBack(t *testing.T) {
	ctx := context.Background()
	f := &faults{}
	for k := 1; ; k++ {
		e, host := deployedForSnapshot(t, f)
		before := e.snapshot()
		f.arm("snapshot", k)
		_, err := e.svc.Snapshots.Create(ctx, "a", "s", false)
		f.mu.Lock()
		seen, steps := f.seen, f.steps
		f.mu.Unlock()
		if seen < k {
			if err != nil {
				t.Fatalf("unfailed run: %v", err)
			}
			t.Logf("live snapshot: %d steps: %v", k-1, steps)
			break
		}
		if err == nil || !strings.Contains(err.Error(), errInjected.Error()) {
			t.Fatalf("step %d (%s): error %v, want the injected failure", k, steps[k-1], err)
		}
		switched := false
		for _, s := range steps[:k] {
			switched = switched || s == "switch"
		}
		switched = switched && steps[k-1] != "switch" // the switch step fails before switching
		after := e.snapshot()
		if !switched && after != before {
			t.Errorf("step %d (%s) before the switch left changes:\nbefore %s\nafter  %s", k, steps[k-1], before, after)
		}
		if switched && (after == before || len(e.snapList("a")) != 0) {
			t.Errorf("step %d (%s) after the switch: the new tops must be kept, no snapshot recorded; got %v", k, steps[k-1], e.snapList("a"))
		}
		if got := host.Hypervisor.Running(); !cmp.Equal(got, []string{"vm1", "vm2"}) {
			t.Errorf("step %d: running %v, want both guests", k, got)
		}
		for _, c := range host.Calls.Take() {
			if strings.HasPrefix(c, "vm pause") && !switched && steps[k-1] != "switch" {
				t.Errorf("step %d (%s): a guest was paused before the failure: %q", k, steps[k-1], c)
			}
		}
		e.assertConsistent()
	}

	e, host := deployedForSnapshot(t, nil)
	host.Calls.Fail = func(line string) error {
		if line == "vm snapshot-disks n=1 vm2" {
			return errors.New("QMP transaction refused")
		}
		return nil
	}
	top1, top2 := top(e.get("a"), "vm1"), top(e.get("a"), "vm2")
	if _, err := e.svc.Snapshots.Create(ctx, "a", "s", false); err == nil || !strings.Contains(err.Error(), "QMP transaction refused") {
		t.Fatalf("snapshot with vm2's switch failing: %v", err)
	}
	c := e.get("a")
	if chainOf(c, "vm1")[1] != top1 || top(c, "vm2") != top2 || len(e.snapList("a")) != 0 {
		t.Errorf("after vm2's switch failed: vm1 chain %v (want on %s), vm2 top %s (want %s), snapshots %v (want none)",
			chainOf(c, "vm1"), top1, top(c, "vm2"), top2, e.snapList("a"))
	}
	calls := sortedCalls(host)
	if !cmp.Equal(calls[:2], []string{"vm continue vm1", "vm continue vm2"}) {
		t.Errorf("calls %v; want both guests continued", calls)
	}
	e.assertConsistent()
}

// TestSnapshotLayersHashedAtFreeze: the layer every snapshot and every
// clone --with-state freezes is recorded with its content hash and size at
// once (as a clone's is), so another host can pull it without hashing it
// first; live or not.
func TestSnapshotLayersHashedAtFreeze(t *testing.T) {
	e, _ := deployedForSnapshot(t, nil)
	ctx := context.Background()
	e.snap("a", "live")
	if _, err := e.svc.Snapshots.Create(ctx, "a", "live-state", true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Configs.LinkedClone(ctx, "a", "copy", lab.CreateOptions{WithState: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Deployments.Undeploy(ctx, "a", false); err != nil {
		t.Fatal(err)
	}
	e.snap("a", "cold")
	if n := e.assertFrozenHashed(); n != 9 {
		// The template's base, then two disks × (live, live-state, the
		// copy's instant, cold).
		t.Errorf("%d frozen layers, want 9", n)
	}
}

// assertFrozenHashed checks that every frozen layer is recorded with its
// content's hash and size, and returns how many there are.
func (e *env) assertFrozenHashed() int {
	e.t.Helper()
	ctx := context.Background()
	var frozen []store.Layer
	if err := e.db.View(ctx, func(tx store.Tx) error {
		ls, err := tx.Layers().List()
		for _, l := range ls {
			if l.Frozen {
				frozen = append(frozen, l)
			}
		}
		return err
	}); err != nil {
		e.t.Fatal(err)
	}
	for _, l := range frozen {
		sum, size, err := hostlink.HashFile(ctx, filepath.Join(e.dir, l.Path))
		if err != nil {
			e.t.Fatal(err)
		}
		if l.SHA256 != sum || l.Size != size {
			e.t.Errorf("frozen layer %s recorded sha256 %q size %d; its content is %s, %d bytes", l.Path, l.SHA256, l.Size, sum, size)
		}
	}
	return len(frozen)
}
