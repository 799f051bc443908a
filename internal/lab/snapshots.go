package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/hypervisor"
	"stagehand/internal/lab/access"
	"stagehand/internal/lab/deploy"
	"stagehand/internal/lab/journal"
	"stagehand/internal/lab/snapshot"
	"stagehand/internal/store"
)

// Snapshot trees of whole configurations (issue 15). A snapshot freezes
// every VM disk's top and gives the disk a fresh delta on it, exactly as a
// linked clone freezes its source; the snapshot record names the frozen
// layers (and, with state, each VM's saved memory and device state). The
// layers a snapshot names are kept while it exists (layerInUse), so the
// configuration can go back to it, or be cloned from it, at any time.

// snapshotsDir holds the state files of snapshots taken with state.
const snapshotsDir = "snapshots"

// SnapshotView is one snapshot as users see it.
type SnapshotView struct {
	Name      string
	Parent    string // "" for a root
	Depth     int    // in the tree, roots 0
	CreatedAt time.Time
	WithState bool
	// Current: the configuration continues from this snapshot.
	Current bool
	// ExclusiveBytes are the bytes its frozen layers hold that nothing
	// else uses: what deleting it frees.
	ExclusiveBytes int64
	Layers         []SnapshotLayerView
	// Pauses are how long each guest was paused to take it (create of a
	// deployed configuration only).
	Pauses []GuestPause
}

// SnapshotLayerView is the frozen layer of one VM disk in a snapshot.
type SnapshotLayerView struct {
	VM    string
	Disk  int
	Path  string // absolute
	State string // the VM's state file (absolute), with state only
}

// GuestPause is how long one VM's guest was paused.
type GuestPause struct {
	VM    string
	Pause time.Duration
}

// snapPlan is what a snapshot does to one disk of the configuration.
type snapPlan struct {
	vm, disk int // indexes into the configuration's VMs and the VM's disks
	top      store.Layer
	newTop   string
	// sha256 and size of top once frozen (hashFrozenTops), for other
	// hosts to pull it by content; "" when hashing failed: then the
	// first move or placement hashes it (moves.hashUnhashed).
	sha256 string
	size   int64
}

// liveVM is what a live snapshot needs of a running VM: *hypervisor.VM.
type liveVM interface {
	Pause(ctx context.Context) error
	Continue(ctx context.Context) error
	SnapshotDisks(ctx context.Context, overlays []string) error
	WriteState(ctx context.Context, file string) error
}

