package lab_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/deploy"
)

// stateInodes returns, for each saved state file in the data dir's states
// directory and the snapshots directory, its inode's link count, keyed by
// inode: what the copies share.
func stateInodes(t *testing.T, dir string) (inodes map[uint64]uint64, files []string) {
	t.Helper()
	inodes = map[uint64]uint64{}
	for _, d := range []string{"state", "snapshots"} {
		es, err := os.ReadDir(filepath.Join(dir, d))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		for _, e := range es {
			st, err := os.Stat(filepath.Join(dir, d, e.Name()))
			if errors.Is(err, os.ErrNotExist) {
				continue // a resumed state, freed in the background since the listing
			}
			if err != nil {
				t.Fatal(err)
			}
			sys := st.Sys().(*syscall.Stat_t)
			inodes[sys.Ino] = uint64(sys.Nlink)
			files = append(files, filepath.Join(d, e.Name()))
		}
	}
	sort.Strings(files)
	return inodes, files
}

func macsOf(c *lab.ConfigView) []string {
	var out []string
	for _, v := range c.VMs {
		for _, n := range v.NICs {
			out = append(out, v.Name+" "+n.MAC+" "+n.IP)
		}
	}
	return out
}

// TestInstantCopiesShareState: a clone --with-state of a deployed
// configuration pauses its guests together while their tops freeze and
// their states are written, then continues them; the clone's disks are
// new deltas on exactly those frozen layers, its VMs are saved with the
// source's MACs, addresses and instance-ids. Clones of that undeployed
// copy share its states as hard links (one inode a VM, one link a copy,
// no copy of the bytes). An unfenced deploy is refused saying why; a
// fenced one resumes every VM (and drops only its own link); a library
// entry captured with state gives its checkouts the same state; deleting
// the last copy that links a state frees it.
func TestInstantCopiesShareState(t *testing.T) {
	e, host := deployedForSnapshot(t, nil)
	ctx := context.Background()
	srcTop := top(e.get("a"), "vm1")
	withState := lab.CreateOptions{WithState: true}
	if _, err := e.svc.Configs.LinkedClone(ctx, "a", "c1", withState); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"vm continue vm1", "vm continue vm2", "vm pause vm1", "vm pause vm2",
		"vm snapshot-disks n=1 vm1", "vm snapshot-disks n=1 vm2", "vm write-state vm1", "vm write-state vm2",
	}
	if diff := cmp.Diff(want, sortedCalls(host)); diff != "" {
		t.Errorf("clone --with-state of a deployed configuration (-want +got):\n%s", diff)
	}
	a, c1 := e.get("a"), e.get("c1")
	if a.State != "deployed" || chainOf(a, "vm1")[1] != srcTop || chainOf(c1, "vm1")[1] != srcTop || !isReadOnly(t, srcTop) {
		t.Errorf("source %s on %v, clone on %v; want both on the frozen %s", a.State, chainOf(a, "vm1"), chainOf(c1, "vm1"), srcTop)
	}
	if !cmp.Equal(macsOf(a), macsOf(c1)) {
		t.Errorf("clone's NICs %v, want the source's %v (the resumed guest has them in memory)", macsOf(c1), macsOf(a))
	}
	for i, v := range c1.VMs {
		if v.State != lab.VMStateSaved || !v.HasSavedState || v.InstanceID != a.VMs[i].InstanceID {
			t.Errorf("clone VM %s: state %s, saved state %v, instance-id %s; want saved with the source's %s",
				v.Name, v.State, v.HasSavedState, v.InstanceID, a.VMs[i].InstanceID)
		}
	}
	for _, n := range []string{"c2", "c3"} {
		if _, err := e.svc.Configs.LinkedClone(ctx, "c1", n, withState); err != nil {
			t.Fatal(err)
		}
	}
	inodes, files := stateInodes(t, e.dir)
	if len(inodes) != 2 || len(files) != 6 {
		t.Fatalf("state files %v in %d inodes; want 6 links to 2 states (c1, c2, c3 × vm1, vm2)", files, len(inodes))
	}
	for ino, n := range inodes {
		if n != 3 {
			t.Errorf("state inode %d has %d links, want 3", ino, n)
		}
	}

	_, err := e.svc.Deployments.Deploy(ctx, "c2", lab.DeployOptions{})
	if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "--fenced") || !strings.Contains(err.Error(), "MACs") {
		t.Fatalf("unfenced deploy of an instant copy: %v; want invalid, saying it shares MACs and to deploy --fenced", err)
	}
	host.Calls.Take()
	if _, err := e.svc.Deployments.Deploy(ctx, "c2", lab.DeployOptions{Fenced: true, FencePolicy: "out"}); err != nil {
		t.Fatal(err)
	}
	resumed := 0
	for _, c := range host.Calls.Take() {
		if strings.HasPrefix(c, "hv start") {
			if strings.Contains(c, "resume=-") {
				t.Errorf("instant copy booted a VM: %q", c)
			}
			resumed++
		}
	}
	if resumed != 2 {
		t.Errorf("deploy resumed %d VMs, want 2", resumed)
	}
	for ino, n := range stateInodesOnly(t, e.dir) {
		if n != 2 {
			t.Errorf("after c2 resumed, state inode %d has %d links; want 2 (c1, c3 keep theirs)", ino, n)
		}
	}

	// Library: the entry keeps the state, its checkouts share it.
	if _, err := e.svc.Library.Capture(ctx, "c1", "lib", withState); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Library.Checkout(ctx, "lib", "k1", lab.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if k1 := e.get("k1"); !k1.VMs[0].HasSavedState || !cmp.Equal(macsOf(k1), macsOf(a)) {
		t.Errorf("checkout of an entry with state: saved %v, NICs %v; want the shared state and the source's NICs", k1.VMs[0].HasSavedState, macsOf(k1))
	}
	for ino, n := range stateInodesOnly(t, e.dir) {
		if n != 4 {
			t.Errorf("with lib and k1, state inode %d has %d links; want 4", ino, n)
		}
	}
	if _, err := e.svc.Deployments.Undeploy(ctx, "c2", false); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"c1", "c2", "c3", "k1"} {
		if err := e.svc.Configs.Delete(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.svc.Library.Delete(ctx, "lib"); err != nil {
		t.Fatal(err)
	}
	if _, files := stateInodes(t, e.dir); len(files) != 0 {
		t.Errorf("after the last copy went, state files %v are left", files)
	}
	e.assertConsistent()
}

// TestResumedStateFreedInTheBackground: an instant copy of a deployed
// configuration holds the only link of its states; its deploy takes each
// state's name away at once (the next deploy cannot resume it again) and
// frees the bytes after returning; a renamed state a crash left before
// its removal goes at the next start.
func TestResumedStateFreedInTheBackground(t *testing.T) {
	e, _ := deployedForSnapshot(t, nil)
	ctx := context.Background()
	if _, err := e.svc.Configs.LinkedClone(ctx, "a", "c1", lab.CreateOptions{WithState: true}); err != nil {
		t.Fatal(err)
	}
	if inodes, files := stateInodes(t, e.dir); len(files) != 2 || len(inodes) != 2 {
		t.Fatalf("state files %v; want c1's two, one link each", files)
	}
	if _, err := e.svc.Deployments.Deploy(ctx, "c1", lab.DeployOptions{Fenced: true, FencePolicy: "out"}); err != nil {
		t.Fatal(err)
	}
	_, files := stateInodes(t, e.dir)
	for _, f := range files {
		if !strings.Contains(f, deploy.ResumedMark) {
			t.Errorf("state %s still in place after its VM resumed", f)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, files := stateInodes(t, e.dir)
		if len(files) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("resumed states never freed: %v", files)
		}
		time.Sleep(10 * time.Millisecond)
	}

	left := filepath.Join(e.dir, deploy.StateDir, "vm-99.state"+deploy.ResumedMark+"0a1b")
	if err := os.WriteFile(left, []byte("state"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := e.restarted(t); r == nil {
		t.Fatal("no restart")
	}
	if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a resumed state a crash left survived the restart: %v", err)
	}
}

func stateInodesOnly(t *testing.T, dir string) map[uint64]uint64 {
	m, _ := stateInodes(t, dir)
	return m
}

// TestInstantCloneNeedsState: an undeployed configuration without a saved
// state cannot be cloned --with-state (the error says how to get one),
// and nothing is left.
func TestInstantCloneNeedsState(t *testing.T) {
	e, _ := deployEnv(t, nil)
	before := e.snapshot()
	_, err := e.svc.Configs.LinkedClone(context.Background(), "a", "c", lab.CreateOptions{WithState: true})
	if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "--save-state") {
		t.Fatalf("clone --with-state of a configuration with no state: %v", err)
	}
	if after := e.snapshot(); after != before {
		t.Errorf("refused clone left changes:\nbefore %s\nafter  %s", before, after)
	}
}

// TestEveryInstantCloneStepRollsBack fails each step of a clone
// --with-state in turn: of an undeployed source with saved state (every
// failure leaves the lab as it was, its states' link counts included),
// and of a deployed one (before the switch as it was; from the switch on
// the source keeps its new tops, and no copy, delta or state file is
// left). The guests run on and the doctor finds nothing.
func TestEveryInstantCloneStepRollsBack(t *testing.T) {
	ctx := context.Background()
	for _, live := range []bool{false, true} {
		f := &faults{}
		for k := 1; ; k++ {
			e, host := deployedForSnapshot(t, f)
			if !live {
				if _, err := e.svc.Deployments.Undeploy(ctx, "a", true); err != nil {
					t.Fatal(err)
				}
			}
			before := e.snapshot()
			beforeStates := stateInodesOnly(t, e.dir)
			f.arm("clone", k)
			_, err := e.svc.Configs.LinkedClone(ctx, "a", "c", lab.CreateOptions{WithState: true})
			f.mu.Lock()
			seen, steps := f.seen, f.steps
			f.mu.Unlock()
			if seen < k {
				if err != nil {
					t.Fatalf("live=%v unfailed run: %v", live, err)
				}
				t.Logf("clone --with-state (live=%v): %d steps, each failure rolled back: %v", live, k-1, steps)
				e.assertConsistent()
				break
			}
			if err == nil || !strings.Contains(err.Error(), errInjected.Error()) {
				t.Fatalf("live=%v step %d (%s): error %v, want the injected failure", live, k, steps[k-1], err)
			}
			switched := false
			for _, s := range steps[:k-1] {
				switched = switched || s == "switch"
			}
			if after := e.snapshot(); !switched && after != before {
				t.Errorf("live=%v step %d (%s) left changes:\nbefore %s\nafter  %s", live, k, steps[k-1], before, after)
			}
			if _, err := e.svc.Configs.Get(ctx, "c"); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("live=%v step %d (%s): the copy exists after the failure (%v)", live, k, steps[k-1], err)
			}
			if got := stateInodesOnly(t, e.dir); !cmp.Equal(got, beforeStates) {
				t.Errorf("live=%v step %d (%s): state files %v, want as before %v", live, k, steps[k-1], got, beforeStates)
			}
			if live {
				if got := host.Hypervisor.Running(); !cmp.Equal(got, []string{"vm1", "vm2"}) {
					t.Errorf("step %d: running %v, want both guests", k, got)
				}
			}
			e.assertConsistent()
		}
	}
}

