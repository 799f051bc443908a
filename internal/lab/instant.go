package lab

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/lab/deploy"
	"stagehand/internal/lab/journal"
	"stagehand/internal/seed"
	"stagehand/internal/store"
)

// Instant fenced copies (issue 15). A clone made --with-state shares its
// source's saved memory and device state: its disks are new deltas on
// exactly the layers frozen at the instant the state was written, so its
// deploy resumes every guest from that state instead of booting it. The
// state files are shared as hard links, one per copy (each VM's
// deploy.StateFile): the file system's link count is the reference count,
// so a state's bytes go when the last copy, library entry or source that
// links it deletes its link (deleting the configuration, or resuming it:
// a resumed guest's state is in its memory). No state is ever copied.
//
// A resumed guest has its source's MACs and addresses in memory, so the
// copy keeps them (and its source's instance-ids and host names: the
// guest's identity is in its memory too, see instantVM) and may only be
// deployed fenced (store.Config.InstantOf; deploy refuses otherwise).

// instantClones owns the clones made --with-state: their shared saved
// states and the live freeze that takes one.
type instantClones struct{ *core }

// cloneWithState makes dst of kind from src sharing src's saved state: a
// deployed src's state is taken now (its guests paused together while
// their tops are frozen and their states written), an undeployed src's
// saved state (undeploy --save-state, or a copy's own) is shared as it is.
func (s instantClones) cloneWithState(ctx context.Context, src, dst, kind string, opts CreateOptions, useSource bool) (*ConfigView, error) {
	opts.WithState = true
	var deployed bool
	err := s.store.View(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(src)
		if err != nil {
			return err
		}
		deployed = c.State == store.StateDeployed
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("clone %q to %q with its state: %w", src, dst, err)
	}
	if deployed {
		return s.liveInstantClone(ctx, src, dst, kind, opts)
	}
	return s.linkedClone(ctx, src, dst, kind, opts, useSource)
}

// savedStates returns, by VM index, the saved state file of every VM of
// the undeployed configuration c; it is an error when one has none.
func (s instantClones) savedStates(c *store.Config) (map[int]string, error) {
	out := map[int]string{}
	for vi, vm := range c.VMs {
		if vm.State != VMStateSaved || !s.deploys.HasSavedState(vm.ID) {
			return nil, errdefs.Invalid("VM %q of %q has no saved state to share: clone %q --with-state while it is deployed, or undeploy it with --save-state first",
				vm.Name, c.Name, c.Name)
		}
		out[vi] = deploy.StateFile(vm.ID)
	}
	return out, nil
}

// stateLinks names, for each VM index of states, the temporary hard link
// a clone's state is made as (in the journal before it exists); the
// clone's records give it its final name (placeStates).
func stateLinks(states map[int]string) map[int]string {
	out := map[int]string{}
	for vi := range states {
		out[vi] = filepath.Join(snapshotsDir, "i-"+journal.RandomHex(8)+".state")
	}
	return out
}

// linkStates makes links[vi] a hard link of states[vi], for each VM.
func (s instantClones) linkStates(ctx context.Context, op *store.Op, states, links map[int]string) error {
	if len(states) == 0 {
		return nil
	}
	if err := os.MkdirAll(s.abs(snapshotsDir), 0o700); err != nil {
		return err
	}
	for _, vi := range slices.Sorted(maps.Keys(states)) {
		if err := s.journal.Step(ctx, op, "link-state"); err != nil {
			return err
		}
		if err := os.Link(s.abs(states[vi]), s.abs(links[vi])); err != nil {
			return fmt.Errorf("share saved state: %w", err)
		}
	}
	return nil
}

// placeStates gives each committed state of clone (files: VM index →
// its temporary name) the name its VM's deploy resumes from. A rename in
// one directory tree does not fail short of a broken disk; if it does,
// that VM boots instead of resuming, and the file is an orphan doctor
// reports.
func (s instantClones) placeStates(clone *store.Config, files map[int]string) {
	if clone == nil || len(files) == 0 {
		return
	}
	if err := os.MkdirAll(s.abs(deploy.StateDir), 0o700); err != nil {
		s.log.Error("make the state directory; the copy's guests will boot instead of resuming", "config", clone.Name, "err", err)
		return
	}
	for vi, f := range files {
		if err := os.Rename(s.abs(f), s.abs(deploy.StateFile(clone.VMs[vi].ID))); err != nil {
			s.log.Error("put a shared state in place; the VM will boot instead of resuming", "config", clone.Name, "vm", clone.VMs[vi].Name, "file", f, "err", err)
		}
	}
}

// instantVM is nv, the copy of vm of c, made to resume vm's saved state:
// the guest has vm's MACs, addresses, instance-id and host name in
// memory, so the records keep them (a new instance-id would be a lie
// about the running guest: cloud-init reads it only at boot) and the seed
// the deploy attaches is the one the guest saw. It is a copy of a running
// machine, not a new machine: fenced, it never meets its source.
func instantVM(c *store.Config, vm, nv store.VM) store.VM {
	nv.InstanceID = vm.InstanceID
	nv.Hostname = seed.Hostname(vm.Hostname, vm.Name, c.Name)
	nv.State = VMStateSaved
	for i := range nv.NICs {
		nv.NICs[i].MAC = vm.NICs[i].MAC
	}
	return nv
}