// Create takes snapshot name of config: every VM disk's top is frozen and
// the disk gets a fresh delta on it. An undeployed configuration's files
// are changed directly; a deployed one's guests are paused together only
// for the switch (QMP transaction of blockdev-snapshot-sync, per VM), and
// with withState each guest's state is written while it is paused (so
// state and frozen disks are of one instant) before it goes on running.
func (s Snapshots) Create(ctx context.Context, config, name string, withState bool) (*SnapshotView, error) {
	if err := CheckName("snapshot", name); err != nil {
		return nil, err
	}
	unlock := s.locks.lock(config)
	defer unlock()
	fail0 := func(err error) (*SnapshotView, error) {
		return nil, fmt.Errorf("snapshot %q of %q: %w", name, config, err)
	}
	var c *store.Config
	var parent int64
	var plans []snapPlan
	err := s.store.View(ctx, func(tx store.Tx) error {
		var err error
		if c, err = tx.Configs().Get(config); err != nil {
			return err
		}
		if err := checkKind(c, store.KindConfig, "snapshot it"); err != nil {
			return err
		}
		if c.State != store.StateUndeployed && c.State != store.StateDeployed {
			return errdefs.Conflict("configuration %q is %s; wait until it is deployed or undeployed", config, c.State)
		}
		if withState && c.State != store.StateDeployed {
			return errdefs.Invalid("--with-state saves the guests' memory: configuration %q is not deployed", config)
		}
		snaps, err := tx.Snapshots().List(c.ID)
		if err != nil {
			return err
		}
		for _, sn := range snaps {
			if sn.Name == name {
				return errdefs.Conflict("configuration %q already has a snapshot %q", config, name)
			}
		}
		idx, err := loadLayers(tx)
		if err != nil {
			return err
		}
		parent = currentSnapshot(c, idx, snaps)
		plans, err = s.freezePlans(c, idx, "consolidate that disk (`stagehand disk consolidate`) or delete old snapshots first")
		return err
	})
	if err != nil {
		return fail0(err)
	}
	live := c.State == store.StateDeployed
	states := map[int]string{} // VM index → state file
	var created, frozen []string
	for _, p := range plans {
		created = append(created, p.newTop)
		frozen = append(frozen, p.top.Path)
	}
	if withState {
		var files []string
		if states, files, err = s.newStateFiles(len(c.VMs), "s-"); err != nil {
			return fail0(err)
		}
		created = append(created, files...)
	}
	op, err := s.journal.Begin(ctx, "snapshot", config, created, frozen)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*SnapshotView, error) {
		return nil, s.journal.Fail(op, fmt.Errorf("snapshot %q of %q: %w", name, config, err))
	}
	for _, p := range plans {
		if err := s.journal.Step(ctx, op, "delta"); err != nil {
			return fail(err)
		}
		if err := s.disks.CreateDelta(ctx, s.abs(p.top.Path), s.abs(p.newTop)); err != nil {
			return fail(fmt.Errorf("VM %q disk %d: %w", c.VMs[p.vm].Name, p.disk, err))
		}
	}
	var pauses []GuestPause
	if live {
		if err := s.journal.Step(ctx, op, "switch"); err != nil {
			return fail(err)
		}
		var switched []bool
		pauses, switched, err = s.switchLive(ctx, c, plans, states)
		if err != nil {
			return nil, s.rollForwardSwitched(ctx, op, c, plans, switched, fmt.Errorf("snapshot %q of %q: %w", name, config, err))
		}
	}
	for _, p := range plans {
		if err := s.journal.Step(ctx, op, "freeze"); err != nil {
			if live { // the guests write the new tops already: forward
				return nil, s.rollForwardSwitched(ctx, op, c, plans, nil, fmt.Errorf("snapshot %q of %q: %w", name, config, err))
			}
			return fail(err)
		}
		if err := s.disks.SetReadOnly(s.abs(p.top.Path), true); err != nil && !live {
			return fail(fmt.Errorf("VM %q disk %d: freeze: %w", c.VMs[p.vm].Name, p.disk, err))
		} else if err != nil {
			s.log.Error("freeze a live snapshot's layer; doctor --repair fixes its mode", "config", config, "layer", p.top.Path, "err", err)
		}
	}
	s.hashFrozenTops(ctx, plans)
	if err := s.journal.Step(ctx, op, "commit"); err != nil && !live {
		return fail(err)
	} else if err != nil {
		return nil, s.rollForwardSwitched(ctx, op, c, plans, nil, fmt.Errorf("snapshot %q of %q: %w", name, config, err))
	}
	snap := &store.Snapshot{ConfigID: c.ID, ParentID: parent, Name: name, WithState: withState}
	err = s.update(ctx, func(tx store.Tx) error {
		if err := s.commitSnapshotTops(tx, c, plans, nil); err != nil {
			return err
		}
		for _, p := range plans {
			snap.Disks = append(snap.Disks, store.SnapshotDisk{VMID: c.VMs[p.vm].ID, Index: c.VMs[p.vm].Disks[p.disk].Index, LayerID: p.top.ID})
		}
		for vi, f := range states {
			snap.States = append(snap.States, store.SnapshotState{VMID: c.VMs[vi].ID, Path: f})
		}
		if err := tx.Snapshots().Create(snap); err != nil {
			return err
		}
		return journal.Commit(tx, op, statePartials(states))
	})
	if err != nil {
		if live {
			return nil, s.rollForwardSwitched(ctx, op, c, plans, nil, fmt.Errorf("snapshot %q of %q: %w", name, config, err))
		}
		return fail(err)
	}
	s.journal.Finish(op)
	attrs := []any{"config", config, "snapshot", name, "disks", len(plans), "live", live, "with_state", withState}
	for _, p := range pauses {
		attrs = append(attrs, "pause_"+p.VM, p.Pause.Round(time.Microsecond))
	}
	s.log.Info("snapshot taken", attrs...)
	s.events.record(ctx, ObjectConfig, "snapshot", config, "snapshot "+name)
	views, err := s.List(ctx, config)
	if err != nil {
		return nil, err
	}
	for i := range views {
		if views[i].Name == name {
			views[i].Pauses = pauses
			return &views[i], nil
		}
	}
	return nil, errdefs.NotFound("snapshot %q of %q vanished", name, config)
}

