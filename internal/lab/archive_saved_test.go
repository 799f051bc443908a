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
	"stagehand/internal/lab/bundle"
	"stagehand/internal/lab/deploy"
	"stagehand/internal/store"
)

// stateFiles is, by VM name, the file each VM of config resumes from at
// its next deploy (deploy.StateFile, absolute), whether it exists or not.
func (e *env) stateFiles(config string) map[string]string {
	e.t.Helper()
	out := map[string]string{}
	err := e.db.View(context.Background(), func(tx store.Tx) error {
		c, err := tx.Configs().Get(config)
		if err != nil {
			return err
		}
		for _, vm := range c.VMs {
			out[vm.Name] = filepath.Join(e.dir, deploy.StateFile(vm.ID))
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// assertResumed checks that the last deploy started every VM of config
// resuming from its own saved state (the fake hypervisor's "hv start ...
// resume=<file>").
func (e *env) assertResumed(starts []string, config string) {
	e.t.Helper()
	files := e.stateFiles(config)
	all := strings.Join(starts, "\n")
	for vm, f := range files {
		if !strings.Contains(all, "resume="+filepath.Base(f)) {
			e.t.Errorf("deploy of %s: VM %s did not resume %s:\n%s", config, vm, filepath.Base(f), all)
		}
	}
	if len(starts) != len(files) || strings.Contains(all, "resume=-") {
		e.t.Errorf("deploy of %s started %q; want each of its %d VMs resumed", config, starts, len(files))
	}
}

// TestArchiveCarriesSavedState: a configuration undeployed --save-state,
// without snapshots, archived --with-snapshots is a version 2 archive
// carrying each VM's saved state (read-only, checksummed, the source's
// bytes); without --with-snapshots it is the version 1 archive as ever.
// Restored while the source holds the MACs, its VMs are saved with their
// own copies of the states and the archived MACs: an unfenced deploy is
// refused saying --fenced, a fenced one resumes every VM, and the
// source's states are untouched. Restored once the source is gone, it
// deploys unfenced, resuming.
func TestArchiveCarriesSavedState(t *testing.T) {
	e, host := deployEnv(t, nil)
	ctx := context.Background()
	if _, err := e.svc.Deployments.Deploy(ctx, "a", lab.DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Deployments.Undeploy(ctx, "a", true); err != nil {
		t.Fatal(err)
	}
	src := e.stateFiles("a")
	srcSums := map[string]string{}
	for vm, f := range src {
		srcSums[vm] = sha(t, f)
	}

	e.ok(e.svc.Archives.StartCreate(ctx, "a", "arch", lab.CreateOptions{WithSnapshots: true}))
	av, err := e.svc.Archives.Get(ctx, "arch")
	if err != nil {
		t.Fatal(err)
	}
	m := readManifest(t, av.Dir)
	if m.Version != bundle.VersionSnapshots || len(m.Snapshots) != 0 || m.SavedVMs() != 2 {
		t.Fatalf("manifest version %d, %d snapshots, %d saved VMs; want version 2, none, 2", m.Version, len(m.Snapshots), m.SavedVMs())
	}
	for _, vm := range m.VMs {
		p := filepath.Join(av.Dir, vm.State.Path)
		if !isReadOnly(t, p) || sha(t, p) != vm.State.SHA256 || vm.State.SHA256 != srcSums[vm.Name] {
			t.Errorf("VM %s's archived state %s: writable, or not its checksum or the source's state", vm.Name, vm.State.Path)
		}
	}
	for _, vv := range av.VMs {
		if !vv.SavedState || vv.SavedStateSize == 0 {
			t.Errorf("archive view VM %s: saved state %v (%d bytes); want carried", vv.Name, vv.SavedState, vv.SavedStateSize)
		}
	}
	e.ok(e.svc.Archives.StartCreate(ctx, "a", "plain", lab.CreateOptions{}))
	pv, _ := e.svc.Archives.Get(ctx, "plain")
	if raw, _ := os.ReadFile(filepath.Join(pv.Dir, bundle.ManifestName)); readManifest(t, pv.Dir).Version != bundle.Version || strings.Contains(string(raw), `"state"`) {
		t.Errorf("archive without --with-snapshots of a saved configuration: want version 1 without states:\n%s", raw)
	}

	// Restored while "a" holds the MACs: a copy that deploys fenced only.
	e.ok(e.svc.Archives.StartRestore(ctx, "arch", "b", lab.CreateOptions{}))
	a, b := e.get("a"), e.get("b")
	for i, v := range b.VMs {
		if v.State != lab.VMStateSaved || !v.HasSavedState || v.NICs[0].MAC != a.VMs[i].NICs[0].MAC {
			t.Errorf("restored VM %s: %s, saved state %v, MAC %s; want saved with the archived MAC %s", v.Name, v.State, v.HasSavedState, v.NICs[0].MAC, a.VMs[i].NICs[0].MAC)
		}
	}
	for vm, f := range e.stateFiles("b") {
		fi, err1 := os.Stat(f)
		si, err2 := os.Stat(src[vm])
		if err1 != nil || err2 != nil || os.SameFile(fi, si) || sha(t, f) != srcSums[vm] {
			t.Errorf("restored VM %s's state %s: %v %v; want its own copy of the archived state", vm, f, err1, err2)
		}
	}
	e.assertConsistent()
	if _, err := e.svc.Deployments.Deploy(ctx, "b", lab.DeployOptions{}); !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "--fenced") {
		t.Errorf("unfenced deploy of a restore sharing MACs with its source: %v; want refused, saying --fenced", err)
	}
	host.Calls.Take()
	if _, err := e.svc.Deployments.Deploy(ctx, "b", lab.DeployOptions{Fenced: true, FencePolicy: "out"}); err != nil {
		t.Fatal(err)
	}
	e.assertResumed(startCalls(host), "b")
	for vm, f := range src {
		if sha(t, f) != srcSums[vm] {
			t.Errorf("the source's state of %s changed when its restored copy resumed", vm)
		}
	}
	if _, err := e.svc.Deployments.Undeploy(ctx, "b", false); err != nil {
		t.Fatal(err)
	}

	// With the source gone, the MACs are free: an unfenced deploy resumes.
	for _, c := range []string{"b", "a"} {
		if err := e.svc.Configs.Delete(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	e.ok(e.svc.Archives.StartRestore(ctx, "arch", "c", lab.CreateOptions{}))
	host.Calls.Take()
	if _, err := e.svc.Deployments.Deploy(ctx, "c", lab.DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	e.assertResumed(startCalls(host), "c")
	if _, err := e.svc.Deployments.Undeploy(ctx, "c", false); err != nil {
		t.Fatal(err)
	}
	e.assertConsistent()
}