// liveInstantClone makes dst from the deployed configuration src with
// its state, as a snapshot --with-state takes one: every VM disk gets a
// new top for src and a new delta for dst on its current top; the guests
// are paused together, switched to their new tops, their states written,
// and continued; the old tops are frozen. The states are dst's alone
// until dst is cloned or captured again.
func (s instantClones) liveInstantClone(ctx context.Context, src, dst, kind string, opts CreateOptions) (*ConfigView, error) {
	if err := cloneCheck(src, dst, opts); err != nil {
		return nil, err
	}
	unlock := s.locks.lock(src, dst)
	defer unlock()
	fail0 := func(err error) (*ConfigView, error) {
		return nil, fmt.Errorf("clone %q to %q with its state: %w", src, dst, err)
	}
	var c *store.Config
	var plans []snapPlan
	var clones []clonePlan
	err := s.store.View(ctx, func(tx store.Tx) error {
		var err error
		if c, err = tx.Configs().Get(src); err != nil {
			return err
		}
		if err := checkKind(c, store.KindConfig, "clone it"); err != nil {
			return err
		}
		if c.State != store.StateDeployed {
			return errdefs.Conflict("configuration %q is %s; clone it with its state when it is deployed, or undeployed with --save-state", src, c.State)
		}
		if err := needNoConfig(tx, dst); err != nil {
			return err
		}
		idx, err := loadLayers(tx)
		if err != nil {
			return err
		}
		if plans, err = s.freezePlans(c, idx, "consolidate that disk first"); err != nil {
			return err
		}
		for _, p := range plans {
			clones = append(clones, clonePlan{vm: p.vm, disk: p.disk, top: p.top, cloneDelta: newLayerPath(), fromSnapshot: true})
		}
		return nil
	})
	if err != nil {
		return fail0(err)
	}
	place, err := s.placeClone(ctx, kind, opts, c)
	if err != nil {
		return fail0(err)
	}
	states, created, err := s.newStateFiles(len(c.VMs), "i-")
	if err != nil {
		return fail0(err)
	}
	var frozen []string
	for i, p := range plans {
		created = append(created, p.newTop, clones[i].cloneDelta)
		frozen = append(frozen, p.top.Path)
	}
	op, err := s.journal.Begin(ctx, "clone", dst, created, frozen)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*ConfigView, error) {
		return nil, s.journal.Fail(op, fmt.Errorf("clone %q to %q with its state: %w", src, dst, err))
	}
	snaps := Snapshots{s.core}
	forward := func(switched []bool, err error) (*ConfigView, error) {
		return nil, snaps.rollForwardSwitched(ctx, op, c, plans, switched, fmt.Errorf("clone %q to %q with its state: %w", src, dst, err))
	}
	for i, p := range plans {
		if err := s.journal.Step(ctx, op, "delta"); err != nil {
			return fail(err)
		}
		if err := s.disks.CreateDelta(ctx, s.abs(p.top.Path), s.abs(p.newTop)); err != nil {
			return fail(fmt.Errorf("VM %q disk %d: %w", c.VMs[p.vm].Name, p.disk, err))
		}
		if err := s.journal.Step(ctx, op, "clone-delta"); err != nil {
			return fail(err)
		}
		if err := s.disks.CreateDelta(ctx, s.abs(p.top.Path), s.abs(clones[i].cloneDelta)); err != nil {
			return fail(fmt.Errorf("VM %q disk %d: %w", c.VMs[p.vm].Name, p.disk, err))
		}
	}
	if err := s.journal.Step(ctx, op, "switch"); err != nil {
		return fail(err)
	}
	pauses, switched, err := snaps.switchLive(ctx, c, plans, states)
	if err != nil {
		return forward(switched, err)
	}
	for _, p := range plans {
		if err := s.journal.Step(ctx, op, "freeze"); err != nil {
			return forward(nil, err)
		}
		if err := s.disks.SetReadOnly(s.abs(p.top.Path), true); err != nil {
			s.log.Error("freeze a live clone's layer; doctor --repair fixes its mode", "config", src, "layer", p.top.Path, "err", err)
		}
	}
	s.hashFrozenTops(ctx, plans)
	if err := s.journal.Step(ctx, op, "commit"); err != nil {
		return forward(nil, err)
	}
	var view *ConfigView
	var made *store.Config
	err = s.update(ctx, func(tx store.Tx) error {
		if err := s.commitSnapshotTops(tx, c, plans, nil); err != nil {
			return err
		}
		clone, err := s.commitClone(tx, src, dst, kind, place, deltaOnTop, clones, true, opts.StorageLease)
		if err != nil {
			return err
		}
		made = clone
		if err := journal.Commit(tx, op, statePartials(states)); err != nil {
			return err
		}
		view, err = s.views.config(tx, clone)
		return err
	})
	if err != nil {
		return forward(nil, err)
	}
	s.placeStates(made, states)
	s.journal.Finish(op)
	attrs := []any{"config", dst, "source", src, "disks", len(plans), "with_state", true}
	for _, p := range pauses {
		attrs = append(attrs, "pause_"+p.VM, p.Pause.Round(time.Microsecond))
	}
	s.log.Info("linked clone made", attrs...)
	return view, nil
}