func statePartials(states map[int]string) []string {
	var out []string
	for _, f := range states {
		out = append(out, f+".partial")
	}
	return out
}

// freezePlans plans, for every disk of c, freezing its top and a fresh
// delta on it, within the chain limit (advice says what to do when over).
func (s *core) freezePlans(c *store.Config, idx layerIndex, advice string) ([]snapPlan, error) {
	var plans []snapPlan
	for vi, vm := range c.VMs {
		for di, d := range vm.Disks {
			top := idx[d.TopLayerID]
			depth, err := idx.depth(top.ID)
			if err != nil {
				return nil, err
			}
			if depth+1 > s.chainLimit {
				return nil, errdefs.Conflict("VM %q disk %d: chain would be %d layers deep, over the limit of %d; %s",
					vm.Name, di, depth+1, s.chainLimit, advice)
			}
			plans = append(plans, snapPlan{vm: vi, disk: di, top: top, newTop: newLayerPath()})
		}
	}
	return plans, nil
}

// newStateFiles names n new state files (by VM index) in snapshotsDir,
// each with its temporary ".partial", for the journal, and makes the
// directory.
func (s *core) newStateFiles(n int, prefix string) (map[int]string, []string, error) {
	states := map[int]string{}
	var files []string
	for vi := range n {
		states[vi] = filepath.Join(snapshotsDir, prefix+journal.RandomHex(8)+".state")
		files = append(files, states[vi], states[vi]+".partial")
	}
	return states, files, os.MkdirAll(s.abs(snapshotsDir), 0o700)
}

// hashFrozenTops hashes each planned disk's old top, frozen now, for the
// commit that records it frozen (as a clone hashes the layer it freezes).
// A layer it cannot read stays unhashed, logged: the first move or
// placement that needs its hash makes it; the snapshot does not fail.
func (s *core) hashFrozenTops(ctx context.Context, plans []snapPlan) {
	for i := range plans {
		p := &plans[i]
		var err error
		if p.sha256, p.size, err = s.hashFrozen(ctx, p.top.Path); err != nil {
			p.sha256, p.size = "", 0
			s.log.Error("hash a frozen layer; its first move hashes it", "layer", p.top.Path, "err", err)
		}
	}
}

// commitSnapshotTops records, inside tx, each planned disk's old top as
// frozen (with its hash, held here, when hashFrozenTops made one) and its
// new delta as the disk's top; only is the set of VM indexes to record
// (nil: all).
func (s *core) commitSnapshotTops(tx store.Tx, c *store.Config, plans []snapPlan, only []bool) error {
	for _, p := range plans {
		if only != nil && !only[p.vm] {
			continue
		}
		top := p.top
		top.Frozen = true
		if p.sha256 != "" {
			top.SHA256, top.Size = p.sha256, p.size
		}
		if err := tx.Layers().Update(&top); err != nil {
			return err
		}
		if p.sha256 != "" {
			if err := s.recordHeld(tx, top.ID); err != nil {
				return err
			}
		}
		nl := &store.Layer{Path: p.newTop, ParentID: top.ID, VirtualSize: top.VirtualSize}
		if err := tx.Layers().Create(nl); err != nil {
			return err
		}
		if err := tx.Configs().SetDiskTop(c.VMs[p.vm].Disks[p.disk].ID, nl.ID); err != nil {
			return err
		}
	}
	return nil
}