// TestDoctorKnowsStates: the doctor takes shared states (hard links of
// instant copies) as known, reports a saved VM whose state is gone (its
// next deploy boots) and a state file nothing refers to (a crash between
// an instant clone's commit and its states' renaming), which --repair
// removes.
func TestDoctorKnowsStates(t *testing.T) {
	e, _ := deployedForSnapshot(t, nil)
	ctx := context.Background()
	for _, n := range []string{"c1", "c2"} {
		src := "a"
		if n == "c2" {
			src = "c1"
		}
		if _, err := e.svc.Configs.LinkedClone(ctx, src, n, lab.CreateOptions{WithState: true}); err != nil {
			t.Fatal(err)
		}
	}
	e.assertConsistent()
	_, files := stateInodes(t, e.dir)
	if len(files) != 4 {
		t.Fatalf("state files %v; want 4 (c1, c2 × vm1, vm2)", files)
	}
	if err := os.Remove(filepath.Join(e.dir, files[0])); err != nil {
		t.Fatal(err)
	}
	orphan := filepath.Join(e.dir, "snapshots", "i-0123456789abcdef.state")
	if err := os.WriteFile(orphan, []byte("state"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := e.svc.Doctor(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range r.Problems {
		got = append(got, p.Kind+" repaired="+strconv.FormatBool(p.Repaired))
	}
	sort.Strings(got)
	if want := []string{"missing-state repaired=false", "orphan-file repaired=true"}; !cmp.Equal(got, want) {
		t.Errorf("doctor --repair found %v (%+v); want %v", got, r.Problems, want)
	}
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the orphan state is still there after --repair: %v", err)
	}
}