// switchLive pauses every guest of c at once, moves each VM's disks onto
// their new tops (one QMP transaction per VM), writes each VM's state
// when states names files, continues every guest, then puts the states on
// stable storage (the guests do not wait for the fsync). It returns each
// guest's pause, and which VMs were switched (so a failure can be rolled
// forward for them).
func (s Snapshots) switchLive(ctx context.Context, c *store.Config, plans []snapPlan, states map[int]string) ([]GuestPause, []bool, error) {
	vms := make([]liveVM, len(c.VMs))
	for vi, vm := range c.VMs {
		v, ok := s.deploys.LiveVM(vm.ID)
		if !ok {
			return nil, nil, errdefs.Unavailable("VM %q does not run under this daemon", vm.Name)
		}
		lv, ok := v.(liveVM)
		if !ok {
			return nil, nil, errdefs.Unavailable("VM %q: its hypervisor cannot take live snapshots", vm.Name)
		}
		vms[vi] = lv
	}
	overlays := make([][]string, len(c.VMs))
	for _, p := range plans {
		overlays[p.vm] = append(overlays[p.vm], s.abs(p.newTop))
	}
	switched := make([]bool, len(c.VMs))
	paused := make([]time.Time, len(c.VMs))
	pauses := make([]GuestPause, len(c.VMs))
	errs := make([]error, len(c.VMs))
	each := func(fn func(vi int)) {
		var wg sync.WaitGroup
		for vi := range vms {
			wg.Add(1)
			go func() { defer wg.Done(); fn(vi) }()
		}
		wg.Wait()
	}
	each(func(vi int) {
		if errs[vi] = vms[vi].Pause(ctx); errs[vi] == nil {
			paused[vi] = time.Now()
		}
	})
	if err := errors.Join(errs...); err == nil {
		each(func(vi int) {
			if errs[vi] = vms[vi].SnapshotDisks(ctx, overlays[vi]); errs[vi] != nil {
				return
			}
			switched[vi] = true
			if f, ok := states[vi]; ok {
				errs[vi] = vms[vi].WriteState(ctx, s.abs(f))
			}
		})
	}
	// Every guest paused goes on running, whatever failed; on a fresh
	// context, since ctx may be what failed.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	each(func(vi int) {
		if paused[vi].IsZero() {
			return
		}
		if err := vms[vi].Continue(cctx); err != nil {
			errs[vi] = errors.Join(errs[vi], fmt.Errorf("continue: %w", err))
		}
		pauses[vi] = GuestPause{VM: c.VMs[vi].Name, Pause: time.Since(paused[vi])}
	})
	// The states are on stable storage before anything records them, but
	// the guests do not wait for that.
	each(func(vi int) {
		if f, ok := states[vi]; ok && errs[vi] == nil {
			errs[vi] = hypervisor.SyncState(s.abs(f))
		}
	})
	for vi, err := range errs {
		if err != nil {
			errs[vi] = fmt.Errorf("VM %q: %w", c.VMs[vi].Name, err)
		}
	}
	return pauses, switched, errors.Join(errs...)
}

// rollForwardSwitched ends a live snapshot that failed after guests
// began writing their new tops: those tops (of the VMs in switched, all
// when nil) are recorded, their old tops frozen, and no snapshot is
// written; the new tops of VMs not switched and the state files are
// removed. It returns cause.
func (s Snapshots) rollForwardSwitched(ctx context.Context, op *store.Op, c *store.Config, plans []snapPlan, switched []bool, cause error) error {
	if switched == nil {
		switched = make([]bool, len(c.VMs))
		for i := range switched {
			switched[i] = true
		}
	}
	any := false
	for _, sw := range switched {
		any = any || sw
	}
	if !any {
		return s.journal.Fail(op, cause)
	}
	// Every file the operation made goes but the switched tops: the
	// unswitched tops, the state files, a clone's deltas.
	keep := map[string]bool{}
	for _, p := range plans {
		if switched[p.vm] {
			keep[p.newTop] = true
		}
	}
	var remove []string
	for _, f := range op.CreatedFiles {
		if !keep[f] {
			remove = append(remove, f)
		}
	}
	for _, p := range plans {
		if switched[p.vm] {
			if err := s.disks.SetReadOnly(s.abs(p.top.Path), true); err != nil {
				s.log.Error("freeze a switched layer; doctor --repair fixes its mode", "layer", p.top.Path, "err", err)
			}
		}
	}
	err := s.update(context.WithoutCancel(ctx), func(tx store.Tx) error {
		if err := s.commitSnapshotTops(tx, c, plans, switched); err != nil {
			return err
		}
		return journal.Commit(tx, op, remove)
	})
	if err != nil {
		s.log.Error("live snapshot failed after the switch and its records could not be written; the journal's rollback follows, a restart of the guests is needed", "config", c.Name, "err", err)
		return s.journal.Fail(op, fmt.Errorf("%w; recording the switched disks failed too: %v", cause, err))
	}
	s.journal.Finish(op)
	s.events.recordFailure(ctx, ObjectConfig, "snapshot", c.Name, cause)
	return fmt.Errorf("%w (the guests that were switched keep their new tops; no snapshot was recorded)", cause)
}

// currentSnapshot returns the snapshot c continues from, by its first
// disk's chain.
func currentSnapshot(c *store.Config, idx layerIndex, snaps []store.Snapshot) int64 {
	if len(c.VMs) == 0 || len(c.VMs[0].Disks) == 0 {
		return 0
	}
	chain, err := idx.chain(c.VMs[0].Disks[0].TopLayerID)
	if err != nil {
		return 0
	}
	ids := make([]int64, len(chain))
	for i, l := range chain {
		ids[i] = l.ID
	}
	return snapshot.Current(snaps, ids)
}

// List returns config's snapshots in tree order (depth first).
func (s Snapshots) List(ctx context.Context, config string) ([]SnapshotView, error) {
	var out []SnapshotView
	var excl [][]store.Layer
	err := s.store.View(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(config)
		if err != nil {
			return err
		}
		snaps, err := tx.Snapshots().List(c.ID)
		if err != nil {
			return err
		}
		idx, err := loadLayers(tx)
		if err != nil {
			return err
		}
		pinned, err := pinnedLayers(tx)
		if err != nil {
			return err
		}
		layers := make(map[int64]snapshot.Layer, len(idx))
		for id, l := range idx {
			layers[id] = snapshot.Layer{ID: id, ParentID: l.ParentID, Pinned: pinned[id] || l.TemplateID != 0}
		}
		refs := snapshot.Refs(snaps)
		current := currentSnapshot(c, idx, snaps)
		names := map[int64]string{}
		for _, sn := range snaps {
			names[sn.ID] = sn.Name
		}
		vmNames := map[int64]string{}
		for _, v := range c.VMs {
			vmNames[v.ID] = v.Name
		}
		ordered, depths := snapshot.Ordered(snaps)
		for i, sn := range ordered {
			v := SnapshotView{Name: sn.Name, Parent: names[sn.ParentID], Depth: depths[i], CreatedAt: sn.CreatedAt,
				WithState: sn.WithState, Current: sn.ID == current}
			stateOf := map[int64]string{}
			for _, st := range sn.States {
				stateOf[st.VMID] = s.abs(st.Path)
			}
			for _, d := range sn.Disks {
				v.Layers = append(v.Layers, SnapshotLayerView{VM: vmNames[d.VMID], Disk: d.Index, Path: s.abs(idx[d.LayerID].Path), State: stateOf[d.VMID]})
			}
			var freed []store.Layer
			for _, id := range snapshot.Freed(layers, refs, snapshot.LayerIDs(sn)) {
				freed = append(freed, idx[id])
			}
			out = append(out, v)
			excl = append(excl, freed)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("snapshots of %q: %w", config, err)
	}
	for i := range out {
		for _, l := range excl[i] {
			info, err := s.disks.Info(ctx, s.abs(l.Path))
			if err != nil {
				return nil, fmt.Errorf("snapshots of %q: %w", config, err)
			}
			out[i].ExclusiveBytes += info.ActualSize
		}
	}
	return out, nil
}

// pinnedLayers returns the layers that are some disk's top.
func pinnedLayers(tx store.Tx) (map[int64]bool, error) {
	cs, err := tx.Configs().List()
	if err != nil {
		return nil, err
	}
	out := map[int64]bool{}
	for _, c := range cs {
		for _, v := range c.VMs {
			for _, d := range v.Disks {
				out[d.TopLayerID] = true
			}
		}
	}
	return out, nil
}

// Revert makes config continue from snapshot name: its current tops are
// discarded (only what nothing else references is freed) and each disk
// gets a new delta on the snapshot's layer. A deployed configuration is
// undeployed first (its guests powered off) and deployed again the same
// way (fenced or not) afterwards: from the snapshot's state when it has
// one (the guests resume where they were), else booted.
func (s Snapshots) Revert(ctx context.Context, config, name string) (*ConfigView, error) {
	var c *store.Config
	err := s.store.View(ctx, func(tx store.Tx) error {
		var err error
		if c, err = tx.Configs().Get(config); err != nil {
			return err
		}
		_, err = tx.Snapshots().Get(c.ID, name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("revert %q to snapshot %q: %w", config, name, err)
	}
	deployments := Deployments{s.core}
	wasDeployed := c.State == store.StateDeployed
	if wasDeployed {
		if _, err := deployments.Undeploy(ctx, config, false); err != nil {
			return nil, fmt.Errorf("revert %q to snapshot %q: %w", config, name, err)
		}
	}
	if err := s.revertUndeployed(ctx, config, name); err != nil {
		return nil, err
	}
	if wasDeployed {
		return deployments.Deploy(ctx, config, DeployOptions{Fenced: c.Fenced, FencePolicy: c.FencePolicy, Allow: deploy.AllowList(c.FenceAllow)})
	}
	return Configs{s.core}.Get(ctx, config)
}

func (s Snapshots) revertUndeployed(ctx context.Context, config, name string) error {
	unlock := s.locks.lock(config)
	defer unlock()
	var c *store.Config
	var snap *store.Snapshot
	var plans []snapPlan // top: the snapshot's layer
	err := s.store.View(ctx, func(tx store.Tx) error {
		var err error
		if c, err = tx.Configs().Get(config); err != nil {
			return err
		}
		if c.State != store.StateUndeployed {
			return errdefs.Conflict("configuration %q is %s; undeploy it first", config, c.State)
		}
		if snap, err = tx.Snapshots().Get(c.ID, name); err != nil {
			return err
		}
		plans, err = snapshotPlans(tx, c, snap)
		return err
	})
	if err != nil {
		return fmt.Errorf("revert %q to snapshot %q: %w", config, name, err)
	}
	var created []string
	for _, p := range plans {
		created = append(created, p.newTop)
	}
	// A snapshot's state goes where the next deploy resumes it, linked
	// (the snapshot keeps its own name) under a temporary name first: the
	// VM's current saved state, if any, is replaced only once committed.
	links := map[string]string{} // temporary link → deploy.StateFile
	for _, st := range snap.States {
		tmp := deploy.StateFile(st.VMID) + ".revert"
		links[tmp] = deploy.StateFile(st.VMID)
		created = append(created, tmp)
	}
	op, err := s.journal.Begin(ctx, "snapshot-revert", config, created, nil)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		return s.journal.Fail(op, fmt.Errorf("revert %q to snapshot %q: %w", config, name, err))
	}
	for _, p := range plans {
		if err := s.journal.Step(ctx, op, "delta"); err != nil {
			return fail(err)
		}
		if err := s.disks.CreateDelta(ctx, s.abs(p.top.Path), s.abs(p.newTop)); err != nil {
			return fail(fmt.Errorf("VM %q disk %d: %w", c.VMs[p.vm].Name, p.disk, err))
		}
	}
	for _, st := range snap.States {
		if err := s.journal.Step(ctx, op, "state"); err != nil {
			return fail(err)
		}
		if err := os.MkdirAll(filepath.Dir(s.abs(deploy.StateFile(st.VMID))), 0o700); err != nil {
			return fail(err)
		}
		if err := os.Link(s.abs(st.Path), s.abs(deploy.StateFile(st.VMID)+".revert")); err != nil {
			return fail(fmt.Errorf("state of VM %d: %w", st.VMID, err))
		}
	}
	if err := s.journal.Step(ctx, op, "commit"); err != nil {
		return fail(err)
	}
	err = s.update(ctx, func(tx store.Tx) error {
		var old []int64
		for _, p := range plans {
			d := c.VMs[p.vm].Disks[p.disk]
			nl := &store.Layer{Path: p.newTop, ParentID: p.top.ID, VirtualSize: p.top.VirtualSize}
			if err := tx.Layers().Create(nl); err != nil {
				return err
			}
			if err := tx.Configs().SetDiskTop(d.ID, nl.ID); err != nil {
				return err
			}
			old = append(old, d.TopLayerID)
		}
		removed, err := releaseLayers(tx, old)
		if err != nil {
			return err
		}
		// A saved state belongs to the discarded tops: the VMs resume the
		// snapshot's state, or boot.
		for i := range c.VMs {
			v := &c.VMs[i]
			if !snap.WithState && s.deploys.HasSavedState(v.ID) {
				removed = append(removed, deploy.StateFile(v.ID))
			}
			want := store.StateUndeployed
			if snap.WithState {
				want = deploy.VMStateSaved
			}
			if v.State != want {
				v.State = want
				if err := tx.Configs().UpdateVM(v); err != nil {
					return err
				}
			}
		}
		return journal.Commit(tx, op, removed)
	})
	if err != nil {
		return fail(err)
	}
	for tmp, final := range links {
		if err := os.Rename(s.abs(tmp), s.abs(final)); err != nil {
			s.log.Error("put a snapshot's state in place; the next deploy boots instead of resuming", "config", config, "file", final, "err", err)
		}
	}
	s.journal.Finish(op)
	s.log.Info("reverted to snapshot", "config", config, "snapshot", name, "disks", len(plans), "with_state", snap.WithState)
	s.events.record(ctx, ObjectConfig, "snapshot-revert", config, "reverted to "+name)
	return nil
}

// snapshotPlans plans a new delta on snap's layer for each disk of c.
func snapshotPlans(tx store.Tx, c *store.Config, snap *store.Snapshot) ([]snapPlan, error) {
	type key struct {
		vm    int64
		index int
	}
	layerOf := map[key]int64{}
	for _, d := range snap.Disks {
		layerOf[key{d.VMID, d.Index}] = d.LayerID
	}
	var plans []snapPlan
	for vi, vm := range c.VMs {
		for di, d := range vm.Disks {
			id, ok := layerOf[key{vm.ID, d.Index}]
			if !ok {
				return nil, errdefs.Conflict("VM %q disk %d is not in snapshot %q", vm.Name, d.Index, snap.Name)
			}
			l, err := tx.Layers().Get(id)
			if err != nil {
				return nil, err
			}
			plans = append(plans, snapPlan{vm: vi, disk: di, top: *l, newTop: newLayerPath()})
		}
	}
	return plans, nil
}

// Delete deletes snapshot name of config. Its children become children of
// its parent; its layers are freed only when nothing else references them
// (a child snapshot's layer, a clone or a current top builds on them, so
// every chain keeps working); its state files are removed.
func (s Snapshots) Delete(ctx context.Context, config, name string) error {
	unlock := s.locks.lock(config)
	defer unlock()
	op := &store.Op{Kind: "snapshot-delete", Subject: config}
	err := s.update(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(config)
		if err != nil {
			return err
		}
		snap, err := tx.Snapshots().Get(c.ID, name)
		if err != nil {
			return err
		}
		all, err := tx.Snapshots().List(c.ID)
		if err != nil {
			return err
		}
		for _, sn := range all {
			if sn.ParentID == snap.ID {
				if err := tx.Snapshots().SetParent(sn.ID, snap.ParentID); err != nil {
					return err
				}
			}
		}
		if err := tx.Snapshots().Delete(snap.ID); err != nil {
			return err
		}
		removed, err := releaseLayers(tx, snapshot.LayerIDs(*snap))
		if err != nil {
			return err
		}
		for _, st := range snap.States {
			removed = append(removed, st.Path)
		}
		if err := s.journal.Step(ctx, op, "commit"); err != nil {
			return err
		}
		if err := tx.Ops().Create(op); err != nil {
			return err
		}
		return journal.Commit(tx, op, removed)
	})
	if err != nil {
		return fmt.Errorf("delete snapshot %q of %q: %w", name, config, err)
	}
	if err := s.journal.Step(ctx, op, "remove-files"); err != nil {
		return fmt.Errorf("delete snapshot %q of %q: %w", name, config, err) // Recover removes them
	}
	s.log.Info("snapshot deleted", "config", config, "snapshot", name, "files", len(op.RemoveFiles))
	s.events.record(ctx, ObjectConfig, "snapshot-delete", config, "deleted snapshot "+name)
	return s.journal.Finish(op)
}

// snapshotFiles returns the layers and state files of configuration
// configID's snapshots, for its delete.
func snapshotFiles(tx store.Tx, configID int64) ([]int64, []string, error) {
	snaps, err := tx.Snapshots().List(configID)
	if err != nil {
		return nil, nil, err
	}
	var layers []int64
	var files []string
	for _, sn := range snaps {
		layers = append(layers, snapshot.LayerIDs(sn)...)
		for _, st := range sn.States {
			files = append(files, st.Path)
		}
	}
	return layers, files, nil
}

// CloneFromSnapshot makes dst by linked clone of src as it was at
// snapshot snap: each disk of dst gets a new delta on the snapshot's
// frozen layer. src is only read, so it may be deployed; dst keeps src's
// networks, IP modes and addresses, gets new MACs, and its storage lease
// as opts says. It does not take the snapshot's memory state: dst boots.
func (s Configs) CloneFromSnapshot(ctx context.Context, src, snapName, dst string, opts CreateOptions) (*ConfigView, error) {
	if err := cloneCheck(src, dst, opts); err != nil {
		return nil, err
	}
	unlock := s.locks.lock(src, dst)
	defer unlock()
	var c *store.Config
	var plans []clonePlan
	err := s.store.View(ctx, func(tx store.Tx) error {
		var err error
		if c, err = tx.Configs().Get(src); err != nil {
			return err
		}
		if err := checkKind(c, store.KindConfig, "clone it from a snapshot"); err != nil {
			return err
		}
		if err := needNoConfig(tx, dst); err != nil {
			return err
		}
		snap, err := tx.Snapshots().Get(c.ID, snapName)
		if err != nil {
			return err
		}
		sp, err := snapshotPlans(tx, c, snap)
		if err != nil {
			return err
		}
		idx, err := loadLayers(tx)
		if err != nil {
			return err
		}
		for _, p := range sp {
			depth, err := idx.depth(p.top.ID)
			if err != nil {
				return err
			}
			if depth+1 > s.chainLimit {
				return errdefs.Conflict("VM %q disk %d: chain would be %d layers deep, over the limit of %d; make a full clone, or consolidate that disk first",
					c.VMs[p.vm].Name, p.disk, depth+1, s.chainLimit)
			}
			plans = append(plans, clonePlan{vm: p.vm, disk: p.disk, top: p.top, cloneDelta: p.newTop, fromSnapshot: true})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("clone %q at snapshot %q to %q: %w", src, snapName, dst, err)
	}
	place, err := s.placer.place(ctx, auth.ConfigCreate, access.KindConfig, opts.Workspace, c.WorkspaceID)
	if err != nil {
		return nil, fmt.Errorf("clone %q to %q: %w", src, dst, err)
	}
	var created []string
	for _, p := range plans {
		created = append(created, p.cloneDelta)
	}
	op, err := s.journal.Begin(ctx, "clone", dst, created, nil)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*ConfigView, error) {
		return nil, s.journal.Fail(op, fmt.Errorf("clone %q at snapshot %q to %q: %w", src, snapName, dst, err))
	}
	for _, p := range plans {
		if err := s.journal.Step(ctx, op, "clone-delta"); err != nil {
			return fail(err)
		}
		if err := s.disks.CreateDelta(ctx, s.abs(p.top.Path), s.abs(p.cloneDelta)); err != nil {
			return fail(fmt.Errorf("VM %q disk %d: %w", c.VMs[p.vm].Name, p.disk, err))
		}
	}
	if err := s.journal.Step(ctx, op, "commit"); err != nil {
		return fail(err)
	}
	var view *ConfigView
	err = s.update(ctx, func(tx store.Tx) error {
		clone, err := s.commitClone(tx, src, dst, store.KindConfig, place, deltaOnTop, plans, false, opts.StorageLease)
		if err != nil {
			return err
		}
		if err := journal.Commit(tx, op, nil); err != nil {
			return err
		}
		view, err = s.views.config(tx, clone)
		return err
	})
	if err != nil {
		return fail(err)
	}
	s.journal.Finish(op)
	s.log.Info("linked clone made from a snapshot", "config", dst, "source", src, "snapshot", snapName, "disks", len(plans))
	s.events.record(ctx, ObjectConfig, "clone", dst, "linked clone of "+src+" at snapshot "+snapName)
	return view, nil
}

// snapshotLayerNames maps each layer a snapshot names to that snapshot's
// name, qualified as "CONFIG@NAME" when it is not config's own.
func snapshotLayerNames(tx store.Tx, config string) (map[int64]string, error) {
	snaps, err := tx.Snapshots().List(0)
	if err != nil {
		return nil, err
	}
	out := map[int64]string{}
	names := map[int64]string{}
	for _, sn := range snaps {
		owner, ok := names[sn.ConfigID]
		if !ok {
			c, err := tx.Configs().GetByID(sn.ConfigID)
			if err != nil {
				return nil, err
			}
			owner, names[sn.ConfigID] = c.Name, c.Name
		}
		name := sn.Name
		if owner != config {
			name = owner + "@" + sn.Name
		}
		for _, d := range sn.Disks {
			out[d.LayerID] = name
		}
	}
	return out, nil
}
